"""build.ninja rendering: a pure function of the sources, tools and mode."""

from __future__ import annotations

from pathlib import Path

from fixture_tree import make_tree

from kmtool.build import ninjafile

TOOLS = ninjafile.Tools(
    clang="/usr/bin/clang", ld_lld="/usr/bin/ld.lld", lld_link="/usr/bin/lld-link",
    python="/venv/bin/python",
)  # fmt: skip


def _render(root: Path, build_dir: str = "build", release: bool = False) -> str:
    return ninjafile.render(
        root, build_dir, ninjafile.find_sources(root), TOOLS, release=release, epoch=315532800
    )


def test_find_sources_globs_kernel_c_and_S_and_efi(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    (root / "kernel" / ".hidden").mkdir()
    (root / "kernel" / ".hidden" / "x.c").write_text("")
    (root / "kernel" / "notes.txt").write_text("")
    sources = ninjafile.find_sources(root)
    assert sources.kernel == (
        "kernel/arch/x86_64/entry.S",
        "kernel/lib/helper.c",
        "kernel/main.c",
    )
    assert sources.loader == ("efi/main.c",)


def test_compiles_use_depfiles(tmp_path: Path) -> None:
    text = _render(make_tree(tmp_path))
    for rule in ("kernel_cc", "loader_cc"):
        block = text.split(f"rule {rule}\n", 1)[1].split("\n\n", 1)[0]
        assert "-MD -MF $out.d" in block
        assert "depfile = $out.d" in block
        assert "deps = gcc" in block
    assert "build build/obj/kernel/main.c.o: kernel_cc kernel/main.c" in text
    assert (
        "build build/obj/kernel/arch/x86_64/entry.S.o: kernel_cc kernel/arch/x86_64/entry.S" in text
    )
    assert "build build/obj/efi/main.c.obj: loader_cc efi/main.c" in text


def test_links_check_before_rename_and_image_is_default(tmp_path: Path) -> None:
    text = _render(make_tree(tmp_path))
    assert (
        "command = { $ld $kernel_ldflags -o $out.tmp $in && /venv/bin/python -m "
        "kmtool.build.checks kernel $out.tmp --name $out && mv -f $out.tmp $out; } "
        "|| { rm -f $out.tmp; exit 1; }"
    ) in text
    assert (
        "-m kmtool.build.checks loader $out.tmp --name $out && mv -f $out.tmp $out; } "
        "|| { rm -f $out.tmp; exit 1; }"
    ) in text
    assert "build build/kernel.elf: kernel_link " in text
    assert "| kernel/arch/x86_64/kernel.ld include/km/layout.ld" in text
    assert "build build/kmtool.img: image build/BOOTX64.EFI build/kernel.elf | " in text
    assert "--epoch 315532800 EFI/BOOT/BOOTX64.EFI=$loader kernel.elf=$kernel" in text
    assert text.rstrip().endswith("default build/kmtool.img")


def test_flags_follow_the_contract(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    text = _render(root)
    kernel = text.split("kernel_cflags = ", 1)[1].split("\n", 1)[0]
    for flag in (
        "--target=x86_64-unknown-none-elf", "-ffreestanding", "-mno-red-zone",
        "-mgeneral-regs-only", "-fpie", "-mcmodel=small", "-Werror", "-Iinclude",
        "-Ikernel/include", f"-ffile-prefix-map={root}=.", "-DKM_DEBUG=1",
    ):  # fmt: skip
        assert flag in kernel.split(), flag
    loader = text.split("loader_cflags = ", 1)[1].split("\n", 1)[0]
    for flag in ("--target=x86_64-unknown-windows", "-fshort-wchar", "-mno-red-zone", "-Iefi"):
        assert flag in loader.split(), flag
    assert "-subsystem:efi_application -entry:efi_main -nodefaultlib" in text
    assert "-T kernel/arch/x86_64/kernel.ld -Linclude/km" in text
    ldflags = text.split("kernel_ldflags = ", 1)[1].split("\n", 1)[0].split()
    assert "--build-id=sha1" in ldflags  # a hash of the output: reproducible, and a dump's id


def test_release_changes_only_the_debug_defines(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    debug, release = _render(root), _render(root, release=True)
    assert "-DKM_DEBUG=0 -DNDEBUG" in release and "-DKM_DEBUG=1" not in release
    changed = [
        (a, b) for a, b in zip(debug.splitlines(), release.splitlines(), strict=True) if a != b
    ]
    assert [a.split(" ", 1)[0] for a, _ in changed] == ["#", "kernel_cflags", "loader_cflags"]


def test_paths_with_spaces_are_escaped(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    text = _render(root, "/tmp/out dir")
    assert "build /tmp/out$ dir/kernel.elf: kernel_link /tmp/out$ dir/obj/" in text
    assert "loader = '/tmp/out dir/BOOTX64.EFI'" in text


def test_render_is_deterministic(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    assert _render(root) == _render(root)
