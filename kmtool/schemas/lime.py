"""LiME's memory format (the Linux Memory Extractor's `lime` output, read by volatility3).

A LiME file is a sequence of ranges, each a `LimeRangeHeader` followed at once by the range's bytes,
`e_addr - s_addr + 1` of them (`e_addr` is the range's *last* byte, inclusive). Ranges are sorted by
address and do not overlap. All fields are little-endian; version 1 is the only one LiME writes.
"""

from construct import Bytes, Int32ul, Int64ul, Struct

# LIME_MAGIC is in signatures.py.
LIME_VERSION = 1

LimeRangeHeader = Struct(
    "magic" / Int32ul * "LIME_MAGIC",
    "version" / Int32ul * "LIME_VERSION",
    "s_addr" / Int64ul * "physical address of the range's first byte",
    "e_addr" / Int64ul * "physical address of the range's last byte (inclusive)",
    "reserved" / Bytes(8) * "zero",
)
