"""The one application object: every command prints through `console` / `err_console`.

`abort(message)` is the single path for user errors: it raises `KmtoolError`, which `main` turns into
one red line on stderr and exit status 1.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

from rich.console import Console

from kmtool.errors import KmtoolError

console = Console(highlight=False, soft_wrap=False)
err_console = Console(stderr=True, highlight=False)


def abort(message: str) -> NoReturn:
    """Stop the command with a whole-sentence user error (exit status 1)."""
    raise KmtoolError(message)


def print_json(data: Any) -> None:
    """Write `data` as indented JSON on stdout, plain (no colour), ending in a newline."""
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    sys.stdout.flush()
