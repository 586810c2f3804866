// Check and load the kernel ELF.
//
// The file is untrusted input: every offset and size read from it is checked against the file size
// (without overflow) before it is used, and every PT_LOAD must lie inside the kernel-image region
// KM_REGION_KERNEL_IMAGE_START..END (inclusive end). A bad field stops the boot with a message that
// names the field and its value, e.g.
//   fatal: kernel.elf: PT_LOAD 1 p_vaddr 0x400000 + p_memsz 0x1000 is outside the kernel-image
//          region 0xffffff0000000000..0xffffff003fffffff: EFI_LOAD_ERROR
//
// Loading: one KM_MEMTYPE_KERNEL block below 4 GiB covers the page-rounded span of all segments;
// segment bytes sit at (vaddr - virt_base) inside it, so the span maps linearly. The block is zeroed
// first, which zeroes every BSS tail.

#include "loader.h"

/* ELF64 structures and values (System V gABI, x86-64 psABI). */
typedef struct {
    uint8_t e_ident[16];
    uint16_t e_type;
    uint16_t e_machine;
    uint32_t e_version;
    uint64_t e_entry;
    uint64_t e_phoff;
    uint64_t e_shoff;
    uint32_t e_flags;
    uint16_t e_ehsize;
    uint16_t e_phentsize;
    uint16_t e_phnum;
    uint16_t e_shentsize;
    uint16_t e_shnum;
    uint16_t e_shstrndx;
} Elf64_Ehdr;

typedef struct {
    uint32_t p_type;
    uint32_t p_flags;
    uint64_t p_offset;
    uint64_t p_vaddr;
    uint64_t p_paddr;
    uint64_t p_filesz;
    uint64_t p_memsz;
    uint64_t p_align;
} Elf64_Phdr;

_Static_assert(sizeof(Elf64_Ehdr) == 64, "Elf64_Ehdr");
_Static_assert(sizeof(Elf64_Phdr) == 56, "Elf64_Phdr");

#define ELF_MAGIC 0x464c457fu /* "\x7fELF" read little-endian */
#define ELFCLASS64 2
#define ELFDATA2LSB 1
#define ET_EXEC 2
#define EM_X86_64 62
#define PT_LOAD 1
#define PF_X 1
#define PF_W 2

#define BAD(...) fatal(EFI_LOAD_ERROR, "kernel.elf: " __VA_ARGS__)

/* offset + size <= limit, with no overflow. */
static bool fits(uint64_t offset, uint64_t size, uint64_t limit)
{
    return offset <= limit && size <= limit - offset;
}

static uint64_t page_down(uint64_t a)
{
    return a & ~(uint64_t)(KM_PAGE_SIZE - 1);
}

static uint64_t page_up(uint64_t a)
{
    return page_down(a + KM_PAGE_SIZE - 1);
}

static void check_header(const struct kernel_file *file, const Elf64_Ehdr *eh)
{
    uint32_t magic;
    memcpy(&magic, eh->e_ident, sizeof magic);
    if (magic != ELF_MAGIC)
        BAD("e_ident magic is 0x%08x, expected 0x%08x (\\x7fELF)", magic, ELF_MAGIC);
    if (eh->e_ident[4] != ELFCLASS64)
        BAD("e_ident class is %u, expected %u (ELFCLASS64)", eh->e_ident[4], ELFCLASS64);
    if (eh->e_ident[5] != ELFDATA2LSB)
        BAD("e_ident data is %u, expected %u (little-endian)", eh->e_ident[5], ELFDATA2LSB);
    if (eh->e_type != ET_EXEC)
        BAD("e_type is %u, expected %u (ET_EXEC)", eh->e_type, ET_EXEC);
    if (eh->e_machine != EM_X86_64)
        BAD("e_machine is %u, expected %u (x86-64)", eh->e_machine, EM_X86_64);
    if (eh->e_phentsize != sizeof(Elf64_Phdr))
        BAD("e_phentsize is %u, expected %u", eh->e_phentsize, (unsigned)sizeof(Elf64_Phdr));
    if (eh->e_phnum == 0)
        BAD("e_phnum is 0: no program headers");
    if (!fits(eh->e_phoff, (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr), file->size))
        BAD("program headers at e_phoff 0x%llx (%u x %u bytes) run past the end of the file "
            "(%llu bytes)",
            eh->e_phoff, eh->e_phnum, (unsigned)sizeof(Elf64_Phdr), file->size);
}

