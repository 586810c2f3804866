"""Synthetic dumps of a small machine running "our" kernel, built with the schemas themselves.

`build()` lays out 12 MiB of guest RAM around a hole, as QEMU's q35 does around the PCI hole:

    0x000000-0x800000  RAM A (8 MiB)   firmware map: conventional, kernel image, handoff, scratch,
                                       boot-services data, conventional, ACPI NVS
    0x800000-0xc00000  hole            (absent: no PT_LOAD, zeros in the raw image)
    0xc00000-0x1000000 RAM B (4 MiB)   conventional; its last 1 MiB is the ELF's p_filesz < p_memsz

and fills it the way the kernel of docs/design.md §4 would: a kernel PML4 whose entry 510 maps the
kernel image with 4 KiB pages (text R-X, rodata R--, data RW-), one 2 MiB page in kernel virtual
space (with the PAT bit set in its entry), a few demand-paged heap pages, and entry 511 the offset
map (512 x 1 GiB, or 2 MiB pages with `offset_page=2 MiB`); a core-info block, boot info and a
firmware memory map (stepped by 48-byte descriptors), a frame allocator whose free-span nodes sit in
the free frames (linked as a list and as a treap, with the kernel's priorities: see `treap`), and a
buddy heap whose headers are written as a real allocator would write them (stale ones included;
split-off halves left untouched, with no header and no backed page, recorded in km_heap.untouched).

Everything the tests need to know is recorded in `Fixture.truth`, computed independently of kmtool's
decoders: the free spans, every leaf (va, pa, size, raw entry), the heap blocks and the counters.
The fixture writes itself as a raw image (+ optional layout file), as a QEMU-style ELF core (PT_LOADs
split at 0xa0000 and around the hole, a NT_PRSTATUS and a "QEMU" note carrying CR3), and as a tiny
kernel ELF with the `km_*` symbols.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import descriptor_fixtures

from kmtool.layout.table import (
    HEAP_BASE,
    HEAP_SIZE,
    KERNEL_LINK_BASE,
    KERNEL_SPACE_BASE,
    KERNEL_VSPACE_BASE,
    MEMTYPE_HANDOFF,
    MEMTYPE_KERNEL,
    MEMTYPE_SCRATCH,
    OFFSET_MAP_BASE,
    PAGE_SIZE,
    SCRATCH_PAGES,
    GiB,
    MiB,
)
from kmtool.schemas.aspace import ASPACE_MAX, AspaceList
from kmtool.schemas.bootinfo import BOOT_INFO_MAGIC, BOOT_INFO_VERSION, BootInfo
from kmtool.schemas.coreinfo import CORE_INFO_VERSION, CoreInfo
from kmtool.schemas.frames import FRAME_SPAN_MAGIC, FrameAllocator, FrameSpan
from kmtool.schemas.heap import (
    HEAP_FREE_MAGIC,
    HEAP_MAX_ORDERS,
    HEAP_UNTOUCHED_ORDERS,
    HEAP_USED_MAGIC,
    Heap,
    HeapBlock,
)
from kmtool.schemas.memmap import EfiMemoryDescriptor, EfiMemoryType
from kmtool.schemas.pagestats import PageStats
from kmtool.schemas.qemu import (
    NT_PRSTATUS,
    QEMU_CPU_STATE_V1_SIZE,
    ElfPrstatusX86_64,
    QemuCpuState,
)
from kmtool.schemas.signatures import CORE_INFO_MAGIC, CORE_INFO_MAGIC2

P, W, U, PWT, PCD, A, D, PS, G = (1 << b for b in range(9))
PAT_LARGE = 1 << 12
NX = 1 << 63
ADDR = 0x000F_FFFF_FFFF_F000

RAM = ((0x000000, 8 * MiB), (0xC00000, 4 * MiB))
ZERO_TAIL = 1 * MiB  # bytes at the end of RAM B left out of the ELF file (p_filesz < p_memsz)
DESCRIPTOR_SIZE = 48  # firmware's descriptor size: larger than sizeof, as OVMF's is

# (type, start, pages)
MEMORY_MAP = (
    (EfiMemoryType.CONVENTIONAL, 0x000000, 0x9F),
    (MEMTYPE_KERNEL, 0x100000, 64),
    (MEMTYPE_HANDOFF, 0x140000, 16),
    (MEMTYPE_SCRATCH, 0x150000, SCRATCH_PAGES),
    (EfiMemoryType.CONVENTIONAL, 0x190000, (0x400000 - 0x190000) // PAGE_SIZE),
    (EfiMemoryType.BOOT_SERVICES_DATA, 0x400000, 512),
    (EfiMemoryType.CONVENTIONAL, 0x600000, (0x7F0000 - 0x600000) // PAGE_SIZE),
    (EfiMemoryType.ACPI_NVS, 0x7F0000, 16),
    (EfiMemoryType.CONVENTIONAL, 0xC00000, 1024),
    (EfiMemoryType.MMIO, 0xFEC00000, 1),
)
USABLE = {EfiMemoryType.CONVENTIONAL, EfiMemoryType.BOOT_SERVICES_DATA, MEMTYPE_SCRATCH}

KERNEL_PHYS = 0x100000
KERNEL_PAGES = (("text", 16, 0), ("rodata", 8, NX), ("data", 40, W | NX))
BOOT_INFO_PA = 0x140000
MEMORY_MAP_PA = 0x141000
VSPACE_2M_PA = 0x400000
TABLE_POOL = 0x190000  # page tables are allocated upward from here
TABLE_POOL_FRAMES = 27  # all in use (tables, the rest set aside), so the spans stay put
HEAP_POOL = 0x300000  # heap frames upward from here
HEAP_POOL_FRAMES = 24  # all in use (backed heap pages, the rest set aside), so the spans stay put
SCATTERED = (0x350000, 0x352000, 0x6A0000, 0xD00000)  # frames "in use" by someone, to split spans

# .bss offsets of the kernel globals (inside the data pages)
DATA_VA = KERNEL_LINK_BASE + (16 + 8) * PAGE_SIZE
SYMBOLS = {
    "km_core_info": DATA_VA + 0x100,
    "km_frames": DATA_VA + 0x400,
    "km_heap": DATA_VA + 0x800,
    "km_page_stats": DATA_VA + 0xC00,
    "km_fault_record": DATA_VA + 0x1000,
    "km_aspaces": DATA_VA + 0x1400,
}
# The descriptor tables (tests/dump/descriptor_fixtures.py) and the IST1 stack, in the data pages.
GDT_VA = DATA_VA + 0x2000
IDT_VA = DATA_VA + 0x2800
TSS_VA = DATA_VA + 0x3800
IST1_TOP = DATA_VA + 0x5000
HEAP_MIN_ORDER = 6
HEAP_MAX_ORDER = HEAP_SIZE.bit_length() - 1
BUILD_ID = bytes(range(20))  # the kernel ELF's note (20 bytes, as SHA-1); the dump holds 16
HEAP_ALLOCATIONS = (100, 4000, 24, 70000, 300, 5000)
# indices into HEAP_ALLOCATIONS freed again: 2 merges with untouched halves only (nothing stale), then
# 0 merges with 2's listed block (leaving a stale header)
HEAP_FREES = (1, 3, 2, 0)


@dataclass
class Fixture:
    """A built physical image and what is true about it."""

    image: bytearray
    cr3: int
    truth: dict[str, Any] = field(default_factory=dict)
    addresses: dict[str, int] = field(default_factory=dict)

    # -- memory access --------------------------------------------------------------------------

    def put(self, pa: int, data: bytes) -> None:
        assert _in_ram(pa, len(data)), hex(pa)
        self.image[pa : pa + len(data)] = data

    def u64(self, pa: int) -> int:
        return int.from_bytes(self.image[pa : pa + 8], "little")

    def poke(self, pa: int, value: int) -> None:
        self.put(pa, (value & (1 << 64) - 1).to_bytes(8, "little"))

    def field_pa(self, struct_name: str, field_name: str) -> int:
        """Physical address of a field of one of the kernel structures."""
        schema = {
            "core": CoreInfo,
            "frames": FrameAllocator,
            "heap": Heap,
            "boot": BootInfo,
            "stats": PageStats,
        }[struct_name]
        base = self.addresses[struct_name]
        offset = 0
        for sc in schema.subcons:
            if sc.name == field_name:
                return base + offset
            offset += sc.sizeof()
        raise KeyError(field_name)

    # -- writers --------------------------------------------------------------------------------

    def write_raw(self, path: Path, layout: bool = False) -> Path:
        """The image with file offset == physical address; `layout` also writes FILE.layout.json."""
        path.write_bytes(bytes(self.image))
        if layout:
            doc = {
                "format": "kmtool-raw-physical",
                "version": 1,
                "machine": "q35",
                "memory_size": hex(sum(s for _, s in RAM)),
                "file_size": hex(len(self.image)),
                "ranges": [
                    {"name": f"ram{i}", "phys": hex(a), "size": hex(s), "file_offset": hex(a)}
                    for i, (a, s) in enumerate(RAM)
                ],
                "cpus": [
                    {
                        "index": 0,
                        "cr0": "0x80010033",
                        "cr3": hex(self.cr3),
                        "cr4": "0x6a0",
                        "efer": "0xd00",
                    }
                ],
            }
            path.with_name(path.name + ".layout.json").write_text(json.dumps(doc))
        return path

    def write_elf(
        self,
        path: Path,
        cr3: int | None = None,
        cpus: int = 1,
        tables: dict[str, Any] | None = None,
    ) -> Path:
        """A QEMU-style ELF core of the image (see the module docstring). `tables`: base and limit
        (and selector) that replace those of the notes' "idt", "gdt" and "tr" segments."""
        cr3 = self.cr3 if cr3 is None else cr3
        notes = b"".join(_cpu_notes(i, cr3, tables or {}) for i in range(cpus))
        loads = []  # (paddr, memsz, filesz)
        a0, a_size = RAM[0]
        loads.append((a0, 0xA0000, 0xA0000))
        loads.append((0xA0000, a_size - 0xA0000, a_size - 0xA0000))
        b0, b_size = RAM[1]
        loads.append((b0, b_size, b_size - ZERO_TAIL))
        phnum = 1 + len(loads)
        offset = 64 + 56 * phnum
        note_offset = offset
        data_offset = note_offset + len(notes)
        header = _ehdr(e_type=4, entry=0, shoff=0, phnum=phnum, shnum=0, shstrndx=0)
        phdrs = [struct.pack("<IIQQQQQQ", 4, 0, note_offset, 0, 0, len(notes), len(notes), 0)]
        chunks = []
        pos = data_offset
        for paddr, memsz, filesz in loads:
            phdrs.append(struct.pack("<IIQQQQQQ", 1, 0, pos, paddr, paddr, filesz, memsz, 0))
            chunks.append(bytes(self.image[paddr : paddr + filesz]))
            pos += filesz
        path.write_bytes(header + b"".join(phdrs) + notes + b"".join(chunks))
        return path

    def write_kernel_elf(
        self, path: Path, symbols: dict[str, int] | None = None, build_id: bytes | None = BUILD_ID
    ) -> Path:
        """A minimal kernel ELF: one PT_LOAD at the link address, a symbol table and (unless
        `build_id` is None) a GNU build-id note."""
        return write_symbol_elf(path, SYMBOLS if symbols is None else symbols, build_id)


