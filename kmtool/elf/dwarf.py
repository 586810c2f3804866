"""C types and global variables from the kernel ELF's DWARF (pyelftools), for `inspect --print`.

`read_dwarf(path)` reads the top-level variables of every compilation unit (a global, or a static
at file scope, with a fixed address: `DW_OP_addr`) and resolves their types on demand into a small
model:

    Base     an integer, boolean, character or floating type: name, size, signedness
    Pointer  a pointer (target None for `void *`)
    Record   a struct or union: its members, each with byte offset and, for a bitfield, the bit
             offset and bit width
    Array    element type and length (None when the DWARF gives none: `char x[]`)
    Enum     size, signedness and the enumerators
    Typedef  a name for another type (`const` and `volatile` are left out: they do not change
             how bytes read)

Each type is built once per DIE offset (a linked list's `next` pointer refers back to its own
struct), and a DIE the model does not know (a function type, say) becomes an `Opaque` of its size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kmtool.errors import KernelElfError

QUALIFIERS = ("DW_TAG_const_type", "DW_TAG_volatile_type", "DW_TAG_restrict_type",
              "DW_TAG_atomic_type")  # fmt: skip
SIGNED_ENCODINGS = (0x05, 0x06, 0x0D)  # DW_ATE_signed, signed_char, signed_fixed


@dataclass
class Base:
    name: str
    size: int
    signed: bool
    floating: bool = False
    boolean: bool = False


@dataclass
class Pointer:
    size: int
    target: CType | None = None


@dataclass(frozen=True)
class Member:
    name: str
    offset: int  # bytes from the start of the record
    type: CType
    bit_offset: int | None = None  # bits from `offset` (little-endian order), for a bitfield
    bit_size: int | None = None


@dataclass
class Record:
    kind: str  # "struct" or "union"
    name: str | None
    size: int
    members: list[Member] = field(default_factory=list)

    def member(self, name: str) -> Member | None:
        return next((m for m in self.members if m.name == name), None)


@dataclass
class Array:
    element: CType
    length: int | None

    @property
    def size(self) -> int:
        return type_size(self.element) * (self.length or 0)


@dataclass
class Enum:
    name: str | None
    size: int
    signed: bool
    values: dict[int, str] = field(default_factory=dict)


@dataclass
class Typedef:
    name: str
    target: CType | None


@dataclass
class Opaque:
    what: str
    size: int


CType = Base | Pointer | Record | Array | Enum | Typedef | Opaque


MAX_TYPEDEFS = 64  # a chain longer than this (a loop, in a hostile ELF) reads as an opaque type


def strip_typedefs(t: CType | None) -> CType | None:
    """`t` with typedefs looked through (an endless chain ends as an Opaque "typedef loop")."""
    for _ in range(MAX_TYPEDEFS):
        if not isinstance(t, Typedef):
            return t
        t = t.target
    return Opaque("typedef loop", 0)


def type_size(t: CType | None) -> int:
    t = strip_typedefs(t)
    return 0 if t is None or isinstance(t, Typedef) else t.size


def type_name(t: CType | None) -> str:
    """The C spelling of `t`: `struct km_heap`, `uint64_t`, `char *`, `uint64_t [64]`."""
    if t is None:
        return "void"
    if isinstance(t, Base | Typedef):
        return t.name
    if isinstance(t, Pointer):
        return f"{type_name(t.target)} *"
    if isinstance(t, Record):
        return f"{t.kind} {t.name}" if t.name else f"{t.kind} <anonymous>"
    if isinstance(t, Enum):
        return f"enum {t.name}" if t.name else "enum <anonymous>"
    if isinstance(t, Array):
        return f"{type_name(t.element)} [{'' if t.length is None else t.length}]"
    return "function" if t.what == "subroutine_type" else t.what


@dataclass(frozen=True)
class Variable:
    name: str
    address: int
    type: CType


class DwarfTypes:
    """The kernel's global variables (by name) and their types, read from one ELF."""

    def __init__(self, path: Path, dwarf: Any) -> None:
        self.path = path
        self._dwarf = dwarf
        self._types: dict[int, CType] = {}
        self.variables: dict[str, Variable] = {}
        self.records: dict[str, Record] = {}  # every named struct/union met while reading
        from elftools.dwarf.dwarf_expr import DWARFExprParser

        self._expr = DWARFExprParser(dwarf.structs)
        for cu in dwarf.iter_CUs():
            for die in cu.get_top_DIE().iter_children():
                self._top_level(cu, die)

    def _address(self, cu: Any, expr: Any) -> int | None:
        """The address a location expression names, when it is one fixed address: `DW_OP_addr A`
        or DWARF 5's `DW_OP_addrx I` (entry I of the unit's .debug_addr table)."""
        if not isinstance(expr, list):
            return None
        ops = self._expr.parse_expr(expr)
        if len(ops) != 1:
            return None
        if ops[0].op_name == "DW_OP_addr":
            return int(ops[0].args[0])
        if ops[0].op_name == "DW_OP_addrx":
            return int(self._dwarf.get_addr(cu, ops[0].args[0]))
        return None

    def _top_level(self, cu: Any, die: Any) -> None:
        if die.tag in ("DW_TAG_structure_type", "DW_TAG_union_type") and _name(die):
            if "DW_AT_declaration" not in die.attributes:
                record = self._type(die)
                assert isinstance(record, Record)
                self.records.setdefault(record.name or "", record)
            return
        if die.tag != "DW_TAG_variable" or "DW_AT_location" not in die.attributes:
            return
        address = self._address(cu, die.attributes["DW_AT_location"].value)
        if address is None:
            return  # not at a fixed address
        spec = die
        if "DW_AT_specification" in die.attributes:
            spec = die.get_DIE_from_attribute("DW_AT_specification")
        name = _name(spec) or _name(die)
        if name and "DW_AT_type" in spec.attributes:
            self.variables[name] = Variable(name, address, self._type_of(spec))

    def _type_of(self, die: Any) -> CType:
        """The type a DIE's DW_AT_type names (None-free: `void` becomes an empty Opaque)."""
        if "DW_AT_type" not in die.attributes:
            return Opaque("void", 0)
        return self._type(die.get_DIE_from_attribute("DW_AT_type"))

    def _type(self, die: Any) -> CType:
        while die.tag in QUALIFIERS and "DW_AT_type" in die.attributes:
            die = die.get_DIE_from_attribute("DW_AT_type")
        known = self._types.get(die.offset)
        if known is not None:
            return known
        return _BUILDERS.get(die.tag, _opaque)(self, die)

    def _remember(self, die: Any, t: CType) -> CType:
        self._types[die.offset] = t
        return t


