"""Independent oracles for the build tests: what binutils' readelf says about a kernel ELF."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path


def readelf_program_headers(path: Path) -> tuple[int, list[tuple[int, int, str]]]:
    """(entry, [(vaddr, memsz, flags)] of PT_LOADs) as `readelf -lW` prints them."""
    out = subprocess.run(
        ["readelf", "-lW", str(path)], capture_output=True, text=True, check=True
    ).stdout
    entry = int(re.search(r"Entry point (0x[0-9a-f]+)", out).group(1), 16)  # type: ignore[union-attr]
    loads = [
        (int(m.group(1), 16), int(m.group(2), 16), m.group(3).replace(" ", ""))
        for m in re.finditer(
            r"^\s+LOAD\s+0x[0-9a-f]+ (0x[0-9a-f]+) 0x[0-9a-f]+ 0x[0-9a-f]+ (0x[0-9a-f]+) "
            r"([RWE ]{3})",
            out,
            re.M,
        )
    ]
    return entry, loads
