//! The 8259A pair, remapped to vectors 32-47, and the IRQ handler table.

use super::cpu::{inb, outb, without_interrupts};
use spin::Mutex;

const PIC1: u16 = 0x20;
const PIC2: u16 = 0xa0;
pub const BASE: u8 = 32;

/// Handlers run with interrupts off, before the EOI. A device whose line stays asserted
/// must quiet it in its handler.
type Handlers = [Option<fn()>; 16];
static HANDLERS: Mutex<Handlers> = Mutex::new([None; 16]);

pub fn init() {
    outb(PIC1, 0x11); // ICW1: edge, cascade, ICW4 follows
    outb(PIC2, 0x11);
    outb(PIC1 + 1, BASE); // ICW2: vector base
    outb(PIC2 + 1, BASE + 8);
    outb(PIC1 + 1, 4); // ICW3: slave on IRQ2
    outb(PIC2 + 1, 2);
    outb(PIC1 + 1, 1); // ICW4: 8086 mode
    outb(PIC2 + 1, 1);
    outb(PIC1 + 1, !(1 << 2)); // all masked but the cascade
    outb(PIC2 + 1, 0xff);
}

/// Installs `f` for `irq` and unmasks the line.
pub fn register(irq: u8, f: fn()) {
    without_interrupts(|| HANDLERS.lock()[irq as usize & 15] = Some(f));
    unmask(irq);
}

pub fn unmask(irq: u8) {
    without_interrupts(|| {
        let (port, bit) = line(irq);
        outb(port, inb(port) & !bit);
    })
}

pub fn mask(irq: u8) {
    without_interrupts(|| {
        let (port, bit) = line(irq);
        outb(port, inb(port) | bit);
    })
}

fn line(irq: u8) -> (u16, u8) {
    if irq < 8 {
        (PIC1 + 1, 1 << irq)
    } else {
        (PIC2 + 1, 1 << (irq & 7))
    }
}

fn in_service(pic: u16) -> u8 {
    outb(pic, 0x0b); // OCW3: read ISR
    inb(pic)
}

/// Called from the trap stub for vector 32 + irq.
pub(super) fn irq(irq: u8) {
    // Spurious IRQ 7/15: not in service; no EOI to the chip that raised it.
    if irq == 7 && in_service(PIC1) & 0x80 == 0 {
        return;
    }
    if irq == 15 && in_service(PIC2) & 0x80 == 0 {
        outb(PIC1, 0x20);
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
        outb(PIC2, 0x20);
    }
    outb(PIC1, 0x20);
}
