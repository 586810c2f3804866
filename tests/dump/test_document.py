"""The `kmtool inspect --json` document against its declaration (kmtool.dump.document).

Real documents, from the dump fixtures in every state the inspection knows (ours, with `--kernel`,
`--walk` and `--pa`; a raw image with its layout file; a foreign dump; an unreadable core-info block;
an early panic; broken page tables), must have exactly the declared keys at every level, in the
declared order, with values of the declared types; and over all of them every declared key must
have been seen with a value, so no part of the declaration goes unchecked. The declarations that
mirror a kernel structure must list every field of its schema.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints, is_typeddict
from unittest import mock

import dump_fixtures as F
import pytest

from kmtool.dump import document, heap
from kmtool.dump.inspection import Options, inspect_dump
from kmtool.dump.records import field_offset
from kmtool.schemas.bootinfo import BootInfo
from kmtool.schemas.coreinfo import CoreInfo
from kmtool.schemas.frames import FrameAllocator, FrameSpan
from kmtool.schemas.heap import Heap
from kmtool.schemas.pagestats import PageStats

MAPPED_VA = 0xFFFFFF0000100010  # kernel image
UNMAPPED_VA = 0x1234000
OUTSIDE_VA = (
    0xFFFFFF8000001000  # offset map: through PML4 entry 511, pointed outside the dump below
)
ALIASED_PA = 0x100000
UNMAPPED_PA = 0x7000000


def _copy(fx: F.Fixture) -> F.Fixture:
    return F.Fixture(bytearray(fx.image), fx.cr3, fx.truth, dict(fx.addresses))


def _page_fault_record(fx: F.Fixture) -> bytes:
    """A fault record of a #PF on an unmapped kernel-vspace address, as the kernel writes one."""
    from kmtool.schemas.fault import (
        FAULT_KIND_EXCEPTION,
        FAULT_MAX_FRAMES,
        FAULT_MESSAGE_BYTES,
        GENERAL_REGISTERS,
        FaultRecord,
    )

    rip = F.KERNEL_LINK_BASE + 0x40
    fields: dict[str, Any] = {name: 0 for name in GENERAL_REGISTERS}
    fields.update(seq=1, kind=FAULT_KIND_EXCEPTION, frame_count=1, vector=14, error_code=2,
                  cr2=F.KERNEL_VSPACE_BASE + 8 * F.MiB, cr3=fx.addresses["kernel_pml4"], rip=rip,
                  rsp=F.DATA_VA + 0xF00, rflags=0x86, cs=8, ss=0x10, rbp=F.DATA_VA + 0xF00,
                  message=b"page fault".ljust(FAULT_MESSAGE_BYTES, b"\0"),
                  frames=[rip + 0x10] + [0] * (FAULT_MAX_FRAMES - 1))  # fmt: skip
    return FaultRecord.build(fields)


def _documents(tmp: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    fx = F.build()
    fx.write_kernel_elf(tmp / "kernel.elf")
    asked = Options(walk=[MAPPED_VA, UNMAPPED_VA, OUTSIDE_VA], pa=[ALIASED_PA, UNMAPPED_PA])
    kernel = Options(kernel=tmp / "kernel.elf", walk=asked.walk, pa=asked.pa)
    yield "ELF core, --kernel --walk --pa", _doc(fx.write_elf(tmp / "dump.elf"), kernel)
    yield "raw image with layout file", _doc(fx.write_raw(tmp / "l.raw", layout=True), Options())
    yield "raw image, --base", _doc(fx.write_raw(tmp / "b.raw"), Options(base=0))
    yield "2 MiB offset map", _doc(F.build(offset_page=2 * F.MiB).write_elf(tmp / "2m.elf"), asked)
    process = F.build(cr3="process")  # an address space listed; and a page fault recorded
    process.put(process.addresses["fault"], _page_fault_record(process))
    process.poke(
        process.cr3 + 5 * 8, 0x7F000000000 | 7
    )  # a user PDPT outside the dump: a walk error
    yield "process, fault", _doc(process.write_elf(tmp / "p.elf"), kernel)
    foreign = F.Fixture(bytearray(fx.image), fx.cr3)
    foreign.poke(fx.addresses["core"], 0)
    yield "foreign", _doc(foreign.write_raw(tmp / "f.raw"), Options(cr3=fx.cr3, walk=asked.walk))
    other = _copy(fx)
    other.poke(other.field_pa("core", "version"), 0x1000099)
    yield "unreadable core info", _doc(other.write_elf(tmp / "v.elf"), asked)
    early = _copy(fx)
    early.poke(early.field_pa("core", "kernel_pml4_phys"), 0)
    early.poke(early.field_pa("core", "ready_tsc"), 0)
    yield "early panic", _doc(early.write_elf(tmp / "e.elf"), asked)
    broken = _copy(fx)
    broken.poke(fx.addresses["kernel_pml4"] + 511 * 8, 0x7F000000 | 3)  # a PDPT outside the dump
    broken.poke(fx.addresses["kernel_pml4"] + 5 * 8, fx.addresses["kernel_pml4"] | 3)  # recursive
    yield "broken page tables", _doc(broken.write_elf(tmp / "t.elf"), asked)
    cut = _copy(fx)  # the free list's second node links outside the dump: a partial frames part
    cut.poke(fx.truth["spans"][1][0] + field_offset(FrameSpan, "next"), 1 << 40)
    cut.poke(cut.field_pa("boot", "memory_map_size"), 1 << 40)  # and a partial memory map
    yield "partial free list and memory map", _doc(cut.write_elf(tmp / "c.elf"), asked)
    with mock.patch.object(heap, "MAX_BLOCKS", 10):  # the fixture's small heap passes the bound
        yield "partial heap", _doc(fx.write_elf(tmp / "h.elf"), asked)
    wild = {"idt": {"base": F.KERNEL_VSPACE_BASE + 8 * F.MiB}, "gdt": {"base": 1 << 60},
            "tr": {"limit": 0x10}}  # fmt: skip
    yield "unreadable descriptor tables", _doc(fx.write_elf(tmp / "d.elf", tables=wild), asked)


def _doc(path: Path, options: Options) -> dict[str, Any]:
    doc = inspect_dump(path, options).to_json()
    assert json.loads(json.dumps(doc)) == doc  # nothing JSON would change (no tuples, no NaN)
    return dict(doc)


def _problems(value: Any, hint: Any, where: str, seen: set[tuple[str, str]]) -> list[str]:
    """How `value` differs from the declared type `hint`; records (TypedDict, key) pairs that held
    a value (not null) in `seen`."""
    if is_typeddict(hint):
        return _typeddict_problems(value, hint, where, seen)
    origin, args = get_origin(hint), get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return [] if type(None) in args else [f"{where}: null, declared {hint}"]
        arms = [a for a in args if a is not type(None)]
        tries = [_problems(value, arm, where, seen) for arm in arms]
        return min(tries, key=len)
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: {type(value).__name__}, declared {hint}"]
        return [
            p for i, v in enumerate(value) for p in _problems(v, args[0], f"{where}[{i}]", seen)
        ]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__}, declared {hint}"]
        out = [f"{where}: key {k!r} is not a str" for k in value if not isinstance(k, str)]
        return out + [
            p for k, v in value.items() for p in _problems(v, args[1], f"{where}[{k!r}]", seen)
        ]
    if hint is int and isinstance(value, bool):
        return [f"{where}: bool, declared int"]
    return [] if isinstance(value, hint) else [f"{where}: {type(value).__name__}, declared {hint}"]


