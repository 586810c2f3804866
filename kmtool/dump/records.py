"""Bridges from the construct schemas to bulk decoding.

The schemas in kmtool.schemas are the only statement of every layout. Headers are parsed with them
directly (`parse`); bulk data (free-list nodes, heap headers, descriptors) is decoded with numpy using a
dtype *derived* from the same schema (`numpy_dtype`), and single fields are located with
`field_offset`. Nothing here restates an offset.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import construct
import numpy as np

from kmtool.errors import DumpError

_NUMPY_CODES = {
    "<B": "u1",
    "<H": "<u2",
    "<L": "<u4",
    "<Q": "<u8",
    "<I": "<u4",
    "B": "u1",
    "<b": "i1",
    "<h": "<i2",
    "<l": "<i4",
    "<q": "<i8",
}


def _unwrap(sub: construct.Construct) -> construct.Construct:
    """The construct under any Renamed/doc wrappers."""
    while isinstance(sub, construct.Renamed):
        sub = sub.subcon
    return sub


def _fields(struct: construct.Struct) -> list[tuple[str, construct.Construct]]:
    return [(sc.name, _unwrap(sc)) for sc in struct.subcons]


@cache
def field_offset(struct: construct.Struct, name: str) -> int:
    """Byte offset of field `name` in the fixed-size `struct`; KeyError when it has no such field."""
    offset = 0
    for field, sub in _fields(struct):
        if field == name:
            return offset
        offset += sub.sizeof()
    raise KeyError(name)


def _dtype_of(sub: construct.Construct) -> Any:
    if isinstance(sub, construct.FormatField):
        return np.dtype(_NUMPY_CODES[sub.fmtstr])
    if isinstance(sub, construct.Array):
        return (_dtype_of(_unwrap(sub.subcon)), (sub.count,))
    if isinstance(sub, construct.Bytes) and isinstance(sub.length, int):
        return np.dtype(f"V{sub.length}")
    if isinstance(sub, construct.Struct):
        return numpy_dtype(sub)
    raise TypeError(f"no numpy equivalent for {sub!r}")


@cache
def numpy_dtype(struct: construct.Struct) -> np.dtype:
    """A packed structured numpy dtype with the schema's field names, types and size."""
    dtype = np.dtype([(name, _dtype_of(sub)) for name, sub in _fields(struct)])
    assert dtype.itemsize == struct.sizeof(), "schema and dtype sizes differ"
    return dtype


def parse(struct: construct.Struct, data: bytes, what: str, address: int) -> Any:
    """Parse `data` with `struct`, turning construct errors into one-line `DumpError`s."""
    try:
        return struct.parse(data)
    except construct.ConstructError as err:
        raise DumpError(f"Cannot decode `{what}` at {hex(address)}: {err}.") from None


def words_to_records(words: np.ndarray, struct: construct.Struct) -> np.ndarray:
    """Rows of little-endian words (one record each, from `PhysicalMemory.gather`) as a structured
    array of `struct`. When the rows are whole records in a writeable array (a copy made by the
    caller, never the read-only dump), the result is a view of `words` rather than another copy."""
    dtype = numpy_dtype(struct)
    n = len(words)
    if n == 0:
        return np.zeros(0, dtype=dtype)
    raw = np.ascontiguousarray(words, dtype="<u8").view(np.uint8).reshape(n, -1)
    if raw.shape[1] == dtype.itemsize and raw.flags.writeable:
        return raw.view(dtype).reshape(-1)
    return raw[:, : dtype.itemsize].copy().view(dtype).reshape(-1)
