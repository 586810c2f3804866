"""kmtool.dump.printer without a dump: expressions parsed, values decoded by type (bitfields,
signed values, enums, strings, pointers), and memory that is not mapped shown, not raised. The
real kernel's types and a real dump are in tests/elf/test_dwarf.py and tests/integration."""

from __future__ import annotations

import struct

import pytest

from kmtool.dump.printer import (
    Place,
    PointerValue,
    Unreadable,
    locate,
    parse_expression,
    text_of,
    value_of,
)
from kmtool.elf.dwarf import Array, Base, DwarfTypes, Enum, Member, Pointer, Record, Variable
from kmtool.errors import DumpError

U64 = Base("uint64_t", 8, signed=False)
I32 = Base("int", 4, signed=True)
CHAR = Base("char", 1, signed=True)
COLOUR = Enum("colour", 4, signed=False, values={0: "RED", 2: "BLUE"})
NODE = Record("struct", "node", 40)
NODE.members += [
    Member("next", 0, Pointer(8, NODE)),
    Member("count", 8, U64),
    Member("delta", 16, I32, bit_offset=0, bit_size=4),
    Member("flag", 16, I32, bit_offset=4, bit_size=1),
    Member("colour", 20, COLOUR),
    Member("name", 24, Pointer(8, CHAR)),
    Member("tag", 32, Array(CHAR, 8)),
]
A, B, TEXT = 0x1000, 0x2000, 0x3000


class Memory:
    """Virtual memory of a few pages; reads of anything else are unmapped (None)."""

    def __init__(self) -> None:
        self.pages: dict[int, bytearray] = {a: bytearray(4096) for a in (A, B, TEXT)}

    def put(self, va: int, data: bytes) -> None:
        self.pages[va & ~4095][va & 4095 : (va & 4095) + len(data)] = data

    def read(self, va: int, length: int) -> bytes | None:
        page = self.pages.get(va & ~4095)
        return None if page is None else bytes(page[va & 4095 : (va & 4095) + length])


def node(mem: Memory, at: int, nxt: int, count: int, bits: int, colour: int, name: int) -> None:
    mem.put(at, struct.pack("<QQIIQ", nxt, count, bits, colour, name) + b"ab\0junk")


@pytest.fixture
def world() -> tuple[DwarfTypes, Memory]:
    types = DwarfTypes.__new__(DwarfTypes)
    types.variables = {
        "head": Variable("head", A, NODE),
        "table": Variable("table", B, Array(U64, 4)),
    }
    mem = Memory()
    node(mem, A, B, 7, 0b1_1110, 2, TEXT)  # delta -2 (4-bit signed), flag set, BLUE
    node(mem, B, 0x9000, 1, 0, 5, 0)  # next points nowhere mapped, colour not an enumerator
    mem.put(TEXT, b"first\0")
    return types, mem


def test_expressions_parse() -> None:
    assert parse_expression("head") == ("head", [])
    assert parse_expression("head.next->count") == ("head", [(".", "next"), ("->", "count")])
    assert parse_expression("table[0x3]") == ("table", [("[]", 3)])
    for bad in ("", "->x", "head.", "head..x", "head[", "head->3", "1head"):
        with pytest.raises(DumpError, match=r"^`--print "):
            parse_expression(bad)


def test_values_by_type(world: tuple[DwarfTypes, Memory]) -> None:
    types, mem = world
    value = value_of(mem.read, locate(types, mem.read, "head"))
    assert value["count"] == 7 and value["delta"] == -2 and value["flag"] == -1
    assert value["colour"] == "BLUE" and value["tag"] == "ab"
    assert value["next"] == PointerValue(B) and value["name"] == PointerValue(TEXT, string="first")
    assert value_of(mem.read, locate(types, mem.read, "head.next->colour")) == 5
    with pytest.raises(DumpError, match=r"`->` needs a pointer to a struct, not struct node\.$"):
        locate(types, mem.read, "head->count")
    text = text_of(value, NODE)
    assert ".count = 7," in text and '.name = (char *)0x3000 "first",' in text
    assert ".next = (struct node *)0x2000," in text and '.tag = "ab",' in text


def test_unmapped_memory_is_shown_not_raised(world: tuple[DwarfTypes, Memory]) -> None:
    types, mem = world
    place = locate(types, mem.read, "head.next->next")
    assert place.address == B and place.type is NODE.members[0].type
    with pytest.raises(DumpError, match=r"the pointer at 0x9000 is not mapped\.$"):
        locate(types, mem.read, "head.next->next->next->count")
    gone = value_of(mem.read, Place(0x9000, NODE))
    assert isinstance(gone["count"], Unreadable) and gone["count"].address == 0x9008


def test_indexes_are_bounded(world: tuple[DwarfTypes, Memory]) -> None:
    types, mem = world
    assert locate(types, mem.read, "table[3]").address == B + 24
    with pytest.raises(DumpError, match=r"index 4 is past uint64_t \[4\]"):
        locate(types, mem.read, "table[4]")


def test_types_a_hostile_elf_could_describe_end(world: tuple[DwarfTypes, Memory]) -> None:
    from kmtool.dump.printer import print_expressions
    from kmtool.elf.dwarf import Opaque, Typedef, strip_typedefs

    types, mem = world
    loop = Typedef("a", None)
    loop.target = Typedef("b", loop)  # typedef a b; typedef b a
    assert strip_typedefs(loop) == Opaque("typedef loop", 0)
    itself = Record("struct", "ouroboros", 8)
    itself.members.append(Member("me", 0, itself))  # a struct that holds itself by value
    types.variables["snake"] = Variable("snake", A, itself)
    with pytest.raises(DumpError, match=r"^`--print snake`: its type nests without end"):
        print_expressions(types, mem.read, ["snake"])
