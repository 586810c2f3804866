"""Post-link checks: the build refuses outputs the loader or the firmware would reject.

kernel.elf  ELF64 little-endian x86-64 ET_EXEC; every PT_LOAD and the entry point (`_start`, in an
            executable segment) inside the `kernel-image` region; no W+X segment; no page shared
            by two segments; the image fits the region. These are the checks of
            kmtool.layout.kernel_checks that a loadable kernel must pass (the symbol checks stay
            in `kmtool layout report`).
BOOTX64.EFI PE32+ for x86-64, an executable image, subsystem 10 (EFI application), an entry point
            (`loader_checks`).

build.ninja runs `python -m kmtool.build.checks kernel|loader FILE --name NAME` on the linker's
temporary output before renaming it into place, so a file that fails never appears under its
final name. Each function raises BuildError with one sentence per failed check.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from kmtool.check import Check
from kmtool.errors import BuildError, KmtoolError


def check_kernel(path: Path, name: str | None = None) -> None:
    """Raise BuildError unless `path` is a kernel ELF the loader accepts; `name` labels it."""
    from kmtool.errors import KernelElfError
    from kmtool.layout import kernel_checks as kc
    from kmtool.layout import table

    label = name or str(path)
    try:
        image = kc.load_kernel(path)
    except KernelElfError as err:
        raise BuildError(str(err).replace(str(path), label)) from None
    image = dataclasses.replace(image, path=label)
    regions = table.REGIONS
    results = [
        kc.check_format(image),
        kc.check_segments_in_image(image, regions),
        kc.check_entry(image),
        kc.check_no_wx(image),
        kc.check_segment_pages(image),
        kc.check_image_size(image, regions),
    ]
    failed = [c for c in results if not c.ok]
    if failed:
        details = " ".join(c.detail for c in failed)
        raise BuildError(f"The kernel `{label}` fails the post-link checks: {details}")


@dataclass(frozen=True)
class PeInfo:
    """The loader image fields the checks look at."""

    machine: int
    characteristics: int
    magic: int
    subsystem: int
    entry_rva: int
    image_base: int


def read_pe(path: Path, name: str | None = None) -> PeInfo:
    """Parse the PE headers of `path`; raises BuildError when it is not a PE image."""
    import construct

    from kmtool.schemas import pe

    label = name or str(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise BuildError(f"The loader `{label}` cannot be read: {err.strerror}.") from None
    try:
        dos = pe.DosHeader.parse(data)
        at = dos.e_lfanew
        pe.PeSignature.parse(data[at : at + 4])
        coff = pe.CoffFileHeader.parse(data[at + 4 :])
        opt_at = at + 4 + pe.CoffFileHeader.sizeof()
        opt = pe.OptionalHeader64.parse(data[opt_at : opt_at + coff.SizeOfOptionalHeader])
    except construct.ConstructError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise BuildError(
            f"The loader `{label}` is not a PE32+ image: its headers do not parse ({first})."
        ) from None
    return PeInfo(
        machine=coff.Machine,
        characteristics=coff.Characteristics,
        magic=opt.Magic,
        subsystem=opt.Subsystem,
        entry_rva=opt.AddressOfEntryPoint,
        image_base=opt.ImageBase,
    )


def loader_checks(info: PeInfo) -> list[Check]:
    """Every check of a loader's PE headers, in order: what the firmware needs to start it."""
    from kmtool.schemas import pe

    def check(name: str, ok: bool, passed: str, failed: str) -> Check:
        return Check(name, ok, passed if ok else failed)

    return [
        check("loader-machine", info.machine == pe.IMAGE_FILE_MACHINE_AMD64, "machine x86-64",
              f"machine {info.machine:#06x}, not x86-64 (0x8664)"),
        check("loader-pe32-plus", info.magic == pe.PE32_PLUS_MAGIC, "a PE32+ optional header",
              f"optional-header magic {info.magic:#05x}, not PE32+ (0x20b)"),
        check("loader-executable", bool(info.characteristics & pe.IMAGE_FILE_EXECUTABLE_IMAGE),
              "marked as an executable image", "not marked as an executable image"),
        check("loader-subsystem", info.subsystem == pe.IMAGE_SUBSYSTEM_EFI_APPLICATION,
              "subsystem EFI application (10)",
              f"subsystem {info.subsystem}, not EFI application (10)"),
        check("loader-entry", info.entry_rva != 0, f"entry point at RVA {info.entry_rva:#x}",
              "no entry point"),
    ]  # fmt: skip


def check_loader(path: Path, name: str | None = None) -> PeInfo:
    """Raise BuildError unless `path` is a PE32+ x86-64 EFI application; return its headers."""
    label = name or str(path)
    info = read_pe(path, name)
    failed = [c for c in loader_checks(info) if not c.ok]
    if failed:
        details = "; ".join(c.detail for c in failed)
        raise BuildError(f"The loader `{label}` is unusable: {details}.")
    return info


def main(argv: list[str] | None = None) -> int:
    """`python -m kmtool.build.checks kernel|loader FILE [--name NAME]`: exit 1 on a failure."""
    parser = argparse.ArgumentParser(prog="python -m kmtool.build.checks")
    parser.add_argument("kind", choices=("kernel", "loader"))
    parser.add_argument("file", type=Path)
    parser.add_argument("--name", help="the name to report the file under")
    args = parser.parse_args(argv)
    try:
        if args.kind == "kernel":
            check_kernel(args.file, args.name)
        else:
            check_loader(args.file, args.name)
    except KmtoolError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