def _in_ram(pa: int, size: int) -> bool:
    return any(a <= pa and pa + size <= a + s for a, s in RAM)


def _cpu_notes(index: int, cr3: int, tables: dict[str, Any]) -> bytes:
    def note(name: bytes, kind: int, desc: bytes) -> bytes:
        pad = lambda b: b + bytes(-len(b) % 4)  # noqa: E731
        return struct.pack("<III", len(name) + 1, len(desc), kind) + pad(name + b"\0") + pad(desc)

    regs = {
        n: 0
        for n in (
            "r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax "
            "rip cs eflags rsp ss fs_base gs_base ds es fs gs"
        ).split()
    }
    regs.update(rip=KERNEL_LINK_BASE + 0x1234, cs=8, ss=0x10, eflags=0x46, rsp=DATA_VA + 0x3000)
    prstatus = ElfPrstatusX86_64.build(
        {
            "pad1": bytes(32),
            "pr_pid": index + 1,
            "pad2": bytes(76),
            "pr_reg": regs,
            "pad3": bytes(8),
        }
    )
    seg = {"selector": 0, "limit": 0xFFFFF, "flags": 0, "pad": 0, "base": 0}
    state = {
        name: 0
        for name in ("rax rbx rcx rdx rsi rdi rsp rbp r8 r9 r10 r11 r12 r13 r14 r15 rflags").split()
    }
    state.update(
        version=1,
        size=QEMU_CPU_STATE_V1_SIZE + 8,  # QEMU 7.2: with kernel_gs_base
        rip=KERNEL_LINK_BASE + 0x1234,
        rsp=DATA_VA + 0x3000,
        cr=[0x80010033, 0, 0, cr3, 0x6A0],
        kernel_gs_base=0,
    )
    for name in ("cs", "ds", "es", "fs", "gs", "ss", "ldt", "tr"):
        state[name] = dict(seg, selector=8 if name == "cs" else 0x10)
    state["tr"] = dict(seg, selector=descriptor_fixtures.TSS_SELECTOR, base=TSS_VA,
                       limit=descriptor_fixtures.TSS_LIMIT)  # fmt: skip
    state["gdt"] = dict(seg, base=GDT_VA, limit=descriptor_fixtures.GDT_LIMIT)
    state["idt"] = dict(seg, base=IDT_VA, limit=descriptor_fixtures.IDT_LIMIT)
    for name, fields in tables.items():
        state[name] = dict(state[name], **fields)
    return note(b"CORE", NT_PRSTATUS, prstatus) + note(b"QEMU", 0, QemuCpuState.build(state))


