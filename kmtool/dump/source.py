"""Open a dump file of either kind: a QEMU ELF core, or a raw physical image.

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
from kmtool.dump.elfcore import is_elf, open_elf_core
from kmtool.dump.memory import MemoryRange, PhysicalMemory
from kmtool.errors import DumpError
from kmtool.layout.table import PAGE_SIZE
from kmtool.schemas.rawdump import RAW_FORMAT_NAME, RAW_FORMAT_VERSION, layout_path_for


@dataclass
class DumpSource:
    """A dump opened for reading: its memory, what kind it is, and any recorded CPU state."""

    path: Path
    kind: str  # "elf" or "raw"
    memory: PhysicalMemory
    cpus: list[CpuState] = field(default_factory=list)
    base: int | None = None  # raw images read with --base or without a layout file
    layout_path: Path | None = None

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
    """Open `path`, an ELF core or a raw image (`base`: physical address of its first byte)."""
    if not path.exists():
        raise DumpError(f"Dump `{path}` does not exist.")
    if path.is_dir():
        raise DumpError(f"Dump `{path}` is a directory, not a file.")
    if is_elf(path):
        if base is not None:
            raise DumpError(f"`--base` applies to raw images only; `{path}` is an ELF core.")
        memory, cpus = open_elf_core(path)
        return DumpSource(path, "elf", memory, cpus)
    layout_path = layout_path_for(path)
    if base is None and layout_path.is_file():
        ranges, cpus = _read_layout(layout_path)
        return DumpSource(path, "raw", PhysicalMemory(path, ranges), cpus, layout_path=layout_path)
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
    cpus = [] if layout is None else layout[1]
    return DumpSource(path, "raw", PhysicalMemory(path, [MemoryRange(start, size, 0, size)]),
                      cpus, base=start,
                      layout_path=None if layout is None else layout_path)  # fmt: skip


def _read_layout(path: Path) -> tuple[list[MemoryRange], list[CpuState]]:
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
        cpus = []
        for c in doc.get("cpus", []):
            cpus.append(
                CpuState(
                    index=int(c["index"]),
                    cr0=_hex(c.get("cr0")),
                    cr3=_hex(c.get("cr3")),
                    cr4=_hex(c.get("cr4")),
                    efer=_hex(c.get("efer")),
                    source="layout file",
                )
            )
    except DumpError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise DumpError(
            f"Layout file `{path}` is malformed: {type(err).__name__}: {err}."
        ) from None
    return ranges, cpus


def _hex(value: Any) -> int | None:
    return None if value is None else int(value, 16)
