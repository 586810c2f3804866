"""One build directory from anywhere in the tree (kmtool.artifacts): `kmtool build` writes to the
source tree's build/, and `kmtool run` and `kmtool layout report` read from there, whichever
directory of the tree they run in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kmtool import artifacts
from kmtool.cli import cli


class _Captured(Exception):
    """Stops a command at the call the test looks at."""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A source tree (kernel/ and efi/) with a built-looking build/ directory."""
    root = tmp_path / "repo"
    for sub in ("kernel/lib", "efi", "build"):
        (root / sub).mkdir(parents=True)
    (root / "build" / artifacts.IMAGE).write_bytes(b"image")
    (root / "build" / artifacts.KERNEL_ELF).write_bytes(b"kernel")
    return root


def test_the_rule(tree: Path, tmp_path: Path) -> None:
    assert artifacts.build_dir(tree) == Path("build")
    assert artifacts.build_dir(tree / "kernel" / "lib") == tree / "build"
    assert artifacts.build_dir(tree / "build") == Path(".")
    assert artifacts.build_dir(tmp_path) == Path("build")  # outside any tree: ./build
    assert artifacts.find_root(tree / "efi") == tree


def test_run_defaults_from_a_subdirectory(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kmtool.qemu import runner

    seen: dict[str, Any] = {}

    def run_image(image: Path, options: runner.RunOptions, **_: object) -> None:
        seen.update(image=image, build_dir=options.build_dir)
        raise _Captured

    monkeypatch.setattr(runner, "run_image", run_image)
    monkeypatch.chdir(tree / "kernel" / "lib")
    result = CliRunner().invoke(cli, ["run"])
    assert isinstance(result.exception, _Captured), result.output
    assert seen["build_dir"].resolve() == tree / "build"
    assert seen["image"].resolve() == tree / "build" / artifacts.IMAGE
    assert seen["image"].is_file()
    # from the root the paths read as they always did
    monkeypatch.chdir(tree)
    result = CliRunner().invoke(cli, ["run"])
    assert isinstance(result.exception, _Captured), result.output
    assert seen == {"image": Path("build") / artifacts.IMAGE, "build_dir": Path("build")}


def test_layout_report_defaults_from_a_subdirectory(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kmtool.layout import report

    seen: list[Path | None] = []

    def build_report(kernel: Path | None, memory: int | None) -> None:
        seen.append(kernel)
        raise _Captured

    monkeypatch.setattr(report, "build_report", build_report)
    monkeypatch.chdir(tree / "kernel")
    result = CliRunner().invoke(cli, ["layout", "report"])
    assert isinstance(result.exception, _Captured), result.output
    assert seen[-1] is not None and seen[-1].resolve() == tree / "build" / artifacts.KERNEL_ELF
    result = CliRunner().invoke(cli, ["layout", "report", "--no-kernel"])
    assert isinstance(result.exception, _Captured) and seen[-1] is None
    (tree / "build" / artifacts.KERNEL_ELF).unlink()  # not built: the plan only
    result = CliRunner().invoke(cli, ["layout", "report"])
    assert isinstance(result.exception, _Captured) and seen[-1] is None
