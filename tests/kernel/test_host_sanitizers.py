"""The host tests of the memory-manager core once more, with the C built by clang under
AddressSanitizer and UndefinedBehaviorSanitizer (issue 13): the frame allocator's state machine and
examples, the debug checks, the heap and the address manager. Any sanitizer finding fails the run.

The tests run in a child pytest with KMHOST_SANITIZE=1 (kmhost.py then builds with the sanitizer
flags) and clang's ASan runtime preloaded, since the Python interpreter that loads the library is
not itself instrumented. Leak detection is off: the interpreter keeps its own allocations to exit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, require, unavailable

SANITIZED_TESTS = ("test_host_frames.py", "test_host_frame_stack.py", "test_host_debug_checks.py",
                   "test_host_heap.py", "test_host_vaddr.py")  # fmt: skip


def _asan_runtime() -> Path:
    done = subprocess.run(["clang", "-print-file-name=libclang_rt.asan-x86_64.so"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    path = Path(done.stdout.strip())
    if not path.is_file():
        unavailable("clang's AddressSanitizer runtime is missing (Debian: libclang-rt-14-dev)")
    return path


def test_host_tests_pass_under_address_and_undefined_behaviour_sanitizers() -> None:
    require("clang")
    env = dict(
        os.environ,
        KMHOST_SANITIZE="1",
        LD_PRELOAD=str(_asan_runtime()),
        ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:exitcode=99",
        UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=98",
    )
    here = Path(__file__).resolve().parent
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            *(str(here / name) for name in SANITIZED_TESTS)]  # fmt: skip
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    tail = (done.stdout + done.stderr)[-4000:]
    assert done.returncode == 0, f"sanitized host tests failed (exit {done.returncode}):\n{tail}"
    assert "AddressSanitizer" not in done.stderr and "runtime error" not in done.stderr, tail
