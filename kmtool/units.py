"""How kmtool writes sizes, counts and addresses: one function per style, shared by every command.

A leaf module: it imports nothing of kmtool, so the renderers, the build and the checks can all use
it without importing one another.

    size_text          `1.5 MiB`             for reading: largest unit, two decimals, truncated
    exact_size_text    `63 GiB 1023 MiB`     for arithmetic: every unit, nothing lost
    suffix_size_text   `512M`, `2M`, `4097`  QEMU's option syntax and page-size keys, exact
    plural             `1 check`, `2 checks`
    hexaddr            `0xffffff7800000000`  a 64-bit address, always 16 digits
"""

from __future__ import annotations

_BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
_SUFFIXES = (("T", 40), ("G", 30), ("M", 20), ("K", 10))


def size_text(size: int) -> str:
    """`size` in the largest binary unit keeping it >= 1, with at most two decimals: `1.5 MiB`.

    Decimals are truncated, never rounded up, so a size is never shown larger than it is.
    Negative sizes keep their sign: `-48 KiB`.
    """
    sign, size = ("-", -size) if size < 0 else ("", size)
    unit = 0
    while unit + 1 < len(_BINARY_UNITS) and size >= 1024 << (10 * unit):
        unit += 1
    hundredths = size * 100 >> (10 * unit)
    text = f"{hundredths // 100}.{hundredths % 100:02d}".rstrip("0").rstrip(".")
    return f"{sign}{text} {_BINARY_UNITS[unit]}"


def exact_size_text(size: int) -> str:
    """`size` exactly, in whole binary units from the largest down: `63 GiB 1023 MiB 748 KiB`.

    For sizes that take part in arithmetic (the memory cost), where `size_text`'s truncation
    would make `64 GiB - 20 KiB = 63.99 GiB` read false. Zero is `0 B`.
    """
    sign, size = ("-", -size) if size < 0 else ("", size)
    parts = []
    for unit in reversed(range(len(_BINARY_UNITS))):
        amount = size >> (10 * unit)
        if unit < len(_BINARY_UNITS) - 1:
            amount &= 1023
        if amount:
            parts.append(f"{amount} {_BINARY_UNITS[unit]}")
    return sign + (" ".join(parts) if parts else "0 B")


def suffix_size_text(size: int) -> str:
    """`size` with the largest of the suffixes K, M, G, T that divides it: `512M`, `2M`, `1G`.

    Exact, as QEMU's `-m` and kmtool's `--memory` read it; a size no suffix divides (or below
    1 KiB) is plain bytes: `4097`.
    """
    for suffix, shift in _SUFFIXES:
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift}{suffix}"
    return str(size)


def plural(count: int, noun: str) -> str:
    """`count` and `noun`, with an `s` unless the count is exactly 1: `1 check`, `0 checks`."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def hexaddr(address: int) -> str:
    """`address` as a `0x` string of 16 hex digits (callers pass 64-bit addresses)."""
    return f"{address:#018x}"
