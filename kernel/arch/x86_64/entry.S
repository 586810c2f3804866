// Kernel entry point.
//
// The loader (efi/) jumps here with interrupts off, CR3 = its scratch page 0 (kernel at its link
// address through PML4 510, physical 0..4 GiB at PML4 0 and 511), the firmware's GDT and IDT still
// loaded, an undefined stack, and %rdi = PHYSICAL address of struct km_boot_info (System V ABI).
//
// _start reads the TSC first (bootstrap_cycles are measured from here), zeroes .bss (the loader does
// too; doing it again costs little and makes the kernel independent of that), switches to its own
// stack in .bss and calls kmain(boot_info_phys). kmain never returns.

#include <km/layout.h>

#define KSTACK_SIZE 32768

    .section .text.entry, "ax"
    .global _start
    .type _start, @function
_start:
    cli
    cld
    mov %rdi, %r12                      // boot info physical address, kept across the zeroing
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, %r13                      // entry TSC

    lea __bss_start(%rip), %rdi
    lea __bss_end(%rip), %rcx
    sub %rdi, %rcx
    xor %eax, %eax
    rep stosb

    mov %r13, kernel_entry_tsc(%rip)
    lea boot_stack_top(%rip), %rsp
    xor %ebp, %ebp
    mov %r12, %rdi
    call kmain
1:  cli
    hlt
    jmp 1b
    .size _start, . - _start

// The boot stack lives in its own section so the linker script can put an unmapped guard page right
// below it (see kernel.ld and mm/bootstrap.c): a stack overflow faults instead of corrupting .bss.
    .section .kstack, "aw", @nobits
    .align KM_PAGE_SIZE
    .global boot_stack_bottom
boot_stack_bottom:
    .skip KSTACK_SIZE
    .global boot_stack_top
boot_stack_top:

    .section .note.GNU-stack, "", @progbits
