"""`kmtool inspect --print EXPR`: any kernel global, read from a dump and shown with its C type
from the kernel ELF's DWARF (kmtool.elf.dwarf; docs/design.md §13).

EXPR is a global's name followed by any number of `.member`, `->member` and `[index]`:
`km_frames`, `km_heap.free_heads[12]`, `boot_info->memory_map_size`. Addresses are virtual and
are translated through the kernel's page tables in the dump, so `->` follows a pointer wherever it
points. What the value is made of is read as the type says: integers little-endian, bitfields by
bit offset and width, enums by name, `char` arrays as strings, pointers as addresses.

Work is bounded however large the type: an array shows its first ARRAY_SHOWN elements and a byte
array its first BYTES_SHOWN bytes, and a memory read is at most MAX_READ bytes. Memory the page
tables do not map is shown as unreadable where it occurs, never as an error for the whole value;
an expression that cannot mean anything (no such global or member, an index past the array, `->`
on something that is not a pointer to a struct) is a DumpError naming it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kmtool.elf.dwarf import (
    Array,
    Base,
    CType,
    DwarfTypes,
    Enum,
    Member,
    Opaque,
    Pointer,
    Record,
    strip_typedefs,
    type_name,
    type_size,
)
from kmtool.errors import DumpError
from kmtool.layout.table import PAGE_SIZE as PAGE

ARRAY_SHOWN = 64
BYTES_SHOWN = 64
MAX_READ = 1 << 20
_TOKEN = re.compile(r"\s*(?:(->)|(\.)|\[\s*(0x[0-9a-fA-F]+|\d+)\s*\]|([A-Za-z_]\w*))")

#: Reads `length` bytes at virtual `va`; None when a page of them is not mapped.
ReadVirtual = Callable[[int, int], bytes | None]
#: The function (and offset) at a code address, for function pointers: `kmain+0x1c8`, or None.
Symbolize = Callable[[int], str | None]
STRING_SHOWN = 64  # bytes of a `char *` target shown


@dataclass(frozen=True)
class Place:
    """Where a value lives: virtual address, type, and for a bitfield its bit offset and width."""

    address: int
    type: CType
    bit_offset: int | None = None
    bit_size: int | None = None


def _tokens(text: str) -> list[tuple[str, str | int]]:
    """("name", "km_heap"), (".", ""), ("->", ""), ("[]", 12) ... (DumpError on anything else)."""
    out: list[tuple[str, str | int]] = []
    pos = 0
    while pos < len(text.rstrip()):
        m = _TOKEN.match(text, pos)
        if not m:
            raise DumpError(f"`--print {text}`: cannot read it from `{text[pos:].strip()}` on.")
        arrow, dot, index, ident = m.groups()
        if ident is not None:
            out.append(("name", ident))
        elif index is not None:
            out.append(("[]", int(index, 0)))
        else:
            out.append(("->" if arrow else ".", ""))
        pos = m.end()
    return out


def parse_expression(text: str) -> tuple[str, list[tuple[str, str | int]]]:
    """`boot_info->memory_map_size` -> ("boot_info", [("->", "memory_map_size")])."""
    tokens = _tokens(text)
    if not tokens or tokens[0][0] != "name":
        raise DumpError(f"`--print {text}` must start with the name of a global.")
    steps: list[tuple[str, str | int]] = []
    i = 1
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "[]":
            steps.append((kind, value))
            i += 1
        elif kind in (".", "->") and i + 1 < len(tokens) and tokens[i + 1][0] == "name":
            steps.append((kind, tokens[i + 1][1]))
            i += 2
        else:
            raise DumpError(
                f"`--print {text}`: `{kind if kind != 'name' else value}` is out of "
                "place (write NAME, then .member, ->member or [index])."
            )
    return str(tokens[0][1]), steps


def locate(types: DwarfTypes, read: ReadVirtual, text: str) -> Place:
    """The place EXPR names (DumpError when it names nothing)."""
    name, steps = parse_expression(text)
    var = types.variables.get(name)
    if var is None:
        raise DumpError(f"`--print {text}`: the kernel has no global `{name}` with an address.")
    place = Place(var.address, var.type)
    for op, arg in steps:
        if op == "->":
            place = _deref(read, place, text)
        if op in (".", "->"):
            place = _member(place, str(arg), text)
        else:
            place = _index(read, place, int(arg), text)
    return place


def _deref(read: ReadVirtual, place: Place, text: str) -> Place:
    t = strip_typedefs(place.type)
    if not isinstance(t, Pointer) or not isinstance(strip_typedefs(t.target), Record):
        raise DumpError(f"`--print {text}`: `->` needs a pointer to a struct, not {type_name(t)}.")
    data = read(place.address, t.size)
    if data is None:
        raise DumpError(f"`--print {text}`: the pointer at {hex(place.address)} is not mapped.")
    return Place(int.from_bytes(data, "little"), t.target or Opaque("void", 0))


def _member(place: Place, name: str, text: str) -> Place:
    t = strip_typedefs(place.type)
    if not isinstance(t, Record):
        raise DumpError(f"`--print {text}`: `{name}` needs a struct or union, not {type_name(t)}.")
    m = t.member(name)
    if m is None:
        names = ", ".join(x.name for x in t.members)
        raise DumpError(f"`--print {text}`: {type_name(t)} has no member `{name}` ({names}).")
    return Place(place.address + m.offset, m.type, m.bit_offset, m.bit_size)


def _index(read: ReadVirtual, place: Place, i: int, text: str) -> Place:
    t = strip_typedefs(place.type)
    if isinstance(t, Array):
        if t.length is not None and not 0 <= i < t.length:
            raise DumpError(f"`--print {text}`: index {i} is past {type_name(t)}.")
        return Place(place.address + i * type_size(t.element), t.element)
    if isinstance(t, Pointer) and t.target is not None:
        data = read(place.address, t.size)
        if data is None:
            raise DumpError(f"`--print {text}`: the pointer at {hex(place.address)} is not mapped.")
        return Place(int.from_bytes(data, "little") + i * type_size(t.target), t.target)
    raise DumpError(f"`--print {text}`: `[{i}]` needs an array or a pointer, not {type_name(t)}.")


class Unreadable:
    """A value whose memory is not mapped (JSON: {"unreadable": "0x..."})."""

    def __init__(self, address: int) -> None:
        self.address = address


def value_of(read: ReadVirtual, place: Place, symbolize: Symbolize | None = None) -> Any:
    """The value at `place` as Python data: int, bool, str (enumerator or C string), bytes, list,
    dict (member -> value), PointerValue, or Unreadable."""
    t = strip_typedefs(place.type)
    if isinstance(t, Record):
        return {m.name or f"<anonymous at +{m.offset}>": value_of(read, _at(place, m), symbolize)
                for m in t.members}  # fmt: skip
    if isinstance(t, Array):
        return _array(read, place, t, symbolize)
    size = type_size(t)
    if not 0 < size <= 16:
        return Unreadable(place.address) if size else None
    data = read(place.address, size)
    if data is None:
        return Unreadable(place.address)
    raw = int.from_bytes(data, "little")
    if place.bit_size is not None:
        raw = (raw >> (place.bit_offset or 0)) & ((1 << place.bit_size) - 1)
    signed = isinstance(t, Base | Enum) and t.signed
    if signed and raw >> (8 * size - 1 if place.bit_size is None else place.bit_size - 1) & 1:
        raw -= 1 << (8 * size if place.bit_size is None else place.bit_size)
    if isinstance(t, Pointer):
        return _pointer(read, raw, t, symbolize)
    if isinstance(t, Enum):
        return t.values.get(raw, raw)
    if isinstance(t, Base) and t.boolean:
        return bool(raw)
    return raw


def _at(place: Place, m: Member) -> Place:
    return Place(place.address + m.offset, m.type, m.bit_offset, m.bit_size)


def _pointer(read: ReadVirtual, raw: int, t: Pointer, symbolize: Symbolize | None) -> PointerValue:
    target = strip_typedefs(t.target)
    if isinstance(target, Opaque) and target.what == "subroutine_type" and symbolize and raw:
        return PointerValue(raw, function=symbolize(raw))
    if isinstance(target, Base) and target.size == 1 and "char" in target.name and raw:
        data = _readable_prefix(read, raw, STRING_SHOWN)
        if data is not None:
            return PointerValue(raw, string=data.split(b"\0", 1)[0].decode("utf-8", "replace"))
    return PointerValue(raw)


def _readable_prefix(read: ReadVirtual, va: int, length: int) -> bytes | None:
    """Up to `length` bytes at `va`, stopping at the first unmapped page (None if `va`'s is)."""
    first = min(length, PAGE - va % PAGE)
    head = read(va, first)
    if head is None or b"\0" in head or first == length:
        return head
    tail = read(va + first, length - first)
    return head if tail is None else head + tail


def _array(read: ReadVirtual, place: Place, t: Array, symbolize: Symbolize | None) -> Any:
    element = strip_typedefs(t.element)
    size, length = type_size(element), t.length or 0
    if isinstance(element, Base) and size == 1 and not element.boolean:
        data = read(place.address, min(length, MAX_READ))
        if data is None:
            return Unreadable(place.address)
        if "char" in element.name and "unsigned" not in element.name:
            return data.split(b"\0", 1)[0].decode("utf-8", errors="replace")
        return data[:BYTES_SHOWN] if length > BYTES_SHOWN else data
    shown = [value_of(read, Place(place.address + i * size, t.element), symbolize)
             for i in range(min(length, ARRAY_SHOWN))]  # fmt: skip
    return shown + ([f"... {length - ARRAY_SHOWN} more"] if length > ARRAY_SHOWN else [])


def to_json(value: Any) -> Any:
    """The value as JSON data (bytes as hex text, unreadable memory as an object)."""
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Unreadable):
        return {"unreadable": hex(value.address)}
    if isinstance(value, PointerValue):
        return value.to_json()
    return value


