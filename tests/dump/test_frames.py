"""The free-span list: decoded spans, the kernel's span hash, long lists, and every way it can break."""

from __future__ import annotations

from pathlib import Path

import dump_fixtures as F
import numpy as np
import pytest

from kmtool.dump import frames as frames_module
from kmtool.dump.checks.common import u64 as _u64
from kmtool.dump.checks.treap import address_index, span_treap
from kmtool.dump.frames import FreeList, read_free_list
from kmtool.dump.records import numpy_dtype
from kmtool.dump.source import open_dump
from kmtool.errors import DumpError
from kmtool.layout.table import PAGE_SIZE, MiB
from kmtool.schemas.frames import (
    FRAME_SPAN_MAGIC,
    SPAN_HASH_MULTIPLIER,
    FrameAllocator,
    FrameSpan,
)

STATE = 0x1000


def horner(pairs: list[tuple[int, int]]) -> str:
    """The ready report's span_hash (kmtool.schemas.frames), one word at a time in pure Python."""
    h = 0
    for start, count in pairs:
        for word in (start, count):
            h = (h * SPAN_HASH_MULTIPLIER + word) % (1 << 64)
    return f"0x{h:016x}"


def list_dump(path: Path, spans: list[tuple[int, int]], size: int = 64 * MiB,
              links: dict[int, int] | None = None) -> Path:  # fmt: skip
    """A raw image holding an allocator state at STATE and one node per span (next overridable)."""
    image = bytearray(size)
    links = links or {}
    root, tree = F.treap(sorted(s for s, _ in spans))
    for i, (start, count) in enumerate(spans):
        nxt = links.get(start, spans[i + 1][0] if i + 1 < len(spans) else 0)
        prev = spans[i - 1][0] if i else 0
        left, right, priority = tree[start]
        node = FrameSpan.build({"magic": FRAME_SPAN_MAGIC, "start": start, "count": count,
                                "next": nxt, "prev": prev, "left": left, "right": right,
                                "priority": priority})  # fmt: skip
        image[start : start + len(node)] = node
    head = spans[0][0] if spans else 0
    state = FrameAllocator.build({"head": head, "free_frames": sum(c for _, c in spans),
                                  "spans": len(spans), "managed_frames": 0, "alloc_calls": 0,
                                  "free_calls": 0, "root": root, "limit": size})  # fmt: skip
    image[STATE : STATE + len(state)] = state
    path.write_bytes(bytes(image))
    return path


def test_fixture_spans_and_hash(tmp_path: Path) -> None:
    fx = F.build()
    mem = open_dump(fx.write_raw(tmp_path / "d.raw")).memory
    fl = read_free_list(mem, fx.addresses["frames"])
    spans = list(zip(fl.starts.tolist(), fl.counts.tolist(), strict=True))
    assert spans == fx.truth["spans"]
    doc = fl.to_json()
    assert doc["free_frames"] == fx.truth["free_frames"] and doc["spans"] == len(spans)
    assert doc["span_list"] == [[hex(s), c] for s, c in spans]
    assert doc["span_hash"] == horner(spans)
    largest = max(spans, key=lambda s: s[1])
    assert doc["largest_span"] == {"start": hex(largest[0]), "count": largest[1]}
    assert doc["fragmentation"] == round(1 - largest[1] / fx.truth["free_frames"], 6)


def test_empty_list(tmp_path: Path) -> None:
    fl = read_free_list(open_dump(list_dump(tmp_path / "e.raw", [])).memory, STATE)
    assert len(fl.nodes) == 0 and fl.free_frames == 0 and fl.largest() is None
    assert fl.to_json()["span_hash"] == horner([])


