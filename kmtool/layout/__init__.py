"""The virtual address-space plan: the region table (the only one), checks, C generation, report."""
