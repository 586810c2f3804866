"""Hostile dumps: the fixture kernel (dump_fixtures.build) with pointers bent to make the naive
decoder's work explode, each written as a sparse 4 GiB raw image (docs/design.md §7.2, §10).

Generated on demand, never committed: the fixture's 16 MiB image is written at the start of the
file, the hostile pages where they fall, and the rest is a hole, so a case costs a few MiB of disk
and a few milliseconds to write however large the dump claims to be. The cases are data (`CASES`):
each names the structure it bends and what `kmtool inspect` must say about it (a failed check's
name and a phrase of its sentence). tests/dump/test_hostile.py runs each through the whole process
under an address-space limit; benchmarks/bench_hostile.py times them.

`measured` runs a command the way both measure it: through a small Python launcher that forks and
execs it and reports the child's own rusage (os.wait4). Measured straight from a large parent (a
pytest process), a forked child's peak RSS would start at the parent's.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dump_fixtures as F

from kmtool.dump.records import field_offset
from kmtool.layout.table import GiB, MiB
from kmtool.schemas.aspace import ASPACE_MAX, AspaceList
from kmtool.schemas.frames import FRAME_SPAN_MAGIC, FrameAllocator, FrameSpan
from kmtool.schemas.heap import HEAP_FREE_MAGIC, Heap, HeapBlock

SIZE = 4 * GiB  # what every hostile dump claims to be
POOL = 64 * MiB  # hostile pages are placed upward from here, past the fixture's 16 MiB
PAGE = F.PAGE_SIZE
LEAF = F.P | F.W | F.NX  # a present, writable, no-execute entry
TABLE = F.P | F.W  # an entry naming a table


@dataclass
class Dump:
    """The fixture image plus pages past it (physical address -> bytes), written sparsely."""

    fx: F.Fixture = field(default_factory=F.build)
    pages: dict[int, bytes] = field(default_factory=dict)
    next_page: int = POOL
    elf: bool = False  # write an ELF core of two ranges (split at `split`), not a raw image
    split: int | None = None  # where the second PT_LOAD starts (None: the fixture image's end)
    la57_root: int | None = None  # a raw image's sidecar says CPU 0 runs 5-level paging from here

    def page(self, data: bytes = b"") -> int:
        """A fresh page past the fixture holding `data` (zero-filled); its physical address."""
        pa, self.next_page = self.next_page, self.next_page + PAGE
        self.pages[pa] = data.ljust(PAGE, b"\0")
        return pa

    def table(self, entries: dict[int, int]) -> int:
        """A fresh page table: index -> raw entry."""
        return self.page(b"".join(entries.get(i, 0).to_bytes(8, "little") for i in range(512)))

    def poke(self, pa: int, value: int) -> None:
        self.fx.poke(pa, value)

    def write(self, path: Path) -> Path:
        """A raw image (file offset == physical address), or an ELF core whose two PT_LOADs
        split physical memory at `split` (by default the end of the fixture's image)."""
        image = bytes(self.fx.image)
        cut = len(image) if self.split is None else self.split
        loads = [(0, cut), (cut, SIZE - cut)] if self.elf else []
        header = _elf_header(loads) if self.elf else b""
        with open(path, "wb") as f:
            f.write(header + image)
            for pa, data in self.pages.items():
                os.pwrite(f.fileno(), data, len(header) + pa)
            f.truncate(len(header) + SIZE)
        if self.la57_root is not None:
            write_la57_sidecar(path, self.la57_root)
        return path


def write_la57_sidecar(path: Path, root: int, size: int = SIZE) -> Path:
    """FILE.layout.json of a raw image (file offset == physical address, `size` bytes) whose
    CPU 0 pages with 5 levels (CR4.LA57, bit 12) from the PML5 at `root`."""
    doc = {
        "format": "kmtool-raw-physical", "version": 1, "machine": "q35",
        "memory_size": hex(size), "file_size": hex(size),
        "ranges": [{"name": "ram0", "phys": "0x0", "size": hex(size), "file_offset": "0x0"}],
        "cpus": [{"index": 0, "cr0": "0x80010033", "cr3": hex(root), "cr4": hex(0x6A0 | 1 << 12),
                  "efer": "0xd00"}],
    }  # fmt: skip
    sidecar = path.with_name(path.name + ".layout.json")
    sidecar.write_text(json.dumps(doc))
    return sidecar


def _elf_header(loads: list[tuple[int, int]]) -> bytes:
    """An ELF64 core header with one PT_LOAD per (physical start, size), stored back to back
    right after the header (no notes: CR3 comes from the core-info block)."""
    phnum = len(loads)
    size = 64 + 56 * phnum
    ident = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    ehdr = ident + struct.pack("<HHIQQQIHHHHHH", 4, 62, 1, 0, 64, 0, 0, 64, 56, phnum, 0, 0, 0)
    phdrs, offset = b"", size
    for start, length in loads:
        phdrs += struct.pack("<IIQQQQQQ", 1, 4, offset, start, start, length, length, PAGE)
        offset += length
    return ehdr + phdrs


_LAUNCHER = """
import os, resource, sys, time
report, limit, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.execv(argv[0], argv)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
with open(report, "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {seconds} {usage.ru_maxrss * 1024}")
"""


def measured(argv: list[str], out: Path, cwd: Path, limit: int = 0,
             timeout: float = 120.0) -> tuple[int, float, int]:  # fmt: skip
    """Run `argv` (stdout to `out`, stderr to `out` + ".err") under RLIMIT_AS `limit` (0: none):
    its exit status (-9 when killed at `timeout`), wall seconds and peak RSS in bytes."""
    report = out.with_name(out.name + ".report")
    env = dict(os.environ, NO_COLOR="1", COLUMNS="100")
    with open(out, "w") as stdout, open(out.with_name(out.name + ".err"), "w") as stderr:
        launcher = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(report), str(limit),
                                     *argv], stdout=stdout, stderr=stderr, cwd=cwd, env=env,
                                    start_new_session=True)  # fmt: skip
        try:
            launcher.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
            return -9, timeout, 0
    status, seconds, peak = report.read_text().split()
    return int(status), float(seconds), int(peak)


