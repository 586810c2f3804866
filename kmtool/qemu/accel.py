"""Pick the accelerator: KVM when /dev/kvm really runs guest code, else software emulation (TCG).

/dev/kvm existing proves little: on nested or paravirtual hosts it opens, answers
KVM_GET_API_VERSION, creates a VM and even runs simple code, yet cannot run firmware. (On this
project's machines /dev/kvm is a paravirtual "kvm-pvm" that emulates real-mode code instruction by
instruction and fails on the first FPU instruction OVMF executes, leaving QEMU paused forever.) So
the probe runs a real guest: one page of RAM holding `fwait; fninit; mov al, 0x10; out 0xf4, al;
hlt` in real mode and one vCPU whose CS points at that page. KVM works when KVM_RUN comes back with
an I/O exit on port 0xf4 carrying 0x10; an internal error (exit 17) means it cannot run what the
firmware runs. The probe runs in a child process with a time limit (a broken KVM_RUN can
block), once per kmtool process; `KMTOOL_ACCEL=kvm|tcg` skips it.

The struct offsets below are those of linux/kvm.h for x86-64 (API version 12).
"""

from __future__ import annotations

import functools
import mmap
import os
import struct
import subprocess
import sys
from dataclasses import dataclass

KVM_DEVICE = "/dev/kvm"
PROBE_SECONDS = 5.0

# _IO/_IOR/_IOW encodings: dir << 30 | size << 16 | type << 8 | nr, type 0xAE.
_KVM = 0xAE
_SIZE_REGS = 18 * 8  # struct kvm_regs
_SIZE_SREGS = 8 * 24 + 2 * 16 + 7 * 8 + 4 * 8  # struct kvm_sregs
_SIZE_MEMREGION = 32  # struct kvm_userspace_memory_region


def _io(nr: int) -> int:
    return (_KVM << 8) | nr


def _ior(nr: int, size: int) -> int:
    return (2 << 30) | (size << 16) | (_KVM << 8) | nr


def _iow(nr: int, size: int) -> int:
    return (1 << 30) | (size << 16) | (_KVM << 8) | nr


KVM_GET_API_VERSION = _io(0x00)
KVM_CREATE_VM = _io(0x01)
KVM_GET_VCPU_MMAP_SIZE = _io(0x04)
KVM_CREATE_VCPU = _io(0x41)
KVM_SET_USER_MEMORY_REGION = _iow(0x46, _SIZE_MEMREGION)
KVM_RUN = _io(0x80)
KVM_GET_REGS = _ior(0x81, _SIZE_REGS)
KVM_SET_REGS = _iow(0x82, _SIZE_REGS)
KVM_GET_SREGS = _ior(0x83, _SIZE_SREGS)
KVM_SET_SREGS = _iow(0x84, _SIZE_SREGS)
KVM_EXIT_IO = 2
KVM_EXIT_INTERNAL_ERROR = 17

PROBE_PORT = 0xF4
PROBE_VALUE = 0x10
PROBE_CODE = bytes(
    [0x9B, 0xDB, 0xE3]  # fwait; fninit (OVMF's first FPU use; emulation-only KVMs fail here)
    + [0xB0, PROBE_VALUE, 0xE6, PROBE_PORT]  # mov al, value; out port, al
    + [0xF4]  # hlt
)


@dataclass(frozen=True)
class Accel:
    """The accelerator to use: `name` is "kvm" or "tcg"; `reason` says why (shown by doctor/run)."""

    name: str
    reason: str

    @property
    def cpu_model(self) -> str:
        """A CPU model that advertises pdpe1gb: the host's under KVM, QEMU's `max` under TCG."""
        return "host" if self.name == "kvm" else "max"


