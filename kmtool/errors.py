"""One small exception tree.

Every error a user can cause (bad input, a missing tool, a failed build) is a `KmtoolError`; the CLI
prints its message as one red line on stderr and exits with status 1. Messages are whole sentences that
name the thing at fault in backticks, and for binary input the address and the raw value.
Anything that is not a `KmtoolError` is a bug and shows a traceback only with KMTOOL_DEBUG=1.
"""


class KmtoolError(Exception):
    """Base of every user-facing error; `str(err)` is the one-line message."""


class ToolError(KmtoolError):
    """A required host tool or firmware file is missing or unusable."""


class BuildError(KmtoolError):
    """Compiling, linking or assembling the image failed."""


class ImageError(KmtoolError):
    """A disk image could not be written or is malformed."""


class LayoutError(KmtoolError):
    """The region table, or a kernel checked against it, is inconsistent."""


class RunError(KmtoolError):
    """QEMU could not be started or controlled."""


class KernelElfError(KmtoolError):
    """The kernel ELF (`--kernel`, build/kernel.elf) is missing, unreadable or not the kernel kmtool
    expects; raised by kmtool.elf, the one reader of it."""


class DumpError(KmtoolError):
    """A memory dump (or a structure inside it) is truncated, malformed or inconsistent."""


class ValidationError(KmtoolError):
    """A value supplied on the command line or in a file is not acceptable."""