def test_long_dense_and_sparse_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dense = [(MiB + 2 * PAGE_SIZE * i, 1) for i in range(6000)]  # every other frame: dense windows
    sparse = [(52 * MiB + MiB * i, 5) for i in range(8)]  # then far apart: the plain loop
    spans = dense + sparse
    mem = open_dump(list_dump(tmp_path / "l.raw", spans)).memory
    bounded = read_free_list(mem, STATE)
    mem.bounded = False
    resident = read_free_list(mem, STATE)
    for fl in (bounded, resident):
        assert fl.addresses.tolist() == [s for s, _ in spans]
        assert fl.counts.tolist() == [c for _, c in spans]
        assert (fl.nodes["prev"][1:] == fl.addresses[:-1]).all()
    # the vectorised span hash has no cap: it equals the word-by-word definition, in one block
    # and in many (the last one short)
    assert bounded.span_hash() == horner(spans)
    for block in (2, 6, 4096):
        monkeypatch.setattr(frames_module, "HASH_BLOCK", block)
        assert bounded.span_hash() == horner(spans), block
    treap = span_treap(bounded)
    assert treap is not None and treap.ok, treap


@pytest.mark.parametrize("dense", [True, False])
def test_address_index_both_ways(dense: bool) -> None:
    # page-aligned keys close together use a page table, others a binary search: same answers
    rng = np.random.default_rng(5)
    gap = 3 if dense else 1000
    key = np.uint64(1 << 20) + np.arange(500, dtype=np.uint64) * np.uint64(gap * PAGE_SIZE)
    key = key[rng.permutation(len(key))]
    queries = np.concatenate((key, key + np.uint64(8), key + np.uint64(PAGE_SIZE), _u64([0, 1,
                              (1 << 64) - 1, (1 << 64) - PAGE_SIZE])))  # fmt: skip
    got = address_index(key)(queries)
    expected = [int(np.flatnonzero(key == q)[0]) if q in key else -1 for q in queries.tolist()]
    assert got.tolist() == expected


def partial(path: Path) -> tuple[list[int], str | None]:
    """The span starts read from the list of the dump at `path`, and why the list stopped."""
    fl = read_free_list(open_dump(path).memory, STATE)
    assert fl.to_json()["error"] == fl.error and fl.to_json()["spans"] == len(fl.nodes)
    return fl.starts.tolist(), fl.error


def test_cycle_names_the_closing_node(tmp_path: Path) -> None:
    spans = [(MiB + 2 * PAGE_SIZE * i, 1) for i in range(100)] + [(20 * MiB, 2), (30 * MiB, 3)]
    path = list_dump(tmp_path / "c.raw", spans, links={30 * MiB: MiB + 2 * PAGE_SIZE * 50})
    starts, error = partial(path)
    assert starts == [s for s, _ in spans]  # every node once, up to the one closing the cycle
    assert error == (
        f"Frame free list: a cycle: node {hex(30 * MiB)} links back to "
        f"{hex(MiB + 2 * PAGE_SIZE * 50)}, visited before."
    )


def test_self_loop(tmp_path: Path) -> None:
    path = list_dump(tmp_path / "s.raw", [(2 * MiB, 1)], links={2 * MiB: 2 * MiB})
    starts, error = partial(path)
    assert starts == [2 * MiB] and error is not None
    assert "node 0x200000 links back to 0x200000" in error


def test_node_outside_the_dump(tmp_path: Path) -> None:
    path = list_dump(tmp_path / "o.raw", [(2 * MiB, 1), (3 * MiB, 1)], links={3 * MiB: 1 << 40})
    assert partial(path) == (
        [2 * MiB, 3 * MiB],
        "Frame free list: node 0x10000000000 (linked from 0x300000) is outside the dump.",
    )


def test_head_outside_the_dump(tmp_path: Path) -> None:
    path = list_dump(tmp_path / "h.raw", [(2 * MiB, 1)])
    data = bytearray(path.read_bytes())
    data[STATE : STATE + 8] = (1 << 40).to_bytes(8, "little")  # km_frames.head
    path.write_bytes(bytes(data))
    assert partial(path) == (
        [],
        "Frame free list: node 0x10000000000 (linked from the list head) is outside the dump.",
    )


def test_misaligned_node(tmp_path: Path) -> None:
    path = list_dump(tmp_path / "m.raw", [(2 * MiB, 1), (3 * MiB, 1)], links={2 * MiB: 3 * MiB + 8})
    assert partial(path) == (
        [2 * MiB],
        "Frame free list: node 0x300008 is not page aligned (linked from node 0x200000).",
    )


