"""`kmtool inspect` as a user runs it: exact output, JSON shape, exit statuses, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "tests" / "dump"))
import dump_fixtures as F  # noqa: E402

TOP_LEVEL = ["source", "cpu", "boot_info", "memory_map", "page_tables", "frames", "heap",
             "address_spaces", "accounting", "fault", "descriptors", "part_errors", "checks"]  # fmt: skip


def kmtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1", COLUMNS="100")
    return subprocess.run([sys.executable, "-m", "kmtool", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)  # fmt: skip


def lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


@pytest.fixture(scope="module")
def fx() -> F.Fixture:
    return F.build()


@pytest.fixture(scope="module")
def work(fx: F.Fixture, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("inspect")
    fx.write_elf(d / "dump.elf")
    fx.write_raw(d / "dump.raw")
    fx.write_raw(d / "laid-out.raw", layout=True)
    fx.write_kernel_elf(d / "kernel.elf")
    return d


def test_summary_exact(work: Path) -> None:
    done = kmtool("inspect", "dump.elf", cwd=work)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert lines(done.stdout) == [
        "Dump         dump.elf: QEMU ELF core, 12 MiB in 3 ranges",
        "Core info    0x118100 (found by scan), kernel PML4 0x190000, offset map in 1 GiB pages",
        "Build id     000102030405060708090a0b0c0d0e0f",
        "CPU 0        rip 0xffffff0000101234  rsp 0xffffff000011b000  cr0 0x80010033  cr3 0x190000  cr4 0x6a0",  # noqa: E501
        "             (4-level paging, from the QEMU note)",
        "Descriptors  IDT 0xffffff000011a800 limit 0xfff (256 gates);",
        "             GDT 0xffffff000011a000 limit 0x37 (7 slots); TSS 0xffffff000011b800 (TR 0x28),",
        "             IST1 mapped",
        "Boot info    0x140000: kernel 0x100000 (256 KiB) at 0xffffff0000100000,",
        "             64 scratch pages at 0x150000, cmdline 'hold test'",
        "Memory map   10 descriptors of 48 bytes: conventional 8.99 MiB, boot-services-data 2 MiB,",
        "             km-kernel 256 KiB, km-scratch 256 KiB, other 132 KiB",
        "Page tables  CR3 0x190000 (from CPU 0, QEMU note): 14 ranges, 623 pages (4K 110, 2M 1, 1G 512),",
        "             9 tables",
        "Frames       2311 free (9.02 MiB) in 10 spans; largest 0xd01000 (767 frames), fragmentation 0.668",
        "Heap         27 blocks: 2 used (5300 bytes requested), 25 free; 4 backed pages",
        "Checks       34 passed, 0 failed",
    ]  # fmt: skip


def test_raw_dumps_with_kernel_symbols(work: Path) -> None:
    # Without a CR3 a raw image is scanned for the core-info block; with its layout file (CR3
    # recorded) the `km_core_info` symbol is translated through the page tables instead.
    done = kmtool("inspect", "dump.raw", "--kernel", "kernel.elf", cwd=work)
    assert done.returncode == 0, done.stderr
    out = lines(done.stdout)
    assert out[0] == "Dump         dump.raw: raw physical image, 16 MiB in 1 range"
    assert out[1].startswith("Core info    0x118100 (found by scan), kernel PML4 0x190000")
    assert out[2] == "Build id     000102030405060708090a0b0c0d0e0f (kernel ELF: the same)"
    assert out[-1] == "Checks       32 passed, 0 failed"
    done = kmtool("inspect", "laid-out.raw", "--kernel", "kernel.elf", cwd=work)
    assert done.returncode == 0, done.stderr
    out = lines(done.stdout)
    assert out[0] == "Dump         laid-out.raw: raw physical image, 12 MiB in 2 ranges"
    assert out[1].startswith("Core info    0x118100 (found by symbol), kernel PML4 0x190000")
    assert out[3].startswith("CPU 0        cr0 0x80010033  cr3 0x190000  cr4 0x6a0")


def test_json_shape(work: Path, fx: F.Fixture) -> None:
    done = kmtool("inspect", "dump.elf", "--json", "--walk", "0xffffff0000100010", "--pa",
                  "0x100000", cwd=work)  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert list(doc) == TOP_LEVEL
    pt = doc["page_tables"]
    assert pt["cr3"] == hex(fx.cr3)
    for region in pt["regions"]:
        assert {"start", "end", "size", "phys", "page_size", "flags"} <= set(region)
        assert region["start"].startswith("0x") and region["phys"].startswith("0x")
    assert pt["regions"][-1]["end"] == "0xffffffffffffffff"  # canonical, upper half
    assert pt["walks"][0]["phys"] == "0x100010"
    assert [a["region"] for a in pt["aliases"]["0x100000"]] == ["kernel-image", "offset-map"]
    frames = doc["frames"]
    assert frames["free_frames"] == fx.truth["free_frames"]
    assert frames["spans"] == len(fx.truth["spans"])
    assert frames["span_list"][0] == [hex(fx.truth["spans"][0][0]), fx.truth["spans"][0][1]]
    assert all(set(c) == {"name", "ok", "detail"} and c["ok"] for c in doc["checks"])
    assert doc["cpu"][0]["cr3"] == hex(fx.cr3)
    assert doc["boot_info"]["cmdline"] == "hold test"
    assert doc["source"]["core_info"]["build_id"] == F.BUILD_ID[:16].hex()
    assert doc["source"]["kernel"] is None and doc["source"]["kernel_build_id"] is None


def test_build_id_with_the_kernel_elf(work: Path, fx: F.Fixture) -> None:
    done = kmtool("inspect", "dump.elf", "--kernel", "kernel.elf", "--json", cwd=work)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["source"]["kernel_build_id"] == F.BUILD_ID.hex()
    (row,) = [c for c in doc["checks"] if c["name"] == "build id matches the kernel ELF"]
    assert row["ok"]
    fx.write_kernel_elf(work / "other.elf", build_id=bytes(20))
    done = kmtool("inspect", "dump.elf", "--kernel", "other.elf", cwd=work)
    assert done.returncode == 1
    out = lines(done.stdout)
    assert out[2] == "Build id     000102030405060708090a0b0c0d0e0f (kernel ELF: " + "00" * 20 + ")"
    assert any(line.startswith("FAIL │ build id matches the kernel ELF") for line in out)


def test_foreign_dump_with_cr3(work: Path, fx: F.Fixture) -> None:
    foreign = F.Fixture(bytearray(fx.image), fx.cr3)
    foreign.poke(fx.addresses["core"], 0)  # no core-info magic: not (a ready) one of ours
    foreign.write_raw(work / "foreign.raw")
    done = kmtool("inspect", "foreign.raw", "--json", "--cr3", hex(fx.cr3), cwd=work)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert list(doc) == TOP_LEVEL
    assert [doc[k] for k in ("boot_info", "memory_map", "frames", "heap")] == [None] * 4
    assert doc["page_tables"]["cr3"] == hex(fx.cr3) and doc["page_tables"]["root_source"] == "--cr3"
    # The one check that applies to any dump; ranges carry no region names from our layout.
    assert doc["checks"] == [
        {"name": "page tables walked", "ok": True, "detail": f"623 pages under {hex(fx.cr3)}"}
    ]
    assert {r["region"] for r in doc["page_tables"]["regions"]} == {None}
    human = kmtool("inspect", "foreign.raw", "--cr3", hex(fx.cr3), cwd=work)
    assert "Core info    none: not a dump of a ready kmtool kernel" in lines(human.stdout)
    bare = kmtool("inspect", "foreign.raw", cwd=work)
    assert bare.returncode == 1 and bare.stdout == ""
    assert lines(bare.stderr) == [
        "error: Dump `foreign.raw` records no CR3 and holds no kmtool core-info block; pass "
        "`--cr3 ADDR` to walk its page tables."
    ]


def test_failed_check_exits_1_and_says_which(work: Path, fx: F.Fixture) -> None:
    broken = F.Fixture(bytearray(fx.image), fx.cr3, fx.truth, dict(fx.addresses))
    at = broken.field_pa("frames", "spans")
    broken.poke(at, broken.u64(at) + 1)
    broken.write_raw(work / "broken.raw")
    done = kmtool("inspect", "broken.raw", cwd=work)
    assert done.returncode == 1
    out = lines(done.stdout)
    assert "Checks       29 passed, 1 failed" in out
    assert any(line.startswith("FAIL │ span count matches the kernel counter") for line in out)
    part = kmtool("inspect", "broken.raw", "--part", "frames", cwd=work)
    assert part.returncode == 1
    assert lines(part.stderr) == ["1 of 30 checks failed: `span count matches the kernel counter`."]


def test_core_info_of_another_version_is_a_failed_check(work: Path, fx: F.Fixture) -> None:
    other = F.Fixture(bytearray(fx.image), fx.cr3, fx.truth, dict(fx.addresses))
    other.poke(other.field_pa("core", "version"), 0x1000099)
    other.write_elf(work / "other-version.elf")
    core = hex(fx.addresses["core"])
    problem = (
        f"The core-info block at {core} has version 16777369 (0x1000099); this kmtool reads "
        f"version {F.CORE_INFO_VERSION}."
    )
    done = kmtool("inspect", "other-version.elf", "--json", cwd=work)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    doc = json.loads(done.stdout)
    assert list(doc) == TOP_LEVEL
    assert doc["checks"][0] == {"name": "core-info version", "ok": False, "detail": problem}
    assert [c["name"] for c in doc["checks"] if not c["ok"]] == ["core-info version"]
    # what needs no core-info is still there: CPUs, the tables under the note's CR3, the memory map
    assert doc["cpu"][0]["cr3"] == hex(fx.cr3) and doc["page_tables"]["cr3"] == hex(fx.cr3)
    assert doc["boot_info"]["address"] == hex(F.BOOT_INFO_PA)
    assert len(doc["memory_map"]["entries"]) == len(F.MEMORY_MAP)
    assert doc["frames"] is None and doc["heap"] is None and doc["source"]["core_info"] is None
    assert doc["source"]["core_info_unreadable"] == {"address": core, "detail": problem}
    human = kmtool("inspect", "other-version.elf", cwd=work)
    assert human.returncode == 1
    out = " ".join(lines(human.stdout))
    assert f"Core info    unreadable: The core-info block at {core} has version" in out
    assert "FAIL │ core-info version" in out
    # boot info unreachable (no magic to scan for): the memory map is null, the rest as before
    other.poke(F.BOOT_INFO_PA, 0)
    other.write_elf(work / "other-version-no-boot.elf")
    done = kmtool("inspect", "other-version-no-boot.elf", "--json", cwd=work)
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    assert doc["boot_info"] is None and doc["memory_map"] is None
    assert doc["page_tables"]["cr3"] == hex(fx.cr3)
    assert [c["name"] for c in doc["checks"]] == [
        "core-info version",
        "page tables walked",
        "IDT covers the exception vectors",
        "exception gates present",
        "IST stacks mapped",
        "TR names the GDT's TSS descriptor",
    ]  # the CPU's own tables need no core-info


def test_corrupt_free_list_is_a_failed_check_and_the_rest_decodes(
    work: Path, fx: F.Fixture
) -> None:
    broken = F.Fixture(bytearray(fx.image), fx.cr3, fx.truth, dict(fx.addresses))
    last = fx.truth["spans"][-1][0]
    broken.poke(last + 24, fx.truth["spans"][2][0])  # the last node's next -> an earlier node
    broken.write_raw(work / "cycle.raw")
    done = kmtool("inspect", "cycle.raw", "--json", cwd=work)
    assert done.returncode == 1 and done.stderr == ""
    doc = json.loads(done.stdout)
    why = (
        f"Frame free list: a cycle: node {hex(last)} links back to "
        f"{hex(fx.truth['spans'][2][0])}, visited before."
    )
    assert doc["part_errors"] == {"frames": why} and doc["frames"]["error"] == why
    # partial: every span up to the node that closes the cycle (the last one) is kept
    assert doc["frames"]["span_list"] == [[hex(s), c] for s, c in fx.truth["spans"]]
    assert doc["page_tables"] is not None and doc["heap"] is not None
    failed = [c for c in doc["checks"] if not c["ok"]]
    assert failed == [{"name": "kernel parts readable", "ok": False, "detail": f"frames: {why}"}]
    text = kmtool("inspect", "cycle.raw", cwd=work)
    assert text.returncode == 1 and "Traceback" not in text.stdout + text.stderr
    assert f"Frames       partial, {fx.truth['free_frames']} free" in text.stdout
    assert "then: Frame free list: a cycle:" in text.stdout


def test_walk_and_aliases_without_a_part(work: Path) -> None:
    done = kmtool("inspect", "dump.elf", "--walk", "0xffffff0000100010", "--pa", "0x100000",
                  cwd=work)  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = lines(done.stdout)
    assert out[:7] == [
        "Walk of 0xffffff0000100010",
        "level ┃ table    ┃ index ┃ entry    ┃ flags",
        "━━━━━━╇━━━━━━━━━━╇━━━━━━━╇━━━━━━━━━━╇━━━━━━━━━━━━━━━━━",
        "PML4  │ 0x190000 │   510 │ 0x191003 │ PRESENT|WRITABLE",
        "PDPT  │ 0x191000 │     0 │ 0x192003 │ PRESENT|WRITABLE",
        "PD    │ 0x192000 │     0 │ 0x193003 │ PRESENT|WRITABLE",
        "PT    │ 0x193000 │   256 │ 0x100101 │ PRESENT|GLOBAL",
    ]
    assert "0xffffff0000100010 -> 0x100010 (4 KiB page, R-X-)" in out
    assert "Virtual aliases of physical 0x100000" in out


def test_parts(work: Path) -> None:
    done = kmtool("inspect", "dump.elf", "--part", "memmap", "--part", "checks", cwd=work)
    assert done.returncode == 0, done.stderr
    out = lines(done.stdout)
    assert out[0] == "Memory map at 0x141000: 10 descriptors of 48 bytes"
    assert out[3] == "0 │ conventional       │ 0x0        │ 0x9efff    │   159 │ 0xf"
    assert "Checks" in out
    everything = kmtool("inspect", "dump.elf", "--part", "all", cwd=work)
    assert everything.returncode == 0, everything.stderr
    for title in ("CPU 0", "Boot info", "Page tables under CR3 0x190000", "Free spans",
                  "Heap blocks by order", "Checks"):  # fmt: skip
        assert any(line.startswith(title) for line in lines(everything.stdout)), title


def test_bad_address_is_a_usage_error(work: Path) -> None:
    done = kmtool("inspect", "dump.elf", "--cr3", "nope", cwd=work)
    assert done.returncode == 1
    assert "`nope` is not an address" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_help_lists_inspect() -> None:
    done = kmtool("--help", cwd=REPO)
    assert done.returncode == 0
    assert any(line.split()[:1] == ["inspect"] for line in lines(done.stdout))
    sub = kmtool("inspect", "--help", cwd=REPO)
    assert sub.returncode == 0 and "--walk VA" in sub.stdout and "--cr3 ADDR" in sub.stdout
