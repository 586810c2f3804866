"""One VM dumped in every format decodes identically (issue 11 items 2 and 3). One TCG boot.

The oracle is the ELF core: the kdump-compressed dump of the same stopped VM (QEMU's kdump-zlib,
reassembled by kmtool as it copies), the raw dump, and a LiME file converted from the ELF core's
ranges (QEMU cannot write LiME; tests/dump/dump_convert.py says why converting is the honest route)
must give the same `inspect --json` document, except the part that describes the file itself. The
core-info block is found without a scan in each of kmtool's own dumps: by the VMCOREINFO note the
kernel published through `-device vmcoreinfo` (ELF and kdump), by the sidecar (raw).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, require
from dump.dump_convert import to_lime

from kmtool.dump.source import open_dump

TOOLS = ("clang", "ld.lld", "lld-link", "mformat", "mcopy", "qemu-system-x86_64",
         "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd")  # fmt: skip
MEMORY = 256 << 20


def inspect_json(dump: Path, *extra: str) -> dict[str, Any]:
    env = dict(os.environ, NO_COLOR="1", COLUMNS="100")
    done = subprocess.run([sys.executable, "-m", "kmtool", "inspect", str(dump), "--json", *extra],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def dumps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    require(*TOOLS)
    from kmtool.qemu.runner import RunOptions, held_vm

    work = tmp_path_factory.mktemp("formats")
    build = work / "build"
    done = subprocess.run([sys.executable, "-m", "kmtool", "build", "--build-dir", str(build)],
                          capture_output=True, text=True, cwd=REPO, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    with held_vm(build / "kmtool.img", RunOptions(timeout=120, memory=MEMORY)) as vm:
        assert "coreinfo: published" in vm.serial, vm.serial
        for fmt in ("elf", "kdump", "raw"):
            vm.dump(work / f"dump.{fmt}", fmt)
    source = open_dump(work / "dump.elf")
    to_lime(source.memory, work / "dump.lime")
    source.memory.close()
    yield {fmt: work / f"dump.{fmt}" for fmt in ("elf", "kdump", "raw", "lime")}
    for dump in work.glob("dump.*"):
        dump.unlink()


def _without_source(doc: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in doc.items() if key != "source"}


@pytest.mark.qemu
def test_elf_and_kdump_decode_identically(dumps: dict[str, Path]) -> None:
    elf, kdump = inspect_json(dumps["elf"]), inspect_json(dumps["kdump"])
    assert elf["source"]["format"] == "elf" and kdump["source"]["format"] == "kdump"
    assert elf["source"]["core_info"] == kdump["source"]["core_info"]
    assert kdump["source"]["core_info"]["found_by"] == "note"
    assert _without_source(elf) == _without_source(kdump)
    assert all(c["ok"] for c in kdump["checks"]), [c for c in kdump["checks"] if not c["ok"]]


@pytest.mark.qemu
def test_raw_finds_the_block_through_the_sidecar(dumps: dict[str, Path]) -> None:
    elf, raw = inspect_json(dumps["elf"]), inspect_json(dumps["raw"])
    assert raw["source"]["core_info"]["found_by"] == "sidecar"
    assert elf["source"]["core_info"]["address"] == raw["source"]["core_info"]["address"]
    assert elf["frames"] == raw["frames"] and elf["heap"] == raw["heap"]
    # the sidecar's registers (QEMU's `info registers`) equal the ELF core's notes, so the raw
    # dump shows the same descriptor tables (EFER is not compared: the ELF core has no EFER)
    assert raw["descriptors"] and raw["descriptors"] == elf["descriptors"]
    same = ("cr0", "cr2", "cr3", "cr4", "rip", "rsp", "rflags", "cs", "ss", "gdt", "idt")
    for elf_cpu, raw_cpu in zip(elf["cpu"], raw["cpu"], strict=True):
        assert {k: raw_cpu[k] for k in same} == {k: elf_cpu[k] for k in same}


@pytest.mark.qemu
def test_lime_of_the_same_memory_decodes_identically(dumps: dict[str, Path]) -> None:
    elf = inspect_json(dumps["elf"])
    cr3 = elf["cpu"][0]["cr3"]
    lime = inspect_json(dumps["lime"], "--cr3", cr3)
    assert lime["source"]["format"] == "lime"
    assert lime["source"]["ranges"] == [
        {**r, "file_offset": lime_r["file_offset"]}
        for r, lime_r in zip(elf["source"]["ranges"], lime["source"]["ranges"], strict=True)
    ]
    for part in ("boot_info", "memory_map", "frames", "heap", "address_spaces", "accounting"):
        assert lime[part] == elf[part], part
    tables = {k: v for k, v in lime["page_tables"].items() if k != "root_source"}
    assert tables == {k: v for k, v in elf["page_tables"].items() if k != "root_source"}
    assert lime["page_tables"]["root_source"] == "--cr3"
    assert lime["source"]["core_info"]["found_by"] == "scan"  # LiME carries no note
