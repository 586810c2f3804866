"""`kmtool inspect` against independent oracles, on real dumps (issue 5 item 8). Two TCG boots.

1. The real kernel, booted with `hold` and stopped at KM-READY (kmtool.qemu.runner.held_vm):
   - every page-table leaf kmtool decodes equals an entry of QEMU's own `info tlb` for the same
     stopped VM, and the other way round (address, physical address, page size, flag letters);
   - the free frames, spans, span list and span hash, heap and page counters equal the kernel's
     KM-REPORT; the decoded memory map equals the table the kernel printed on serial;
   - both dump formats (ELF core and raw + layout file) pass every check, through the CLI too;
   - kmtool's ELF core (QEMU writes it into a pipe, kmtool writes the file in 2 MiB blocks) equals,
     byte for byte, the one QEMU writes to a file itself, and is sparse; every PT_LOAD of QEMU's
     file equals the raw dump (pmemsave, another path through QEMU) at the same physical addresses;
   - mutated copies of the real structures give a decoded dump or one DumpError, nothing else.
2. OVMF alone (no kernel: a foreign dump), stopped in its boot manager: the walker's leaves equal
   `info tlb` for firmware page tables (2 MiB and 4 KiB pages, NX, split large pages).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, require
from tlb_oracle import Tlb, leaf_tlb, parse_tlb

from kmtool.dump.inspection import Inspection, Options, inspect_dump
from kmtool.dump.memmap import type_name
from kmtool.dump.records import field_offset
from kmtool.errors import KmtoolError
from kmtool.layout.table import MEMTYPE_HANDOFF, MEMTYPE_KERNEL, MEMTYPE_SCRATCH, PAGE_SIZE, MiB
from kmtool.qemu.cmdline import DEFAULT_MEMORY
from kmtool.schemas.frames import FrameAllocator, FrameSpan

TOOLS = ("clang", "ld.lld", "lld-link", "mformat", "mcopy", "qemu-system-x86_64",
         "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd")  # fmt: skip
MAP_ROW = re.compile(
    r"^\s*(\d+)\s+(\S+)\s+0x([0-9a-f]{16})\s+0x([0-9a-f]{16})\s+(\d+)\s+0x([0-9a-f]+)$"
)
# The names kernel/mm/memmap.c prints for each memory type (its own spelling, EFI order).
KERNEL_TYPE_NAMES = {
    **{name: value for value, name in enumerate((
        "Reserved", "LoaderCode", "LoaderData", "BootServicesCode", "BootServicesData",
        "RuntimeCode", "RuntimeData", "Conventional", "Unusable", "ACPIReclaim", "ACPINVS", "MMIO",
        "MMIOPortSpace", "PalCode", "Persistent", "Unaccepted"))},
    "KmKernel": MEMTYPE_KERNEL, "KmHandoff": MEMTYPE_HANDOFF, "KmScratch": MEMTYPE_SCRATCH,
}  # fmt: skip
COMPARE_CHUNK = 16 * MiB  # dumps are compared this much at a time (bounded memory)


def kmtool(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1", COLUMNS="100")
    return subprocess.run([sys.executable, "-m", "kmtool", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)  # fmt: skip


def kmtool_tlb(ins: Inspection) -> Tlb:
    """kmtool's leaves formatted the way QEMU's `info tlb` prints them."""
    assert ins.tables is not None and ins.tables.leaves is not None
    return leaf_tlb(ins.tables.leaves)


# -- the real kernel ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """Build, boot with hold, and capture everything the tests compare, from one stopped VM."""
    require(*TOOLS)
    from kmtool.qemu.runner import RunOptions, held_vm

    work = tmp_path_factory.mktemp("oracle")
    build = work / "build"
    done = kmtool("build", "--build-dir", str(build))
    assert done.returncode == 0, done.stdout + done.stderr
    with held_vm(build / "kmtool.img", RunOptions(timeout=120)) as vm:
        assert not vm.panicked, vm.serial
        tlb = vm.hmp("info tlb")
        registers = vm.hmp("info registers")
        report, serial = vm.report, vm.serial
        vm.dump(work / "dump.elf", "elf")
        vm.dump(work / "dump.raw", "raw")
        # The oracle for kmtool's own dump writing: QEMU writes the same ELF core to a file itself.
        vm.qmp.command("dump-guest-memory", paging=False, protocol=f"file:{work / 'dump.qemu.elf'}")
    assert isinstance(report, dict), serial
    yield {"work": work, "tlb": tlb, "report": report, "serial": serial,
           "kernel": build / "kernel.elf", "registers": registers}  # fmt: skip
    for dump in work.glob("dump.*"):  # 2 x guest RAM: do not leave them in pytest's kept tmp dirs
        dump.unlink()


@pytest.mark.qemu
def test_page_table_leaves_equal_info_tlb(held: dict[str, object]) -> None:
    ins = inspect_dump(held["work"] / "dump.elf", Options(keep_leaves=True))  # type: ignore[operator]
    qemu = parse_tlb(held["tlb"])  # type: ignore[arg-type]
    mine = kmtool_tlb(ins)
    assert qemu, "info tlb printed nothing"
    assert mine - qemu == set() and qemu - mine == set()


@pytest.mark.qemu
@pytest.mark.parametrize("name", ["dump.elf", "dump.raw"])
def test_counts_equal_the_ready_report(held: dict[str, object], name: str) -> None:
    report: dict = held["report"]  # type: ignore[assignment]
    ins = inspect_dump(held["work"] / name, Options(kernel=held["kernel"]))  # type: ignore[arg-type,operator]
    assert ins.failed == [], [c.to_json() for c in ins.failed]
    doc = ins.to_json()
    frames, heap = doc["frames"], doc["heap"]
    assert frames["free_frames"] == report["free_frames"]
    assert frames["spans"] == report["spans"]
    assert frames["span_list"][:64] == report["span_list"]
    assert frames["span_hash"] == report["span_hash"]
    assert frames["counters"]["managed_frames"] == report["managed_frames"]
    assert heap["bytes_in_use"] == report["heap_bytes_in_use"]
    assert heap["backed_pages"] == report["heap_backed_pages"]
    assert heap["used_blocks"] == report["heap_blocks_in_use"]
    assert heap["free_blocks"] == report["heap_free_blocks"]
    assert doc["page_tables"]["stats"]["page_faults"] == report["page_faults"]
    assert doc["page_tables"]["kernel_pml4"] == report["kernel_pml4"]
    assert doc["source"]["core_info"]["address"] == report["core_info"]
    assert doc["source"]["core_info"]["offset_map_page_size"] == report["offset_map_page_size"]
    assert doc["boot_info"]["cmdline"] == report["cmdline"]
    assert doc["source"]["core_info"]["build_id"] == report["build_id"]
    assert doc["source"]["kernel_build_id"][:32] == report["build_id"]  # the ELF's note
    (row,) = [c for c in doc["checks"] if c["name"] == "build id matches the kernel ELF"]
    assert row["ok"], row


def _symbols(elf: Path) -> dict[str, int]:
    """Every symbol of the kernel ELF by name, from `nm` (binutils: not kmtool's ELF reader)."""
    out = subprocess.run(["nm", str(elf)], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in out.splitlines()]
    return {row[2]: int(row[0], 16) for row in rows if len(row) == 3}


@pytest.mark.qemu
def test_descriptor_tables_equal_info_registers_and_the_kernel_symbols(
    held: dict[str, object],
) -> None:
    """IDTR, GDTR and TR as QEMU's monitor prints them; each exception gate's handler is the
    stub `nm` names isr_N; the TSS is the kernel's `tss` and IST1 the top of `ist1_stack`."""
    require("nm")
    ins = inspect_dump(held["work"] / "dump.elf", Options(kernel=held["kernel"]))  # type: ignore[operator,arg-type]
    (d,) = ins.to_json()["descriptors"]
    regs = str(held["registers"])
    for name, table in (("IDT", d["idt"]), ("GDT", d["gdt"])):
        m = re.search(rf"^{name}=\s+([0-9a-f]+) ([0-9a-f]+)", regs, re.M)
        assert m, regs
        assert (int(table["base"], 16), int(table["limit"], 16)) == (int(m[1], 16), int(m[2], 16))
    tr = re.search(r"^TR =([0-9a-f]{4}) ([0-9a-f]+) ([0-9a-f]+)", regs, re.M)
    assert tr and d["tss"] is not None, regs
    assert [int(d["tss"][k], 16) for k in ("selector", "base", "limit")] == [
        int(tr[1], 16), int(tr[2], 16), int(tr[3], 16)]  # fmt: skip
    sym = _symbols(held["kernel"])  # type: ignore[arg-type]
    for g in d["idt"]["gates"]:
        assert g["within_limit"] and g["present"], g
        assert int(g["handler"], 16) == sym[f"isr_{g['vector']}"], g
        assert g["handler_where"].startswith(f"isr_{g['vector']} (kernel/arch/x86_64/isr.S:"), g
    assert int(d["tss"]["base"], 16) == sym["tss"]
    (ist1,) = d["tss"]["ist"]
    assert ist1["used_by"] == [2, 8, 18] and ist1["mapped"] and ist1["region"] == "kernel-image"
    assert int(ist1["top"], 16) == sym["ist1_stack"] + 16384  # IST_STACK_SIZE in gdt.c
    rows = {c["name"]: c["ok"] for c in ins.to_json()["checks"]}
    names = ("IDT covers the exception vectors", "exception gates present", "IST stacks mapped",
             "TR names the GDT's TSS descriptor")  # fmt: skip
    assert [rows[n] for n in names] == [True] * 4


@pytest.mark.qemu
def test_memory_map_equals_what_the_kernel_printed(held: dict[str, object]) -> None:
    rows = [MAP_ROW.match(line) for line in str(held["serial"]).splitlines()]
    printed = [m.groups() for m in rows if m]
    assert printed, "the kernel printed no memory map"
    ins = inspect_dump(held["work"] / "dump.elf", Options())  # type: ignore[operator]
    assert ins.memmap is not None
    decoded = ins.memmap.to_json()["entries"]
    assert len(decoded) == len(printed)
    for i, (row, entry) in enumerate(zip(printed, decoded, strict=True)):
        index, kind, start, end, pages, attribute = row
        assert int(index) == i
        assert KERNEL_TYPE_NAMES.get(kind) == entry["type"], (kind, type_name(entry["type"]))
        assert (int(start, 16), int(end, 16)) == (int(entry["start"], 16), int(entry["end"], 16))
        assert (int(pages), int(attribute, 16)) == (entry["pages"], int(entry["attribute"], 16))


@pytest.mark.qemu
def test_cli_passes_on_both_formats(held: dict[str, object]) -> None:
    for name in ("dump.elf", "dump.raw"):
        done = kmtool("inspect", str(held["work"] / name))  # type: ignore[operator]
        assert done.returncode == 0, done.stdout + done.stderr
        assert re.search(r"^Checks\s+\d+ passed, 0 failed", done.stdout, re.MULTILINE)


@pytest.mark.qemu
def test_elf_dump_equals_qemus_own_file(held: dict[str, object]) -> None:
    work: Path = held["work"]  # type: ignore[assignment]
    ours, theirs = work / "dump.elf", work / "dump.qemu.elf"
    assert ours.stat().st_size == theirs.stat().st_size
    with open(ours, "rb") as a, open(theirs, "rb") as b:
        while chunk := a.read(COMPARE_CHUNK):
            assert chunk == b.read(len(chunk)), (
                f"differs in the chunk from {a.tell() - len(chunk):#x}"
            )
    # Most of a freshly booted 512 MiB guest is zeros, which kmtool leaves as holes.
    assert ours.stat().st_blocks * 512 < ours.stat().st_size // 2


@pytest.mark.qemu
def test_raw_dump_equals_qemus_elf_loads(held: dict[str, object]) -> None:
    from elftools.elf.elffile import ELFFile

    work: Path = held["work"]  # type: ignore[assignment]
    with open(work / "dump.qemu.elf", "rb") as elf_file, open(work / "dump.raw", "rb") as raw:
        loads = [s for s in ELFFile(elf_file).iter_segments() if s["p_type"] == "PT_LOAD"]
        assert sum(s["p_filesz"] for s in loads) == DEFAULT_MEMORY  # the held VM's RAM
        for seg in loads:
            for at in range(0, seg["p_filesz"], COMPARE_CHUNK):
                n = min(COMPARE_CHUNK, seg["p_filesz"] - at)
                elf_file.seek(seg["p_offset"] + at)
                raw.seek(seg["p_paddr"] + at)
                assert elf_file.read(n) == raw.read(n), f"phys {seg['p_paddr'] + at:#x}"


@pytest.mark.qemu
def test_mutated_real_dump(held: dict[str, object]) -> None:
    """Overwrite fields of the real structures in a copy of the raw dump: a result or a DumpError,
    with sane numbers; and a change to a span node's links or counts, or to the allocator's own
    counters, is always noticed (a DumpError or a failing check), never decoded as healthy."""
    work: Path = held["work"]  # type: ignore[assignment]
    ins = inspect_dump(work / "dump.raw", Options())
    assert ins.core is not None and ins.frames is not None and ins.tables is not None
    ram_frames = ins.source.memory.ram_bytes // PAGE_SIZE
    state = ins.core.frame_state_phys
    watched = {state + field_offset(FrameAllocator, f) for f in ("head", "free_frames", "spans")}
    watched |= {int(a) + field_offset(FrameSpan, f) for a in ins.frames.addresses[:4]
                for f in ("magic", "start", "count", "next", "prev")}  # fmt: skip
    targets = [ins.core.address + 8 * k for k in range(16)]
    targets += [state + 8 * k for k in range(FrameAllocator.sizeof() // 8)]
    targets += [ins.core.heap_state_phys + 8 * k for k in range(8)]
    targets += [int(a) + 8 * k for a in ins.frames.addresses[:4]
                for k in range(FrameSpan.sizeof() // 8)]  # fmt: skip
    targets += [ins.tables.root + 8 * k for k in (0, 510, 511)]
    values = [0, (1 << 64) - 1, ins.core.address, ins.tables.root | 3, 1 << 40, 0x1000, 1 << 60]
    path = work / "dump.raw"
    noticed_all = 0
    with open(path, "r+b") as f:
        for i, at in enumerate(targets):
            value = values[i % len(values)]
            f.seek(at)  # the raw dump's file offset is the physical address
            original = f.read(8)
            if int.from_bytes(original, "little") == value:
                continue
            f.seek(at)
            f.write(value.to_bytes(8, "little"))
            f.flush()
            try:
                mutated = inspect_dump(path, Options())
                mutated.to_json()
                fl = mutated.frames
                if fl is not None and len(fl.nodes):
                    assert int(fl.counts.max()) <= ram_frames, f"{hex(at)} = {hex(value)}"
                    assert (fl.ends >= fl.starts).all()
                if at in watched:
                    assert mutated.failed, f"{hex(at)} = {hex(value)} passed every check"
                    noticed_all += 1
            except KmtoolError as err:
                assert "\n" not in str(err)
                noticed_all += at in watched
            finally:
                f.seek(at)
                f.write(original)
                f.flush()
    assert noticed_all >= len(watched) - 3  # (a few may already hold the value written)


# -- OVMF alone: a foreign dump -------------------------------------------------------------------


@pytest.mark.qemu
def test_firmware_page_tables_equal_info_tlb(tmp_path: Path) -> None:
    require(
        "qemu-system-x86_64", "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"
    )
    from kmtool.qemu.cmdline import MachineSpec, build_argv
    from kmtool.qemu.qmp import Monitor

    empty = tmp_path / "esp"
    empty.mkdir()
    vars_copy = tmp_path / "vars.fd"
    shutil.copy("/usr/share/OVMF/OVMF_VARS_4M.fd", vars_copy)
    sock = Path(tempfile.mkdtemp(prefix="kmq")) / "qmp.sock"  # short: unix socket paths are limited
    spec = MachineSpec(image=empty, firmware_code=Path("/usr/share/OVMF/OVMF_CODE_4M.fd"),
                       firmware_vars=vars_copy, debugcon_log=tmp_path / "debugcon.log",
                       memory=256 << 20, cpu="max,phys-bits=36", qmp_socket=sock)  # fmt: skip
    qemu = subprocess.Popen(build_argv(spec), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    try:
        with Monitor(sock) as monitor:
            # OVMF starts in 16- and 32-bit code (SEC, PEI) and enters long mode for DXE; how long
            # that takes depends on the host's load, so stop it only once the CPU runs 64-bit code.
            deadline = time.monotonic() + 60
            while True:
                time.sleep(0.5)
                monitor.command("stop")
                if " CS64 " in monitor.hmp("info registers"):
                    break
                assert time.monotonic() < deadline, "OVMF did not reach long mode within 60 s"
                monitor.command("cont")
            tlb = monitor.hmp("info tlb")
            monitor.command("dump-guest-memory", paging=False, protocol=f"file:{tmp_path}/ovmf.elf")
            monitor.command("quit")
        qemu.wait(30)
    finally:
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()
        shutil.rmtree(sock.parent, ignore_errors=True)
    ins = inspect_dump(tmp_path / "ovmf.elf", Options(keep_leaves=True))
    (tmp_path / "ovmf.elf").unlink()
    assert ins.core is None  # foreign: page tables only, no region names, no kernel checks
    # The CPU's own tables are architectural, so their checks apply to any dump: OVMF's IDT is
    # whole, and it never loaded a TSS.
    assert [(c.name, c.ok) for c in ins.checks] == [("page tables walked", True)] + [
        (name, True) for name in ("IDT covers the exception vectors", "exception gates present",
                                  "IST stacks mapped", "TR names the GDT's TSS descriptor")
    ]  # fmt: skip
    assert ins.checks[-1].detail.startswith("not applicable: TR is the null selector")
    assert not ins.tables.ranges_in("user-space")  # type: ignore[union-attr]
    qemu_entries = parse_tlb(tlb)
    mine = kmtool_tlb(ins)
    assert len(qemu_entries) > 1000
    assert mine - qemu_entries == set() and qemu_entries - mine == set()
