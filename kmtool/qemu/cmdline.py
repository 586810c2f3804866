"""Build the QEMU command line for one run, and parse the sizes `--memory` accepts.

The machine (docs/design.md §6.1):

    qemu-system-x86_64 -nodefaults -no-user-config -no-reboot -display none
      -accel tcg|kvm -cpu max|host|MODEL -smp N
      -object memory-backend-ram,id=ram,size=S,reserve=off -machine q35,memory-backend=ram -m S
      -drive if=pflash,format=raw,unit=0,readonly=on,file=OVMF_CODE      (shared, never written)
      -drive if=pflash,format=raw,unit=1,file=VARS_COPY                  (a fresh copy per run)
      -drive if=none,id=disk0,format=raw,readonly=on,file=IMAGE -device virtio-blk-pci,drive=disk0
      -serial stdio                             (QEMU's stdout carries COM1 only; stdin is null)
      -chardev file,id=debugcon,path=DEBUGCON_LOG -device isa-debugcon,iobase=0xe9,chardev=debugcon
      -device isa-debug-exit,iobase=0xf4,iosize=0x04
      -device vmcoreinfo                        (the kernel publishes its core-info address)
      [-fw_cfg name=opt/kmtool/cmdline,file=CMDLINE_FILE]
      [-qmp unix:SOCKET,server=on,wait=off]  [-gdb tcp:127.0.0.1:PORT -S]

- RAM is a `memory-backend-ram` with `reserve=off`: QEMU then maps guest RAM without
  reserving swap, so a 64 GiB or 256 GiB guest starts on a 24 GiB host (plain `-m 64G` is refused)
  and pages the guest never touches cost nothing. One form for every size keeps the layout of every
  run the same. A live run (`ram_file`) backs the same `ram` object with a file instead,
  `memory-backend-file,id=ram,size=S,mem-path=FILE,share=on`: QEMU creates FILE sparse and maps
  it shared, so the guest's writes land in FILE's page cache, where kmtool maps them too
  (docs/design.md §12); a shared file mapping reserves no swap either, and untouched pages stay
  holes.
- The disk is read-only (virtio-blk, since QEMU's SATA disks cannot be read-only), so a run never
  modifies the built image. A directory is served as a read-only FAT disk (vvfat), which tests use.
- The kernel command line goes through a fw_cfg *file* rather than `string=`: QEMU splits option
  values on commas, and a file carries any text unchanged.
- `-device vmcoreinfo` gives the kernel the fw_cfg file `etc/vmcoreinfo`, through which it tells
  QEMU where its core-info note is; every `dump-guest-memory` then carries that note, so a dump
  needs no scan to be decoded (docs/design.md §5.3, kmtool/schemas/vmcoreinfo.py).
- The gdb stub listens on the loopback address only (`-s` would listen on every interface).
- Paths inside option values have their commas doubled (QEMU's escape). That is why debugcon is
  spelled as a -chardev: the `-debugcon file:PATH` shorthand takes PATH raw, with no escape.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kmtool.errors import ValidationError
from kmtool.layout.table import (
    DEBUG_EXIT_PORT,
    DEBUGCON_PORT,
    FW_CFG_CMDLINE,
    OFFSET_MAP_SIZE,
    MiB,
)
from kmtool.units import suffix_size_text

QEMU = "qemu-system-x86_64"
MIN_MEMORY = 64 * MiB  # OVMF itself needs most of this
DEFAULT_MEMORY = 512 * MiB  # the `--memory` default
MAX_MEMORY = OFFSET_MAP_SIZE  # what the kernel's offset map can reach (one PML4 entry)
GDB_PORT = 1234  # the default `--gdb-port` (the port QEMU's `-s` shorthand uses)
GDB_HOST = "127.0.0.1"  # the stub is for the local debugger only


def parse_size(text: str) -> int:
    """Bytes for a guest RAM size like `512M`, `3G`, `1.5G` or `256GiB` (the project's one size
    syntax, `kmtool.layout.cost.parse_size`), checked for what kmtool's machine can have: whole
    MiB, at least 64 MiB, at most 512 GiB. Raises ValidationError naming the text."""
    from kmtool.layout.cost import parse_size as parse_any_size

    size = parse_any_size(text)
    if not MIN_MEMORY <= size <= MAX_MEMORY:
        raise ValidationError(
            f"The memory size `{text}` is outside {suffix_size_text(MIN_MEMORY)}.."
            f"{suffix_size_text(MAX_MEMORY)} (OVMF needs the minimum; the kernel's offset map reaches "
            "the maximum)."
        )
    if size % MiB:
        raise ValidationError(f"The memory size `{text}` is not a whole number of MiB.")
    return size


def escape(value: str | Path) -> str:
    """`value` made safe inside a QEMU option value (commas doubled)."""
    return str(value).replace(",", ",,")


@dataclass(frozen=True)
class MachineSpec:
    """Everything the command line depends on. Paths are used as given (not resolved)."""

    image: Path  # a raw disk image, or a directory served as a FAT disk
    firmware_code: Path
    firmware_vars: Path  # the per-run copy, writable
    debugcon_log: Path
    memory: int = DEFAULT_MEMORY
    cpus: int = 1
    accel: str = "tcg"
    cpu: str = "max"
    cmdline_file: Path | None = None  # fw_cfg opt/kmtool/cmdline; None = no command line
    qmp_socket: Path | None = None  # a QMP server socket, for stop/dump/quit
    gdb: bool = False  # gdb stub on GDB_HOST:gdb_port, CPUs start stopped
    gdb_port: int = GDB_PORT
    qemu: str = QEMU
    # Where QEMU logs every exception it delivers (`-d int,cpu_reset`), usually a FIFO
    # (kmtool/qemu/exceptions.py). With one, or in a live run, a reset pauses the VM instead of
    # ending QEMU, so a triple fault keeps its state for QMP; else `-no-reboot`, QEMU exits on it.
    exception_log: Path | None = None
    ram_file: Path | None = None  # a live run: guest RAM is this shared file (created by QEMU)


def build_argv(spec: MachineSpec) -> list[str]:
    """The full QEMU argv (program first) for `spec`."""
    size = suffix_size_text(spec.memory)
    if spec.image.is_dir():
        disk = f"fat:{escape(spec.image)}"
    else:
        disk = escape(spec.image)
    argv = [
        spec.qemu,
        "-nodefaults",
        "-no-user-config",
        "-no-reboot",
        "-display", "none",
        "-accel", spec.accel,
        "-cpu", spec.cpu,
        "-smp", str(spec.cpus),
        "-object", _ram_backend(spec, size),
        "-machine", "q35,memory-backend=ram",
        "-m", size,
        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={escape(spec.firmware_code)}",
        "-drive", f"if=pflash,format=raw,unit=1,file={escape(spec.firmware_vars)}",
        "-drive", f"if=none,id=disk0,format=raw,readonly=on,file={disk}",
        "-device", "virtio-blk-pci,drive=disk0",
        "-serial", "stdio",
        "-chardev", f"file,id=debugcon,path={escape(spec.debugcon_log)}",
        "-device", f"isa-debugcon,iobase={DEBUGCON_PORT:#x},chardev=debugcon",
        "-device", f"isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04",
        "-device", "vmcoreinfo",
    ]  # fmt: skip
    if spec.cmdline_file is not None:
        argv += ["-fw_cfg", f"name={FW_CFG_CMDLINE},file={escape(spec.cmdline_file)}"]
    if spec.qmp_socket is not None:
        argv += ["-qmp", f"unix:{escape(spec.qmp_socket)},server=on,wait=off"]
    if spec.gdb:
        argv += ["-gdb", f"tcp:{GDB_HOST}:{spec.gdb_port}", "-S"]
    if spec.exception_log is not None or spec.ram_file is not None:
        argv[argv.index("-no-reboot")] = "-action"
        argv.insert(argv.index("-action") + 1, "reboot=shutdown,shutdown=pause")
    if spec.exception_log is not None:
        argv += ["-d", "int,cpu_reset", "-D", escape(spec.exception_log)]
    return argv


def _ram_backend(spec: MachineSpec, size: str) -> str:
    """The `-object` value of guest RAM: anonymous memory, or a live run's shared file."""
    if spec.ram_file is None:
        return f"memory-backend-ram,id=ram,size={size},reserve=off"
    return f"memory-backend-file,id=ram,size={size},mem-path={escape(spec.ram_file)},share=on"


def kernel_cmdline(text: str, hold: bool) -> str:
    """The command line the kernel gets: `text`, plus the word `hold` when kmtool will dump."""
    if hold and "hold" not in text.split():
        return f"{text.rstrip()} hold" if text.strip() else "hold"
    return text
