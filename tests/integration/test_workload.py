"""The `workload=` words (issue 12 item 1): one boot with `workload=all`, held and dumped, and
what each workload says it built is checked in the dump: the kernel's list of address spaces, the
shared and copy-on-write frames through each listed PML4, the heap blocks, the fragmented spans.
Every address compared comes from the kernel's own "workload NAME: ..." line.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import BOOT_TOOLS, require, run_kmtool

from kmtool.dump.coreinfo import find_core_info
from kmtool.dump.source import DumpSource, open_dump
from kmtool.dump.translate import walk_address
from kmtool.layout.table import PAGE_SIZE, SHARED_PML4_FIRST, SHARED_PML4_LAST
from kmtool.schemas.aspace import AspaceList

HEX = "0x[0-9a-f]+"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    require(*BOOT_TOOLS)
    work = tmp_path_factory.mktemp("workload")
    done = run_kmtool("build", "--build-dir", str(work / "build"))
    assert done.returncode == 0, done.stdout + done.stderr
    dump = work / "all.elf"
    done = run_kmtool("run", "--json", "--build-dir", str(work / "build"), "--memory", "256M",
                  "--cmdline", "workload=all", "--dump", str(dump))  # fmt: skip
    result = json.loads(done.stdout)
    assert result["outcome"] == "pass", done.stdout + done.stderr
    serial = Path(result["serial_log"]).read_text(errors="replace")
    said = dict(re.findall(r"^workload (\w+): (.*)$", serial, re.M))
    yield {"dump": dump, "result": result, "said": said, "source": open_dump(dump)}
    dump.unlink()


def groups(pattern: str, text: str) -> tuple[str, ...]:
    """The groups of `pattern`'s first match in `text` (a failed assertion when there is none)."""
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in {text!r}"
    return m.groups()


def listed(source: DumpSource) -> tuple[dict[int, int], int]:
    """id -> PML4 of every address space the kernel lists, and the kernel PML4."""
    core = find_core_info(source.memory, None, None)
    assert core is not None
    data = source.memory.read(core.aspaces_phys, AspaceList.sizeof(), "aspace list")
    al = AspaceList.parse(data)
    return dict(zip(al.id[: al.count], al.pml4[: al.count], strict=True)), core.kernel_pml4_phys


def leaf(source: DumpSource, pml4: int, va: int) -> tuple[int, str]:
    step = walk_address(source.memory, pml4, va)
    assert step["stopped"] is None, step
    return int(step["phys"], 16), step["flags"]


@pytest.mark.qemu
def test_processes_are_listed_and_share_what_they_say(run: dict[str, Any]) -> None:
    line = run["said"]["processes"]
    count, first, last = map(int, groups(r"(\d+) address spaces \(ids (\d+)-(\d+)\)", line))
    code, code_va = (
        int(x, 16) for x in groups(rf"code frame ({HEX}) shared by all at ({HEX})", line)
    )
    m = groups(rf"data frame ({HEX}) shared copy-on-write by ids (\d+)-(\d+) at ({HEX})", line)
    data, cow_first, cow_last, data_va = int(m[0], 16), int(m[1]), int(m[2]), int(m[3], 16)
    spaces, kernel_pml4 = listed(run["source"])
    assert sorted(spaces) == list(range(first, last + 1)) and len(spaces) == count
    assert run["result"]["report"]["address_spaces"] == count
    kernel = run["source"].memory.read(kernel_pml4, PAGE_SIZE, "kernel PML4")
    for ident, pml4 in spaces.items():
        mine = run["source"].memory.read(pml4, PAGE_SIZE, "PML4")
        shared = slice(SHARED_PML4_FIRST * 8, (SHARED_PML4_LAST + 1) * 8)
        assert mine[shared] == kernel[shared], f"address space {ident} has its own kernel half"
        assert leaf(run["source"], pml4, code_va) == (code, "R-XU")
        phys, flags = leaf(run["source"], pml4, data_va)
        if cow_first <= ident <= cow_last:
            assert (phys, flags) == (data, "R--U")
        else:
            assert phys != data and flags == "RW-U"


@pytest.mark.qemu
def test_heap_and_fragment_state_is_what_inspect_decodes(run: dict[str, Any]) -> None:
    done = run_kmtool("inspect", str(run["dump"]), "--json")
    assert done.returncode == 0, done.stdout + done.stderr  # the workloads break no invariant
    doc = json.loads(done.stdout)
    heap_line, fragment_line = run["said"]["heap"], run["said"]["fragment"]
    pattern = r"(\d+) blocks .* (\d+) of them freed again; (\d+) bytes in use"
    blocks, freed, in_use = map(int, groups(pattern, heap_line))
    assert doc["heap"]["bytes_in_use"] == in_use
    assert doc["heap"]["used_blocks"] == blocks - freed
    (spans,) = map(int, groups(r"; (\d+) spans$", fragment_line))
    (pairs,) = map(int, groups(r"^(\d+) frames kept", fragment_line))
    assert doc["frames"]["spans"] == spans == run["result"]["report"]["spans"]
    assert spans >= pairs


