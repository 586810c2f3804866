"""Reading memory dumps (`kmtool inspect`): one concern per module, leaves first.

document    the shape of the `--json` document: one TypedDict per part, which every to_json
            returns and render reads (document_descriptors: the descriptor tables' part)
memory      guest-physical memory over one mmap of the file (ranges, bounded bulk reads, scans)
elfcore     QEMU ELF cores: PT_LOADs and the per-CPU "QEMU"/NT_PRSTATUS notes
source      open a dump of either kind (ELF core, raw image with optional layout file)
cpu         per-CPU register state
records     construct schema -> numpy dtype / field offsets, for bulk decoding
regions     region names from the layout table, vectorised
levels      the 4 paging levels as data, effective permissions
pagetable   the full 4-level walk into merged ranges
translate   single addresses: one walk level by level, batch translations
kernel_elf  symbols of the kernel ELF (`--kernel`)
coreinfo    find and decode the core-info block (symbol or magic scan)
bootinfo    the loader's boot info
memmap      the firmware memory map, stepped by descriptor size
frames      the frame allocator's free-span list
chase       a linked list of physical nodes, chased window by window, partial at a fault
heap        the buddy heap's blocks and free lists
descriptors each CPU's IDT, GDT and TSS, read through its CR3
checks      the cross-checks, one function per named row
inspection  one inspection: roots, every part, checks, the JSON document
render      the human output, drawn from the JSON document (render_kernel, render_descriptors:
            the second-wave parts; render_flow: summary values that wrap between items)
pagecount   the size of a page-table walk, counted over distinct tables before it is built
distinct    the sorted distinct values of an array (np.unique without its numpy.ma import)
kernel_state the parts a core-info block leads to, imported only when there is one
"""
