"""The descriptor tables of a dump (kmtool.dump.descriptors and its checks): the schemas byte by
byte, the synthetic dump's IDT, GDT and TSS decoded against what tests/dump/descriptor_fixtures.py
built, each broken table named by its check, and hostile IDTR/GDTR/TR values as sentences."""

from __future__ import annotations

import time
from pathlib import Path
from random import Random
from typing import Any

import descriptor_fixtures as D
import dump_fixtures as F
import pytest

from kmtool.dump.inspection import Inspection, Options, inspect_dump
from kmtool.dump.render_descriptors import headline
from kmtool.layout.table import KERNEL_LINK_BASE
from kmtool.schemas.descriptors import IdtGate, SegmentDescriptor, SystemDescriptor, Tss

CHECKS = ("IDT covers the exception vectors", "exception gates present", "IST stacks mapped",
          "TR names the GDT's TSS descriptor")  # fmt: skip


@pytest.fixture(scope="module")
def fx() -> F.Fixture:
    return F.build()


def inspect(fx: F.Fixture, path: Path, tables: dict[str, Any] | None = None) -> Inspection:
    return inspect_dump(fx.write_elf(path, tables=tables), Options())


def rows(ins: Inspection) -> dict[str, tuple[bool, str]]:
    return {c.name: (c.ok, c.detail) for c in ins.checks if c.name in CHECKS}


def pa_of(va: int) -> int:
    return F.KERNEL_PHYS + (va - KERNEL_LINK_BASE)


# -- schemas ---------------------------------------------------------------------------------------


def test_gate_schema_golden_bytes() -> None:
    built = IdtGate.build({"offset_low": 0x5678, "selector": 0x08, "ist": 1, "type_attr": 0x8E,
                           "offset_mid": 0x1234, "offset_high": 0xFFFFFF00, "reserved": 0})  # fmt: skip
    assert built == bytes.fromhex(
        "7856"  # offset_low 0x5678
        "0800"  # selector 0x08
        "01"  # ist 1
        "8e"  # present, DPL 0, interrupt gate
        "3412"  # offset_mid 0x1234
        "00ffffff"  # offset_high 0xffffff00
        "00000000"  # reserved
    )
    assert IdtGate.parse(built).offset_high == 0xFFFFFF00


def test_descriptor_and_tss_sizes_and_offsets() -> None:
    assert (IdtGate.sizeof(), SegmentDescriptor.sizeof(), SystemDescriptor.sizeof()) == (16, 8, 16)
    assert Tss.sizeof() == 104
    tss = D.tss(0x1122334455667788)
    assert tss[0x24:0x2C] == (0x1122334455667788).to_bytes(8, "little")  # IST1 at +0x24
    assert tss[0x66:0x68] == (104).to_bytes(2, "little")  # iomap_base
    # The kernel's first GDT words parse as the descriptors they are.
    code = SegmentDescriptor.parse(D.SEGMENTS[1].to_bytes(8, "little"))
    assert (code.access, code.limit_high_flags) == (0x9A, 0xAF)


def test_the_generated_tss_is_packed_and_the_kernel_uses_the_generated_structs() -> None:
    from conftest import REPO

    header = (REPO / "include/km/structs.h").read_text()
    assert "struct __attribute__((packed)) km_tss {" in header
    assert "struct km_idt_gate {" in header  # naturally aligned: not packed
    for source in ("kernel/arch/x86_64/idt.c", "kernel/arch/x86_64/gdt.c"):
        text = (REPO / source).read_text()
        assert (
            "struct km_" in text and "struct idt_gate {" not in text and "struct tss {" not in text
        )


# -- a healthy dump --------------------------------------------------------------------------------


def test_healthy_tables_decode_as_built_and_pass(fx: F.Fixture, tmp_path: Path) -> None:
    ins = inspect(fx, tmp_path / "ok.elf")
    (d,) = ins.to_json()["descriptors"]
    idt = d["idt"]
    assert (idt["base"], idt["limit"], idt["gates_fit"]) == (hex(F.IDT_VA), "0xfff", 256)
    assert len(idt["gates"]) == 32 and idt["error"] is None
    for g in idt["gates"]:
        assert g["within_limit"] and g["present"] and g["type"] == "interrupt gate"
        assert g["handler"] == hex(D.handler(KERNEL_LINK_BASE, g["vector"]))
        assert g["ist"] == (1 if g["vector"] in D.IST1_VECTORS else 0)
    assert [r["kind"] for r in d["gdt"]["descriptors"]] == [
        "null", "64-bit code", "data", "data", "64-bit code", "64-bit TSS (busy)",
    ]  # fmt: skip
    assert d["gdt"]["descriptors"][5]["base"] == hex(F.TSS_VA)
    tss = d["tss"]
    assert tss is not None and tss["error"] is None
    assert tss["ist"] == [{"index": 1, "top": hex(F.IST1_TOP), "mapped": True,
                           "region": "kernel-image", "used_by": [2, 8, 18]}]  # fmt: skip
    assert all(ok for ok, _ in rows(ins).values()) and len(rows(ins)) == 4


