"""Find the OVMF (UEFI for QEMU) firmware: a read-only code image and its vars-store template.

Search order, first hit wins:

1. `KMTOOL_OVMF_CODE` and `KMTOOL_OVMF_VARS` in the environment (both must be set and exist);
2. the usual Debian/Ubuntu paths of the `ovmf` package, 4 MiB flash layout first, then the 2 MiB
   one, without Secure Boot: `/usr/share/OVMF/OVMF_CODE_4M.fd` + `OVMF_VARS_4M.fd`, ...;
3. QEMU firmware descriptors (`/etc/qemu/firmware/*.json`, `/usr/share/qemu/firmware/*.json`; the
   format of QEMU's docs/interop/firmware.json) in file-name order. A descriptor qualifies when it
   is for UEFI, maps to a flash device, targets x86_64 on q35 machines, and neither requires SMM
   nor enables Secure Boot (kmtool starts no SMM and its loader is not signed).

The vars file is a *template*: the runner copies it for every boot and never writes the original.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from kmtool.errors import ToolError
from kmtool.toolchain import ToolStatus

DEBIAN_PACKAGE = "ovmf"

# (code, vars) pairs in the layout Debian and Ubuntu install them.
DEBIAN_PAIRS: tuple[tuple[str, str], ...] = (
    ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
    ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),
    ("/usr/share/ovmf/OVMF.fd", ""),  # old single-file build: code and vars in one image
)

DESCRIPTOR_DIRS: tuple[str, ...] = ("/etc/qemu/firmware", "/usr/share/qemu/firmware")

# Descriptor features that rule a firmware build out for kmtool's plain q35 machine.
UNWANTED_FEATURES = frozenset({"requires-smm", "secure-boot", "enrolled-keys", "amd-sev-es"})


class Firmware(NamedTuple):
    """An OVMF build: `code` is mapped read-only, `vars` is the template copied for each run.

    Unpacks as a pair: `code, vars = find_ovmf()`. `vars` equals `code` for a single-file build.
    """

    code: Path
    vars: Path


def find_ovmf(
    pairs: Sequence[tuple[str, str]] = DEBIAN_PAIRS,
    descriptor_dirs: Sequence[str] = DESCRIPTOR_DIRS,
    environ: dict[str, str] | None = None,
) -> Firmware:
    """The OVMF code and vars files to boot with; raises ToolError naming the `ovmf` package.

    The parameters exist for tests; callers use the defaults.
    """
    env = os.environ if environ is None else environ
    code_env, vars_env = env.get("KMTOOL_OVMF_CODE"), env.get("KMTOOL_OVMF_VARS")
    if code_env or vars_env:
        if not (code_env and vars_env):
            raise ToolError(
                "Set both `KMTOOL_OVMF_CODE` and `KMTOOL_OVMF_VARS`, or neither of them."
            )
        for name, value in (("KMTOOL_OVMF_CODE", code_env), ("KMTOOL_OVMF_VARS", vars_env)):
            if not Path(value).is_file():
                raise ToolError(f"`{name}` names `{value}`, which is not a file.")
        return Firmware(Path(code_env), Path(vars_env))

    for code, vars_ in pairs:
        code_path = Path(code)
        vars_path = Path(vars_) if vars_ else code_path
        if code_path.is_file() and vars_path.is_file():
            return Firmware(code_path, vars_path)

    for descriptor in _descriptor_files(descriptor_dirs):
        found = _from_descriptor(descriptor)
        if found is not None:
            return found

    raise ToolError(
        "No OVMF firmware was found (looked for `/usr/share/OVMF/OVMF_CODE_4M.fd` and QEMU "
        f"firmware descriptors); install the Debian package `{DEBIAN_PACKAGE}`."
    )


def _descriptor_files(dirs: Iterable[str]) -> list[Path]:
    """Descriptor files by name, a name in an earlier directory hiding the same name later (QEMU's
    rule: /etc overrides /usr/share)."""
    chosen: dict[str, Path] = {}
    for directory in dirs:
        base = Path(directory)
        if not base.is_dir():
            continue
        for path in base.glob("*.json"):
            chosen.setdefault(path.name, path)
    return [chosen[name] for name in sorted(chosen)]


def _from_descriptor(path: Path) -> Firmware | None:
    """The firmware a descriptor describes when it suits kmtool, else None (unreadable ones too)."""
    try:
        data: Any = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or "uefi" not in data.get("interface-types", []):
        return None
    if UNWANTED_FEATURES & set(data.get("features", [])):
        return None
    if not any(_is_x86_64_q35(target) for target in data.get("targets", [])):
        return None
    mapping = data.get("mapping", {})
    if mapping.get("device") != "flash":
        return None
    code = mapping.get("executable", {}).get("filename")
    vars_ = mapping.get("nvram-template", {}).get("filename")
    if not code or not vars_:
        return None
    code_path, vars_path = Path(code), Path(vars_)
    if code_path.is_file() and vars_path.is_file():
        return Firmware(code_path, vars_path)
    return None


def _is_x86_64_q35(target: Any) -> bool:
    if not isinstance(target, dict) or target.get("architecture") != "x86_64":
        return False
    return any("q35" in str(m) for m in target.get("machines", []))


def probe() -> list[ToolStatus]:
    """`kmtool doctor`'s two rows, OVMF code and OVMF vars, from `find_ovmf()`."""
    paths: tuple[str | None, str | None] = (None, None)
    problem = None
    try:
        found = find_ovmf()
        paths = (str(found.code), str(found.vars))
    except ToolError as err:
        problem = str(err)
    rows = (
        ("OVMF code", "UEFI firmware (read-only flash)"),
        ("OVMF vars", "UEFI variable store template"),
    )
    return [
        ToolStatus(name, path, None, DEBIAN_PACKAGE, True, purpose, problem)
        for (name, purpose), path in zip(rows, paths, strict=True)
    ]