def _ehdr(e_type: int, entry: int, shoff: int, phnum: int, shnum: int, shstrndx: int) -> bytes:
    """An ELF64 little-endian x86-64 header with program headers right after it."""
    ident = b"\x7fELF" + bytes([2, 1, 1, 0, 0]) + bytes(7)  # class 64, LSB, version 1, SysV
    shentsize = 64 if shnum else 0
    return ident + struct.pack(
        "<HHIQQQIHHHHHH", e_type, 62, 1, entry, 64, shoff, 0, 64, 56, phnum, shentsize, shnum,
        shstrndx,
    )  # fmt: skip


def write_symbol_elf(path: Path, symbols: dict[str, int], build_id: bytes | None = None) -> Path:
    """An x86-64 ET_EXEC ELF with one PT_LOAD at KERNEL_LINK_BASE, `symbols` (SHN_ABS) and, with
    `build_id`, a .note.gnu.build-id section holding an NT_GNU_BUILD_ID note."""
    strtab = b"\0" + b"".join(name.encode() + b"\0" for name in symbols)
    shstrtab = b"\0.symtab\0.strtab\0.shstrtab\0.note.gnu.build-id\0"
    syms = [bytes(24)]
    pos = 1
    for name, value in symbols.items():
        syms.append(struct.pack("<IBBHQQ", pos, 0x11, 0, 0xFFF1, value, 8))
        pos += len(name) + 1
    symtab = b"".join(syms)
    note = b""
    if build_id is not None:  # namesz, descsz, NT_GNU_BUILD_ID, "GNU\0", the id padded to 4
        note = struct.pack("<III", 4, len(build_id), 3) + b"GNU\0" + build_id
        note += bytes(-len(note) % 4)
    body_off = 64 + 56
    sym_off = body_off
    str_off = sym_off + len(symtab)
    shs_off = str_off + len(strtab)
    note_off = (shs_off + len(shstrtab) + 3) & ~3
    sh_off = (note_off + len(note) + 7) & ~7
    shnum = 5 if note else 4
    header = _ehdr(e_type=2, entry=KERNEL_LINK_BASE, shoff=sh_off, phnum=1, shnum=shnum,
                   shstrndx=3)  # fmt: skip
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, KERNEL_LINK_BASE, KERNEL_PHYS, 0x1000, 0x40000, 4096)
    body = symtab + strtab + shstrtab
    body += bytes(note_off - (body_off + len(body))) + note
    pad = bytes(sh_off - (body_off + len(body)))
    shdrs = [
        bytes(64),
        struct.pack("<IIQQQQIIQQ", 1, 2, 0, 0, sym_off, len(symtab), 2, 1, 8, 24),
        struct.pack("<IIQQQQIIQQ", 9, 3, 0, 0, str_off, len(strtab), 0, 0, 1, 0),
        struct.pack("<IIQQQQIIQQ", 17, 3, 0, 0, shs_off, len(shstrtab), 0, 0, 1, 0),
    ]
    if note:  # SHT_NOTE, SHF_ALLOC
        shdrs.append(struct.pack("<IIQQQQIIQQ", 27, 7, 2, 0, note_off, len(note), 0, 0, 4, 0))
    path.write_bytes(header + phdr + body + pad + b"".join(shdrs))
    return path


