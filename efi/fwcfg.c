// The kernel command line from QEMU's fw_cfg device (QEMU docs/specs/fw_cfg.rst), I/O-port
// interface: write a 16-bit item selector to port 0x510, then read the item's bytes one at a time
// from port 0x511. Item 0x0000 holds the signature "QEMU"; item 0x0019 is the file directory: a
// big-endian u32 count, then per file { be32 size, be16 select, u16 reserved, char name[56] }.
//
// KM_FW_CFG_CMDLINE absent (or no fw_cfg at all) = empty command line. The text is cut at the
// first NUL, a trailing newline (as `-fw_cfg file=` often has) is dropped, and at most
// KM_CMDLINE_MAX - 1 bytes are kept; a longer command line sets KM_BOOT_FLAG_CMDLINE_TRUNCATED.

#include "cpu.h"
#include "loader.h"

#define FW_CFG_PORT_SELECT 0x510
#define FW_CFG_PORT_DATA 0x511
#define FW_CFG_SIGNATURE 0x0000
#define FW_CFG_FILE_DIR 0x0019
#define FW_CFG_NAME_SIZE 56

static void select_item(uint16_t item)
{
    outw(FW_CFG_PORT_SELECT, item);
}

static uint8_t read_u8(void)
{
    return inb(FW_CFG_PORT_DATA);
}

static uint32_t read_be(unsigned bytes)
{
    uint32_t value = 0;
    while (bytes--)
        value = (value << 8) | read_u8();
    return value;
}

static bool name_is(const char *name, const char *want)
{
    unsigned i = 0;
    for (; i < FW_CFG_NAME_SIZE && want[i]; i++)
        if (name[i] != want[i])
            return false;
    return i < FW_CFG_NAME_SIZE && name[i] == 0;
}

/* Select the file named `name`; returns its size, or -1 when there is no such file. */
static int64_t select_file(const char *name)
{
    select_item(FW_CFG_SIGNATURE);
    if (read_u8() != 'Q' || read_u8() != 'E' || read_u8() != 'M' || read_u8() != 'U')
        return -1;

    select_item(FW_CFG_FILE_DIR);
    uint32_t count = read_be(4);
    for (uint32_t i = 0; i < count && i < 0x1000; i++) {
        uint32_t size = read_be(4);
        uint16_t item = (uint16_t)read_be(2);
        read_be(2); /* reserved */
        char entry[FW_CFG_NAME_SIZE];
        for (unsigned k = 0; k < FW_CFG_NAME_SIZE; k++)
            entry[k] = (char)read_u8();
        if (name_is(entry, name)) {
            select_item(item);
            return size;
        }
    }
    return -1;
}

void fwcfg_read_cmdline(struct km_boot_info *info)
{
    /* Keep firmware timer callbacks (which may use fw_cfg themselves) off the ports meanwhile. */
    EFI_TPL old = BS->RaiseTPL(TPL_HIGH_LEVEL);
    int64_t size = select_file(KM_FW_CFG_CMDLINE);
    uint32_t length = 0;
    bool truncated = false, ended = false;
    for (int64_t i = 0; i < size; i++) {
        uint8_t c = read_u8();
        if (c == 0)
            ended = true;
        if (ended)
            continue;
        if (length < KM_CMDLINE_MAX - 1)
            info->cmdline[length++] = c;
        else if (!(c == '\n' && i == size - 1))
            truncated = true;
    }
    BS->RestoreTPL(old);

    while (length && (info->cmdline[length - 1] == '\n' || info->cmdline[length - 1] == '\r'))
        length--;
    info->cmdline[length] = 0;
    info->cmdline_length = length;
    if (truncated)
        info->flags |= KM_BOOT_FLAG_CMDLINE_TRUNCATED;
}
