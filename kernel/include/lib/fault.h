// The fault record (docs/design.md §11): struct km_fault_record km_fault_record, declared in
// kmtool/schemas/fault.py, filled by kernel/lib/fault.c before any panic report is printed, and
// published in the core-info block (fault_phys) so that a dump of a held kernel explains itself.
#pragma once

#include <km/structs.h>
#include <stdarg.h>

#include "arch/trap.h"

extern struct km_fault_record km_fault_record;

// An exception the kernel cannot handle: counts it and, when it is the first fault, records the
// trap frame, CR2 and the CR3 in effect, and the frame-pointer backtrace from the frame's rbp.
void fault_record_trap(const struct trap_frame *f, uint64_t cr2);

// A panic() at `rip` (its caller's return address) with panic()'s own stack and frame pointers:
// counts it and, when it is the first fault, records what a panic has (CR2, CR3, rsp, rbp, the
// callee-saved registers are not known and stay 0) and the backtrace from `rbp`.
void fault_record_panic(uint64_t rip, uint64_t rsp, uint64_t rbp);

// Formats the panic message into the record, cut to KM_FAULT_MESSAGE_BYTES - 1 bytes. Only the
// first fault's message is kept: it does nothing when the record already has one.
void fault_record_message(const char *fmt, va_list ap);

// Collects up to `max` return addresses by walking saved frame pointers from `rbp`, stopping at
// anything outside the kernel's stacks (in .bss) or its text; returns how many it stored.
int backtrace_collect(uint64_t rbp, uint64_t *out, int max);
