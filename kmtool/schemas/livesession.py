"""The live session file: what `kmtool run --live` leaves for `kmtool inspect --live`, `kmtool diff
live:` and `kmtool gdb` (docs/design.md §12). This module is the one place its format comes from.

`kmtool run --live` backs guest RAM with a shared sparse file and leaves QEMU running; the session
file says how to reach it:

    {
      "format": "kmtool-live-session",      # fixed; anything else is not this format
      "version": 1,
      "pid": 4242,                           # QEMU's process id
      "qmp": "build/live/session.qmp",       # QEMU's QMP unix socket
      "ram": "build/live/session.ram",       # the RAM file (memory-backend-file, share=on)
      "ram_bytes": 536870912,                # guest RAM in bytes (the --memory value)
      "ram_ranges": [                        # guest-physical -> file offset, sorted, disjoint
        {"guest_physical": 0, "file_offset": 0, "size": 536870912}
      ],                                     # q35 above 2 GiB of RAM: a second range at 4 GiB
      "gdb": "127.0.0.1:1234",               # the gdb stub, or null
      "kernel": "build/kernel.elf",          # the kernel ELF of the build, or null
      "build_dir": "build"
    }

Numbers are JSON integers (unlike the raw sidecar's "0x" strings: the gdb command reads them with
plain `json`). Paths are absolute, so the file means the same from any working directory.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypedDict

LIVE_FORMAT_NAME = "kmtool-live-session"
LIVE_FORMAT_VERSION = 1
SESSION_KEYS = ("format", "version", "pid", "qmp", "ram", "ram_bytes", "ram_ranges", "gdb",
                "kernel", "build_dir")  # fmt: skip
RANGE_KEYS = ("guest_physical", "file_offset", "size")


class LiveRange(TypedDict):
    """Guest-physical [guest_physical, guest_physical + size) is the file's [file_offset, ...)."""

    guest_physical: int
    file_offset: int
    size: int


class LiveSessionDoc(TypedDict):
    """The whole session file (the module docstring shows one)."""

    format: str  # LIVE_FORMAT_NAME
    version: int  # LIVE_FORMAT_VERSION
    pid: int
    qmp: str
    ram: str
    ram_bytes: int
    ram_ranges: list[LiveRange]
    gdb: str | None  # "127.0.0.1:PORT"
    kernel: str | None
    build_dir: str


def session_document(
    pid: int,
    qmp: str,
    ram: str,
    ranges: Iterable[tuple[int, int, int]],
    gdb: str | None,
    kernel: str | None,
    build_dir: str,
) -> LiveSessionDoc:
    """The session file for QEMU `pid`, with RAM `ranges` as (guest_physical, file_offset, size);
    `ram_bytes` is the sum of the sizes."""
    rows: list[LiveRange] = [
        {"guest_physical": phys, "file_offset": offset, "size": size}
        for phys, offset, size in sorted(ranges)
    ]
    return {
        "format": LIVE_FORMAT_NAME,
        "version": LIVE_FORMAT_VERSION,
        "pid": pid,
        "qmp": qmp,
        "ram": ram,
        "ram_bytes": sum(r["size"] for r in rows),
        "ram_ranges": rows,
        "gdb": gdb,
        "kernel": kernel,
        "build_dir": build_dir,
    }
