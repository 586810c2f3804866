// The slice of the UEFI interface (UEFI Specification 2.x) that the loader uses, written from the
// spec's type definitions. Only what efi/ calls is declared; every other table slot is a `void *`
// placeholder so the offsets of the slots we do call stay right (checked by _Static_assert below).
//
// Calling convention: built for x86_64-unknown-windows, so every function here is Microsoft x64
// ABI by default, which is what UEFI uses (EFIAPI spells it out).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <km/structs.h>

#define EFIAPI __attribute__((ms_abi))

typedef uint64_t UINTN;
typedef uint16_t CHAR16;
typedef uint8_t BOOLEAN;
typedef UINTN EFI_STATUS;
typedef void *EFI_HANDLE;
typedef void *EFI_EVENT;
typedef UINTN EFI_TPL;
typedef uint64_t EFI_PHYSICAL_ADDRESS;

typedef struct {
    uint32_t data1;
    uint16_t data2;
    uint16_t data3;
    uint8_t data4[8];
} EFI_GUID;

/* Status codes (Appendix D). Errors have the top bit set. */
#define EFI_ERROR_BIT (1ULL << 63)
#define EFI_ERROR(s) (((s) & EFI_ERROR_BIT) != 0)
#define EFI_ERR(n) (EFI_ERROR_BIT | (n))
#define EFI_SUCCESS 0ULL
#define EFI_LOAD_ERROR EFI_ERR(1)
#define EFI_INVALID_PARAMETER EFI_ERR(2)
#define EFI_UNSUPPORTED EFI_ERR(3)
#define EFI_BAD_BUFFER_SIZE EFI_ERR(4)
#define EFI_BUFFER_TOO_SMALL EFI_ERR(5)
#define EFI_NOT_READY EFI_ERR(6)
#define EFI_DEVICE_ERROR EFI_ERR(7)
#define EFI_WRITE_PROTECTED EFI_ERR(8)
#define EFI_OUT_OF_RESOURCES EFI_ERR(9)
#define EFI_VOLUME_CORRUPTED EFI_ERR(10)
#define EFI_VOLUME_FULL EFI_ERR(11)
#define EFI_NO_MEDIA EFI_ERR(12)
#define EFI_MEDIA_CHANGED EFI_ERR(13)
#define EFI_NOT_FOUND EFI_ERR(14)
#define EFI_ACCESS_DENIED EFI_ERR(15)
#define EFI_NO_RESPONSE EFI_ERR(16)
#define EFI_NO_MAPPING EFI_ERR(17)
#define EFI_TIMEOUT EFI_ERR(18)
#define EFI_NOT_STARTED EFI_ERR(19)
#define EFI_ALREADY_STARTED EFI_ERR(20)
#define EFI_ABORTED EFI_ERR(21)
#define EFI_ICMP_ERROR EFI_ERR(22)
#define EFI_TFTP_ERROR EFI_ERR(23)
#define EFI_PROTOCOL_ERROR EFI_ERR(24)
#define EFI_INCOMPATIBLE_VERSION EFI_ERR(25)
#define EFI_SECURITY_VIOLATION EFI_ERR(26)
#define EFI_CRC_ERROR EFI_ERR(27)
#define EFI_END_OF_MEDIA EFI_ERR(28)
#define EFI_END_OF_FILE EFI_ERR(31)
#define EFI_INVALID_LANGUAGE EFI_ERR(32)
#define EFI_COMPROMISED_DATA EFI_ERR(33)

typedef struct {
    uint64_t Signature;
    uint32_t Revision;
    uint32_t HeaderSize;
    uint32_t CRC32;
    uint32_t Reserved;
} EFI_TABLE_HEADER;

/* ---- Memory (EFI_BOOT_SERVICES.AllocatePages / GetMemoryMap) ---- */

typedef enum {
    AllocateAnyPages,
    AllocateMaxAddress,
    AllocateAddress,
} EFI_ALLOCATE_TYPE;