static void check_segment(const struct kernel_file *file, unsigned index, const Elf64_Phdr *ph,
                          struct kernel_image *image)
{
    if (ph->p_filesz > ph->p_memsz)
        BAD("PT_LOAD %u p_filesz 0x%llx is larger than p_memsz 0x%llx", index, ph->p_filesz,
            ph->p_memsz);
    if (!fits(ph->p_offset, ph->p_filesz, file->size))
        BAD("PT_LOAD %u p_offset 0x%llx + p_filesz 0x%llx runs past the end of the file "
            "(%llu bytes)",
            index, ph->p_offset, ph->p_filesz, file->size);
    if (ph->p_vaddr < KM_REGION_KERNEL_IMAGE_START || ph->p_vaddr > KM_REGION_KERNEL_IMAGE_END ||
        ph->p_memsz - 1 > KM_REGION_KERNEL_IMAGE_END - ph->p_vaddr)
        BAD("PT_LOAD %u p_vaddr 0x%llx + p_memsz 0x%llx is outside the kernel-image region "
            "0x%llx..0x%llx",
            index, ph->p_vaddr, ph->p_memsz, KM_REGION_KERNEL_IMAGE_START,
            KM_REGION_KERNEL_IMAGE_END);
    if (image->segment_count == KERNEL_MAX_SEGMENTS)
        BAD("more than %u non-empty PT_LOAD segments", KERNEL_MAX_SEGMENTS);

    /* Program headers of PT_LOAD are sorted by p_vaddr (gABI); require it, and no overlap. */
    if (image->segment_count) {
        const struct kernel_segment *prev = &image->segments[image->segment_count - 1];
        if (ph->p_vaddr < prev->vaddr + prev->memsz)
            BAD("PT_LOAD %u p_vaddr 0x%llx overlaps or precedes the previous segment "
                "(0x%llx + 0x%llx)",
                index, ph->p_vaddr, prev->vaddr, prev->memsz);
    }

    image->segments[image->segment_count++] = (struct kernel_segment){
        .vaddr = ph->p_vaddr,
        .memsz = ph->p_memsz,
        .offset = ph->p_offset,
        .filesz = ph->p_filesz,
        .writable = (ph->p_flags & PF_W) != 0,
        .executable = (ph->p_flags & PF_X) != 0,
    };
}

void elf_check(const struct kernel_file *file, struct kernel_image *image)
{
    memset(image, 0, sizeof *image);
    if (file->size < sizeof(Elf64_Ehdr))
        BAD("file is %llu bytes, smaller than an ELF64 header (%u bytes)", file->size,
            (unsigned)sizeof(Elf64_Ehdr));

    Elf64_Ehdr eh;
    memcpy(&eh, file->data, sizeof eh);
    check_header(file, &eh);

    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, file->data + eh.e_phoff + (uint64_t)i * sizeof ph, sizeof ph);
        if (ph.p_type == PT_LOAD && ph.p_memsz != 0)
            check_segment(file, i, &ph, image);
    }
    if (image->segment_count == 0)
        BAD("no PT_LOAD segment with a non-zero p_memsz");

    const struct kernel_segment *first = &image->segments[0];
    const struct kernel_segment *last = &image->segments[image->segment_count - 1];
    image->virt_base = page_down(first->vaddr);
    /* last->vaddr + last->memsz <= KM_REGION_KERNEL_IMAGE_END + 1: no overflow on rounding up. */
    image->size = page_up(last->vaddr + last->memsz) - image->virt_base;

    bool entry_ok = false;
    for (unsigned i = 0; i < image->segment_count; i++) {
        const struct kernel_segment *s = &image->segments[i];
        if (s->executable && eh.e_entry >= s->vaddr && eh.e_entry - s->vaddr < s->memsz)
            entry_ok = true;
    }
    if (!entry_ok)
        BAD("e_entry 0x%llx is not inside an executable PT_LOAD segment", eh.e_entry);
    image->entry = eh.e_entry;
}

void elf_load(const struct kernel_file *file, struct kernel_image *image)
{
    uint64_t pages = image->size / KM_PAGE_SIZE;
    EFI_PHYSICAL_ADDRESS base = LOADER_MAX_ADDRESS;
    TRY(BS->AllocatePages(AllocateMaxAddress, (EFI_MEMORY_TYPE)KM_MEMTYPE_KERNEL, pages, &base),
        "allocate %llu pages below 4 GiB for the kernel image", pages);
    image->phys_base = base;

    uint8_t *block = (uint8_t *)(uintptr_t)base;
    memset(block, 0, image->size);
    for (unsigned i = 0; i < image->segment_count; i++) {
        const struct kernel_segment *s = &image->segments[i];
        memcpy(block + (s->vaddr - image->virt_base), file->data + s->offset, s->filesz);
    }
}