def _typeddict_problems(value: Any, hint: Any, where: str, seen: set[tuple[str, str]]) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: {type(value).__name__}, declared {hint.__name__}"]
    hints = get_type_hints(hint)
    declared = list(hints)
    missing = sorted(hint.__required_keys__ - set(value))
    extra = sorted(set(value) - set(declared))
    out = [f"{where}: no key {k!r} ({hint.__name__} requires it)" for k in missing]
    out += [f"{where}: key {k!r} is not declared in {hint.__name__}" for k in extra]
    if not out and list(value) != [k for k in declared if k in value]:
        out.append(f"{where}: keys in the order {list(value)}, declared {declared}")
    for key in [k for k in declared if k in value]:
        if value[key] is not None:
            seen.add((hint.__name__, key))
        out += _problems(value[key], hints[key], f"{where}.{key}", seen)
    return out


def _declared(hint: Any, out: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Every (TypedDict, key) pair reachable from `hint`."""
    if is_typeddict(hint):
        for key, sub in get_type_hints(hint).items():
            if (hint.__name__, key) not in out:
                out.add((hint.__name__, key))
                _declared(sub, out)
    for arg in get_args(hint):
        _declared(arg, out)
    return out


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, dict[str, Any]]]:
    return list(_documents(tmp_path_factory.mktemp("document")))


def test_every_document_has_exactly_the_declared_keys(
    documents: list[tuple[str, dict[str, Any]]],
) -> None:
    seen: set[tuple[str, str]] = set()
    for name, doc in documents:
        problems = _problems(doc, document.InspectionDoc, "doc", seen)
        assert problems == [], f"{name}: " + "\n".join(problems)
    unseen = _declared(document.InspectionDoc, set()) - seen
    assert unseen == set(), "declared, but never seen with a value: " + repr(sorted(unseen))


def test_a_stray_or_missing_key_is_found(documents: list[tuple[str, dict[str, Any]]]) -> None:
    doc = json.loads(json.dumps(documents[0][1]))
    doc["frames"]["counters"]["stack_top"] = "0x0"
    del doc["page_tables"]["walks"][0]["steps"][1]["flags"]
    doc["heap"]["by_order"][0]["used"] = True
    assert _problems(doc, document.InspectionDoc, "doc", set()) == [
        "doc.page_tables.walks[0].steps[1]: no key 'flags' (WalkStepDoc requires it)",
        "doc.frames.counters: key 'stack_top' is not declared in FrameCountersDoc",
        "doc.heap.by_order[0].used: bool, declared int",
    ]


def _fields(schema: Any) -> list[str]:
    return [sc.name for sc in schema.subcons if sc.name and not sc.name.startswith("_")]


@pytest.mark.parametrize(
    ("declared", "fields"),
    [
        (
            document.BootInfoDoc,
            ["address"]
            + [f for f in _fields(BootInfo) if not f.startswith("reserved")]
            + ["cmdline_truncated"],
        ),
        (document.CoreInfoDoc, ["address", "found_by", *_fields(CoreInfo)]),
        (document.FrameCountersDoc, _fields(FrameAllocator)),
        (
            document.HeapCountersDoc,
            [f for f in _fields(Heap) if f not in ("free_heads", "untouched")],
        ),
        (document.PageStatsDoc, _fields(PageStats)),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_struct_mirrors_list_every_schema_field(declared: Any, fields: list[str]) -> None:
    assert list(get_type_hints(declared)) == fields
