"""A small synchronous QMP client for a running QEMU (qemu.qmp underneath).

Only what kmtool needs: stop the VM, ask for its status, run a human-monitor command (`info tlb`,
`info mtree -f`, `info registers`), pass a file descriptor, start and poll a guest-memory dump, save
physical memory, quit.
Every failure becomes a RunError naming the command; QEMU's own error text is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from kmtool.errors import RunError

CONNECT_SECONDS = 10.0
COMMAND_SECONDS = 60.0
READ_LIMIT = 256 * 1024 * 1024  # one reply: `info tlb` of a big identity map runs to megabytes


class Monitor:
    """A connected QMP session with its own event loop. Use as a context manager, or `close()`."""

    def __init__(self, socket_path: Path, connect_seconds: float = CONNECT_SECONDS) -> None:
        from qemu.qmp import QMPClient

        self.socket_path = socket_path
        self._loop = asyncio.new_event_loop()
        self._client: Any = None
        deadline = time.monotonic() + connect_seconds
        while True:
            client = QMPClient("kmtool", readbuflen=READ_LIMIT)
            try:
                self._run(client.connect(str(socket_path)), connect_seconds)
                break
            except Exception as err:  # ConnectError, OSError: the socket may not exist yet
                if time.monotonic() >= deadline:
                    self._loop.close()
                    raise RunError(
                        f"Could not connect to QEMU's monitor socket `{socket_path}`: "
                        f"{_describe(err)}."
                    ) from err
                time.sleep(0.05)
        self._client = client

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, awaitable: Awaitable[Any], seconds: float = COMMAND_SECONDS) -> Any:
        return self._loop.run_until_complete(asyncio.wait_for(awaitable, seconds))

    def command(self, name: str, **arguments: Any) -> Any:
        """Execute QMP command `name` and return its "return" value; RunError on any failure."""
        if self._client is None:
            raise RunError(f"The QMP command `{name}` was sent after the monitor was closed.")
        try:
            return self._run(self._client.execute(name, arguments or None))
        except Exception as err:
            raise RunError(f"The QMP command `{name}` failed: {_describe(err)}.") from err

    def hmp(self, command_line: str) -> str:
        """The text output of a human-monitor command, e.g. `info tlb`."""
        result = self.command("human-monitor-command", **{"command-line": command_line})
        return str(result)

    def send_fd(self, fd: int, name: str) -> None:
        """Give QEMU a duplicate of file descriptor `fd` under `name` (SCM_RIGHTS, then `getfd`),
        for commands that take `fd:NAME`; the caller keeps and closes its own `fd`."""
        if self._client is None:
            raise RunError("A file descriptor was sent after the monitor was closed.")
        try:
            self._client.send_fd_scm(fd)
        except Exception as err:
            raise RunError(f"Could not pass a file descriptor to QEMU: {_describe(err)}.") from err
        self.command("getfd", fdname=name)

    def stop(self) -> None:
        """Pause every vCPU (the guest's memory and registers stay as they are)."""
        self.command("stop")

    def status(self) -> str:
        """The VM's run state, e.g. "running" or "paused"."""
        return str(self.command("query-status")["status"])

    def quit(self) -> None:
        """Ask QEMU to exit. QEMU may drop the connection before it answers; that is fine."""
        with contextlib.suppress(Exception):
            self.command("quit")

    def close(self) -> None:
        """Disconnect (idempotent)."""
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._run(self._client.disconnect(), CONNECT_SECONDS)
            self._client = None
        if not self._loop.is_closed():
            self._loop.close()


def _describe(err: Exception) -> str:
    text = str(err).strip()
    return text.rstrip(".") if text else type(err).__name__
