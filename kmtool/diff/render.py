"""`kmtool diff`'s tables: leaks first, then owner changes, mappings, heap and counters."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from kmtool.diff.compare import Diff
from kmtool.diff.mappings import MappingChange
from kmtool.layout.table import PAGE_SIZE
from kmtool.units import plural, size_text

SHOWN = 50  # rows per table in text (JSON lists more; the counts are whole)


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, overflow="fold")
    return table


def _ranges(ranges: list[tuple[int, int]]) -> str:
    text = ", ".join(f"{a:#x}-{b:#x}" for a, b in ranges[:4])
    return text + (f" (and {len(ranges) - 4} more)" if len(ranges) > 4 else "")


def _mapping(c: MappingChange) -> tuple[str, ...]:
    m = c.mapping
    pieces = f" (first of {c.runs} targets)" if c.runs > 1 else ""
    if c.change == "changed":
        assert c.before is not None and c.after is not None
        what = (f"{c.what}: {c.before.phys:#x} {c.before.flags} -> {c.after.phys:#x} "
                f"{c.after.flags}{pieces}")  # fmt: skip
    else:
        what = f"-> {m.phys:#x} {m.flags}{pieces}"
    return (c.space, c.change, f"{m.start:#x}", size_text(m.size), what)


def render(diff: Diff, a: str, b: str) -> RenderableType:
    """The whole diff of A and B for a terminal."""
    parts: list[RenderableType] = [Text(f"kmtool diff {a} -> {b}: " + (
        ", ".join(sorted(diff.kinds)) if diff.kinds else "no change"), style="bold")]  # fmt: skip
    if diff.leaks is not None:
        parts.append(Text(f"LEAK: {plural(diff.leaks.frames, 'frame')} unaccounted in B that "
                          f"were owned in A: {_ranges(diff.leaks.ranges)}", style="bold red"))  # fmt: skip
    if diff.owners:
        t = _table("Frames that changed owner", "from", "to", "frames", "size", "ranges")
        for c in diff.owners[:SHOWN]:
            t.add_row(
                c.before, c.after, str(c.frames), size_text(c.frames * PAGE_SIZE), _ranges(c.ranges)
            )
        parts.append(t)
    if not diff.owners_complete:
        parts.append(Text("(a document listed only its first owner ranges: owner changes are "
                          "partial; diff the dumps for all of them)", style="yellow"))  # fmt: skip
    if diff.mappings:
        t = _table(f"Mappings ({len(diff.mappings)} changes)", "space", "change", "start",
                   "size", "target and rights")  # fmt: skip
        for mc in diff.mappings[:SHOWN]:
            t.add_row(*_mapping(mc))
        parts.append(t)
    if not diff.mappings_complete:
        parts.append(Text("(a document listed only its first ranges of an address space: "
                          "mapping changes are partial; diff the dumps for all of them)",
                          style="yellow"))  # fmt: skip
    for wx in diff.new_wx:
        start = 0 if wx.after is None else wx.after.start
        parts.append(Text(f"W+X: kernel range {start:#x} is writable and executable in B",
                          style="bold red"))  # fmt: skip
    if diff.heap or diff.heap_bytes:
        t = _table(f"Heap (bytes in use {diff.heap_bytes:+d})", "order", "block", "used", "free")
        for order, (used, free) in diff.heap.items():
            t.add_row(str(order), size_text(1 << order), f"{used:+d}", f"{free:+d}")
        parts.append(t)
    if diff.counters:
        t = _table("Counters", "counter", "A", "B", "delta")
        for name, (va, vb) in diff.counters.items():
            t.add_row(name, str(va), str(vb), f"{vb - va:+d}")
        parts.append(t)
    return Group(*parts)