class _Builder:
    def __init__(self, offset_page: int, cr3: str) -> None:
        self.fx = Fixture(bytearray(RAM[-1][0] + RAM[-1][1]), 0)
        self.offset_page = offset_page
        self.allocated: set[int] = set()
        self.tables: list[int] = []
        self.leaves: dict[int, tuple[int, int, int]] = {}  # va -> (pa, size, raw entry)
        self.next_table = TABLE_POOL
        self.next_heap_frame = HEAP_POOL
        self.cr3_kind = cr3

    def frame(self, pa: int) -> int:
        assert pa % PAGE_SIZE == 0 and pa not in self.allocated, hex(pa)
        self.allocated.add(pa)
        return pa

    def new_table(self) -> int:
        pa = self.frame(self.next_table)
        self.next_table += PAGE_SIZE
        self.tables.append(pa)
        return pa

    def entry(self, table: int, index: int) -> int:
        return self.fx.u64(table + index * 8)

    def map(self, pml4: int, va: int, pa: int, size: int, flags: int) -> None:
        """Map one page of `size` (4K, 2M, 1G): intermediate entries P|W (U when flags has U)."""
        levels = ((39, None), (30, GiB), (21, 2 * MiB), (12, PAGE_SIZE))
        table = pml4
        for shift, leaf_size in levels:
            index = (va >> shift) & 511
            if leaf_size == size:
                raw = pa | flags | P | (PS if size > PAGE_SIZE else 0)
                self.fx.poke(table + index * 8, raw)
                self.leaves[_canon(va & ~(size - 1))] = (pa & ~(size - 1), size, raw)
                return
            e = self.entry(table, index)
            if not e & P:
                child = self.new_table()
                self.fx.poke(table + index * 8, child | P | W | (flags & U))
                e = self.fx.u64(table + index * 8)
            table = e & ADDR

    def virt_write(self, pml4: int, va: int, data: bytes) -> None:
        """Write through the mapping of `va` (which must be mapped with 4 KiB pages)."""
        page = va & ~(PAGE_SIZE - 1)
        pa, size, _ = self.leaves[_canon(page)]
        assert size == PAGE_SIZE
        self.fx.put(pa + (va - page), data)


