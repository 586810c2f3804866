// The core-info block; see include/lib/coreinfo.h.
#include "lib/coreinfo.h"

#include "arch/cpu.h"
#include "lib/bootinfo.h"
#include "lib/fault.h"
#include "lib/fwcfg.h"
#include "lib/printf.h"
#include "lib/string.h"
#include "mm/aspace.h"
#include "mm/bootstrap.h"
#include "mm/paging.h"

struct km_core_info km_core_info;

// The ELF note QEMU copies into every dump (docs/design.md §5.3, kmtool/schemas/vmcoreinfo.py),
// and the fw_cfg record that says where it is.
static struct km_core_info_note core_info_note __attribute__((aligned(64)));
static struct km_fw_cfg_vmcoreinfo vmcoreinfo __attribute__((aligned(16)));

extern char __kernel_start[], __kernel_end[];

// The GNU build-id note ld.lld writes (--build-id=sha1), kept by kernel.ld between these symbols:
// an ELF note header, the name "GNU" padded to 4 bytes, then the id (20 bytes for SHA-1).
extern const char __build_id_note_start[], __build_id_note_end[];

#define NT_GNU_BUILD_ID 3

struct elf_note_header {
    uint32_t namesz;
    uint32_t descsz;
    uint32_t type;
};

void build_id_read(uint8_t out[KM_BUILD_ID_BYTES])
{
    memset(out, 0, KM_BUILD_ID_BYTES);
    const char *note = __build_id_note_start;
    size_t size = (size_t)(__build_id_note_end - __build_id_note_start);
    struct elf_note_header h;
    const size_t name = 4;   // "GNU\0", already a multiple of 4
    if (size < sizeof(h) + name)
        return;
    memcpy(&h, note, sizeof(h));
    if (h.type != NT_GNU_BUILD_ID || h.namesz != name || memcmp(note + sizeof(h), "GNU", name) ||
        h.descsz > size - sizeof(h) - name)
        return;
    size_t n = h.descsz < KM_BUILD_ID_BYTES ? h.descsz : KM_BUILD_ID_BYTES;
    memcpy(out, note + sizeof(h) + name, n);
}

void build_id_hex(char out[2 * KM_BUILD_ID_BYTES + 1])
{
    static const char digits[] = "0123456789abcdef";
    uint8_t id[KM_BUILD_ID_BYTES];
    build_id_read(id);
    for (int i = 0; i < KM_BUILD_ID_BYTES; i++) {
        out[2 * i] = digits[id[i] >> 4];
        out[2 * i + 1] = digits[id[i] & 15];
    }
    out[2 * KM_BUILD_ID_BYTES] = 0;
}

void coreinfo_init(void)
{
    struct km_core_info *ci = &km_core_info;
    ci->version = KM_CORE_INFO_VERSION;
    ci->length = sizeof(*ci);
    ci->self_phys = kernel_virt_to_phys(ci);
    ci->boot_info_phys = boot_info_phys;
    ci->frame_state_phys = kernel_virt_to_phys(&km_frames);
    ci->heap_state_phys = kernel_virt_to_phys(&km_heap);
    ci->page_state_phys = kernel_virt_to_phys(&km_page_stats);
    ci->fault_phys = kernel_virt_to_phys(&km_fault_record);
    ci->aspaces_phys = kernel_virt_to_phys(&km_aspaces);
    ci->kernel_phys_base = boot_info->kernel_phys_base;
    ci->kernel_virt_base = (uint64_t)(uintptr_t)__kernel_start;
    ci->kernel_size = (uint64_t)(__kernel_end - __kernel_start);
    ci->offset_map_base = KM_OFFSET_MAP_BASE;
    ci->kernel_space_base = KM_KERNEL_SPACE_BASE;
    ci->heap_base = KM_HEAP_BASE;
    ci->heap_size = KM_HEAP_SIZE;
    ci->entry_tsc = kernel_entry_tsc;
    build_id_read(ci->build_id);
    // The magic words last: a scan that finds them finds a complete block.
    ci->magic2 = KM_CORE_INFO_MAGIC2;
    ci->magic = KM_CORE_INFO_MAGIC;
}

void coreinfo_after_bootstrap(void)
{
    km_core_info.kernel_pml4_phys = kernel_pml4;
    km_core_info.offset_map_page_size = offset_map.page_size;
    km_core_info.offset_map_size = offset_map.size;
}

static void note_fill(struct km_core_info_note *note, uint64_t address)
{
    static const char digits[] = "0123456789abcdef";
    static const char name[] = KM_VMCOREINFO_NOTE_NAME;
    static const char key[] = KM_VMCOREINFO_NOTE_KEY;
    note->n_namesz = sizeof(name);
    note->n_descsz = KM_VMCOREINFO_NOTE_TEXT_BYTES;
    note->n_type = KM_VMCOREINFO_NOTE_TYPE;
    memcpy(note->name, name, sizeof(name));
    uint8_t *t = note->text;
    memcpy(t, key, sizeof(key) - 1);
    t += sizeof(key) - 1;
    *t++ = '0';
    *t++ = 'x';
    for (int i = KM_VMCOREINFO_NOTE_DIGITS - 1; i >= 0; i--)
        *t++ = (uint8_t)digits[(address >> (4 * i)) & 15];
    *t = '\n';
}

void coreinfo_publish(void)
{
    note_fill(&core_info_note, km_core_info.self_phys);
    vmcoreinfo.host_format = 0;
    vmcoreinfo.guest_format = KM_VMCOREINFO_FORMAT_ELF;
    vmcoreinfo.size = sizeof(core_info_note);
    vmcoreinfo.paddr = kernel_virt_to_phys(&core_info_note);
    enum fwcfg_status status =
        fwcfg_write_file(KM_FW_CFG_VMCOREINFO_FILE, &vmcoreinfo, sizeof(vmcoreinfo));
    if (status == FWCFG_OK)
        kprintf("coreinfo: published at 0x%lx through %s\n", km_core_info.self_phys,
                KM_FW_CFG_VMCOREINFO_FILE);
    else
        kprintf("coreinfo: not published (%s): dumps are found by a scan\n",
                fwcfg_status_text(status));
}

uint64_t coreinfo_ready(void)
{
    km_core_info.ready_tsc = rdtsc();
    return km_core_info.ready_tsc - km_core_info.entry_tsc;
}
