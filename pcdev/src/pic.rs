//! The 8259A pair (master at 0x20, slave at 0xa0 cascaded on IR2) and the ELCR (0x4d0,
//! 0x4d1). The exit loop asks [`Pic::pending`] which vector the CPU should take and
//! tells [`Pic::ack`] when the guest took it (the `*ack N` wait line).

/// One 8259A.
#[derive(Clone, Debug, Default)]
struct Chip {
    /// Current input levels (for edge detection).
    lines: u8,
    irr: u8,
    isr: u8,
    imr: u8,
    /// Level-triggered inputs (ELCR).
    elcr: u8,
    /// Vector base from ICW2 (low 3 bits ignored).
    base: u8,
    /// Which ICW comes next on the data port: 0 none (initialised), 2, 3 or 4.
    icw: u8,
    /// ICW1 said ICW4 follows.
    need_icw4: bool,
    /// ICW1 said single (no ICW3).
    single: bool,
    auto_eoi: bool,
    rotate_on_aeoi: bool,
    special_mask: bool,
    read_isr: bool,
    poll: bool,
    /// Lowest-priority input; the highest priority is (lowest + 1) & 7.
    lowest: u8,
    /// ICW1 was ever written: interrupts go out only from an initialised chip.
    initialised: bool,
}

impl Chip {
    fn new() -> Chip {
        Chip {
            lowest: 7,
            ..Chip::default()
        }
    }

    /// The input this chip would raise now, given its extra request bits `also` (the
    /// master's cascade input).
    fn best(&self, also: u8) -> Option<u8> {
        if !self.initialised || self.icw != 0 {
            return None;
        }
        let req = (self.irr | also) & !self.imr;
        for i in 1..=8u8 {
            let b = (self.lowest + i) & 7;
            if !self.special_mask && self.isr & (1 << b) != 0 {
                return None;
            }
            if req & (1 << b) != 0 {
                return Some(b);
            }
        }
        None
    }

    fn set_line(&mut self, n: u8, level: bool) {
        let m = 1 << n;
        let was = self.lines & m != 0;
        if level {
            self.lines |= m;
        } else {
            self.lines &= !m;
        }
        if self.elcr & m != 0 {
            // Level-triggered: the request follows the line.
            if level {
                self.irr |= m;
            } else {
                self.irr &= !m;
            }
        } else if level && !was {
            self.irr |= m;
        }
    }

    /// The CPU took input `b`: in service now, unless auto-EOI.
    fn take(&mut self, b: u8) {
        let m = 1 << b;
        if self.elcr & m == 0 || self.lines & m == 0 {
            self.irr &= !m;
        }
        if self.auto_eoi {
            if self.rotate_on_aeoi {
                self.lowest = b;
            }
        } else {
            self.isr |= m;
        }
    }

    /// The highest-priority in-service input.
    fn top_isr(&self) -> Option<u8> {
        (1..=8u8)
            .map(|i| (self.lowest + i) & 7)
            .find(|b| self.isr & (1 << b) != 0)
    }

    fn write_cmd(&mut self, v: u8) {
        if v & 0x10 != 0 {
            // ICW1: reset.
            *self = Chip {
                elcr: self.elcr,
                lines: self.lines,
                icw: 2,
                need_icw4: v & 1 != 0,
                single: v & 2 != 0,
                initialised: true,
                ..Chip::new()
            };
        } else if v & 0x18 == 0 {
            // OCW2: end of interrupt and rotation.
            let level = v & 7;
            match v >> 5 {
                0 => self.rotate_on_aeoi = false,
                4 => self.rotate_on_aeoi = true,
                // Every EOI rotates: the level it ends becomes the lowest priority.
                // A real 8259 does this only in its rotating modes; here it keeps a
                // timer whose handler outlasts its period (every round trip is slow)
                // from starving the lower-priority lines, which fixed priority would
                // serve only when no tick is pending, i.e. never.
                1 | 5 => {
                    if let Some(b) = self.top_isr() {
                        self.isr &= !(1 << b);
                        self.lowest = b;
                    }
                }
                3 => {
                    self.isr &= !(1 << level);
                    self.lowest = level;
                }
                7 => {
                    self.isr &= !(1 << level);
                    self.lowest = level;
                }
                6 => self.lowest = level,
                _ => {}
            }
        } else if v & 0x18 == 0x08 {
            // OCW3: special mask, poll, register select.
            if v & 0x40 != 0 {
                self.special_mask = v & 0x20 != 0;
            }
            if v & 0x04 != 0 {
                self.poll = true;
            }
            if v & 0x02 != 0 {
                self.read_isr = v & 0x01 != 0;
            }
        }
    }

