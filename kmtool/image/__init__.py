"""GPT disk images with one FAT32 EFI system partition.

gpt.py        the partition table (protective MBR, headers, entries) from kmtool/schemas/gpt.py
fat.py        the ESP's file system, made and filled with mtools
assemble.py   build_image(): files in, reproducible image out, written atomically
__main__.py   `python -m kmtool.image OUT ESP_PATH=FILE ...`, the build's image step
"""
