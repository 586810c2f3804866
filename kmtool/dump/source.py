"""Open a dump file: a QEMU ELF core, a kdump-compressed file, a LiME file, or a raw physical image.

The kind is told by the file's first bytes, never by its name: the ELF magic, the kdump signature
`KDUMP   `, the LiME magic; anything else is a raw image. makedumpfile's flattened stream is
recognised and refused with the way to reassemble it. ELF and LiME ranges are file ranges read
through one mmap; a kdump file's pages are decompressed on demand (kmtool.dump.paged). Only the
reader of the kind found is imported (a raw image imports none, and no construct).

Each kind may also say where the kernel's core-info block is (docs/design.md §5.3): the VMCOREINFO
note of an ELF core or a kdump file (`core_info_note`), or the raw sidecar's `core_info`
(`core_info_sidecar`).

Raw images have no header. By default file offset == physical address (base 0); `--base` says the
file starts at another physical address. When `FILE.layout.json` (written by `kmtool run --dump FILE
--dump-format raw`, in the format of kmtool/schemas/rawdump.py) sits next to the file and no base
was given, its RAM ranges and recorded control registers are used instead, so holes (the PCI hole)
are known to be absent rather than read as zeros. With `--base` the image is one range from that
base, and the layout file (when present) still gives the CPU state: CR3 is a physical address either
way.

Every "end" in the JSON document is inclusive (the range's last byte), like the layout table's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kmtool.dump.cpu import CpuState
from kmtool.dump.document import DumpFileDoc
from kmtool.dump.memory import MemoryRange, PhysicalMemory
from kmtool.errors import DumpError
from kmtool.layout.table import PAGE_SIZE
from kmtool.schemas.rawdump import (
    CPU_REGISTERS,
    RAW_FORMAT_NAME,
    RAW_FORMAT_VERSION,
    layout_path_for,
)
from kmtool.schemas.signatures import ELF_MAGIC, FLAT_SIGNATURE, KDUMP_SIGNATURE, LIME_MAGIC


@dataclass
class DumpSource:
    """A dump opened for reading: its memory, what kind it is, and any recorded CPU state."""

    path: Path
    kind: str  # "elf", "kdump", "lime", "raw", or "live" (a running guest, kmtool.live.snapshot)
    memory: PhysicalMemory
    cpus: list[CpuState] = field(default_factory=list)
    base: int | None = None  # raw images read with --base or without a layout file
    layout_path: Path | None = None
    core_info_note: int | None = None  # from the dump's VMCOREINFO note
    core_info_sidecar: int | None = None  # from the raw sidecar's `core_info`

    def to_json(self) -> DumpFileDoc:
        """The file half of the "source" part of `kmtool inspect --json` (the inspection adds the
        core-info block and the kernel ELF)."""
        return {
            "path": str(self.path),
            "format": self.kind,
            "file_size": self.memory.file_size,
            "base": None if self.base is None else hex(self.base),
            "layout_file": None if self.layout_path is None else str(self.layout_path),
            "ram_bytes": self.memory.ram_bytes,
            "ranges": [
                {
                    "start": hex(r.start),
                    "end": hex(r.end - 1),  # inclusive, as every "end" in the document
                    "size": r.size,
                    "file_offset": hex(r.file_offset),
                    "file_size": r.file_size,
                }
                for r in self.memory.ranges
            ],
        }


def open_dump(path: Path, base: int | None = None) -> DumpSource:
    """Open `path`, of any kind the module docstring lists (`base`: physical address of a raw
    image's first byte)."""
    if not path.exists():
        raise DumpError(f"Dump `{path}` does not exist.")
    if path.is_dir():
        raise DumpError(f"Dump `{path}` is a directory, not a file.")
    kind = _kind(path)
    if kind != "raw" and base is not None:
        raise DumpError(f"`--base` applies to raw images only; `{path}` is a {kind} dump.")
    if kind == "elf":  # each reader (and construct) is imported only for its own kind
        from kmtool.dump.elfcore import open_elf_core

        memory, notes = open_elf_core(path)
        return DumpSource(path, "elf", memory, notes.cpus, core_info_note=notes.core_info)
    if kind == "kdump":
        from kmtool.dump.kdump import open_kdump

        paged, notes = open_kdump(path)
        return DumpSource(path, "kdump", paged, notes.cpus, core_info_note=notes.core_info)
    if kind == "lime":
        from kmtool.dump.lime import open_lime

        return DumpSource(path, "lime", open_lime(path))
    layout_path = layout_path_for(path)
    if base is None and layout_path.is_file():
        ranges, cpus, core = _read_layout(layout_path)
        return DumpSource(path, "raw", PhysicalMemory(path, ranges), cpus,
                          layout_path=layout_path, core_info_sidecar=core)  # fmt: skip
    layout = None
    if layout_path.is_file():
        try:
            layout = _read_layout(layout_path)
        except DumpError:
            pass  # --base is also the way around a broken layout file
    start = 0 if base is None else base
    if start % PAGE_SIZE:
        raise DumpError(f"The raw image base {hex(start)} is not page aligned.")
    size = path.stat().st_size
    # `--base` overrides the layout file's RAM ranges, not its CPU state (CR3 is physical).
    cpus = [] if layout is None else layout[1]  # (its core_info is where --base says, so unused)
    return DumpSource(path, "raw", PhysicalMemory(path, [MemoryRange(start, size, 0, size)]),
                      cpus, base=start,
                      layout_path=None if layout is None else layout_path)  # fmt: skip


def _kind(path: Path) -> str:
    """The kind of dump at `path` ("elf", "kdump", "lime" or "raw") from its first bytes; the
    signatures come from kmtool.schemas.signatures, so telling the kind imports no reader."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as err:
        raise DumpError(f"Cannot open dump `{path}`: {err.strerror}.") from None
    if is_elf_head(head):
        return "elf"
    if head.startswith(KDUMP_SIGNATURE):
        return "kdump"
    if head.startswith(FLAT_SIGNATURE):
        raise DumpError(
            f"Dump `{path}` is makedumpfile's flattened stream (signature `makedumpfile` at "
            "offset 0x0), not a kdump file; reassemble it first (`makedumpfile -R NEW < FILE`), "
            "or capture with `kmtool run --dump-format kdump`, which does that itself."
        )
    if head.startswith(LIME_MAGIC.to_bytes(4, "little")):
        return "lime"
    return "raw"


def _read_layout(path: Path) -> tuple[list[MemoryRange], list[CpuState], int | None]:
    try:
        doc = json.loads(path.read_text())
        if doc.get("format") != RAW_FORMAT_NAME or doc.get("version") != RAW_FORMAT_VERSION:
            raise DumpError(
                f"Layout file `{path}` is not {RAW_FORMAT_NAME} version {RAW_FORMAT_VERSION} "
                f"(format {doc.get('format')!r}, version {doc.get('version')!r})."
            )
        ranges = []
        for r in doc["ranges"]:
            size = int(r["size"], 16)
            ranges.append(MemoryRange(int(r["phys"], 16), size, int(r["file_offset"], 16), size))
        cpus = [_layout_cpu(c) for c in doc.get("cpus", [])]
        core = _hex(doc.get("core_info"))
    except DumpError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise DumpError(
            f"Layout file `{path}` is malformed: {type(err).__name__}: {err}."
        ) from None
    return ranges, cpus, core


def _layout_cpu(c: dict[str, Any]) -> CpuState:
    """One `cpus` entry of a raw sidecar (kmtool.schemas.rawdump) as a CpuState; the keys it does
    not hold stay None (a sidecar of an older kmtool has only the control registers)."""
    get = {key: _hex(c.get(key)) for key in CPU_REGISTERS}

    def pair(*keys: str) -> Any:
        values = tuple(get[k] for k in keys)
        return None if None in values else values

    return CpuState(
        index=int(c["index"]),
        cr0=get["cr0"], cr2=get["cr2"], cr3=get["cr3"], cr4=get["cr4"], efer=get["efer"],
        rip=get["rip"], rsp=get["rsp"], rflags=get["rflags"], cs=get["cs"], ss=get["ss"],
        gdt=pair("gdt_base", "gdt_limit"), idt=pair("idt_base", "idt_limit"),
        tr=pair("tr", "tr_base", "tr_limit"),
        source="layout file",
    )  # fmt: skip


def is_elf_head(head: bytes) -> bool:
    """True when a file starting with `head` is an ELF file."""
    return head.startswith(ELF_MAGIC)


def _hex(value: Any) -> int | None:
    return None if value is None else int(value, 16)