    fn write_data(&mut self, v: u8) {
        match self.icw {
            2 => {
                self.base = v & 0xf8;
                self.icw = if !self.single {
                    3
                } else if self.need_icw4 {
                    4
                } else {
                    0
                };
            }
            3 => self.icw = if self.need_icw4 { 4 } else { 0 },
            4 => {
                self.auto_eoi = v & 2 != 0;
                self.icw = 0;
            }
            _ => self.imr = v,
        }
    }
}

/// The master/slave pair.
#[derive(Clone, Debug)]
pub struct Pic {
    chips: [Chip; 2],
    /// The guest wrote an end-of-interrupt command since [`Pic::take_eoi`].
    eoi: bool,
}

impl Default for Pic {
    fn default() -> Pic {
        Pic::new()
    }
}

impl Pic {
    pub fn new() -> Pic {
        Pic {
            chips: [Chip::new(), Chip::new()],
            eoi: false,
        }
    }

    /// Drives interrupt line `irq` (0-15) to `level`.
    pub fn set_line(&mut self, irq: u8, level: bool) {
        if irq < 16 {
            self.chips[usize::from(irq / 8)].set_line(irq % 8, level);
        }
    }

    /// The levels of the 16 input lines (bit n: IRQ n).
    pub fn lines(&self) -> u16 {
        u16::from(self.chips[1].lines) << 8 | u16::from(self.chips[0].lines)
    }

    /// An edge on `irq`: what a timer's output pulse does.
    pub fn pulse(&mut self, irq: u8) {
        self.set_line(irq, true);
        self.set_line(irq, false);
    }

    fn slave_request(&self) -> u8 {
        u8::from(self.chips[1].best(0).is_some()) << 2
    }

    /// The vector the CPU should take, if any.
    pub fn pending(&self) -> Option<u8> {
        let b = self.chips[0].best(self.slave_request())?;
        if b == 2 {
            if let Some(s) = self.chips[1].best(0) {
                return Some(self.chips[1].base | s);
            }
        }
        Some(self.chips[0].base | b)
    }

    /// The guest accepted `vector` (a `*ack` line). Vectors that are not the PIC's are
    /// ignored (exceptions, software interrupts).
    pub fn ack(&mut self, vector: u8) {
        let [m, s] = &mut self.chips;
        if m.initialised && vector & 0xf8 == m.base && vector & 7 != 2 {
            m.take(vector & 7);
        } else if s.initialised && vector & 0xf8 == s.base {
            s.take(vector & 7);
            m.take(2);
        }
    }

    pub fn read(&mut self, port: u16) -> u8 {
        match port {
            0x4d0 | 0x4d1 => self.chips[usize::from(port & 1)].elcr,
            _ => {
                let i = usize::from(port & 0x80 != 0);
                let data = port & 1 != 0;
                if data {
                    return self.chips[i].imr;
                }
                if self.chips[i].poll {
                    self.chips[i].poll = false;
                    let also = if i == 0 { self.slave_request() } else { 0 };
                    return match self.chips[i].best(also) {
                        Some(b) => {
                            self.chips[i].take(b);
                            0x80 | b
                        }
                        None => 0,
                    };
                }
                let c = &self.chips[i];
                if c.read_isr {
                    c.isr
                } else {
                    c.irr
                }
            }
        }
    }

    /// Whether the guest ended an interrupt (OCW2 EOI) since the last call.
    pub fn take_eoi(&mut self) -> bool {
        core::mem::take(&mut self.eoi)
    }

    pub fn write(&mut self, port: u16, v: u8) {
        if port & 1 == 0 && port != 0x4d0 && v & 0x18 == 0 && v & 0x20 != 0 {
            self.eoi = true;
        }
        match port {
            // IRQs 0, 1, 2, 8 and 13 are always edge-triggered on a PC.
            0x4d0 => self.chips[0].elcr = v & 0xf8,
            0x4d1 => self.chips[1].elcr = v & 0xde,
            _ => {
                let c = &mut self.chips[usize::from(port & 0x80 != 0)];
                if port & 1 != 0 {
                    c.write_data(v);
                } else {
                    c.write_cmd(v);
                }
            }
        }
    }
}

