"""Shared pytest helpers.

`require(*tools)` skips a test when a host tool is missing -- except under CI (CI=true), where a missing
tool is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


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
