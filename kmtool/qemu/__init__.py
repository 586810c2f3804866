"""QEMU: firmware, command line, accelerator probe, QMP, outcomes, the runner and dumps."""
