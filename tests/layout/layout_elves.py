"""Small kernel-shaped ELFs built with clang and ld.lld, good and deliberately bad, for --kernel.

`build_elf(directory, script)` compiles SOURCE and links it with the linker script text `script`
(which may INCLUDE the generated layout.ld); the scripts below each break one rule of the plan.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import REPO, require

SOURCE = """\
long counter = 5;
char boot_stack[16384];
const char message[] = "hello";
void _start(void) {
    counter += message[0] + boot_stack[counter];
    for (;;) __asm__ volatile("hlt");
}
"""

# The shape of the real kernel script: three page-aligned PT_LOADs (R X, R, R W) at the link base.
GOOD = """\
INCLUDE layout.ld
ENTRY(_start)
PHDRS { text PT_LOAD FLAGS(5); rodata PT_LOAD FLAGS(4); data PT_LOAD FLAGS(6); }
SECTIONS {
  . = KM_KERNEL_LINK_BASE;
  __kernel_start = .;
  .text : { *(.text .text.*) } :text
  . = ALIGN(KM_PAGE_SIZE);
  .rodata : { *(.rodata .rodata.*) } :rodata
  . = ALIGN(KM_PAGE_SIZE);
  .data : { *(.data .data.*) } :data
  .bss (NOLOAD) : { __bss_start = .; *(.bss .bss.* COMMON) __bss_end = .; } :data
  . = ALIGN(KM_PAGE_SIZE);
  __kernel_end = .;
  /DISCARD/ : { *(.comment) *(.note*) *(.eh_frame*) }
}
"""

# .data and .bss placed 2 MiB past the end of the kernel-image region (in kernel-vspace).
OUTSIDE = GOOD.replace("  .data : {", "  . = KM_KERNEL_IMAGE_END + 0x200000;\n  .data : {")

# An extra read-only PT_LOAD linked at 2 MiB (user space), far below the link base, first.
BELOW = GOOD.replace("PHDRS { ", "PHDRS { low PT_LOAD FLAGS(4); ").replace(
    "  . = KM_KERNEL_LINK_BASE;\n",
    "  . = 0x200000;\n  .low : { BYTE(1) } :low\n  . = KM_KERNEL_LINK_BASE;\n",
)

# One segment that is readable, writable and executable.
WX = GOOD.replace("FLAGS(5)", "FLAGS(7)")

# WX behind a PT_GNU_STACK program header: the PT_LOADs are program headers 1-3, not 0-2.
WX_AFTER_STACK = WX.replace("PHDRS { ", "PHDRS { stack PT_GNU_STACK FLAGS(6); ")

# rodata and data packed into one page but kept as separate segments.
SHARED_PAGE = GOOD.replace("  . = ALIGN(KM_PAGE_SIZE);\n  .data", "  .data")

# The entry point is a data object.
DATA_ENTRY = GOOD.replace("ENTRY(_start)", "ENTRY(counter)")

# No image or BSS symbols at all.
NO_SYMBOLS = (
    GOOD.replace("  __kernel_start = .;\n", "")
    .replace("__bss_start = .; ", "")
    .replace(" __bss_end = .;", "")
    .replace("  __kernel_end = .;\n", "")
)

# BSS symbols that point into read-only data.
BSS_IN_RODATA = GOOD.replace(
    ".rodata : { *(.rodata .rodata.*) }",
    ".rodata : { __bss_start = .; *(.rodata .rodata.*) __bss_end = .; }",
).replace(
    ".bss (NOLOAD) : { __bss_start = .; *(.bss .bss.* COMMON) __bss_end = .; }",
    ".bss (NOLOAD) : { *(.bss .bss.* COMMON) }",
)

# A 32-bit executable (linked low: layout.ld's addresses do not fit ELF32).
ELF32 = """\
ENTRY(_start)
SECTIONS { . = 0x100000; .text : { *(.text*) } .rodata : { *(.rodata*) }
           .data : { *(.data*) } .bss : { *(.bss*) *(COMMON) } }
"""


def build_elf(
    directory: Path, script: str, name: str = "kernel.elf", target: str = "x86_64"
) -> Path:
    """Compile SOURCE and link it with `script`; return the ELF path (fails the test on error)."""
    require("clang", "ld.lld")
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "k.c"
    source.write_text(SOURCE)
    obj = directory / f"{name}.o"
    ld_script = directory / f"{name}.ld"
    ld_script.write_text(script)
    out = directory / name
    triple = f"{target}-unknown-none-elf"
    compile_cmd = [
        "clang",
        f"--target={triple}",
        "-ffreestanding",
        "-fno-builtin",
        "-nostdlib",
        "-mno-red-zone",
        "-fpie",
        "-O2",
        "-c",
        str(source),
        "-o",
        str(obj),
    ]
    link_cmd = [
        "ld.lld",
        "-static",
        "-nostdlib",
        "-z",
        "max-page-size=4096",
        "--no-dynamic-linker",
        "-L",
        str(REPO / "include" / "km"),
        "-T",
        str(ld_script),
        str(obj),
        "-o",
        str(out),
    ]
    for cmd in (compile_cmd, link_cmd):
        result = subprocess.run(cmd, capture_output=True, text=True)
        assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stderr}"
    return out
