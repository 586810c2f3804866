"""`python -m kmtool.image OUT [--epoch N] ESP_PATH=FILE ...`: the image step of build.ninja.

Kept free of click and rich so the step starts fast; a user error prints one `error:` line on
stderr and exits 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kmtool.errors import KmtoolError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kmtool.image",
        description="Write a GPT disk image with one FAT32 EFI system partition.",
    )
    parser.add_argument("out", type=Path, help="image file to write (atomically)")
    parser.add_argument(
        "files", nargs="+", metavar="ESP_PATH=FILE", help="e.g. EFI/BOOT/BOOTX64.EFI=build/x.efi"
    )
    parser.add_argument("--epoch", type=int, help="FAT time stamps (default SOURCE_DATE_EPOCH)")
    args = parser.parse_args(argv)
    try:
        files: dict[str, Path] = {}
        for spec in args.files:
            name, sep, host = spec.partition("=")
            if not sep or not name or not host:
                raise KmtoolError(f"`{spec}` is not of the form ESP_PATH=FILE.")
            files[name] = Path(host)
        from kmtool.image.assemble import build_image

        build_image(args.out, files, epoch=args.epoch)
    except KmtoolError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
