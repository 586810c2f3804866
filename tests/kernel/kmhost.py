"""The kernel's memory-manager core (kernel/mm/frame.c, heap.c, vaddr.c) built for the host.

`library()` compiles those files plus tests/kernel/host_shim.c with -DKM_HOST into a shared library
in a temporary directory (once per test session) and loads it with ctypes. On the host, physical
address p lives at `arena base + p` (the shim's `km_host_arena`), and a kernel panic longjmps back
into the shim's wrapper, which returns -1; the wrappers below turn that into `HostPanic`.

The allocator state is read back through the same construct schemas `kmtool inspect` uses
(kmtool.schemas.frames / heap), so the tests also check the C structs against the schemas.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from conftest import REPO, require

from kmtool.layout import table
from kmtool.schemas.frames import (
    SPAN_HASH_MULTIPLIER,
    STACK_RUN_MAX,
    FrameAllocator,
    FrameSpan,
    FrameStack,
    stack_node_offset,
)
from kmtool.schemas.heap import Heap

PAGE = table.PAGE_SIZE
SOURCES = (
    "kernel/mm/frame.c",
    "kernel/mm/frame_stack.c",
    "kernel/mm/frame_treap.c",
    "kernel/mm/frame_validate.c",
    "kernel/mm/heap.c",
    "kernel/mm/vaddr.c",
    "tests/kernel/host_shim.c",
)
# KM_DEBUG=1: the debug-only invariant checks run under every host test (test_host_debug_checks.py).
CFLAGS = ("-shared", "-fPIC", "-O2", "-g", "-std=c11", "-D_DEFAULT_SOURCE", "-DKM_HOST",
          "-DKM_DEBUG=1", "-Wall", "-Wextra", "-Werror", "-Iinclude", "-Ikernel/include")  # fmt: skip
KM_OK, KM_ENOMEM, KM_EINVAL, KM_EFULL = 0, 1, 2, 3

_LIB: ctypes.CDLL | None = None
_TMP: tempfile.TemporaryDirectory[str] | None = None

u64 = ctypes.c_uint64
u64p = ctypes.POINTER(ctypes.c_uint64)
vp = ctypes.c_void_p

_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "host_set_arena": (None, [ctypes.c_size_t]),
    "host_panic_message": (ctypes.c_char_p, []),
    "host_frames_state_size": (ctypes.c_ulong, []),
    "host_frames_init": (ctypes.c_int, [vp, u64]),
    "host_frames_add": (ctypes.c_int, [vp, u64, u64]),
    "host_frames_free": (ctypes.c_int, [vp, u64, u64]),
    "host_frames_alloc": (ctypes.c_int, [vp, u64, u64p, u64p]),
    "host_frames_alloc_contig": (ctypes.c_int, [vp, u64, u64p]),
    "host_frames_fold": (ctypes.c_long, [vp]),
    "host_frames_spans": (u64, [vp, u64p, u64]),
    "host_frames_span_hash": (u64, [vp]),
    "host_frames_validate": (ctypes.c_int, [vp, ctypes.c_char_p, ctypes.c_ulong]),
    "host_heap_state_size": (ctypes.c_ulong, []),
    "host_heap_released_pages": (ctypes.c_ulong, []),
    "host_heap_init": (ctypes.c_int, [vp, u64, u64]),
    "host_heap_alloc": (ctypes.c_int, [vp, u64, u64p]),
    "host_heap_free": (ctypes.c_int, [vp, u64, u64]),
    "host_heap_order_for": (ctypes.c_int, [vp, u64]),
    "host_heap_validate": (ctypes.c_int, [vp, ctypes.c_char_p, ctypes.c_ulong]),
    "host_vaddr_state_size": (ctypes.c_ulong, []),
    "host_vaddr_init": (None, [vp, u64, u64]),
    "host_vaddr_reserve": (ctypes.c_int, [vp, u64, u64, u64p]),
    "host_vaddr_mark": (ctypes.c_int, [vp, u64, u64]),
    "host_vaddr_release": (ctypes.c_int, [vp, u64, u64p]),
    "host_vaddr_lookup": (ctypes.c_int, [vp, u64, u64p, u64p]),
}


# KMHOST_SANITIZE=1 (set by test_host_sanitizers.py, which also preloads the runtime): clang with
# AddressSanitizer and UndefinedBehaviorSanitizer, any finding fatal.
SANITIZE = os.environ.get("KMHOST_SANITIZE") == "1"
SANITIZER_FLAGS = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-shared-libsan",
                   "-fno-omit-frame-pointer")  # fmt: skip


def compiler() -> str:
    """The host C compiler: $CC, else cc, else clang (skips, or fails under CI, when none); clang
    when sanitizing."""
    for name in ("clang",) if SANITIZE else (os.environ.get("CC", ""), "cc", "clang"):
        if name and shutil.which(name):
            return name
    require("cc")
    raise AssertionError("unreachable")


def build(out: Path, extra: tuple[str, ...] = ()) -> Path:
    """Compiles the shared library into `out`; returns its path. Raises on a compiler error."""
    lib = out / "libkmhost.so"
    flags = (*CFLAGS, *SANITIZER_FLAGS) if SANITIZE else CFLAGS
    argv = [compiler(), *flags, *extra, *SOURCES, "-o", str(lib)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"host build failed: {' '.join(argv)}\n{done.stderr}")
    return lib


def library() -> ctypes.CDLL:
    """The loaded host library (built on first use)."""
    global _LIB, _TMP
    if _LIB is None:
        _TMP = tempfile.TemporaryDirectory(prefix="kmhost-")
        lib = ctypes.CDLL(str(build(Path(_TMP.name))))
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
        _LIB = lib
    return _LIB


class HostPanic(Exception):
    """The C code called panic(); the message is the kernel's panic text."""


