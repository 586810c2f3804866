// Bugs to find (docs/design.md §11): the command-line word `bug=NAME` injects one classic memory
// bug after bootstrap (kernel/test/bugs.c), so that every diagnosis kmtool makes can be tested end
// to end and a learner can watch each failure once. Each injection first prints one line
// "bug NAME: <what it does, with the addresses>" on the console.
//
//   double-free     frees one frame twice; the frame allocator's own check panics naming it
//   leak            allocates frames and drops them; the kernel runs on to ready
//   use-after-free  frees a frame, then writes through a stale pointer onto the free-list node that
//                   now lives in it (after the ready report, so the kernel's own walk is not hurt)
//   stack-overflow  unbounded recursion into the guard page below the boot stack: #PF, then #DF
//                   on its IST stack
//   wx              maps a kernel page writable and executable; the kernel runs on to ready
//   bad-pte         sets a reserved bit in a live PTE, then touches the page: #PF with RSVD
//   idt             sets the IDT limit to 0, then executes int3: #GP, #DF, triple fault (reset)
#pragma once

// The bugs that strike before the ready report (all but use-after-free). An unknown NAME panics,
// naming it. Returns only for the bugs that leave the kernel running.
void bugs_before_ready(const char *cmdline);

// The bugs that strike after the ready report (use-after-free).
void bugs_after_ready(const char *cmdline);