/* EFI_MEMORY_TYPE is a 32-bit value; the loader passes its own types (0x80000000 and up, the range
 * the spec reserves for OS loaders), so it is declared as an integer rather than an enum. */
typedef uint32_t EFI_MEMORY_TYPE;
#define EfiLoaderData 2u

/* The descriptor layout is struct km_efi_memory_descriptor in km/structs.h; the firmware's
 * descriptor_size may be larger than it, so descriptors are always stepped by descriptor_size. */
typedef struct km_efi_memory_descriptor EFI_MEMORY_DESCRIPTOR;

/* ---- Text output (EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL) ---- */

typedef struct EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL;
struct EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL {
    void *Reset;
    EFI_STATUS(EFIAPI *OutputString)(EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL *self, CHAR16 *string);
    void *TestString;
    void *QueryMode;
    void *SetMode;
    void *SetAttribute;
    void *ClearScreen;
    void *SetCursorPosition;
    void *EnableCursor;
    void *Mode;
};

/* ---- Boot services ---- */

typedef struct {
    EFI_TABLE_HEADER Hdr;
    EFI_TPL(EFIAPI *RaiseTPL)(EFI_TPL new_tpl);
    void(EFIAPI *RestoreTPL)(EFI_TPL old_tpl);
    EFI_STATUS(EFIAPI *AllocatePages)(EFI_ALLOCATE_TYPE type, EFI_MEMORY_TYPE memory_type,
                                      UINTN pages, EFI_PHYSICAL_ADDRESS *memory);
    EFI_STATUS(EFIAPI *FreePages)(EFI_PHYSICAL_ADDRESS memory, UINTN pages);
    EFI_STATUS(EFIAPI *GetMemoryMap)(UINTN *map_size, EFI_MEMORY_DESCRIPTOR *map, UINTN *map_key,
                                     UINTN *descriptor_size, uint32_t *descriptor_version);
    EFI_STATUS(EFIAPI *AllocatePool)(EFI_MEMORY_TYPE pool_type, UINTN size, void **buffer);
    EFI_STATUS(EFIAPI *FreePool)(void *buffer);
    void *CreateEvent;
    void *SetTimer;
    void *WaitForEvent;
    void *SignalEvent;
    void *CloseEvent;
    void *CheckEvent;
    void *InstallProtocolInterface;
    void *ReinstallProtocolInterface;
    void *UninstallProtocolInterface;
    EFI_STATUS(EFIAPI *HandleProtocol)(EFI_HANDLE handle, const EFI_GUID *protocol,
                                       void **interface);
    void *Reserved;
    void *RegisterProtocolNotify;
    void *LocateHandle;
    void *LocateDevicePath;
    void *InstallConfigurationTable;
    void *LoadImage;
    void *StartImage;
    void *Exit;
    void *UnloadImage;
    EFI_STATUS(EFIAPI *ExitBootServices)(EFI_HANDLE image_handle, UINTN map_key);
    void *GetNextMonotonicCount;
    void *Stall;
    EFI_STATUS(EFIAPI *SetWatchdogTimer)(UINTN timeout, uint64_t code, UINTN data_size,
                                         CHAR16 *data);
    void *ConnectController;
    void *DisconnectController;
    void *OpenProtocol;
    void *CloseProtocol;
    void *OpenProtocolInformation;
    void *ProtocolsPerHandle;
    void *LocateHandleBuffer;
    EFI_STATUS(EFIAPI *LocateProtocol)(const EFI_GUID *protocol, void *registration,
                                       void **interface);
    void *InstallMultipleProtocolInterfaces;
    void *UninstallMultipleProtocolInterfaces;
    void *CalculateCrc32;
    void *CopyMem;
    void *SetMem;
    void *CreateEventEx;
} EFI_BOOT_SERVICES;

#define TPL_HIGH_LEVEL 31