/// Linux's and the demo guest's initialisation words (ICW1-4 of both chips): master at
/// vector 0x20, slave at 0x28 on IRQ 2. Tests program the pair with it.
pub const INIT_SEQUENCE: [(u16, u8); 8] = [
    (0x20, 0x11),
    (0xa0, 0x11),
    (0x21, 0x20),
    (0xa1, 0x28),
    (0x21, 4),
    (0xa1, 2),
    (0x21, 1),
    (0xa1, 1),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The pair initialised by [`INIT_SEQUENCE`], then masked.
    pub(crate) fn init(p: &mut Pic, master_mask: u8, slave_mask: u8) {
        for (port, v) in INIT_SEQUENCE {
            p.write(port, v);
        }
        p.write(0x21, master_mask);
        p.write(0xa1, slave_mask);
    }

    #[test]
    fn uninitialised_pic_raises_nothing() {
        let mut p = Pic::new();
        p.pulse(0);
        assert_eq!(p.pending(), None);
    }

    #[test]
    fn edge_ack_eoi() {
        let mut p = Pic::new();
        init(&mut p, 0, 0);
        p.pulse(0);
        assert_eq!(p.pending(), Some(0x20));
        assert_eq!(p.read(0x20), 1); // IRR
        p.ack(0x20);
        assert_eq!(p.pending(), None);
        // Another edge while in service waits for the EOI.
        p.pulse(0);
        assert_eq!(p.pending(), None);
        p.write(0x20, 0x0b); // OCW3: read ISR
        assert_eq!(p.read(0x20), 1);
        assert!(!p.take_eoi());
        p.write(0x20, 0x20); // non-specific EOI
        assert!(p.take_eoi());
        assert!(!p.take_eoi());
        assert_eq!(p.pending(), Some(0x20));
    }

    #[test]
    fn priority_masking_and_nesting() {
        let mut p = Pic::new();
        init(&mut p, 0, 0);
        p.pulse(4);
        p.pulse(1);
        assert_eq!(p.pending(), Some(0x21));
        p.ack(0x21);
        // IRQ4 has lower priority than the in-service IRQ1.
        assert_eq!(p.pending(), None);
        p.pulse(0);
        assert_eq!(p.pending(), Some(0x20)); // higher priority nests
        p.write(0x21, 0x01); // mask IRQ0
        assert_eq!(p.pending(), None);
        assert_eq!(p.read(0x21), 0x01);
        p.write(0x20, 0x61); // specific EOI for IRQ1
        assert_eq!(p.pending(), Some(0x24));
    }

    #[test]
    fn a_busy_timer_does_not_starve_lower_lines() {
        let mut p = Pic::new();
        init(&mut p, 0, 0);
        p.pulse(4);
        for _ in 0..3 {
            // A tick is always pending again by the time the last one ends.
            p.pulse(0);
            assert_eq!(p.pending(), Some(0x20));
            p.ack(0x20);
            p.pulse(0);
            p.write(0x20, 0x60);
            // After the EOI the serial line gets its turn before the next tick.
            assert_eq!(p.pending(), Some(0x24));
            p.ack(0x24);
            p.write(0x20, 0x64);
            p.pulse(4);
        }
    }

    #[test]
    fn cascade_through_the_slave() {
        let mut p = Pic::new();
        init(&mut p, 0, 0);
        p.pulse(12);
        assert_eq!(p.pending(), Some(0x2c));
        p.ack(0x2c);
        assert_eq!(p.pending(), None);
        p.write(0xa0, 0x20);
        p.pulse(12);
        // The master's IR2 is still in service until its own EOI.
        assert_eq!(p.pending(), None);
        p.write(0x20, 0x20);
        assert_eq!(p.pending(), Some(0x2c));
        // Masking IR2 on the master hides the slave.
        p.write(0x21, 0x04);
        assert_eq!(p.pending(), None);
    }

    #[test]
    fn level_triggered_by_elcr() {
        let mut p = Pic::new();
        init(&mut p, 0, 0);
        p.write(0x4d1, 0x08); // IRQ11 level
        assert_eq!(p.read(0x4d1), 0x08);
        p.set_line(11, true);
        assert_eq!(p.pending(), Some(0x2b));
        p.set_line(11, false);
        assert_eq!(p.pending(), None);
    }

    #[test]
    fn auto_eoi_and_poll() {
        let mut p = Pic::new();
        for (port, v) in [(0x20, 0x13), (0x21, 0x40), (0x21, 0x03)] {
            p.write(port, v); // single, ICW4 with AEOI
        }
        p.pulse(3);
        assert_eq!(p.pending(), Some(0x43));
        p.ack(0x43);
        p.pulse(3);
        assert_eq!(p.pending(), Some(0x43)); // nothing stayed in service
        p.write(0x20, 0x0c); // poll
        assert_eq!(p.read(0x20), 0x83);
        assert_eq!(p.pending(), None);
    }
}
