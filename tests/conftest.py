"""Shared pytest helpers.

`require(*tools)` skips a test when a host tool is missing -- except under CI (CI=true), where a missing
tool is a failure, never a skip. `fresh_build` is the repository's own kernel, loader and image,
built once per session into a temporary directory (never build/, which may be stale).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

if TYPE_CHECKING:
    from kmtool.build.driver import BuildPaths

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
#: What a test that builds the image and boots it under QEMU needs (pass to `require`).
BOOT_TOOLS = ("clang", "ld.lld", "lld-link", "mformat", "mcopy", "qemu-system-x86_64",
              "/usr/share/OVMF/OVMF_CODE_4M.fd")  # fmt: skip


def run_kmtool(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """`python -m kmtool ARGS` as a user runs it (no colour, 100 columns), at most 180 s."""
    env = dict(os.environ, NO_COLOR="1", COLUMNS="100")
    return subprocess.run(
        [sys.executable, "-m", "kmtool", *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=180,
    )  # fmt: skip


def require(*tools: str) -> None:
    """Skip (locally) or fail (under CI) unless every named executable or file path exists."""
    missing = [t for t in tools if not (Path(t).exists() if "/" in t else shutil.which(t))]
    if missing:
        unavailable(f"required tool(s) missing: {', '.join(missing)}")


def unavailable(message: str) -> NoReturn:
    """Skip the test (locally) or fail it (under CI): a host tool it needs is missing."""
    if IN_CI:
        pytest.fail(message + " (under CI a missing tool is a failure)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def fresh_build(tmp_path_factory: pytest.TempPathFactory) -> BuildPaths:
    """The outputs of `driver.build` on this tree, shared by every test that only reads them."""
    require("clang", "ld.lld", "lld-link", "mformat", "mmd", "mcopy")
    from kmtool.build import driver

    return driver.build(REPO, tmp_path_factory.mktemp("fresh") / "build").paths
