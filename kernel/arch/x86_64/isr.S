// Exception entry stubs. Each pushes a 0 in place of the error code when the CPU pushes none, then
// its vector number, and jumps to isr_common, which saves the general registers (struct trap_frame
// in include/arch/trap.h), calls trap_dispatch(frame) and returns with iretq.
//
// Stack alignment: the CPU aligns RSP to 16 before pushing its 5-word frame; with the error code
// and the vector that makes 7 words, plus 15 registers = 22 words, so RSP is 16-byte aligned at the
// call, as the System V ABI wants.
//
// Each stub is typed and sized as a function, so `kmtool inspect` names a gate's handler `isr_3`.

    .text

.macro ISR_NOERR vector
    .align 16
    .type isr_\vector, @function
isr_\vector:
    pushq $0
    pushq $\vector
    jmp isr_common
    .size isr_\vector, . - isr_\vector
.endm

.macro ISR_ERR vector
    .align 16
    .type isr_\vector, @function
isr_\vector:
    pushq $\vector
    jmp isr_common
    .size isr_\vector, . - isr_\vector
.endm

ISR_NOERR 0
ISR_NOERR 1
ISR_NOERR 2
ISR_NOERR 3
ISR_NOERR 4
ISR_NOERR 5
ISR_NOERR 6
ISR_NOERR 7
ISR_ERR   8
ISR_NOERR 9
ISR_ERR   10
ISR_ERR   11
ISR_ERR   12
ISR_ERR   13
ISR_ERR   14
ISR_NOERR 15
ISR_NOERR 16
ISR_ERR   17
ISR_NOERR 18
ISR_NOERR 19
ISR_NOERR 20
ISR_ERR   21
ISR_NOERR 22
ISR_NOERR 23
ISR_NOERR 24
ISR_NOERR 25
ISR_NOERR 26
ISR_NOERR 27
ISR_NOERR 28
ISR_ERR   29
ISR_ERR   30
ISR_NOERR 31
ISR_NOERR 255        // every vector above 31 (the kernel enables no interrupts)

isr_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    cld
    mov %rsp, %rdi
    call trap_dispatch
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp       // vector and error code
    iretq

// Stub addresses for idt.c: isr_stubs[0..31] are the exceptions, isr_stubs[32] the catch-all.
    .section .rodata
    .align 8
    .global isr_stubs
isr_stubs:
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,255
    .quad isr_\v
    .endr

    .section .note.GNU-stack, "", @progbits
