// Interfaces between the loader's files. One file per concern; main.c calls them in boot order.
//
// Error policy: nothing here returns an error. Every failure goes through fatal(), which prints
// `fatal: <what>: <EFI status name>` on ConOut (while boot services run), COM1 and debugcon, then
// writes KM_EXIT_FAIL to the debug-exit port (QEMU exit status 35) and halts.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <km/layout.h>
#include <km/structs.h>

#include "uefi.h"

/* The loader's own image handle and the firmware tables, set first thing in efi_main. */
extern EFI_HANDLE loader_image;
extern EFI_SYSTEM_TABLE *ST;
extern EFI_BOOT_SERVICES *BS;

/* Below 4 GiB: every loader allocation is placed at or under this address (AllocateMaxAddress). */
#define LOADER_MAX_ADDRESS 0xffffffffull

/* ---- console.c: COM1 + debugcon always, ConOut for fatal messages while boot services run ---- */

/* Print one formatted line (a newline is added) on COM1 and debugcon. printf subset: %d %u %x %X
 * %s %c %p %%, flags '0' and width, length modifiers l, ll, z. */
void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Stop using ConOut: called right before the first ExitBootServices attempt. */
void console_firmware_gone(void);

/* Print `fatal: <formatted what>: <status name>` everywhere, exit with KM_EXIT_FAIL, halt. */
_Noreturn void fatal(EFI_STATUS status, const char *what_fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* TRY(expr, "what", ...): evaluate an EFI_STATUS expression; on an error status, fatal(). */
#define TRY(expr, ...)                            \
    do {                                          \
        EFI_STATUS try_status_ = (expr);          \
        if (EFI_ERROR(try_status_))               \
            fatal(try_status_, __VA_ARGS__);      \
    } while (0)

/* ---- status.c ---- */

/* The spec's name of a status code ("EFI_NOT_FOUND"), or "EFI status 0x..." for unknown codes. */
const char *efi_status_name(EFI_STATUS status);

/* ---- string.c: what clang may call in freestanding code ---- */

void *memset(void *dst, int value, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);

/* ---- file.c ---- */

struct kernel_file {
    const uint8_t *data; /* pool memory (EfiLoaderData) holding the whole file */
    uint64_t size;
};

/* Read \kernel.elf from the volume the loader itself was loaded from. */
void file_read_kernel(struct kernel_file *out);
void file_release(struct kernel_file *file);

/* ---- elf.c ---- */

#define KERNEL_MAX_SEGMENTS 16

struct kernel_segment {
    uint64_t vaddr;  /* link address of the first byte */
    uint64_t memsz;  /* bytes in memory (>= filesz; the rest is zeroed) */
    uint64_t offset; /* file offset of the first byte */
    uint64_t filesz; /* bytes copied from the file */
    bool writable;
    bool executable;
};

struct kernel_image {
    struct kernel_segment segments[KERNEL_MAX_SEGMENTS];
    unsigned segment_count;
    uint64_t entry;     /* e_entry, inside an executable segment */
    uint64_t virt_base; /* lowest segment address rounded down to a page */
    uint64_t size;      /* bytes from virt_base to the end of the highest segment, page rounded */
    uint64_t phys_base; /* the KM_MEMTYPE_KERNEL block holding the image (elf_load) */
};

/* Validate the ELF header and every PT_LOAD against the file size and the kernel-image region. */
void elf_check(const struct kernel_file *file, struct kernel_image *image);
/* Allocate one KM_MEMTYPE_KERNEL block for the span, zero it, copy each segment's file bytes. */
void elf_load(const struct kernel_file *file, struct kernel_image *image);

/* ---- paging.c ---- */

struct entry_tables {
    uint64_t scratch_base; /* KM_SCRATCH_PAGES pages of KM_MEMTYPE_SCRATCH; page 0 is the PML4 */
    uint64_t scratch_used; /* pages taken from page 0 upwards for the entry tables */
    bool nx;               /* NX bits are used (CPU has NX); EFER.NXE must be set before CR3 */
};

/* Build the entry page tables of the handoff contract (see paging.c) in fresh scratch pages.
 * jump_code is the address of the code that loads CR3 and jumps, which must stay mapped. */
void paging_build(const struct kernel_image *image, uint64_t jump_code,
                  struct entry_tables *tables);

/* ---- memmap.c ---- */

struct memmap {
    EFI_MEMORY_DESCRIPTOR *buffer; /* where GetMemoryMap writes */
    uint64_t capacity;             /* bytes available at buffer */
    uint64_t size;                 /* bytes the last successful GetMemoryMap returned */
    UINTN key;
    UINTN descriptor_size;
    uint32_t descriptor_version;
};

/* Bytes the memory map needs right now (GetMemoryMap with an empty buffer). */
uint64_t memmap_needed(void);
/* GetMemoryMap into map->buffer; returns the firmware's status (EFI_BUFFER_TOO_SMALL, ...). */
EFI_STATUS memmap_fetch(struct memmap *map);
/* Sort the map in place by physical_start, stepping by descriptor_size; calls no boot services,
 * so it is safe after ExitBootServices (and the map must not be fetched again afterwards). */
void memmap_sort(struct memmap *map);

/* ---- handoff.c ---- */

/* Allocate the one KM_MEMTYPE_HANDOFF block (boot info, then room for the memory map, with slack
 * for the map growing), point map at its map area and fill the fixed boot-info fields. */
struct km_boot_info *handoff_alloc(struct memmap *map);
void handoff_fill_kernel(struct km_boot_info *info, const struct kernel_image *image,
                         const struct entry_tables *tables);
/* Record the final memory map (after the last GetMemoryMap) in the boot info. */
void handoff_fill_memmap(struct km_boot_info *info, const struct memmap *map);

/* ---- fwcfg.c ---- */

/* Read QEMU fw_cfg file opt/kmtool/cmdline into info->cmdline; no fw_cfg or no file = empty. */
void fwcfg_read_cmdline(struct km_boot_info *info);

/* ---- firmware.c ---- */

/* ACPI RSDP from the configuration table (ACPI 2.0 GUID, else 1.0); 0 when absent. */
void firmware_find_rsdp(struct km_boot_info *info);
/* GOP framebuffer (fb_* fields); all zero when there is no linear framebuffer. */
void firmware_find_framebuffer(struct km_boot_info *info);

/* ---- jump.c ---- */

/* Address of the code that switches CR3 and jumps; paging_build keeps it mapped. */
uint64_t jump_code_address(void);
/* ExitBootServices with a fresh map into the handoff block, retrying on a stale key. */
void exit_boot_services(struct memmap *map, struct km_boot_info *info);
/* cli, EFER.NXE, CR0.WP, CR3 = scratch page 0, jump to the entry with rdi = info (System V). */
_Noreturn void enter_kernel(struct km_boot_info *info, const struct kernel_image *image,
                            const struct entry_tables *tables);
