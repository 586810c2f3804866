"""The formats kmtool reads or writes: construct schemas of binary structures, the raw-dump sidecar.

A leaf package: it imports nothing of kmtool. Each schema is named after its C struct
(`BootInfo` for `struct km_boot_info`), keeps the C field names, spells out endianness and documents
every field; the same schema decodes dumps, builds test fixtures and generates the C declaration
(kmtool/layout/cgen.py) with `_Static_assert`s on size and offsets. Constants C needs too (the
page-table entry bits in paging.py) are generated the same way.

    bootinfo.py coreinfo.py frames.py heap.py memmap.py paging.py pagestats.py
                 shared with kernel/ and efi/
    signatures.py the bytes that identify a format or a structure, kept free of construct
    gpt.py       the GUID partition table of the disk image
    pe.py        the PE32+ headers of BOOTX64.EFI that the post-link check reads
    qemu.py      QEMU's ELF-core notes
    rawdump.py   the JSON sidecar `FILE.layout.json` of a raw physical dump
"""