@dataclass(frozen=True)
class Case:
    """One hostile dump: how to make it, the check that must fail and a phrase of its sentence."""

    make: Callable[[], Dump]
    check: str
    says: str


def _fanout(pd: Callable[[Dump], dict[int, int]], pml4_slots: int = 255) -> Dump:
    """`pml4_slots` kernel-PML4 entries name one PDPT, whose 512 entries name one PD, whose
    entries `pd` makes (index -> raw entry, given the dump)."""
    d = Dump()
    pdpt = d.table(dict.fromkeys(range(512), d.table(pd(d)) | TABLE))
    pml4 = d.fx.addresses["kernel_pml4"]
    for i in range(pml4_slots):
        d.poke(pml4 + 8 * i, pdpt | TABLE)
    return d


def _pml5_fanout() -> Dump:
    """5-level paging (the sidecar's CR4.LA57): 512 PML5 entries name one PML4, whose 512 entries
    name one PDPT, whose 512 name one PD, whose 512 name one PT of 512 4 KiB pages: 35 trillion
    pages from five pages of a dump, one level of sharing more than a PML4 can make."""
    d = Dump()
    table = d.table({i: (i * PAGE) | LEAF for i in range(512)})
    for _ in range(4):  # PD, PDPT, PML4, PML5
        table = d.table(dict.fromkeys(range(512), table | TABLE))
    d.la57_root = table
    return d


def _pts_of_4k_pages(d: Dump) -> dict[int, int]:
    return dict.fromkeys(range(512), d.table({i: (i * PAGE) | LEAF for i in range(512)}) | TABLE)


def _empty_pts(d: Dump) -> dict[int, int]:
    return dict.fromkeys(range(512), d.page() | TABLE)


def _alternating_large_pages(d: Dump) -> dict[int, int]:
    """256 2 MiB pages whose no-execute bit alternates: contiguous, but no two merge."""
    return {i: (i << 21) | LEAF ^ (F.NX if i % 2 else 0) | F.PS for i in range(256)}


def _one_pt_of_4k_pages(d: Dump) -> dict[int, int]:
    """One PD entry naming a PT of 256 4 KiB pages (so 130560 PT visits, 33.4 million pages)."""
    return {0: d.table({i: (i * PAGE) | LEAF for i in range(256)}) | TABLE}


