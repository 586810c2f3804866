"""Generated headers: fresh, valid C for both the kernel and the loader, and fed by the one table.

The last test is the issue's "done when": one number changed in kmtool/layout/table.py reaches the
generated C header, the linker-script fragment and `kmtool layout report`, with nothing else edited.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, require

from kmtool.layout import cgen, table
from kmtool.schemas import bootinfo, coreinfo, paging

TARGETS = ["x86_64-unknown-none-elf", "x86_64-unknown-windows"]  # kernel/ and efi/


def _compile(
    source: Path, include: Path, *warnings: str, target: str = TARGETS[0]
) -> subprocess.CompletedProcess[str]:
    """Compile `source` freestanding with -Werror against the headers under `include`."""
    argv = ["clang", f"--target={target}", "-ffreestanding", "-std=c11", *warnings, "-Werror"]
    return subprocess.run(
        [*argv, "-I", str(include), "-c", str(source), "-o", str(source.with_suffix(".o"))],
        capture_output=True,
        text=True,
    )


def test_committed_headers_are_fresh() -> None:
    assert cgen.stale(REPO) == [], "run `kmtool layout gen` and commit include/km/"


def test_stale_names_edited_and_missing_files(tmp_path: Path) -> None:
    assert sorted(cgen.write(tmp_path)) == sorted(g.relpath for g in cgen.generate())
    assert cgen.stale(tmp_path) == []
    header = tmp_path / "include/km/layout.h"
    header.write_text(header.read_text().replace("KM_HEAP_BASE 0x", "KM_HEAP_BASE 0x1"))
    (tmp_path / "include/km/layout.ld").unlink()
    assert cgen.stale(tmp_path) == ["include/km/layout.h", "include/km/layout.ld"]


def test_headers_carry_the_banner_and_inputs_hash() -> None:
    digest = cgen.inputs_hash()
    for gen in cgen.generate():
        assert "do not edit" in gen.text.splitlines()[0]
        assert f"inputs-sha256: {digest}" in gen.text


CHECK_C = """\
#include <km/layout.h>
#include <km/structs.h>

struct region { unsigned long long start, end; const char *name; };
static const struct region regions[] = { KM_REGION_TABLE_INIT };
_Static_assert(sizeof regions / sizeof regions[0] == KM_REGION_COUNT, "region count");
_Static_assert(KM_REGION_KERNEL_HEAP_START == KM_HEAP_BASE, "heap start");
_Static_assert(KM_REGION_OFFSET_MAP_START == KM_OFFSET_MAP_BASE, "offset map start");
_Static_assert(((KM_OFFSET_MAP_BASE >> 39) & 511) == KM_SHARED_PML4_LAST, "offset map PML4");
_Static_assert(((KM_KERNEL_LINK_BASE >> 39) & 511) == KM_SHARED_PML4_FIRST, "link base PML4");
_Static_assert(KM_HEAP_SIZE == @HEAP_SIZE@ULL, "heap size as in table.py");
_Static_assert(sizeof(struct km_boot_info) == @BOOT_INFO@, "boot info size as in the schema");
_Static_assert(sizeof(struct km_core_info) == @CORE_INFO@, "core info size as in the schema");

