"""Building the kernel and the loader: ninja file generation, post-link checks.

The host tools come from kmtool/toolchain.py, the PE32+ headers from kmtool/schemas/pe.py.

flags.py       compiler and linker flags, and why (the kernel's code model is chosen there)
ninjafile.py   render build.ninja from the source tree
driver.py      write build.ninja and run ninja with progress and readable errors
checks.py      post-link checks of kernel.elf (ELF64) and BOOTX64.EFI (PE32+)
"""
