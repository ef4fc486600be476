//! The 16550 UART on COM1: the receive interrupt drains the FIFO into a ring at once (Bochs
//! drops bytes the FIFO cannot hold); transmit goes out of a ring, refilled by the
//! transmitter-empty interrupt.

use super::cpu::without_interrupts;
use super::port::COM1;
use spin::Mutex;

const IRQ: u8 = 4;

const RBR_THR: u16 = 0;
const IER: u16 = 1;
const IIR_FCR: u16 = 2;
const LCR: u16 = 3;
const MCR: u16 = 4;
const LSR: u16 = 5;
const SCR: u16 = 7;

const LSR_DR: u8 = 1;
const LSR_THRE: u8 = 0x20;
const IER_RDA: u8 = 1;
const IER_THRE: u8 = 2;
const FIFO: usize = 16;

const RING: usize = 64 * 1024;

struct Ring {
    buf: [u8; RING],
    head: usize,
    len: usize,
}

impl Ring {
    const fn new() -> Self {
        Ring {
            buf: [0; RING],
            head: 0,
            len: 0,
        }
    }
    fn push(&mut self, b: u8) -> bool {
        if self.len == RING {
            return false;
        }
        self.buf[(self.head + self.len) % RING] = b;
        self.len += 1;
        true
    }
    fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let b = self.buf[self.head];
        self.head = (self.head + 1) % RING;
        self.len -= 1;
        Some(b)
    }
}

struct State {
    rx: Ring,
    tx: Ring,
    ier: u8,
    /// Bytes received with the ring full.
    dropped: u64,
}

static STATE: Mutex<State> = Mutex::new(State {
    rx: Ring::new(),
    tx: Ring::new(),
    ier: 0,
    dropped: 0,
});

/// Is there a 16550 at COM1 (its scratch register holds a value)?
pub fn present() -> bool {
    COM1.write8(SCR, 0x5a);
    COM1.read8(SCR) == 0x5a
}

/// 115200 8N1, FIFOs on, receive interrupt on.
pub fn init() {
    COM1.write8(IER, 0);
    COM1.write8(LCR, 0x80); // DLAB
    COM1.write8(RBR_THR, 1); // divisor 1: 115200 baud
    COM1.write8(IER, 0);
    COM1.write8(LCR, 0x03); // 8N1

    // FIFO on, both cleared, receive interrupt at every byte. A higher trigger level relies
    // on the FIFO's character timeout for the last bytes of a message, and Bochs 2.7 leaves
    // that timer running when the FIFO is emptied by polling: it then hands over a byte it
    // already gave, a duplicate that corrupts a 9P frame (seen with Linux's v9fs on COM1).
    // QEMU hands over one byte per poll at this level, which costs only COM1's speed there.
    COM1.write8(IIR_FCR, 0x07);
    COM1.write8(MCR, 0x0b); // DTR, RTS, OUT2 (routes the IRQ)
    while COM1.read8(LSR) & LSR_DR != 0 {
        COM1.read8(RBR_THR);
    }
    without_interrupts(|| {
        let mut s = STATE.lock();
        s.ier = IER_RDA;
        COM1.write8(IER, s.ier);
    });
    super::pic::register(IRQ, on_irq);
}

/// Moves bytes between the chip and the rings; called with interrupts off.
fn service(s: &mut State) {
    for _ in 0..RING {
        let lsr = COM1.read8(LSR);
        if lsr & LSR_DR == 0 {
            break;
        }
        let b = COM1.read8(RBR_THR);
        if !s.rx.push(b) {
            s.dropped += 1;
        }
    }
    if COM1.read8(LSR) & LSR_THRE != 0 {
        for _ in 0..FIFO {
            match s.tx.pop() {
                Some(b) => COM1.write8(RBR_THR, b),
                None => break,
            }
        }
    }
    let want = if s.tx.len > 0 {
        IER_RDA | IER_THRE
    } else {
        IER_RDA
    };
    if want != s.ier {
        s.ier = want;
        COM1.write8(IER, want);
    }
}

fn on_irq() {
    let mut s = STATE.lock();
    // Reading IIR acknowledges a THRE interrupt; loop until none is pending.
    for _ in 0..16 {
        service(&mut s);
        if COM1.read8(IIR_FCR) & 1 != 0 {
            break;
        }
    }
}

/// Takes received bytes; returns how many.
pub fn read(buf: &mut [u8]) -> usize {
    without_interrupts(|| {
        let mut s = STATE.lock();
        service(&mut s);
        let mut n = 0;
        while n < buf.len() {
            match s.rx.pop() {
                Some(b) => {
                    buf[n] = b;
                    n += 1;
                }
                None => break,
            }
        }
        n
    })
}

/// Queues bytes to send; returns how many fit.
pub fn write(data: &[u8]) -> usize {
    without_interrupts(|| {
        let mut s = STATE.lock();
        let mut n = 0;
        while n < data.len() && s.tx.push(data[n]) {
            n += 1;
        }
        service(&mut s);
        n
    })
}

/// Bytes lost to a full receive ring since boot.
pub fn dropped() -> u64 {
    without_interrupts(|| STATE.lock().dropped)
}