@functools.cache
def detect() -> Accel:
    """The accelerator for this process (probed once; `KMTOOL_ACCEL` overrides the probe)."""
    forced = os.environ.get("KMTOOL_ACCEL", "").strip().lower()
    if forced in ("kvm", "tcg"):
        return Accel(forced, f"forced by KMTOOL_ACCEL={forced}")
    if not os.path.exists(KVM_DEVICE):
        return Accel("tcg", f"{KVM_DEVICE} does not exist")
    if not os.access(KVM_DEVICE, os.R_OK | os.W_OK):
        return Accel("tcg", f"{KVM_DEVICE} is not readable and writable by this user")
    try:
        child = subprocess.run(
            [sys.executable, "-m", "kmtool.qemu.accel"],
            capture_output=True,
            text=True,
            timeout=PROBE_SECONDS,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return Accel("tcg", f"a test guest on {KVM_DEVICE} did not finish in {PROBE_SECONDS:g} s")
    verdict = (child.stdout.strip().splitlines() or ["no answer from the probe"])[-1]
    if child.returncode == 0 and verdict == "ok":
        return Accel("kvm", f"{KVM_DEVICE} ran a test guest")
    return Accel("tcg", f"{KVM_DEVICE} cannot run a guest: {verdict}")


def probe_kvm() -> str:
    """Run the three-instruction guest in this process; "ok" or what went wrong (never raises)."""
    import fcntl

    try:
        kvm = os.open(KVM_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    except OSError as err:
        return f"open failed ({err.strerror})"
    try:
        version = fcntl.ioctl(kvm, KVM_GET_API_VERSION, 0)
        if version != 12:
            return f"KVM API version {version}, expected 12"
        vm = fcntl.ioctl(kvm, KVM_CREATE_VM, 0)
        ram = mmap.mmap(-1, mmap.PAGESIZE)
        ram[: len(PROBE_CODE)] = PROBE_CODE
        ram_address = _buffer_address(ram)
        region = struct.pack("<IIQQQ", 0, 0, 0, mmap.PAGESIZE, ram_address)
        fcntl.ioctl(vm, KVM_SET_USER_MEMORY_REGION, region)
        vcpu = fcntl.ioctl(vm, KVM_CREATE_VCPU, 0)
        run_size = fcntl.ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0)
        run = mmap.mmap(vcpu, run_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)

        sregs = bytearray(_SIZE_SREGS)
        fcntl.ioctl(vcpu, KVM_GET_SREGS, sregs)
        struct.pack_into("<Q", sregs, 0, 0)  # cs.base (the first kvm_segment)
        struct.pack_into("<H", sregs, 12, 0)  # cs.selector
        fcntl.ioctl(vcpu, KVM_SET_SREGS, bytes(sregs))
        regs = bytearray(_SIZE_REGS)
        struct.pack_into("<QQ", regs, 16 * 8, 0, 0x2)  # rip = 0, rflags = reserved bit 1
        fcntl.ioctl(vcpu, KVM_SET_REGS, bytes(regs))

        fcntl.ioctl(vcpu, KVM_RUN, 0)
        (exit_reason,) = struct.unpack_from("<I", run, 8)
        if exit_reason == KVM_EXIT_INTERNAL_ERROR:
            return "KVM reported an internal (emulation) error on an FPU instruction"
        if exit_reason != KVM_EXIT_IO:
            return f"the test guest stopped with exit reason {exit_reason}, not an I/O exit"
        _direction, size, port, _count, data_offset = struct.unpack_from("<BBHIQ", run, 32)
        value = run[data_offset] if size >= 1 else None
        if port != PROBE_PORT or value != PROBE_VALUE:
            return f"the test guest wrote {value!r} to port {port:#x}"
        return "ok"
    except OSError as err:
        return f"a KVM ioctl failed ({err.strerror or err})"
    finally:
        os.close(kvm)


def _buffer_address(buffer: mmap.mmap) -> int:
    import ctypes

    return ctypes.addressof(ctypes.c_char.from_buffer(buffer))


if __name__ == "__main__":  # the child process of detect()
    print(probe_kvm(), flush=True)
