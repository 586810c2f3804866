"""The fault record: what the CPU and the kernel knew when the kernel gave up (docs/design.md §11).

The kernel keeps one `FaultRecord` (C `struct km_fault_record km_fault_record`) and publishes its
physical address in the core-info block (`fault_phys`). It fills the record *before* it prints the
panic report, on every CPU exception it cannot handle (kind `FAULT_KIND_EXCEPTION`) and on every
`panic()` (kind `FAULT_KIND_PANIC`), so a dump taken with `hold` holds the state even when the
report never reached the console.

The first fault wins: `seq` counts every fault and panic since boot, but the registers, message and
frames are those of the first one, since a later fault (a fault while reporting) is a consequence.
`seq` 0 means nothing went wrong. For a panic, `vector` and `error_code` are 0 and meaningless,
`rip` is the address panic() returns to (inside its caller) and `rsp`/`rbp` are panic()'s own frame.
"""

from construct import Array, Bytes, Int32ul, Int64ul, Struct

FAULT_KIND_NONE = 0
FAULT_KIND_EXCEPTION = 1
FAULT_KIND_PANIC = 2
#: Bytes of the panic message kept, including the terminating NUL (longer messages are cut).
FAULT_MESSAGE_BYTES = 160
#: Frame-pointer return addresses kept, innermost first.
FAULT_MAX_FRAMES = 16

#: General registers in the record's order (the trap frame's names).
GENERAL_REGISTERS = (
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
)  # fmt: skip

FaultRecord = Struct(
    "seq" / Int64ul * "faults and panics since boot; 0 when none (the state is the first one's)",
    "kind" / Int32ul * "KM_FAULT_KIND_NONE, KM_FAULT_KIND_EXCEPTION or KM_FAULT_KIND_PANIC",
    "frame_count" / Int32ul * "valid entries of frames[]",
    "vector" / Int64ul * "exception vector (0-255); 0 for a panic",
    "error_code" / Int64ul * "the error code the CPU pushed (0 when the vector has none)",
    "cr2" / Int64ul * "CR2 at the fault: the faulting address of a #PF",
    "cr3" / Int64ul * "CR3 in effect at the fault (the page tables CR2 was walked under)",
    "rip" / Int64ul * "instruction pointer of the fault (for a panic: the caller's return address)",
    "rsp" / Int64ul * "stack pointer at the fault",
    "rflags" / Int64ul * "RFLAGS at the fault",
    "cs" / Int64ul * "code segment selector at the fault",
    "ss" / Int64ul * "stack segment selector at the fault",
    *(name / Int64ul * f"general register {name} at the fault" for name in GENERAL_REGISTERS),
    "message" / Bytes(FAULT_MESSAGE_BYTES) * "the panic message, NUL-terminated, cut to fit",
    "frames" / Array(FAULT_MAX_FRAMES, Int64ul) * "frame-pointer return addresses, innermost first",
)


#: The architectural exceptions by vector (Intel SDM vol. 3, table 6-1): mnemonic and name.
EXCEPTIONS = {
    0: ("#DE", "divide error"), 1: ("#DB", "debug"), 2: ("NMI", "non-maskable interrupt"),
    3: ("#BP", "breakpoint"), 4: ("#OF", "overflow"), 5: ("#BR", "bound range exceeded"),
    6: ("#UD", "invalid opcode"), 7: ("#NM", "device not available"), 8: ("#DF", "double fault"),
    10: ("#TS", "invalid TSS"), 11: ("#NP", "segment not present"), 12: ("#SS", "stack fault"),
    13: ("#GP", "general protection"), 14: ("#PF", "page fault"), 16: ("#MF", "x87 error"),
    17: ("#AC", "alignment check"), 18: ("#MC", "machine check"), 19: ("#XM", "SIMD error"),
    20: ("#VE", "virtualization exception"), 21: ("#CP", "control protection"),
    28: ("#HV", "hypervisor injection"), 29: ("#VC", "VMM communication"),  # AMD APM vol. 2, 8.2
}  # fmt: skip
#: Vectors only a confidential guest's CPU raises, with the guest that does (AMD APM vol. 2, 8.2
#: and 15.35): outside such a guest their gates are never taken, so what they select is never used.
CONFIDENTIAL_GUEST_VECTORS = {28: "an SEV-SNP guest", 29: "an SEV-ES guest"}
#: Vectors whose error code is a selector error code (EXT bit 0, IDT bit 1, TI bit 2, index).
SELECTOR_ERROR_VECTORS = frozenset({10, 11, 12, 13})
PAGE_FAULT = 14
#: Page-fault error code bits, low to high (SDM vol. 3, 4.7).
PAGE_FAULT_BITS = (
    (0, "P", "the page was present (a protection fault)"),
    (1, "W", "a write"),
    (2, "U", "from user mode"),
    (3, "RSVD", "a reserved bit was set in a paging entry"),
    (4, "I", "an instruction fetch"),
    (5, "PK", "a protection-key violation"),
    (6, "SS", "a shadow-stack access"),
)


def exception_mnemonic(vector: int) -> str:
    """`#PF`, or `vector 32` for what has no mnemonic."""
    return EXCEPTIONS[vector][0] if vector in EXCEPTIONS else f"vector {vector}"