def _check(status: int) -> int:
    if status == -1:
        raise HostPanic(library().host_panic_message().decode())
    return status


def _buffer_address(buf: Any) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(buf))


class Frames:
    """A frame allocator over an anonymous mapping of `frames` frames standing in for physical
    memory 0 .. frames * PAGE. Nothing is handed to the allocator until `add()`."""

    def __init__(self, frames: int) -> None:
        self.lib = library()
        self.frames = frames
        self.arena = mmap.mmap(-1, frames * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.base = _buffer_address(self.arena)
        self.state = ctypes.create_string_buffer(self.lib.host_frames_state_size())
        self._call("host_frames_init", frames * PAGE)

    def _call(self, name: str, *args: Any) -> int:
        self.lib.host_set_arena(self.base)
        return _check(getattr(self.lib, name)(self.state, *args))

    def add(self, phys: int, count: int) -> None:
        self._call("host_frames_add", phys, count)

    def free(self, phys: int, count: int) -> None:
        self._call("host_frames_free", phys, count)

    def alloc(self, want: int) -> tuple[int, int] | int:
        """(phys, got) on success, else the status code (KM_ENOMEM, KM_EINVAL)."""
        phys, got = u64(), u64()
        status = self._call("host_frames_alloc", want, ctypes.byref(phys), ctypes.byref(got))
        return (phys.value, got.value) if status == KM_OK else status

    def alloc_contig(self, count: int) -> int | None:
        phys = u64()
        status = self._call("host_frames_alloc_contig", count, ctypes.byref(phys))
        return phys.value if status == KM_OK else None

    def spans(self) -> list[tuple[int, int]]:
        self.lib.host_set_arena(self.base)
        n = self.lib.host_frames_spans(self.state, None, 0)
        out = (ctypes.c_uint64 * (2 * n))()
        self.lib.host_frames_spans(self.state, out, n)
        return [(out[2 * i], out[2 * i + 1]) for i in range(n)]

    def fold(self) -> int:
        """frames_fold(): the number of stacked runs moved into the spans."""
        return self._call("host_frames_fold")

    def set_stack_limit(self, frames: int) -> None:
        """Writes the state's stack_limit (0: every stack push folds at once)."""
        off = field_offset(FrameAllocator, "stack_limit")
        self.state[off : off + 8] = frames.to_bytes(8, "little")

    def stack_node(self, phys: int) -> Any:
        """The FrameStack node of the frame at `phys`, as kmtool.schemas.frames parses it."""
        at = phys + stack_node_offset(phys)
        return FrameStack.parse(self.node_bytes(at, FrameStack.sizeof()))

    def stack(self) -> list[list[int]]:
        """Per run length 1..STACK_RUN_MAX, the stacked runs' first frames from the top down, read
        through the state and the nodes with the schemas (bounded by stack_runs)."""
        c = self.counters()
        out: list[list[int]] = []
        budget = c.stack_runs
        for i in range(STACK_RUN_MAX):
            runs, at = [], c.stack[i]
            while at:
                assert budget > 0, "stack walk is longer than stack_runs"
                budget -= 1
                runs.append(at)
                at = self.stack_node(at).next
            out.append(runs)
        return out

    def span_hash(self) -> int:
        self.lib.host_set_arena(self.base)
        return int(self.lib.host_frames_span_hash(self.state))

    def counters(self) -> Any:
        """The state as kmtool.schemas.frames.FrameAllocator parses it."""
        return FrameAllocator.parse(self.state.raw[: FrameAllocator.sizeof()])

    def validate(self) -> str | None:
        why = ctypes.create_string_buffer(256)
        status = self._call("host_frames_validate", why, len(why))
        return None if status == 0 else why.value.decode()

    def node_bytes(self, phys: int, size: int) -> bytes:
        return bytes(self.arena[phys : phys + size])

    def node(self, phys: int) -> Any:
        """The span node at `phys` as kmtool.schemas.frames.FrameSpan parses it."""
        return FrameSpan.parse(self.node_bytes(phys, FrameSpan.sizeof()))


class HeapArena:
    """A heap over an anonymous, lazily backed mapping of `size` bytes (a power of two)."""

    def __init__(self, size: int) -> None:
        self.lib = library()
        self.size = size
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0)
        self.arena = mmap.mmap(-1, size, flags=flags)
        self.base = _buffer_address(self.arena)
        self.state = ctypes.create_string_buffer(self.lib.host_heap_state_size())
        _check(self.lib.host_heap_init(self.state, self.base, size))

    def alloc(self, size: int) -> int | None:
        out = u64()
        _check(self.lib.host_heap_alloc(self.state, size, ctypes.byref(out)))
        return out.value or None

    def free(self, ptr: int, size: int = 0) -> None:
        _check(self.lib.host_heap_free(self.state, ptr, size))

    def order_for(self, size: int) -> int:
        return int(self.lib.host_heap_order_for(self.state, size))

    def counters(self) -> Any:
        return Heap.parse(self.state.raw[: Heap.sizeof()])

    def validate(self) -> str | None:
        why = ctypes.create_string_buffer(256)
        status = _check(self.lib.host_heap_validate(self.state, why, len(why)))
        return None if status == 0 else why.value.decode()

    def write(self, ptr: int, data: bytes) -> None:
        off = ptr - self.base
        self.arena[off : off + len(data)] = data

    def read(self, ptr: int, n: int) -> bytes:
        off = ptr - self.base
        return bytes(self.arena[off : off + n])

    def resident(self) -> list[bool]:
        """Per page of the arena: has the host kernel backed it (mincore)?"""
        libc = ctypes.CDLL(None, use_errno=True)
        pages = self.size // PAGE
        vec = (ctypes.c_ubyte * pages)()
        if libc.mincore(ctypes.c_void_p(self.base), ctypes.c_size_t(self.size), vec) != 0:
            raise OSError(ctypes.get_errno(), "mincore failed")
        return [bool(v & 1) for v in vec]

    def resident_pages(self) -> int:
        """Pages of the arena the host kernel has backed (mincore)."""
        return sum(self.resident())


