"""--kernel checks (kmtool/layout/kernel_checks.py) against small ELFs built here and the kernel."""

from __future__ import annotations

from pathlib import Path

import layout_elves as elves
import pytest

from kmtool.build.driver import BuildPaths
from kmtool.errors import KernelElfError
from kmtool.layout import kernel_checks, table


def _failed(path: Path) -> dict[str, tuple[str, ...]]:
    """Failed check name -> culprits, for the ELF at `path`."""
    image = kernel_checks.load_kernel(path)
    return {c.name: c.culprits for c in kernel_checks.check_kernel(image) if not c.ok}


@pytest.fixture(scope="module")
def elf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("elves")


def test_a_well_formed_kernel_passes(elf_dir: Path) -> None:
    path = elves.build_elf(elf_dir, elves.GOOD, "good.elf")
    image = kernel_checks.load_kernel(path)
    results = kernel_checks.check_kernel(image)
    assert [c.name for c in results] == [
        "kernel-format",
        "kernel-segments-in-image",
        "kernel-entry-executable",
        "kernel-no-wx",
        "kernel-segment-pages",
        "kernel-symbols",
        "kernel-image-size",
    ]
    assert all(c.ok for c in results), [c for c in results if not c.ok]
    assert [s.flags_text for s in image.segments] == ["R-X", "R--", "RW-"]
    assert image.start == table.KERNEL_LINK_BASE
    assert image.entry == image.symbols["_start"]


def test_a_segment_outside_the_image_region_is_named(elf_dir: Path) -> None:
    path = elves.build_elf(elf_dir, elves.OUTSIDE, "outside.elf")
    image = kernel_checks.load_kernel(path)
    check = kernel_checks.check_segments_in_image(image, table.REGIONS)
    assert not check.ok
    assert check.culprits == ("program header 2",)
    data = image.segments[2]
    assert data.vaddr == table.region("kernel-image").end + 1 + 0x200000
    assert check.detail.startswith(f"Program header 2 ({data.vaddr:#018x}-")
    assert "RW-) lies outside `kernel-image`" in check.detail
    # The image now reaches past the region, which the size check also reports.
    assert "kernel-image-size" in _failed(path)


def test_a_segment_below_the_link_base_is_named_not_measured(elf_dir: Path) -> None:
    path = elves.build_elf(elf_dir, elves.BELOW, "below.elf")
    image = kernel_checks.load_kernel(path)
    assert image.segments[0].vaddr == 0x200000  # program header 0, in user space
    failed = _failed(path)
    assert failed["kernel-segments-in-image"] == ("program header 0",)
    assert failed["kernel-image-size"] == ("program header 0",)  # named, not a wrapped size
    check = kernel_checks.check_image_size(image, table.REGIONS)
    assert check.detail.startswith(
        "Program header 0 (0x0000000000200000-0x0000000000200000, R--) lies below `kernel-image`"
    )
    assert "EiB" not in check.detail and "TiB" not in check.detail
    extent = kernel_checks.image_extent(image)
    assert extent.start == table.KERNEL_LINK_BASE and extent.below == image.segments[:1]
    assert extent.end == image.segments[-1].vaddr + image.segments[-1].memsz
    assert extent.size < table.MiB


def test_a_writable_and_executable_segment_is_named(elf_dir: Path) -> None:
    path = elves.build_elf(elf_dir, elves.WX, "wx.elf")
    failed = _failed(path)
    assert failed == {"kernel-no-wx": ("program header 0",)}
    image = kernel_checks.load_kernel(path)
    detail = kernel_checks.check_no_wx(image).detail
    assert "RWX) is both writable and executable" in detail


def test_segments_are_named_by_program_header_index_as_readelf_numbers_them(
    elf_dir: Path,
) -> None:
    from elftools.elf.elffile import ELFFile

    path = elves.build_elf(elf_dir, elves.WX_AFTER_STACK, "wx_after_stack.elf")
    with path.open("rb") as stream:
        types = [seg["p_type"] for seg in ELFFile(stream).iter_segments()]
    assert types == ["PT_GNU_STACK", "PT_LOAD", "PT_LOAD", "PT_LOAD"]
    image = kernel_checks.load_kernel(path)
    assert [s.index for s in image.segments] == [1, 2, 3]
    assert _failed(path) == {"kernel-no-wx": ("program header 1",)}
    assert kernel_checks.check_no_wx(image).detail.startswith("Program header 1 (0x")
    assert "is in program header 1 (executable)" in kernel_checks.check_kernel(image)[2].detail


def test_two_segments_in_one_page_are_named(elf_dir: Path) -> None:
    path = elves.build_elf(elf_dir, elves.SHARED_PAGE, "shared.elf")
    assert _failed(path) == {"kernel-segment-pages": ("program header 1", "program header 2")}


def test_an_entry_point_in_data_is_rejected(elf_dir: Path) -> None:
    path = elves.build_elf(elf_dir, elves.DATA_ENTRY, "data_entry.elf")
    failed = _failed(path)
    assert list(failed) == ["kernel-entry-executable"]
    assert failed["kernel-entry-executable"] == ("entry", "program header 2")


def test_missing_image_and_bss_symbols_are_named(elf_dir: Path) -> None:
    path = elves.build_elf(elf_dir, elves.NO_SYMBOLS, "no_symbols.elf")
    failed = _failed(path)
    assert failed == {
        "kernel-symbols": ("__kernel_start", "__kernel_end", "__bss_start", "__bss_end")
    }


def test_bss_symbols_outside_zero_filled_writable_memory_are_rejected(elf_dir: Path) -> None:
    path = elves.build_elf(elf_dir, elves.BSS_IN_RODATA, "bss_rodata.elf")
    image = kernel_checks.load_kernel(path)
    check = kernel_checks.check_symbols(image, table.REGIONS)
    assert check.culprits == ("__bss_start", "__bss_end")
    assert "zero-filled part of a writable segment" in check.detail


def test_a_32_bit_elf_fails_the_format_check(elf_dir: Path) -> None:
    path = elves.build_elf(elf_dir, elves.ELF32, "elf32.elf", target="i686")
    check = kernel_checks.check_format(kernel_checks.load_kernel(path))
    assert not check.ok
    assert "ELF32, not ELF64" in check.detail and "EM_386" in check.detail


def test_files_that_are_not_elves_raise_kernel_elf_errors(tmp_path: Path) -> None:
    with pytest.raises(KernelElfError, match=r"`.*missing\.elf` does not exist\.$"):
        kernel_checks.load_kernel(tmp_path / "missing.elf")
    text = tmp_path / "notes.txt"
    text.write_text("not an ELF\n")
    with pytest.raises(KernelElfError, match="is not an ELF file"):
        kernel_checks.load_kernel(text)
    truncated = tmp_path / "truncated.elf"
    truncated.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(9))
    with pytest.raises(KernelElfError, match="is truncated or malformed"):
        kernel_checks.load_kernel(truncated)


def test_the_real_kernel_passes_every_check(fresh_build: BuildPaths) -> None:
    image = kernel_checks.load_kernel(fresh_build.kernel)
    results = kernel_checks.check_kernel(image)
    assert all(c.ok for c in results), [c for c in results if not c.ok]
    assert image.entry == image.symbols["_start"]
    assert image.start == table.KERNEL_LINK_BASE
    assert not any(s.writable and s.executable for s in image.segments)
