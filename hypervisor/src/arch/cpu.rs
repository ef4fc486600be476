//! Small privileged instructions: interrupts on and off, halting, stopping the machine,
//! the time-stamp counter.
#![allow(unsafe_code)]

use super::port::{BOCHS_SHUTDOWN, QEMU_EXIT};
use core::sync::atomic::{AtomicBool, Ordering};
use x86_64::instructions::interrupts;

/// Set by device interrupts; the idle loop checks it with interrupts off before `hlt`, so
/// an interrupt that arrives between the last poll and the halt is not slept through.
static WAKE: AtomicBool = AtomicBool::new(false);

pub fn wake() {
    WAKE.store(true, Ordering::Release);
}

/// Clears the wake flag; call before polling devices.
pub fn clear_wake() {
    WAKE.store(false, Ordering::Release);
}

/// Halts until the next interrupt unless a device interrupt came since `clear_wake`.
pub fn idle() {
    halt_unless(|| WAKE.load(Ordering::Acquire));
}

pub fn enable_interrupts() {
    interrupts::enable();
}

pub fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    interrupts::without_interrupts(f)
}

/// Stops the emulator: QEMU's isa-debug-exit (exit status (code << 1) | 1) and Bochs's
/// shutdown port; on a real machine, halts for good.
pub fn exit(success: bool) -> ! {
    interrupts::disable();
    QEMU_EXIT.write32(0, if success { 0x10 } else { 0x01 });
    for &b in b"Shutdown" {
        BOCHS_SHUTDOWN.write8(0, b);
    }
    loop {
        x86_64::instructions::hlt();
    }
}

/// Reads an unmapped address: the page fault must be reported and stop the machine
/// (`selftest=fault`, for the tests of the exception path).
pub fn fault() {
    // SAFETY: the identity map covers only the low 4 GiB, so this read takes a #PF, which
    // the trap handler turns into a diagnostic and a stopped machine; it never returns.
    unsafe { core::ptr::read_volatile(0x0000_1000_0000_0000 as *const u64) };
}

/// CR2: the address of the last page fault (the trap handler's report, guests' CR2).
pub fn cr2() -> u64 {
    x86_64::registers::control::Cr2::read_raw()
}

/// Halts until the next interrupt unless `ready` already holds (checked with interrupts
/// off, so a wake-up IPI sent after the check still ends the halt).
pub fn halt_unless(ready: impl Fn() -> bool) {
    interrupts::disable();
    if ready() {
        interrupts::enable();
    } else {
        // sti; hlt: the one-instruction interrupt shadow of sti closes the race.
        interrupts::enable_and_hlt();
    }
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC reads a counter (CR4.TSD is clear in this kernel).
    unsafe { core::arch::asm!("rdtsc", out("eax") lo, out("edx") hi, options(nostack, nomem)) }
    u64::from(hi) << 32 | u64::from(lo)
}