# -- broken tables ---------------------------------------------------------------------------------


def test_idt_limit_zero_fails_naming_the_limit(fx: F.Fixture, tmp_path: Path) -> None:
    ins = inspect(fx, tmp_path / "idt0.elf", {"idt": {"limit": 0}})
    r = rows(ins)
    assert r["IDT covers the exception vectors"] == (False, (
        f"CPU 0: the IDT at {hex(F.IDT_VA)} has limit 0x0, room for 0 gates: vectors 0-31 are "
        "beyond it (the exceptions need limit 0x1ff)"))  # fmt: skip
    assert r["exception gates present"] == (False, "CPU 0: vectors 0-31 beyond the IDT limit 0x0")
    assert r["IST stacks mapped"][0]  # IST1 is still set and mapped; no gate in the limit uses it
    (d,) = ins.to_json()["descriptors"]
    assert all(g["present"] and not g["within_limit"] for g in d["idt"]["gates"])
    assert headline(d) == ("IDT limit 0x0: vectors 0-31 beyond the IDT limit; their gates in "
                           "memory are present, so the limit is wrong, not the table")  # fmt: skip


def test_a_limit_that_covers_two_gates(fx: F.Fixture, tmp_path: Path) -> None:
    ins = inspect(fx, tmp_path / "idt2.elf", {"idt": {"limit": 0x1F}})
    assert rows(ins)["exception gates present"] == (
        False, "CPU 0: vectors 2-31 beyond the IDT limit 0x1f")  # fmt: skip
    # a limit one byte short of a gate leaves that gate out
    ins = inspect(fx, tmp_path / "idt3.elf", {"idt": {"limit": 0x1FE}})
    assert rows(ins)["exception gates present"] == (
        False, "CPU 0: vector 31 beyond the IDT limit 0x1fe")  # fmt: skip


def test_a_gate_not_present_and_one_of_the_wrong_type(fx: F.Fixture, tmp_path: Path) -> None:
    broken = F.Fixture(bytearray(fx.image), fx.cr3, fx.truth, dict(fx.addresses))
    broken.put(pa_of(F.IDT_VA + 14 * 16), D.gate(0xFFFFFF0000100200, type_attr=0x0E))
    broken.put(pa_of(F.IDT_VA + 3 * 16), D.gate(0xFFFFFF0000100130, type_attr=0x8C))
    ok, detail = rows(inspect(broken, tmp_path / "np.elf"))["exception gates present"]
    assert not ok
    assert detail == ("CPU 0: vector 3 type 0xc, not a 64-bit interrupt or trap gate; "
                      "CPU 0: vector 14 not present")  # fmt: skip


def test_ist_stack_unmapped_or_unset(fx: F.Fixture, tmp_path: Path) -> None:
    broken = F.Fixture(bytearray(fx.image), fx.cr3, fx.truth, dict(fx.addresses))
    hole = F.KERNEL_VSPACE_BASE + 8 * F.MiB  # no mapping there
    broken.put(pa_of(F.TSS_VA), D.tss(hole))
    ok, detail = rows(inspect(broken, tmp_path / "ist.elf"))["IST stacks mapped"]
    assert not ok and detail == (
        f"CPU 0 IST1 (top {hex(hole)}) is not mapped below its top, for vectors 2, 8, 18"
    )
    broken.put(pa_of(F.TSS_VA), D.tss(0))
    ok, detail = rows(inspect(broken, tmp_path / "ist0.elf"))["IST stacks mapped"]
    assert not ok and detail == "CPU 0 IST1 (top 0x0) is 0, for vectors 2, 8, 18"


def test_an_unmapped_ist_only_a_confidential_guest_takes(fx: F.Fixture, tmp_path: Path) -> None:
    # Linux sets an IST for #VC (29) but maps its stack only in an SEV-ES guest: not a failure
    # while #VC alone selects it, a failure as soon as an exception any CPU raises does too.
    broken = F.Fixture(bytearray(fx.image), fx.cr3, fx.truth, dict(fx.addresses))
    hole = F.KERNEL_VSPACE_BASE + 8 * F.MiB  # no mapping there
    broken.put(pa_of(F.TSS_VA), D.tss(F.IST1_TOP, hole))
    broken.put(pa_of(F.IDT_VA + 29 * 16), D.gate(0xFFFFFF0000100200, ist=2))
    ok, detail = rows(inspect(broken, tmp_path / "vc.elf"))["IST stacks mapped"]
    assert ok and detail.endswith(
        "IST2 not mapped, only #VC (29) selects it, raised only in an SEV-ES guest"
    )
    broken.put(pa_of(F.IDT_VA + 6 * 16), D.gate(0xFFFFFF0000100200, ist=2))
    ok, detail = rows(inspect(broken, tmp_path / "vc-ud.elf"))["IST stacks mapped"]
    assert not ok and detail == (
        f"CPU 0 IST2 (top {hex(hole)}) is not mapped below its top, for vectors 6, 29"
    )


