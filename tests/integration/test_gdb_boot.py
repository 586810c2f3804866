"""`kmtool gdb` against a real boot (issue 12 part 4, docs/design.md §12). One TCG boot, 128M.

`kmtool run --live --gdb` leaves QEMU waiting for gdb with its RAM in a shared file;
`kmtool gdb -- -batch ...` breaks at `kmain` with a plain `break` (the remote protocol log shows
gdb asked for a hardware breakpoint, Z1, since the higher half was not mapped yet), continues to
`bugs_after_ready` (kmain calls it right after the ready report, so the report is on the serial
line and the allocator's state is the one it reported), and runs `km frames`. The oracle is the
kernel's own ready report in the serial log: the free frames, the span count and every span
printed by `km frames` (kmtool's decoders over the RAM file) must be the ones the kernel
counted.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BOOT_TOOLS, REPO, require, run_kmtool

SPAN_ROW = re.compile(r"^\s*\d+\s+│\s+(0x[0-9a-f]+)\s+│\s+0x[0-9a-f]+\s+│\s+(\d+)\s+│")
GDB_SECONDS = 600  # a TCG boot to the ready point on a loaded 2-core machine, with room


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready_report(serial: Path) -> dict[str, object]:
    lines = [line for line in serial.read_text(errors="replace").splitlines()
             if line.startswith("KM-REPORT ")]  # fmt: skip
    assert len(lines) == 1, lines
    report: dict[str, object] = json.loads(lines[0].removeprefix("KM-REPORT "))
    return report


def _gdb(build: Path, *commands: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "kmtool", "gdb", "--build-dir", str(build), "--", "-nx", "-batch"]
    for command in commands:
        argv += ["-ex", command]
    env = dict(os.environ, NO_COLOR="1", COLUMNS="100")
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=GDB_SECONDS)  # fmt: skip


@pytest.mark.qemu
def test_break_at_kmain_then_km_frames_matches_the_ready_report(tmp_path: Path) -> None:
    require(*BOOT_TOOLS, "gdb")
    build = tmp_path / "build"
    done = run_kmtool("build", "--build-dir", str(build))
    assert done.returncode == 0, done.stdout + done.stderr
    port = _free_port()
    started = run_kmtool("run", "--live", "--gdb", "--gdb-port", str(port), "--memory", "128M",
                         "--build-dir", str(build), "--json")  # fmt: skip
    assert started.returncode == 0, started.stdout + started.stderr
    assert json.loads(started.stdout)["gdb"] == f"127.0.0.1:{port}"
    try:
        done = _gdb(build, "set debug remote 1", "break kmain", "continue", "break bugs_after_ready",
                    "continue", "set debug remote 0", "km frames", "detach")  # fmt: skip
    finally:
        stopped = run_kmtool("run", "--stop", "--build-dir", str(build))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    out = done.stdout
    kmain = re.search(r"^Breakpoint 1 at (0x[0-9a-f]+): file \./kernel/main\.c", out, re.M)
    ready = re.search(r"^Breakpoint 2 at (0x[0-9a-f]+): file \./kernel/test/bugs\.c", out, re.M)
    assert kmain and ready, out
    assert "\nBreakpoint 1, kmain (boot_info_phys=" in out
    assert "\nBreakpoint 2, bugs_after_ready (" in out
    assert "kmtool: the kernel is mapped; `break` sets software breakpoints from now on." in out

    # The remote protocol: kmain's breakpoint went in as a hardware one (Z1) while the higher half
    # was unmapped; once the kernel was mapped, breakpoints are software ones (Z0).
    packets = re.findall(r"Sending packet: \$([zZ][01]),([0-9a-f]+),", done.stderr)
    assert packets, done.stderr[-2000:]
    kmain_address, ready_address = (m.group(1).removeprefix("0x") for m in (kmain, ready))
    assert packets[0] == ("Z1", kmain_address)
    assert ("Z0", ready_address) in packets and ("Z1", ready_address) not in packets

    report = _ready_report(build / "serial.log")
    spans = [[m.group(1), int(m.group(2))] for m in map(SPAN_ROW.match, out.splitlines()) if m]
    assert spans == report["span_list"]  # the kernel lists at most 64, this boot has fewer
    assert re.search(rf"^free frames\s+{report['free_frames']} \(", out, re.M), out
    assert re.search(rf"^spans\s+{report['spans']}\s*$", out, re.M), out
    assert re.search(rf"^span hash\s+{report['span_hash']}\s*$", out, re.M), out
