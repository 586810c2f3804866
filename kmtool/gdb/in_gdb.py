"""The gdb side of `kmtool gdb`: loaded by the generated gdbinit with `source`, run by gdb's Python.

gdb's Python is the system python3, without kmtool's dependencies (construct, rich, numpy,
pyelftools). So this file imports only the standard library and gdb's `gdb` module, and the `km`
commands do not decode anything themselves: each runs `kmtool inspect --live SESSION` of the
kmtool that generated the gdbinit (its own interpreter, `sys.executable -m kmtool`, so the venv's
packages) as a subprocess and prints what it prints. That is the same code path as a dump: the
live session's shared RAM file read by kmtool's decoders, the same parts, the same checks. The
other way, making kmtool importable in gdb's Python, would tie kmtool to whatever Python and
packages gdb was linked against, and put numpy and rich into the debugger's process.

Because `source` runs this file in gdb's `__main__`, every name here starts with `_kmtool`.
`_kmtool_setup(config_json)` installs everything; `_kmtool_connect(host, port)` attaches.
"""

from __future__ import annotations

import json
import os
import subprocess

import gdb  # provided by gdb itself

# What `_kmtool_setup` was given (see kmtool/gdb/gdbinit.py, `config`).
_kmtool_config: dict = {}
# The numbers of the read-only memory regions guarding the kernel's text; [] once lifted.
_kmtool_guards: list[int] = []


def _kmtool_setup(config_json: str) -> None:
    """Read the config, guard the kernel's text, register the `km` commands."""
    _kmtool_config.update(json.loads(config_json))
    _kmtool_guard_text(_kmtool_config["text"])
    gdb.events.stop.connect(_kmtool_on_stop)
    _KmtoolKm()
    for name, part, doc in _KMTOOL_PARTS:
        _KmtoolPart(name, part, doc)
    _KmtoolAddress("walk", "--walk", "Each level's table, index and entry on the way to VA.")
    _KmtoolAddress("pa", "--pa", "Every virtual address that maps physical address PA.")


def _kmtool_connect(host: str, port: int) -> None:
    """`target remote HOST:PORT`, or one sentence and exit status 1: a failed `target remote` in a
    script would otherwise leave the later `-ex` commands running against no target."""
    try:
        gdb.execute(f"target remote {host}:{port}")
    except gdb.error as err:
        gdb.write(
            f"error: gdb cannot attach to QEMU's gdb stub at {host}:{port} ({err}); start the "
            "guest with `kmtool run --gdb` or `kmtool run --live --gdb` first.\n",
            gdb.STDERR,
        )
        gdb.execute("quit 1")


def _kmtool_guard_text(text: list[dict]) -> None:
    """Make each executable segment of the kernel a read-only memory region.

    With `set breakpoint auto-hw on` (the gdbinit sets it), gdb turns every breakpoint in a
    read-only region into a hardware one (Z1: a debug register holds the linear address, nothing
    is written to guest memory), so `break kmain` works before the loader has mapped the higher
    half. The region numbers are read back from `info mem` so the guards can be lifted later.
    """
    for region in text:
        gdb.execute(f"mem {region['start']:#x} {region['end']:#x} ro")
    starts = {region["start"] for region in text}
    for line in gdb.execute("info mem", to_string=True).splitlines():
        words = line.split()
        if len(words) >= 3 and words[0].isdigit() and int(words[2], 16) in starts:
            _kmtool_guards.append(int(words[0]))


def _kmtool_kernel_mapped() -> bool:
    """Whether the kernel's text reads back as the ELF holds it: mapped (at the current CR3) and
    loaded. Before the loader maps the higher half the read fails; before it copies the kernel
    the bytes differ."""
    inferior = gdb.selected_inferior()
    for region in _kmtool_config["text"]:
        probe = bytes.fromhex(region["probe"])
        try:
            if bytes(inferior.read_memory(region["start"], len(probe))) != probe:
                return False
        except gdb.MemoryError:
            return False
    return True


def _kmtool_on_stop(event: object) -> None:
    """At the first stop with the kernel mapped, lift the guards: from then on `break` sets
    software breakpoints (no limit of four debug registers), and the hardware ones set so far
    turn into software ones at the next resume (gdb re-reads the memory map on every insert)."""
    if not _kmtool_guards or not _kmtool_kernel_mapped():
        return
    gdb.execute("delete mem " + " ".join(str(n) for n in _kmtool_guards))
    _kmtool_guards.clear()
    gdb.write("kmtool: the kernel is mapped; `break` sets software breakpoints from now on.\n")


