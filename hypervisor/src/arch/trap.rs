//! Interrupt and exception entry: one stub per vector pushes a uniform frame and calls
//! `trap_dispatch`. Exceptions are fatal (diagnostic on the log, machine stopped);
//! IRQs go to pic.rs's handlers; the local APIC's vectors (48-63) to lapic.rs.
#![allow(unsafe_code)]

core::arch::global_asm!(
    r#"
.macro ISR_NOERR n
isr_\n:
    push 0
    push \n
    jmp isr_common
.endm
.macro ISR_ERR n
isr_\n:
    push \n
    jmp isr_common
.endm

.section .text
.irp n, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31
ISR_NOERR \n
.endr
.irp n, 8,10,11,12,13,14,17,21,29,30
ISR_ERR \n
.endr
.irp n, 32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63
ISR_NOERR \n
.endr

isr_common:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov rdi, rsp
    cld
    call trap_dispatch
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16
    iretq

.section .rodata
.balign 8
.global isr_table
isr_table:
.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63
    .quad isr_\n
.endr
"#
);

pub const VECTORS: usize = 64;

extern "C" {
    static isr_table: [u64; VECTORS];
}

/// The entry stubs' addresses, by vector.
pub fn stubs() -> &'static [u64; VECTORS] {
    // SAFETY: isr_table is a read-only table of addresses defined above.
    unsafe { &*core::ptr::addr_of!(isr_table) }
}

/// What the stubs push: saved registers, vector, error code, then the CPU's frame.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack fault",
    "#GP general protection",
    "#PF page fault",
    "reserved 15",
    "#MF x87 error",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD error",
    "#VE virtualization",
    "#CP control protection",
    "reserved 22",
    "reserved 23",
    "reserved 24",
    "reserved 25",
    "reserved 26",
    "reserved 27",
    "reserved 28",
    "reserved 29",
    "reserved 30",
    "reserved 31",
];

#[no_mangle]
extern "C" fn trap_dispatch(f: &mut TrapFrame) {
    let v = f.vector as usize;
    if v >= super::lapic::FIRST_VECTOR as usize {
        super::lapic::interrupt(v as u8);
        return;
    }
    if v >= 32 {
        super::pic::irq((v - 32) as u8);
        return;
    }
    log::error!(
        "kernel exception {} (vector {}) error {:#x} at rip {:#x} rsp {:#x} cr2 {:#x}",
        NAMES[v],
        v,
        f.error,
        f.rip,
        f.rsp,
        super::cpu::cr2()
    );
    log::error!(
        "rax {:#x} rbx {:#x} rcx {:#x} rdx {:#x} rsi {:#x} rdi {:#x} rbp {:#x}",
        f.rax,
        f.rbx,
        f.rcx,
        f.rdx,
        f.rsi,
        f.rdi,
        f.rbp
    );
    super::cpu::exit(false);
}