def _name(die: Any) -> str | None:
    attr = die.attributes.get("DW_AT_name")
    return None if attr is None else attr.value.decode("utf-8", errors="replace")


def _size(die: Any, default: int = 0) -> int:
    attr = die.attributes.get("DW_AT_byte_size")
    return default if attr is None else int(attr.value)


def _base(types: DwarfTypes, die: Any) -> CType:
    encoding = die.attributes["DW_AT_encoding"].value if "DW_AT_encoding" in die.attributes else 0
    return types._remember(
        die,
        Base(_name(die) or "?", _size(die), encoding in SIGNED_ENCODINGS,
             floating=encoding == 0x04, boolean=encoding == 0x02),
    )  # fmt: skip


def _pointer(types: DwarfTypes, die: Any) -> CType:
    p = Pointer(_size(die, 8))
    types._remember(die, p)  # before the target: a struct may point to itself
    if "DW_AT_type" in die.attributes:
        p.target = types._type(die.get_DIE_from_attribute("DW_AT_type"))
    return p


def _record(types: DwarfTypes, die: Any) -> CType:
    kind = "union" if die.tag == "DW_TAG_union_type" else "struct"
    r = Record(kind, _name(die), _size(die))
    types._remember(die, r)
    for child in die.iter_children():
        if child.tag == "DW_TAG_member":
            r.members.append(_member(types, child))
    return r


def _member(types: DwarfTypes, die: Any) -> Member:
    loc = die.attributes.get("DW_AT_data_member_location")
    offset = int(loc.value) if loc is not None and isinstance(loc.value, int) else 0
    bit_size = die.attributes.get("DW_AT_bit_size")
    bit_offset = None
    if bit_size is not None:
        data_bit = die.attributes.get("DW_AT_data_bit_offset")
        if data_bit is not None:  # DWARF 4+: bits from the start of the record
            offset, bit_offset = divmod(int(data_bit.value), 8)
    t = types._type_of(die)
    return Member(
        _name(die) or "",
        offset,
        t,
        bit_offset,
        None if bit_size is None else int(bit_size.value),
    )


def _array(types: DwarfTypes, die: Any) -> CType:
    element = types._type_of(die)
    lengths: list[int | None] = []
    for child in die.iter_children():
        if child.tag != "DW_TAG_subrange_type":
            continue
        if "DW_AT_count" in child.attributes:
            lengths.append(int(child.attributes["DW_AT_count"].value))
        elif "DW_AT_upper_bound" in child.attributes:
            lengths.append(int(child.attributes["DW_AT_upper_bound"].value) + 1)
        else:
            lengths.append(None)
    t: CType = element
    for n in reversed(lengths or [None]):  # int a[2][3]: an array of 2 arrays of 3
        t = Array(t, n)
    return types._remember(die, t)


def _enum(types: DwarfTypes, die: Any) -> CType:
    under = strip_typedefs(types._type_of(die)) if "DW_AT_type" in die.attributes else None
    signed = isinstance(under, Base) and under.signed
    e = Enum(_name(die), _size(die, 4), signed)
    for child in die.iter_children():
        if child.tag == "DW_TAG_enumerator":
            e.values[int(child.attributes["DW_AT_const_value"].value)] = _name(child) or "?"
    return types._remember(die, e)


def _typedef(types: DwarfTypes, die: Any) -> CType:
    t = Typedef(_name(die) or "?", None)
    types._remember(die, t)
    if "DW_AT_type" in die.attributes:
        t.target = types._type(die.get_DIE_from_attribute("DW_AT_type"))
    return t


def _opaque(types: DwarfTypes, die: Any) -> CType:
    return types._remember(die, Opaque(die.tag.removeprefix("DW_TAG_"), _size(die)))


_BUILDERS = {
    "DW_TAG_base_type": _base,
    "DW_TAG_pointer_type": _pointer,
    "DW_TAG_structure_type": _record,
    "DW_TAG_union_type": _record,
    "DW_TAG_array_type": _array,
    "DW_TAG_enumeration_type": _enum,
    "DW_TAG_typedef": _typedef,
}


def read_dwarf(path: Path) -> DwarfTypes:
    """The globals and types of the ELF at `path`; KernelElfError when it has no DWARF or the
    DWARF cannot be read."""
    from elftools.common.exceptions import DWARFError, ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            if not elf.has_dwarf_info():
                raise KernelElfError(
                    f"Kernel `{path}` has no DWARF debug info (built without -g?)."
                )
            return DwarfTypes(path, elf.get_dwarf_info())
    except OSError as err:
        raise KernelElfError(f"Cannot read kernel `{path}`: {err.strerror}.") from None
    except (ELFError, DWARFError, KeyError, ValueError, RecursionError) as err:
        raise KernelElfError(f"Kernel `{path}` has DWARF kmtool cannot read: {err}.") from None
