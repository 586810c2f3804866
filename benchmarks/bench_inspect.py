"""Benchmark `kmtool inspect` on a generated 4 GiB raw dump, side by side with volatility3.

    .venv/bin/python benchmarks/bench_inspect.py [--runs 5] [--keep DIR [--reuse]] [--chase-only]

The dump is generated in a temporary directory (never committed, deleted afterwards) as a sparse
file where file offset == physical address. It is a dump of "our" kernel whose offset map uses
4 KiB pages, the worst case for a walker:

- kernel PML4 entry 511 -> 4 PDs -> 2048 PTs: 1,048,576 4 KiB leaves mapping physical 0..4 GiB at
  0xffffff8000000000; entry 510 maps a 64 KiB kernel image and one backed heap page;
- 262,144 free spans of one frame each, every other frame from 1 MiB up (their nodes are in the free
  frames, so the chase touches 262,144 distinct pages), and the core-info block, boot info, memory
  map, frame allocator, heap and page-stats state, so a full `kmtool inspect` decodes and checks all.

Measured (medians of `--runs` runs, min and max alongside):
- kmtool full walk into merged ranges (kmtool.dump.pagetable.walk), in process;
- volatility3's Intel32e layer `mapping()` over the same dump and CR3, in the same run
  (install volatility3 into the venv for this: `.venv/bin/pip install volatility3`);
- 100,000 random virtual-to-physical translations with the vectorised batch API (translate_many),
  and, for scale, one-at-a-time walks (walk_address);
- the free-list chase with its structural and list checks (read_free_list plus the span checks),
  bounded (the default), in each state the page cache can hold the dump in:
  - as kmtool writes a dump: the generator writes its records one by one, then copies the file
    through kmtool.qemu.dumpfile's BlockWriter, as `kmtool run --dump` does with what QEMU gives it
    (whole 2 MiB blocks, so 2 MiB folios);
  - the record-by-record file itself (4 KiB folios: the state QEMU's own page-at-a-time file
    writes leave a dump in);
  - after dropping the dump from the page cache and reading it back (readahead's folios);
  - with the list's pages kept mapped;
- `kmtool --help` and a whole `kmtool inspect DUMP --json` as subprocesses (wall time; peak RSS of
  the inspect process from wait4).
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kmtool.dump.levels import ADDRESS_MASK
from kmtool.layout.table import (
    HEAP_BASE,
    HEAP_SIZE,
    KERNEL_LINK_BASE,
    KERNEL_SPACE_BASE,
    MEMTYPE_HANDOFF,
    MEMTYPE_KERNEL,
    OFFSET_MAP_BASE,
    PAGE_SIZE,
    GiB,
    MiB,
)
from kmtool.schemas.aspace import ASPACE_MAX, AspaceList
from kmtool.schemas.bootinfo import BOOT_INFO_MAGIC, BOOT_INFO_VERSION, BootInfo
from kmtool.schemas.coreinfo import CORE_INFO_VERSION, CoreInfo
from kmtool.schemas.frames import FRAME_SPAN_MAGIC, FrameAllocator, FrameSpan
from kmtool.schemas.heap import HEAP_FREE_MAGIC, HEAP_MAX_ORDERS, Heap, HeapBlock
from kmtool.schemas.memmap import EfiMemoryDescriptor, EfiMemoryType
from kmtool.schemas.pagestats import PageStats
from kmtool.schemas.paging import Pte
from kmtool.schemas.signatures import CORE_INFO_MAGIC, CORE_INFO_MAGIC2

REPO = Path(__file__).resolve().parent.parent
RAM = 4 * GiB
SPANS = 1 << 18
SPAN_BASE = 1 * MiB
KERNEL_AREA = 0xF000_0000  # kernel image (64 KiB), then handoff data, then page tables
KERNEL_PAGES = 16
HANDOFF = KERNEL_AREA + 0x10_0000
TABLES = KERNEL_AREA + 0x20_0000
P, W, NX = int(Pte.PRESENT), int(Pte.WRITABLE), int(Pte.NX)
U, PS = int(Pte.USER), int(Pte.PS)
USER_BASE = 0x0000_0080_0000_0000  # the process's mappings start here (PML4 entry 1)
LARGE = 2 * MiB
TRANSLATIONS = 100_000


class DumpWriter:
    """Writes the benchmark dump with pwrite into a sparse file (file offset == physical)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.ftruncate(self.fd, RAM)
        self.next_table = TABLES
        self.tables: dict[int, np.ndarray] = {}

    def put(self, pa: int, data: bytes) -> None:
        os.pwrite(self.fd, data, pa)

    def table(self) -> int:
        pa = self.next_table
        self.next_table += PAGE_SIZE
        self.tables[pa] = np.zeros(512, dtype="<u8")
        return pa

    def map4k(self, pml4: int, va: int, pa: int, flags: int) -> None:
        t = pml4
        for shift in (39, 30, 21):
            i = (va >> shift) & 511
            if not self.tables[t][i] & P:
                self.tables[t][i] = self.table() | P | W
            t = int(self.tables[t][i]) & ADDRESS_MASK
        self.tables[t][(va >> 12) & 511] = pa | flags | P

    def close(self) -> None:
        for pa, entries in self.tables.items():
            self.put(pa, entries.tobytes())
        os.close(self.fd)