class Vaddr:
    """An address manager over [base, end)."""

    def __init__(self, base: int, end: int) -> None:
        self.lib = library()
        self.state = ctypes.create_string_buffer(self.lib.host_vaddr_state_size())
        self.lib.host_vaddr_init(self.state, base, end)

    def reserve(self, size: int, align: int = PAGE) -> int | tuple[str, int]:
        out = u64()
        status = _check(self.lib.host_vaddr_reserve(self.state, size, align, ctypes.byref(out)))
        return out.value if status == KM_OK else ("status", status)

    def mark(self, start: int, size: int) -> int:
        return _check(self.lib.host_vaddr_mark(self.state, start, size))

    def release(self, start: int) -> int:
        size = u64()
        _check(self.lib.host_vaddr_release(self.state, start, ctypes.byref(size)))
        return size.value

    def lookup(self, addr: int) -> tuple[int, int] | None:
        start, size = u64(), u64()
        found = self.lib.host_vaddr_lookup(
            self.state, addr, ctypes.byref(start), ctypes.byref(size)
        )
        return (start.value, size.value) if found else None


def field_offset(schema: Any, name: str) -> int:
    """Byte offset of field `name` in a construct Struct of fixed-size fields."""
    offset = 0
    for sub in schema.subcons:
        if sub.name == name:
            return offset
        offset += sub.sizeof()
    raise KeyError(name)


def span_hash_model(spans: list[tuple[int, int]]) -> int:
    """The ready report's span_hash (kmtool/schemas/frames.py), computed independently in Python:
    Horner's rule over the words start, count of every span, mod 2^64."""
    h = 0
    for start, count in spans:
        for word in (start, count):
            h = (h * SPAN_HASH_MULTIPLIER + word) % (1 << 64)
    return h


def treap_inorder(fa: Frames) -> list[int]:
    """Walk the treap from the state's root through the nodes' `left`/`right` (read with the
    schemas); assert heap order of `priority` on the way; return the keys in order."""
    out: list[int] = []
    stack: list[tuple[int, int]] = []  # (node, parent priority)
    a, limit = fa.counters().root, 2 * fa.frames
    parent_priority = (1 << 64) - 1
    while stack or a:
        while a:
            n = fa.node(a)
            assert n.priority <= parent_priority, f"heap order broken at {a:#x}"
            stack.append((a, n.priority))
            a, parent_priority = n.left, n.priority
        a, priority = stack.pop()
        out.append(a)
        assert len(out) <= limit, "treap walk does not end"
        a, parent_priority = fa.node(a).right, priority
    return out


def runs(frames: set[int]) -> list[tuple[int, int]]:
    """Sorted, coalesced (start address, count) runs of a set of frame numbers."""
    out: list[tuple[int, int]] = []
    for f in sorted(frames):
        if out and out[-1][0] // PAGE + out[-1][1] == f:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((f * PAGE, 1))
    return out
