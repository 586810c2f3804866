"""The tool probe: PATH lookup, versioned LLVM names, the wheel's ninja, package hints."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kmtool import toolchain
from kmtool.errors import ToolError


def _fake_tool(directory: Path, name: str, output: str = "fake 1.2.3") -> Path:
    path = directory / name
    path.write_text(f"#!/bin/sh\necho '{output}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_require_names_the_debian_package_when_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolError) as err:
        toolchain.require("lld-link")
    assert str(err.value) == (
        "`lld-link` was not found on PATH; install the Debian package `lld` (apt-get install lld)."
    )


def test_versioned_llvm_name_is_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = _fake_tool(tmp_path, "clang-15")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert toolchain.which("clang") == str(fake)


def test_plain_name_wins_over_versioned(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_tool(tmp_path, "clang-15")
    plain = _fake_tool(tmp_path, "clang")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert toolchain.which("clang") == str(plain)


def test_wheel_ninja_is_found_without_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The `ninja` Python package's binary beside the interpreter needs no PATH entry."""
    monkeypatch.setenv("PATH", str(tmp_path))
    found = toolchain.which("ninja")
    assert found is not None and os.access(found, os.X_OK)


def test_probe_reports_version_and_problem(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_tool(tmp_path, "mformat", "mformat (GNU mtools) 4.0.32")
    broken = tmp_path / "mcopy"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    good = toolchain.probe_tool(toolchain.TOOLS_BY_KEY["mformat"])
    assert good.ok and good.version == "4.0.32"
    assert good.version_text == "mformat (GNU mtools) 4.0.32"
    bad = toolchain.probe_tool(toolchain.TOOLS_BY_KEY["mcopy"])
    assert not bad.ok and bad.problem is not None and "exited 3" in bad.problem
    missing = toolchain.probe_tool(toolchain.TOOLS_BY_KEY["qemu-system-x86_64"])
    assert missing.path is None and missing.as_json()["status"] == "missing"
    assert missing.package == "qemu-system-x86"


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("Debian clang version 14.0.6", "14.0.6"),
        ("Debian LLD 14.0.6 (compatible with GNU linkers)", "14.0.6"),
        ("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)", "7.2.22"),
        ("1.13.2.git.kitware.jobserver-pipe-1", "1.13.2"),
        ("GPT fdisk (sgdisk) version 1.0.9", "1.0.9"),
        ("no digits here", "no digits here"),
        (None, None),
    ],
)
def test_short_version(text: str | None, version: str | None) -> None:
    assert toolchain.short_version(text) == version


def test_every_required_tool_has_a_package() -> None:
    assert {t.package for t in toolchain.TOOLS} >= {
        "clang", "lld", "mtools", "qemu-system-x86", "gdisk",
    }  # fmt: skip
    assert [t.key for t in toolchain.TOOLS if not t.required] == ["sgdisk", "gdb"]
