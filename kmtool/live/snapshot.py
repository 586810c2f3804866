"""A live guest, paused and mapped: the `DumpSource` that `kmtool inspect --live` and `kmtool diff
live:` decode exactly as a dump (docs/design.md §12).

    with paused(read_session(path)) as source:       # QMP `stop` if it was running
        ins = inspect_source(source, Options())      # the decoders of kmtool.dump, unchanged
    # QMP `cont` here, only if the guest was running before

What it costs QEMU, whatever the guest's size: `query-status`, `stop`, one `dump-guest-memory` of
a single page, whose ELF notes give every CPU's registers and the kernel's VMCOREINFO note exactly
as an ELF dump records them (kmtool.qemu.dump.page_notes, decoded by kmtool.dump.elfcore), and
`cont`. Guest memory itself is never read through QMP: the RAM file QEMU maps shared is mapped
read-only here (`PhysicalMemory`, the class every raw and ELF dump is read through), with the
session's RAM ranges saying which file offset holds which guest-physical address.

A guest that was not running (paused by someone, or stopped by gdb: status "debug") is decoded as
it is and left as it was. The guest is resumed even when decoding fails.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from kmtool.dump.memory import MemoryRange, PhysicalMemory
from kmtool.dump.source import DumpSource
from kmtool.errors import DumpError
from kmtool.live.session import LiveError, Session
from kmtool.qemu.dump import page_notes
from kmtool.qemu.qmp import Monitor

RUNNING = "running"  # QMP query-status: the only state that is paused and resumed
PRELAUNCH = "prelaunch"  # QEMU started with -S (gdb) and no CPU has run yet: nothing to decode


@contextlib.contextmanager
def paused(session: Session) -> Iterator[DumpSource]:
    """The guest of `session` as a DumpSource (kind "live") while it is paused; RunError when
    QEMU does not answer, DumpError when its memory or notes cannot be read."""
    with Monitor(session.qmp) as monitor:
        status = monitor.status()
        if status == PRELAUNCH:
            raise LiveError(
                f"The guest of the live session `{session.path}` has not started yet (QEMU status "
                f"{status}: it waits for gdb to continue it)."
            )
        was_running = status == RUNNING
        if was_running:
            monitor.stop()
        try:
            source = _source(session, monitor)
            try:
                yield source
            finally:
                source.memory.close()
        finally:
            if was_running:
                monitor.command("cont")


def _source(session: Session, monitor: Monitor) -> DumpSource:
    """The stopped guest's memory (the RAM file) and CPU state (one page's ELF notes)."""
    fd, scratch = tempfile.mkstemp(prefix=".cpu-", suffix=".elf", dir=session.path.parent)
    os.close(fd)
    try:
        notes = page_notes(monitor, Path(scratch))
    except DumpError as err:
        text = str(err)
        raise LiveError(
            f"The CPU state of the live session `{session.path}` cannot be read from QEMU's "
            f"one-page ELF dump: {text[:1].lower()}{text[1:]}"
        ) from None
    ranges = [MemoryRange(phys, size, offset, size) for phys, offset, size in session.ranges]
    memory = PhysicalMemory(session.ram, ranges)
    return DumpSource(session.path, "live", memory, notes.cpus, core_info_note=notes.core_info)