_Static_assert(offsetof(EFI_BOOT_SERVICES, AllocatePages) == 0x28, "AllocatePages slot");
_Static_assert(offsetof(EFI_BOOT_SERVICES, HandleProtocol) == 0x98, "HandleProtocol slot");
_Static_assert(offsetof(EFI_BOOT_SERVICES, ExitBootServices) == 0xe8, "ExitBootServices slot");
_Static_assert(offsetof(EFI_BOOT_SERVICES, SetWatchdogTimer) == 0x100, "SetWatchdogTimer slot");
_Static_assert(offsetof(EFI_BOOT_SERVICES, LocateProtocol) == 0x140, "LocateProtocol slot");
_Static_assert(sizeof(EFI_BOOT_SERVICES) == 0x178, "EFI_BOOT_SERVICES size");

/* ---- System table ---- */

typedef struct {
    EFI_GUID VendorGuid;
    void *VendorTable;
} EFI_CONFIGURATION_TABLE;

typedef struct {
    EFI_TABLE_HEADER Hdr;
    CHAR16 *FirmwareVendor;
    uint32_t FirmwareRevision;
    EFI_HANDLE ConsoleInHandle;
    void *ConIn;
    EFI_HANDLE ConsoleOutHandle;
    EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL *ConOut;
    EFI_HANDLE StandardErrorHandle;
    EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL *StdErr;
    void *RuntimeServices;
    EFI_BOOT_SERVICES *BootServices;
    UINTN NumberOfTableEntries;
    EFI_CONFIGURATION_TABLE *ConfigurationTable;
} EFI_SYSTEM_TABLE;

_Static_assert(offsetof(EFI_SYSTEM_TABLE, ConOut) == 0x40, "ConOut slot");
_Static_assert(offsetof(EFI_SYSTEM_TABLE, BootServices) == 0x60, "BootServices slot");
_Static_assert(offsetof(EFI_SYSTEM_TABLE, ConfigurationTable) == 0x70, "ConfigurationTable slot");

/* Configuration table GUIDs (4.6). */
#define EFI_ACPI_20_TABLE_GUID \
    { 0x8868e871, 0xe4f1, 0x11d3, { 0xbc, 0x22, 0x00, 0x80, 0xc7, 0x3c, 0x81, 0xd0 } }
#define ACPI_TABLE_GUID \
    { 0xeb9d2d30, 0x2d88, 0x11d3, { 0x9a, 0x16, 0x00, 0x90, 0x27, 0x3f, 0xc1, 0x4d } }

/* ---- Loaded image protocol (9.1) ---- */

#define EFI_LOADED_IMAGE_PROTOCOL_GUID \
    { 0x5b1b31a1, 0x9562, 0x11d2, { 0x8e, 0x3f, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b } }

typedef struct {
    uint32_t Revision;
    EFI_HANDLE ParentHandle;
    EFI_SYSTEM_TABLE *SystemTable;
    EFI_HANDLE DeviceHandle;
    void *FilePath;
    void *Reserved;
    uint32_t LoadOptionsSize;
    void *LoadOptions;
    void *ImageBase;
    uint64_t ImageSize;
    EFI_MEMORY_TYPE ImageCodeType;
    EFI_MEMORY_TYPE ImageDataType;
    void *Unload;
} EFI_LOADED_IMAGE_PROTOCOL;

_Static_assert(offsetof(EFI_LOADED_IMAGE_PROTOCOL, DeviceHandle) == 0x18, "DeviceHandle slot");
_Static_assert(offsetof(EFI_LOADED_IMAGE_PROTOCOL, ImageBase) == 0x40, "ImageBase slot");

/* ---- Simple file system and file protocols (13.4, 13.5) ---- */

#define EFI_SIMPLE_FILE_SYSTEM_PROTOCOL_GUID \
    { 0x964e5b22, 0x6459, 0x11d2, { 0x8e, 0x39, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b } }
