"""Per-CPU register state recorded in a dump (QEMU ELF notes, or the raw dump's layout sidecar)."""

from __future__ import annotations

from dataclasses import dataclass, field

from kmtool.dump.document import CpuDoc, DescriptorTableDoc
from kmtool.layout.table import canonical

CR0_PG = 1 << 31
CR4_PAE = 1 << 5
CR4_LA57 = 1 << 12
CR3_ADDRESS_MASK = 0x000F_FFFF_FFFF_F000  # bits 51:12 (as in every paging entry); the low bits
# are PCID/PWT/PCD


@dataclass
class CpuState:
    """Registers of one virtual CPU; fields a source does not record are None."""

    index: int
    cr0: int | None = None
    cr2: int | None = None
    cr3: int | None = None
    cr4: int | None = None
    efer: int | None = None
    rip: int | None = None
    rsp: int | None = None
    rflags: int | None = None
    cs: int | None = None
    ss: int | None = None
    gdt: tuple[int, int] | None = None  # (base, limit)
    idt: tuple[int, int] | None = None
    tr: tuple[int, int, int] | None = None  # task register: (selector, base, limit) of its cache
    kernel_gs_base: int | None = None
    registers: dict[str, int] = field(default_factory=dict)  # general registers, when recorded
    source: str = ""

    @property
    def page_table_root(self) -> int | None:
        """Physical address of the PML4 that CR3 names (flag and PCID bits cleared)."""
        return None if self.cr3 is None else self.cr3 & CR3_ADDRESS_MASK

    @property
    def paging_mode(self) -> str:
        """ "4-level", "5-level", "legacy", "off" or "unknown" from CR0/CR4."""
        if self.cr0 is None or self.cr4 is None:
            return "unknown"
        if not self.cr0 & CR0_PG:
            return "off"
        if not self.cr4 & CR4_PAE:
            return "legacy"
        return "5-level" if self.cr4 & CR4_LA57 else "4-level"

    def to_json(self) -> CpuDoc:
        """A JSON-ready dict: addresses and registers as "0x..." strings, absent ones null."""

        def hx(value: int | None) -> str | None:
            return None if value is None else hex(value)

        def table(value: tuple[int, int] | None) -> DescriptorTableDoc | None:
            return (
                None
                if value is None
                else {"base": hex(canonical(value[0])), "limit": hex(value[1])}
            )

        return {
            "index": self.index,
            "source": self.source,
            "rip": hx(None if self.rip is None else canonical(self.rip)),
            "rsp": hx(None if self.rsp is None else canonical(self.rsp)),
            "rflags": hx(self.rflags),
            "cr0": hx(self.cr0),
            "cr2": hx(None if self.cr2 is None else canonical(self.cr2)),
            "cr3": hx(self.cr3),
            "cr4": hx(self.cr4),
            "efer": hx(self.efer),
            "cs": hx(self.cs),
            "ss": hx(self.ss),
            "gdt": table(self.gdt),
            "idt": table(self.idt),
            "kernel_gs_base": hx(self.kernel_gs_base),
            "paging": self.paging_mode,
            "registers": {name: hex(value) for name, value in self.registers.items()},
        }
