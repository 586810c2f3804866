"""Find the host tools kmtool drives, and say which Debian package provides a missing one.

Executables are looked up on PATH only (so a stripped PATH really hides them), trying the plain
name first and then the versioned names Debian installs (`clang-14` ...). ninja is the exception:
the `ninja` Python package (a dependency of kmtool) ships the binary next to the interpreter, and
that copy is preferred over a system one so every machine runs the same ninja.

`require(key)` is what the build and the image assembly use (cheap: no subprocess); `probe_all()` is
what `kmtool doctor` uses (runs each tool's version command, in parallel). A leaf module (it imports
only kmtool.errors), so kmtool.build, kmtool.image and kmtool.qemu can all depend on it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from kmtool.errors import ToolError

# Versioned executable names Debian/Ubuntu use for LLVM (newest first).
_LLVM_VERSIONS = tuple(range(19, 13, -1))


@dataclass(frozen=True)
class Tool:
    """One host executable kmtool needs (or can use)."""

    key: str  # the name kmtool calls it by (also the first name tried on PATH)
    names: tuple[str, ...]  # names tried on PATH, in order
    package: str  # Debian package that provides it
    purpose: str  # one short phrase for doctor's table
    required: bool = True  # False: only tests or optional features use it
    version_args: tuple[str, ...] = ("--version",)


def _llvm(key: str) -> tuple[str, ...]:
    return (key, *(f"{key}-{v}" for v in _LLVM_VERSIONS))


TOOLS: tuple[Tool, ...] = (
    Tool("clang", _llvm("clang"), "clang", "compiles the kernel and the loader"),
    Tool("ld.lld", _llvm("ld.lld"), "lld", "links the kernel ELF"),
    Tool("lld-link", _llvm("lld-link"), "lld", "links the loader PE32+ (BOOTX64.EFI)"),
    Tool("ninja", ("ninja",), "ninja-build", "runs the incremental build"),
    Tool("mformat", ("mformat",), "mtools", "formats the EFI system partition"),
    Tool("mcopy", ("mcopy",), "mtools", "copies files into the ESP"),
    Tool("mmd", ("mmd",), "mtools", "makes directories in the ESP"),
    Tool("mdir", ("mdir",), "mtools", "lists the ESP (tests)"),
    Tool("qemu-system-x86_64", ("qemu-system-x86_64",), "qemu-system-x86", "boots the image"),
    Tool("sgdisk", ("sgdisk",), "gdisk", "verifies the GPT (tests only)", required=False),
    Tool("gdb", ("gdb",), "gdb", "debugs the guest (`kmtool gdb`)", required=False),
)

TOOLS_BY_KEY: dict[str, Tool] = {t.key: t for t in TOOLS}


def _wheel_ninja() -> str | None:
    """The ninja binary of the `ninja` Python package when it is installed beside this Python."""
    candidate = Path(sys.executable).parent / "ninja"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    try:
        import ninja  # the PyPI wheel; BIN_DIR holds the real binary
    except ImportError:
        return None
    path = Path(ninja.BIN_DIR) / "ninja"
    return str(path) if path.is_file() else None


def which(key: str) -> str | None:
    """The absolute path of tool `key`, or None when it is not installed."""
    if key == "ninja":
        wheel = _wheel_ninja()
        if wheel is not None:
            return wheel
    for name in TOOLS_BY_KEY[key].names:
        found = shutil.which(name)
        if found is not None:
            return os.path.abspath(found)
    return None


def install_hint(tool: Tool) -> str:
    """How to get `tool`: the Debian package (and for ninja the Python package too)."""
    hint = f"install the Debian package `{tool.package}` (apt-get install {tool.package})"
    if tool.key == "ninja":
        hint = f"reinstall kmtool's Python dependencies (pip install ninja) or {hint}"
    return hint


def require(key: str) -> str:
    """The path of tool `key`; raises ToolError naming the Debian package when it is missing."""
    path = which(key)
    if path is None:
        tool = TOOLS_BY_KEY[key]
        raise ToolError(f"`{key}` was not found on PATH; {install_hint(tool)}.")
    return path


@dataclass(frozen=True)
class ToolStatus:
    """What the probe found for one tool (or firmware file)."""

    name: str
    path: str | None
    version_text: str | None  # first line of the version output
    package: str
    required: bool
    purpose: str
    problem: str | None = None  # why it is unusable though found, or None

    @property
    def version(self) -> str | None:
        return short_version(self.version_text)

    @property
    def ok(self) -> bool:
        return self.path is not None and self.problem is None

    def as_json(self) -> dict[str, object]:
        return {
            "tool": self.name,
            "path": self.path,
            "version": self.version,
            "version_text": self.version_text,
            "status": "ok" if self.ok else ("missing" if self.path is None else "broken"),
            "required": self.required,
            "package": self.package,
            "purpose": self.purpose,
            "problem": self.problem,
        }


def tool_version(tool: Tool, path: str) -> tuple[str | None, str | None]:
    """(first line of the tool's version output, problem) -- problem set when it fails to run."""
    try:
        proc = subprocess.run(
            [path, *tool.version_args],
            capture_output=True,
            text=True,
            timeout=20,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return None, f"running `{path} {' '.join(tool.version_args)}` failed: {err}"
    text = (proc.stdout or proc.stderr).strip()
    first = text.splitlines()[0].strip() if text else ""
    if proc.returncode != 0:
        return first or None, f"`{path} {' '.join(tool.version_args)}` exited {proc.returncode}"
    return first, None


def short_version(text: str | None) -> str | None:
    """The version number in a `--version` line ("Debian clang version 14.0.6" -> "14.0.6")."""
    if not text:
        return None
    match = re.search(r"\b\d+\.\d+(?:\.\d+)?", text)
    return match.group(0) if match else text


def probe_tool(tool: Tool) -> ToolStatus:
    """Locate `tool` and ask it for its version."""
    path = which(tool.key)
    version, problem = (None, None) if path is None else tool_version(tool, path)
    return ToolStatus(tool.key, path, version, tool.package, tool.required, tool.purpose, problem)


def probe_all() -> list[ToolStatus]:
    """Every tool, in table order; version commands run in parallel.

    The firmware is no executable: `kmtool doctor` adds its rows from kmtool.qemu.firmware.probe.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(probe_tool, TOOLS))
