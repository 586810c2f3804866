"""The virtual address-space plan: the region table (the only one), its checks, C generation, report."""
