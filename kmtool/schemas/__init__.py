"""construct schemas for every binary structure kmtool reads or writes.

A leaf package: it imports nothing of kmtool. Each schema is named after its C struct
(`BootInfo` for `struct km_boot_info`), keeps the C field names, spells out endianness and documents
every field; the same schema decodes dumps, builds test fixtures and generates the C declaration
(kmtool/layout/cgen.py) with `_Static_assert`s on size and offsets.
"""
