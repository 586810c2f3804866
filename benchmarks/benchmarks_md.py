"""BENCHMARKS.md sections: the one place the benchmark scripts write their figures through."""

from __future__ import annotations

from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def write_section(heading: str, text: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace the section that starts with the line `heading` (a `## ...` line) by `text`, which
    starts with that heading too; append it when the file has no such section yet."""
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    start = doc.find(heading + "\n")
    if start < 0:
        doc = doc.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n"
    else:
        end = doc.find("\n## ", start + len(heading))
        rest = doc[end + 1 :] if end >= 0 else ""
        doc = doc[:start] + text.rstrip("\n") + "\n" + ("\n" + rest if rest else "")
    path.write_text(doc)
