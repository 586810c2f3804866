"""Debian's Linux kernel as a foreign guest: `kmtool inspect --cr3` against QEMU's `info tlb`, once
with 5-level paging and once with 4-level (docs/design.md §7.3, §8). Two short TCG boots.

Linux turns on 5-level paging (CR4.LA57) on every CPU that has it, and QEMU's `-cpu max` has it;
`-cpu max,-la57` takes it away. The kernel boots without an initrd or a disk until it panics for
want of a root file system; `panic=-1` makes it reboot at once, and `-action
reboot=shutdown,shutdown=pause` turns that reboot into a pause, so the VM is stopped with the
kernel's own tables in place. Then, of the same paused VM: HMP `info registers` and `info tlb`,
and QMP `dump-guest-memory` (an ELF core with the CPU notes). The comparison, entry for entry:

- the whole process, as a user runs it: `kmtool inspect DUMP --cr3 CR3 --json`, with CR3 the one
  the dump's CPU note records (and `info registers` prints). Every merged range of the JSON is
  split into its pages, which must equal `info tlb`'s lines (address, physical base, large or not,
  W, U and X); `--walk` of some of those addresses and `--pa` of one physical page agree too;
- in process, every raw leaf (all nine flag letters) through tests/integration/tlb_oracle.py.

The kernel comes from scripts/fetch-linux-guest (run by .ci/run) in $KMTOOL_LINUX_GUEST or
~/.cache/kmtool/linux-guest; without it the test skips, and under CI=true fails.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require, run_kmtool, unavailable
from linux_guest import GUEST, boot_and_dump
from tlb_oracle import Tlb, leaf_tlb, parse_tlb

from kmtool.dump.cpu import CR4_LA57
from kmtool.dump.inspection import Options, inspect_dump


@pytest.fixture(scope="module", params=["max", "max,-la57"])
def guest(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, object]]:
    require("qemu-system-x86_64")
    if not (GUEST / "vmlinuz").is_file():
        unavailable(f"no Linux guest kernel at {GUEST}/vmlinuz; run scripts/fetch-linux-guest")
    work = tmp_path_factory.mktemp("linux")
    seen = boot_and_dump(request.param, work)
    yield {"cpu": request.param, "work": work, **seen}
    (work / "dump.elf").unlink()  # guest RAM: do not leave it in pytest's kept tmp dirs


def _register(registers: str, name: str) -> int:
    match = re.search(rf"\b{name}=([0-9a-f]+)", registers)
    assert match, registers
    return int(match[1], 16)


def _json_pages(regions: list[dict[str, object]]) -> set[tuple[int, int, bool, str]]:
    """The JSON's merged ranges split into pages: (va, pa, large, effective flags "RWXU")."""
    pages = set()
    for r in regions:
        start, phys, size = int(r["start"], 16), int(r["phys"], 16), int(r["size"])  # type: ignore[call-overload]
        step = int(r["page_size"])  # type: ignore[call-overload]
        for k in range(0, size, step):
            pages.add((start + k, phys + k, step > 4096, str(r["flags"])))
    return pages


def _tlb_pages(tlb: Tlb) -> set[tuple[int, int, bool, str]]:
    """`info tlb` lines in the JSON's terms. The letters are the leaf's; they equal the effective
    permissions because Linux's upper-level entries allow everything their leaves may (W set, NX
    clear, U as below); a mapping they restricted would show here as a difference."""
    return {
        (va, pa, "P" in f, "R" + ("W" if "W" in f else "-") + ("-" if "X" in f else "X")
         + ("U" if "U" in f else "-"))
        for va, pa, _, f in tlb
    }  # fmt: skip


@pytest.mark.qemu
def test_linux_page_tables_equal_info_tlb(guest: dict[str, object]) -> None:
    work: Path = guest["work"]  # type: ignore[assignment]
    la57 = guest["cpu"] == "max"
    cr3, cr4 = (_register(str(guest["registers"]), n) for n in ("CR3", "CR4"))
    assert bool(cr4 & CR4_LA57) == la57, hex(cr4)
    tlb = parse_tlb(str(guest["tlb"]))
    assert len(tlb) > 1000, "info tlb printed too little"
    # a 57-bit address: Linux puts its direct map at 0xff11000000000000 with 5 levels
    assert any(va >> 47 != 0x1FFFF and va >> 47 for va, *_ in tlb) == la57

    dumped = json.loads(run_kmtool("inspect", str(work / "dump.elf"), "--json").stdout)
    (cpu0, *_) = dumped["cpu"]
    assert int(cpu0["cr3"], 16) == cr3 and int(cpu0["cr4"], 16) == cr4  # the dump's CPU note
    assert cpu0["paging"] == ("5-level" if la57 else "4-level")
    some = sorted(tlb)[:: max(1, len(tlb) // 5)]
    argv = ["inspect", str(work / "dump.elf"), "--cr3", hex(cr3), "--json"]
    argv += [a for va, *_ in some for a in ("--walk", hex(va + 0x10))] + ["--pa", hex(some[0][1])]
    done = run_kmtool(*argv)
    assert done.stderr == "", done.stderr
    # a healthy Linux passes every check that applies (its #VC IST stack is unmapped outside
    # SEV-ES, which "IST stacks mapped" names without failing)
    failed = [c for c in json.loads(done.stdout)["checks"] if not c["ok"]]
    assert done.returncode == 0 and not failed, failed
    pt = json.loads(done.stdout)["page_tables"]
    assert pt["paging"] == ("5-level" if la57 else "4-level") and pt["error"] is None, pt["error"]
    assert pt["regions_total"] == len(pt["regions"])
    assert pt["leaves"] == len(tlb)
    assert sum(n for s, n in pt["leaf_counts"].items() if s != "4K") == sum(
        "P" in f for *_, f in tlb
    )
    mine, qemu = _json_pages(pt["regions"]), _tlb_pages(tlb)
    assert mine - qemu == set() and qemu - mine == set()
    for walked, (va, pa, _, flags) in zip(pt["walks"], some, strict=True):
        assert (walked["va"], walked["phys"]) == (hex(va + 0x10), hex(pa + 0x10)), walked
        assert len(walked["steps"]) == (5 if la57 else 4) - ("P" in flags) - (
            walked["page_size"] == 1 << 30
        )
    assert hex(some[0][0]) in {a["va"] for a in pt["aliases"][hex(some[0][1])]}

    ins = inspect_dump(work / "dump.elf", Options(cr3=cr3, keep_leaves=True))
    assert ins.tables is not None and ins.tables.leaves is not None
    raw = leaf_tlb(ins.tables.leaves)
    assert raw - tlb == set() and tlb - raw == set()
