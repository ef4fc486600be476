//! The 8259A pair, remapped to vectors 32-47, and the IRQ handler table.

use super::cpu::without_interrupts;
use super::port::{IoRange, PIC1, PIC2};
use spin::Mutex;

/// Register offsets in each chip's range: commands (ICW1, OCW2/3) and data (ICW2-4, mask).
const CMD: u16 = 0;
const DATA: u16 = 1;
pub const BASE: u8 = 32;

/// Handlers run with interrupts off, before the EOI. A device whose line stays asserted
/// must quiet it in its handler.
type Handlers = [Option<fn()>; 16];
static HANDLERS: Mutex<Handlers> = Mutex::new([None; 16]);

pub fn init() {
    PIC1.write8(CMD, 0x11); // ICW1: edge, cascade, ICW4 follows
    PIC2.write8(CMD, 0x11);
    PIC1.write8(DATA, BASE); // ICW2: vector base
    PIC2.write8(DATA, BASE + 8);
    PIC1.write8(DATA, 4); // ICW3: slave on IRQ2
    PIC2.write8(DATA, 2);
    PIC1.write8(DATA, 1); // ICW4: 8086 mode
    PIC2.write8(DATA, 1);
    PIC1.write8(DATA, !(1 << 2)); // all masked but the cascade
    PIC2.write8(DATA, 0xff);
}

/// Installs `f` for `irq` and unmasks the line.
pub fn register(irq: u8, f: fn()) {
    without_interrupts(|| HANDLERS.lock()[irq as usize & 15] = Some(f));
    unmask(irq);
}

pub fn unmask(irq: u8) {
    without_interrupts(|| {
        let (pic, bit) = line(irq);
        pic.write8(DATA, pic.read8(DATA) & !bit);
    })
}

pub fn mask(irq: u8) {
    without_interrupts(|| {
        let (pic, bit) = line(irq);
        pic.write8(DATA, pic.read8(DATA) | bit);
    })
}

/// The chip and mask bit of `irq`.
fn line(irq: u8) -> (&'static IoRange, u8) {
    if irq < 8 {
        (&PIC1, 1 << irq)
    } else {
        (&PIC2, 1 << (irq & 7))
    }
}

fn in_service(pic: &IoRange) -> u8 {
    pic.write8(CMD, 0x0b); // OCW3: read ISR
    pic.read8(CMD)
}

/// Called from the trap stub for vector 32 + irq.
pub(super) fn irq(irq: u8) {
    // Spurious IRQ 7/15: not in service; no EOI to the chip that raised it.
    if irq == 7 && in_service(&PIC1) & 0x80 == 0 {
        return;
    }
    if irq == 15 && in_service(&PIC2) & 0x80 == 0 {
        PIC1.write8(CMD, 0x20);
        return;
    }
    let h = HANDLERS.lock()[irq as usize & 15];
    if let Some(f) = h {
        f();
    }
    if irq != 0 {
        super::cpu::wake();
    }
    if irq >= 8 {
        PIC2.write8(CMD, 0x20);
    }
    PIC1.write8(CMD, 0x20);
}
