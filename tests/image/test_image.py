"""build_image(): a GPT disk with one FAT32 ESP, checked with sgdisk and mtools as oracles."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require

from kmtool.errors import ImageError
from kmtool.image import assemble, fat
from kmtool.image.assemble import build_image

FILES = {"EFI/BOOT/BOOTX64.EFI": b"MZ fake loader\n", "kernel.elf": b"\x7fELF" + bytes(5000)}
MTOOLS_ENV = dict(os.environ, MTOOLS_SKIP_CHECK="1", MTOOLSRC=os.devnull, TZ="UTC")


@pytest.fixture(autouse=True)
def _mtools(monkeypatch: pytest.MonkeyPatch) -> None:
    require("mformat", "mmd", "mcopy")
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _mtools_cmd(*argv: str) -> str:
    return subprocess.run(
        list(argv), capture_output=True, text=True, check=True, env=MTOOLS_ENV
    ).stdout


def test_image_holds_the_files(tmp_path: Path) -> None:
    require("mdir", "mtype")
    info = build_image(tmp_path / "disk.img", FILES)
    assert info.files == ("/EFI/BOOT/BOOTX64.EFI", "/kernel.elf")
    assert info.size == (tmp_path / "disk.img").stat().st_size == 66 << 20
    esp = f"{info.path}@@{info.partition_offset}"
    listing = _mtools_cmd("mdir", "-i", esp, "-/", "-a", "::")
    assert "Volume in drive : is KMTOOL" in listing
    assert "Volume Serial Number is 4B4D-544C" in listing
    assert re.search(r"^BOOTX64  EFI\s+15 1980-01-01\s+0:00", listing, re.M)
    assert re.search(r"^kernel   elf\s+5004 1980-01-01\s+0:00", listing, re.M)
    out = subprocess.run(
        ["mtype", "-i", esp, "::/kernel.elf"], capture_output=True, check=True, env=MTOOLS_ENV
    ).stdout
    assert out == FILES["kernel.elf"]
    minfo = _mtools_cmd("minfo", "-i", esp, "::")
    assert "hidden sectors: 2048" in minfo  # the partition's start, as a partitioned disk needs
    assert "big size: 131072 sectors" in minfo


def test_sgdisk_finds_no_problems(tmp_path: Path) -> None:
    require("sgdisk")
    info = build_image(tmp_path / "disk.img", FILES)
    verify = subprocess.run(["sgdisk", "-v", str(info.path)], capture_output=True, text=True)
    assert verify.returncode == 0 and "No problems found." in verify.stdout
    printed = subprocess.run(["sgdisk", "-p", str(info.path)], capture_output=True, text=True)
    assert f"Disk identifier (GUID): {str(info.disk_guid).upper()}" in printed.stdout
    assert re.search(r"1\s+2048\s+133119\s+64\.0 MiB\s+EF00\s+EFI system partition", printed.stdout)


def test_same_inputs_give_identical_images(tmp_path: Path) -> None:
    a = build_image(tmp_path / "a.img", FILES)
    b = build_image(tmp_path / "b.img", dict(reversed(list(FILES.items()))))  # order is irrelevant
    assert _sha256(a.path) == _sha256(b.path)
    assert a.disk_guid == b.disk_guid and a.partition_guid == b.partition_guid
    assert a.disk_guid.version == 4 and a.disk_guid != a.partition_guid


def test_different_content_gives_different_guids(tmp_path: Path) -> None:
    a = build_image(tmp_path / "a.img", FILES)
    b = build_image(tmp_path / "b.img", {**FILES, "kernel.elf": b"corrupt"})
    assert a.disk_guid != b.disk_guid and a.partition_guid != b.partition_guid


def test_time_stamps_follow_source_date_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require("mdir")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1704067200")  # 2024-01-01 00:00:00 UTC
    info = build_image(tmp_path / "disk.img", FILES)
    listing = _mtools_cmd("mdir", "-i", f"{info.path}@@{info.partition_offset}", "::")
    assert "kernel   elf      5004 2024-01-01   0:00" in listing
    assert "1980" not in listing


def test_host_files_and_bytes_mix(tmp_path: Path) -> None:
    loader = tmp_path / "BOOTX64.EFI"
    loader.write_bytes(FILES["EFI/BOOT/BOOTX64.EFI"])
    a = build_image(
        tmp_path / "a.img", {"/EFI/BOOT/BOOTX64.EFI": loader, "kernel.elf": FILES["kernel.elf"]}
    )
    b = build_image(tmp_path / "b.img", FILES)
    assert _sha256(a.path) == _sha256(b.path)


def test_image_without_a_kernel(tmp_path: Path) -> None:
    require("mdir")
    info = build_image(tmp_path / "disk.img", {"EFI/BOOT/BOOTX64.EFI": b"MZ"})
    listing = _mtools_cmd("mdir", "-i", f"{info.path}@@{info.partition_offset}", "-/", "::")
    assert "BOOTX64" in listing and "kernel" not in listing


def test_failure_leaves_the_previous_image_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "disk.img"
    out.write_bytes(b"previous image")

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(fat, "copy_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_image(out, FILES)
    assert out.read_bytes() == b"previous image"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk.img"]


def test_mtools_failure_is_an_image_error(tmp_path: Path) -> None:
    out = tmp_path / "disk.img"
    with pytest.raises(ImageError) as err:
        build_image(out, FILES, esp_size=32 << 20)  # too few clusters for FAT32
    assert str(err.value).startswith("`mformat` failed to format the ESP in `")
    assert "Too few clusters" in str(err.value)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../kernel.elf", "is not a usable file path inside the ESP"),
        ("", "is not a usable file path inside the ESP"),
        ("EFI/a*b", "contains characters a FAT name cannot hold: '*'"),
    ],
)
def test_bad_esp_paths(tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(ImageError, match=re.escape(message)):
        build_image(tmp_path / "disk.img", {name: b"x"})


def test_names_differing_only_in_case_collide(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"`/KERNEL.ELF` is given twice"):
        build_image(tmp_path / "disk.img", {"kernel.elf": b"a", "KERNEL.ELF": b"b"})


def test_unreadable_source_and_early_epoch(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"^Cannot read `.*missing` for `/kernel.elf`"):
        build_image(tmp_path / "disk.img", {"kernel.elf": tmp_path / "missing"})
    with pytest.raises(ImageError, match=r"before 1980-01-01"):
        build_image(tmp_path / "disk.img", FILES, epoch=0)


def test_bad_source_date_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(ImageError, match=r"`SOURCE_DATE_EPOCH` must be a whole number"):
        assemble.build_image(tmp_path / "disk.img", FILES)


def test_module_command_line(tmp_path: Path) -> None:
    kernel = tmp_path / "k.elf"
    kernel.write_bytes(FILES["kernel.elf"])
    ok = subprocess.run(
        [sys.executable, "-m", "kmtool.image", str(tmp_path / "d.img"), f"kernel.elf={kernel}"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "kmtool.image", str(tmp_path / "e.img"), "kernel.elf"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 1
    assert bad.stderr == "error: `kernel.elf` is not of the form ESP_PATH=FILE.\n"
    assert not (tmp_path / "e.img").exists()