def text_of(value: Any, t: CType | None, indent: str = "") -> str:
    """The value as C-like text: `{ .head = 8192 (0x2000), ... }` over indented lines. Integers
    are decimal, with hex beside from 4096 up; pointers are hex."""
    t = strip_typedefs(t)
    if isinstance(value, dict) and isinstance(t, Record):
        inner = indent + "    "
        rows = [f"{inner}.{m.name} = {text_of(value[k], m.type, inner)},"
                for m, k in zip(t.members, value, strict=True)]  # fmt: skip
        return "{\n" + "\n".join(rows) + f"\n{indent}}}"
    if isinstance(value, list) and isinstance(t, Array):
        items = [v if isinstance(v, str) else text_of(v, t.element, indent) for v in value]
        return "{ " + ", ".join(items) + " }"
    if isinstance(value, str) and isinstance(t, Array):
        return _quoted(value)
    if isinstance(value, bytes):
        cut = isinstance(t, Array) and (t.length or 0) > len(value)
        return "{ " + " ".join(f"{b:02x}" for b in value) + (" ..." if cut else "") + " }"
    if isinstance(value, Unreadable):
        return f"<unreadable: {hex(value.address)} is not mapped>"
    if isinstance(value, PointerValue):
        return value.text(type_name(t))
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, str):
        return value
    return f"{value} ({value:#x})" if value >= PAGE else str(value)