def _kmtool_inspect(command: str, args: list[str]) -> None:
    """Run `kmtool inspect --live SESSION ARGS` and print its output; gdb.GdbError (one line, no
    traceback) when there is no session or kmtool fails without output."""
    session = _kmtool_config.get("session")
    if session is None:
        raise gdb.GdbError(
            f"`{command}` reads the guest's RAM through a live session, and this gdb has none: "
            "start the guest with `kmtool run --live --gdb`, then `kmtool gdb`."
        )
    argv = [*_kmtool_config["kmtool"], "inspect", "--live", session, *args]
    if _kmtool_config.get("kernel"):
        argv += ["--kernel", _kmtool_config["kernel"]]
    width = gdb.parameter("width")
    env = dict(os.environ, COLUMNS=os.environ.get("COLUMNS") or str(width or 100))
    timeout = _kmtool_config["timeout"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise gdb.GdbError(
            f"`{command}`: `kmtool inspect --live` took more than {timeout} s."
        ) from None
    except OSError as err:
        raise gdb.GdbError(f"`{command}` cannot run `{argv[0]}`: {err.strerror}.") from None
    if done.returncode not in (0, 1) or not done.stdout:  # 1 with output: a check failed
        message = done.stderr.strip().removeprefix("error: ") or f"exit status {done.returncode}"
        raise gdb.GdbError(f"`{command}`: {message}")
    gdb.write(done.stdout)
    if done.stderr:
        gdb.write(done.stderr, gdb.STDERR)


# `km NAME` -> `kmtool inspect --part PART`, with its help line.
_KMTOOL_PARTS = (
    ("summary", "summary", "One line per part and the checks, as `kmtool inspect` prints them."),
    ("frames", "frames", "The free spans, the frame stack, the counters and the frame owners."),
    ("heap", "heap", "The heap: blocks in use and free, by order, and its counters."),
    ("fault", "fault", "The kernel's fault record: vector, error code, RIP, CR2, registers."),
    ("aspaces", "aspaces", "Each address space: its PML4, user ranges and the shared kernel half."),
)


class _KmtoolKm(gdb.Command):
    """kmtool's decoders over the live guest, as `kmtool inspect --live` prints them.

    Each subcommand runs `kmtool inspect --live SESSION` on the guest's RAM file (the guest stays
    stopped while gdb holds it). Subcommands: summary, walk VA, pa PA, frames, heap, fault,
    aspaces."""

    def __init__(self) -> None:
        super().__init__("km", gdb.COMMAND_USER, prefix=True)

    def invoke(self, argument: str, from_tty: bool) -> None:
        if argument.strip():
            raise gdb.GdbError(f"`km {argument.strip()}` is not a km command (see `help km`).")
        gdb.execute("help km")


class _KmtoolPart(gdb.Command):
    def __init__(self, name: str, part: str, doc: str) -> None:
        self.__doc__ = doc
        self._name, self._part = name, part
        super().__init__(f"km {name}", gdb.COMMAND_USER)

    def invoke(self, argument: str, from_tty: bool) -> None:
        if argument.strip():
            raise gdb.GdbError(f"`km {self._name}` takes no argument, not `{argument.strip()}`.")
        _kmtool_inspect(f"km {self._name}", ["--part", self._part])


class _KmtoolAddress(gdb.Command):
    """A `km` subcommand taking one address, any gdb expression (`$rsp`, `&km_frames`, 0x...)."""

    def __init__(self, name: str, option: str, doc: str) -> None:
        self.__doc__ = f"{doc} Usage: km {name} EXPR (any gdb expression)."
        self._name, self._option = name, option
        super().__init__(f"km {name}", gdb.COMMAND_USER)

    def invoke(self, argument: str, from_tty: bool) -> None:
        command = f"km {self._name}"
        if not argument.strip():
            raise gdb.GdbError(f"`{command}` needs an address: `{command} 0x...` or an expression.")
        try:
            value = int(gdb.parse_and_eval(argument)) & (1 << 64) - 1
        except (gdb.error, ValueError, OverflowError) as err:
            raise gdb.GdbError(f"`{command} {argument.strip()}`: {err}.") from None
        _kmtool_inspect(command, [self._option, hex(value)])
