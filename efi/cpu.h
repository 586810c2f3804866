// The loader's CPU helpers: the shared instructions (port I/O, TSC, MSRs, CPUID) from
// include/x86/insn.h, plus the control-register bits the loader sets before the jump.
#pragma once

#include <stdint.h>
#include <x86/insn.h>

#define CR0_WP (1ull << 16)
