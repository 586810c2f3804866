"""`kmtool diff A B`: what changed between two dumps (or `kmtool inspect --json` documents) of the
kernel (docs/design.md §12).

    snapshot  one side, read from a dump (through kmtool.dump.inspection) or from a document
    compare   the findings: frames that changed owner (leaks first), mappings added, removed or
              changed per address space, heap blocks by order, counters
    render    the findings as tables
"""
