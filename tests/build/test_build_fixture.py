"""The build driver on a tiny fixture tree: outputs, rebuilds, errors, reproducibility."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require
from fixture_tree import make_tree

from kmtool import toolchain
from kmtool.build import driver
from kmtool.errors import BuildError, ToolError

TOOLS = ("clang", "ld.lld", "lld-link", "mformat", "mmd", "mcopy")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    require(*TOOLS)
    return make_tree(tmp_path)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_clean_build_makes_kernel_loader_and_image(tree: Path) -> None:
    result = driver.build(tree)
    p = result.paths
    assert p.build_dir == tree / "build"
    assert sorted(result.steps) == sorted(
        [
            "CC kernel/arch/x86_64/entry.S",
            "CC kernel/lib/helper.c",
            "CC kernel/main.c",
            "CC efi/main.c",
            "LD build/kernel.elf",
            "LINK build/BOOTX64.EFI",
            "IMAGE build/kmtool.img",
        ]
    )
    assert p.kernel.read_bytes()[:4] == b"\x7fELF"
    assert p.loader.read_bytes()[:2] == b"MZ"
    assert p.image.stat().st_size == 66 << 20
    assert (tree / "include" / "km" / "layout.h").is_file()  # generated into the source tree
    assert not list(p.build_dir.glob("*.tmp")) and not list(p.build_dir.glob(".*.tmp"))


def test_noop_build_runs_nothing(tree: Path) -> None:
    first = driver.build(tree)
    stamps = {f: f.stat().st_mtime_ns for f in first.paths.build_dir.rglob("*") if f.is_file()}
    second = driver.build(tree)
    assert second.steps == () and second.up_to_date
    # ninja's own view: nothing is out of date, and no output was touched.
    ninja = subprocess.run(
        [toolchain.require("ninja"), "-f", str(first.paths.ninja_file), "-n", "-d", "explain"],
        cwd=tree, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "ninja: no work to do." in ninja.stdout
    assert "ninja explain" not in ninja.stdout + ninja.stderr
    after = {f: f.stat().st_mtime_ns for f in first.paths.build_dir.rglob("*") if f.is_file()}
    changed = [f.name for f in after if stamps.get(f) != after[f]]
    assert changed == [".ninja_log"] or changed == []


def test_header_change_rebuilds_exactly_its_users(tree: Path) -> None:
    driver.build(tree)
    (tree / "kernel/include/fixture.h").write_text("#pragma once\n#define FIXTURE_VALUE 8\n")
    assert driver.build(tree).steps == (
        "CC kernel/main.c",
        "LD build/kernel.elf",
        "IMAGE build/kmtool.img",
    )
    (tree / "kernel/include/helper.h").write_text("#pragma once\nint helper(int y);\n")
    steps = driver.build(tree).steps
    assert sorted(steps[:2]) == ["CC kernel/lib/helper.c", "CC kernel/main.c"]
    assert steps[2:] == ("LD build/kernel.elf", "IMAGE build/kmtool.img")


def test_loader_change_does_not_touch_the_kernel(tree: Path) -> None:
    first = driver.build(tree)
    kernel_mtime = first.paths.kernel.stat().st_mtime_ns
    main = tree / "efi/main.c"
    main.write_text(main.read_text().replace("return 0;", "return 1;"))
    assert driver.build(tree).steps == (
        "CC efi/main.c",
        "LINK build/BOOTX64.EFI",
        "IMAGE build/kmtool.img",
    )
    assert first.paths.kernel.stat().st_mtime_ns == kernel_mtime


def test_new_source_file_is_picked_up(tree: Path) -> None:
    driver.build(tree)
    (tree / "kernel/lib/extra.c").write_text("int extra(void) { return 1; }\n")
    steps = driver.build(tree).steps
    assert steps == ("CC kernel/lib/extra.c", "LD build/kernel.elf", "IMAGE build/kmtool.img")


def test_release_rebuilds_with_other_defines(tree: Path) -> None:
    driver.build(tree)
    result = driver.build(tree, release=True)
    assert len([s for s in result.steps if s.startswith("CC ")]) == 4
    assert "-DKM_DEBUG=0" in result.paths.ninja_file.read_text()


def test_two_clean_builds_are_byte_identical(tree: Path, tmp_path: Path) -> None:
    a = driver.build(tree, tmp_path / "out-a").paths
    b = driver.build(tree, tmp_path / "out b").paths  # a space, and outside the source root
    for x, y in ((a.kernel, b.kernel), (a.loader, b.loader), (a.image, b.image)):
        assert _sha256(x) == _sha256(y), x.name


def test_kernel_outside_its_region_fails_the_post_link_check(tree: Path) -> None:
    script = tree / "kernel/arch/x86_64/kernel.ld"
    script.write_text(script.read_text().replace(". = KM_KERNEL_LINK_BASE;", ". = 0x100000;"))
    with pytest.raises(driver.BuildFailure) as err:
        driver.build(tree)
    assert str(err.value) == ("Linking `build/kernel.elf` failed; the tool's messages are above.")
    text = "\n".join(err.value.failures[0].lines)
    assert "post-link checks" in text and "lies outside `kernel-image`" in text
    assert not (tree / "build/kernel.elf").exists()
    assert not (tree / "build/kernel.elf.tmp").exists()


def test_missing_compiler_names_its_package(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tree / "nowhere"))
    with pytest.raises(ToolError, match=r"install the Debian package `mtools`"):
        driver.build(tree)


def test_tree_without_kernel_sources_is_an_error(tree: Path) -> None:
    for f in (tree / "kernel").rglob("*"):
        if f.suffix in (".c", ".S"):
            f.unlink()
    with pytest.raises(BuildError, match=r"^No kernel sources"):
        driver.build(tree)


def test_find_root_walks_up(tree: Path) -> None:
    assert driver.find_root(tree / "kernel" / "lib") == tree
    with pytest.raises(BuildError, match="pass `--root`"):
        driver.find_root(tree.parent)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1", COLUMNS="100")
    env.pop("KMTOOL_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "kmtool", "build", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_cli_compiler_error_shows_the_compiler_message(tree: Path) -> None:
    helper = tree / "kernel/lib/helper.c"
    helper.write_text(helper.read_text().replace("return x * 2;", "return x * 2"))
    proc = _cli(cwd=tree / "kernel")
    assert proc.returncode == 1
    assert "kernel/lib/helper.c:5:17: error: expected ';' after return statement" in proc.stderr
    assert proc.stderr.rstrip().endswith(
        "error: Compiling `kernel/lib/helper.c` failed; the tool's messages are above."
    )
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "[1/" in proc.stdout  # plain progress lines when not on a terminal


def test_cli_warning_is_an_error(tree: Path) -> None:
    main = tree / "kernel/main.c"
    main.write_text(main.read_text().replace("{\n    counter", "{\n    int unused;\n    counter"))
    proc = _cli("--root", str(tree), cwd=tree.parent)
    assert proc.returncode == 1
    assert "unused variable 'unused' [-Werror,-Wunused-variable]" in proc.stderr


def test_cli_verbose_prints_commands_and_noop_summary(tree: Path) -> None:
    proc = _cli("-v", cwd=tree)
    assert proc.returncode == 0, proc.stderr
    assert "clang --target=x86_64-unknown-none-elf" in proc.stdout
    assert "lld-link -subsystem:efi_application" in proc.stdout
    assert "Built build/kmtool.img (66 MiB, debug)" in proc.stdout
    again = _cli(cwd=tree)
    assert again.returncode == 0
    assert again.stdout.startswith("build/kmtool.img is up to date (")
