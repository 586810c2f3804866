// Exception dispatch and the fault report; see include/arch/trap.h.
#include "arch/trap.h"

#include "arch/cpu.h"
#include "lib/fault.h"
#include "lib/panic.h"
#include "lib/printf.h"
#include "mm/paging.h"

static const char *const exception_names[32] = {
    "#DE divide error",        "#DB debug",
    "NMI",                     "#BP breakpoint",
    "#OF overflow",            "#BR bound range",
    "#UD invalid opcode",      "#NM device not available",
    "#DF double fault",        "coprocessor segment overrun",
    "#TS invalid TSS",         "#NP segment not present",
    "#SS stack fault",         "#GP general protection",
    "#PF page fault",          "reserved 15",
    "#MF x87 floating point",  "#AC alignment check",
    "#MC machine check",       "#XM SIMD floating point",
    "#VE virtualization",      "#CP control protection",
    "reserved 22",             "reserved 23",
    "reserved 24",             "reserved 25",
    "reserved 26",             "reserved 27",
    "#HV hypervisor injection", "#VC VMM communication",
    "#SX security",            "reserved 31",
};

static void describe_page_fault(uint64_t error, char *buf, size_t n)
{
    ksnprintf(buf, n, "%s %s, %s mode%s", (error & PF_PRESENT) ? "protection" : "not-present",
              (error & PF_FETCH) ? "instruction fetch" : (error & PF_WRITE) ? "write" : "read",
              (error & PF_USER) ? "user" : "supervisor",
              (error & PF_RESERVED) ? ", reserved bit set" : "");
}

_Noreturn static void fault_report(struct trap_frame *f, uint64_t cr2)
{
    const char *name = f->vector < 32 ? exception_names[f->vector] : "unexpected interrupt";
    fault_record_trap(f, cr2);   // before anything is printed: the report may not get out
    if (f->vector == 14) {
        char what[96];
        describe_page_fault(f->error, what, sizeof(what));
        panic_begin("page fault at 0x%lx (%s), %s, rip 0x%lx", cr2, region_name(cr2), what,
                    f->rip);
    } else {
        panic_begin("%s (vector %lu), rip 0x%lx", name, f->vector, f->rip);
    }
    kprintf("  vector   %lu (%s)\n", f->vector, name);
    kprintf("  error    0x%lx\n", f->error);
    kprintf("  rip      0x%016lx (%s)\n", f->rip, region_name(f->rip));
    kprintf("  cr2      0x%016lx (%s)\n", cr2, region_name(cr2));
    kprintf("  cr3      0x%016lx\n", read_cr3());
    kprintf("  rsp      0x%016lx  rflags 0x%lx  cs 0x%lx  ss 0x%lx\n", f->rsp, f->rflags, f->cs,
            f->ss);
    kprintf("  rax %016lx rbx %016lx rcx %016lx rdx %016lx\n", f->rax, f->rbx, f->rcx, f->rdx);
    kprintf("  rsi %016lx rdi %016lx rbp %016lx r8  %016lx\n", f->rsi, f->rdi, f->rbp, f->r8);
    kprintf("  r9  %016lx r10 %016lx r11 %016lx r12 %016lx\n", f->r9, f->r10, f->r11, f->r12);
    kprintf("  r13 %016lx r14 %016lx r15 %016lx\n", f->r13, f->r14, f->r15);
    print_backtrace(f->rbp);
    panic_end();
}

void trap_dispatch(struct trap_frame *f)
{
    uint64_t cr2 = read_cr2();
    if (f->vector == 14 && paging_handle_fault(f))
        return;
    fault_report(f, cr2);
}
