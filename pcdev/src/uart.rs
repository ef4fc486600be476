//! A 16550A UART (COM1 at 0x3f8, COM2 at 0x2f8) wired to byte queues: what the guest
//! transmits is collected for the terminal, what the terminal types is received. The
//! transmitter is ready (a byte leaves the moment it is written) until the output queue
//! holds its limit of bytes nobody took, the receive FIFO is as deep as the input queue
//! (at most the limit too). The tool's UARTs have no limit; the kernel's one has, so a
//! guest writing with no reader, or a client typing with no guest reading, takes no more
//! memory than that.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

const IER_RX: u8 = 1 << 0;
const IER_THRE: u8 = 1 << 1;
const LCR_DLAB: u8 = 1 << 7;
const MCR_OUT2: u8 = 1 << 3;
const MCR_LOOP: u8 = 1 << 4;

#[derive(Clone, Debug, Default)]
pub struct Uart {
    ier: u8,
    fcr: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    /// THR empty interrupt pending (set when the transmitter empties, cleared by an IIR
    /// read reporting it or a THR write).
    thre_pending: bool,
    rx: VecDeque<u8>,
    /// Bytes the guest sent, not yet taken by the terminal.
    pub tx: Vec<u8>,
    /// Most bytes `tx` and the receive queue hold (0: no limit).
    limit: usize,
}

impl Uart {
    pub fn new() -> Uart {
        Uart {
            dll: 1,
            ..Uart::default()
        }
    }

    /// A UART whose queues hold at most `limit` bytes each.
    pub fn with_limit(limit: usize) -> Uart {
        Uart {
            limit,
            ..Uart::new()
        }
    }

    fn room(&self, queued: usize) -> usize {
        match self.limit {
            0 => usize::MAX,
            n => n.saturating_sub(queued),
        }
    }

    /// The output queue is at its limit: the transmitter reads busy.
    fn tx_full(&self) -> bool {
        self.room(self.tx.len()) == 0
    }

