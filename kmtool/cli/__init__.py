"""The root command group. `COMMANDS` below is the index of the CLI.

Each command lives in its own module under kmtool/cli/ and is imported only when it runs, so
`kmtool --help` stays fast (no rich tables, pyelftools or numpy at start-up).
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from kmtool import __version__

# name -> (module under kmtool.cli, attribute, one-line help shown by `kmtool --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "doctor": ("doctor", "doctor", "Check that the host toolchain, QEMU and OVMF are installed."),
    "build": ("build", "build", "Compile the kernel and loader and assemble the GPT disk image."),
    "run": ("run", "run", "Boot the image in QEMU with OVMF and report the outcome."),
    "inspect": (
        "inspect",
        "inspect",
        "Decode a memory dump: CPU, boot info, page tables, frames, heap.",
    ),
    "diff": ("diff", "diff", "Compare two dumps: leaked frames, owners, mappings, heap, counters."),
    "gdb": (
        "gdb",
        "gdb",
        "Start gdb on the guest's stub: kernel symbols, early breakpoints, km commands.",
    ),
    "layout": ("layout", "layout", "Show, check and generate the virtual address-space plan."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(f"kmtool.cli.{entry[0]}")
        command: click.Command = getattr(module, entry[1])
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, _, help_text) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kmtool")
def cli() -> None:
    """kmtool: build, boot and inspect a higher-half x86-64 kernel and its memory manager."""


def main() -> None:
    """Console-script entry: run the CLI and exit with a status from the one table
    (kmtool/exitstatus.py): a `KmtoolError` or a usage error is one red line and status 1, a bug
    one red line and status 70 (a traceback with KMTOOL_DEBUG=1)."""
    from kmtool.errors import KmtoolError
    from kmtool.exitstatus import ExitStatus

    try:
        code = cli.main(prog_name="kmtool", standalone_mode=False)
        if isinstance(code, int) and code != 0:
            sys.exit(code)
    except KmtoolError as err:
        _report_error(str(err))
        sys.exit(ExitStatus.USER_ERROR)
    except click.exceptions.Abort:
        _report_error("Interrupted.")
        sys.exit(ExitStatus.INTERRUPTED)
    except click.ClickException as err:
        # Usage errors (unknown option, bad value) are user errors like any other: one line, status 1
        # (click's own status 2 is `kmtool run`'s outcome fail).
        message = err.format_message().rstrip(".")
        command = getattr(getattr(err, "ctx", None), "command_path", None)
        hint = f" (see `{command} --help`)" if command and isinstance(err, click.UsageError) else ""
        _report_error(f"{message}{hint}.")
        sys.exit(ExitStatus.USER_ERROR)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        _report_error("Interrupted.")
        sys.exit(ExitStatus.INTERRUPTED)
    except BrokenPipeError:
        sys.exit(ExitStatus.USER_ERROR)
    except Exception as err:  # a bug: hide the traceback unless asked for it
        if os.environ.get("KMTOOL_DEBUG") == "1":
            raise
        _report_error(
            f"Internal error: {type(err).__name__}: {err} (set KMTOOL_DEBUG=1 for a traceback)."
        )
        sys.exit(ExitStatus.INTERNAL_ERROR)


def _report_error(message: str) -> None:
    from rich.text import Text

    from kmtool.cli.app import err_console

    err_console.print(Text("error: ", style="red") + Text(message), soft_wrap=True)