def test_tr_that_names_another_descriptor(fx: F.Fixture, tmp_path: Path) -> None:
    ok, detail = rows(inspect(fx, tmp_path / "tr.elf", {"tr": {"selector": 0x10}}))[
        "TR names the GDT's TSS descriptor"
    ]
    assert (
        not ok
        and detail.startswith("CPU 0: TR 0x10 (base ")
        and "names a data descriptor" in detail
    )


def test_a_null_tr_with_gates_that_select_an_ist(fx: F.Fixture, tmp_path: Path) -> None:
    r = rows(
        inspect(fx, tmp_path / "null.elf", {"tr": {"selector": 0, "base": 0, "limit": 0xFFFF}})
    )
    ok, detail = r["TR names the GDT's TSS descriptor"]
    assert ok and detail.startswith("not applicable: TR is the null selector")
    assert r["IST stacks mapped"] == (False, "CPU 0: exception gates select IST1, but TR is the "
        "null selector: no TSS is loaded (firmware runs so, all in ring 0, no IST).")  # fmt: skip


# -- hostile registers -----------------------------------------------------------------------------


def test_hostile_registers_are_sentences(fx: F.Fixture, tmp_path: Path) -> None:
    ins = inspect(fx, tmp_path / "h.elf", {
        "idt": {"base": 0x0000_8000_0000_0000, "limit": 0xFFFF_FFFF},  # non-canonical, 32-bit limit
        "gdt": {"base": F.KERNEL_VSPACE_BASE + 8 * F.MiB, "limit": 0xFFFF},  # unmapped
        "tr": {"base": 0xFFFF_FFFF_FFFF_FFF0, "limit": 0x67},  # the TSS runs off the top
    })  # fmt: skip
    (d,) = ins.to_json()["descriptors"]
    assert d["idt"]["error"] == (
        "The IDT limit 0xffffffff is wider than the register's 16 bits; the table was read up to "
        "0xffff. The IDT base 0x800000000000 is not canonical, so nothing of it can be read."
    )
    assert d["idt"]["limit"] == "0xffff" and not any(g["readable"] for g in d["idt"]["gates"])
    assert d["gdt"]["error"] == (
        f"The GDT at {hex(F.KERNEL_VSPACE_BASE + 8 * F.MiB)}: the page of "
        f"{hex(F.KERNEL_VSPACE_BASE + 8 * F.MiB)} is not mapped under CR3."
    )
    assert d["gdt"]["entries"] == 8192 and d["gdt"]["descriptors"] == []
    assert d["tss"] is not None and d["tss"]["error"] is not None
    r = rows(ins)
    assert not r["exception gates present"][0] and not r["TR names the GDT's TSS descriptor"][0]
    out = draw(ins, "descriptors")
    assert "read up to 0xffff. The IDT base 0x800000000000 is not canonical" in out
    assert "is not mapped under CR3." in out and "unreadable" in out
    assert "Descriptors  IDT at 0x800000000000: The IDT limit" in draw(ins, "summary")


def draw(ins: Inspection, part: str) -> str:
    """One part as `kmtool inspect --part PART` prints it, unwrapped onto one line per row."""
    from rich.console import Console

    from kmtool.dump import render

    console = Console(width=200, no_color=True, record=True)
    console.print(render.RENDERERS[part](ins.to_json()))
    return console.export_text()


def test_random_registers_never_raise_and_stay_bounded(fx: F.Fixture, tmp_path: Path) -> None:
    rng = Random(10)
    path = tmp_path / "r.elf"
    worst = 0.0
    for _ in range(12):
        tables = {name: {"base": rng.getrandbits(64) if rng.random() < 0.5
                         else F.DATA_VA + rng.randrange(0, 0x8000),
                         "limit": rng.choice([0, 7, 0x67, 0xFFF, 0xFFFF, rng.getrandbits(32)])}
                  for name in ("idt", "gdt", "tr")}  # fmt: skip
        tables["tr"]["selector"] = rng.getrandbits(16)
        start = time.perf_counter()
        ins = inspect(fx, path, tables)
        worst = max(worst, time.perf_counter() - start)
        assert len(ins.to_json()["descriptors"]) == 1 and len(rows(ins)) == 4
    assert worst < 5.0  # a whole inspect of the 12 MiB fixture, with 4096 gates' worth of limit
