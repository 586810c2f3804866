"""`kmtool inspect` in narrow terminals (NO_COLOR=1, 80 and 120 columns): nothing is cut short."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "tests" / "dump"))
import dump_fixtures as F  # noqa: E402

WALK_VA = "0xffffff0000100010"


def kmtool(*args: str, cwd: Path, columns: int) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1", COLUMNS=str(columns))
    return subprocess.run([sys.executable, "-m", "kmtool", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)  # fmt: skip


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("narrow")
    F.build().write_elf(d / "dump.elf")
    return d


def _hex_values(doc: object) -> set[str]:
    return set(re.findall(r"0x[0-9a-f]+", json.dumps(doc)))


@pytest.mark.parametrize("columns", [80, 120])
def test_no_value_is_truncated(work: Path, columns: int) -> None:
    doc = json.loads(kmtool("inspect", "dump.elf", "--json", "--walk", WALK_VA, cwd=work,
                            columns=columns).stdout)  # fmt: skip
    for args in (["--part", "summary"], ["--part", "cpu"], ["--part", "descriptors"],
                 ["--walk", WALK_VA]):  # fmt: skip
        done = kmtool("inspect", "dump.elf", *args, cwd=work, columns=columns)
        assert done.returncode == 0, done.stderr
        out = done.stdout
        assert "…" not in out
        assert all(len(line.rstrip()) <= columns for line in out.splitlines())
        words = set(re.findall(r"0x[0-9a-f]+", out))
        if args[1] == "cpu":
            cpu = doc["cpu"][0]
            expected = {cpu[k] for k in ("rip", "rsp", "rflags", "cr0", "cr2", "cr3", "cr4")}
        elif args[1] == "descriptors":
            tables = doc["descriptors"][0]
            expected = {g["handler"] for g in tables["idt"]["gates"]}
            expected |= {r["base"] for r in tables["gdt"]["descriptors"]}
            expected |= {i["top"] for i in tables["tss"]["ist"]}
        elif args[0] == "--walk":
            expected = {s["entry"] for s in doc["page_tables"]["walks"][0]["steps"]}
        else:
            expected = {
                doc["cpu"][0]["rip"],
                doc["cpu"][0]["cr3"],
                doc["boot_info"]["scratch_base"],
            }
        assert expected <= words, expected - words  # whole, on one line each
        assert words <= _hex_values(doc) | {WALK_VA}, words - _hex_values(doc)


def test_long_range_tables_are_capped(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from kmtool.dump import render

    monkeypatch.setattr(render, "RANGES_DRAWN", 5)
    doc = json.loads(kmtool("inspect", "dump.elf", "--json", cwd=work, columns=100).stdout)
    console = Console(width=100, no_color=True, record=True)
    with console.capture() as capture:
        console.print(render.pagetables(doc))
    out = capture.get()
    total = doc["page_tables"]["regions_total"]
    assert f"... and {total - 5} more ranges; use --json for all." in out
    assert doc["page_tables"]["regions"][5]["start"] not in out
