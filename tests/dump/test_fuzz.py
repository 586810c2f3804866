"""Fuzzing `kmtool inspect` with mutated fixture dumps: a decoded dump or one DumpError, nothing else.

Each example overwrites a few words of a clean fixture image -- mostly fields of the structures
kmtool follows (core-info, boot info, memory map, allocator state, span nodes, heap headers, page
table entries), sometimes anywhere -- with values chosen to hurt: zero, all ones, addresses inside
and outside the dump, pointers to other structures (cycles), present bits on garbage. The budget is
fixed (max_examples, deadline, derandomize) so the test costs the same every run and in CI.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import dump_fixtures as F
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmtool.dump.inspection import Inspection, Options, inspect_dump
from kmtool.dump.memmap import USABLE_TYPES
from kmtool.dump.records import field_offset
from kmtool.errors import KmtoolError
from kmtool.layout.table import PAGE_SIZE
from kmtool.schemas.bootinfo import BootInfo
from kmtool.schemas.coreinfo import CoreInfo
from kmtool.schemas.frames import FrameAllocator, FrameSpan
from kmtool.schemas.heap import Heap

FX = F.build()
IMAGE = bytes(FX.image)


def _fields(base: int, size: int) -> list[int]:
    return list(range(base, base + size, 8))


def _table_entries() -> list[int]:
    entries = []
    for table in FX.truth["tables"]:
        for index in range(512):
            if FX.u64(table + index * 8):
                entries.append(table + index * 8)
    return entries


TARGETS = sorted(set(
    _fields(FX.addresses["core"], CoreInfo.sizeof())
    + _fields(F.BOOT_INFO_PA, BootInfo.sizeof() - 256)
    + _fields(F.MEMORY_MAP_PA, len(F.MEMORY_MAP) * F.DESCRIPTOR_SIZE)
    + _fields(FX.addresses["frames"], FrameAllocator.sizeof())
    + _fields(FX.addresses["heap"], Heap.sizeof())
    + [s + k for s, _ in FX.truth["spans"] for k in range(0, 40, 8)]
    + _table_entries()
))  # fmt: skip
POINTERS = sorted({FX.addresses[k] for k in ("core", "frames", "heap", "boot", "kernel_pml4")}
                  | {s for s, _ in FX.truth["spans"]} | set(FX.truth["tables"]))  # fmt: skip

values = st.one_of(
    st.sampled_from([0, 1, (1 << 64) - 1, 1 << 63, 0x7FFFFFFFFFFFFFFF, 0x800000, 1 << 40]),
    st.sampled_from(POINTERS),
    st.sampled_from(POINTERS).map(lambda p: p | 0x3),  # a present, writable "entry" to a structure
    st.integers(0, len(IMAGE) // PAGE_SIZE - 1).map(lambda p: p * PAGE_SIZE),
    st.integers(0, (1 << 64) - 1),
)
sites = st.one_of(
    st.sampled_from(TARGETS),
    st.integers(0, len(IMAGE) // 8 - 1).map(lambda w: w * 8),
)
mutations = st.lists(st.tuples(sites, values), min_size=1, max_size=4)


def _mutated(muts: list[tuple[int, int]]) -> bytearray:
    image = bytearray(IMAGE)
    for at, value in muts:
        if any(a <= at < a + s for a, s in F.RAM):
            struct.pack_into("<Q", image, at, value)
    return image


def _inspect(path: Path, **options: object) -> None:
    try:
        ins = inspect_dump(path, Options(**options))  # type: ignore[arg-type]
    except KmtoolError as err:
        message = str(err)
        assert message and "\n" not in message and "Traceback" not in message
        return
    doc = ins.to_json()  # rendering the document must not fail either
    json.dumps(doc)
    _assert_sane(ins)


def _assert_sane(ins: Inspection) -> None:
    """What a decoded (possibly hostile) dump must still satisfy: no wrapped or absurd numbers, and
    "every check passed" means the free list fits in the memory the firmware called usable."""
    ram_frames = ins.source.memory.ram_bytes // PAGE_SIZE
    fl = ins.frames
    if fl is not None and len(fl.nodes):
        assert int(fl.counts.max()) <= ram_frames, "an absurd count was decoded"
        assert (fl.ends >= fl.starts).all(), "a span end wrapped"
        assert fl.free_frames == sum(fl.counts.tolist())
        if not ins.failed and ins.memmap is not None:
            us, ue = ins.memmap.intervals(USABLE_TYPES)
            usable = int((ue - us).sum()) // PAGE_SIZE if len(us) else 0
            assert fl.free_frames <= usable, "checks passed on more free frames than usable memory"
    for check in ins.checks:
        assert check.detail and "\n" not in check.detail


FUZZ = settings(max_examples=60, deadline=10_000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])  # fmt: skip


@FUZZ
@given(muts=mutations)
def test_mutated_raw_dumps(tmp_path: Path, muts: list[tuple[int, int]]) -> None:
    path = tmp_path / "fuzz.raw"
    path.write_bytes(bytes(_mutated(muts)))
    _inspect(path)


@FUZZ
@given(muts=mutations, cr3=st.sampled_from([FX.cr3, FX.addresses["core"], 0x900000]))
def test_mutated_elf_dumps_with_walks(
    tmp_path: Path, muts: list[tuple[int, int]], cr3: int
) -> None:
    fx = F.Fixture(_mutated(muts), FX.cr3)
    path = fx.write_elf(tmp_path / "fuzz.elf", cr3=cr3)
    _inspect(path, walk=[F.KERNEL_LINK_BASE, 0xFFFFFF8000123456], pa=[F.KERNEL_PHYS])


@settings(max_examples=40, deadline=10_000, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(data=st.data())
def test_mutated_elf_headers(tmp_path: Path, data: st.DataObject) -> None:
    """Headers, program headers and notes: the first bytes of the file."""
    raw = bytearray(FX.write_elf(tmp_path / "clean.elf").read_bytes())
    header_bytes = 64 + 56 * 4 + 2 * 800
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, header_bytes - 8))
        size = data.draw(st.sampled_from([1, 2, 4, 8]))
        value = data.draw(st.integers(0, (1 << (8 * size)) - 1))
        raw[at : at + size] = value.to_bytes(size, "little")
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]  # truncated too
    path = tmp_path / "fuzz.elf"
    path.write_bytes(bytes(raw))
    _inspect(path)


@settings(max_examples=30, deadline=10_000, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    span=st.sampled_from(FX.truth["spans"]),
    count=st.one_of(
        st.integers(len(IMAGE) // PAGE_SIZE + 1, (1 << 64) - 1),
        st.sampled_from([1 << 52, (1 << 64) // PAGE_SIZE, (1 << 60) + 1]),
    ),
    consistent=st.booleans(),
)
def test_absurd_span_counts_never_pass(
    tmp_path: Path, span: tuple[int, int], count: int, consistent: bool
) -> None:
    """A count past the dump's RAM is named, even when km_frames.free_frames agrees with it."""
    image = bytearray(IMAGE)
    struct.pack_into("<Q", image, span[0] + field_offset(FrameSpan, "count"), count)
    if consistent:
        counter = FX.addresses["frames"] + field_offset(FrameAllocator, "free_frames")
        total = (FX.u64(counter) - span[1] + count) % (1 << 64)
        struct.pack_into("<Q", image, counter, total)
    path = tmp_path / "count.raw"
    path.write_bytes(bytes(image))
    ins = inspect_dump(path, Options())
    assert f"node {hex(span[0])} has count {hex(count)}" in ins.part_errors["frames"]
    assert "kernel parts readable" in [c.name for c in ins.failed]


@pytest.mark.parametrize("cut", [0, 1, 63, 4096, 1 << 20, len(IMAGE) - 8])
def test_truncated_raw_dumps(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "cut.raw"
    path.write_bytes(IMAGE[:cut])
    _inspect(path)
