//! A minimal i8042 keyboard controller (ports 0x60, 0x64): enough for a guest to find a
//! controller with a keyboard that never types, pass its self-tests, and ask for a
//! system reset (which stops the guest). No mouse, no scan codes.

use alloc::collections::VecDeque;

#[derive(Clone, Debug)]
pub struct I8042 {
    /// Controller configuration byte (command 0x20/0x60).
    cfg: u8,
    /// Output port (command 0xd0/0xd1): bit 0 reset line, bit 1 A20.
    oport: u8,
    /// A command byte waiting for its data byte on port 0x60.
    pending: Option<u8>,
    /// A keyboard command waiting for its argument (0xed LEDs, 0xf0 scan code set, 0xf3 rate).
    kbd_arg: Option<u8>,
    out: VecDeque<u8>,
    /// The guest pulsed the reset line.
    pub reset: bool,
}

impl Default for I8042 {
    fn default() -> I8042 {
        I8042::new()
    }
}

impl I8042 {
    pub fn new() -> I8042 {
        I8042 {
            cfg: 0x45,
            oport: 0x03,
            pending: None,
            kbd_arg: None,
            out: VecDeque::new(),
            reset: false,
        }
    }

    /// IRQ 1: a byte waits in the output buffer and the configuration enables the
    /// keyboard interrupt.
    pub fn irq(&self) -> bool {
        self.cfg & 1 != 0 && !self.out.is_empty()
    }

    pub fn read(&mut self, port: u16) -> u8 {
        match port {
            0x60 => self.out.pop_front().unwrap_or(0),
            // Status: output full, system flag from cfg, input buffer always empty.
            _ => u8::from(!self.out.is_empty()) | self.cfg & 0x04,
        }
    }

    pub fn write(&mut self, port: u16, v: u8) {
        if port == 0x64 {
            self.command(v);
            return;
        }
        match self.pending.take() {
            Some(0x60) => self.cfg = v,
            Some(0xd1) => {
                self.oport = v;
                if v & 1 == 0 {
                    self.reset = true;
                }
            }
            Some(0xd2) => self.out.push_back(v),
            Some(0xd4) => self.out.push_back(0xfe), // no mouse: resend
            _ => self.keyboard(v),
        }
    }

    fn command(&mut self, c: u8) {
        match c {
            0x20 => self.out.push_back(self.cfg),
            0x60 | 0xd1 | 0xd2 | 0xd3 | 0xd4 => self.pending = Some(c),
            0xa7 => self.cfg |= 0x20,
            0xa8 => self.cfg &= !0x20,
            0xa9 => self.out.push_back(0xff), // no second port
            0xaa => self.out.push_back(0x55), // controller self-test passed
            0xab => self.out.push_back(0x00), // first port test passed
            0xad => self.cfg |= 0x10,
            0xae => self.cfg &= !0x10,
            0xd0 => self.out.push_back(self.oport),
            // Pulse output lines: bit 0 low is the CPU reset.
            0xf0..=0xff if c & 1 == 0 => self.reset = true,
            _ => {}
        }
    }

    fn keyboard(&mut self, v: u8) {
        if self.kbd_arg.take().is_some() {
            self.out.push_back(0xfa);
            return;
        }
        match v {
            0xed | 0xf0 | 0xf3 => {
                self.kbd_arg = Some(v);
                self.out.push_back(0xfa);
            }
            0xf2 => self.out.extend([0xfa, 0xab, 0x83]),
            0xee => self.out.push_back(0xee),
            0xff => self.out.extend([0xfa, 0xaa]),
            0xf4..=0xf6 => self.out.push_back(0xfa),
            _ => self.out.push_back(0xfe),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_tests_and_config() {
        let mut k = I8042::new();
        k.write(0x64, 0xaa);
        assert_eq!(k.read(0x64) & 1, 1);
        assert_eq!(k.read(0x60), 0x55);
        assert_eq!(k.read(0x64) & 1, 0);
        k.write(0x64, 0x60);
        k.write(0x60, 0x47);
        k.write(0x64, 0x20);
        assert_eq!(k.read(0x60), 0x47);
        k.write(0x60, 0xff);
        assert_eq!((k.read(0x60), k.read(0x60)), (0xfa, 0xaa));
        k.write(0x60, 0xed);
        k.write(0x60, 0x07);
        assert_eq!((k.read(0x60), k.read(0x60)), (0xfa, 0xfa));
        assert!(!k.reset);
        // The keyboard interrupt follows the output buffer when enabled.
        assert!(!k.irq());
        k.write(0x60, 0xf2);
        assert!(k.irq());
        k.write(0x64, 0x60);
        k.write(0x60, 0x46);
        assert!(!k.irq());
    }

    #[test]
    fn reset_line() {
        let mut k = I8042::new();
        k.write(0x64, 0xfe);
        assert!(k.reset);
        let mut k = I8042::new();
        k.write(0x64, 0xd1);
        k.write(0x60, 0x02);
        assert!(k.reset);
    }
}
