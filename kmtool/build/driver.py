"""`kmtool build` without the user interface: regenerate headers, write build.ninja, run ninja.

    build(root, build_dir, release=..., verbose=..., on_event=...) -> BuildResult

1. find clang, ld.lld, lld-link, ninja and mtools (ToolError names the missing package);
2. regenerate include/km/ from the region table and schemas (kmtool.layout.cgen writes a file only
   when its text changes, so ninja sees no new headers on a no-op build);
3. render build.ninja and write it only when its text changes;
4. run ninja in the source root, turning its output into events: `Status` (one finished step),
   `Output` (a line a tool printed), and on failure raise `BuildFailure` holding each failed step
   with the tool's own messages.

Everything incremental is ninja's job; this module keeps no state of its own. Heavy imports stay
out of the no-op path: a build that has nothing to do costs Python start-up, one header render
and one ninja run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kmtool.artifacts import BUILD_DIR_NAME, NINJA_FILE
from kmtool.artifacts import find_root as find_root  # re-exported; the rule is kmtool.artifacts'
from kmtool.build import ninjafile
from kmtool.errors import BuildError

NINJA_STATUS = "[%f/%t] "
_STATUS_RE = re.compile(r"^\[(\d+)/(\d+)\] (.*)$")
_FAILED_RE = re.compile(r"^FAILED: (?:\[code=\d+\] )?(.*)$")


@dataclass(frozen=True)
class Status:
    """Ninja finished step `done` of `total`; `text` is its description (or command with -v)."""

    done: int
    total: int
    text: str


@dataclass(frozen=True)
class Output:
    """One line a build step printed (warnings, a check's message)."""

    line: str


Event = Status | Output


@dataclass
class Failure:
    """One failed ninja step: what it was, its command and everything it printed."""

    what: str  # the step's description: "CC kernel/main.c"
    outputs: str  # ninja's list of the step's outputs
    command: str = ""
    lines: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One sentence naming the step, for the error line."""
        verb, _, target = self.what.partition(" ")
        if verb == "CC":
            return f"Compiling `{target}` failed"
        if verb in ("LD", "LINK"):
            return f"Linking `{target}` failed"
        if verb == "IMAGE":
            return f"Assembling the disk image `{target}` failed"
        return f"The build step `{self.what or self.outputs}` failed"


class BuildFailure(BuildError):
    """A build step failed; `failures` holds each failed step with its tool's messages."""

    def __init__(self, message: str, failures: list[Failure]):
        super().__init__(message)
        self.failures = failures


@dataclass(frozen=True)
class BuildPaths:
    """Where a build reads and writes (all absolute)."""

    root: Path
    build_dir: Path

    @property
    def ninja_file(self) -> Path:
        return self.build_dir / NINJA_FILE

    @property
    def kernel(self) -> Path:
        return self.build_dir / ninjafile.KERNEL_ELF

    @property
    def loader(self) -> Path:
        return self.build_dir / ninjafile.LOADER_EFI

    @property
    def image(self) -> Path:
        return self.build_dir / ninjafile.IMAGE

    def ninja_spelling(self) -> str:
        """The build directory as build.ninja names it: relative to the root when inside it."""
        try:
            return self.build_dir.relative_to(self.root).as_posix()
        except ValueError:
            return self.build_dir.as_posix()


@dataclass(frozen=True)
class BuildResult:
    """A finished build: its paths, the steps ninja ran (empty: nothing to do), wall seconds."""

    paths: BuildPaths
    steps: tuple[str, ...]
    seconds: float

    @property
    def up_to_date(self) -> bool:
        return not self.steps


def configure(paths: BuildPaths, *, release: bool) -> str:
    """Steps 1-3: check tools, regenerate headers, write build.ninja; return the ninja path."""
    from kmtool.toolchain import require
    from kmtool.image.fat import default_epoch

    for key in ("mformat", "mmd", "mcopy"):
        require(key)  # the image step needs them; fail here with the package name
    tools = ninjafile.Tools(
        clang=require("clang"),
        ld_lld=require("ld.lld"),
        lld_link=require("lld-link"),
        python=sys.executable,
    )
    ninja = require("ninja")
    sources = ninjafile.find_sources(paths.root)
    if not sources.kernel:
        raise BuildError(f"No kernel sources (`kernel/**/*.c`, `*.S`) under `{paths.root}`.")
    if not sources.loader:
        raise BuildError(f"No loader sources (`efi/*.c`) under `{paths.root}`.")

    from kmtool.layout import cgen

    cgen.write(paths.root)
    text = ninjafile.render(
        paths.root,
        paths.ninja_spelling(),
        sources,
        tools,
        release=release,
        epoch=default_epoch(),
    )
    cgen.write_if_changed(paths.ninja_file, text)
    return ninja


def run_ninja(
    ninja: str,
    paths: BuildPaths,
    *,
    verbose: bool = False,
    on_event: Callable[[Event], None] | None = None,
    extra_args: tuple[str, ...] = (),
) -> list[str]:
    """Step 4: run ninja in the source root; return the steps it ran; raise BuildFailure."""
    argv = [ninja, "-f", str(paths.ninja_file), *(["-v"] if verbose else []), *extra_args]
    log = _NinjaLog(on_event or (lambda event: None))
    proc = _start_ninja(argv, paths.root)
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            log.feed(raw.rstrip("\n"))
        code = proc.wait()
    except BaseException:
        proc.terminate()  # ninja removes the outputs of the steps it interrupts
        proc.wait()
        raise
    if code != 0:
        raise log.failure(code)
    return log.steps


def _start_ninja(argv: list[str], root: Path) -> subprocess.Popen[str]:
    """Ninja started in `root` with our NINJA_STATUS, its stdout and stderr as one text pipe."""
    env = dict(os.environ, NINJA_STATUS=NINJA_STATUS)
    env.pop("CLICOLOR_FORCE", None)
    return subprocess.Popen(
        argv,
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
    )


@dataclass
class _NinjaLog:
    """Ninja's output, read one line at a time: the steps it finished, the steps that failed
    (each with the command and the lines printed under its `FAILED:` line) and ninja's own
    `ninja: ...` messages. Lines that belong to no failure are passed on as `Output` events."""

    emit: Callable[[Event], None]
    steps: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    current: Failure | None = None  # the failure the next lines belong to
    expect_command: bool = False  # the line after `FAILED:` is the failed command
    last_status: str = ""

    def feed(self, line: str) -> None:
        """Take one line of ninja's output (without its newline)."""
        status = _STATUS_RE.match(line)
        if status:
            self.current, self.expect_command = None, False
            self.last_status = status.group(3)
            self.steps.append(self.last_status)
            self.emit(Status(int(status.group(1)), int(status.group(2)), self.last_status))
            return
        failed = _FAILED_RE.match(line)
        if failed:
            self.current = Failure(what=self.last_status, outputs=failed.group(1))
            self.failures.append(self.current)
            self.expect_command = True
            return
        if line.startswith("ninja: "):
            self.current, self.expect_command = None, False
            self.messages.append(line[len("ninja: ") :])
            return
        if self.current is not None:
            if self.expect_command:
                self.current.command, self.expect_command = line, False
            else:
                self.current.lines.append(line)
            return
        self.emit(Output(line))

    def failure(self, code: int) -> BuildFailure:
        """The error for ninja exiting with status `code` (not 0) after the lines fed so far."""
        if self.failures:
            first = self.failures[0]
            count = len(self.failures)
            more = f" (and {count - 1} more steps)" if count > 1 else ""
            message = f"{first.summary()}{more}; the tool's messages are above."
            return BuildFailure(message, self.failures)
        errors = [m[len("error: ") :] for m in self.messages if m.startswith("error: ")]
        last = self.messages[-1] if self.messages else f"exit status {code}"
        detail = errors[0] if errors else last
        return BuildFailure(f"ninja stopped the build: {detail.rstrip('.')}.", [])


def build(
    root: Path,
    build_dir: Path | None = None,
    *,
    release: bool = False,
    verbose: bool = False,
    on_event: Callable[[Event], None] | None = None,
) -> BuildResult:
    """Build the kernel, the loader and the disk image of the source tree at `root`."""
    started = time.perf_counter()
    root = root.resolve()
    paths = BuildPaths(root, (build_dir or root / BUILD_DIR_NAME).resolve())
    ninja = configure(paths, release=release)
    steps = run_ninja(ninja, paths, verbose=verbose, on_event=on_event)
    return BuildResult(paths, tuple(steps), time.perf_counter() - started)
