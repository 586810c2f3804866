// Read \kernel.elf from the volume the loader was loaded from: LoadedImage->DeviceHandle names
// that volume, its SimpleFileSystem protocol opens the root directory, EFI_FILE_INFO gives the size.
// The whole file lands in one pool buffer (EfiLoaderData), released once the image is loaded.

#include "loader.h"

#define KERNEL_PATH u"\\kernel.elf"
#define KERNEL_NAME "\\kernel.elf"

static const EFI_GUID loaded_image_guid = EFI_LOADED_IMAGE_PROTOCOL_GUID;
static const EFI_GUID file_system_guid = EFI_SIMPLE_FILE_SYSTEM_PROTOCOL_GUID;
static const EFI_GUID file_info_guid = EFI_FILE_INFO_GUID;

static uint64_t file_size(EFI_FILE_PROTOCOL *file)
{
    /* EFI_FILE_INFO plus the file name; the name is short, 512 bytes is plenty. */
    uint64_t storage[64];
    UINTN size = sizeof storage;
    TRY(file->GetInfo(file, &file_info_guid, &size, storage), "get file info of %s", KERNEL_NAME);
    const EFI_FILE_INFO *info = (const EFI_FILE_INFO *)storage;
    if (info->Attribute & EFI_FILE_DIRECTORY)
        fatal(EFI_NOT_FOUND, "%s is a directory", KERNEL_NAME);
    return info->FileSize;
}

void file_read_kernel(struct kernel_file *out)
{
    EFI_LOADED_IMAGE_PROTOCOL *self;
    TRY(BS->HandleProtocol(loader_image, &loaded_image_guid, (void **)&self),
        "open the loader's LoadedImage protocol");

    EFI_SIMPLE_FILE_SYSTEM_PROTOCOL *volume;
    TRY(BS->HandleProtocol(self->DeviceHandle, &file_system_guid, (void **)&volume),
        "open the SimpleFileSystem of the loader's volume");

    EFI_FILE_PROTOCOL *root, *file;
    TRY(volume->OpenVolume(volume, &root), "open the loader's volume");
    TRY(root->Open(root, &file, KERNEL_PATH, EFI_FILE_MODE_READ, 0), "open %s", KERNEL_NAME);

    uint64_t size = file_size(file);
    if (size == 0)
        fatal(EFI_LOAD_ERROR, "%s is empty (0 bytes)", KERNEL_NAME);

    void *data;
    TRY(BS->AllocatePool(EfiLoaderData, size, &data), "allocate %llu bytes for %s", size,
        KERNEL_NAME);

    uint64_t done = 0;
    while (done < size) {
        UINTN chunk = size - done;
        TRY(file->Read(file, &chunk, (uint8_t *)data + done), "read %s at offset %llu",
            KERNEL_NAME, done);
        if (chunk == 0)
            fatal(EFI_END_OF_FILE, "read %s: got %llu of %llu bytes", KERNEL_NAME, done, size);
        done += chunk;
    }
    file->Close(file);
    root->Close(root);

    out->data = data;
    out->size = size;
}

void file_release(struct kernel_file *file)
{
    BS->FreePool((void *)file->data);
    file->data = 0;
    file->size = 0;
}
