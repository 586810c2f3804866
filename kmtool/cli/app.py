"""The one application object: every command prints through `console` / `err_console`.

`abort(message)` is the single path for user errors: it raises `KmtoolError`, which `main` turns into
one red line on stderr and exit status 1.

The two consoles are made on first use (`from kmtool.cli.app import console` makes one), so a
command that prints only JSON (`print_json`) never imports rich.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, NoReturn

from kmtool.errors import KmtoolError

if TYPE_CHECKING:
    from rich.console import Console

    console: Console
    err_console: Console

_consoles: dict[str, Console] = {}
JSON_CHUNK = 1 << 16  # characters of JSON text written at a time (print_json)


def __getattr__(name: str) -> Console:
    """`console` (stdout) and `err_console` (stderr), each made once, when first imported."""
    if name not in ("console", "err_console"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    made = _consoles.get(name)
    if made is None:
        from rich.console import Console

        made = _consoles[name] = (
            Console(highlight=False, soft_wrap=False)
            if name == "console"
            else Console(stderr=True, highlight=False)
        )
    return made


def abort(message: str) -> NoReturn:
    """Stop the command with a whole-sentence user error (exit status 1)."""
    raise KmtoolError(message)


def print_json(data: Any) -> None:
    """Write `data` as indented JSON on stdout, plain (no colour), ending in a newline.

    The text is `json.dumps(data, indent=2)`, byte for byte, written as it is encoded, about
    JSON_CHUNK characters at a time: dumps would hold the whole text and, while joining it, the
    list of its million pieces (20 MiB for `inspect --json` of a 4 GiB dump, docs/design.md §13)."""
    pieces: list[str] = []
    held = 0
    for piece in json.JSONEncoder(indent=2).iterencode(data):
        pieces.append(piece)
        held += len(piece)
        if held >= JSON_CHUNK:
            sys.stdout.write("".join(pieces))
            pieces.clear()
            held = 0
    pieces.append("\n")
    sys.stdout.write("".join(pieces))
    sys.stdout.flush()
