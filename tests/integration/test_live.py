"""Live inspection of a running guest (issue 12 part 3, docs/design.md §12). One TCG boot.

`kmtool run --live --cmdline workload=all` leaves QEMU running with its RAM in a shared sparse
file. The oracle is the ELF core of the same guest, taken through QMP's own `dump-guest-memory`
while the guest is paused: `kmtool inspect --live --json` must give the same document as `kmtool
inspect --json` of that dump in every part but the one describing the file (parts, checks,
counters, CPU state, descriptors). QEMU's `query-status` says whether kmtool resumed the guest:
a running guest runs again after `inspect --live`; a guest paused before stays paused. Ending
the session stops QEMU and removes the RAM file and the session file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import BOOT_TOOLS, REPO, require, run_kmtool

from kmtool.qemu.dump import capture
from kmtool.qemu.qmp import Monitor
from kmtool.schemas.livesession import SESSION_KEYS

MEMORY = "256M"


def kmtool_json(*args: str) -> dict[str, Any]:
    done = run_kmtool(*args, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def status(session: dict[str, Any]) -> str:
    with Monitor(Path(session["qmp"])) as monitor:
        return monitor.status()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The session file (as a dict, plus its own `path`) of one live boot with every workload."""
    require(*BOOT_TOOLS)
    work = tmp_path_factory.mktemp("live")
    build = work / "build"
    done = subprocess.run([sys.executable, "-m", "kmtool", "build", "--build-dir", str(build)],
                          capture_output=True, text=True, cwd=REPO, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    path = build / "live" / "session.json"
    run = run_kmtool("run", "--live", "--build-dir", str(build), "--memory", MEMORY,
                     "--cmdline", "workload=all", "--timeout", "150")  # fmt: skip
    try:
        assert run.returncode == 0, run.stdout + run.stderr
        assert f"live session {path}" in run.stdout
        yield {**json.loads(path.read_text()), "path": str(path)}
    finally:
        run_kmtool("run", "--stop", str(path))


@pytest.mark.qemu
def test_run_live_leaves_qemu_running_with_a_sparse_ram_file(live: dict[str, Any]) -> None:
    assert tuple(k for k in live if k != "path") == SESSION_KEYS
    assert live["ram_bytes"] == 256 << 20 and live["gdb"] is None
    assert live["ram_ranges"] == [{"guest_physical": 0, "file_offset": 0, "size": 256 << 20}]
    assert Path(live["kernel"]).name == "kernel.elf"
    ram = Path(live["ram"]).stat()
    assert ram.st_size == 256 << 20 and ram.st_blocks * 512 < ram.st_size // 2  # sparse
    assert Path(f"/proc/{live['pid']}/cmdline").read_bytes().startswith(b"qemu-system-x86_64")
    assert status(live) == "running"  # the kernel is held at ready, the VM runs


@pytest.mark.qemu
def test_inspect_live_equals_the_dump_of_the_paused_guest(
    live: dict[str, Any], tmp_path: Path
) -> None:
    running = kmtool_json("inspect", "--live", live["path"])
    assert status(live) == "running"  # it was running, so kmtool resumed it
    assert all(c["ok"] for c in running["checks"]), [c for c in running["checks"] if not c["ok"]]
    with Monitor(Path(live["qmp"])) as monitor:
        monitor.stop()
        capture(monitor, tmp_path / "paused.elf", "elf")
    try:
        paused = kmtool_json("inspect", "--live", live["path"])
        assert status(live) == "paused"  # paused before: never resumed by kmtool
    finally:
        with Monitor(Path(live["qmp"])) as monitor:
            monitor.command("cont")
    dump = kmtool_json("inspect", str(tmp_path / "paused.elf"), "--kernel", live["kernel"])
    assert paused["source"]["format"] == "live" and dump["source"]["format"] == "elf"
    assert paused["source"]["core_info"] == dump["source"]["core_info"]
    assert {k: v for k, v in paused.items() if k != "source"} == {
        k: v for k, v in dump.items() if k != "source"
    }
    assert paused["frames"]["counters"] == dump["frames"]["counters"]
    assert len(paused["address_spaces"]["spaces"]) == 4  # workload=all's processes
    assert paused["cpu"][0]["source"] == "QEMU note" and paused["descriptors"]
    diff = run_kmtool("diff", str(tmp_path / "paused.elf"), f"live:{live['path']}",
                      "--fail-on", "leak,owner-change,mapping-change,heap-change")  # fmt: skip
    assert diff.returncode == 0 and "no change" in diff.stdout, diff.stdout + diff.stderr
    assert status(live) == "running"


@pytest.mark.qemu
def test_inspect_live_options_work_as_on_a_dump(live: dict[str, Any]) -> None:
    pml4 = kmtool_json("inspect", "--live", live["path"])["page_tables"]["kernel_pml4"]
    done = run_kmtool("inspect", "--live", live["path"], "--part", "frames",
                      "--walk", "0xffffff0000100000", "--pa", pml4)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "free" in done.stdout and "0xffffff0000100000" in done.stdout
    printed = kmtool_json("inspect", "--live", live["path"], "--print", "km_frames.free_frames")
    frames = kmtool_json("inspect", "--live", live["path"])["frames"]["counters"]["free_frames"]
    assert printed["print"][0]["value"] == frames  # --kernel came from the session
    assert status(live) == "running"


@pytest.mark.qemu
def test_stopping_the_session_removes_its_files(live: dict[str, Any]) -> None:
    done = run_kmtool("run", "--stop", live["path"])
    assert done.returncode == 0, done.stderr
    assert f"stopped QEMU (pid {live['pid']})" in done.stdout
    for key in ("path", "ram", "qmp"):
        assert not Path(live[key]).exists(), key
    cmdline = Path(f"/proc/{live['pid']}/cmdline")
    assert not cmdline.exists() or cmdline.read_bytes() == b""  # gone, or a zombie
    again = run_kmtool("inspect", "--live", live["path"])
    assert again.returncode == 1 and "is missing" in again.stderr


@pytest.mark.qemu
def test_a_triple_fault_before_ready_stays_paused_for_inspect_live(
    live: dict[str, Any], tmp_path: Path
) -> None:
    # A live run has no exception log, but a reset still pauses QEMU (-action shutdown=pause):
    # the run says so and leaves the session, and inspect --live decodes the triple-faulted
    # guest (bug=idt: an IDT limit of 0, then int3) without resuming it. Its own copy of the
    # build, so that its serial log does not overwrite the other session's.
    build = tmp_path / "build"
    shutil.copytree(live["build_dir"], build, ignore=shutil.ignore_patterns("live"))
    session = build / "reset" / "session.json"
    run = run_kmtool("run", "--live", "--build-dir", str(build), "--session", str(session),
                     "--memory", MEMORY, "--cmdline", "bug=idt", "--timeout", "150")  # fmt: skip
    try:
        assert run.returncode == 4, run.stdout + run.stderr  # the exit status of a reset
        assert "triple-faulted before the ready report" in run.stdout, run.stdout
        assert "The CPU was at idt+0x" in run.stdout and "paused by QEMU at the reset" in run.stdout
        doc = json.loads(session.read_text())
        assert status(doc) == "shutdown"
        done = run_kmtool("inspect", "--live", str(session), "--json")
        assert done.returncode == 1 and done.stderr == "", done.stderr  # 1: checks failed
        checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
        covers = checks["IDT covers the exception vectors"]
        assert not covers["ok"] and "has limit 0x0" in covers["detail"], covers
        assert status(doc) == "shutdown"  # not resumed: it was not running
    finally:
        run_kmtool("run", "--stop", str(session))
    assert not session.exists()
