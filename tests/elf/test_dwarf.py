"""kmtool.elf.dwarf on the real built kernel: every construct schema against the DWARF layout of
the compiled C struct of the same name (a second oracle for the schema/C agreement, beside the
generated _Static_asserts), and every global's address and size against readelf's symbol table."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import construct
import pytest
from conftest import require

from kmtool.build.driver import BuildPaths
from kmtool.dump.records import field_offset
from kmtool.elf.dwarf import DwarfTypes, Record, read_dwarf, type_size
from kmtool.errors import KernelElfError
from kmtool.layout.cgen import STRUCTS


@pytest.fixture(scope="module")
def dwarf(fresh_build: BuildPaths) -> DwarfTypes:
    return read_dwarf(fresh_build.kernel)


def _fields(schema: construct.Struct) -> list[tuple[str, int, int]]:
    return [(sc.name, field_offset(schema, sc.name), sc.sizeof()) for sc in schema.subcons]


@pytest.mark.parametrize("c_name, schema", STRUCTS, ids=[name for name, _ in STRUCTS])
def test_schema_equals_the_compiled_struct(
    dwarf: DwarfTypes, c_name: str, schema: construct.Struct
) -> None:
    record = dwarf.records.get(c_name)
    assert isinstance(record, Record), f"struct {c_name} is not in the kernel's DWARF"
    compiled = [(m.name, m.offset, type_size(m.type)) for m in record.members]
    assert compiled == _fields(schema)
    assert record.size == schema.sizeof()


def test_globals_are_where_the_symbol_table_says(
    fresh_build: BuildPaths, dwarf: DwarfTypes
) -> None:
    require("readelf")
    out = subprocess.run(["readelf", "-sW", str(fresh_build.kernel)], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    objects = {}
    for value, size, name in re.findall(
        r"^\s*\d+: ([0-9a-f]{16})\s+(\d+) OBJECT\s+\w+\s+\w+\s+\d+ (\S+)$", out, re.M
    ):  # noqa: E501
        objects[name] = (int(value, 16), int(size))
    assert len(dwarf.variables) >= 20
    for name, var in dwarf.variables.items():
        assert name in objects, f"{name} is not an OBJECT symbol"
        assert (var.address, type_size(var.type)) == objects[name], name


def test_a_kernel_without_dwarf_is_one_sentence(fresh_build: BuildPaths, tmp_path: Path) -> None:
    require("objcopy")
    stripped = tmp_path / "stripped.elf"
    subprocess.run(["objcopy", "--strip-debug", str(fresh_build.kernel), str(stripped)], check=True)
    with pytest.raises(KernelElfError, match=r"has no DWARF debug info \(built without -g\?\)\.$"):
        read_dwarf(stripped)
