"""`kmtool build --release` and the debug build make different kernels: the debug-only invariant
checks (`#if KM_DEBUG` in kernel/mm/frame.c and heap.c) are compiled into the debug kernel only.

Builds go to temporary directories, never to the repository's build/.
"""

from __future__ import annotations

from pathlib import Path

from conftest import REPO, require

from kmtool.build import driver

TOOLS = ("clang", "ld.lld", "lld-link", "mformat", "mmd", "mcopy")
# Panic texts that exist only inside `#if KM_DEBUG` blocks.
DEBUG_ONLY = (b"reaches or overlaps next", b"does not link back", b"but the counters say")


def test_release_kernel_differs_from_debug_by_the_debug_checks(tmp_path: Path) -> None:
    require(*TOOLS)
    debug = driver.build(REPO, tmp_path / "debug").paths.kernel.read_bytes()
    release = driver.build(REPO, tmp_path / "release", release=True).paths.kernel.read_bytes()
    assert debug != release
    for text in DEBUG_ONLY:
        assert text in debug, text
        assert text not in release, text
