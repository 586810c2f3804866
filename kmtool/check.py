"""The one check row of kmtool, and the one table that draws a list of them.

Every checker (inspect's cross-checks in kmtool.dump.checks, the layout plan, the kernel ELF, the
memory cost, the post-link checks) returns `Check`s. A check never raises for what it checks: a
failure is a row with `ok` False whose `detail` says what is wrong, and whose `culprits` (layout
checks only) name the things at fault.

`check_table` draws the rows in one of two presentations, given as a `TableStyle`:

    INSPECT  `ok │ name │ detail`, cells fold on a narrow terminal, the title above the table
    REPORT   `name  PASS  detail`, a rule under the header, names and verdicts never wrap

This module is a leaf: it imports nothing of kmtool, and rich only inside `check_table`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

if TYPE_CHECKING:
    from rich.table import Table


class CheckJson(TypedDict):
    """A check in a JSON document: `culprits` only where the document has them (layout report)."""

    name: str
    ok: bool
    detail: str
    culprits: NotRequired[list[str]]


@dataclass(frozen=True)
class Check:
    """One named row: `ok`, a one-line `detail`, and the names at fault (empty when none)."""

    name: str
    ok: bool
    detail: str
    culprits: tuple[str, ...] = ()

    def to_json(self, culprits: bool = False) -> CheckJson:
        """`{name, ok, detail}`, and `culprits` as a list when asked for."""
        out: CheckJson = {"name": self.name, "ok": self.ok, "detail": self.detail}
        if culprits:
            out["culprits"] = list(self.culprits)
        return out

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Check:
        """The check `to_json` described, a `CheckJson` (renderers draw from the JSON document)."""
        return cls(doc["name"], doc["ok"], doc["detail"], tuple(doc.get("culprits", ())))


@dataclass(frozen=True)
class TableStyle:
    """How `check_table` presents rows.

    `headers` label the verdict, name and detail columns, in the order the columns are shown:
    verdict first when `verdict_first`, else the name first. A verdict is shown as `passed` or
    `failed`, each (word, rich style). `compact` draws rich's SIMPLE_HEAD box with bold headers
    and no padding on the left of a cell, the title left to the caller; otherwise rich's default
    box with the title above the table. `fold` lets every cell fold onto more lines; otherwise the
    name and the verdict never wrap.
    """

    headers: tuple[str, str, str]
    verdict_first: bool
    passed: tuple[str, str]
    failed: tuple[str, str]
    compact: bool
    fold: bool


INSPECT = TableStyle(
    headers=("", "check", "detail"),
    verdict_first=True,
    passed=("ok", "green"),
    failed=("FAIL", "red"),
    compact=False,
    fold=True,
)
REPORT = TableStyle(
    headers=("check", "result", "detail"),
    verdict_first=False,
    passed=("PASS", "green"),
    failed=("FAIL", "bold red"),
    compact=True,
    fold=False,
)


def check_table(checks: Iterable[Check], style: TableStyle, title: str | None = None) -> Table:
    """A rich table of `checks` in `style`; `title` heads it (unless the style is compact)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    if style.compact:
        table = Table(
            box=box.SIMPLE_HEAD,
            padding=(0, 1, 0, 0),
            pad_edge=False,
            header_style="bold",
            show_edge=False,
        )
    else:
        table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for index, header in enumerate(style.headers):
        if style.fold:
            table.add_column(header, overflow="fold")
        elif index < 2:  # the name and the verdict, in either order
            table.add_column(header, no_wrap=True)
        else:
            table.add_column(header)
    for c in checks:
        word, colour = style.passed if c.ok else style.failed
        verdict = Text(word, style=colour)
        if style.verdict_first:
            table.add_row(verdict, c.name, c.detail)
        else:
            table.add_row(c.name, verdict, c.detail)
    return table
