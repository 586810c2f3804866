"""Checks of a built kernel ELF against the plan (`kmtool layout report --kernel ELF`).

`load_kernel(path)` reads what the checks need (program headers, entry point, a few symbols) into
a `KernelImage` through kmtool.elf.kernel, the one reader of the kernel ELF; it raises its
`KernelElfError` when the file is missing or not an ELF at all. `check_kernel(image)` then returns
named `Check`s:

    kernel-format             ELF64, little-endian, x86-64, ET_EXEC, at least one PT_LOAD
    kernel-segments-in-image  every PT_LOAD lies inside the `kernel-image` region
    kernel-entry-executable   e_entry lies in an executable PT_LOAD and is the `_start` symbol
    kernel-no-wx              no PT_LOAD is both writable and executable
    kernel-segment-pages      no two PT_LOADs share a 4 KiB page (the loader maps each page with the
                              permissions of one segment)
    kernel-symbols            image start and end symbols bracket the PT_LOADs; the BSS symbols
                              lie in the zero-filled part of a writable PT_LOAD
    kernel-image-size         the image from the link base fits in the `kernel-image` region
                              (a segment below the region is named, not measured)

The linker script names the symbols; the first name found in each list below is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kmtool.check import Check
from kmtool.elf.kernel import EM_X86_64, Segment, read_kernel
from kmtool.layout import table
from kmtool.layout.checks import (
    Fault,
    find_region,
    missing_region,
    verdict,
)
from kmtool.layout.table import Region
from kmtool.units import hexaddr, plural, size_text

IMAGE_START_SYMBOLS = ("__kernel_start", "_kernel_start", "__image_start", "kernel_start")
IMAGE_END_SYMBOLS = ("__kernel_end", "_kernel_end", "__image_end", "kernel_end", "_end")
BSS_START_SYMBOLS = ("__bss_start", "_bss_start", "__bss_begin")
BSS_END_SYMBOLS = ("__bss_end", "_bss_end", "__bss_stop")
ENTRY_SYMBOL = "_start"


@dataclass(frozen=True)
class KernelImage:
    """What the checks need from a kernel ELF."""

    path: str
    elf_class: int
    little_endian: bool
    machine: str
    elf_type: str
    entry: int
    segments: tuple[Segment, ...]
    symbols: dict[str, int] = field(default_factory=dict)  # only the names the checks look for
    has_symtab: bool = True

    @property
    def start(self) -> int:
        """Lowest PT_LOAD address (0 without segments)."""
        return min((s.vaddr for s in self.segments), default=0)

    @property
    def end(self) -> int:
        """One past the highest PT_LOAD byte (0 without segments)."""
        return max((s.vaddr + s.memsz for s in self.segments), default=0)

    @property
    def size(self) -> int:
        """Bytes from the lowest to one past the highest PT_LOAD byte."""
        return self.end - self.start

    def symbol(self, names: Sequence[str]) -> tuple[str, int] | None:
        """The first of `names` the ELF defines, with its value."""
        for name in names:
            if name in self.symbols:
                return name, self.symbols[name]
        return None


WANTED_SYMBOLS = frozenset(
    (*IMAGE_START_SYMBOLS, *IMAGE_END_SYMBOLS, *BSS_START_SYMBOLS, *BSS_END_SYMBOLS, ENTRY_SYMBOL)
)


@dataclass(frozen=True)
class ImageExtent:
    """The kernel image as the plan sees it: `start` is the link base (or a lower segment inside
    `kernel-image`), `end` one past the last byte of the segments from there up. Segments below
    `kernel-image` are left out and listed in `below`, so a stray low segment cannot make the image
    span most of the address space."""

    start: int
    end: int
    below: tuple[Segment, ...]

    @property
    def size(self) -> int:
        return self.end - self.start


def image_extent(image: KernelImage, regions: Sequence[Region] | None = None) -> ImageExtent:
    """The extent of `image` from the link base up (see ImageExtent); empty without segments."""
    region = find_region(table.REGIONS if regions is None else regions, "kernel-image")
    floor = table.KERNEL_LINK_BASE if region is None else min(region.start, table.KERNEL_LINK_BASE)
    inside = [s for s in image.segments if s.vaddr >= floor]
    start = min([table.KERNEL_LINK_BASE, *(s.vaddr for s in inside)])
    end = max([start, *(s.vaddr + s.memsz for s in inside)])
    return ImageExtent(start, end, tuple(s for s in image.segments if s.vaddr < floor))


def load_kernel(path: Path) -> KernelImage:
    """The checks' view of the kernel ELF at `path`, read by kmtool.elf.kernel (of any machine, so
    that `kernel-format` names a wrong one); KernelElfError when it is missing or not an ELF."""
    elf = read_kernel(path, any_machine=True)
    symbols = {name: sym.value for name in WANTED_SYMBOLS if (sym := elf.symbol(name)) is not None}
    return KernelImage(
        path=str(path),
        elf_class=elf.elf_class,
        little_endian=elf.little_endian,
        machine=elf.machine,
        elf_type=elf.elf_type,
        entry=elf.entry,
        segments=elf.segments,
        symbols=symbols,
        has_symtab=elf.has_symtab,
    )


def check_format(image: KernelImage) -> Check:
    """ELF64 little-endian x86-64 executable with at least one PT_LOAD."""
    problems = []
    if image.elf_class != 64:
        problems.append(f"ELF{image.elf_class}, not ELF64")
    if not image.little_endian:
        problems.append("big-endian")
    if image.machine != EM_X86_64:
        problems.append(f"machine {image.machine}, not EM_X86_64")
    if image.elf_type != "ET_EXEC":
        problems.append(f"type {image.elf_type}, not ET_EXEC")
    if not image.segments:
        problems.append("no PT_LOAD segment")
    if problems:
        return Check(
            "kernel-format", False, f"`{image.path}` is {', '.join(problems)}.", ("kernel ELF",)
        )
    return Check(
        "kernel-format",
        True,
        f"ELF64 x86-64 executable with {plural(len(image.segments), 'PT_LOAD segment')}.",
    )


def check_segments_in_image(image: KernelImage, regions: Sequence[Region]) -> Check:
    """Every PT_LOAD lies wholly inside the `kernel-image` region."""
    region = find_region(regions, "kernel-image")
    if region is None:
        return missing_region("kernel-segments-in-image", "kernel-image")
    faults: list[Fault] = [
        ((s.name,), f"{s.label} lies outside `kernel-image`")
        for s in image.segments
        if not (region.start <= s.vaddr and s.end <= region.end)
    ]
    return verdict(
        "kernel-segments-in-image",
        faults,
        f"Every PT_LOAD segment ({len(image.segments)}) lies inside `kernel-image` "
        f"({hexaddr(region.start)}-{hexaddr(region.end)}).",
    )


def check_entry(image: KernelImage) -> Check:
    """e_entry is inside an executable PT_LOAD and equals the `_start` symbol."""
    where = next((s for s in image.segments if s.vaddr <= image.entry <= s.end), None)
    faults: list[Fault] = []
    if where is None:
        faults.append((("entry",), f"the entry point {hexaddr(image.entry)} is in no PT_LOAD"))
    elif not where.executable:
        faults.append(
            (
                ("entry", where.name),
                f"the entry point {hexaddr(image.entry)} is in {where.label}, not executable",
            )
        )
    start = image.symbols.get(ENTRY_SYMBOL)
    if start is None:
        faults.append((("entry",), f"the ELF defines no `{ENTRY_SYMBOL}` symbol"))
    elif start != image.entry:
        faults.append(
            (
                ("entry",),
                f"the entry point {hexaddr(image.entry)} is not "
                f"`{ENTRY_SYMBOL}` ({hexaddr(start)})",
            )
        )
    seg = where.name if where is not None else "no segment"
    return verdict(
        "kernel-entry-executable",
        faults,
        f"The entry point `{ENTRY_SYMBOL}` {hexaddr(image.entry)} is in {seg} (executable).",
    )


def check_no_wx(image: KernelImage) -> Check:
    """No PT_LOAD is both writable and executable."""
    faults: list[Fault] = [
        ((s.name,), f"{s.label} is both writable and executable")
        for s in image.segments
        if s.writable and s.executable
    ]
    return verdict("kernel-no-wx", faults, "No segment is both writable and executable.")


def check_segment_pages(image: KernelImage) -> Check:
    """No two PT_LOADs touch the same 4 KiB page (the loader sets W and NX per page)."""
    page = table.PAGE_SIZE
    faults: list[Fault] = []
    ordered = sorted(image.segments, key=lambda s: s.vaddr)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if b.vaddr // page <= a.end // page:
            faults.append(
                (
                    (a.name, b.name),
                    f"{a.label} and {b.label} share the page at {hexaddr(b.vaddr // page * page)}",
                )
            )
    return verdict(
        "kernel-segment-pages", faults, "Each 4 KiB page of the image belongs to one segment."
    )


SYMBOL_KINDS = (
    ("image start", IMAGE_START_SYMBOLS),
    ("image end", IMAGE_END_SYMBOLS),
    ("BSS start", BSS_START_SYMBOLS),
    ("BSS end", BSS_END_SYMBOLS),
)

Found = tuple[str, int] | None  # the symbol found for one kind: (name, value), or None


def check_symbols(image: KernelImage, regions: Sequence[Region]) -> Check:
    """Image start/end symbols bracket the segments; BSS symbols lie in zero-filled memory."""
    name = "kernel-symbols"
    if not image.has_symtab:
        return Check(name, False, f"`{image.path}` has no symbol table (stripped?).", ("symbols",))
    found = {what: image.symbol(names) for what, names in SYMBOL_KINDS}
    faults: list[Fault] = [
        ((names[0],), f"no {what} symbol (`{names[0]}`)")
        for what, names in SYMBOL_KINDS
        if found[what] is None
    ]
    region = find_region(regions, "kernel-image")
    faults += _image_start_faults(image, found["image start"])
    faults += _image_end_faults(image, region, found["image end"])
    faults += _bss_faults(image, found["BSS start"], found["BSS end"])
    passed = "Symbols in place: " + ", ".join(
        f"`{v[0]}` {hexaddr(v[1])}" for v in found.values() if v is not None
    )
    return verdict(name, faults, passed + ".")


def _image_start_faults(image: KernelImage, start: Found) -> list[Fault]:
    """The image start symbol is the link base, and no segment lies below it."""
    if start is None:
        return []
    if start[1] != table.KERNEL_LINK_BASE:
        return [
            (
                (start[0],),
                f"`{start[0]}` is {hexaddr(start[1])}, not the link base "
                f"{hexaddr(table.KERNEL_LINK_BASE)}",
            )
        ]
    if image.segments and start[1] > image.start:
        return [((start[0],), f"`{start[0]}` is above the first segment at {hexaddr(image.start)}")]
    return []


def _image_end_faults(image: KernelImage, region: Region | None, end: Found) -> list[Fault]:
    """The image end symbol is at or past the last segment and inside `kernel-image`."""
    if end is None:
        return []
    faults: list[Fault] = []
    if image.segments and end[1] < image.end:
        faults.append(
            (
                (end[0],),
                f"`{end[0]}` {hexaddr(end[1])} is below the end of the last segment "
                f"{hexaddr(image.end)}",
            )
        )
    if region is not None and end[1] > region.end + 1:
        faults.append(((end[0],), f"`{end[0]}` {hexaddr(end[1])} is beyond `kernel-image`"))
    return faults


def _bss_faults(image: KernelImage, bss_start: Found, bss_end: Found) -> list[Fault]:
    """The BSS symbols are in order and bound the zero-filled part of one writable segment."""
    if bss_start is None or bss_end is None:
        return []
    lo, hi = bss_start[1], bss_end[1]
    pair = (bss_start[0], bss_end[0])
    if lo > hi:
        return [(pair, f"`{pair[0]}` {hexaddr(lo)} is above `{pair[1]}` {hexaddr(hi)}")]
    home = next(
        (
            s
            for s in image.segments
            if s.writable and s.vaddr + s.filesz <= lo and hi <= s.vaddr + s.memsz
        ),
        None,
    )
    if home is None:
        return [
            (
                pair,
                f"the BSS {hexaddr(lo)}-{hexaddr(hi)} is not in the zero-filled part of a "
                "writable segment",
            )
        ]
    return []


def check_image_size(image: KernelImage, regions: Sequence[Region]) -> Check:
    """The image, from the link base to its last byte, fits in the `kernel-image` region.

    A segment below the region is named, not measured: counting from it would make the image span
    most of the address space.
    """
    region = find_region(regions, "kernel-image")
    if region is None:
        return missing_region("kernel-image-size", "kernel-image")
    room = region.end + 1 - table.KERNEL_LINK_BASE
    extent = image_extent(image, regions)
    used = extent.size if image.segments else 0
    leaves = f"{size_text(room)} that `kernel-image` leaves above the link base"
    faults: list[Fault] = [
        ((s.name,), f"{s.label} lies below `kernel-image`, outside the image") for s in extent.below
    ]
    if used > room:
        faults.append(
            (
                ("kernel-image",),
                f"the image needs {size_text(used)} from the link base but `kernel-image` leaves "
                f"{size_text(room)}",
            )
        )
    elif faults:
        faults.append(((), f"the rest of the image takes {size_text(used)} of the {leaves}"))
    return verdict(
        "kernel-image-size", faults, f"The image takes {size_text(used)} of the {leaves}."
    )


def check_kernel(image: KernelImage, regions: Sequence[Region] | None = None) -> list[Check]:
    """Every check of `image` against the plan, in report order."""
    regions = table.REGIONS if regions is None else regions
    return [
        check_format(image),
        check_segments_in_image(image, regions),
        check_entry(image),
        check_no_wx(image),
        check_segment_pages(image),
        check_symbols(image, regions),
        check_image_size(image, regions),
    ]
