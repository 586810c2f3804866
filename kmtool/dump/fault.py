"""The kernel's fault record (kmtool/schemas/fault.py; docs/design.md §11), read from a dump.

The core-info block's `fault_phys` names the record. `read_fault_record` decodes it as it is, with
the message as text; it says nothing about what the fault means (that is the fault explainer's job)
and returns None when the record says nothing went wrong (seq 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kmtool.dump.memory import PhysicalMemory
from kmtool.dump.records import parse
from kmtool.errors import DumpError
from kmtool.schemas.fault import (
    FAULT_KIND_EXCEPTION,
    FAULT_KIND_PANIC,
    FAULT_MAX_FRAMES,
    FaultRecord,
)

KIND_NAMES = {FAULT_KIND_EXCEPTION: "exception", FAULT_KIND_PANIC: "panic"}


@dataclass(frozen=True)
class FaultRecordView:
    """A decoded fault record: `fields` (the schema's Container), `kind` as a word, the message
    text and the valid return addresses."""

    address: int
    fields: Any
    kind: str
    message: str
    frames: tuple[int, ...]

    def __getattr__(self, name: str) -> Any:
        return self.fields[name]


def read_fault_record(memory: PhysicalMemory, pa: int) -> FaultRecordView | None:
    """The fault record at physical `pa`, or None when its `seq` is 0 (no fault). DumpError when it
    is unreadable or its kind or frame count cannot be."""
    data = memory.read(pa, FaultRecord.sizeof(), "fault record")
    rec = parse(FaultRecord, data, "fault record", pa)
    if rec.seq == 0:
        return None
    if rec.kind not in KIND_NAMES:
        raise DumpError(f"The fault record at {hex(pa)} has kind {rec.kind} ({hex(rec.kind)}).")
    if rec.frame_count > FAULT_MAX_FRAMES:
        raise DumpError(
            f"The fault record at {hex(pa)} claims {rec.frame_count} frames; it holds at most "
            f"{FAULT_MAX_FRAMES}."
        )
    text = bytes(rec.message).split(b"\0", 1)[0].decode("utf-8", errors="replace")
    frames = tuple(int(f) for f in rec.frames[: rec.frame_count])
    return FaultRecordView(pa, rec, KIND_NAMES[rec.kind], text, frames)
