// The fault record; see include/lib/fault.h.
#include "lib/fault.h"

#include <stdbool.h>

#include "arch/cpu.h"
#include "lib/printf.h"

struct km_fault_record km_fault_record;

extern char __text_start[], __text_end[], __bss_start[], __bss_end[];

int backtrace_collect(uint64_t rbp, uint64_t *out, int max)
{
    // Frames live on the boot stack or the IST stack, both inside .bss.
    uint64_t lo = (uint64_t)(uintptr_t)__bss_start, hi = (uint64_t)(uintptr_t)__bss_end;
    uint64_t text_lo = (uint64_t)(uintptr_t)__text_start, text_hi = (uint64_t)(uintptr_t)__text_end;
    int n = 0;
    while (n < max) {
        if (rbp < lo || rbp + 16 > hi || (rbp & 7))
            break;
        const uint64_t *frame = (const uint64_t *)(uintptr_t)rbp;
        uint64_t ret = frame[1];
        if (ret < text_lo || ret >= text_hi)
            break;
        out[n++] = ret;
        if (frame[0] <= rbp)
            break;   // frames only go up the stack
        rbp = frame[0];
    }
    return n;
}

// Counts the fault; true when it is the first one, whose state the record keeps.
static bool first_fault(void)
{
    return km_fault_record.seq++ == 0;
}

static void record_backtrace(uint64_t rbp)
{
    struct km_fault_record *r = &km_fault_record;
    r->frame_count = (uint32_t)backtrace_collect(rbp, r->frames, KM_FAULT_MAX_FRAMES);
}

void fault_record_trap(const struct trap_frame *f, uint64_t cr2)
{
    if (!first_fault())
        return;
    struct km_fault_record *r = &km_fault_record;
    r->kind = KM_FAULT_KIND_EXCEPTION;
    r->vector = f->vector;
    r->error_code = f->error;
    r->cr2 = cr2;
    r->cr3 = read_cr3();
    r->rip = f->rip;
    r->rsp = f->rsp;
    r->rflags = f->rflags;
    r->cs = f->cs;
    r->ss = f->ss;
    r->rax = f->rax;
    r->rbx = f->rbx;
    r->rcx = f->rcx;
    r->rdx = f->rdx;
    r->rsi = f->rsi;
    r->rdi = f->rdi;
    r->rbp = f->rbp;
    r->r8 = f->r8;
    r->r9 = f->r9;
    r->r10 = f->r10;
    r->r11 = f->r11;
    r->r12 = f->r12;
    r->r13 = f->r13;
    r->r14 = f->r14;
    r->r15 = f->r15;
    record_backtrace(f->rbp);
}

void fault_record_panic(uint64_t rip, uint64_t rsp, uint64_t rbp)
{
    if (!first_fault())
        return;
    struct km_fault_record *r = &km_fault_record;
    uint64_t rflags;
    __asm__ volatile("pushfq; popq %0" : "=r"(rflags));
    uint16_t cs, ss;
    __asm__ volatile("mov %%cs, %0; mov %%ss, %1" : "=r"(cs), "=r"(ss));
    r->kind = KM_FAULT_KIND_PANIC;
    r->cr2 = read_cr2();
    r->cr3 = read_cr3();
    r->rip = rip;
    r->rsp = rsp;
    r->rbp = rbp;
    r->rflags = rflags;
    r->cs = cs;
    r->ss = ss;
    record_backtrace(rbp);
}

void fault_record_message(const char *fmt, va_list ap)
{
    char *message = (char *)km_fault_record.message;
    if (message[0])
        return;
    va_list copy;
    va_copy(copy, ap);
    kvsnprintf(message, KM_FAULT_MESSAGE_BYTES, fmt, copy);
    va_end(copy);
}
