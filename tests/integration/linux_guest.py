"""Debian's Linux kernel as a foreign guest under QEMU (docs/design.md §13): booted until it panics
for want of a root file system, paused there, and dumped. Used by
tests/integration/test_linux_guest_oracle.py and benchmarks/bench_linux_guest.py.

The kernel comes from scripts/fetch-linux-guest, in $KMTOOL_LINUX_GUEST or
~/.cache/kmtool/linux-guest. `panic=-1` makes it reboot at once on the panic, and `-action
reboot=shutdown,shutdown=pause` turns that reboot into a pause, so the VM stops with the kernel's
own tables in place.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

GUEST = Path(os.environ.get("KMTOOL_LINUX_GUEST", Path.home() / ".cache/kmtool/linux-guest"))
BOOT_SECONDS = 180  # about 5 s alone under TCG; a shared, loaded machine takes several times that


def boot_and_dump(cpu: str, work: Path) -> dict[str, str]:
    """Boot the guest kernel with `-cpu cpu` until it panics and pauses; dump it to work/dump.elf
    and return the monitor's `info registers`, `info tlb` and the serial log."""
    from kmtool.qemu.qmp import Monitor

    sock = Path(tempfile.mkdtemp(prefix="kml")) / "qmp.sock"  # short: socket paths are limited
    serial = work / "serial.log"
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-cpu", cpu, "-m", "256M", "-no-user-config",
            "-nodefaults", "-display", "none", "-serial", f"file:{serial}",
            "-kernel", str(GUEST / "vmlinuz"), "-append", "console=ttyS0 panic=-1",
            "-action", "reboot=shutdown,shutdown=pause",
            "-qmp", f"unix:{sock},server=on,wait=off"]  # fmt: skip
    qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    try:
        with Monitor(sock) as monitor:
            deadline = time.monotonic() + BOOT_SECONDS
            while monitor.status() == "running":
                assert time.monotonic() < deadline, (
                    f"the guest did not panic within {BOOT_SECONDS} s: "
                    + serial.read_text(errors="replace")[-2000:]
                )
                time.sleep(0.25)
            out = {"registers": monitor.hmp("info registers"), "tlb": monitor.hmp("info tlb")}
            monitor.command("dump-guest-memory", paging=False, protocol=f"file:{work}/dump.elf")
            monitor.quit()
        qemu.wait(30)
    finally:
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()
        shutil.rmtree(sock.parent, ignore_errors=True)
    log = out["serial"] = serial.read_text(errors="replace")
    assert "Kernel panic" in log and "VFS: Unable to mount root fs" in log, log[-2000:]
    return out
