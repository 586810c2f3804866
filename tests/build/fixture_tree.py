"""A tiny source tree shaped like the repository's, for build tests independent of the real kernel.

    kernel/arch/x86_64/entry.S     _start: set a stack, call kmain, halt
    kernel/arch/x86_64/kernel.ld   text+rodata R X, data+bss R W, at KM_KERNEL_LINK_BASE
    kernel/main.c                  includes fixture.h, helper.h and <km/layout.h>
    kernel/lib/helper.c            includes helper.h only
    kernel/include/fixture.h       used by main.c only
    kernel/include/helper.h        used by main.c and helper.c
    efi/main.c                     efi_main returning EFI_SUCCESS

`make_tree(dir)` writes it and returns the root; the build generates include/km/ into it.
"""

from __future__ import annotations

from pathlib import Path

FILES: dict[str, str] = {
    "kernel/arch/x86_64/entry.S": """\
        .section .text.entry, "ax"
        .global _start
_start:
        lea     stack_top(%rip), %rsp
        call    kmain
1:      cli
        hlt
        jmp     1b

        .section .bss
        .balign 16
        .space  4096
stack_top:
""",
    "kernel/arch/x86_64/kernel.ld": """\
INCLUDE layout.ld
ENTRY(_start)

PHDRS
{
    text PT_LOAD FLAGS(5);
    data PT_LOAD FLAGS(6);
}

SECTIONS
{
    . = KM_KERNEL_LINK_BASE;
    .text : { *(.text.entry) *(.text .text.*) } :text
    .rodata : { *(.rodata .rodata.*) } :text
    . = ALIGN(KM_PAGE_SIZE);
    .data : { *(.data .data.*) *(.data.rel.ro*) *(.got .got.plt) } :data
    .bss (NOLOAD) : { *(.bss .bss.*) *(COMMON) } :data
    /DISCARD/ : { *(.eh_frame*) *(.note .note.*) *(.comment) }
}
""",
    "kernel/main.c": """\
#include <km/layout.h>

#include "fixture.h"
#include "helper.h"

unsigned long counter = FIXTURE_VALUE;

unsigned long kmain(void)
{
    counter += (unsigned long)helper(3);
    return counter + KM_PAGE_SIZE;
}
""",
    "kernel/lib/helper.c": """\
#include "helper.h"

int helper(int x)
{
    return x * 2;
}
""",
    "kernel/include/fixture.h": "#pragma once\n#define FIXTURE_VALUE 7\n",
    "kernel/include/helper.h": "#pragma once\nint helper(int x);\n",
    "efi/main.c": """\
typedef unsigned long long UINT64;

UINT64 efi_main(void *image, void *system_table)
{
    (void)image;
    (void)system_table;
    return 0;
}
""",
}


def make_tree(base: Path) -> Path:
    """Write the fixture tree under `base/src` and return that root."""
    root = base / "src"
    for rel, text in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
