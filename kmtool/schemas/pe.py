"""The few PE/COFF headers the loader check reads (Microsoft PE format specification).

A UEFI application is a PE32+ image: MS-DOS stub header (`e_lfanew` at 0x3c points at the PE
signature), `PE\\0\\0`, the COFF file header, then the PE32+ optional header whose `Subsystem` says
what kind of image it is (10 = EFI application). Only the fixed part of the optional header is
declared; the data directories that follow are not needed here.
"""

from __future__ import annotations

from construct import Bytes, Const, Int8ul, Int16ul, Int32ul, Int64ul, Struct

IMAGE_FILE_MACHINE_AMD64 = 0x8664
IMAGE_FILE_EXECUTABLE_IMAGE = 0x0002
PE32_PLUS_MAGIC = 0x20B
IMAGE_SUBSYSTEM_EFI_APPLICATION = 10

DosHeader = Struct(
    "e_magic" / Const(b"MZ") * '"MZ"',
    "unused" / Bytes(58) * "the rest of the MS-DOS header; ignored by UEFI",
    "e_lfanew" / Int32ul * "file offset of the PE signature",
)

PeSignature = Const(b"PE\0\0")

CoffFileHeader = Struct(
    "Machine" / Int16ul * "target CPU (0x8664 = x86-64)",
    "NumberOfSections" / Int16ul * "entries in the section table",
    "TimeDateStamp" / Int32ul * "link time; a content hash with lld-link /Brepro",
    "PointerToSymbolTable" / Int32ul * "0 for images",
    "NumberOfSymbols" / Int32ul * "0 for images",
    "SizeOfOptionalHeader" / Int16ul * "bytes of the optional header that follows",
    "Characteristics" / Int16ul * "IMAGE_FILE_* flags (0x0002 = executable image)",
)

OptionalHeader64 = Struct(
    "Magic" / Int16ul * "0x20b = PE32+",
    "MajorLinkerVersion" / Int8ul * "linker version",
    "MinorLinkerVersion" / Int8ul * "linker version",
    "SizeOfCode" / Int32ul * "bytes of code sections",
    "SizeOfInitializedData" / Int32ul * "bytes of initialised data sections",
    "SizeOfUninitializedData" / Int32ul * "bytes of BSS",
    "AddressOfEntryPoint" / Int32ul * "RVA of the entry point (efi_main)",
    "BaseOfCode" / Int32ul * "RVA of the first code section",
    "ImageBase" / Int64ul * "preferred load address (firmware relocates as needed)",
    "SectionAlignment" / Int32ul * "section alignment in memory",
    "FileAlignment" / Int32ul * "section alignment in the file",
    "MajorOperatingSystemVersion" / Int16ul * "unused by UEFI",
    "MinorOperatingSystemVersion" / Int16ul * "unused by UEFI",
    "MajorImageVersion" / Int16ul * "unused by UEFI",
    "MinorImageVersion" / Int16ul * "unused by UEFI",
    "MajorSubsystemVersion" / Int16ul * "unused by UEFI",
    "MinorSubsystemVersion" / Int16ul * "unused by UEFI",
    "Win32VersionValue" / Int32ul * "zero",
    "SizeOfImage" / Int32ul * "bytes the image occupies in memory",
    "SizeOfHeaders" / Int32ul * "bytes of all headers, rounded to FileAlignment",
    "CheckSum" / Int32ul * "image checksum (not checked by UEFI)",
    "Subsystem" / Int16ul * "10 = EFI application, 11 = boot service driver, 12 = runtime driver",
    "DllCharacteristics" / Int16ul * "IMAGE_DLLCHARACTERISTICS_* flags",
    "SizeOfStackReserve" / Int64ul * "unused by UEFI",
    "SizeOfStackCommit" / Int64ul * "unused by UEFI",
    "SizeOfHeapReserve" / Int64ul * "unused by UEFI",
    "SizeOfHeapCommit" / Int64ul * "unused by UEFI",
    "LoaderFlags" / Int32ul * "zero",
    "NumberOfRvaAndSizes" / Int32ul * "data directories that follow",
)
