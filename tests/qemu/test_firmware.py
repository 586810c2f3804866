"""find_ovmf(): Debian paths, QEMU firmware descriptors, the environment override, the error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kmtool.errors import ToolError
from kmtool.qemu.firmware import find_ovmf


def _descriptor(path: Path, code: Path, vars_: Path, features: list[str]) -> None:
    path.write_text(
        json.dumps(
            {
                "interface-types": ["uefi"],
                "mapping": {
                    "device": "flash",
                    "executable": {"filename": str(code), "format": "raw"},
                    "nvram-template": {"filename": str(vars_), "format": "raw"},
                },
                "targets": [{"architecture": "x86_64", "machines": ["pc-q35-*"]}],
                "features": features,
            }
        )
    )


def test_debian_pair_found_first(tmp_path: Path) -> None:
    code, vars_ = tmp_path / "CODE.fd", tmp_path / "VARS.fd"
    code.write_bytes(b"c")
    vars_.write_bytes(b"v")
    found = find_ovmf(pairs=((str(code), str(vars_)),), descriptor_dirs=(), environ={})
    assert found == (code, vars_)
    assert found.code == code and found.vars == vars_


def test_descriptor_skips_secure_boot_and_smm(tmp_path: Path) -> None:
    for name in ("sb-code", "sb-vars", "plain-code", "plain-vars"):
        (tmp_path / name).write_bytes(b"x")
    d = tmp_path / "firmware"
    d.mkdir()
    _descriptor(
        d / "40-secure.json",
        tmp_path / "sb-code",
        tmp_path / "sb-vars",
        ["requires-smm", "secure-boot"],
    )
    _descriptor(d / "60-plain.json", tmp_path / "plain-code", tmp_path / "plain-vars", ["acpi-s3"])
    (d / "10-broken.json").write_text("{not json")
    code, vars_ = find_ovmf(pairs=(), descriptor_dirs=(str(d),), environ={})
    assert (code.name, vars_.name) == ("plain-code", "plain-vars")


def test_missing_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="`ovmf`"):
        find_ovmf(
            pairs=((str(tmp_path / "no"), str(tmp_path / "nope")),),
            descriptor_dirs=(str(tmp_path),),
            environ={},
        )


def test_environment_override(tmp_path: Path) -> None:
    code, vars_ = tmp_path / "c.fd", tmp_path / "v.fd"
    code.write_bytes(b"c")
    vars_.write_bytes(b"v")
    env = {"KMTOOL_OVMF_CODE": str(code), "KMTOOL_OVMF_VARS": str(vars_)}
    assert find_ovmf(environ=env) == (code, vars_)
    with pytest.raises(ToolError, match="KMTOOL_OVMF_VARS"):
        find_ovmf(environ={"KMTOOL_OVMF_CODE": str(code)})