def _quoted(text: str) -> str:
    return '"' + text.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class PointerValue:
    """A pointer's value, with what it points at when kmtool can name it: the function of a
    function pointer, the string of a `char *`."""

    address: int
    function: str | None = None
    string: str | None = None

    def text(self, spelled: str) -> str:
        out = f"({spelled}){self.address:#x}"
        if self.function:
            out += f" <{self.function}>"
        if self.string is not None:
            out += " " + _quoted(self.string)
        return out

    def to_json(self) -> Any:
        extra = {k: v for k, v in (("function", self.function), ("string", self.string)) if v}
        return {"pointer": hex(self.address), **extra} if extra else hex(self.address)


def virtual_reader(memory: Any, translate: Callable[[int], int | None]) -> ReadVirtual:
    """A ReadVirtual over a dump's physical `memory` and a VA -> PA `translate`: page by page, so a
    value may straddle pages that are not contiguous physically; None when any page is unmapped or
    outside the dump, or the read is over MAX_READ bytes."""

    def read(va: int, length: int) -> bytes | None:
        if length > MAX_READ:
            return None
        out = bytearray()
        while len(out) < length:
            at = va + len(out)
            pa = translate(at)
            n = min(length - len(out), PAGE - at % PAGE)
            if pa is None or not memory.contains(pa, n):
                return None
            out += memory.read(pa, n, "--print value")
        return bytes(out)

    return read


@dataclass(frozen=True)
class Printed:
    """One `--print` result: the expression, its C type, where it lives and its value."""

    expression: str
    type: CType
    address: int
    value: Any

    def to_json(self) -> dict[str, Any]:
        return {
            "expression": self.expression,
            "type": type_name(self.type),
            "address": hex(self.address),
            "value": to_json(self.value),
        }

    def text(self) -> str:
        where = f"({type_name(self.type)} at {hex(self.address)})"
        return f"{self.expression} {where} = {text_of(self.value, self.type)}"


def print_expressions(
    types: DwarfTypes,
    read: ReadVirtual,
    expressions: list[str],
    symbolize: Symbolize | None = None,
) -> list[Printed]:
    """Each expression located and read (DumpError for one that names nothing, or whose type nests
    without end: a struct that holds itself, which only a hostile ELF can describe)."""
    out = []
    for text in expressions:
        place = locate(types, read, text)
        try:
            value = value_of(read, place, symbolize)
            type_name(place.type)
        except RecursionError:
            raise DumpError(
                f"`--print {text}`: its type nests without end in the ELF's DWARF."
            ) from None
        out.append(Printed(text, place.type, place.address, value))
    return out