def balanced_treap(keys: list[int]) -> tuple[int, list[int], list[int], list[int]]:
    """A treap over ascending `keys` (kmtool.schemas.frames): the balanced search tree, priorities
    by height so a parent's is above its children's. (root, left, right, priority per key; 0 for
    no child.)"""
    left, right, priority = [0] * len(keys), [0] * len(keys), [0] * len(keys)
    root, stack = 0, [(0, len(keys), -1, False, 64)]
    while stack:
        lo, hi, parent, is_right, height = stack.pop()
        if lo >= hi:
            continue
        mid = (lo + hi) // 2
        priority[mid] = height
        if parent < 0:
            root = keys[mid]
        elif is_right:
            right[parent] = keys[mid]
        else:
            left[parent] = keys[mid]
        stack += [(lo, mid, mid, False, height - 1), (mid + 1, hi, mid, True, height - 1)]
    return root, left, right, priority


def _split(runs: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Physical [start, end) runs as 4 KiB pages (unaligned heads and tails) and 2 MiB blocks."""
    pages, blocks = [], []
    for s, e in runs:
        lo, hi = min(e, -(-s // LARGE) * LARGE), max(s, e // LARGE * LARGE)
        if lo >= hi:  # no whole 2 MiB block inside
            pages += range(s, e, PAGE_SIZE)
            continue
        pages += range(s, lo, PAGE_SIZE)
        blocks += range(lo, hi, LARGE)
        pages += range(hi, e, PAGE_SIZE)
    return pages, blocks


def user_space(
    w: DumpWriter, kernel_pml4: int, gaps: np.ndarray, runs: list[tuple[int, int]]
) -> int:
    """One process's address space that maps, from USER_BASE up, every frame the kernel took from
    the allocator and does not reach itself: the one-frame `gaps` between the free spans (4 KiB
    pages) and the `runs` of RAM beside the list (2 MiB pages where aligned), the last of which
    ends at RAM, where the tables of this address space are put (so the frames they take are not
    mapped). Its kernel half is the kernel's (PML4 entries 510-511). Returns its PML4."""
    tables = 0
    while True:  # how many tables the mappings need depends on where the tables end the last run
        top = RAM - tables * PAGE_SIZE
        pages, blocks = _split(runs[:-1] + [(runs[-1][0], top)])
        n_pts = -(-(len(gaps) + len(pages)) // 512)
        n_pds = -(-(n_pts + len(blocks)) // 512)
        if 2 + n_pds + n_pts == tables:
            break
        tables = 2 + n_pds + n_pts
    pml4, pdpt, pds, pts = top, top + PAGE_SIZE, top + 2 * PAGE_SIZE, top + (2 + n_pds) * PAGE_SIZE
    leaf = np.uint64(P | W | U | NX)
    pt = np.zeros(n_pts * 512, dtype=np.uint64)
    pt[: len(gaps) + len(pages)] = (
        np.sort(np.concatenate((gaps, np.array(pages, np.uint64)))) | leaf
    )
    pd = np.zeros(n_pds * 512, dtype=np.uint64)
    pd[:n_pts] = (pts + np.arange(n_pts, dtype=np.uint64) * np.uint64(PAGE_SIZE)) | np.uint64(
        P | W | U
    )
    pd[n_pts : n_pts + len(blocks)] = np.array(blocks, np.uint64) | leaf | np.uint64(PS)
    top_entries = np.zeros(1024, dtype=np.uint64)  # the PML4, then the PDPT
    top_entries[(USER_BASE >> 39) & 511] = pdpt | P | W | U
    top_entries[510:512] = w.tables[kernel_pml4][510:512]
    top_entries[512 : 512 + n_pds] = (
        pds + np.arange(n_pds, dtype=np.uint64) * np.uint64(PAGE_SIZE)
    ) | np.uint64(P | W | U)
    w.put(pml4, top_entries.astype("<u8").tobytes())
    w.put(pds, pd.astype("<u8").tobytes())
    w.put(pts, pt.astype("<u8").tobytes())
    return pml4


def generate(path: Path) -> dict[str, int]:
    """Write the dump; return the addresses a benchmark needs."""
    w = DumpWriter(path)
    pml4 = w.table()
    assert pml4 == TABLES  # --reuse relies on it
    # Offset map, 4 KiB pages: one PDPT, 4 PDs, 2048 PTs written as one contiguous block each level.
    pdpt = w.table()
    w.tables[pml4][511] = pdpt | P | W | NX
    pds = [w.table() for _ in range(RAM // GiB)]
    pts_base = w.next_table
    n_pts = RAM // (2 * MiB)
    w.next_table += n_pts * PAGE_SIZE
    for g, pd in enumerate(pds):
        w.tables[pdpt][g] = pd | P | W
        w.tables[pd][:] = (
            pts_base + (g * 512 + np.arange(512, dtype=np.uint64)) * PAGE_SIZE
        ) | np.uint64(P | W)
    leaves = np.arange(RAM // PAGE_SIZE, dtype=np.uint64) * np.uint64(PAGE_SIZE)
    w.put(pts_base, (leaves | np.uint64(P | W)).astype("<u8").tobytes())
    # Kernel image and one heap page under PML4 510.
    for i in range(KERNEL_PAGES):
        w.map4k(pml4, KERNEL_LINK_BASE + i * PAGE_SIZE, KERNEL_AREA + i * PAGE_SIZE,
                W | NX if i >= 8 else 0)  # fmt: skip
    heap_page = w.next_table + 64 * PAGE_SIZE
    w.map4k(pml4, HEAP_BASE, heap_page, W | NX)
    w.put(heap_page, HeapBlock.build({"magic": HEAP_FREE_MAGIC, "order": HEAP_SIZE.bit_length() - 1,
                                      "reserved0": 0, "reserved1": 0, "size": 0, "next": 0,
                                      "prev": 0}))  # fmt: skip
    # Free spans: one frame each, every other frame from SPAN_BASE.
    starts = SPAN_BASE + np.arange(SPANS, dtype=np.uint64) * np.uint64(2 * PAGE_SIZE)
    root, left, right, priority = balanced_treap(starts.tolist())
    for i, s in enumerate(starts.tolist()):
        nxt = s + 2 * PAGE_SIZE if i + 1 < SPANS else 0
        w.put(s, FrameSpan.build({"magic": FRAME_SPAN_MAGIC, "start": s, "count": 1,
                                  "next": nxt, "prev": s - 2 * PAGE_SIZE if i else 0,
                                  "left": left[i], "right": right[i],
                                  "priority": priority[i]}))  # fmt: skip
    # The frames the kernel took from the allocator (every one that is usable RAM and neither a
    # free span, a page table, the kernel image, the heap page nor the handoff data) are a
    # process's pages, so the frame accounting finds an owner for each (no leaked frames).
    gaps = starts + np.uint64(PAGE_SIZE)
    beside = [(PAGE_SIZE, SPAN_BASE), (SPAN_BASE + 2 * SPANS * PAGE_SIZE, KERNEL_AREA),
              (w.next_table, heap_page), (heap_page + PAGE_SIZE, RAM)]  # fmt: skip
    user_pml4 = user_space(w, pml4, gaps, beside)
    # Kernel state in the image's data pages. The fault record stays zero, as the kernel's .bss
    # leaves it when nothing faulted; the address-space list holds the one process.
    core, frames, heap, stats = (
        KERNEL_AREA + 8 * PAGE_SIZE + k * 0x400 for k in range(4)
    )  # --reuse
    fault, aspaces = KERNEL_AREA + 9 * PAGE_SIZE, KERNEL_AREA + 10 * PAGE_SIZE
    tables_end = heap_page + PAGE_SIZE
    descriptors = [
        (EfiMemoryType.CONVENTIONAL, PAGE_SIZE, (KERNEL_AREA - PAGE_SIZE) // PAGE_SIZE),
        (MEMTYPE_KERNEL, KERNEL_AREA, KERNEL_PAGES),
        (MEMTYPE_HANDOFF, HANDOFF, 16),
        (EfiMemoryType.BOOT_SERVICES_DATA, TABLES, (RAM - TABLES) // PAGE_SIZE),
    ]
    desc = b"".join(
        EfiMemoryDescriptor.build({"type": t, "pad": 0, "physical_start": s, "virtual_start": 0,
                                   "number_of_pages": n, "attribute": 0xF}) + bytes(8)
        for t, s, n in descriptors
    )  # fmt: skip
    w.put(HANDOFF + PAGE_SIZE, desc)
    w.put(HANDOFF, BootInfo.build({
        "magic": BOOT_INFO_MAGIC, "version": BOOT_INFO_VERSION, "length": BootInfo.sizeof(),
        "memory_map": HANDOFF + PAGE_SIZE, "memory_map_size": len(desc), "descriptor_size": 48,
        "descriptor_version": 1, "flags": 0, "kernel_phys_base": KERNEL_AREA,
        "kernel_phys_size": KERNEL_PAGES * PAGE_SIZE, "kernel_virt_base": KERNEL_LINK_BASE,
        "kernel_entry": KERNEL_LINK_BASE, "scratch_base": 0, "scratch_count": 0,
        "scratch_used": 0, "rsdp": 0, "fb_base": 0, "fb_size": 0, "fb_width": 0, "fb_height": 0,
        "fb_pitch": 0, "fb_format": 0, "loader_tsc": 0, "cmdline_length": 4, "reserved0": 0,
        "cmdline": b"hold" + bytes(252)}))  # fmt: skip
    w.put(frames, FrameAllocator.build({"head": SPAN_BASE, "free_frames": SPANS, "spans": SPANS,
                                        "managed_frames": SPANS, "alloc_calls": 0,
                                        "free_calls": 0, "root": root, "limit": RAM}))  # fmt: skip
    w.put(heap, Heap.build({"base": HEAP_BASE, "size": HEAP_SIZE, "min_order": 6,
                            "max_order": HEAP_SIZE.bit_length() - 1, "bytes_in_use": 0,
                            "blocks_in_use": 0, "free_blocks": 1, "backed_pages": 1,
                            "free_heads": [HEAP_BASE if o == HEAP_SIZE.bit_length() - 1 else 0
                                           for o in range(HEAP_MAX_ORDERS)]}))  # fmt: skip
    w.put(stats, PageStats.build({"page_faults": 1, "demand_maps": 1, "tables_allocated": 0,
                                  "tables_freed": 0, "address_spaces": 1}))  # fmt: skip
    w.put(aspaces, AspaceList.build({"count": 1, "created": 1,
                                     "pml4": [user_pml4] + [0] * (ASPACE_MAX - 1),
                                     "id": [1] + [0] * (ASPACE_MAX - 1)}))  # fmt: skip
    w.put(core, CoreInfo.build({
        "magic": CORE_INFO_MAGIC, "magic2": CORE_INFO_MAGIC2, "version": CORE_INFO_VERSION,
        "length": CoreInfo.sizeof(), "self_phys": core, "boot_info_phys": HANDOFF,
        "kernel_pml4_phys": pml4, "frame_state_phys": frames, "heap_state_phys": heap,
        "page_state_phys": stats, "kernel_phys_base": KERNEL_AREA,
        "kernel_virt_base": KERNEL_LINK_BASE, "kernel_size": KERNEL_PAGES * PAGE_SIZE,
        "offset_map_base": OFFSET_MAP_BASE, "offset_map_page_size": PAGE_SIZE,
        "offset_map_size": RAM, "kernel_space_base": KERNEL_SPACE_BASE, "heap_base": HEAP_BASE,
        "heap_size": HEAP_SIZE, "entry_tsc": 1000, "ready_tsc": 9000, "build_id": bytes(16),
        "fault_phys": fault, "aspaces_phys": aspaces}))  # fmt: skip
    w.close()
    assert tables_end <= RAM
    # The layout file `kmtool run --dump-format raw` writes next to a raw dump (kmtool/qemu/dump.py).
    layout = {"format": "kmtool-raw-physical", "version": 1, "machine": "q35",
              "memory_size": hex(RAM), "file_size": hex(RAM),
              "ranges": [{"name": "ram", "phys": "0x0", "size": hex(RAM), "file_offset": "0x0"}],
              "cpus": [{"index": 0, "cr0": "0x80010033", "cr3": hex(pml4), "cr4": "0x6a0",
                        "efer": "0xd00"}],
              "core_info": hex(core)}  # the kernel's note, as kmtool run records it  # fmt: skip
    path.with_name(path.name + ".layout.json").write_text(json.dumps(layout))
    return {"cr3": pml4, "frames": frames}


def write_as_kmtool(source: Path, path: Path) -> None:
    """Copy the generated dump to `path` the way `kmtool run --dump-format raw` copies QEMU's
    pmemsave chunks (kmtool.qemu.dump): through a BlockWriter, in whole 2 MiB aligned blocks."""
    from kmtool.qemu import dumpfile

    src = os.open(source, os.O_RDONLY)
    try:
        with dumpfile.create(path) as writer:
            writer.copy_from(src)
            writer.finish(writer.position)
    finally:
        os.close(src)
    layout = source.with_name(source.name + ".layout.json")
    shutil.copyfile(layout, path.with_name(path.name + ".layout.json"))


def drop_from_page_cache(path: Path) -> None:
    """Write the dump back and drop it from the page cache (as a reboot or memory pressure would),
    so that it is read in again by readahead, in large folios where the file system has them."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def page_cache(path: Path, start: int, length: int, window: int) -> tuple[float, float]:
    """Read [start, start + length) of the dump into the page cache (it may come from the disk);
    return the share of it the kernel maps with 2 MiB entries (0..1, from /proc/self/smaps_rollup), and
    what mapping and unmapping it `window` bytes at a time costs alone (median of 3), which is the
    kernel's share of a bounded chase over it: with 4 KiB folios that is two updates a page."""

    def pmd_mapped() -> int:
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
            if line.startswith("FilePmdMapped:"):
                return int(line.split()[1]) * 1024
        return 0

    populate = getattr(mmap, "MADV_POPULATE_READ", 22)
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        before = pmd_mapped()
        mm.madvise(populate, start, length)
        share = (pmd_mapped() - before) / length
        mm.madvise(mmap.MADV_DONTNEED)

        def map_unmap() -> None:
            for at in range(start, start + length, window):
                mm.madvise(populate, at, min(window, start + length - at))
                mm.madvise(mmap.MADV_DONTNEED, at, min(window, start + length - at))

        kernel, _ = timed(map_unmap, 3)
    return share, statistics.median(kernel)


def timed(fn: Callable[[], object], runs: int) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return times, result


def row(name: str, times: list[float], extra: str = "") -> str:
    med = statistics.median(times)
    return (f"| {name} | {med:.3f} s | {min(times):.3f} s | {max(times):.3f} s | {len(times)} | "
            f"{extra} |")  # fmt: skip


def volatility_mapping(path: Path, cr3: int) -> tuple[int, int]:
    """(mappings, bytes mapped) from volatility3's Intel32e layer over the whole 48-bit space."""
    from volatility3.framework import contexts
    from volatility3.framework.layers.intel import Intel32e
    from volatility3.framework.layers.physical import FileLayer

    ctx = contexts.Context()
    ctx.config["base.location"] = path.as_uri()
    ctx.add_layer(FileLayer(ctx, "base", "base"))
    ctx.config["intel.memory_layer"] = "base"
    ctx.config["intel.page_map_offset"] = cr3
    layer = Intel32e(ctx, "intel", "intel")
    count = size = 0
    for _off, sublength, _mapped, _mlen, _name in layer.mapping(0, 1 << 48, ignore_errors=True):
        count += 1
        size += sublength
    return count, size


def subprocess_rss(args: list[str], cwd: Path = REPO) -> tuple[float, int, int]:
    """(wall seconds, exit status, peak RSS in KiB) of one command run in `cwd` (`python -m
    kmtool` there runs that tree's kmtool)."""
    t = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - t, proc.returncode, usage.ru_maxrss


def add_against(parser: argparse.ArgumentParser) -> None:
    """The `--against TREE` option of the whole-process benches."""
    parser.add_argument(
        "--against",
        type=Path,
        help="Another kmtool tree (e.g. `git archive main | tar -x -C DIR`), run side by side.",
    )


def tree_dirs(against: Path | None) -> dict[str, Path]:
    """This tree, and the `--against` one when given: name -> the directory `python -m kmtool`
    runs in to use that tree's kmtool."""
    out = {"this tree": REPO}
    if against is not None:
        out[str(against)] = against.resolve()
    return out


def same_output(trees: dict[str, Path], argv: list[str]) -> str:
    """Whether every tree prints the same bytes for `argv` (NO_COLOR=1 COLUMNS=100), as a note
    ("" for one tree)."""
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "100"}
    outs = {
        subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=False).stdout
        for cwd in trees.values()
    }
    return "" if len(trees) < 2 else ("output identical" if len(outs) == 1 else "OUTPUT DIFFERS")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--volatility-runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="Write the dump here and keep it.")
    parser.add_argument(
        "--reuse", action="store_true", help="With --keep: reuse a dump made before."
    )
    parser.add_argument(
        "--chase-only", action="store_true", help="Measure only the free-list chase rows."
    )
    args = parser.parse_args()

    from kmtool.dump.chase import WINDOW
    from kmtool.dump.checks import spans
    from kmtool.dump.coreinfo import magic_bytes
    from kmtool.dump.frames import FreeList, read_free_list
    from kmtool.dump.memory import PhysicalMemory
    from kmtool.dump.pagetable import walk
    from kmtool.dump.source import open_dump
    from kmtool.dump.translate import translate_many, walk_address

    tmp = Path(tempfile.mkdtemp(prefix="kmtool-bench-inspect-")) if args.keep is None else args.keep
    tmp.mkdir(parents=True, exist_ok=True)
    pieces = tmp / "dump4g-pieces.raw"  # as the generator writes it: a record at a time
    dump = tmp / "dump4g.raw"  # the same bytes, as kmtool writes a dump (kmtool.qemu.dumpfile)
    try:
        t = time.perf_counter()
        generated = not (args.reuse and dump.exists() and pieces.exists())
        if not generated:
            roots = {"cr3": TABLES, "frames": KERNEL_AREA + 8 * PAGE_SIZE + 0x400}
        else:
            roots = generate(pieces)
            print(f"generated {pieces} (4 GiB sparse) in {time.perf_counter() - t:.1f} s")
            t = time.perf_counter()
            write_as_kmtool(pieces, dump)
            print(f"copied it to {dump} as kmtool writes dumps in {time.perf_counter() - t:.1f} s")
        lines = [
            "| measurement | median | min | max | runs | notes |",
            "|---|---:|---:|---:|---:|---|",
        ]
        # Subprocesses first, while this process is small: a forked child starts out with its
        # parent's resident size, which would otherwise show up in the child's peak RSS.
        kmtool = [sys.executable, "-m", "kmtool"]
        if not args.chase_only:
            help_t = [subprocess_rss([*kmtool, "--help"])[0] for _ in range(args.runs)]
            lines.append(row("kmtool --help (python -m kmtool)", help_t))
            script = shutil.which("kmtool", path=str(Path(sys.executable).parent))
            if script:
                help_t = [subprocess_rss([script, "--help"])[0] for _ in range(args.runs)]
                lines.append(row("kmtool --help (console script)", help_t))
            full = [
                subprocess_rss([*kmtool, "inspect", str(dump), "--json"]) for _ in range(args.runs)
            ]
            statuses = {status for _, status, _ in full}
            rss = max(r for _, _, r in full)
            lines.append(row("kmtool inspect DUMP --json (whole run)", [w for w, _, _ in full],
                             f"exit {sorted(statuses)}, peak RSS {rss / 1024:.0f} MiB"))  # fmt: skip
        source = open_dump(dump)
        mem = source.memory

        if not args.chase_only:
            walk_t, pt = timed(lambda: walk(mem, roots["cr3"]), args.runs)
            leaves = pt.leaf_total  # type: ignore[attr-defined]
            regions = len(pt.ranges)  # type: ignore[attr-defined]
            lines.append(row("kmtool full walk, merged ranges", walk_t,
                             f"{leaves} leaves -> {regions} ranges, "
                             f"{leaves / statistics.median(walk_t) / 1e6:.2f} M leaves/s"))  # fmt: skip

            vol_t: list[float] = []
            try:
                if args.volatility_runs < 1:
                    raise ImportError  # skipped: reported like a missing volatility3
                vol_t, (vcount, vsize) = timed(lambda: volatility_mapping(dump, roots["cr3"]),
                                               args.volatility_runs)  # type: ignore[misc]  # fmt: skip
                speedup = statistics.median(vol_t) / statistics.median(walk_t)
                lines.append(row("volatility3 Intel32e mapping()", vol_t,
                                 f"{vcount} ranges, {vsize // PAGE_SIZE} pages, "
                                 f"{vsize // PAGE_SIZE / statistics.median(vol_t) / 1e6:.2f} M pages/s;"
                                 f" kmtool is {speedup:.0f}x faster"))  # fmt: skip
            except ImportError:
                lines.append("| volatility3 Intel32e mapping() | - | - | - | 0 | not installed |")

            rng = random.Random(1)
            vas = np.array([OFFSET_MAP_BASE + rng.randrange(RAM) for _ in range(TRANSLATIONS)],
                           dtype=np.uint64)  # fmt: skip
            tr_t, (phys, ok) = timed(lambda: translate_many(mem, roots["cr3"], vas), args.runs)  # type: ignore[misc]
            assert ok.all() and (phys == vas - np.uint64(OFFSET_MAP_BASE)).all()
            lines.append(row(f"{TRANSLATIONS} translations, batch (translate_many)", tr_t,
                             f"{TRANSLATIONS / statistics.median(tr_t) / 1e6:.2f} M/s"))  # fmt: skip
            some = [int(v) for v in vas[:2000]]
            one_t, _ = timed(lambda: [walk_address(mem, roots["cr3"], v) for v in some], 3)
            lines.append(row(f"{len(some)} translations, one at a time (walk_address)", one_t,
                             f"{len(some) / statistics.median(one_t) / 1e6:.3f} M/s"))  # fmt: skip

        span_checks = (
            spans.spans_aligned,
            spans.spans_sorted,
            spans.spans_coalesced,
            spans.span_links,
            spans.free_frames_counter,
            spans.spans_counter,
        )

        def chase(memory: PhysicalMemory) -> FreeList:
            fl = read_free_list(memory, roots["frames"])
            results = [c(fl) for c in span_checks]
            assert all(r.ok for r in results), results
            assert len(fl.nodes) == SPANS
            return fl

        def chase_row(path: Path, memory: PhysicalMemory, state: str) -> None:
            # The bounded chase maps and unmaps the 2 GiB the list spans; what that costs the
            # kernel depends on the folios the file sits in, so each row names the page cache's
            # state and what mapping and unmapping alone costs in it.
            share, kernel = page_cache(path, SPAN_BASE, SPANS * 2 * PAGE_SIZE, WINDOW)
            chase(memory)  # not timed: the first pass also reads hole pages into the page cache
            times, _ = timed(lambda: chase(memory), args.runs)
            name = (
                f"free-list chase with checks (bounded RSS; {state}, {share:.0%} in 2 MiB folios)"
            )
            lines.append(row(name, times, f"{SPANS} nodes, {SPANS / statistics.median(times) / 1e6:.2f} M"
                             f" nodes/s; mapping and unmapping the list's pages alone: "
                             f"{kernel:.3f} s"))  # fmt: skip

        chase_row(dump, mem, "as kmtool wrote it" if generated else "as found")
        if not args.chase_only:
            needle = magic_bytes()
            scan_t, hits = timed(lambda: list(mem.scan(needle)), args.runs)
            lines.append(row("core-info scan of the whole dump (no CR3)", scan_t,
                             f"{len(hits)} hit(s)"))  # type: ignore[arg-type]  # fmt: skip
        written_in_pieces = open_dump(pieces).memory
        chase_row(pieces, written_in_pieces, "the same dump written a record at a time")
        written_in_pieces.close()
        drop_from_page_cache(dump)
        chase_row(dump, mem, "page cache read back")
        mem.bounded = False
        chase(mem)  # maps the list's pages once; they stay mapped for the runs below
        warm_t, _ = timed(lambda: chase(mem), args.runs)
        lines.append(row("free-list chase with checks (pages already mapped)", warm_t,
                         f"{SPANS / statistics.median(warm_t) / 1e6:.2f} M nodes/s"))  # fmt: skip
        mem.release_all()
        mem.close()

        print("\n".join(lines))
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
