"""The runner end to end on the "hello" EFI application (no kernel needed): outcomes, exit
statuses, --json, the time limit, held VMs with QMP, ELF and raw dumps, no QEMU left behind.
Four short TCG boots and one cut short at once; the run policy also with a stand-in program in
QEMU's place (no boot at all)."""

from __future__ import annotations

import importlib.util
import json
import mmap
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, require
from elftools.elf.elffile import ELFFile

from kmtool.errors import RunError
from kmtool.layout.table import MiB
from kmtool.qemu.outcome import Outcome
from kmtool.qemu.preflight import check_cmdline, check_image
from kmtool.qemu.runner import RunOptions, RunResult, held_vm, run_image
from kmtool.schemas.bootinfo import CMDLINE_MAX

HelloEsp = Callable[[str], Path]
QEMU_TOOLS = ("clang", "lld-link", "qemu-system-x86_64", "/usr/share/OVMF/OVMF_CODE_4M.fd")


@pytest.fixture(scope="module")
def hello_esp(tmp_path_factory: pytest.TempPathFactory) -> HelloEsp:
    """`hello_esp(variant)` -> an ESP directory booting that variant of benchmarks/hello_efi.c
    (pass, fail, hang, hold), built once per variant."""
    require(*QEMU_TOOLS)
    spec = importlib.util.spec_from_file_location("hello_efi", REPO / "benchmarks" / "hello_efi.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    work = tmp_path_factory.mktemp("hello")
    built: dict[str, Path] = {}

    def get(variant: str) -> Path:
        if variant not in built:
            built[variant] = module.build_hello(work, variant)
        return built[variant]

    return get


def kmtool(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1", COLUMNS="100")
    return subprocess.run(
        [sys.executable, "-m", "kmtool", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.qemu
def test_json_pass_with_256g_of_lazily_backed_ram(hello_esp: HelloEsp, tmp_path: Path) -> None:
    # 256 GiB is ten times this host's RAM: it only starts because RAM is reserve=off.
    done = kmtool("run", str(hello_esp("pass")), "--json", "--memory", "256G", "--cmdline",
                  "a,b c", "--build-dir", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # stdout is exactly one JSON object
    assert result["outcome"] == "pass" and result["exit_status"] == 0
    assert result["qemu_status"] == 33
    assert result["report"] == {"app": "hello", "exit": "0x10"}
    assert result["accel"] in ("tcg", "kvm") and result["held"] is False
    assert 0 < result["ready_seconds"] <= result["seconds"] < 60
    assert result["cmdline"] == "a,b c"
    assert result["serial_log"] == str(tmp_path / "serial.log")
    assert "hello from EFI" in (tmp_path / "serial.log").read_text()
    assert "hello from EFI" in (tmp_path / "debugcon.log").read_text()
    command = result["command"]
    assert command[command.index("-m") + 1] == "256G"
    assert "memory-backend-ram,id=ram,size=256G,reserve=off" in command
    fw_cfg = command[command.index("-fw_cfg") + 1]
    assert fw_cfg.startswith("name=opt/kmtool/cmdline,file=")


@pytest.mark.qemu
def test_fail_outcome_text_and_status(hello_esp: HelloEsp, tmp_path: Path) -> None:
    done = kmtool("run", str(hello_esp("fail")), "--build-dir", str(tmp_path))
    assert done.returncode == 2, done.stderr
    lines = done.stdout.splitlines()
    assert "hello from EFI" in lines  # serial shown live, as plain lines
    assert re.fullmatch(
        r"outcome fail: the guest reported failure \(QEMU exit 35, \d+\.\d s, (tcg|kvm)\); "
        r"exit status 2",
        lines[-1],
    )
    assert "\x1b" not in done.stdout  # OVMF's escape sequences never reach the terminal


@pytest.mark.qemu
def test_hang_gives_timeout_within_the_limit(hello_esp: HelloEsp, tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_image(hello_esp("hang"), RunOptions(timeout=8, build_dir=tmp_path))
    elapsed = time.monotonic() - started
    assert result.outcome is Outcome.TIMEOUT and result.exit_status == 5
    assert 8 <= result.seconds < 8 + 3 and elapsed < 8 + 5
    assert result.report == {"app": "hello", "exit": "0x10"}  # it did run; it just never exited
    # kmtool stopped the VM over QMP, read where the CPU was spinning, and quit QEMU.
    assert not result.killed and result.stopped_at is not None and result.dump_reason is None
    assert result.message == (
        f"No exit within 8 s; kmtool stopped the VM. The CPU was at {result.stopped_at:#x}."
    )  # the hello app is not our kernel: no symbol to name it by
    assert result.qemu_status is not None  # QEMU was reaped, not left behind


@pytest.mark.qemu
def test_hang_with_dump_is_stopped_and_dumped_at_the_limit(
    hello_esp: HelloEsp, tmp_path: Path
) -> None:
    dump = tmp_path / "hang.elf"
    done = kmtool("run", str(hello_esp("hang")), "--json", "--timeout", "5", "--memory", "128M",
                  "--dump", str(dump), "--build-dir", str(tmp_path))  # fmt: skip
    assert done.returncode == 5, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["outcome"] == "timeout" and result["killed"] is False
    assert (result["dump"], result["dump_reason"]) == (str(dump), "timeout")
    assert result["message"] == (
        "No exit within 5 s; kmtool stopped the VM, dumped it and quit QEMU. The CPU was at "
        f"{result['stopped_at']}."
    )
    assert 5 <= result["seconds"] < 5 + 3
    with open(dump, "rb") as f:
        elf = ELFFile(f)
        assert elf["e_type"] == "ET_CORE"
        assert (
            sum(s["p_memsz"] for s in elf.iter_segments() if s["p_type"] == "PT_LOAD") == 128 * MiB
        )


def _qemu_pids_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            argv
            and argv[0].endswith(b"qemu-system-x86_64")
            and any(text.encode() in a for a in argv)
        ):
            pids.append(int(proc.name))
    return pids


@pytest.mark.qemu
def test_qemu_dies_with_a_killed_kmtool(hello_esp: HelloEsp, tmp_path: Path) -> None:
    # SIGKILL skips every clean-up in kmtool; QEMU must still not outlive it.
    kmtool_process = subprocess.Popen(
        [sys.executable, "-m", "kmtool", "run", str(hello_esp("hang")), "--build-dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=dict(os.environ, TMPDIR=str(tmp_path)),  # the killed run cannot remove its temp dir
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not _qemu_pids_mentioning(str(tmp_path)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _qemu_pids_mentioning(str(tmp_path)), "QEMU never started"
    finally:
        kmtool_process.kill()
        kmtool_process.wait()
    deadline = time.monotonic() + 5
    while _qemu_pids_mentioning(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _qemu_pids_mentioning(str(tmp_path)) == []


def test_qemu_error_shows_stderr(tmp_path: Path) -> None:
    require("qemu-system-x86_64", "/usr/share/OVMF/OVMF_CODE_4M.fd")
    # No boot: QEMU refuses the CPU model at start-up.
    done = kmtool("run", str(tmp_path), "--cpu", "no-such-model", "--build-dir", str(tmp_path))
    assert done.returncode == 6
    assert "no-such-model" in done.stdout
    assert done.stdout.splitlines()[-1].startswith("outcome qemu-error:")


def test_missing_image_is_a_user_error(tmp_path: Path) -> None:
    done = kmtool("run", str(tmp_path / "none.img"), "--build-dir", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"error: The image `{tmp_path / 'none.img'}` does not exist; run `kmtool build` first."
    )


@pytest.mark.parametrize(
    "content", [b"# kmtool\n\nA README, not a disk.\n" * 40, b"\x7fELF\x02\x01\x01" + bytes(2000)]
)
def test_a_file_that_is_not_a_disk_is_refused_before_booting(
    tmp_path: Path, content: bytes
) -> None:
    not_a_disk = tmp_path / "README.md"
    not_a_disk.write_bytes(content)
    started = time.monotonic()
    done = kmtool("run", str(not_a_disk), "--build-dir", str(tmp_path))
    assert done.returncode == 1 and time.monotonic() - started < 10
    assert done.stderr.strip() == (
        f"error: `{not_a_disk}` is not a disk image (no GPT header at LBA 1 and no MBR boot "
        "signature 0x55AA), so it would not boot; pass the image `kmtool build` writes or a "
        "directory."
    )
    assert not (tmp_path / "serial.log").exists()  # QEMU never started


def test_disk_image_checks(tmp_path: Path) -> None:
    gpt = tmp_path / "gpt.img"
    gpt.write_bytes(bytes(512) + b"EFI PART" + bytes(504))
    mbr = tmp_path / "mbr.img"
    mbr.write_bytes(bytes(510) + b"\x55\xaa")
    for good in (gpt, mbr, tmp_path):  # a directory is served as a FAT disk
        check_image(good)
    short = tmp_path / "short.img"
    short.write_bytes(b"\x55\xaa")
    with pytest.raises(RunError, match="is not a disk image"):
        check_image(short)


@pytest.mark.parametrize("where", ["missing", "unwritable"])
def test_dump_directory_is_checked_before_booting(tmp_path: Path, where: str) -> None:
    directory = tmp_path / "nope" if where == "missing" else Path("/proc")
    dump = directory / "d.elf"
    done = kmtool("run", str(tmp_path), "--dump", str(dump), "--build-dir", str(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    message = done.stderr.strip()
    if where == "missing":
        assert (
            message == f"error: The directory `{directory}` for the dump `{dump}` does not exist."
        )
    else:
        assert message.startswith(
            f"error: The dump `{dump}` cannot be written: the directory `/proc` is not writable ("
        )
    assert "\n" not in message and not (tmp_path / "serial.log").exists()


def test_a_too_long_cmdline_is_refused_before_booting(tmp_path: Path) -> None:
    limit = CMDLINE_MAX - 1
    check_cmdline("x" * limit)
    done = kmtool("run", str(tmp_path), "--cmdline", "é" * 128, "--build-dir", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"error: The kernel command line is 256 bytes long, over the loader's limit of {limit} bytes."
    )
    # `hold` (appended for --dump) counts too
    done = kmtool("run", str(tmp_path), "--cmdline", "x" * 252, "--dump", str(tmp_path / "d"),
                  "--build-dir", str(tmp_path))  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: The kernel command line is 257 bytes long (with the `hold` that kmtool appends "
        f"for --dump), over the loader's limit of {limit} bytes."
    )


@pytest.mark.qemu
def test_held_vm_info_tlb_and_dumps(hello_esp: HelloEsp, tmp_path: Path) -> None:
    memory = 256 * MiB
    options = RunOptions(memory=memory, timeout=30, build_dir=tmp_path)
    with held_vm(hello_esp("hold"), options) as vm:
        assert vm.qmp.status() == "paused"
        assert vm.report == {"app": "hello", "exit": "0x10"}
        tlb = vm.hmp("info tlb")
        # OVMF identity-maps low memory: the first line maps virtual 0 to physical 0.
        assert tlb.splitlines()[0].startswith("0000000000000000: 0000000000000000")
        elf_info = vm.dump(tmp_path / "d.elf", "elf")
        raw_info = vm.dump(tmp_path / "d.raw", "raw")
    assert not (tmp_path / "d.elf.partial").exists()

    with open(elf_info.path, "rb") as f:
        elf = ELFFile(f)
        assert elf["e_type"] == "ET_CORE"
        loads = [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
        assert sum(s["p_memsz"] for s in loads) == memory
        layout = json.loads((tmp_path / "d.raw.layout.json").read_text())
        assert layout["format"] == "kmtool-raw-physical" and layout["version"] == 1
        assert layout["ranges"] == [
            {"name": "ram-below-4g", "phys": "0x0", "size": hex(memory), "file_offset": "0x0"}
        ]
        assert layout["cpus"][0]["cr3"] == hex(int(layout["cpus"][0]["cr3"], 16))
        assert raw_info.path.stat().st_size == memory
        # Same bytes in both formats, except the legacy VGA window (RAM vs. what the bus shows).
        with (
            open(raw_info.path, "rb") as r,
            mmap.mmap(r.fileno(), 0, access=mmap.ACCESS_READ) as raw,
        ):
            for seg in loads:
                start, size = seg["p_paddr"], seg["p_filesz"]
                if start <= 0xA0000 < start + size:
                    continue
                f.seek(seg["p_offset"])
                assert f.read(size) == raw[start : start + size], hex(start)


def _stand_in_qemu(tmp_path: Path, body: str) -> str:
    """An executable that takes QEMU's place: it ignores its arguments and runs `body`."""
    program = tmp_path / "fake-qemu"
    program.write_text(f"#!{sys.executable}\nimport sys, time\n{body}\n")
    program.chmod(0o755)
    return str(program)


def _policy_run(tmp_path: Path, body: str, **options: Any) -> RunResult:
    require("/usr/share/OVMF/OVMF_CODE_4M.fd")  # the run still finds and copies the firmware
    qemu = _stand_in_qemu(tmp_path, body)
    image = tmp_path / "esp"
    image.mkdir(exist_ok=True)
    settings = RunOptions(qemu=qemu, accel="tcg", build_dir=tmp_path, **options)
    return run_image(image, settings)


def test_policy_an_exit_status_is_the_outcome(tmp_path: Path) -> None:
    body = "print('fail heap: lost 4 bytes'); print('KM-REPORT {\"n\": 1}'); sys.exit(35)"
    result = _policy_run(tmp_path, body, cmdline="test")
    assert result.outcome is Outcome.FAIL and result.exit_status == 2
    assert (result.qemu_status, result.message, result.held, result.killed) == (
        35,
        "",
        False,
        False,
    )
    assert result.report == {"n": 1} and result.cmdline == "test"
    assert result.ready_seconds is not None and 0 <= result.ready_seconds <= result.seconds
    # Every run has QMP and the exception log: a hang or a triple fault is read through them.
    assert "-qmp" in result.command and "int,cpu_reset" in result.command


def test_policy_qemu_error_carries_stderr(tmp_path: Path) -> None:
    result = _policy_run(tmp_path, "sys.stderr.write('qemu: no such model\\n'); sys.exit(1)")
    assert result.outcome is Outcome.QEMU_ERROR and result.exit_status == 6
    assert result.message == "QEMU exited with status 1.\nqemu: no such model"


def test_policy_the_time_limit_kills(tmp_path: Path) -> None:
    result = _policy_run(tmp_path, "time.sleep(60)", timeout=0.5)
    assert result.outcome is Outcome.TIMEOUT and result.killed
    assert result.message == "No exit within 0.5 s; QEMU was killed."


def test_policy_a_panic_before_ready_explains_the_missing_dump(tmp_path: Path) -> None:
    body = "print('panic: oops'); print('  rip      0xffffffff80001000'); sys.exit(37)"
    result = _policy_run(tmp_path, body, dump=tmp_path / "d.elf")
    assert result.outcome is Outcome.PANIC and result.dump is None
    assert result.cmdline == "hold" and "-qmp" in result.command  # held, with a monitor
    assert result.message == (
        "The guest ended (outcome panic) without reporting ready, so no dump was written."
    )
    assert result.panic is not None and result.panic.message == "oops"
    assert result.panic.rip is not None and result.panic.rip.address == 0xFFFFFFFF80001000
