"""`kmtool inspect --print` (issue 11 item 4) on a real dump: values read through the DWARF types
equal what the kernel itself reported and what kmtool's schema decoders read, every global of the
kernel prints, and a bad expression is one sentence. One held boot at 128 MiB."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import BOOT_TOOLS, require, run_kmtool

from kmtool.dump.records import field_offset
from kmtool.elf.dwarf import read_dwarf
from kmtool.layout.table import KERNEL_LINK_BASE, OFFSET_MAP_BASE
from kmtool.schemas.bootinfo import BootInfo


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    require(*BOOT_TOOLS)
    work = tmp_path_factory.mktemp("print")
    build = work / "build"
    done = run_kmtool("build", "--build-dir", str(build))
    assert done.returncode == 0, done.stdout + done.stderr
    dump = work / "dump.elf"
    done = run_kmtool("run", "--json", "--build-dir", str(build), "--memory", "128M",
                  "--cmdline", "workload=heap", "--dump", str(dump))  # fmt: skip
    result = json.loads(done.stdout)
    assert result["outcome"] == "pass", done.stdout + done.stderr
    yield {"dump": dump, "kernel": build / "kernel.elf", "report": result["report"]}
    dump.unlink()


def printed(held: dict[str, Any], *expressions: str) -> list[dict[str, Any]]:
    args = [a for e in expressions for a in ("--print", e)]
    done = run_kmtool(
        "inspect", str(held["dump"]), "--kernel", str(held["kernel"]), *args, "--json"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)["print"]
    assert [r["expression"] for r in rows] == list(expressions)
    return rows


@pytest.mark.qemu
def test_values_equal_the_ready_report(held: dict[str, Any]) -> None:
    frames, stats, in_use, cmdline = printed(
        held, "km_frames", "km_page_stats", "km_heap.bytes_in_use", "kernel_cmdline"
    )
    report = held["report"]
    assert frames["type"] == "struct km_frame_allocator"
    assert frames["value"]["free_frames"] == report["free_frames"]
    assert frames["value"]["spans"] == report["spans"]
    assert stats["value"]["tables_allocated"] == report["tables_allocated"]
    assert stats["value"]["demand_maps"] == report["demand_maps"]
    assert (in_use["type"], in_use["value"]) == ("uint64_t", report["heap_bytes_in_use"])
    assert cmdline["value"] == report["cmdline"] == "workload=heap hold"  # kmtool added `hold`


@pytest.mark.qemu
def test_pointers_and_indexes_equal_the_schema_decoders(held: dict[str, Any]) -> None:
    done = run_kmtool("inspect", str(held["dump"]), "--json")
    doc = json.loads(done.stdout)
    size, head, core = printed(
        held, "boot_info->memory_map_size", "km_heap.free_heads[12]", "km_core_info.self_phys"
    )
    assert size["value"] == doc["boot_info"]["memory_map_size"]
    at = int(doc["boot_info"]["address"], 16) + field_offset(BootInfo, "memory_map_size")
    assert int(size["address"], 16) == OFFSET_MAP_BASE + at  # boot_info points into the offset map
    assert core["value"] == int(doc["source"]["core_info"]["address"], 16)
    assert head["type"] == "uint64_t"


@pytest.mark.qemu
def test_every_global_prints(held: dict[str, Any]) -> None:
    names = sorted(read_dwarf(held["kernel"]).variables)
    rows = printed(held, *names)
    assert len(rows) == len(names) > 20
    unreadable = [r["expression"] for r in rows
                  if isinstance(r["value"], dict) and set(r["value"]) == {"unreadable"}]  # fmt: skip
    assert unreadable == []  # every global lies in the mapped kernel image
    assert all(r["type"] and int(r["address"], 16) >= KERNEL_LINK_BASE for r in rows)


@pytest.mark.qemu
def test_a_bad_expression_is_one_sentence(held: dict[str, Any]) -> None:
    base = ["inspect", str(held["dump"]), "--kernel", str(held["kernel"]), "--print"]
    done = run_kmtool(*base, "km_frames.nope")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().startswith("error: `--print km_frames.nope`: struct ")
    assert len(done.stderr.strip().splitlines()) == 1
    done = run_kmtool("inspect", str(held["dump"]), "--print", "km_frames")
    assert done.returncode == 1 and "pass `--kernel ELF`" in done.stderr
