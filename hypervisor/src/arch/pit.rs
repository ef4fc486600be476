//! The 8254 timer on IRQ 0: a tick count, and a periodic wake-up for the idle loop.

use super::cpu::outb;
use core::sync::atomic::{AtomicU64, Ordering};

pub const HZ: u32 = 100;
static TICKS: AtomicU64 = AtomicU64::new(0);

pub fn init() {
    let divisor = 1_193_182 / HZ;
    outb(0x43, 0x34); // channel 0, lo/hi byte, mode 2 (rate generator)
    outb(0x40, divisor as u8);
    outb(0x40, (divisor >> 8) as u8);
    super::pic::register(0, tick);
}

fn tick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
}

/// Timer ticks since boot (HZ per second).
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Busy-waits until `until` holds or `n` timer ticks (interrupts must be on) pass;
/// whether it held.
pub fn wait(n: u64, until: impl Fn() -> bool) -> bool {
    let end = ticks() + n;
    while ticks() < end {
        if until() {
            return true;
        }
        core::hint::spin_loop();
    }
    until()
}
