"""Partial parts (docs/design.md §10): a corrupt free-list node in a real dump fixture leaves the
spans read before it, one failed check naming the node, and every other part decoded.

Each case bends one word of the fixture's free list (F.build) the way a broken kernel would and
asserts, against the healthy fixture's spans (its `truth`): the partial spans are exactly a prefix
of the healthy ones, "kernel parts readable" is the only failed check and carries the sentence,
the checks that need the whole list are "not applicable" rows, and the page tables and the heap
still decode. One case goes through the whole `kmtool inspect` process for `--part frames` and
`--json`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import dump_fixtures as F
import pytest
from conftest import run_kmtool

from kmtool.dump import heap as heap_module
from kmtool.dump.inspection import Inspection, Options, inspect_dump
from kmtool.dump.records import field_offset
from kmtool.layout.table import PAGE_SIZE
from kmtool.schemas.frames import FRAME_SPAN_MAGIC, FrameAllocator, FrameSpan

HEALTHY = F.build()
SPANS = HEALTHY.truth["spans"]
STATE = HEALTHY.addresses["frames"]
RAM_FRAMES = sum(size for _, size in F.RAM) // PAGE_SIZE
NEEDS_THE_WHOLE_LIST = (
    "span treap matches the list",
    "free frames match the kernel counter",
    "span count matches the kernel counter",
    "no leaked frames",
)


def node_field(k: int, name: str) -> int:
    """The physical address of field `name` of the k-th node of the healthy list."""
    return SPANS[k][0] + field_offset(FrameSpan, name)


def next_to(target: int, k: int = 3) -> Callable[[F.Fixture], None]:
    return lambda fx: fx.poke(node_field(k, "next"), target)


# name -> (how to break the fixture, spans kept, the sentence)
CASES: dict[str, tuple[Callable[[F.Fixture], None], int, str]] = {
    "cycle": (
        next_to(SPANS[1][0]),
        4,
        f"Frame free list: a cycle: node {hex(SPANS[3][0])} links back to {hex(SPANS[1][0])}, "
        "visited before.",
    ),
    "self loop": (
        next_to(SPANS[3][0]),
        4,
        f"Frame free list: a cycle: node {hex(SPANS[3][0])} links back to {hex(SPANS[3][0])}, "
        "visited before.",
    ),
    "next outside the dump": (
        next_to(1 << 40),
        4,
        f"Frame free list: node {hex(1 << 40)} (linked from {hex(SPANS[3][0])}) is outside the dump.",
    ),
    "next misaligned": (
        next_to(SPANS[4][0] + 8),
        4,
        f"Frame free list: node {hex(SPANS[4][0] + 8)} is not page aligned (linked from node "
        f"{hex(SPANS[3][0])}).",
    ),
    "absurd count": (
        lambda fx: fx.poke(node_field(5, "count"), 1 << 60),
        5,
        f"Frame free list: node {hex(SPANS[5][0])} has count {hex(1 << 60)} ({1 << 60} frames), "
        f"more than the {RAM_FRAMES} frames the dump holds (linked from node {hex(SPANS[4][0])}).",
    ),
    "wrong magic": (
        lambda fx: fx.poke(node_field(2, "magic"), FRAME_SPAN_MAGIC ^ 1),
        2,
        f"Frame free list: node {hex(SPANS[2][0])} has magic {hex(FRAME_SPAN_MAGIC ^ 1)}, not "
        f"{hex(FRAME_SPAN_MAGIC)} (linked from node {hex(SPANS[1][0])}).",
    ),
    "head outside the dump": (
        lambda fx: fx.poke(STATE + field_offset(FrameAllocator, "head"), 1 << 40),
        0,
        f"Frame free list: node {hex(1 << 40)} (linked from the list head) is outside the dump.",
    ),
}


def broken(case: str) -> F.Fixture:
    fx = F.Fixture(bytearray(HEALTHY.image), HEALTHY.cr3, HEALTHY.truth, dict(HEALTHY.addresses))
    CASES[case][0](fx)
    return fx


def rows(ins: Inspection) -> dict[str, tuple[bool, str]]:
    return {c.name: (c.ok, c.detail) for c in ins.checks}


def test_the_healthy_fixture_passes_every_check(tmp_path: Path) -> None:
    ins = inspect_dump(HEALTHY.write_elf(tmp_path / "ok.elf"), Options())
    assert ins.failed == [] and ins.frames is not None and ins.frames.error is None
    assert len(SPANS) >= 6  # the cases above bend nodes 1 to 5


@pytest.mark.parametrize("case", list(CASES))
def test_a_corrupt_node_leaves_the_spans_before_it(tmp_path: Path, case: str) -> None:
    _, kept, sentence = CASES[case]
    healthy = inspect_dump(HEALTHY.write_elf(tmp_path / "ok.elf"), Options())
    ins = inspect_dump(broken(case).write_elf(tmp_path / "bad.elf"), Options())
    fl = ins.frames
    assert fl is not None and fl.error == sentence
    got = list(zip(fl.starts.tolist(), fl.counts.tolist(), strict=True))
    assert got == SPANS[:kept]
    # one failed check, naming the node; the checks of the whole list are not applicable
    assert [c.name for c in ins.failed] == ["kernel parts readable"]
    table = rows(ins)
    assert table["kernel parts readable"] == (False, f"frames: {sentence}")
    for name in NEEDS_THE_WHOLE_LIST:
        assert table[name] == (True, f"not applicable, the free list is partial: {sentence}")
    # the checks of each span still ran on the spans read
    assert table["spans sorted and non-overlapping"][0]
    assert "not applicable" not in table["spans inside usable memory"][1]
    # the rest decodes as on the healthy dump
    assert ins.tables is not None and healthy.tables is not None
    assert ins.tables.to_json() == healthy.tables.to_json()
    assert ins.heap is not None and healthy.heap is not None
    assert ins.heap.to_json() == healthy.heap.to_json()
    doc = ins.to_json()["frames"]
    assert doc is not None and doc["error"] == sentence and doc["spans"] == kept
    assert doc["span_list"] == [[hex(s), c] for s, c in SPANS[:kept]]


def test_inspect_shows_the_partial_frames_part(tmp_path: Path) -> None:
    _, kept, sentence = CASES["next outside the dump"]
    path = broken("next outside the dump").write_elf(tmp_path / "bad.elf")
    shown = run_kmtool("inspect", str(path), "--part", "frames")
    assert shown.returncode == 1, shown.stderr  # a failed check, not a crash
    text = " ".join(shown.stdout.split())  # the sentence may fold across lines
    assert "partial: read up to the fault below" in text and f"partial: {sentence}" in text
    for start, _ in SPANS[:kept]:
        assert hex(start) in shown.stdout
    assert hex(SPANS[kept][0]) not in shown.stdout.split("Free spans")[1].split("free frames")[0]
    doc = json.loads(run_kmtool("inspect", str(path), "--json").stdout)
    assert doc["frames"]["error"] == sentence and doc["part_errors"]["frames"] == sentence
    assert doc["heap"] is not None and doc["page_tables"]["error"] is None


def test_a_heap_past_the_block_bound_keeps_the_orders_above_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The buddy descent stops at the order whose blocks would pass MAX_BLOCKS (lowered here, so
    the fixture's small heap reaches it): the blocks of the orders above are the healthy heap's,
    "kernel parts readable" fails naming where it stopped, the heap's checks are not applicable,
    and the page tables and the free list decode as on the healthy dump."""
    path = HEALTHY.write_elf(tmp_path / "ok.elf")
    healthy = inspect_dump(path, Options())
    assert healthy.heap is not None and healthy.heap.error is None
    monkeypatch.setattr(heap_module, "MAX_BLOCKS", 10)
    ins = inspect_dump(path, Options())
    h = ins.heap
    assert h is not None and h.error is not None
    stop = int(h.error.split("(at order ")[1].split(",")[0])
    assert f"more than 10 blocks (at order {stop}," in h.error
    assert [b for b in healthy.heap.blocks if b.order > stop] == h.blocks
    assert len(h.blocks) < len(healthy.heap.blocks) and h.free_lists == {}
    assert [c.name for c in ins.failed] == ["kernel parts readable"]
    table = rows(ins)
    assert table["kernel parts readable"] == (False, f"heap: {h.error}")
    for name in ("heap headers consistent", "heap counters match"):
        assert table[name] == (True, f"not applicable, the heap is partial: {h.error}")
    assert ins.tables is not None and healthy.tables is not None
    assert ins.tables.to_json() == healthy.tables.to_json()
    assert ins.frames is not None and healthy.frames is not None
    assert ins.frames.to_json() == healthy.frames.to_json()
    doc = ins.to_json()
    assert doc["heap"] is not None and doc["heap"]["error"] == h.error
    assert doc["part_errors"]["heap"] == h.error
