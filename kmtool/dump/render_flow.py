"""A summary value that wraps only between its items, for kmtool.dump.render's summary (narrow
terminals: no value is ever cut short, and "cr3 0x9f000" never breaks inside)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from rich.console import Console, ConsoleOptions
from rich.measure import Measurement
from rich.text import Text

# Where a summary value may break: after ", " "; " or ": ", and at a double space.
BREAKS = re.compile(r"(?<=[,;:] )|(?<=  )")


class Flow:
    """A line of text that wraps only between its items (see BREAKS), so a value such as
    "cr3 0x9f000" or "in 1 GiB pages" stays on one line; an item wider than the line is folded."""

    def __init__(self, text: str) -> None:
        self.items = [item for item in BREAKS.split(text) if item]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Text]:
        width, lines, line = options.max_width, [], ""
        for item in self.items:
            if line and len(line) + len(item.rstrip()) > width:
                lines.append(line.rstrip())
                line = item
            else:
                line += item
        lines.append(line.rstrip())
        for text in lines:
            yield Text(text, overflow="fold")

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        widest = max((len(item.rstrip()) for item in self.items), default=0)
        whole = len("".join(self.items).rstrip())
        return Measurement(min(widest, options.max_width), min(whole, options.max_width))