def _canon(va: int) -> int:
    return va | 0xFFFF000000000000 if va & (1 << 47) else va


def build(offset_page: int = GiB, cr3: str = "kernel") -> Fixture:
    """Build the fixture. `offset_page`: GiB or 2 MiB. `cr3`: "kernel" or "process"."""
    b = _Builder(offset_page, cr3)
    fx = b.fx
    processes: list[int] = []  # the PML4s the kernel lists in km_aspaces
    # -- kernel image, handoff data, memory map --------------------------------------------------
    for pa in range(KERNEL_PHYS, KERNEL_PHYS + 64 * PAGE_SIZE, PAGE_SIZE):
        b.frame(pa)
    for pa in range(BOOT_INFO_PA, BOOT_INFO_PA + 16 * PAGE_SIZE, PAGE_SIZE):
        b.frame(pa)
    fx.put(KERNEL_PHYS, b"\x55\x48\x89\xe5" * 16)  # some "code"
    pml4 = b.new_table()
    fx.addresses["kernel_pml4"] = pml4
    va, pa = KERNEL_LINK_BASE, KERNEL_PHYS
    for _name, pages, flags in KERNEL_PAGES:
        for _ in range(pages):
            b.map(pml4, va, pa, PAGE_SIZE, flags | G)
            va += PAGE_SIZE
            pa += PAGE_SIZE
    # One 2 MiB page in kernel virtual space, PAT bit set in the entry (not an address bit).
    for p in range(VSPACE_2M_PA, VSPACE_2M_PA + 2 * MiB, PAGE_SIZE):
        b.frame(p)
    b.map(pml4, KERNEL_VSPACE_BASE, VSPACE_2M_PA | PAT_LARGE, 2 * MiB, W | NX | G)
    # Offset map: PML4 511.
    if offset_page == GiB:
        for i in range(512):
            b.map(pml4, OFFSET_MAP_BASE + i * GiB, i * GiB, GiB, W | NX | G)
    else:
        top = RAM[-1][0] + RAM[-1][1]
        for p in range(0, top, offset_page):
            b.map(pml4, OFFSET_MAP_BASE + p, p, offset_page, W | NX | G)
    for p in SCATTERED:
        b.frame(p)
    # -- heap: a buddy allocator writing headers as it goes -------------------------------------
    heap = _Heap(b, pml4)
    used = [heap.alloc(n) for n in HEAP_ALLOCATIONS]
    for i in HEAP_FREES:
        heap.free(used[i])
    assert b.next_heap_frame <= HEAP_POOL + HEAP_POOL_FRAMES * PAGE_SIZE
    for pa in range(b.next_heap_frame, HEAP_POOL + HEAP_POOL_FRAMES * PAGE_SIZE, PAGE_SIZE):
        b.frame(pa)
    # Every frame held above is owned the way a kernel owns one (frame accounting finds no leak):
    # the scattered frames and the pools' unused rest back pages of kernel virtual space, 64 MiB
    # above the 2 MiB page (one page table for all of them).
    held = [
        *SCATTERED,
        *range(b.next_heap_frame, HEAP_POOL + HEAP_POOL_FRAMES * PAGE_SIZE, PAGE_SIZE),
    ]
    pool_va = KERNEL_VSPACE_BASE + 64 * MiB
    for i, pa in enumerate(held):
        b.map(pml4, pool_va + i * PAGE_SIZE, pa, PAGE_SIZE, W | NX | G)
    assert b.next_table <= TABLE_POOL + TABLE_POOL_FRAMES * PAGE_SIZE
    i = len(held)
    while b.next_table < TABLE_POOL + TABLE_POOL_FRAMES * PAGE_SIZE:
        b.map(pml4, pool_va + i * PAGE_SIZE, b.frame(b.next_table), PAGE_SIZE, W | NX | G)
        b.next_table += PAGE_SIZE
        i += 1
    pool_pages = i
    # -- process address space (CR3 = process) ---------------------------------------------------
    root = pml4
    if cr3 == "process":
        proc = b.new_table()
        for index in (510, 511):
            fx.poke(proc + index * 8, fx.u64(pml4 + index * 8))
        stack = b.frame(0x6B0000)
        # User stack page: U at the leaf and the PML4 entry, but the PDPT entry lacks U -> not U.
        b.map(proc, 0x7FFFFFFFF000, stack, PAGE_SIZE, U | W | NX)
        pdpt = fx.u64(proc + 255 * 8) & ADDR
        fx.poke(pdpt + 511 * 8, fx.u64(pdpt + 511 * 8) & ~U)
        root = proc
        processes.append(proc)
    fx.cr3 = root
    # -- boot info + memory map -----------------------------------------------------------------
    desc = bytearray()
    for t, start, pages in MEMORY_MAP:
        raw = EfiMemoryDescriptor.build(
            {
                "type": t,
                "pad": 0,
                "physical_start": start,
                "virtual_start": 0,
                "number_of_pages": pages,
                "attribute": 0xF,
            }
        )
        desc += raw + bytes(DESCRIPTOR_SIZE - len(raw))
    fx.put(MEMORY_MAP_PA, bytes(desc))
    cmdline = b"hold test"
    boot = {
        "magic": BOOT_INFO_MAGIC,
        "version": BOOT_INFO_VERSION,
        "length": BootInfo.sizeof(),
        "memory_map": MEMORY_MAP_PA,
        "memory_map_size": len(desc),
        "descriptor_size": DESCRIPTOR_SIZE,
        "descriptor_version": 1,
        "flags": 0,
        "kernel_phys_base": KERNEL_PHYS,
        "kernel_phys_size": 64 * PAGE_SIZE,
        "kernel_virt_base": KERNEL_LINK_BASE,
        "kernel_entry": KERNEL_LINK_BASE + 0x40,
        "scratch_base": 0x150000,
        "scratch_count": SCRATCH_PAGES,
        "scratch_used": 4,
        "rsdp": 0x7F0000,
        "fb_base": 0,
        "fb_size": 0,
        "fb_width": 0,
        "fb_height": 0,
        "fb_pitch": 0,
        "fb_format": 0,
        "loader_tsc": 1000,
        "cmdline_length": len(cmdline),
        "reserved0": 0,
        "cmdline": cmdline + bytes(256 - len(cmdline)),
    }
    fx.put(BOOT_INFO_PA, BootInfo.build(boot))
    fx.addresses.update(boot=BOOT_INFO_PA, memory_map=MEMORY_MAP_PA)
    # -- free spans (computed from the map and the allocated frames, written into the frames) -----
    spans = _free_spans(b.allocated)
    root, links = treap([s for s, _ in spans])
    for i, (start, count) in enumerate(spans):
        nxt = spans[i + 1][0] if i + 1 < len(spans) else 0
        prev = spans[i - 1][0] if i else 0
        left, right, priority = links[start]
        fx.put(
            start,
            FrameSpan.build(
                {
                    "magic": FRAME_SPAN_MAGIC,
                    "start": start,
                    "count": count,
                    "next": nxt,
                    "prev": prev,
                    "left": left,
                    "right": right,
                    "priority": priority,
                }
            ),
        )
    free_frames = sum(c for _, c in spans)
    managed = free_frames + len(b.allocated) - 64 - 16

    # -- kernel globals -------------------------------------------------------------------------
    def sym_pa(name: str) -> int:
        return KERNEL_PHYS + (SYMBOLS[name] - KERNEL_LINK_BASE)

    fx.addresses.update(
        core=sym_pa("km_core_info"),
        frames=sym_pa("km_frames"),
        heap=sym_pa("km_heap"),
        stats=sym_pa("km_page_stats"),
        fault=sym_pa("km_fault_record"),
        aspaces=sym_pa("km_aspaces"),
    )
    fx.put(
        fx.addresses["frames"],
        FrameAllocator.build(
            {
                "head": spans[0][0],
                "free_frames": free_frames,
                "spans": len(spans),
                "managed_frames": managed,
                "alloc_calls": 123,
                "free_calls": 45,
                "root": root,
                "limit": RAM[-1][0] + RAM[-1][1],
            }
        ),
    )
    fx.put(fx.addresses["heap"], Heap.build(heap.state()))
    for va, data in ((GDT_VA, descriptor_fixtures.gdt(TSS_VA)),
                     (IDT_VA, descriptor_fixtures.idt(KERNEL_LINK_BASE)),
                     (TSS_VA, descriptor_fixtures.tss(IST1_TOP))):  # fmt: skip
        fx.put(KERNEL_PHYS + (va - KERNEL_LINK_BASE), data)
    listed = processes + [0] * (ASPACE_MAX - len(processes))
    ids = list(range(1, len(processes) + 1)) + [0] * (ASPACE_MAX - len(processes))
    fx.put(
        fx.addresses["aspaces"],
        AspaceList.build(
            {"count": len(processes), "created": len(processes), "pml4": listed, "id": ids}
        ),
    )
    fx.put(
        fx.addresses["stats"],
        PageStats.build(
            {
                "page_faults": len(heap.pages),
                "demand_maps": len(heap.pages),
                "tables_allocated": len(b.tables),
                "tables_freed": 0,
                "address_spaces": 0,
            }
        ),
    )
    fx.put(
        fx.addresses["core"],
        CoreInfo.build(
            {
                "magic": CORE_INFO_MAGIC,
                "magic2": CORE_INFO_MAGIC2,
                "version": CORE_INFO_VERSION,
                "length": CoreInfo.sizeof(),
                "self_phys": fx.addresses["core"],
                "boot_info_phys": BOOT_INFO_PA,
                "kernel_pml4_phys": pml4,
                "frame_state_phys": fx.addresses["frames"],
                "heap_state_phys": fx.addresses["heap"],
                "page_state_phys": fx.addresses["stats"],
                "kernel_phys_base": KERNEL_PHYS,
                "kernel_virt_base": KERNEL_LINK_BASE,
                "kernel_size": 64 * PAGE_SIZE,
                "offset_map_base": OFFSET_MAP_BASE,
                "offset_map_page_size": offset_page,
                "offset_map_size": 512 * GiB if offset_page == GiB else RAM[-1][0] + RAM[-1][1],
                "kernel_space_base": KERNEL_SPACE_BASE,
                "heap_base": HEAP_BASE,
                "heap_size": HEAP_SIZE,
                "entry_tsc": 2000,
                "ready_tsc": 9000,
                "build_id": BUILD_ID[:16],
                "fault_phys": fx.addresses["fault"],
                "aspaces_phys": fx.addresses["aspaces"],
            }
        ),
    )
    fx.truth = {
        "spans": spans,
        "free_frames": free_frames,
        "treap_root": root,
        "treap": links,
        "leaves": dict(b.leaves),
        "tables": sorted(b.tables),
        "heap_blocks": heap.blocks_sorted(),
        "heap_free_lists": {o: list(v) for o, v in heap.lists.items() if v},
        "heap_bytes_in_use": heap.bytes_in_use(),
        "heap_backed_pages": len(heap.pages),
        "heap_stale_headers": heap.stale,
        "heap_untouched": dict(heap.untouched),
        "process_stack": 0x6B0000 if cr3 == "process" else None,
        "pool_pages": pool_pages,  # 4 KiB pages backing the held frames (see above)
    }
    return fx


