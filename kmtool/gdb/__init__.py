"""`kmtool gdb`: gdb attached to QEMU's stub, with the kernel's symbols and kmtool's `km` commands
(docs/design.md §12).

    target.py     what gdb attaches to: the stub's address, the kernel ELF, the live session
                  (read by kmtool/live/session.py), from the options, the session and the
                  defaults, checked before gdb starts
    gdbinit.py    the generated gdbinit, line by line with the reason for each line
    launch.py     writes the gdbinit next to the build and replaces kmtool with gdb
    in_gdb.py     runs inside gdb's own Python (the system python3, without kmtool's
                  dependencies): the `km` commands, the connect step, and the switch from
                  hardware to software breakpoints once the kernel is mapped

Everything here except in_gdb.py runs in kmtool's interpreter; in_gdb.py imports nothing of kmtool
and nothing outside the standard library and gdb's `gdb` module.
"""
