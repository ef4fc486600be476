//! Starting an application processor: a trampoline page below 1 MiB that takes a CPU from
//! the real mode a start-up IPI leaves it in to long mode on the boot CPU's page tables
//! (protected mode from 16 bits, then boot.rs's `long_mode32`, as the boot CPU's 32-bit
//! stub does), then onto its own stack in the kernel's AP entry, which the kernel hands
//! [`install`] (arch calls nothing above it).
//!
//! The trampoline runs at the fixed address [`TRAMPOLINE`]; its parameters (CR3, stack
//! top, CPU number) sit at [`PARAMS`] in the same page. APs start one at a time: the
//! boot CPU writes the parameters, sends INIT and start-up IPIs, and waits until the AP
//! has taken them (`started`) before it starts the next.
#![allow(unsafe_code)]

use super::{lapic, timer};
use core::sync::atomic::{AtomicU64, Ordering};

/// The trampoline's page: SIPI vector 8.
pub const TRAMPOLINE: u64 = 0x8000;
/// The parameter block: CR3, stack top, CPU number (u64 each).
const PARAMS: u64 = TRAMPOLINE + 0xfc0;

#[cfg(target_os = "none")] // an AP's entry (through boot.rs's long_mode32): only in the image
core::arch::global_asm!(
    r#"
.section .rodata.ap_trampoline, "a"
.code16
.global ap_tramp_start
ap_tramp_start:
    cli
    cld
    xor ax, ax
    mov ds, ax
    /* o32 lgdt [ap_gdtr]: a 16-bit absolute address (the assembler takes no label
       difference in a memory operand) */
    .byte 0x66, 0x0f, 0x01, 0x16
    .short ap_gdtr - ap_tramp_start + 0x8000
    mov eax, cr0
    or eax, 1                   /* PE */
    mov cr0, eax
    /* ljmp 0x08:ap_pm32 with a 32-bit offset */
    .byte 0x66, 0xea
    .long ap_pm32 - ap_tramp_start + 0x8000
    .short 0x08

.code32
ap_pm32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, 0x8fc0             /* a few bytes of stack below the parameters */
    mov eax, [0x8fc0]           /* PARAMS: the boot CPU's CR3 (below 4 GiB) */
    mov ecx, offset long_mode32 /* boot.rs: PAE, CR3, EFER.LME, paging */
    call ecx
    /* ljmp 0x18:ap_lm64 */
    .byte 0xea
    .long ap_lm64 - ap_tramp_start + 0x8000
    .short 0x18

.code64
ap_lm64:
    /* DS, ES and SS hold 0x10 from ap_pm32; gdt::init_ap loads the kernel's own. */
    mov rax, 0x8fc0
    mov rsp, [rax + 8]          /* stack top */
    mov rdi, [rax + 16]         /* CPU number */
    mov rax, offset ap_entry
    call rax
2:
    cli
    hlt
    jmp 2b

.balign 8
ap_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF    /* 0x08: 32-bit code */
    .quad 0x00CF92000000FFFF    /* 0x10: data */
    .quad 0x00AF9A000000FFFF    /* 0x18: 64-bit code */
ap_gdtr:
    .short 31
    .long ap_gdt - ap_tramp_start + 0x8000
.global ap_tramp_end
ap_tramp_end:
"#
);

extern "C" {
    static ap_tramp_start: u8;
    static ap_tramp_end: u8;
}

/// The CPU number the last started AP took from the parameters (0: none yet).
static STARTED: AtomicU64 = AtomicU64::new(0);

/// The kernel's first Rust on an AP, given to [`install`] before any start-up IPI.
static ENTRY: spin::Once<fn(usize) -> !> = spin::Once::new();

#[no_mangle]
extern "C" fn ap_entry(cpu: u64) -> ! {
    STARTED.store(cpu, Ordering::Release);
    let entry = ENTRY.get().expect("an AP started before ap::install");
    entry(cpu as usize)
}

/// Copies the trampoline into its page and keeps `entry`, where each AP goes on its own
/// stack with its CPU number. The caller has checked the page is RAM that nothing else
/// uses (the frame allocator never hands out the first MiB).
pub fn install(entry: fn(usize) -> !) {
    ENTRY.call_once(|| entry);
    let start = core::ptr::addr_of!(ap_tramp_start);
    let len = core::ptr::addr_of!(ap_tramp_end) as usize - start as usize;
    assert!(len <= (PARAMS - TRAMPOLINE) as usize, "trampoline too big");
    // SAFETY: the source is the trampoline's bytes in the kernel image; the destination
    // is the reserved page below 1 MiB, identity-mapped, apart from the image.
    unsafe { core::ptr::copy_nonoverlapping(start, TRAMPOLINE as *mut u8, len) }
}

/// Starts the CPU with APIC ID `apic` as CPU `cpu` on the stack ending at `stack_top`
/// (INIT, then start-up IPIs as the MP specification orders); true once it runs on that
/// stack. Interrupts must be on (the waits count timer ticks).
pub fn start(apic: u32, cpu: usize, stack_top: u64) -> bool {
    let cr3 = x86_64::registers::control::Cr3::read_raw()
        .0
        .start_address()
        .as_u64();
    let params = [cr3, stack_top, cpu as u64];
    for (i, v) in params.iter().enumerate() {
        // SAFETY: the parameter block lies in the trampoline's page (install), which only
        // the trampoline reads; no AP is between start-up and `started` now.
        unsafe { core::ptr::write_volatile((PARAMS + 8 * i as u64) as *mut u64, *v) }
    }
    STARTED.store(0, Ordering::Release);
    let started = || STARTED.load(Ordering::Acquire) == cpu as u64;
    lapic::send_init(apic);
    // 10 ms after INIT, then one start-up IPI and a second if the first went unheard.
    timer::wait(2, || false);
    lapic::send_startup(apic, TRAMPOLINE);
    if timer::wait(2, started) {
        return true;
    }
    lapic::send_startup(apic, TRAMPOLINE);
    timer::wait(100, started)
}
