//! Level-triggered PCI INTx lines on the PIC, shared by every PCI driver whose device has
//! no message-signalled interrupts (`irq`). Only a device register read (outside the
//! handler) lowers such a line, so the handler masks the lines and counts; a driver that
//! sees the count change (`irq::Seen`) reads its device's interrupt status, then unmasks.
//! The PIC layer sets the wake flag, so the main loop polls instead of halting.

use core::sync::atomic::{AtomicU16, AtomicU32, Ordering};

/// PIC lines of registered devices.
static LINES: AtomicU16 = AtomicU16::new(0);
/// Interrupts taken on them.
static COUNT: AtomicU32 = AtomicU32::new(0);

fn on_irq() {
    COUNT.fetch_add(1, Ordering::AcqRel);
    for irq in lines() {
        crate::arch::pic::mask(irq);
    }
}

fn lines() -> impl Iterator<Item = u8> {
    (0..16u8).filter(|i| LINES.load(Ordering::Acquire) & (1 << i) != 0)
}

/// Takes `line` (a PCI function's interrupt line register; 16 and above mean none). Call
/// with interrupts off, as at boot.
pub fn register(line: u8) -> Option<u8> {
    if line >= 16 {
        return None;
    }
    LINES.fetch_or(1 << line, Ordering::AcqRel);
    crate::arch::pic::register(line, on_irq);
    Some(line)
}

/// Interrupts taken on the lines so far (wrapping).
pub fn count() -> u32 {
    COUNT.load(Ordering::Acquire)
}

/// Unmasks every registered line, after the driver lowered its own.
pub fn unmask() {
    for irq in lines() {
        crate::arch::pic::unmask(irq);
    }
}