@pytest.mark.qemu
def test_inspect_shows_the_address_spaces_and_every_frame_has_an_owner(run: dict[str, Any]) -> None:
    done = run_kmtool("inspect", str(run["dump"]), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    spaces = doc["address_spaces"]
    (count, pages) = map(
        int, groups(r"(\d+) address spaces .*?, (\d+) user pages", run["said"]["processes"])
    )
    assert spaces["count"] == count == len(spaces["spaces"])
    assert (
        sum(s["user_pages"] for s in spaces["spaces"]) == pages + 2
    )  # + the 2 copy-on-write aliases
    assert all(s["kernel_half_shared"] is True and s["error"] is None for s in spaces["spaces"])
    owners = doc["accounting"]["by_owner"]
    assert owners["free"] == run["result"]["report"]["free_frames"] and owners["unaccounted"] == 0
    assert owners["page-table"] > 0 and owners["mapped"] > pages
    names = {c["name"]: c["ok"] for c in doc["checks"]}
    for name in ("no leaked frames", "every address space shares the kernel's PML4 510-511",
                 "no supervisor-only page in a user half",
                 "no user mapping points into kernel-owned frames"):  # fmt: skip
        assert names[name] is True, name
    assert doc["fault"] is None and doc["part_errors"] == {}


@pytest.mark.qemu
def test_diff_against_a_plain_boot_names_what_the_workloads_did(
    run: dict[str, Any], tmp_path: Path
) -> None:
    plain = tmp_path / "plain.elf"
    build = run["dump"].parent / "build"
    done = run_kmtool("run", "--build-dir", str(build), "--memory", "256M", "--dump", str(plain))
    assert plain.exists(), done.stdout + done.stderr
    svg = tmp_path / "diff.svg"
    done = run_kmtool("diff", str(plain), str(run["dump"]), "--json", "--fail-on", "leak,wx",
                      "--svg", str(svg))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr  # the workloads leak nothing
    diff = json.loads(done.stdout)
    _picture_agrees(svg, diff, run["dump"])
    assert {"owner-change", "mapping-change", "heap-change"} <= set(diff["findings"])
    assert diff["leaks"] is None and diff["new_wx"] == []
    spaces = {c["space"] for c in diff["mapping_changes"] if c["change"] == "added"}
    (count,) = map(int, groups(r"(\d+) address spaces", run["said"]["processes"]))
    assert {f"space {i}" for i in range(1, count + 1)} <= spaces
    (in_use,) = map(int, groups(r"; (\d+) bytes in use", run["said"]["heap"]))
    assert diff["heap_bytes_in_use"] == in_use  # a plain boot holds no heap bytes
    owners = {(c["from"], c["to"]) for c in diff["owner_changes"]}
    assert ("free", "mapped") in owners and ("free", "page-table") in owners
    plain.unlink()


def _picture_agrees(svg: Path, diff: dict[str, Any], dump: Path) -> None:
    """The diff picture's legend holds each owner change with its exact bytes, and each address
    space's band adds exactly the user pages that `kmtool inspect` of B counts in it."""
    ns = "{http://www.w3.org/2000/svg}"
    root = ET.parse(svg).getroot()
    legend: dict[str, int] = {}
    for g in root.iter(f"{ns}g"):
        if g.get("class") == "legend":  # the physical legend first, then the virtual one
            legend.setdefault(g.get("data-kind") or "", int(g.get("data-bytes") or -1))
    for c in diff["owner_changes"]:
        assert legend[f"{c['from']} -> {c['to']}"] == c["frames"] * PAGE_SIZE, c
    inspected = json.loads(run_kmtool("inspect", str(dump), "--json").stdout)
    titles = [t.text or "" for t in root.iter(f"{ns}text")]
    for space in inspected["address_spaces"]["spaces"]:
        name = f"space {space['id']}"
        added = sum(c["after"]["size"] for c in diff["mapping_changes"]
                    if c["space"] == name and c["change"] == "added")  # fmt: skip
        assert added == space["user_pages"] * PAGE_SIZE, name
        assert any(t.startswith(f"{name}: ") for t in titles), name
