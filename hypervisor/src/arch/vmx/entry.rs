//! The VM entry/exit trampoline.
//!
//! `hv_vmx_run(regs, launched)` saves the host's callee-saved registers and the `regs`
//! pointer on its own stack, writes HOST_RSP (that stack top), loads the guest's general
//! registers from `regs` (GuestRegs order: ax bx cx dx bp si di r8..r15) and executes
//! VMLAUNCH (launched == 0) or VMRESUME. It returns 1 when the instruction fails
//! (VMfailInvalid/VMfailValid: no entry happened, RSP is still ours).
//!
//! A VM exit lands at `hv_vmx_exit` (HOST_RIP) with RSP = HOST_RSP; it stores the guest's
//! registers back through the saved pointer, restores the host's and returns 0 from
//! `hv_vmx_run` to its caller.
#![allow(unsafe_code)]

use devvmx::hw::GuestRegs;
use devvmx::vmcs::HOST_RSP;

core::arch::global_asm!(
    ".pushsection .text.hv_vmx, \"ax\", @progbits",
    ".global hv_vmx_run",
    ".type hv_vmx_run, @function",
    "hv_vmx_run:",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push rdi",
    "mov rax, {host_rsp}",
    "vmwrite rax, rsp",
    "jbe .Lhv_vmx_fail",
    // The flags of this compare survive the movs below and pick the instruction.
    "cmp rsi, 0",
    "mov rax, [rdi + 0]",
    "mov rbx, [rdi + 8]",
    "mov rcx, [rdi + 16]",
    "mov rdx, [rdi + 24]",
    "mov rbp, [rdi + 32]",
    "mov rsi, [rdi + 40]",
    "mov r8, [rdi + 56]",
    "mov r9, [rdi + 64]",
    "mov r10, [rdi + 72]",
    "mov r11, [rdi + 80]",
    "mov r12, [rdi + 88]",
    "mov r13, [rdi + 96]",
    "mov r14, [rdi + 104]",
    "mov r15, [rdi + 112]",
    "mov rdi, [rdi + 48]",
    "jne .Lhv_vmx_resume",
    "vmlaunch",
    "jmp .Lhv_vmx_fail",
    ".Lhv_vmx_resume:",
    "vmresume",
    ".Lhv_vmx_fail:",
    "mov eax, 1",
    "jmp .Lhv_vmx_return",
    ".size hv_vmx_run, . - hv_vmx_run",
    "",
    ".global hv_vmx_exit",
    ".type hv_vmx_exit, @function",
    "hv_vmx_exit:",
    // RSP = HOST_RSP: [rsp] is the GuestRegs pointer pushed by hv_vmx_run.
    "push rdi",
    "mov rdi, [rsp + 8]",
    "mov [rdi + 0], rax",
    "mov [rdi + 8], rbx",
    "mov [rdi + 16], rcx",
    "mov [rdi + 24], rdx",
    "mov [rdi + 32], rbp",
    "mov [rdi + 40], rsi",
    "mov [rdi + 56], r8",
    "mov [rdi + 64], r9",
    "mov [rdi + 72], r10",
    "mov [rdi + 80], r11",
    "mov [rdi + 88], r12",
    "mov [rdi + 96], r13",
    "mov [rdi + 104], r14",
    "mov [rdi + 112], r15",
    "pop rax",
    "mov [rdi + 48], rax",
    "xor eax, eax",
    // Both ways out: drop the saved regs pointer, restore the host's registers.
    ".Lhv_vmx_return:",
    "add rsp, 8",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    ".size hv_vmx_exit, . - hv_vmx_exit",
    ".popsection",
    host_rsp = const HOST_RSP.0,
);

extern "sysv64" {
    /// See the module comment. Runs with interrupts off.
    pub fn hv_vmx_run(regs: *mut GuestRegs, launched: u64) -> u64;
    /// The exit landing: only its address is used (HOST_RIP); never call it.
    pub fn hv_vmx_exit();
}

// The trampoline's offsets above are GuestRegs' repr(C) layout.
const _: () = {
    assert!(core::mem::offset_of!(GuestRegs, ax) == 0);
    assert!(core::mem::offset_of!(GuestRegs, si) == 40);
    assert!(core::mem::offset_of!(GuestRegs, di) == 48);
    assert!(core::mem::offset_of!(GuestRegs, r8) == 56);
    assert!(core::mem::offset_of!(GuestRegs, r15) == 112);
    assert!(core::mem::size_of::<GuestRegs>() == 120);
};
