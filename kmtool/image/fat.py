"""Format and fill the FAT file system of the EFI system partition with mtools.

mtools works on a region of a larger file with the `FILE@@OFFSET` syntax, so the ESP is formatted
in place inside the disk image; no partition-sized temporary file is copied around.

Reproducibility: mtools 4.0.x takes "now" from SOURCE_DATE_EPOCH (every directory entry's time
stamps, the volume label's too), the volume serial is given with `mformat -N`, and TZ=UTC pins
the local-time conversion FAT does. The environment is otherwise made hermetic: no user mtoolsrc,
no floppy-geometry sanity check.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from kmtool.errors import ImageError

# FAT time stamps cannot go before 1980-01-01 00:00:00 (local time; kmtool uses UTC).
FAT_EPOCH = 315532800


def default_epoch() -> int:
    """SOURCE_DATE_EPOCH when set, else the FAT epoch 1980-01-01 00:00:00 UTC."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    if not value:
        return FAT_EPOCH
    try:
        return int(value)
    except ValueError:
        raise ImageError(
            f"`SOURCE_DATE_EPOCH` must be a whole number of seconds, not `{value}`."
        ) from None


def mtools_env(epoch: int) -> dict[str, str]:
    """The environment every mtools command runs in."""
    env = dict(os.environ)
    env.update(
        MTOOLSRC=os.devnull,
        MTOOLS_SKIP_CHECK="1",
        SOURCE_DATE_EPOCH=str(epoch),
        TZ="UTC",
        LC_ALL="C",
    )
    return env


def _run(argv: Sequence[str], epoch: int, what: str) -> None:
    proc = subprocess.run(
        list(argv),
        env=mtools_env(epoch),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        reason = detail[-1] if detail else f"exit status {proc.returncode}"
        raise ImageError(f"`{Path(argv[0]).name}` failed to {what}: {reason}")


def format_fat32(
    mformat: str,
    image: Path,
    offset: int,
    sectors: int,
    *,
    label: str,
    serial: int,
    epoch: int,
) -> None:
    """Make a FAT32 file system of `sectors` 512-byte blocks at byte `offset` of `image`.

    The boot sector records `offset / 512` hidden sectors (the partition's start), as a
    partitioned disk's FAT should.
    """
    _run(
        [
            mformat,
            "-i", f"{image}@@{offset}",
            "-T", str(sectors),
            "-h", "64", "-s", "32",  # nominal geometry; only the sector count matters
            "-H", str(offset // 512),
            "-F",
            "-N", f"{serial:08x}",
            "-v", label,
            "::",
        ],
        epoch,
        f"format the ESP in `{image}`",
    )  # fmt: skip


def make_dirs(mmd: str, image: Path, offset: int, dirs: Sequence[str], *, epoch: int) -> None:
    """Create directories (absolute ESP paths, parents before children)."""
    if not dirs:
        return
    _run(
        [mmd, "-i", f"{image}@@{offset}", *(f"::{d}" for d in dirs)],
        epoch,
        f"create {', '.join(f'`{d}`' for d in dirs)} in the ESP",
    )


def copy_file(mcopy: str, image: Path, offset: int, source: Path, dest: str, *, epoch: int) -> None:
    """Copy host file `source` to absolute ESP path `dest`."""
    _run(
        [mcopy, "-i", f"{image}@@{offset}", str(source), f"::{dest}"],
        epoch,
        f"copy `{dest}` into the ESP",
    )
