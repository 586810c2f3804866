"""`kmtool inspect` imports only what the parts it decodes need (docs/design.md §13).

Each case runs the whole command in a fresh interpreter (this one has imported everything) and
reads back which modules it ended with. A foreign raw dump walked with `--cr3` decodes the page
tables and nothing else: none of the kernel parts' decoders, their checks, the format readers or
construct may be imported. The same dump of our kernel imports them, which is what makes the
first case mean something; a foreign ELF core brings its reader (and construct) and the CPUs'
descriptor tables, still none of the kernel parts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dump_fixtures as F
import pytest

from kmtool.dump.checks.registry import CHECKS
from kmtool.dump.records import field_offset
from kmtool.schemas.coreinfo import CoreInfo
from kmtool.schemas.signatures import CORE_INFO_MAGIC, CORE_INFO_MAGIC2, CORE_INFO_NEEDLE

# Run the CLI as `kmtool` does and write the names of the imported modules to argv[1].
PROBE = """
import json, sys
from kmtool.cli import main
out, sys.argv = sys.argv[1], ["kmtool", *sys.argv[2:]]
try:
    main()
finally:
    json.dump(sorted(sys.modules), open(out, "w"))
"""

KERNEL_PARTS = [f"kmtool.dump.{m}" for m in (
    "kernel_state", "kernel_parts", "bootinfo", "memmap", "frames", "frame_stack", "chase",
    "stack_chase", "heap", "aspaces", "shared_walk", "accounting", "fault", "fault_explain",
    "kernel_elf",
)]  # fmt: skip
READERS = ["kmtool.dump.elfcore", "kmtool.dump.kdump", "kmtool.dump.lime", "kmtool.dump.paged"]
# Every check module but the page tables' (the one row a foreign dump without CPUs gets).
OTHER_CHECKS = sorted(
    {f"kmtool.dump.checks.{c.run.split('.')[0]}" for c in CHECKS}
    - {"kmtool.dump.checks.pagetables"}
)
# construct and the one module that parses with it; the CPUs' tables (a raw image records none).
NOT_NEEDED = [
    "construct",
    "kmtool.dump.records",
    "kmtool.dump.descriptors",
    "numpy.ma",
    "rich",
    "elftools",
]


@pytest.fixture(scope="module")
def fx() -> F.Fixture:
    return F.build()


def imported(tmp_path: Path, *args: str) -> set[str]:
    """The modules a whole `kmtool ARGS` process imports (it must exit 0)."""
    out = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *args], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(out.read_text()))


def foreign(fx: F.Fixture) -> F.Fixture:
    """The fixture with its core-info magic zeroed: a dump of some other kernel."""
    other = F.Fixture(bytearray(fx.image), fx.cr3, fx.truth, dict(fx.addresses))
    other.poke(fx.addresses["core"], 0)
    return other


def test_foreign_raw_dump_imports_the_walker_only(fx: F.Fixture, tmp_path: Path) -> None:
    dump = foreign(fx).write_raw(tmp_path / "foreign.raw")
    modules = imported(tmp_path, "inspect", str(dump), "--cr3", hex(fx.cr3), "--json")
    assert {"kmtool.dump.pagetable", "kmtool.dump.checks.pagetables"} <= modules
    assert set(KERNEL_PARTS + READERS + OTHER_CHECKS + NOT_NEEDED).isdisjoint(modules), sorted(
        set(KERNEL_PARTS + READERS + OTHER_CHECKS + NOT_NEEDED) & modules
    )


def test_our_kernel_imports_its_parts(fx: F.Fixture, tmp_path: Path) -> None:
    dump = fx.write_raw(tmp_path / "ours.raw", layout=True)
    modules = imported(tmp_path, "inspect", str(dump), "--json")
    needed = {"kmtool.dump.kernel_state", "kmtool.dump.frames", "kmtool.dump.heap", "construct",
              "kmtool.dump.accounting", "kmtool.dump.checks.spans", "kmtool.dump.checks.heap"}  # fmt: skip
    assert needed <= modules, sorted(needed - modules)
    assert "rich" not in modules  # --json draws nothing


def test_foreign_elf_core_imports_its_reader_and_descriptors(fx: F.Fixture, tmp_path: Path) -> None:
    dump = foreign(fx).write_elf(tmp_path / "foreign.elf")
    modules = imported(tmp_path, "inspect", str(dump), "--json")
    assert {"kmtool.dump.elfcore", "construct", "kmtool.dump.descriptors",
            "kmtool.dump.checks.descriptors"} <= modules  # fmt: skip
    assert set(KERNEL_PARTS).isdisjoint(modules), sorted(set(KERNEL_PARTS) & modules)


def test_the_scan_needle_is_where_the_schema_puts_the_magic() -> None:
    """The scan looks for CORE_INFO_NEEDLE, magic then magic2, without the schema: that is the
    block's first 16 bytes only while the schema keeps them there."""
    assert (field_offset(CoreInfo, "magic"), field_offset(CoreInfo, "magic2")) == (0, 8)
    parsed = CoreInfo.parse(CORE_INFO_NEEDLE + bytes(CoreInfo.sizeof() - 16))
    assert (parsed.magic, parsed.magic2) == (CORE_INFO_MAGIC, CORE_INFO_MAGIC2)