const char *region_name(unsigned i) { return i < KM_REGION_COUNT ? regions[i].name : 0; }
"""


@pytest.mark.parametrize("target", TARGETS)
def test_headers_compile_freestanding_with_werror(tmp_path: Path, target: str) -> None:
    require("clang")
    source = tmp_path / "check.c"
    source.write_text(
        CHECK_C.replace("@HEAP_SIZE@", hex(table.HEAP_SIZE))
        .replace("@BOOT_INFO@", str(bootinfo.BootInfo.sizeof()))
        .replace("@CORE_INFO@", str(coreinfo.CoreInfo.sizeof()))
    )
    result = _compile(source, REPO / "include", "-Wall", "-Wextra", "-pedantic", target=target)
    assert result.returncode == 0, result.stderr


def test_a_false_assertion_about_the_header_fails_the_compile(tmp_path: Path) -> None:
    # The compile test above can fail: a _Static_assert that does not hold stops clang.
    require("clang")
    source = tmp_path / "bad.c"
    source.write_text('#include <km/layout.h>\n_Static_assert(KM_HEAP_BASE == 0, "x");\n')
    result = _compile(source, REPO / "include")
    assert result.returncode != 0 and "static_assert failed" in result.stderr


def test_pte_bits_in_the_header_come_from_the_schema() -> None:
    structs = next(g.text for g in cgen.generate() if g.relpath == "include/km/structs.h")
    assert set(paging.PTE_DOCS) == set(paging.Pte)  # every bit has its meaning written down
    for name, flag in paging.Pte.__members__.items():
        bit = flag.value.bit_length() - 1
        line = f"#define KM_PTE_{name} (1ull << {bit})"
        assert re.search(
            rf"^{re.escape(line)} +/\* {re.escape(paging.PTE_DOCS[flag])} \*/$", structs, re.M
        )
    assert f"#define KM_PTE_ADDR {paging.PTE_ADDR:#018x}ULL " in structs


@pytest.mark.parametrize("target", TARGETS)
def test_pte_bits_compile_to_the_schema_values(tmp_path: Path, target: str) -> None:
    require("clang")
    source = tmp_path / "pte.c"
    asserts = [
        f'_Static_assert(KM_PTE_{name} == {flag.value:#x}ULL, "KM_PTE_{name}");'
        for name, flag in paging.Pte.__members__.items()
    ]
    asserts.append(f'_Static_assert(KM_PTE_ADDR == {paging.PTE_ADDR:#x}ULL, "KM_PTE_ADDR");')
    source.write_text("#include <km/structs.h>\n" + "\n".join(asserts) + "\n")
    result = _compile(source, REPO / "include", "-Wall", "-Wextra", "-pedantic", target=target)
    assert result.returncode == 0, result.stderr


def test_kernel_and_loader_define_no_pte_bits_of_their_own() -> None:
    # The bits are declared once, in kmtool/schemas/paging.py; C reads them from <km/structs.h>.
    sources = [
        p
        for d in ("kernel", "efi")
        for p in (REPO / d).rglob("*")
        if p.suffix in (".c", ".h", ".S")
    ]
    assert sources
    for path in sources:
        found = re.findall(r"^\s*#\s*define\s+(\w*PTE_\w*)", path.read_text(), re.M)
        assert found == [], f"{path.relative_to(REPO)} defines {found}"


def _linked_symbols(tmp_path: Path, include_dir: Path) -> dict[str, int]:
    """Link an empty object with a script that INCLUDEs layout.ld; return the symbols it defines."""
    require("clang", "ld.lld")
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    obj = tmp_path / "empty.o"
    (tmp_path / "empty.c").write_text("int km_empty;\n")
    script = tmp_path / "probe.ld"
    script.write_text(
        "INCLUDE layout.ld\nSECTIONS { . = KM_KERNEL_LINK_BASE; .bss : { *(.bss*) *(COMMON) } }\n"
        "km_probe_image_end = KM_KERNEL_IMAGE_END;\n"
    )
    out = tmp_path / "probe.elf"
    for cmd in (
        [
            "clang",
            "--target=x86_64-unknown-none-elf",
            "-c",
            str(tmp_path / "empty.c"),
            "-o",
            str(obj),
        ],
        [
            "ld.lld",
            "-static",
            "-nostdlib",
            "-L",
            str(include_dir),
            "-T",
            str(script),
            str(obj),
            "-o",
            str(out),
        ],
    ):
        result = subprocess.run(cmd, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    with out.open("rb") as stream:
        symtab = ELFFile(stream).get_section_by_name(".symtab")
        assert isinstance(symtab, SymbolTableSection)
        return {s.name: s["st_value"] for s in symtab.iter_symbols() if s.name}


def test_linker_fragment_defines_the_table_addresses(tmp_path: Path) -> None:
    symbols = _linked_symbols(tmp_path, REPO / "include" / "km")
    assert symbols["KM_KERNEL_LINK_BASE"] == table.KERNEL_LINK_BASE
    assert symbols["km_empty"] == table.KERNEL_LINK_BASE
    assert symbols["km_probe_image_end"] == table.region("kernel-image").end + 1


def _run(args: list[str], pythonpath: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "NO_COLOR": "1", "COLUMNS": "100"}
    return subprocess.run(
        [sys.executable, "-m", "kmtool", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_one_number_in_the_table_reaches_header_linker_script_and_report(tmp_path: Path) -> None:
    # A private copy of the package with one number changed: the heap shrinks to 16 GiB and the
    # kernel moves up to 2 MiB into its region.
    src = tmp_path / "src"
    shutil.copytree(REPO / "kmtool", src / "kmtool", ignore=shutil.ignore_patterns("__pycache__"))
    table_py = src / "kmtool/layout/table.py"
    text = table_py.read_text()
    edited = re.sub(r"(?m)^HEAP_SIZE = 32 \* GiB$", "HEAP_SIZE = 16 * GiB", text)
    edited = re.sub(
        r"(?m)^KERNEL_LINK_BASE = 0xFFFFFF0000100000",
        "KERNEL_LINK_BASE = 0xFFFFFF0000200000",
        edited,
    )
    assert edited.count("16 * GiB") == 1 and "0xFFFFFF0000200000" in edited, (
        "table.py changed shape"
    )
    table_py.write_text(edited)

    root = tmp_path / "root"
    gen = _run(["layout", "gen", "--root", str(root)], src, tmp_path)
    assert gen.returncode == 0, gen.stderr
    assert "wrote include/km/layout.h" in gen.stdout

    header = (root / "include/km/layout.h").read_text()
    assert "#define KM_HEAP_SIZE 0x400000000ULL" in header
    assert "#define KM_REGION_KERNEL_HEAP_END 0xffffff7bffffffffULL" in header
    assert "#define KM_KERNEL_LINK_BASE 0xffffff0000200000ULL" in header
    assert (
        "KM_KERNEL_LINK_BASE = 0xffffff0000200000;" in (root / "include/km/layout.ld").read_text()
    )
    # The repository's own headers are now stale against the edited table, and the copy's are fresh.
    assert cgen.stale(REPO) == []
    check = _run(["layout", "gen", "--check", "--root", str(REPO)], src, tmp_path)
    assert check.returncode == 1 and "stale" in check.stderr

    report = _run(["layout", "report", "--json", "--no-kernel"], src, tmp_path)
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    heap = next(r for r in data["regions"] if r["name"] == "kernel-heap")
    assert heap["size"] == 16 << 30 and heap["end"] == "0xffffff7bffffffff"
    assert data["constants"]["kernel_link_base"] == "0xffffff0000200000"

    # The generated header still compiles and carries the new number into C.
    require("clang")
    source = tmp_path / "use.c"
    source.write_text(
        '#include <km/layout.h>\n_Static_assert(KM_HEAP_SIZE == 16ULL << 30, "heap");\n'
    )
    cc = _compile(source, root / "include")
    assert cc.returncode == 0, cc.stderr
    symbols = _linked_symbols(tmp_path, root / "include" / "km")
    assert symbols["km_empty"] == 0xFFFFFF0000200000


def test_gen_outside_a_kmtool_tree_refuses_and_writes_nothing(tmp_path: Path) -> None:
    result = _run(["layout", "gen"], REPO, tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("error: No kmtool source tree")
    assert "pass `--root`" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_gen_finds_the_root_above_the_current_directory(tmp_path: Path) -> None:
    for name in ("kernel/mm", "efi"):
        (tmp_path / name).mkdir(parents=True)
    result = _run(["layout", "gen"], REPO, tmp_path / "kernel" / "mm")
    assert result.returncode == 0, result.stderr
    assert cgen.stale(tmp_path) == []
    assert not (tmp_path / "kernel" / "mm" / "include").exists()
    # --root still overrides the discovery, even from outside any tree.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = _run(["layout", "gen", "--root", str(tmp_path / "out")], REPO, elsewhere)
    assert result.returncode == 0, result.stderr
    assert cgen.stale(tmp_path / "out") == [] and list(elsewhere.iterdir()) == []
