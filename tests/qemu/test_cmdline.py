"""The QEMU argv builder (exact arguments) and the --memory size parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from kmtool.errors import ValidationError
from kmtool.layout.table import GiB, MiB
from kmtool.qemu.cmdline import (
    MachineSpec,
    build_argv,
    escape,
    kernel_cmdline,
    parse_size,
)
from kmtool.units import suffix_size_text


def _spec(tmp_path: Path, **changes: object) -> MachineSpec:
    image = tmp_path / "kmtool.img"
    image.write_bytes(b"")
    fields: dict[str, object] = {
        "image": image,
        "firmware_code": Path("/fw/CODE.fd"),
        "firmware_vars": Path("/run/VARS.fd"),
        "debugcon_log": Path("build/debugcon.log"),
    }
    fields.update(changes)
    return MachineSpec(**fields)  # type: ignore[arg-type]


def test_default_argv_exact(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    assert build_argv(spec) == [
        "qemu-system-x86_64",
        "-nodefaults",
        "-no-user-config",
        "-no-reboot",
        "-display", "none",
        "-accel", "tcg",
        "-cpu", "max",
        "-smp", "1",
        "-object", "memory-backend-ram,id=ram,size=512M,reserve=off",
        "-machine", "q35,memory-backend=ram",
        "-m", "512M",
        "-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/fw/CODE.fd",
        "-drive", "if=pflash,format=raw,unit=1,file=/run/VARS.fd",
        "-drive", f"if=none,id=disk0,format=raw,readonly=on,file={spec.image}",
        "-device", "virtio-blk-pci,drive=disk0",
        "-serial", "stdio",
        "-chardev", "file,id=debugcon,path=build/debugcon.log",
        "-device", "isa-debugcon,iobase=0xe9,chardev=debugcon",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-device", "vmcoreinfo",
    ]  # fmt: skip


def test_optional_parts_exact(tmp_path: Path) -> None:
    spec = _spec(
        tmp_path,
        memory=256 * GiB,
        cpus=2,
        accel="kvm",
        cpu="max,-pdpe1gb",
        cmdline_file=Path("/run/cmd,line.txt"),
        qmp_socket=Path("/run/qmp.sock"),
        gdb=True,
        gdb_port=4321,
    )
    argv = build_argv(spec)
    assert argv[argv.index("-accel") + 1] == "kvm"
    assert argv[argv.index("-cpu") + 1] == "max,-pdpe1gb"  # a model string is passed through
    assert argv[argv.index("-smp") + 1] == "2"
    assert argv[argv.index("-object") + 1] == "memory-backend-ram,id=ram,size=256G,reserve=off"
    assert argv[argv.index("-m") + 1] == "256G"
    assert argv[-7:] == [
        "-fw_cfg", "name=opt/kmtool/cmdline,file=/run/cmd,,line.txt",
        "-qmp", "unix:/run/qmp.sock,server=on,wait=off",
        "-gdb", "tcp:127.0.0.1:4321", "-S",  # loopback only, never `-s` (every interface)
    ]  # fmt: skip
    assert "-s" not in argv


def test_directory_is_a_read_only_fat_disk(tmp_path: Path) -> None:
    esp = tmp_path / "a,b"
    esp.mkdir()
    argv = build_argv(_spec(tmp_path, image=esp))
    assert f"if=none,id=disk0,format=raw,readonly=on,file=fat:{tmp_path}/a,,b" in argv


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512M", 512 * MiB),
        ("512", None),  # a bare number is bytes (the project's size syntax): too small
        ("1.5G", 1536 * MiB),
        ("3G", 3 * GiB),
        ("3GiB", 3 * GiB),
        ("64g", 64 * GiB),
        ("256G", 256 * GiB),
        ("131072K", 128 * MiB),
        ("1T", None),  # beyond the offset map
        ("32M", None),  # too small for OVMF
        ("0.5M", None),
        ("lots", None),
        ("100001K", None),  # not whole MiB
    ],
)
def test_parse_size(text: str, size: int | None) -> None:
    if size is None:
        with pytest.raises(ValidationError, match=f"`{text}`"):
            parse_size(text)
    else:
        assert parse_size(text) == size


def test_suffix_size_text_and_escape() -> None:
    assert [suffix_size_text(s) for s in (512 * MiB, 3 * GiB, 1536 * MiB, 4097)] == [
        "512M", "3G", "1536M", "4097",
    ]  # fmt: skip
    assert escape("/a,b,,c") == "/a,,b,,,,c"


def test_kernel_cmdline_appends_hold_once() -> None:
    assert kernel_cmdline("test", hold=False) == "test"
    assert kernel_cmdline("test", hold=True) == "test hold"
    assert kernel_cmdline("", hold=True) == "hold"
    assert kernel_cmdline("hold test", hold=True) == "hold test"
    assert kernel_cmdline("a=1,b=2", hold=False) == "a=1,b=2"


def test_a_live_run_backs_ram_with_a_shared_file(tmp_path: Path) -> None:
    argv = build_argv(_spec(tmp_path, memory=256 * GiB, ram_file=Path("build/live/s,1.ram")))
    backend = argv[argv.index("-object") + 1]
    assert backend == "memory-backend-file,id=ram,size=256G,mem-path=build/live/s,,1.ram,share=on"
    assert argv[argv.index("-machine") + 1] == "q35,memory-backend=ram"
    assert argv[argv.index("-m") + 1] == "256G"
    # no exception log (nobody would read it), but a reset pauses the VM rather than ending QEMU
    assert "-no-reboot" not in argv and "-d" not in argv
    assert argv[argv.index("-action") + 1] == "reboot=shutdown,shutdown=pause"
