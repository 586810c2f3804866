"""docs/design.md against the code: the numbers it quotes are the table's, its references resolve.

The design document restates a few numbers for readers (the region overview of §2, the loader
memory types, the exit values and statuses); these tests read them back out of the Markdown and
compare them with kmtool/layout/table.py, kmtool/qemu/outcome.py and kmtool/exitstatus.py, so the
document cannot drift from the code. They also check that every `§N` the document or the code
cites names a section the document has.
"""

from __future__ import annotations

import re

import pytest
from conftest import REPO

from kmtool.layout import table
from kmtool.qemu.outcome import Outcome, qemu_status_for

DESIGN = REPO / "docs" / "design.md"
UNITS = {"KiB": table.KiB, "MiB": table.MiB, "GiB": table.GiB, "TiB": table.TiB}
CITING_DIRS = ("kmtool", "kernel", "efi", "include", "tests", "benchmarks", "scripts")
CITING_FILES = ("README.md", "BENCHMARKS.md")
CITING_SUFFIXES = {".py", ".c", ".h", ".S", ".ld", ".md", ".sh"}


def _text() -> str:
    return DESIGN.read_text(encoding="utf-8")


def _section(number: str) -> str:
    """The body of section `number` ("2", "6.2"): from its heading to the next heading of its level
    or above."""
    level = "#" * (number.count(".") + 2)
    lines = _text().splitlines()
    heading = re.compile(rf"{level} {re.escape(number)}\.? ")
    start = next(i for i, line in enumerate(lines) if heading.match(line))
    end = next(
        (i for i in range(start + 1, len(lines)) if re.match(rf"#{{2,{len(level)}}} \d", lines[i])),
        len(lines),
    )
    return "\n".join(lines[start:end])


def _table_rows(section: str) -> list[list[str]]:
    """The cells of every body row of the Markdown tables in `section` (no header, no rule)."""
    lines = [line for line in section.splitlines() if line.startswith("|")]
    cells = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]
    rule = [all(cell and set(cell) <= set("-:") for cell in row) for row in cells]
    header = [i + 1 < len(cells) and rule[i + 1] for i in range(len(cells))]
    return [row for row, r, h in zip(cells, rule, header, strict=True) if not (r or h)]


def _size(text: str) -> int:
    number, unit = text.split()
    return int(number) * UNITS[unit]


def _pml4(text: str) -> tuple[int, int]:
    first, _, last = text.partition("-")
    return int(first), int(last or first)


def test_region_overview_is_the_table() -> None:
    rows = _table_rows(_section("2"))
    assert [r[0] for r in rows] == [r.name for r in table.REGIONS]
    for row, region in zip(rows, table.REGIONS, strict=True):
        name, start, size, pml4, backing, page_size, parent = row
        assert int(start, 16) == region.start, name
        assert len(start) == 18, f"{name}: write the start as 0x and 16 hex digits"
        assert _size(size) == region.size, name
        assert _pml4(pml4) == region.pml4, name
        assert backing == region.backing.value, name
        assert _size(page_size) == region.page_size, name
        assert (parent or None) == region.parent, name


def test_named_constants_have_the_tables_values() -> None:
    """Every "`NAME` (0x...)" in the document, NAME a constant of the table, gives its value."""
    quoted = re.findall(r"`([A-Z][A-Z0-9_]+)` \((0x[0-9a-f]+)\)", _text())
    assert len(quoted) >= 8  # the loader memory types, the ports and the exit values at least
    for name, value in quoted:
        assert getattr(table, name) == int(value, 16), name


def test_long_hex_numbers_are_the_tables() -> None:
    """Addresses and memory types quoted anywhere are values of the table, not typed-in copies."""
    values = {v for v in vars(table).values() if isinstance(v, int)}
    for r in table.REGIONS:
        values |= {r.start, r.end, r.size}
    for number in re.findall(r"\b0x[0-9a-f]{8,}\b", _text()):
        assert int(number, 16) in values, number


def test_outcome_table_is_the_outcome_mapping() -> None:
    rows = _table_rows(_section("6.2"))
    assert [r[0] for r in rows] == [o.value for o in Outcome]
    for name, ended, status in rows:
        outcome = Outcome(name)
        assert int(status) == outcome.exit_status, name
        exit_value = re.match(r"(\d+): `(EXIT_[A-Z]+)`", ended)
        if exit_value:
            assert int(exit_value[1]) == qemu_status_for(getattr(table, exit_value[2])), name


def test_exit_statuses_are_the_exit_status_table() -> None:
    from kmtool.exitstatus import ExitStatus

    text = " ".join(_section("6.2").split())
    quoted = re.search(r"status 1, a user error .*?, or (\d+), an internal error", text)
    assert quoted is not None
    assert ExitStatus.USER_ERROR == 1
    assert int(quoted[1]) == ExitStatus.INTERNAL_ERROR
    signals = re.search(r"Ctrl-C exits (\d+) and SIGTERM (\d+)", text)
    assert signals is not None
    assert (int(signals[1]), int(signals[2])) == (ExitStatus.INTERRUPTED, ExitStatus.TERMINATED)


def _sections() -> set[str]:
    return set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", _text(), re.M))


def test_sections_are_numbered_in_order() -> None:
    tops = [int(n) for n in re.findall(r"^## (\d+)\. ", _text(), re.M)]
    assert tops == list(range(1, len(tops) + 1))


def test_references_inside_the_document_resolve() -> None:
    missing = sorted(set(re.findall(r"§(\d+(?:\.\d+)?)", _text())) - _sections())
    assert not missing, f"docs/design.md cites sections it does not have: {missing}"


def _citations() -> list[tuple[str, str]]:
    """(file:line, section) for every `docs/design.md §N` (and `, §M`) in the repository."""
    paths = [REPO / name for name in CITING_FILES]
    for directory in CITING_DIRS:
        paths += sorted(p for p in (REPO / directory).rglob("*") if p.suffix in CITING_SUFFIXES)
    found = []
    for path in paths:
        if path.is_file():
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                for cited in re.findall(r"docs/design\.md ((?:§\d+(?:\.\d+)?(?:, )?)+)", line):
                    where = f"{path.relative_to(REPO)}:{number}"
                    found += [(where, n) for n in re.findall(r"§(\d+(?:\.\d+)?)", cited)]
    return found


@pytest.mark.parametrize("readme", ["README.md", "kernel/README.md"])
def test_readmes_link_the_document(readme: str) -> None:
    assert "docs/design.md" in (REPO / readme).read_text(encoding="utf-8")


def test_references_from_the_code_resolve() -> None:
    sections = _sections()
    missing = [(where, n) for where, n in _citations() if n not in sections]
    assert not missing, f"these cite sections docs/design.md does not have: {missing}"


def test_nothing_cites_the_design_files_that_are_not_in_the_repository() -> None:
    """The design lives in docs/design.md; the old spellings (the word DESIGN or CONTEXT before a
    section sign or a colon) pointed at files a contributor does not have."""
    paths = [REPO / name for name in CITING_FILES]
    for directory in CITING_DIRS:
        paths += sorted(p for p in (REPO / directory).rglob("*") if p.suffix in CITING_SUFFIXES)
    old = re.compile(r"\bDESIGN §|\bCONTEXT(?:\.md|:)")
    stale = [
        f"{path.relative_to(REPO)}:{number}"
        for path in paths
        if path.is_file()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if old.search(line)
    ]
    assert not stale, f"these cite design files outside the repository: {stale}"
