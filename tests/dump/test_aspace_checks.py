"""The address-space and frame-accounting checks (kmtool.dump.checks.aspaces and .accounting), each
passing on a
consistent set of parts and failing, naming the culprit, on one broken part. The parts are built
from the real decoder types; the real kernel's are checked in tests/integration/test_workload.py."""

from __future__ import annotations

import numpy as np

from kmtool.dump.accounting import Intervals, account
from kmtool.dump.aspaces import AddressSpace, AddressSpaces
from kmtool.dump.checks.accounting import no_leaked_frames
from kmtool.dump.checks.aspaces import (
    kernel_half_shared,
    user_half_is_user,
    user_not_in_kernel_frames,
)
from kmtool.dump.levels import PERM_U, PERM_W
from kmtool.dump.memmap import MemoryMap
from kmtool.dump.pagetable import PageTables, Ranges
from kmtool.dump.records import numpy_dtype
from kmtool.dump.regions import NO_REGION
from kmtool.layout.table import KERNEL_LINK_BASE, MEMTYPE_KERNEL, PAGE_SIZE
from kmtool.schemas.memmap import EfiMemoryDescriptor, EfiMemoryType

KERNEL_HALF = (0x1003, 0x2003)
IMAGE = 0x100000  # the kernel image's frames: 16 pages from here


def ranges(*rows: tuple[int, int, int, int]) -> Ranges:
    """Ranges from (va, phys, size, perm) rows."""
    u = lambda i: np.array([r[i] for r in rows], dtype=np.uint64)  # noqa: E731
    perm = np.array([r[3] for r in rows], dtype=np.uint8)
    return Ranges(u(0), u(1), u(2), np.full(len(rows), PAGE_SIZE, dtype=np.uint64), perm,
                  np.full(len(rows), NO_REGION, dtype=np.int16))  # fmt: skip


def tables(root: int, *rows: tuple[int, int, int, int]) -> PageTables:
    return PageTables(root, ranges(*rows), {PAGE_SIZE: len(rows)}, np.array([root], np.uint64))


def memmap() -> MemoryMap:
    entries = np.zeros(2, dtype=numpy_dtype(EfiMemoryDescriptor))
    entries["type"] = [EfiMemoryType.CONVENTIONAL, MEMTYPE_KERNEL]
    entries["physical_start"] = [0x1000, IMAGE]
    entries["number_of_pages"] = [0xFF, 16]
    return MemoryMap(0, 2 * 48, 48, 1, entries)


def spaces(*users: tuple[int, int, int, int], half: tuple[int, int] = KERNEL_HALF) -> AddressSpaces:
    space = AddressSpace(7, 0x50000, tables(0x50000, *users), half)
    return AddressSpaces(0x9000, 7, [space], KERNEL_HALF)


KERNEL = tables(0x40000, (KERNEL_LINK_BASE, IMAGE, 16 * PAGE_SIZE, PERM_W))
USER_PAGE = (0x400000, 0x60000, PAGE_SIZE, PERM_U | PERM_W)


def test_consistent_parts_pass() -> None:
    s = spaces(USER_PAGE)
    assert kernel_half_shared(s).ok and user_half_is_user(s).ok
    assert user_not_in_kernel_frames(KERNEL, s, memmap()).ok


def test_a_private_kernel_half_fails_naming_the_entry() -> None:
    check = kernel_half_shared(spaces(USER_PAGE, half=(0x1003, 0x7003)))
    assert not check.ok
    assert check.detail == "address space 7 (PML4 0x50000) entry 511 is 0x7003, the kernel's 0x2003"


def test_a_supervisor_page_in_the_user_half_fails() -> None:
    check = user_half_is_user(spaces(USER_PAGE, (0x500000, 0x61000, PAGE_SIZE, PERM_W)))
    assert (
        not check.ok and check.detail == "address space 7: 0x500000 (+4096 bytes, RW--) -> 0x61000"
    )


def test_a_user_page_on_the_kernel_image_or_a_page_table_fails() -> None:
    on_image = (0x500000, IMAGE + 3 * PAGE_SIZE, PAGE_SIZE, PERM_U)
    on_table = (0x600000, 0x40000, PAGE_SIZE, PERM_U)
    check = user_not_in_kernel_frames(KERNEL, spaces(USER_PAGE, on_image, on_table), memmap())
    assert not check.ok
    assert "0x500000 -> 0x103000" in check.detail and "0x600000 -> 0x40000" in check.detail
    assert "0x400000" not in check.detail


def test_no_leaked_frames_names_the_unaccounted_ranges() -> None:
    ownable = Intervals.of(np.array([0x1000]), np.array([0x100000]))
    free = Intervals.of(np.array([0x1000, 0x9000]), np.array([0x5000, 0x100000]))
    check = no_leaked_frames(account(ownable, {"free": free}))
    assert not check.ok and check.detail.endswith(": 0x5000-0x8fff (4 frames)")
    assert check.detail.startswith("4 frames belong to no owner")
    assert no_leaked_frames(account(ownable, {"free": ownable})).ok
