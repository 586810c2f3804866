"""A 3 GiB guest, dumped raw: `kmtool inspect` passes every check, the sorted memory map included.

OVMF lists the RAM above 4 GiB before the reserved range at 0xb0000000 and the flash MMIO at
0xffc00000 whenever the guest has 3 GiB or more; the handoff contract (kmtool/schemas/bootinfo.py)
promises the kernel a map in address order, so the loader sorts its copy. One TCG boot; the raw
image is sparse and deleted afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, require

from kmtool.layout.table import GiB

TOOLS = ("clang", "ld.lld", "lld-link", "mformat", "mcopy", "qemu-system-x86_64",
         "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd")  # fmt: skip


def kmtool(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1", COLUMNS="100")
    return subprocess.run([sys.executable, "-m", "kmtool", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)  # fmt: skip


@pytest.mark.qemu
def test_3g_raw_dump_passes_every_check(tmp_path: Path) -> None:
    require(*TOOLS)
    from kmtool.qemu.runner import RunOptions, held_vm

    build = tmp_path / "build"
    done = kmtool("build", "--build-dir", str(build))
    assert done.returncode == 0, done.stdout + done.stderr
    dump = tmp_path / "dump.raw"
    try:
        with held_vm(build / "kmtool.img", RunOptions(memory=3 * GiB, timeout=180)) as vm:
            assert not vm.panicked, vm.serial
            vm.dump(dump, "raw")
        inspected = kmtool("inspect", "--json", str(dump))
    finally:
        dump.unlink(missing_ok=True)  # 3 GiB: do not leave it in pytest's kept tmp dirs

    assert inspected.stdout, inspected.stderr
    result = json.loads(inspected.stdout)
    starts = [int(e["start"], 16) for e in result["memory_map"]["entries"]]
    # The case that used to fail: RAM above 4 GiB and firmware ranges below it in one map.
    assert max(starts) >= 4 * GiB and any(0xB0000000 <= s < 4 * GiB for s in starts), starts
    assert starts == sorted(starts)
    checks = {c["name"]: c for c in result["checks"]}
    assert checks["memory map sorted"]["ok"], checks["memory map sorted"]
    failed = [f"{c['name']}: {c['detail']}" for c in result["checks"] if not c["ok"]]
    assert failed == []
    assert inspected.returncode == 0, inspected.stderr
