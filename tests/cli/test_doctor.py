"""`kmtool doctor`: the table, --json, and the Debian package named for each missing piece."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require

FAKE_TOOLS = ("ld.lld-14", "lld-link", "mformat", "mcopy", "mmd", "mdir", "sgdisk", "gdb")


def _doctor(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kmtool", "doctor", *args],
        env={**env, "NO_COLOR": "1", "COLUMNS": "100"},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary directory with a short path, so table rows fit in 100 columns."""
    path = Path(tempfile.mkdtemp(prefix="kd", dir="/tmp"))
    yield path
    shutil.rmtree(path)


def _fake_env(tmp_path: Path, tools: tuple[str, ...] = FAKE_TOOLS) -> dict[str, str]:
    """PATH holding only fake tools (each prints a version line), and fake OVMF files."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in tools:
        tool = bindir / name
        tool.write_text(f"#!/bin/sh\necho '{name} (fake) 1.2.3'\n")
        tool.chmod(0o755)
    (tmp_path / "code.fd").write_bytes(b"")
    (tmp_path / "vars.fd").write_bytes(b"")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KMTOOL_")}
    env.update(
        PATH=str(bindir),
        KMTOOL_OVMF_CODE=str(tmp_path / "code.fd"),
        KMTOOL_OVMF_VARS=str(tmp_path / "vars.fd"),
    )
    return env


def _rows(stdout: str) -> dict[str, list[str]]:
    """Table rows by tool name: [path, version, status] with cells stripped."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) == 4:
            rows[cells[0]] = cells[1:]
    return rows


def test_missing_tools_name_their_packages(short_tmp: Path) -> None:
    tmp_path = short_tmp
    proc = _doctor(env=_fake_env(tmp_path))
    assert proc.returncode == 1
    rows = _rows(proc.stdout)
    bindir = tmp_path / "bin"
    assert rows["clang"] == ["-", "-", "missing: install `clang`"]
    assert rows["qemu-system-x86_64"] == ["-", "-", "missing: install `qemu-system-x86`"]
    assert rows["ld.lld"] == [f"{bindir}/ld.lld-14", "1.2.3", "ok"]
    assert rows["lld-link"] == [f"{bindir}/lld-link", "1.2.3", "ok"]
    assert rows["mformat"] == [f"{bindir}/mformat", "1.2.3", "ok"]
    assert rows["OVMF code"] == [str(tmp_path / "code.fd"), "-", "ok"]
    assert rows["OVMF vars"] == [str(tmp_path / "vars.fd"), "-", "ok"]
    assert rows["ninja"][2] == "ok"  # the Python package's binary needs no PATH
    assert list(rows) == [
        "clang", "ld.lld", "lld-link", "ninja", "mformat", "mcopy", "mmd", "mdir",
        "qemu-system-x86_64", "sgdisk", "gdb", "OVMF code", "OVMF vars",
    ]  # fmt: skip
    tail = proc.stdout.rstrip().splitlines()[-2:]
    assert tail == [
        "To install what is missing: apt-get install clang qemu-system-x86",
        "Missing required tools: `clang`, `qemu-system-x86_64`.",
    ]
    assert proc.stderr == ""


def test_stripped_path_json(tmp_path: Path) -> None:
    env = _fake_env(tmp_path, tools=())
    env["KMTOOL_OVMF_CODE"] = str(tmp_path / "absent.fd")
    proc = _doctor("--json", env=env)
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert data["ok"] is False
    assert data["missing_packages"] == [
        "clang",
        "gdb",
        "gdisk",
        "lld",
        "mtools",
        "ovmf",
        "qemu-system-x86",
    ]
    by_name = {row["tool"]: row for row in data["tools"]}
    assert by_name["clang"]["status"] == "missing" and by_name["clang"]["package"] == "clang"
    assert by_name["sgdisk"]["required"] is False and by_name["sgdisk"]["package"] == "gdisk"
    assert by_name["OVMF code"]["status"] == "missing"
    assert "absent.fd" in by_name["OVMF code"]["problem"]
    assert by_name["ninja"]["status"] == "ok"


def test_only_optional_missing_is_success(short_tmp: Path) -> None:
    tmp_path = short_tmp
    optional = ("sgdisk", "gdb")
    tools = tuple(t for t in FAKE_TOOLS if t not in optional) + ("clang", "qemu-system-x86_64")
    proc = _doctor(env=_fake_env(tmp_path, tools))
    assert proc.returncode == 0, proc.stdout
    assert _rows(proc.stdout)["sgdisk"] == ["-", "-", "missing (optional): install `gdisk`"]
    assert _rows(proc.stdout)["gdb"] == ["-", "-", "missing (optional): install `gdb`"]
    assert "To install what is missing: apt-get install gdb gdisk" in proc.stdout
    assert proc.stdout.rstrip().endswith("Everything kmtool needs is installed.")


def test_broken_tool_is_reported(tmp_path: Path) -> None:
    env = _fake_env(tmp_path)
    (tmp_path / "bin" / "mcopy").write_text("#!/bin/sh\nexit 2\n")
    proc = _doctor("--json", env=env)
    row = {r["tool"]: r for r in json.loads(proc.stdout)["tools"]}["mcopy"]
    assert row["status"] == "broken" and "exited 2" in row["problem"]
    assert proc.returncode == 1


def test_this_machine(tmp_path: Path) -> None:
    """On a machine set up by scripts/install-system-deps everything is found."""
    require("clang", "ld.lld", "lld-link", "mformat", "qemu-system-x86_64", "sgdisk", "gdb")
    proc = _doctor("--json", env=dict(os.environ))
    data = json.loads(proc.stdout)
    assert proc.returncode == 0 and data["ok"] is True, proc.stdout
    clang = next(r for r in data["tools"] if r["tool"] == "clang")
    assert clang["version"] and clang["version"][0].isdigit()
