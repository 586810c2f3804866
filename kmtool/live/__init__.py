"""Live guests (docs/design.md §12): the live run policy (run.py), the session file it writes
(session.py), and the paused, memory-mapped view of the running guest that `kmtool inspect --live`
and `kmtool diff live:` decode like a dump (snapshot.py)."""
