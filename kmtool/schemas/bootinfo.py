"""The boot handoff: what the UEFI loader gives the kernel (docs/design.md §3).

The loader fills one `BootInfo` in memory of type KM_MEMTYPE_HANDOFF and jumps to the kernel entry with
its physical address in %rdi. Guarantees written down here, relied on by the kernel and kmtool:

- `memory_map` points to a copy of the firmware map taken right before ExitBootServices succeeded,
  `memory_map_size` bytes long, stepped by `descriptor_size` (never by sizeof).
- The map is sorted by `physical_start`, ascending. UEFI promises no order (OVMF lists RAM above
  4 GiB before the reserved and MMIO ranges below it), so the loader sorts its copy after
  ExitBootServices succeeded; descriptors themselves are passed on unchanged.
- The kernel image occupies `kernel_phys_size` bytes from `kernel_phys_base` (one contiguous,
  page-aligned allocation of type KM_MEMTYPE_KERNEL) and is mapped at `kernel_virt_base`.
- `scratch_count` pages from `scratch_base` (type KM_MEMTYPE_SCRATCH) are the kernel's for early page
  tables; page 0 of them is the live PML4 at entry.
- Everything the loader allocates lies below 4 GiB, and the entry PML4 maps the low 4 GiB both at
  identity and at the offset-map base, so the kernel can read all of it at entry.
"""

from construct import Bytes, Int32ul, Int64ul, Struct

BOOT_INFO_MAGIC = int.from_bytes(b"KMBOOTI1", "little")
BOOT_INFO_VERSION = 1
CMDLINE_MAX = 256

BootInfo = Struct(
    "magic" / Int64ul * "KM_BOOT_INFO_MAGIC, the bytes 'KMBOOTI1'",
    "version" / Int32ul * "KM_BOOT_INFO_VERSION; bumped on any incompatible change",
    "length" / Int32ul * "sizeof(struct km_boot_info) as the loader knew it",
    "memory_map" / Int64ul * "physical address of the firmware memory map copy",
    "memory_map_size" / Int64ul * "size of the memory map in bytes",
    "descriptor_size" / Int64ul * "bytes from one descriptor to the next (firmware's, not sizeof)",
    "descriptor_version" / Int32ul * "EFI_MEMORY_DESCRIPTOR version reported by the firmware",
    "flags" / Int32ul * "KM_BOOT_FLAG_* bits",
    "kernel_phys_base" / Int64ul * "physical address of the loaded kernel image (page aligned)",
    "kernel_phys_size" / Int64ul * "bytes of physical memory the kernel image occupies",
    "kernel_virt_base" / Int64ul * "virtual address that kernel_phys_base is mapped at",
    "kernel_entry" / Int64ul * "virtual entry point the loader jumped to",
    "scratch_base"
    / Int64ul
    * "physical address of the first scratch page; page 0 is the entry PML4",
    "scratch_count" / Int64ul * "number of 4 KiB scratch pages",
    "scratch_used"
    / Int64ul
    * "scratch pages the loader used for the entry page tables (from page 0)",
    "rsdp" / Int64ul * "physical address of the ACPI RSDP, 0 when the firmware has none",
    "fb_base" / Int64ul * "physical address of the GOP framebuffer, 0 when there is none",
    "fb_size" / Int64ul * "framebuffer size in bytes",
    "fb_width" / Int32ul * "framebuffer width in pixels",
    "fb_height" / Int32ul * "framebuffer height in pixels",
    "fb_pitch" / Int32ul * "pixels per scan line",
    "fb_format" / Int32ul * "EFI_GRAPHICS_PIXEL_FORMAT",
    "loader_tsc" / Int64ul * "TSC read just before the jump to the kernel",
    "cmdline_length" / Int32ul * "bytes of cmdline in use, without the terminating NUL",
    "reserved0" / Int32ul * "zero",
    "cmdline"
    / Bytes(CMDLINE_MAX)
    * "kernel command line (from QEMU fw_cfg opt/kmtool/cmdline), NUL-terminated",
)

# Bits of BootInfo.flags.
BOOT_FLAG_CMDLINE_TRUNCATED = 1 << 0