def _spaces_at_the_bound() -> Dump:
    """The kernel's tables fanned out to just under MAX_LEAVES 4 KiB pages, and the address-space
    list naming that PML4 ASPACE_MAX times: every walk of it is as large as a walk may be."""
    d = _fanout(_one_pt_of_4k_pages)
    at, pml4 = d.fx.addresses["aspaces"], d.fx.addresses["kernel_pml4"]
    d.fx.put(at, AspaceList.build({"count": ASPACE_MAX, "created": ASPACE_MAX,
                                   "pml4": [pml4] * ASPACE_MAX,
                                   "id": list(range(1, ASPACE_MAX + 1))}))  # fmt: skip
    return d


def _large_pages(count: int) -> Callable[[Dump], dict[int, int]]:
    """`count` 2 MiB pages mapping the first `count` x 2 MiB of physical memory (they merge)."""
    return lambda d: {i: (i << 21) | LEAF | F.PS for i in range(count)}


def _node(here: int, there: int, prev: int = 0) -> bytes:
    """A page whose head is a FrameSpan node of one frame at `here`, linking to `there`."""
    fields = {sc.name: 0 for sc in FrameSpan.subcons}
    fields.update(magic=FRAME_SPAN_MAGIC, start=here, count=1, next=there, prev=prev)
    return FrameSpan.build(fields).ljust(PAGE, b"\0")


def _cycle(a: int, b: int, elf: bool) -> Dump:
    """The free list: the two nodes a -> b -> a (a in the fixture's image, b past it)."""
    d = Dump(elf=elf)
    d.fx.image[a : a + PAGE] = _node(a, b)
    d.pages[b] = _node(b, a)
    d.poke(d.fx.addresses["frames"] + field_offset(FrameAllocator, "head"), a)
    return d


def _cycle_across_windows() -> Dump:
    """A two-node cycle whose nodes are 3 GiB apart in one range: the chase's window holds one."""
    return _cycle(10 * MiB, 3 * GiB, elf=False)


def _cycle_across_ranges() -> Dump:
    """The same cycle in an ELF core whose two PT_LOADs hold one node each: no chase step can
    hold both, so each finds one node, until the dump's frame count is reached."""
    return _cycle(10 * MiB, 3 * GiB, elf=True)