#define EFI_FILE_INFO_GUID \
    { 0x09576e92, 0x6d3f, 0x11d2, { 0x8e, 0x39, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b } }

#define EFI_FILE_MODE_READ 0x0000000000000001ULL
#define EFI_FILE_DIRECTORY 0x0000000000000010ULL

typedef struct EFI_FILE_PROTOCOL EFI_FILE_PROTOCOL;
struct EFI_FILE_PROTOCOL {
    uint64_t Revision;
    EFI_STATUS(EFIAPI *Open)(EFI_FILE_PROTOCOL *self, EFI_FILE_PROTOCOL **new_handle,
                             CHAR16 *file_name, uint64_t open_mode, uint64_t attributes);
    EFI_STATUS(EFIAPI *Close)(EFI_FILE_PROTOCOL *self);
    void *Delete;
    EFI_STATUS(EFIAPI *Read)(EFI_FILE_PROTOCOL *self, UINTN *buffer_size, void *buffer);
    void *Write;
    void *GetPosition;
    void *SetPosition;
    EFI_STATUS(EFIAPI *GetInfo)(EFI_FILE_PROTOCOL *self, const EFI_GUID *information_type,
                                UINTN *buffer_size, void *buffer);
    void *SetInfo;
    void *Flush;
};

typedef struct EFI_SIMPLE_FILE_SYSTEM_PROTOCOL EFI_SIMPLE_FILE_SYSTEM_PROTOCOL;
struct EFI_SIMPLE_FILE_SYSTEM_PROTOCOL {
    uint64_t Revision;
    EFI_STATUS(EFIAPI *OpenVolume)(EFI_SIMPLE_FILE_SYSTEM_PROTOCOL *self,
                                   EFI_FILE_PROTOCOL **root);
};

typedef struct {
    uint16_t Year;
    uint8_t Month, Day, Hour, Minute, Second, Pad1;
    uint32_t Nanosecond;
    int16_t TimeZone;
    uint8_t Daylight, Pad2;
} EFI_TIME;

typedef struct {
    uint64_t Size;
    uint64_t FileSize;
    uint64_t PhysicalSize;
    EFI_TIME CreateTime;
    EFI_TIME LastAccessTime;
    EFI_TIME ModificationTime;
    uint64_t Attribute;
    CHAR16 FileName[];
} EFI_FILE_INFO;

_Static_assert(offsetof(EFI_FILE_INFO, Attribute) == 0x48, "EFI_FILE_INFO.Attribute");

/* ---- Graphics output protocol (12.9) ---- */

#define EFI_GRAPHICS_OUTPUT_PROTOCOL_GUID \
    { 0x9042a9de, 0x23dc, 0x4a38, { 0x96, 0xfb, 0x7a, 0xde, 0xd0, 0x80, 0x51, 0x6a } }

#define PixelBltOnly 3u

typedef struct {
    uint32_t Version;
    uint32_t HorizontalResolution;
    uint32_t VerticalResolution;
    uint32_t PixelFormat; /* EFI_GRAPHICS_PIXEL_FORMAT */
    uint32_t PixelInformation[4];
    uint32_t PixelsPerScanLine;
} EFI_GRAPHICS_OUTPUT_MODE_INFORMATION;

typedef struct {
    uint32_t MaxMode;
    uint32_t Mode;
    EFI_GRAPHICS_OUTPUT_MODE_INFORMATION *Info;
    UINTN SizeOfInfo;
    EFI_PHYSICAL_ADDRESS FrameBufferBase;
    UINTN FrameBufferSize;
} EFI_GRAPHICS_OUTPUT_PROTOCOL_MODE;

typedef struct {
    void *QueryMode;
    void *SetMode;
    void *Blt;
    EFI_GRAPHICS_OUTPUT_PROTOCOL_MODE *Mode;
} EFI_GRAPHICS_OUTPUT_PROTOCOL;
