"""Accelerator choice: the override, the CPU models, and the KVM probe's contract."""

from __future__ import annotations

import os

import pytest

from kmtool.qemu import accel
from kmtool.qemu.accel import Accel


def test_cpu_model_has_pdpe1gb_for_each_accelerator() -> None:
    assert Accel("tcg", "").cpu_model == "max"
    assert Accel("kvm", "").cpu_model == "host"


@pytest.mark.parametrize("forced", ["kvm", "tcg"])
def test_environment_override_skips_the_probe(monkeypatch: pytest.MonkeyPatch, forced: str) -> None:
    monkeypatch.setenv("KMTOOL_ACCEL", forced)
    monkeypatch.setattr(accel, "KVM_DEVICE", "/nonexistent/kvm")
    accel.detect.cache_clear()
    try:
        assert accel.detect() == Accel(forced, f"forced by KMTOOL_ACCEL={forced}")
    finally:
        accel.detect.cache_clear()


def test_no_device_means_tcg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KMTOOL_ACCEL", raising=False)
    monkeypatch.setattr(accel, "KVM_DEVICE", "/nonexistent/kvm")
    accel.detect.cache_clear()
    try:
        chosen = accel.detect()
    finally:
        accel.detect.cache_clear()
    assert chosen.name == "tcg" and "/nonexistent/kvm does not exist" in chosen.reason


def test_probe_code_is_the_documented_guest() -> None:
    # fwait; fninit; mov al, 0x10; out 0xf4, al; hlt
    assert accel.PROBE_CODE.hex() == "9bdbe3b010e6f4f4"


def test_probe_answers_and_detect_agrees(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KMTOOL_ACCEL", raising=False)
    verdict = accel.probe_kvm()  # never raises: "ok" or why not
    assert isinstance(verdict, str) and verdict
    accel.detect.cache_clear()
    try:
        chosen = accel.detect()
    finally:
        accel.detect.cache_clear()
    assert chosen.name == ("kvm" if verdict == "ok" else "tcg")
    if verdict != "ok" and os.path.exists(accel.KVM_DEVICE):
        assert verdict in chosen.reason
