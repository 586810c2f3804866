"""The one Check type and its renderer (kmtool/check.py): both presentations, and the JSON forms."""

from __future__ import annotations

import io

from rich.console import Console

from kmtool.check import INSPECT, REPORT, Check, check_table

ROWS = [
    Check("spans sorted", True, "ascending"),
    Check("no-wx", False, "Segment 1 is W+X.", ("1",)),
]


def draw(table: object, width: int = 60) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=width, no_color=True, force_terminal=False).print(table)
    return [line.rstrip() for line in out.getvalue().splitlines()]


def test_inspect_style_puts_the_verdict_first_under_a_title() -> None:
    assert draw(check_table(ROWS, INSPECT, "Checks")) == [
        "Checks",
        "     ┃ check        ┃ detail",
        "━━━━━╇━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━",
        "ok   │ spans sorted │ ascending",
        "FAIL │ no-wx        │ Segment 1 is W+X.",
    ]


def test_report_style_puts_the_name_first_under_a_rule() -> None:
    assert draw(check_table(ROWS, REPORT)) == [
        "check         result  detail",
        "───────────────────────────────────────",
        "spans sorted  PASS    ascending",
        "no-wx         FAIL    Segment 1 is W+X.",
    ]


def test_json_has_culprits_only_when_asked() -> None:
    row = ROWS[1]
    assert row.to_json() == {"name": "no-wx", "ok": False, "detail": "Segment 1 is W+X."}
    full = row.to_json(culprits=True)
    assert full["culprits"] == ["1"]
    assert Check.from_json(full) == row
    assert Check.from_json(row.to_json()) == Check("no-wx", False, "Segment 1 is W+X.")