def splitmix64(x: int) -> int:
    """The kernel's treap priority of a node created at address `x` (kernel/mm/frame.c mix())."""
    m = (1 << 64) - 1
    x = (x + 0x9E3779B97F4A7C15) & m
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
    return x ^ (x >> 31)


def treap(keys: list[int]) -> tuple[int, dict[int, tuple[int, int, int]]]:
    """The treap over `keys` (ascending span starts) with the kernel's priorities: (root, key ->
    (left, right, priority)). With distinct priorities the treap is unique: the Cartesian tree,
    built here with the usual stack of the rightmost path."""
    priority = {k: splitmix64(k) for k in keys}
    left: dict[int, int] = {}
    right: dict[int, int] = {}
    path: list[int] = []  # the rightmost path, priorities descending
    for k in keys:
        last = 0
        while path and priority[path[-1]] < priority[k]:
            last = path.pop()
        left[k] = last
        if path:
            right[path[-1]] = k
        path.append(k)
    return (path[0] if path else 0), {k: (left[k], right.get(k, 0), priority[k]) for k in keys}


def _free_spans(allocated: set[int]) -> list[tuple[int, int]]:
    """Free spans: usable pages (merged across descriptors), minus frame 0 and allocated frames."""
    pages = []
    for t, start, count in sorted(MEMORY_MAP, key=lambda d: d[1]):
        if t in USABLE:
            pages.extend(range(start, start + count * PAGE_SIZE, PAGE_SIZE))
    spans: list[tuple[int, int]] = []
    for pa in pages:
        if pa == 0 or pa in allocated:
            continue
        if spans and spans[-1][0] + spans[-1][1] * PAGE_SIZE == pa:
            spans[-1] = (spans[-1][0], spans[-1][1] + 1)
        else:
            spans.append((pa, 1))
    return spans


