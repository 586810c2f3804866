"""kmtool/gdb/in_gdb.py inside the real gdb, without QEMU: the guard of the kernel's text, the `km`
commands' argument handling and the command lines they run (a stand-in kmtool prints its argv).
The connect step is tested through the CLI (tests/cli/test_gdb.py), the whole path in
tests/integration/test_gdb_boot.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import require
from elftools.elf.elffile import ELFFile

from kmtool.gdb.gdbinit import render
from kmtool.gdb.target import GdbAddress, Target, text_regions
from kmtool.live.session import Session

if TYPE_CHECKING:
    from kmtool.build.driver import BuildPaths

# A stand-in for kmtool: prints its arguments as JSON, or fails like kmtool does when asked to.
STAND_IN = """
import json, sys
if "--fail" in sys.argv[1]:
    sys.stderr.write("error: The live session `x` is stale.\\n")
    sys.exit(1)
print(json.dumps(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def kernel_elf(fresh_build: BuildPaths) -> Path:
    require("gdb")
    return fresh_build.kernel


def _gdb(gdbinit: str, tmp: Path, *commands: str) -> subprocess.CompletedProcess[str]:
    script = tmp / "test.gdbinit"
    script.write_text(gdbinit)
    argv = ["gdb", "-nx", "-q", "-batch", "-x", str(script)]
    for command in commands:
        argv += ["-ex", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def _offline(kernel: Path, tmp: Path, mode: str = "", with_session: bool = True) -> str:
    """The gdbinit without its connect line, with the stand-in kmtool and a session named."""
    stand_in = tmp / "stand_in.py"
    stand_in.write_text(STAND_IN)
    session = Session(Path("/s.json"), {}) if with_session else None  # type: ignore[typeddict-item]
    target = Target(GdbAddress("127.0.0.1", 1), kernel.resolve(), text_regions(kernel), session)
    text = render(target, [sys.executable, str(stand_in), mode])
    return "\n".join(line for line in text.splitlines() if "_kmtool_connect" not in line)


def _printed(done: subprocess.CompletedProcess[str]) -> list[str]:
    """gdb's standard output without the line `set architecture` prints."""
    return [line for line in done.stdout.splitlines() if "architecture is set" not in line]


def _symbol(kernel: Path, name: str) -> int:
    with kernel.open("rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        (symbol,) = symtab.get_symbol_by_name(name)
        return int(symbol["st_value"])


def test_the_kernels_text_is_guarded_read_only(kernel_elf: Path, tmp_path: Path) -> None:
    done = _gdb(_offline(kernel_elf, tmp_path), tmp_path, "info mem")
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line[:1].isdigit()]
    expected = [(hex(r.start), hex(r.end)) for r in text_regions(kernel_elf)]
    assert [(row[2], row[3]) for row in rows] == expected
    assert all(row[1] == "y" and row[4] == "ro" for row in rows), rows


def test_km_commands_run_kmtool_inspect_live(kernel_elf: Path, tmp_path: Path) -> None:
    done = _gdb(_offline(kernel_elf, tmp_path), tmp_path, "km frames", "km walk &kmain",
                "km pa 0x1000 + 0x234", "km aspaces")  # fmt: skip
    assert done.returncode == 0, done.stderr
    kernel = str(kernel_elf.resolve())
    tail = ["--kernel", kernel]
    assert [json.loads(line) for line in _printed(done)] == [
        ["inspect", "--live", "/s.json", "--part", "frames", *tail],
        ["inspect", "--live", "/s.json", "--walk", hex(_symbol(kernel_elf, "kmain")), *tail],
        ["inspect", "--live", "/s.json", "--pa", "0x1234", *tail],
        ["inspect", "--live", "/s.json", "--part", "aspaces", *tail],
    ]


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("km walk", "`km walk` needs an address: `km walk 0x...` or an expression."),
        ("km pa no_such_symbol", '`km pa no_such_symbol`: No symbol "no_such_symbol" in current '
         "context.."),
        ("km frames 3", "`km frames` takes no argument, not `3`."),
        ("km bogus", "`km bogus` is not a km command (see `help km`)."),
    ],
)  # fmt: skip
def test_km_argument_errors(kernel_elf: Path, tmp_path: Path, command: str, message: str) -> None:
    done = _gdb(_offline(kernel_elf, tmp_path), tmp_path, command)
    assert done.returncode == 1  # gdb -batch: the status of the last command
    assert done.stderr.strip().splitlines() == [message]
    assert _printed(done) == []  # the stand-in never ran


def test_a_failing_kmtool_is_its_one_sentence(kernel_elf: Path, tmp_path: Path) -> None:
    done = _gdb(_offline(kernel_elf, tmp_path, "--fail"), tmp_path, "km heap")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == ["`km heap`: The live session `x` is stale."]


def test_km_without_a_session(kernel_elf: Path, tmp_path: Path) -> None:
    done = _gdb(_offline(kernel_elf, tmp_path, with_session=False), tmp_path, "km summary")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "`km summary` reads the guest's RAM through a live session, and this gdb has none: start "
        "the guest with `kmtool run --live --gdb`, then `kmtool gdb`."
    )


def test_help_lists_every_km_command(kernel_elf: Path, tmp_path: Path) -> None:
    done = _gdb(_offline(kernel_elf, tmp_path), tmp_path, "help km")
    listed = {line.split(" -- ")[0] for line in done.stdout.splitlines() if line.startswith("km ")}
    names = {"summary", "walk", "pa", "frames", "heap", "fault", "aspaces"}
    assert listed == {f"km {name}" for name in names}
