"""The loader's boot handoff (struct km_boot_info) as found in a dump."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kmtool.dump.document import BootInfoDoc
from kmtool.dump.memory import PhysicalMemory
from kmtool.dump.records import parse
from kmtool.errors import DumpError
from kmtool.layout.table import canonical
from kmtool.schemas.bootinfo import (
    BOOT_FLAG_CMDLINE_TRUNCATED,
    BOOT_INFO_MAGIC,
    BOOT_INFO_VERSION,
    BootInfo,
)


@dataclass
class BootInfoView:
    """A decoded boot info at `address`."""

    address: int
    fields: Any  # construct Container of BootInfo

    def __getattr__(self, name: str) -> Any:
        return self.fields[name]

    @property
    def cmdline_text(self) -> str:
        raw = bytes(self.fields.cmdline)
        end = raw.find(b"\0")
        return (raw if end < 0 else raw[:end]).decode("utf-8", "replace")

    def to_json(self) -> BootInfoDoc:
        """Every field but the reserved ones, in schema order; addresses, magic and flags as hex,
        virtual addresses canonical."""
        f = self.fields
        return {
            "address": hex(self.address),
            "magic": hex(f.magic),
            "version": f.version,
            "length": f.length,
            "memory_map": hex(f.memory_map),
            "memory_map_size": f.memory_map_size,
            "descriptor_size": f.descriptor_size,
            "descriptor_version": f.descriptor_version,
            "flags": hex(f.flags),
            "kernel_phys_base": hex(f.kernel_phys_base),
            "kernel_phys_size": f.kernel_phys_size,
            "kernel_virt_base": hex(canonical(f.kernel_virt_base)),
            "kernel_entry": hex(canonical(f.kernel_entry)),
            "scratch_base": hex(f.scratch_base),
            "scratch_count": f.scratch_count,
            "scratch_used": f.scratch_used,
            "rsdp": hex(f.rsdp),
            "fb_base": hex(f.fb_base),
            "fb_size": f.fb_size,
            "fb_width": f.fb_width,
            "fb_height": f.fb_height,
            "fb_pitch": f.fb_pitch,
            "fb_format": f.fb_format,
            "loader_tsc": f.loader_tsc,
            "cmdline_length": f.cmdline_length,
            "cmdline": self.cmdline_text,
            "cmdline_truncated": bool(f.flags & BOOT_FLAG_CMDLINE_TRUNCATED),
        }


def read_boot_info(memory: PhysicalMemory, pa: int) -> BootInfoView:
    """Decode the boot info at physical `pa`; DumpError when it is absent or not a boot info."""
    data = memory.read(pa, BootInfo.sizeof(), "boot info (struct km_boot_info)")
    info = parse(BootInfo, data, "boot info", pa)
    if info.magic != BOOT_INFO_MAGIC:
        raise DumpError(
            f"The boot info at {hex(pa)} has magic {hex(info.magic)}, not {hex(BOOT_INFO_MAGIC)}."
        )
    if info.version != BOOT_INFO_VERSION:
        raise DumpError(
            f"The boot info at {hex(pa)} has version {info.version}; kmtool reads version "
            f"{BOOT_INFO_VERSION}."
        )
    return BootInfoView(pa, info)


def find_boot_info(memory: PhysicalMemory) -> BootInfoView | None:
    """The boot info found by scanning for its magic, without the core-info block that points to it.

    Only for dumps whose core-info block cannot be read: a hit counts when `read_boot_info` accepts
    it (magic and version), and the answer is None unless exactly one hit counts, since the boot
    info records no address of its own to tell a stale copy from the real one.
    """
    found: list[BootInfoView] = []
    for pa in memory.scan(BOOT_INFO_MAGIC.to_bytes(8, "little")):
        try:
            found.append(read_boot_info(memory, pa))
        except DumpError:
            continue
        if len(found) > 1:
            return None
    return found[0] if found else None
