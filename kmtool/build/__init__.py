"""Building the kernel and the loader: toolchain probe, ninja file generation, post-link checks.

toolchain.py   find clang, ld.lld, lld-link, mtools, QEMU, ninja (and their Debian packages)
flags.py       compiler and linker flags, and why (the kernel's code model is chosen there)
ninjafile.py   render build.ninja from the source tree
driver.py      write build.ninja and run ninja with progress and readable errors
checks.py      post-link checks of kernel.elf (ELF64) and BOOTX64.EFI (PE32+)
pe.py          the few PE/COFF headers checks.py needs, as construct schemas
"""
