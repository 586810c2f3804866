"""How the kernel tells QEMU where its core-info block is, so every dump says it (docs/design.md §5.3).

QEMU's `-device vmcoreinfo` (QEMU docs/specs/vmcoreinfo.rst) adds the fw_cfg file `etc/vmcoreinfo`:
one `FwCfgVmcoreinfo` that the guest writes with fw_cfg's DMA interface (QEMU docs/specs/fw_cfg.rst;
the I/O-port data register is read-only). From then on `dump-guest-memory` copies `size` bytes of
guest memory at `paddr` into the dump: into the PT_NOTE segment of an ELF core, and into the
vmcoreinfo area and the note area of a kdump-compressed file. Those bytes must be one whole ELF note
(`Elf64Nhdr`, name, descriptor) or QEMU ignores them.

kmtool's note is `CoreInfoNote`: an ELF note named `VMCOREINFO` (the name Linux uses, so crash and
makedumpfile show it as the dump's vmcoreinfo) whose descriptor is text in Linux's `KEY=VALUE` line
form, one line:

    KMTOOL_COREINFO=0x000000000010b000\\n      (the core-info block's physical address, 16 digits)

The kernel fills it (kernel/coreinfo.c) and writes the fw_cfg file once, right after the core-info
block's address is known. `core_info_address()` is the one reader of the text, for every dump
format and for the raw dump's sidecar.
"""

from construct import Bytes, Int16ul, Int32ub, Int32ul, Int64ub, Int64ul, Struct

FW_CFG_VMCOREINFO_FILE = "etc/vmcoreinfo"
VMCOREINFO_FORMAT_ELF = 1  # host_format bit / guest_format value: the region is an ELF note

# fw_cfg's DMA interface (QEMU docs/specs/fw_cfg.rst): the guest writes the big-endian 64-bit
# physical address of an FwCfgDmaAccess to FW_CFG_PORT_DMA (high half) and FW_CFG_PORT_DMA + 4 (low
# half, which starts the transfer); QEMU clears `control` when done, or leaves FW_CFG_DMA_ERROR.
FW_CFG_PORT_SELECTOR = 0x510
FW_CFG_PORT_DATA = 0x511
FW_CFG_PORT_DMA = 0x514
FW_CFG_SIGNATURE = 0x0000  # item: "QEMU"
FW_CFG_ID = 0x0001  # item: le32 feature bits
FW_CFG_FEATURE_DMA = 0x2  # FW_CFG_ID bit: the DMA interface exists
FW_CFG_FILE_DIR = 0x0019  # item: be32 count, then { be32 size, be16 item, u16, char name[56] }
FW_CFG_DMA_ERROR = 0x01
FW_CFG_DMA_SELECT = 0x08
FW_CFG_DMA_WRITE = 0x10

FwCfgVmcoreinfo = Struct(
    "host_format" / Int16ul * "formats QEMU accepts (bit VMCOREINFO_FORMAT_ELF); set by QEMU",
    "guest_format" / Int16ul * "VMCOREINFO_FORMAT_ELF: the region is an ELF note",
    "size" / Int32ul * "bytes of the region (the whole note)",
    "paddr" / Int64ul * "physical address of the region",
)

FwCfgDmaAccess = Struct(
    "control" / Int32ub * "big-endian: item << 16 | FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE",
    "length" / Int32ub * "big-endian: bytes to transfer",
    "address" / Int64ub * "big-endian: physical address of the guest's buffer",
)

NOTE_NAME = b"VMCOREINFO\x00"  # n_namesz counts the NUL
NOTE_NAME_FIELD = 12  # the name padded to 4 bytes
NOTE_TYPE = 0
NOTE_KEY = b"KMTOOL_COREINFO="
NOTE_DIGITS = 16
NOTE_TEXT_BYTES = len(NOTE_KEY) + 2 + NOTE_DIGITS + 1  # KEY=0x<16 digits>\n
NOTE_TEXT_FIELD = (NOTE_TEXT_BYTES + 3) & ~3

CoreInfoNote = Struct(
    "n_namesz" / Int32ul * "len(NOTE_NAME): 11",
    "n_descsz" / Int32ul * "NOTE_TEXT_BYTES: the text without padding",
    "n_type" / Int32ul * "NOTE_TYPE: 0",
    "name" / Bytes(NOTE_NAME_FIELD) * "VMCOREINFO and NULs",
    "text" / Bytes(NOTE_TEXT_FIELD) * "KMTOOL_COREINFO=0x<16 hex digits> and a newline, NUL-padded",
)


def core_info_address(text: bytes) -> int | None:
    """The address a VMCOREINFO descriptor's `KMTOOL_COREINFO=0x...` line gives, or None when the
    text has no such line (another kernel's vmcoreinfo, say) or its value is not a hex number."""
    for line in text.split(b"\n"):
        if line.startswith(NOTE_KEY):
            value = line[len(NOTE_KEY) :].strip(b"\0 \r")
            try:
                return int(value, 16) if value.startswith(b"0x") else None
            except ValueError:
                return None
    return None


def note_text(address: int) -> bytes:
    """The descriptor the kernel writes for a block at `address` (tests and fixtures build with it)."""
    return NOTE_KEY + f"0x{address:0{NOTE_DIGITS}x}\n".encode()
