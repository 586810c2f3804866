"""The sidecar `FILE.layout.json` of a raw physical dump: its name, format, version and shape.

`kmtool run --dump FILE --dump-format raw` writes it (kmtool/qemu/dump.py) and `kmtool inspect`
reads it (kmtool/dump/source.py); this module is the one place both take the format from. A raw dump
is a flat image of guest-physical memory, file offset == physical address; the sidecar says where
RAM is, so holes (the PCI hole) are known to be absent rather than read as zeros:

    {
      "format": "kmtool-raw-physical",      # fixed; anything else is not this format
      "version": 1,
      "machine": "q35",
      "memory_size": "0x20000000",          # guest RAM in bytes (the --memory value)
      "file_size": "0x20000000",            # == end of the highest range
      "ranges": [                           # sorted by phys, non-overlapping
        {"name": "ram-below-4g", "phys": "0x0", "size": "0x20000000", "file_offset": "0x0"},
        {"name": "ram-above-4g", "phys": "0x100000000", "size": "0x40000000",
         "file_offset": "0x100000000"}       # present only when RAM reaches past the PCI hole
      ],
      "cpus": [                             # from `info registers -a` of the stopped VM
        {"index": 0, "cr0": "0x80010033", "cr3": "0x7e01000", "cr4": "0x6a0", "efer": "0xd00",
         "cr2": "0x0", "rip": "0xffffff0000001234", "rsp": "0xffffff0000105f88",
         "rflags": "0x246", "cs": "0x8", "ss": "0x10",
         "gdt_base": "0xffffff0000112000", "gdt_limit": "0x37",
         "idt_base": "0xffffff0000113000", "idt_limit": "0xfff",
         "tr": "0x28", "tr_base": "0xffffff0000110000", "tr_limit": "0x67"}
      ],
      "core_info": "0xde84080"              # optional: the core-info block's physical address
    }

All numbers are "0x..." strings except `version` and `index`; `file_offset` always equals `phys`.
A register QEMU did not print is absent from its `cpus` entry; `cs`, `ss` and `tr` are selectors,
`tr_base` and `tr_limit` the task register's cached descriptor, and the `gdt_*` and `idt_*` pairs
GDTR and IDTR, so a raw dump shows the descriptor tables as an ELF core does. The `cpus` entry is a
convenience: the kernel's core-info block remains the self-describing root of a raw dump. `core_info` is where
the kernel said that block is (its VMCOREINFO note as QEMU holds it, docs/design.md §5.3); it is
absent when the kernel published none, and a reader that does not know the key loses nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NotRequired, TypedDict

RAW_FORMAT_NAME = "kmtool-raw-physical"
RAW_FORMAT_VERSION = 1
MACHINE = "q35"
LAYOUT_SUFFIX = ".layout.json"
# The keys a `cpus` entry may hold besides `index`.
CPU_REGISTERS = (
    "cr0", "cr2", "cr3", "cr4", "efer", "rip", "rsp", "rflags", "cs", "ss",
    "gdt_base", "gdt_limit", "idt_base", "idt_limit", "tr", "tr_base", "tr_limit",
)  # fmt: skip

# One `cpus` entry: "index" (an int) and any of CPU_REGISTERS ("0x..." strings).
RawCpu = dict[str, str | int]


class RawRange(TypedDict):
    """One block of guest RAM in the image: its QEMU name and where it sits ("0x..." strings)."""

    name: str
    phys: str
    size: str
    file_offset: str  # always == phys


class RawLayout(TypedDict):
    """The whole sidecar document."""

    format: str  # RAW_FORMAT_NAME
    version: int  # RAW_FORMAT_VERSION
    machine: str  # MACHINE
    memory_size: str  # guest RAM in bytes
    file_size: str  # one past the end of the highest range
    ranges: list[RawRange]
    cpus: list[RawCpu]
    core_info: NotRequired[str]  # "0x...": the core-info block's physical address


def layout_path_for(path: Path) -> Path:
    """The sidecar `FILE.layout.json` of the raw dump `path`."""
    return path.with_name(path.name + LAYOUT_SUFFIX)


def layout_document(
    ranges: Iterable[tuple[str, int, int]], cpus: Sequence[RawCpu], core_info: int | None = None
) -> RawLayout:
    """The sidecar for RAM `ranges` (name, physical start, size; sorted by start), `cpus` and the
    core-info address (None: none known, the key is left out).

    `memory_size` is the sum of the sizes and `file_size` the end of the highest range.
    """
    ram = list(ranges)
    doc: RawLayout = {
        "format": RAW_FORMAT_NAME,
        "version": RAW_FORMAT_VERSION,
        "machine": MACHINE,
        "memory_size": hex(sum(size for _, _, size in ram)),
        "file_size": hex(max((phys + size for _, phys, size in ram), default=0)),
        "ranges": [
            {"name": name, "phys": hex(phys), "size": hex(size), "file_offset": hex(phys)}
            for name, phys, size in ram
        ],
        "cpus": list(cpus),
    }
    if core_info is not None:
        doc["core_info"] = hex(core_info)
    return doc
