// Fatal errors and the end of a run (kernel/lib/panic.c).
//
// panic() prints "panic: <message>" and a report block on the console, then ends the run with
// KM_EXIT_PANIC -- or, when the command line holds the word `hold`, prints KM-PANIC-HELD and halts so
// kmtool can dump memory. A panic during a panic halts at once.
#pragma once

#include <stdint.h>

#include "mm/env.h"  // declares panic()

// For handlers that print their own report: panic_begin() marks the panic (halting on recursion) and
// prints "panic: <message>"; the caller prints its report lines, then calls panic_end().
__attribute__((format(printf, 1, 2))) void panic_begin(const char *fmt, ...);
_Noreturn void panic_end(void);

// Prints "  backtrace 0x... 0x..." by walking saved frame pointers from `rbp` (the kernel is built
// with -fno-omit-frame-pointer), stopping at anything outside the kernel's stacks or text.
void print_backtrace(uint64_t rbp);

// Ends the run: writes `value` (KM_EXIT_*) to the isa-debug-exit port; QEMU exits with
// (value << 1) | 1. Halts if the port does nothing (no debug-exit device).
_Noreturn void kernel_exit(uint32_t value);

// Set from the command line word `hold`: stop instead of exiting once ready or panicked.
extern int kernel_hold;
