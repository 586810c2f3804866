"""Build the "hello" UEFI application (hello_efi.c) into a directory laid out as an ESP.

Shared by benchmarks/bench_boot.py (the firmware-only yardstick) and tests/qemu (the runner's own
tests, which must not depend on the real kernel). The runner serves the directory as a read-only
FAT disk, so no disk image is needed.

    esp = build_hello(Path("/tmp/hello"), "pass")   # -> /tmp/hello/esp with EFI/BOOT/BOOTX64.EFI
"""

from __future__ import annotations

import subprocess
from pathlib import Path

SOURCE = Path(__file__).with_name("hello_efi.c")

# variant -> extra clang defines (see hello_efi.c)
VARIANTS: dict[str, list[str]] = {
    "pass": [],
    "fail": ["-DHELLO_EXIT=0x11"],
    "panic": ["-DHELLO_EXIT=0x12"],
    "hang": ["-DHELLO_HANG"],
    "hold": ["-DHELLO_HOLD"],
}

CFLAGS = [
    "--target=x86_64-unknown-windows", "-ffreestanding", "-fshort-wchar", "-mno-red-zone",
    "-fno-stack-protector", "-O2", "-Wall", "-Wextra", "-Werror",
]  # fmt: skip
LDFLAGS = ["-subsystem:efi_application", "-entry:efi_main", "-nodefaultlib"]


def build_hello(
    work: Path, variant: str = "pass", clang: str = "clang", lld_link: str = "lld-link"
) -> Path:
    """Compile and link the `variant` build; returns the ESP directory (EFI/BOOT/BOOTX64.EFI)."""
    work.mkdir(parents=True, exist_ok=True)
    obj = work / f"hello-{variant}.obj"
    esp = work / f"esp-{variant}"
    boot = esp / "EFI" / "BOOT"
    boot.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [clang, *CFLAGS, *VARIANTS[variant], "-c", str(SOURCE), "-o", str(obj)], check=True
    )
    subprocess.run([lld_link, *LDFLAGS, f"-out:{boot / 'BOOTX64.EFI'}", str(obj)], check=True)
    return esp
