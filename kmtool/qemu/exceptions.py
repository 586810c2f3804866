"""QEMU's exception log (`-d int,cpu_reset -D FIFO`): the evidence of a triple fault
(docs/design.md §11).

Under TCG, QEMU logs every interrupt and exception it delivers (`  193: v=0d e=0032 i=0 cpl=0
IP=0008:ffffff0000106c5c ...`, then a register dump with the `IDT=` base and limit), each nested
exception it raises while delivering another (`check_exception old: 0xd new 0xd`), and `Triple
fault` when it gives up. A fault loop can write gigabytes, so the log goes through a FIFO into
`ExceptionLog`, which keeps only the last TAIL_BYTES and notices `Triple fault` as it streams by.

`triple_fault_chain(text)` reads the chain of deliveries that ended in the triple fault from the
tail: the exception the kernel raised first, each one raised while delivering the previous, and
the triple fault, e.g. `#BP at idt+0x2c (kernel/test/bugs.c:125) -> #GP error 0x32: vector 3 is
beyond the IDT limit 0x0 -> #DF -> triple fault`.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kmtool.schemas.fault import SELECTOR_ERROR_VECTORS, exception_mnemonic

TRIPLE_FAULT = "Triple fault"
TAIL_BYTES = 1 << 20  # the log kept: the last 1 MiB (a delivery is about 1.2 KiB of it)
IDT_GATE_BYTES = 16  # a 64-bit IDT gate

_DELIVERY = re.compile(
    r"^\s*\d+: v=(?P<v>[0-9a-f]{2}) e=(?P<e>[0-9a-f]{4}) i=(?P<i>\d) cpl=(?P<cpl>\d) "
    r"IP=[0-9a-f]{4}:(?P<ip>[0-9a-f]+) .*?SP=[0-9a-f]{4}:(?P<sp>[0-9a-f]+)"
)
_NESTED = re.compile(r"^check_exception old: 0x(?P<old>[0-9a-f]+) new 0x(?P<new>[0-9a-f]+)$")
_IDT = re.compile(r"^IDT=\s+(?P<base>[0-9a-f]+) (?P<limit>[0-9a-f]+)$")


@dataclass(frozen=True)
class Delivery:
    """One exception or interrupt QEMU delivered (or tried to): vector, error code, whether it
    was a software interrupt (`int n`), and where: RIP, RSP and the IDT in effect."""

    vector: int
    error: int
    software: bool
    rip: int
    rsp: int
    idt_base: int | None = None
    idt_limit: int | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "vector": self.vector,
            "name": exception_mnemonic(self.vector),
            "error_code": hex(self.error),
            "software": self.software,
            "rip": hex(self.rip),
            "rsp": hex(self.rsp),
            "idt_base": None if self.idt_base is None else hex(self.idt_base),
            "idt_limit": None if self.idt_limit is None else hex(self.idt_limit),
        }


def _deliveries(lines: list[str]) -> list[tuple[int, Delivery | str]]:
    """(line number, Delivery or the nested-exception line) in log order; each delivery gets the
    IDT= of the register dump that follows it."""
    out: list[tuple[int, Delivery | str]] = []
    for n, line in enumerate(lines):
        if m := _DELIVERY.match(line):
            out.append((n, Delivery(int(m["v"], 16), int(m["e"], 16), m["i"] == "1",
                                    int(m["ip"], 16), int(m["sp"], 16))))  # fmt: skip
        elif m := _IDT.match(line):
            if out and isinstance(out[-1][1], Delivery) and out[-1][1].idt_base is None:
                d = out[-1][1]
                idt = Delivery(d.vector, d.error, d.software, d.rip, d.rsp, int(m["base"], 16),
                               int(m["limit"], 16))  # fmt: skip
                out[-1] = (out[-1][0], idt)
        elif _NESTED.match(line):
            out.append((n, line))
    return out


def triple_fault_chain(text: str) -> list[Delivery] | None:
    """The deliveries that ended in the last `Triple fault` of `text`, first to last; None when
    the text holds no triple fault.

    The chain starts where an exception was raised with none pending (`check_exception old:
    0xffffffff`): at that exception, or at the delivery just before it when that one was being
    delivered at the same RIP (its delivery is what raised the exception: an `int3` through a
    broken IDT)."""
    lines = text.splitlines()
    ends = [n for n, line in enumerate(lines) if line.strip() == TRIPLE_FAULT]
    if not ends:
        return None
    events = _deliveries(lines[: ends[-1]])
    starts = [k for k, (_, e) in enumerate(events)
              if isinstance(e, str) and _NESTED.match(e) and e.split()[2] == "0xffffffff"]  # fmt: skip
    first = starts[-1] if starts else 0
    chain = [e for _, e in events[first:] if isinstance(e, Delivery)]
    before = [e for _, e in events[:first] if isinstance(e, Delivery)]
    if before and chain and before[-1].rip == chain[0].rip:
        chain.insert(0, before[-1])
    return chain


def describe(chain: list[Delivery], where: Callable[[int], str]) -> str:
    """The chain as one line: `#BP at idt+0x2c (kernel/test/bugs.c:125) -> #GP error 0x32:
    vector 3 is beyond the IDT limit 0x0 -> #DF -> triple fault`. `where` names a code address."""
    parts = []
    for k, d in enumerate(chain):
        text = exception_mnemonic(d.vector)
        if k == 0:
            text += f" at {where(d.rip)}"
        if d.vector in SELECTOR_ERROR_VECTORS or d.vector == 14 or d.error:
            text += f" error {d.error:#x}"
        cause = _cause(chain[k - 1], d) if k else None
        parts.append(text + (f": {cause}" if cause else ""))
    return " -> ".join(parts + ["triple fault"])


def _cause(previous: Delivery, d: Delivery) -> str | None:
    """Why delivering `previous` raised `d`, when the log says: a gate beyond the IDT limit."""
    if d.vector not in SELECTOR_ERROR_VECTORS or not d.error & 2 or d.idt_limit is None:
        return None
    if (previous.vector + 1) * IDT_GATE_BYTES - 1 > d.idt_limit:
        return f"vector {previous.vector} is beyond the IDT limit {d.idt_limit:#x}"
    return f"the IDT gate of vector {previous.vector} is not usable"


class ExceptionLog:
    """Reads QEMU's exception log from a FIFO, keeping the last TAIL_BYTES, and sets `triple`
    when `Triple fault` goes by. `open()` before QEMU starts; `close()` always."""

    def __init__(self, fifo: Path) -> None:
        self.fifo = fifo
        self.triple = threading.Event()
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def open(self) -> None:
        os.mkfifo(self.fifo)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with open(self.fifo, "rb", buffering=0) as f:  # blocks until QEMU opens it
            tail = b""
            while chunk := f.read(65536):
                self._keep(chunk)
                if TRIPLE_FAULT.encode() in tail + chunk:
                    self.triple.set()
                tail = chunk[-len(TRIPLE_FAULT) :]

    def _keep(self, chunk: bytes) -> None:
        with self._lock:
            self._chunks.append(chunk)
            self._size += len(chunk)
            while self._size - len(self._chunks[0]) >= TAIL_BYTES:
                self._size -= len(self._chunks.popleft())

    def text(self) -> str:
        """The tail kept so far, decoded."""
        with self._lock:
            data = b"".join(self._chunks)[-TAIL_BYTES:]
        return data.decode("utf-8", errors="replace")

    def close(self) -> None:
        """Stop reading: a reader still waiting for QEMU to open the FIFO is released."""
        if self._thread is not None and self._thread.is_alive():
            with contextlib.suppress(OSError):
                os.close(os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK))
            self._thread.join(timeout=2.0)
