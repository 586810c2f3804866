"""One side of a diff: what `kmtool diff` compares, read from the `kmtool inspect --json` document
of a dump (kmtool.dump.document), so a dump and a saved document are read by the same code.

A dump is inspected first (as `kmtool inspect` would, without a kernel ELF). A document is taken
as it is; one that is not an inspect document is a DiffError naming the file and the key. A side
spelled `live:` (the build's default session) or `live:SESSION` is a live guest, inspected while
paused exactly as `kmtool inspect --live` does (kmtool.live.snapshot), then resumed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kmtool.diff.mappings import Mapping, SpaceMap
from kmtool.dump.accounting import OWNERS, Intervals
from kmtool.dump.levels import perm_text
from kmtool.errors import KmtoolError

if TYPE_CHECKING:
    from kmtool.dump.inspection import Inspection
    from kmtool.dump.pagetable import Ranges

#: The largest `inspect --json` document read (its lists are bounded; bigger is not one of ours).
MAX_DOCUMENT_BYTES = 1 << 30
LIVE_PREFIX = "live:"  # a side that names a live session rather than a file


class DiffError(KmtoolError):
    """An input of `kmtool diff` that cannot be compared."""


@dataclass
class Snapshot:
    """What one side holds: owners' frames, mappings per space, heap by order, counters."""

    path: Path
    owners: dict[str, Intervals] = field(default_factory=dict)  # OWNERS and "unaccounted"
    owners_complete: bool = True  # false when the document listed only the first ranges
    spaces: dict[str, SpaceMap] = field(default_factory=dict)  # "kernel", "space 1", ...
    heap_orders: dict[int, tuple[int, int]] = field(default_factory=dict)  # order -> (used, free)
    heap_bytes: int = 0
    counters: dict[str, int] = field(default_factory=dict)


def load(path: Path) -> Snapshot:
    """The snapshot of a dump or of a saved `inspect --json` document at `path`, or of the live
    guest `live:[SESSION]` names."""
    if str(path).startswith(LIVE_PREFIX):
        return _live(path, str(path)[len(LIVE_PREFIX) :])
    try:
        with open(path, "rb") as f:
            head = f.read(1)
    except OSError as err:
        raise DiffError(f"Cannot read `{path}`: {err.strerror}.") from None
    if head == b"{":
        size = path.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            raise DiffError(f"`{path}` is a {size}-byte JSON file; an inspect document is at most "
                            f"{MAX_DOCUMENT_BYTES} bytes.")  # fmt: skip
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise DiffError(f"`{path}` starts like JSON but is not: {err}.") from None
    else:
        from kmtool.dump.inspection import Options, inspect_dump
        from kmtool.errors import DumpError

        try:
            ins = inspect_dump(path, Options())
        except DumpError as err:
            raise DiffError(
                f"`{path}` is neither an inspect document nor a dump of the kernel: {err}"
            ) from None
        return _from_inspection(path, ins)
    return from_document(path, doc)


def _live(side: Path, session_path: str) -> Snapshot:
    """The snapshot of the live guest of `session_path` (empty: the build's default session)."""
    from kmtool.artifacts import build_dir
    from kmtool.dump.inspection import Options, inspect_source
    from kmtool.live.session import default_session, read_session
    from kmtool.live.snapshot import paused

    session = read_session(Path(session_path) if session_path else default_session(build_dir()))
    with paused(session) as source:
        return _from_inspection(side, inspect_source(source, Options()))


def _from_inspection(path: Path, ins: Inspection) -> Snapshot:
    """The snapshot of an inspection, with its whole frame accounting."""
    snap = from_document(path, ins.to_json())
    if ins.accounting is not None:  # the whole accounting, not the document's first ranges
        snap.owners = {**ins.accounting.owned, "unaccounted": ins.accounting.unaccounted}
        snap.owners_complete = True
    if ins.tables is not None:  # every range, not the document's first ones
        snap.spaces["kernel"] = _space_of(ins.tables.ranges)
    for space in [] if ins.aspaces is None else ins.aspaces.spaces:
        snap.spaces[f"space {space.id}"] = _space_of(space.user)
    return snap


def from_document(path: Path, doc: Any) -> Snapshot:
    """The snapshot of an inspect document (DiffError when it lacks what a diff needs)."""
    if not isinstance(doc, dict) or "frames" not in doc or "page_tables" not in doc:
        raise DiffError(f"`{path}` is not a `kmtool inspect --json` document (no `frames` key).")
    snap = Snapshot(path)
    try:
        _owners(snap, doc.get("accounting"))
        _spaces(snap, doc)
        _heap(snap, doc.get("heap"))
        _counters(snap, doc)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as err:
        raise DiffError(f"`{path}` is an inspect document kmtool cannot read: {err!r}.") from None
    return snap


def _ranges(pairs: list[list[str]]) -> Intervals:
    """[first, last] hex pairs (inclusive ends) as Intervals."""
    start = np.array([int(a, 16) for a, _ in pairs], dtype=np.uint64)
    end = np.array([int(b, 16) + 1 for _, b in pairs], dtype=np.uint64)
    return Intervals.of(start, end)


def _owners(snap: Snapshot, acc: Any) -> None:
    if acc is None:
        return
    for name in OWNERS:
        snap.owners[name] = _ranges(acc["owner_ranges"].get(name, []))
    leaks = [[r["start"], r["end"]] for r in acc["unaccounted_ranges"]]
    snap.owners["unaccounted"] = _ranges(leaks)
    snap.owners_complete = not acc["owner_ranges_truncated"] and (
        acc["unaccounted_ranges_total"] == len(leaks)
    )


def _mappings(rows: list[dict[str, Any]], total: int) -> SpaceMap:
    """A document's listed ranges; incomplete when it lists fewer than its `total`."""
    found = [Mapping(int(r["start"], 16), r["size"], int(r["phys"], 16), r["flags"]) for r in rows]
    return SpaceMap.of(found, complete=len(found) == total)


def _space_of(ranges: Ranges) -> SpaceMap:
    """The merged ranges of a walk, whole."""
    flags = np.array([perm_text(int(p)) for p in ranges.perm], dtype=str)
    return SpaceMap(ranges.start, ranges.size, ranges.phys, flags)


def _spaces(snap: Snapshot, doc: Any) -> None:
    pt = doc["page_tables"]
    if pt is not None:
        snap.spaces["kernel"] = _mappings(pt["regions"], pt["regions_total"])
    spaces = doc.get("address_spaces")
    for space in [] if spaces is None else spaces["spaces"]:
        snap.spaces[f"space {space['id']}"] = _mappings(
            space["user_ranges"], space["user_ranges_total"]
        )


def _heap(snap: Snapshot, heap: Any) -> None:
    if heap is None:
        return
    snap.heap_bytes = heap["bytes_in_use"]
    for row in heap["by_order"]:
        snap.heap_orders[row["order"]] = (row["used"], row["free"])


def _counters(snap: Snapshot, doc: Any) -> None:
    parts = (
        ("km_frames", (doc["frames"] or {}).get("counters")),
        ("km_heap", (doc.get("heap") or {}).get("counters")),
        ("km_page_stats", (doc["page_tables"] or {}).get("stats")),
    )
    for prefix, counters in parts:
        for name, value in (counters or {}).items():
            if isinstance(value, int) and not isinstance(value, bool):
                snap.counters[f"{prefix}.{name}"] = value