    /// Bytes from outside the UART shown on its output as if transmitted (a firmware's
    /// debug port sharing the console); returns how many fit (the rest is dropped: the
    /// writer cannot be held back).
    pub fn append(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.room(self.tx.len()));
        self.tx.extend(&bytes[..n]);
        n
    }

    /// Bytes typed at the terminal; returns how many fit.
    pub fn receive(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.room(self.rx.len()));
        self.rx.extend(&bytes[..n]);
        n
    }

    /// Moves up to `buf.len()` transmitted bytes into `buf`; a transmitter that was busy
    /// for want of room is ready again (with its THR-empty interrupt).
    pub fn take(&mut self, buf: &mut [u8]) -> usize {
        let was_full = self.tx_full();
        let n = buf.len().min(self.tx.len());
        buf[..n].copy_from_slice(&self.tx[..n]);
        self.tx.drain(..n);
        if was_full && n > 0 {
            self.thre_pending = true;
        }
        n
    }

    pub fn rx_pending(&self) -> usize {
        self.rx.len()
    }

    /// The interrupt line level. On a PC the UART's interrupt reaches the PIC only
    /// through OUT2.
    pub fn irq(&self) -> bool {
        self.mcr & MCR_OUT2 != 0 && self.mcr & MCR_LOOP == 0 && self.source().is_some()
    }

    /// Highest-priority interrupt source: 0x04 received data, 0x02 THR empty.
    fn source(&self) -> Option<u8> {
        if self.ier & IER_RX != 0 && !self.rx.is_empty() {
            Some(0x04)
        } else if self.ier & IER_THRE != 0 && self.thre_pending {
            Some(0x02)
        } else {
            None
        }
    }

    pub fn read(&mut self, reg: u16) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match reg & 7 {
            0 if dlab => self.dll,
            0 => self.rx.pop_front().unwrap_or(0),
            1 if dlab => self.dlm,
            1 => self.ier,
            2 => {
                let fifo = if self.fcr & 1 != 0 { 0xc0 } else { 0 };
                match self.source() {
                    Some(s) => {
                        if s == 0x02 {
                            self.thre_pending = false;
                        }
                        fifo | s
                    }
                    None => fifo | 0x01,
                }
            }
            3 => self.lcr,
            4 => self.mcr,
            // THR and transmitter empty (unless the output queue is full), data ready
            // when the queue has some.
            5 => (u8::from(!self.tx_full()) * 0x60) | u8::from(!self.rx.is_empty()),
            6 => {
                if self.mcr & MCR_LOOP != 0 {
                    // Loopback: RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD.
                    let m = self.mcr;
                    (m & 2) << 3 | (m & 1) << 5 | (m & 4) << 4 | (m & 8) << 4
                } else {
                    0xb0 // DCD, DSR, CTS
                }
            }
            _ => self.scr,
        }
    }

    pub fn write(&mut self, reg: u16, v: u8) {
        let dlab = self.lcr & LCR_DLAB != 0;
        match reg & 7 {
            0 if dlab => self.dll = v,
            0 => {
                if self.mcr & MCR_LOOP != 0 {
                    self.receive(&[v]);
                } else if !self.tx_full() {
                    self.tx.push(v);
                }
                // Sent at once: the holding register is empty again, unless the queue
                // is full (then the THR-empty interrupt comes when it is taken).
                self.thre_pending = !self.tx_full();
            }
            1 if dlab => self.dlm = v,
            1 => {
                // Enabling the THRE interrupt with an empty holding register raises it.
                if v & IER_THRE != 0 && self.ier & IER_THRE == 0 {
                    self.thre_pending = !self.tx_full();
                }
                self.ier = v & 0x0f;
            }
            2 => {
                self.fcr = v & 0xc9;
                if v & 0x02 != 0 {
                    self.rx.clear();
                }
            }
            3 => self.lcr = v,
            4 => self.mcr = v & 0x1f,
            5 | 6 => {}
            _ => self.scr = v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transmit_and_receive() {
        let mut u = Uart::new();
        assert_eq!(u.read(5), 0x60);
        for b in b"hi" {
            u.write(0, *b);
        }
        assert_eq!(u.tx, b"hi");
        u.receive(b"ok");
        assert_eq!(u.read(5) & 1, 1);
        assert_eq!(u.read(0), b'o');
        assert_eq!(u.read(0), b'k');
        assert_eq!(u.read(5) & 1, 0);
    }

    #[test]
    fn divisor_latch_and_scratch() {
        let mut u = Uart::new();
        u.write(3, 0x80);
        u.write(0, 0x0c);
        u.write(1, 0x00);
        assert_eq!(u.read(0), 0x0c);
        u.write(3, 0x03);
        assert!(u.tx.is_empty());
        u.write(7, 0x5a);
        assert_eq!(u.read(7), 0x5a);
        assert_eq!(u.read(3), 0x03);
    }

    #[test]
    fn interrupts_need_ier_and_out2() {
        let mut u = Uart::new();
        u.receive(b"x");
        assert!(!u.irq());
        u.write(1, IER_RX);
        assert!(!u.irq());
        u.write(4, MCR_OUT2 | 3);
        assert!(u.irq());
        assert_eq!(u.read(2), 0x04);
        u.read(0);
        assert!(!u.irq());
        assert_eq!(u.read(2), 0x01);
        // THRE: raised when enabled, cleared by reading IIR.
        u.write(1, IER_RX | IER_THRE);
        assert!(u.irq());
        assert_eq!(u.read(2), 0x02);
        assert!(!u.irq());
        u.write(0, b'a');
        assert!(u.irq());
    }

    #[test]
    fn a_full_output_queue_holds_the_transmitter() {
        let mut u = Uart::with_limit(2);
        u.write(1, IER_THRE);
        u.write(4, MCR_OUT2);
        assert_eq!(u.read(2), 0x02);
        u.write(0, b'a');
        assert!(u.irq());
        u.write(0, b'b');
        // Full: busy, no THR-empty interrupt, further bytes dropped.
        assert_eq!(u.read(5) & 0x60, 0);
        assert!(!u.irq());
        u.write(0, b'c');
        let mut buf = [0; 8];
        assert_eq!(u.take(&mut buf[..1]), 1);
        assert_eq!(buf[0], b'a');
        assert_eq!(u.read(5) & 0x60, 0x60);
        assert!(u.irq());
        assert_eq!(u.take(&mut buf), 1);
        assert_eq!(buf[0], b'b');
        assert_eq!(u.receive(b"xyz"), 2);
        assert_eq!(u.rx_pending(), 2);
    }

    #[test]
    fn fifo_identifies_as_16550a_and_loopback() {
        let mut u = Uart::new();
        u.write(2, 0xc7);
        assert_eq!(u.read(2) & 0xc0, 0xc0);
        u.write(4, MCR_LOOP | 0x0b);
        u.write(0, 0x42);
        assert!(u.tx.is_empty());
        assert_eq!(u.read(0), 0x42);
        assert_eq!(u.read(6) & 0xf0, 0xb0 | 0x80 & 0xf0);
    }
}
