"""The bytes that say what a file or a structure is, before any of it is parsed.

Declared here, apart from the construct schemas that use them (kdump.py, lime.py, coreinfo.py), so
that telling a dump's format and searching for the core-info block import no parser: an inspection
imports a format's reader, and construct, only once the dump turns out to need it (docs/design.md
§13). The schemas import these names, so each value is still written once.
"""

# e_ident[EI_MAG0..EI_MAG3] of QEMU's ELF cores (kmtool.elf, which imports nothing of kmtool but
# its errors, states it for the kernel ELF).
ELF_MAGIC = b"\x7fELF"
KDUMP_SIGNATURE = b"KDUMP   "  # a kdump-compressed file's first block
FLAT_SIGNATURE = b"makedumpfile\0\0\0\0"  # makedumpfile's flattened stream
LIME_MAGIC = 0x4C694D45  # each LiME range header's first word ("EMiL" in the file)

# struct km_core_info opens with these two words, magic2 directly after magic (tests/dump pins
# that against the schema); a scan for the block looks for the 16 bytes they make.
CORE_INFO_MAGIC = int.from_bytes(b"KMCORE\x00\x01", "little")
CORE_INFO_MAGIC2 = int.from_bytes(b"\x7fINFO\x00\x00\x01", "little")
CORE_INFO_NEEDLE = CORE_INFO_MAGIC.to_bytes(8, "little") + CORE_INFO_MAGIC2.to_bytes(8, "little")
