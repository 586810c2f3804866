// Injected bugs; see include/test/bugs.h.
#include "test/bugs.h"

#include <km/layout.h>

#include "arch/cpu.h"
#include "lib/cmdline.h"
#include "lib/panic.h"
#include "lib/printf.h"
#include "lib/string.h"
#include "mm/bootstrap.h"
#include "mm/paging.h"

enum bug_phase { BEFORE_READY, AFTER_READY };

// One frame from the frame allocator, or a panic saying which bug needed it.
static uint64_t one_frame(const char *bug)
{
    uint64_t phys, got;
    if (frames_alloc(&km_frames, 1, &phys, &got) != KM_OK)
        panic("bug %s: no free frame to start with", bug);
    return phys;
}

// A kernel-vspace page that the page-fault handler has backed (written once); its frame in *phys.
static uint64_t backed_page(const char *bug, uint64_t *phys)
{
    volatile uint64_t *page = kvm_reserve(KM_PAGE_SIZE);
    if (!page)
        panic("bug %s: no kernel virtual space to start with", bug);
    *page = 0;
    uint64_t va = (uint64_t)(uintptr_t)page, flags;
    if (!paging_translate(kernel_pml4, va, phys, &flags))
        panic("bug %s: page 0x%lx is not mapped after a write", bug, va);
    return va;
}

static void double_free(void)
{
    uint64_t frame = one_frame("double-free");
    kprintf("bug double-free: freeing frame 0x%lx twice\n", frame);
    frames_free(&km_frames, frame, 1);
    frames_free(&km_frames, frame, 1);
    panic("bug double-free: the second free of frame 0x%lx was not caught", frame);
}

static void leak(void)
{
    uint64_t phys, got;
    if (frames_alloc(&km_frames, 4, &phys, &got) != KM_OK)
        panic("bug leak: no free frame to leak");
    kprintf("bug leak: dropped %lu frames at 0x%lx-0x%lx\n", got, phys,
            phys + got * KM_PAGE_SIZE - 1);
}

static void use_after_free(void)
{
    // Two pages backed one after the other get neighbouring frames; giving back the first alone
    // (and folding the allocator's stack) leaves it a span of its own, its node in its first bytes
    // (its neighbour is still mapped), and the stale pointer then writes over that node.
    uint64_t a, b;
    uint64_t va = backed_page("use-after-free", &a);
    backed_page("use-after-free", &b);
    paging_unmap(kernel_pml4, va);
    frames_free(&km_frames, a, 1);
    frames_fold(&km_frames);   // the single frame leaves the stack half: it is a span node now
    kprintf("bug use-after-free: frame 0x%lx freed, then 64 bytes written to it (page 0x%lx "
            "still holds frame 0x%lx)\n", a, va + KM_PAGE_SIZE, b);
    memset(phys_to_virt(a), 0x41, 64);
}

static volatile uint64_t recursion_limit = ~0ull;   // volatile: the recursion is not provably endless

__attribute__((noinline)) static uint64_t recurse(uint64_t depth)
{
    volatile uint8_t frame[512];
    frame[0] = (uint8_t)depth;
    if (depth == recursion_limit)
        return 0;
    return recurse(depth + 1) + frame[0];
}

static void stack_overflow(void)
{
    extern char __stack_guard[];
    kprintf("bug stack-overflow: recursing into the guard page at 0x%lx\n",
            (uint64_t)(uintptr_t)__stack_guard);
    recurse(0);
    panic("bug stack-overflow: the recursion returned");
}

static void wx(void)
{
    uint64_t phys;
    uint64_t va = backed_page("wx", &phys);
    int status = paging_map(kernel_pml4, va, phys, KM_PTE_WRITABLE);
    if (status != KM_OK)
        panic("bug wx: cannot remap 0x%lx (status %d)", va, status);
    kprintf("bug wx: kernel page 0x%lx (frame 0x%lx) mapped writable and executable\n", va, phys);
}

static void bad_pte(void)
{
    if (offset_map.phys_bits >= 52)
        panic("bug bad-pte: MAXPHYADDR is 52, so no address bit of a PTE is reserved");
    uint64_t phys, reserved = 1ull << 51;
    uint64_t va = backed_page("bad-pte", &phys);
    int status = paging_map(kernel_pml4, va, phys | reserved, KM_PTE_WRITABLE | paging_nx);
    if (status != KM_OK)
        panic("bug bad-pte: cannot remap 0x%lx (status %d)", va, status);
    kprintf("bug bad-pte: reserved bit 51 set in the PTE of 0x%lx (MAXPHYADDR %lu), then read\n", va,
            offset_map.phys_bits);
    (void)*(volatile uint64_t *)(uintptr_t)va;
    panic("bug bad-pte: reading 0x%lx did not fault", va);
}

static void idt(void)
{
    struct {
        uint16_t limit;
        uint64_t base;
    } __attribute__((packed)) idtr;
    __asm__ volatile("sidt %0" : "=m"(idtr));
    kprintf("bug idt: IDT at 0x%lx given limit 0 (was 0x%x), then int3\n", idtr.base, idtr.limit);
    idtr.limit = 0;
    __asm__ volatile("lidt %0; int3" : : "m"(idtr) : "memory");
    panic("bug idt: int3 with an empty IDT returned");
}

static const struct {
    const char *name;
    enum bug_phase phase;
    void (*inject)(void);
} bugs[] = {
    {"double-free", BEFORE_READY, double_free},   {"leak", BEFORE_READY, leak},
    {"use-after-free", AFTER_READY, use_after_free}, {"stack-overflow", BEFORE_READY, stack_overflow},
    {"wx", BEFORE_READY, wx},                     {"bad-pte", BEFORE_READY, bad_pte},
    {"idt", BEFORE_READY, idt},
};

#define BUG_COUNT (sizeof(bugs) / sizeof(bugs[0]))

static void inject(const char *cmdline, enum bug_phase phase)
{
    char name[32];
    if (!cmdline_value(cmdline, "bug", name, sizeof(name)))
        return;
    for (unsigned i = 0; i < BUG_COUNT; i++) {
        if (strcmp(name, bugs[i].name) == 0) {
            if (bugs[i].phase == phase)
                bugs[i].inject();
            return;
        }
    }
    if (phase == BEFORE_READY)
        panic("unknown bug `%s` on the command line; the bugs are double-free, leak, "
              "use-after-free, stack-overflow, wx, bad-pte and idt", name);
}

void bugs_before_ready(const char *cmdline)
{
    inject(cmdline, BEFORE_READY);
}

void bugs_after_ready(const char *cmdline)
{
    inject(cmdline, AFTER_READY);
}