def _zigzag_list(nodes: int = 1 << 13, elf: bool = False) -> Dump:
    """A list whose nodes alternate between the bottom and the top 2 GiB of the dump, each jump
    past the chase's window, with stale magic nodes between: the window guesser never agrees.
    With `elf`, an ELF core split at 1 GiB, so every jump also crosses from one PT_LOAD to the
    other."""
    d = Dump(elf=elf, split=GiB if elf else None)
    low, high = 32 * MiB, 2 * GiB
    order = [x for i in range(nodes // 2) for x in (low + 2 * i * PAGE, high + 2 * i * PAGE)]
    for k, here in enumerate(order):
        nxt = order[k + 1] if k + 1 < len(order) else 0
        d.pages[here] = _node(here, nxt, order[k - 1] if k else 0)
        d.pages[here + PAGE] = _node(here + PAGE, here + 4 * PAGE)  # stale, with the magic
    d.poke(d.fx.addresses["frames"] + field_offset(FrameAllocator, "head"), order[0])
    return d


def _heap_of_aliases(mib: int = 64) -> Dump:
    """The heap's first `mib` MiB all map one physical page full of smallest-order headers, so
    every block the buddy descent reads says "split me" down to the smallest order."""
    d = Dump()
    state = d.fx.addresses["heap"]
    base = d.fx.u64(state + field_offset(Heap, "base"))
    min_order = d.fx.u64(state + field_offset(Heap, "min_order")) & 0xFFFFFFFF
    fields = {sc.name: 0 for sc in HeapBlock.subcons}
    fields.update(magic=HEAP_FREE_MAGIC, order=min_order)
    header = HeapBlock.build(fields).ljust(1 << min_order, b"\0")
    headers = d.page(header * (PAGE >> min_order))
    pt = d.table(dict.fromkeys(range(512), headers | LEAF))
    pd = d.table(dict.fromkeys(range(mib // 2), pt | TABLE))
    pml4 = d.fx.addresses["kernel_pml4"]
    pdpt = d.fx.u64(pml4 + 8 * ((base >> 39) & 511)) & F.ADDR
    d.poke(pdpt + 8 * ((base >> 30) & 511), pd | TABLE)
    for order in range(64):  # nothing untouched, nothing listed: the tree is all there is
        d.poke(state + field_offset(Heap, "untouched") + 8 * order, 0)
        d.poke(state + field_offset(Heap, "free_heads") + 8 * order, 0)
    return d


def _heap_order(value: int) -> Callable[[], Dump]:
    def make() -> Dump:
        d = Dump()
        at = d.fx.addresses["heap"] + field_offset(Heap, "max_order")
        d.fx.put(at, value.to_bytes(4, "little"))
        return d

    return make


def _memory_map(size: int, step: int, at: int | None = None) -> Callable[[], Dump]:
    """The boot info's memory map: `size` bytes of `step`-byte descriptors (at `at`)."""

    def make() -> Dump:
        d = Dump()
        d.poke(d.fx.field_pa("boot", "memory_map_size"), size)
        d.poke(d.fx.field_pa("boot", "descriptor_size"), step)
        if at is not None:
            d.poke(d.fx.field_pa("boot", "memory_map"), at)
        return d

    return make


WALKED = "page tables walked"
READABLE = "kernel parts readable"
CASES: dict[str, Case] = {
    "pt-fanout-4k": Case(
        lambda: _fanout(_pts_of_4k_pages),
        WALKED,
        "the PT table at 0x4000000 is reached by 66846720 paths",
    ),
    "pt-fanout-empty": Case(
        lambda: _fanout(_empty_pts),
        WALKED,
        "the PT table at 0x4000000 is reached by 66846720 paths",
    ),
    "pt-fanout-pml5": Case(
        _pml5_fanout,
        WALKED,
        "visit 134217728 PD tables, more than 1048576 (at PD level: the PD "
        "table at 0x4001000 is reached by 134217728 paths",
    ),  # fmt: skip
    "pt-fanout-2m": Case(lambda: _fanout(_large_pages(512)), WALKED, "would map more than"),
    # 255 x 512 x 256 = 33.4 million 2 MiB pages, just under MAX_LEAVES: walked to the end
    "pt-leaves-at-the-bound": Case(lambda: _fanout(_large_pages(256)), "", ""),
    "pt-4k-leaves-at-the-bound": Case(lambda: _fanout(_one_pt_of_4k_pages), "", ""),
    "aspaces-at-the-bound": Case(_spaces_at_the_bound, "", ""),
    "pt-ranges-unmerged": Case(
        lambda: _fanout(_alternating_large_pages), WALKED, "distinct mappings"
    ),  # fmt: skip
    "freelist-cycle-across-windows": Case(_cycle_across_windows, READABLE, "a cycle"),
    "freelist-cycle-across-ranges": Case(_cycle_across_ranges, READABLE, "a cycle"),
    "freelist-zigzag": Case(_zigzag_list, "spans sorted and non-overlapping", "follows"),
    "freelist-zigzag-across-ranges": Case(
        lambda: _zigzag_list(elf=True), "spans sorted and non-overlapping", "follows"
    ),
    "heap-of-aliases": Case(
        _heap_of_aliases, READABLE, "Heap at 0x118800: more than 262144 blocks"
    ),
    "heap-of-aliases-at-the-bound": Case(lambda: _heap_of_aliases(16), "heap counters match", ""),
    "heap-max-order-63": Case(_heap_order(63), READABLE, "Heap state"),
    "heap-max-order-absurd": Case(_heap_order(0xFFFFFFFF), READABLE, "Heap state"),
    "memmap-huge-count": Case(_memory_map(1 << 62, 48), READABLE, "memory_map_size"),
    "memmap-most-descriptors": Case(
        _memory_map(65536 * 4096, 4096), "memory map sorted", "follows"
    ),
    "memmap-past-the-dump": Case(
        _memory_map(65536 * 48, 48, SIZE - 100 * 48),
        READABLE,
        "descriptor 100 at 0x100000000 is outside the dump",
    ),  # fmt: skip
}
