"""Compiler and linker flags for the kernel and the loader, and the reasons for each choice.

Kernel code model: small code model, position-independent (`-fpie`), linked by ld.lld as a
static, non-PIE executable at the fixed link address KM_KERNEL_LINK_BASE (PML4 entry 510,
0xffffff0000100000). The alternatives:
  - `-mcmodel=kernel` assumes every symbol lies in the top 2 GiB (0xffffffff80000000 and up) and
    uses sign-extended 32-bit absolute relocations (R_X86_64_32S); at PML4 510 those overflow and
    ld.lld refuses to link.
  - `-mcmodel=large` links anywhere but loads every address with a 64-bit `movabs`, which makes
    the code noticeably bigger and slower.
  - PIE code reaches data RIP-relatively (+-2 GiB around the instruction), which works at any
    address as long as the image itself is under 2 GiB; the linker relaxes GOT loads to direct
    `lea`s, so the static link needs no dynamic relocations and the loader never relocates.

Kernel code is built without SSE/AVX (`-mgeneral-regs-only`: the kernel does not save vector
state) and without the red zone (interrupts push onto the current stack).

Debug and release: both build with -O2 so the code under test is the code that ships, and both
keep -g (debug info is not loaded by the loader; `kmtool run --gdb` and addr2line want it).
The default build defines KM_DEBUG=1 (kernel and loader debug assertions and checks on);
`--release` defines KM_DEBUG=0 and NDEBUG.

Reproducibility: `-ffile-prefix-map=ROOT=.` and `-fdebug-compilation-dir=.` keep the source root's
absolute path out of the debug info, and lld-link's `/Brepro` replaces the PE time stamp with a
hash of the output, so the same sources give the same bytes in any checkout and build directory.

Build id: kernel.elf is linked with `--build-id=sha1`, a SHA-1 that ld.lld computes over the
output itself (so it is as reproducible as the bytes are, and changes whenever they do). The
linker script keeps the note in the rodata segment between `__build_id_note_start` and
`__build_id_note_end`; the kernel copies the first 16 bytes of the id into km_core_info.build_id
and prints it, and `kmtool inspect --kernel` compares a dump's copy with the ELF's note.
"""

from __future__ import annotations

KERNEL_TARGET = "x86_64-unknown-none-elf"
LOADER_TARGET = "x86_64-unknown-windows"

KERNEL_LINKER_SCRIPT = "kernel/arch/x86_64/kernel.ld"

_WARNINGS = ["-Wall", "-Wextra", "-Werror"]


def _mode(release: bool) -> list[str]:
    return ["-DKM_DEBUG=0", "-DNDEBUG"] if release else ["-DKM_DEBUG=1"]


def kernel_cflags(root: str, release: bool) -> list[str]:
    """Flags for every kernel .c and .S file (paths relative to the source root `root`)."""
    return [
        f"--target={KERNEL_TARGET}",
        "-ffreestanding",
        "-fno-builtin",
        "-nostdlib",
        "-mno-red-zone",
        "-mgeneral-regs-only",
        "-mcmodel=small",
        "-fpie",
        # Reach extern data PC-relatively, not through the GOT: ld.lld relaxes GOT-indirect
        # `add`/`cmp`/`test` of an extern symbol into a 32-bit absolute immediate in a non-PIE
        # link, which overflows at the higher-half link address (R_X86_64_REX_GOTPCRELX out of
        # range). Every symbol the kernel references is defined inside kernel.elf.
        "-fdirect-access-external-data",
        "-fno-stack-protector",
        "-fno-omit-frame-pointer",  # panic backtraces walk %rbp
        "-fno-asynchronous-unwind-tables",  # nothing unwinds; the linker script drops .eh_frame
        "-std=c11",
        "-O2",
        "-g",
        *_WARNINGS,
        f"-ffile-prefix-map={root}=.",
        "-fdebug-compilation-dir=.",  # the assembler ignores the prefix map for its line table
        *_mode(release),
        "-Iinclude",
        "-Ikernel/include",
    ]


def kernel_ldflags() -> list[str]:
    """ld.lld flags for kernel.elf; `-L include/km` lets the script `INCLUDE layout.ld`."""
    return [
        "-static",
        "-nostdlib",
        "-z",
        "max-page-size=4096",
        "--no-dynamic-linker",
        "--build-id=sha1",
        "-T",
        KERNEL_LINKER_SCRIPT,
        "-Linclude/km",
    ]


def loader_cflags(root: str, release: bool) -> list[str]:
    """Flags for every efi/*.c file: the Microsoft x64 ABI of UEFI, no C library."""
    return [
        f"--target={LOADER_TARGET}",
        "-ffreestanding",
        "-fshort-wchar",  # CHAR16 strings: L"..." must be 16-bit
        "-mno-red-zone",
        "-fno-stack-protector",
        "-mno-stack-arg-probe",  # no __chkstk calls: there is no runtime library to provide it
        "-std=c11",
        "-O2",
        *_WARNINGS,
        f"-ffile-prefix-map={root}=.",
        *_mode(release),
        "-Iinclude",
        "-Iefi",
    ]


def loader_ldflags() -> list[str]:
    """lld-link flags for BOOTX64.EFI."""
    return [
        "-subsystem:efi_application",
        "-entry:efi_main",
        "-nodefaultlib",
        "-Brepro",
    ]
