"""QEMU: firmware, command line, accelerator probe, QMP, outcomes, dumps, and the runner: serial
watcher (serial.py), preflight checks, the QEMU process, and the run policy (runner.py)."""