def test_wrong_magic(tmp_path: Path) -> None:
    path = list_dump(tmp_path / "w.raw", [(2 * MiB, 1), (3 * MiB, 1), (4 * MiB, 1)])
    data = bytearray(path.read_bytes())
    data[3 * MiB : 3 * MiB + 8] = b"NOTASPAN"
    path.write_bytes(bytes(data))
    raw = int.from_bytes(b"NOTASPAN", "little")
    assert partial(path) == (
        [2 * MiB],
        f"Frame free list: node 0x300000 has magic {hex(raw)}, not {hex(FRAME_SPAN_MAGIC)} "
        "(linked from node 0x200000).",
    )


def test_absurd_count(tmp_path: Path) -> None:
    path = list_dump(tmp_path / "a.raw", [(2 * MiB, 1), (3 * MiB, 1 << 40), (4 * MiB, 1)])
    assert partial(path) == (
        [2 * MiB],
        f"Frame free list: node 0x300000 has count {hex(1 << 40)} ({1 << 40} frames), more than "
        f"the {64 * MiB // PAGE_SIZE} frames the dump holds (linked from node 0x200000).",
    )


def test_head_in_the_zero_tail_of_an_elf(tmp_path: Path) -> None:
    fx = F.build()
    tail = F.RAM[1][0] + F.RAM[1][1] - F.PAGE_SIZE
    changed = F.Fixture(bytearray(fx.image), fx.cr3, dict(fx.truth), dict(fx.addresses))
    changed.poke(fx.addresses["frames"], tail)  # head -> a page the ELF does not store
    mem = open_dump(changed.write_elf(tmp_path / "z.elf")).memory
    fl = read_free_list(mem, fx.addresses["frames"])
    assert len(fl.nodes) == 0 and fl.error is not None
    assert fl.error.startswith(f"Frame free list: node {hex(tail)} has magic 0x0")


def test_state_outside_the_dump(tmp_path: Path) -> None:
    mem = open_dump(list_dump(tmp_path / "x.raw", [(2 * MiB, 1)])).memory
    size = FrameAllocator.sizeof()
    with pytest.raises(DumpError, match=rf"`frame allocator state` at 0x10000000 \({size} bytes\)"):
        read_free_list(mem, 0x10000000)


def test_counts_are_numpy_uint64(tmp_path: Path) -> None:
    fl = read_free_list(open_dump(list_dump(tmp_path / "n.raw", [(2 * MiB, 7)])).memory, STATE)
    assert fl.counts.dtype == np.uint64 and fl.ends.tolist() == [2 * MiB + 7 * PAGE_SIZE]


def test_span_hash_has_no_cap() -> None:
    # 100,000 spans (the old FNV-1a hash gave up above 65,536): vectorised equals word by word
    n = 100_000
    nodes = np.zeros(n, dtype=numpy_dtype(FrameSpan))
    nodes["start"] = (np.arange(n, dtype=np.uint64) * np.uint64(3) + np.uint64(1)) << np.uint64(12)
    nodes["count"] = np.arange(n, dtype=np.uint64) % np.uint64(7) + np.uint64(1)
    fl = FreeList(STATE, None, nodes, nodes["start"].astype(np.uint64))
    pairs = list(zip(nodes["start"].tolist(), nodes["count"].tolist(), strict=True))
    assert fl.span_hash() == horner(pairs)


def test_span_hash_definition() -> None:
    # one span at 0x3000 of 5 frames: the words 0x3000, 5 give 0x3000 * P + 5 (mod 2^64)
    nodes = np.zeros(1, dtype=numpy_dtype(FrameSpan))
    nodes["start"], nodes["count"] = 0x3000, 5
    fl = FreeList(STATE, None, nodes, np.array([0x3000], dtype=np.uint64))
    assert fl.span_hash() == f"0x{(0x3000 * SPAN_HASH_MULTIPLIER + 5) % (1 << 64):016x}"
    assert fl.span_hash() == "0x66d2c7ddf743f005"