class _Heap:
    """A buddy allocator over the heap range that writes headers through the page tables, as
    kernel/mm/heap.c does: split-off halves are untouched (recorded per order, nothing written),
    a listed block is taken before the untouched one, and a freed block merges with either."""

    def __init__(self, b: _Builder, pml4: int) -> None:
        self.b, self.pml4 = b, pml4
        self.blocks: dict[int, tuple[int, bool, int]] = {}  # va -> (order, used, size)
        self.lists: dict[int, list[int]] = {o: [] for o in range(HEAP_MAX_ORDERS)}
        self.pages: set[int] = set()
        self.stale: list[int] = []
        self.untouched: dict[int, int] = {}  # order -> va
        self.blocks[HEAP_BASE] = (HEAP_MAX_ORDER, False, 0)
        self.lists[HEAP_MAX_ORDER].append(HEAP_BASE)
        self.rewrite_lists()

    def back(self, va: int) -> None:
        page = va & ~(PAGE_SIZE - 1)
        if page not in self.pages:
            pa = self.b.frame(self.b.next_heap_frame)
            self.b.next_heap_frame += PAGE_SIZE
            self.b.map(self.pml4, page, pa, PAGE_SIZE, W | NX | G)
            self.pages.add(page)

    def header(self, va: int, order: int, used: bool, size: int, nxt: int, prev: int) -> None:
        self.back(va)
        self.b.virt_write(
            self.pml4,
            va,
            HeapBlock.build(
                {
                    "magic": HEAP_USED_MAGIC if used else HEAP_FREE_MAGIC,
                    "order": order,
                    "reserved0": 0,
                    "reserved1": 0,
                    "size": size,
                    "next": nxt,
                    "prev": prev,
                }
            ),
        )

    def rewrite_lists(self) -> None:
        for order, vas in self.lists.items():
            for i, va in enumerate(vas):
                nxt = vas[i + 1] if i + 1 < len(vas) else 0
                prev = vas[i - 1] if i else 0
                self.header(va, order, False, 0, nxt, prev)

    def alloc(self, n: int) -> int:
        need = max(HEAP_MIN_ORDER, (n + HeapBlock.sizeof() - 1).bit_length())
        k = min(o for o in range(need, HEAP_MAX_ORDERS) if self.lists[o] or o in self.untouched)
        va = self.lists[k].pop(0) if self.lists[k] else self.untouched.pop(k)
        while k > need:
            k -= 1
            buddy = va + (1 << k)
            self.blocks[buddy] = (k, False, 0)
            self.untouched[k] = buddy
        self.blocks[va] = (need, True, n)
        self.header(va, need, True, n, 0, 0)
        self.rewrite_lists()
        return va

    def free(self, va: int) -> None:
        order, used, _ = self.blocks.pop(va)
        assert used
        while order < HEAP_MAX_ORDER:
            buddy = HEAP_BASE + ((va - HEAP_BASE) ^ (1 << order))
            other = self.blocks.get(buddy)
            if other is None or other[0] != order or other[1]:
                break
            self.blocks.pop(buddy)
            if self.untouched.get(order) == buddy:
                del self.untouched[order]  # nothing written there: nothing stale either
            else:
                self.lists[order].remove(buddy)
                self.stale.append(max(va, buddy))
            va = min(va, buddy)
            order += 1
        self.blocks[va] = (order, False, 0)
        self.lists[order].insert(0, va)
        self.rewrite_lists()

    def blocks_sorted(self) -> list[tuple[int, int, bool, int]]:
        return [(va, o, u, s) for va, (o, u, s) in sorted(self.blocks.items())]

    def bytes_in_use(self) -> int:
        return sum(s for o, u, s in self.blocks.values() if u)

    def state(self) -> dict[str, Any]:
        heads = [self.lists[o][0] if self.lists[o] else 0 for o in range(HEAP_MAX_ORDERS)]
        used = [v for v in self.blocks.values() if v[1]]
        return {
            "base": HEAP_BASE,
            "size": HEAP_SIZE,
            "min_order": HEAP_MIN_ORDER,
            "max_order": HEAP_MAX_ORDER,
            "bytes_in_use": self.bytes_in_use(),
            "blocks_in_use": len(used),
            "free_blocks": len(self.blocks) - len(used),
            "backed_pages": len(self.pages),
            "free_heads": heads,
            "untouched": [self.untouched.get(o, 0) for o in range(HEAP_UNTOUCHED_ORDERS)],
        }
