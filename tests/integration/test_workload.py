"""The `workload=` words (issue 12 item 1): one boot with `workload=all`, held and dumped, and
what each workload says it built is checked in the dump: the kernel's list of address spaces, the
shared and copy-on-write frames through each listed PML4, the heap blocks, the fragmented spans.
Every address compared comes from the kernel's own "workload NAME: ..." line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, require

from kmtool.dump.coreinfo import find_core_info
from kmtool.dump.pagetable import walk_address
from kmtool.dump.source import DumpSource, open_dump
from kmtool.layout.table import SHARED_PML4_FIRST, SHARED_PML4_LAST
from kmtool.schemas.aspace import AspaceList

TOOLS = ("clang", "ld.lld", "lld-link", "mformat", "mcopy", "qemu-system-x86_64",
         "/usr/share/OVMF/OVMF_CODE_4M.fd")  # fmt: skip
HEX = "0x[0-9a-f]+"


def kmtool(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1", COLUMNS="100")
    return subprocess.run(
        [sys.executable, "-m", "kmtool", *args],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=180,
    )  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    require(*TOOLS)
    work = tmp_path_factory.mktemp("workload")
    done = kmtool("build", "--build-dir", str(work / "build"))
    assert done.returncode == 0, done.stdout + done.stderr
    dump = work / "all.elf"
    done = kmtool("run", "--json", "--build-dir", str(work / "build"), "--memory", "256M",
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
    kernel = run["source"].memory.read(kernel_pml4, 4096, "kernel PML4")
    for ident, pml4 in spaces.items():
        mine = run["source"].memory.read(pml4, 4096, "PML4")
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
    done = kmtool("inspect", str(run["dump"]), "--json")
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
def test_address_spaces_decode_and_every_frame_has_an_owner(run: dict[str, Any]) -> None:
    from kmtool.dump.accounting import account_frames
    from kmtool.dump.aspace_checks import (
        kernel_half_shared,
        no_leaked_frames,
        user_half_is_user,
        user_not_in_kernel_frames,
    )
    from kmtool.dump.aspaces import read_address_spaces
    from kmtool.dump.inspection import Options, inspect_dump

    ins = inspect_dump(run["dump"], Options())
    assert ins.core is not None and ins.frames is not None and ins.memmap is not None
    assert ins.kernel_tables is not None
    memory = ins.source.memory
    spaces = read_address_spaces(memory, ins.core.aspaces_phys, ins.core.kernel_pml4_phys)
    (pages,) = map(int, groups(r"(\d+) user pages", run["said"]["processes"]))
    assert sum(s.user_pages for s in spaces.spaces) == pages + 2  # + the two copy-on-write aliases
    walks = [ins.kernel_tables, *(s.tables for s in spaces.spaces)]
    limit = ins.frames.state.limit
    acc = account_frames(ins.memmap, ins.frames.starts, ins.frames.ends, walks, limit)
    assert acc.by_owner["free"] == run["result"]["report"]["free_frames"]
    checks = [
        no_leaked_frames(acc),
        kernel_half_shared(spaces),
        user_half_is_user(spaces),
        user_not_in_kernel_frames(ins.kernel_tables, spaces, ins.memmap),
    ]
    assert all(c.ok for c in checks), checks
