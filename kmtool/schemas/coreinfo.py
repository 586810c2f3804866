"""The core-info block: the kernel's map to itself, kept in its data so a bare dump explains itself.

`kmtool inspect` finds it through the kernel ELF symbol `km_core_info`, or by scanning physical memory
for the two magic words and accepting a hit only when `self_phys` equals the address it was found at.
The kernel writes the magic at run time (the block lives in .bss), so copies of the kernel file that the
loader left in memory never match.
"""

from construct import Bytes, Int32ul, Int64ul, Struct

# The two magic words are CORE_INFO_MAGIC and CORE_INFO_MAGIC2 of signatures.py.
CORE_INFO_VERSION = 3  # 2: fault_phys (the fault record); 3: aspaces_phys

CoreInfo = Struct(
    "magic" / Int64ul * "KM_CORE_INFO_MAGIC",
    "magic2" / Int64ul * "KM_CORE_INFO_MAGIC2",
    "version" / Int32ul * "KM_CORE_INFO_VERSION",
    "length" / Int32ul * "sizeof(struct km_core_info)",
    "self_phys" / Int64ul * "physical address of this block (scan hits are checked against it)",
    "boot_info_phys" / Int64ul * "physical address of the loader's struct km_boot_info",
    "kernel_pml4_phys" / Int64ul * "physical address of the kernel's own PML4 (0 until built)",
    "frame_state_phys" / Int64ul * "physical address of struct km_frame_allocator",
    "heap_state_phys" / Int64ul * "physical address of struct km_heap",
    "page_state_phys" / Int64ul * "physical address of struct km_page_stats",
    "kernel_phys_base" / Int64ul * "physical address the kernel image was loaded at",
    "kernel_virt_base" / Int64ul * "link address of the kernel image",
    "kernel_size" / Int64ul * "bytes of the kernel image (through the end of .bss)",
    "offset_map_base" / Int64ul * "KM_OFFSET_MAP_BASE: virtual = physical + this",
    "offset_map_page_size" / Int64ul * "page size the offset map was built with (1 GiB or 2 MiB)",
    "offset_map_size" / Int64ul * "bytes of physical memory the offset map covers",
    "kernel_space_base" / Int64ul * "KM_KERNEL_SPACE_BASE",
    "heap_base" / Int64ul * "KM_HEAP_BASE",
    "heap_size" / Int64ul * "KM_HEAP_SIZE",
    "entry_tsc" / Int64ul * "TSC at kernel entry",
    "ready_tsc" / Int64ul * "TSC when the kernel reported ready (0 before)",
    "build_id" / Bytes(16) * "first 16 bytes of kernel.elf's GNU build id (ld.lld --build-id=sha1)",
    "fault_phys" / Int64ul * "physical address of struct km_fault_record (kmtool/schemas/fault.py)",
    "aspaces_phys" / Int64ul * "physical address of struct km_aspace_list (schemas/aspace.py)",
)
