// fw_cfg file writes through the DMA interface; see include/lib/fwcfg.h.
//
// Selecting: write a 16-bit item to the selector port, then read the item's bytes one at a time
// from the data port. Item KM_FW_CFG_SIGNATURE reads "QEMU", item KM_FW_CFG_ID a little-endian
// feature word, item KM_FW_CFG_FILE_DIR the directory: a big-endian u32 count, then per file
// { be32 size, be16 item, u16 reserved, char name[56] }.
//
// Writing (the data port is read-only since QEMU 2.4): a struct km_fw_cfg_dma_access, every field
// big-endian, whose physical address goes big-endian to KM_FW_CFG_PORT_DMA (high half) and
// KM_FW_CFG_PORT_DMA + 4 (low half, which starts the transfer). Under KVM and TCG alike QEMU
// completes the transfer before the port write returns; the loop on `control` is for any other
// implementation. QEMU clears `control`, or leaves KM_FW_CFG_DMA_ERROR in it.
#include "lib/fwcfg.h"

#include <km/layout.h>
#include <km/structs.h>
#include <x86/insn.h>

#include "mm/bootstrap.h"

#define NAME_BYTES 56
#define MAX_FILES 0x1000
#define SPIN_LIMIT 100000000u

static uint8_t read_u8(void)
{
    return inb(KM_FW_CFG_PORT_DATA);
}

static uint32_t read_be(unsigned bytes)
{
    uint32_t value = 0;
    while (bytes--)
        value = (value << 8) | read_u8();
    return value;
}

static bool name_is(const char entry[NAME_BYTES], const char *want)
{
    unsigned i = 0;
    for (; i < NAME_BYTES && want[i]; i++)
        if (entry[i] != want[i])
            return false;
    return i < NAME_BYTES && entry[i] == 0;
}

static enum fwcfg_status find_file(const char *name, uint16_t *item, uint32_t *size)
{
    outw(KM_FW_CFG_PORT_SELECTOR, KM_FW_CFG_SIGNATURE);
    if (read_u8() != 'Q' || read_u8() != 'E' || read_u8() != 'M' || read_u8() != 'U')
        return FWCFG_NO_DEVICE;
    outw(KM_FW_CFG_PORT_SELECTOR, KM_FW_CFG_ID);
    uint32_t features = read_u8();   // little-endian: the low byte holds the DMA bit
    if (!(features & KM_FW_CFG_FEATURE_DMA))
        return FWCFG_NO_DMA;
    outw(KM_FW_CFG_PORT_SELECTOR, KM_FW_CFG_FILE_DIR);
    uint32_t count = read_be(4);
    for (uint32_t i = 0; i < count && i < MAX_FILES; i++) {
        uint32_t file_size = read_be(4);
        uint16_t file_item = (uint16_t)read_be(2);
        read_be(2);
        char entry[NAME_BYTES];
        for (unsigned k = 0; k < NAME_BYTES; k++)
            entry[k] = (char)read_u8();
        if (name_is(entry, name)) {
            *item = file_item;
            *size = file_size;
            return FWCFG_OK;
        }
    }
    return FWCFG_NO_FILE;
}

static struct km_fw_cfg_dma_access dma_access __attribute__((aligned(16)));

enum fwcfg_status fwcfg_write_file(const char *name, const void *data, uint32_t size)
{
    uint16_t item;
    uint32_t file_size;
    enum fwcfg_status status = find_file(name, &item, &file_size);
    if (status != FWCFG_OK)
        return status;
    if (file_size != size)
        return FWCFG_BAD_SIZE;
    volatile struct km_fw_cfg_dma_access *d = &dma_access;
    d->control = __builtin_bswap32(((uint32_t)item << 16) | KM_FW_CFG_DMA_SELECT |
                                   KM_FW_CFG_DMA_WRITE);
    d->length = __builtin_bswap32(size);
    d->address = __builtin_bswap64(kernel_virt_to_phys(data));
    uint64_t at = kernel_virt_to_phys(&dma_access);
    __asm__ volatile("" ::: "memory");   // the descriptor is in memory before QEMU reads it
    outl(KM_FW_CFG_PORT_DMA, __builtin_bswap32((uint32_t)(at >> 32)));
    outl(KM_FW_CFG_PORT_DMA + 4, __builtin_bswap32((uint32_t)at));
    for (uint32_t spin = 0; spin < SPIN_LIMIT; spin++) {
        uint32_t control = __builtin_bswap32(d->control);
        if (control & KM_FW_CFG_DMA_ERROR)
            return FWCFG_DMA_FAILED;
        if (control == 0)
            return FWCFG_OK;
    }
    return FWCFG_DMA_FAILED;
}

const char *fwcfg_status_text(enum fwcfg_status status)
{
    switch (status) {
    case FWCFG_OK:
        return "ok";
    case FWCFG_NO_DEVICE:
        return "no fw_cfg device";
    case FWCFG_NO_DMA:
        return "fw_cfg without DMA";
    case FWCFG_NO_FILE:
        return "no such fw_cfg file";
    case FWCFG_BAD_SIZE:
        return "fw_cfg file of another size";
    case FWCFG_DMA_FAILED:
        return "fw_cfg DMA error";
    }
    return "unknown fw_cfg status";
}
