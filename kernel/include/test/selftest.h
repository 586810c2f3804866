// In-kernel self tests (kernel/test/selftest.c), run with the command line word `test`.
// Each prints `ok <name>` or `fail <name>: <why>`.
#pragma once

#include "lib/report.h"

// Runs every test; fills the totals.
void selftest_run(struct test_totals *totals);

// `test fault`: reads an address in kernel-vspace that the address manager never handed out. The
// page-fault handler must refuse it and panic. Returns only if no fault happened (a failure).
void selftest_fault(void);
