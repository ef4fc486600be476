//! The emulated PC around the guest CPU: the port map of vmx(1)'s io.c, interrupt routing
//! into the PIC, and the `irq` commands that keep #X's pending interrupt in step with the
//! PIC. Pure: time comes in as numbers, bytes go out in buffers; the exit loop does the
//! 9P and the terminal.

pub mod i8042;
pub mod pci;
pub mod pic;
pub mod pit;
pub mod rtc;
pub mod uart;

use crate::layout::Layout;
use std::collections::BTreeMap;

/// Port the demo guest (and any guest) writes to end the run; the byte is the exit
/// status. QEMU's isa-debug-exit sits here too.
pub const DONE_PORT: u16 = 0xf4;
/// Bochs's and QEMU's debug console: bytes written here go to the terminal as well.
pub const DEBUGCON_PORT: u16 = 0xe9;

/// Why the machine wants the run to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// An out to [`DONE_PORT`] with this value.
    Done(u8),
    /// A reset through the keyboard controller or 0xcf9.
    Reset,
}

/// Which device a port belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dev {
    Pic,
    Pit,
    Rtc,
    Kbd,
    Com(usize),
    Pci,
    Done,
    Debugcon,
    /// Ports legacy drivers probe or use for delays: reads all ones, writes dropped.
    Quiet,
}

/// The port map, after vmx(1)'s io.c.
const PORTS: &[(u16, u16, Dev)] = &[
    (0x20, 0x21, Dev::Pic),
    (0xa0, 0xa1, Dev::Pic),
    (0x4d0, 0x4d1, Dev::Pic),
    (0x40, 0x43, Dev::Pit),
    (0x61, 0x61, Dev::Pit),
    (0x70, 0x71, Dev::Rtc),
    (0x60, 0x60, Dev::Kbd),
    (0x64, 0x64, Dev::Kbd),
    (0x3f8, 0x3ff, Dev::Com(0)),
    (0x2f8, 0x2ff, Dev::Com(1)),
    (0xcf8, 0xcff, Dev::Pci),
    (DONE_PORT, DONE_PORT, Dev::Done),
    (DEBUGCON_PORT, DEBUGCON_PORT, Dev::Debugcon),
    (0x80, 0x80, Dev::Quiet),   // POST code; Linux's delay
    (0x84, 0x84, Dev::Quiet),   // DMA page; delay
    (0xed, 0xed, Dev::Quiet),   // delay
    (0x3e8, 0x3ef, Dev::Quiet), // COM3
    (0x2e8, 0x2ef, Dev::Quiet), // COM4
    (0x378, 0x37a, Dev::Quiet), // LPT1
    (0x278, 0x27a, Dev::Quiet), // LPT2
    (0x3b0, 0x3df, Dev::Quiet), // VGA
    (0x1f0, 0x1f7, Dev::Quiet), // IDE primary
    (0x3f6, 0x3f6, Dev::Quiet),
    (0x170, 0x177, Dev::Quiet), // IDE secondary
    (0x376, 0x376, Dev::Quiet),
    (0x3f0, 0x3f5, Dev::Quiet), // floppy
    (0x3f7, 0x3f7, Dev::Quiet),
    (0x00, 0x1f, Dev::Quiet), // DMA
    (0xc0, 0xdf, Dev::Quiet), // DMA
    (0x81, 0x8f, Dev::Quiet), // DMA pages
];

fn lookup(port: u16) -> Option<Dev> {
    PORTS
        .iter()
        .find(|(lo, hi, _)| (*lo..=*hi).contains(&port))
        .map(|p| p.2)
}

/// Interrupt lines of the devices.
const IRQ_PIT: u8 = 0;
const IRQ_KBD: u8 = 1;
const IRQ_COM: [u8; 2] = [4, 3];

pub struct Machine {
    pub pic: pic::Pic,
    pub pit: pit::Pit,
    pub rtc: rtc::Rtc,
    pub kbd: i8042::I8042,
    pub com: [uart::Uart; 2],
    pub pci: pci::Pci,
    /// Nanoseconds on the loop's monotonic clock.
    pub now: u64,
    /// Unix time in seconds, for the RTC.
    pub wall: i64,
    pub stop: Option<Stop>,
    /// Bytes for the terminal written to the debug console port.
    pub debugcon: Vec<u8>,
    /// Accesses to ports nobody handles, by port (reads give all ones).
    pub unknown: BTreeMap<u16, u64>,
    /// The vector #X was last told to post with `irq N` (None: it has none pending).
    posted: Option<u8>,
    /// No new interrupt is posted before this time (see [`Machine::hold`]).
    hold: u64,
}

impl Machine {
    pub fn new(layout: &Layout) -> Machine {
        Machine {
            pic: pic::Pic::new(),
            pit: pit::Pit::new(),
            rtc: rtc::Rtc::new(layout),
            kbd: i8042::I8042::new(),
            com: [uart::Uart::new(), uart::Uart::new()],
            pci: pci::Pci::new(),
            now: 0,
            wall: 0,
            stop: None,
            debugcon: Vec::new(),
            unknown: BTreeMap::new(),
            posted: None,
            hold: 0,
        }
    }

    /// An `in` of `size` bytes (1, 2 or 4) from `port`.
    pub fn io_in(&mut self, port: u16, size: u8) -> u32 {
        let mask = size_mask(size);
        let v = match lookup(port) {
            Some(Dev::Pic) => u32::from(self.pic.read(port)),
            Some(Dev::Pit) => u32::from(self.pit.read(port, self.now)),
            Some(Dev::Rtc) => u32::from(self.rtc.read(port, self.wall)),
            Some(Dev::Kbd) => {
                let v = self.kbd.read(port);
                if port == 0x60 {
                    // The controller drops IRQ 1 as the byte is read; a next byte
                    // raises it again: a new edge.
                    self.pic.set_line(IRQ_KBD, false);
                }
                u32::from(v)
            }
            Some(Dev::Com(i)) => u32::from(self.com[i].read(port & 7)),
            Some(Dev::Pci) => self.pci.read(port, size),
            Some(Dev::Done | Dev::Debugcon | Dev::Quiet) => u32::MAX,
            None => {
                *self.unknown.entry(port).or_default() += 1;
                u32::MAX
            }
        };
        self.sync_lines();
        v & mask
    }

    /// An `out` of `size` bytes of `val` to `port`.
    pub fn io_out(&mut self, port: u16, size: u8, val: u32) {
        let val = val & size_mask(size);
        let b = val as u8;
        match lookup(port) {
            Some(Dev::Pic) => self.pic.write(port, b),
            Some(Dev::Pit) => self.pit.write(port, b, self.now),
            Some(Dev::Rtc) => self.rtc.write(port, b, self.wall),
            Some(Dev::Kbd) => self.kbd.write(port, b),
            Some(Dev::Com(i)) => self.com[i].write(port & 7, b),
            Some(Dev::Pci) => self.pci.write(port, size, val),
            Some(Dev::Done) => self.stop = Some(Stop::Done(b)),
            Some(Dev::Debugcon) => self.debugcon.push(b),
            Some(Dev::Quiet) => {}
            None => *self.unknown.entry(port).or_default() += 1,
        }
        if self.kbd.reset || self.pci.reset {
            self.stop = Some(Stop::Reset);
        }
        self.sync_lines();
    }

    /// Level-triggered lines follow their devices after every access.
    fn sync_lines(&mut self) {
        for (i, irq) in IRQ_COM.iter().enumerate() {
            self.pic.set_line(*irq, self.com[i].irq());
        }
        self.pic.set_line(IRQ_KBD, self.kbd.irq());
    }

    /// Moves the clock to `now` ns / `wall` s and raises the timer interrupts due.
    pub fn advance(&mut self, now: u64, wall: i64) {
        self.now = self.now.max(now);
        self.wall = wall;
        if self.pit.advance(self.now) {
            self.pic.pulse(IRQ_PIT);
        }
    }

    /// When [`Machine::advance`] or [`Machine::irq_command`] next has something to do.
    pub fn deadline(&self) -> Option<u64> {
        let held = (self.now < self.hold && self.posted.is_none() && self.pic.pending().is_some())
            .then_some(self.hold);
        match (self.pit.deadline(), held) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Posts no new interrupt before `until` (ns). Over a slow link an interrupt handler
    /// takes longer than a timer period: posting the next tick as soon as the handler
    /// ends its interrupt would inject it at the handler's iret, again and again, and the
    /// interrupted code would never run. Withdrawing a posted interrupt is never held.
    pub fn hold(&mut self, until: u64) {
        self.hold = until;
    }

    /// Lifts a hold (the guest is idle: nothing to protect).
    pub fn release(&mut self) {
        self.hold = 0;
    }

    /// Terminal input for COM1.
    pub fn type_in(&mut self, bytes: &[u8]) {
        self.type_in_com(0, bytes);
    }

    /// Input for COM1 (0) or COM2 (1).
    pub fn type_in_com(&mut self, i: usize, bytes: &[u8]) {
        if let Some(c) = self.com.get_mut(i) {
            c.receive(bytes);
        }
        self.sync_lines();
    }

    /// Everything the guest wrote for the terminal since the last call.
    pub fn take_output(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.com[0].tx);
        out.append(&mut self.debugcon);
        out
    }

    /// The ctl command that brings #X's posted interrupt in line with the PIC: `irq N`
    /// when the PIC has a vector #X does not have yet, bare `irq` to withdraw one the
    /// PIC no longer asserts, None when they agree.
    pub fn irq_command(&mut self) -> Option<String> {
        let want = self.pic.pending();
        if want == self.posted || (want.is_some() && self.posted.is_none() && self.now < self.hold)
        {
            return None;
        }
        self.posted = want;
        Some(match want {
            Some(v) => format!("irq {v}"),
            None => "irq".to_string(),
        })
    }

    /// The vector #X holds for the guest, if any.
    pub fn posted(&self) -> Option<u8> {
        self.posted
    }

    /// Whether #X holds an interrupt for the guest (so a halted guest will wake).
    pub fn irq_posted(&self) -> bool {
        self.posted.is_some()
    }

    /// The guest took `vector` (a `*ack` wait line): #X no longer holds it.
    pub fn irq_ack(&mut self, vector: u8) {
        if self.posted == Some(vector) {
            self.posted = None;
        }
        self.pic.ack(vector);
    }
}

fn size_mask(size: u8) -> u32 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        _ => u32::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine::new(&Layout::new(64 << 20).unwrap())
    }

    fn init_pic(m: &mut Machine) {
        for (port, v) in pic::INIT_SEQUENCE {
            m.io_out(port, 1, v.into());
        }
        m.io_out(0x21, 1, 0xee);
        m.io_out(0xa1, 1, 0xff);
    }

    #[test]
    fn serial_output_and_done_port() {
        let mut m = machine();
        for b in b"Hi\n" {
            m.io_out(0x3f8, 1, u32::from(*b));
        }
        m.io_out(0xe9, 1, u32::from(b'!'));
        assert_eq!(m.io_in(0x3fd, 1), 0x60);
        assert_eq!(m.take_output(), b"Hi\n!");
        assert_eq!(m.take_output(), b"");
        assert_eq!(m.stop, None);
        m.io_out(DONE_PORT, 1, 0x103);
        assert_eq!(m.stop, Some(Stop::Done(3)));
    }

    #[test]
    fn unknown_and_quiet_ports() {
        let mut m = machine();
        assert_eq!(m.io_in(0x1234, 2), 0xffff);
        m.io_out(0x1234, 1, 0);
        assert_eq!(m.io_in(0x80, 1), 0xff);
        assert_eq!(m.unknown.get(&0x1234), Some(&2));
        assert_eq!(m.unknown.get(&0x80), None);
    }

    #[test]
    fn timer_interrupt_is_posted_acked_and_eoied() {
        let mut m = machine();
        init_pic(&mut m);
        m.io_out(0x43, 1, 0x34);
        m.io_out(0x40, 1, 0x9c);
        m.io_out(0x40, 1, 0x2e); // 11932: 100 Hz
        assert_eq!(m.irq_command(), None);
        let d = m.deadline().unwrap();
        m.advance(d, 0);
        assert_eq!(m.irq_command().as_deref(), Some("irq 32"));
        assert_eq!(m.irq_command(), None);
        assert!(m.irq_posted());
        m.irq_ack(32);
        assert!(!m.irq_posted());
        // In service: nothing more; the next tick waits for the EOI.
        assert_eq!(m.irq_command(), None);
        m.advance(m.deadline().unwrap(), 0);
        assert_eq!(m.irq_command(), None);
        m.io_out(0x20, 1, 0x20);
        assert_eq!(m.irq_command().as_deref(), Some("irq 32"));
    }

    #[test]
    fn hold_delays_new_interrupts_only() {
        let mut m = machine();
        init_pic(&mut m);
        m.io_out(0x43, 1, 0x30); // one-shot: no later PIT deadline
        m.io_out(0x40, 1, 0x9c);
        m.io_out(0x40, 1, 0x2e);
        m.hold(25_000_000);
        let d = m.pit.deadline().unwrap();
        m.advance(d, 0);
        assert_eq!(m.irq_command(), None); // held
        assert_eq!(m.deadline(), Some(25_000_000)); // the loop wakes to post it
        m.advance(25_000_000, 0);
        assert_eq!(m.irq_command().as_deref(), Some("irq 32"));
        // A withdrawal goes through a hold.
        m.hold(u64::MAX);
        m.io_out(0x21, 1, 0xff);
        assert_eq!(m.irq_command().as_deref(), Some("irq"));
        m.release();
        m.io_out(0x21, 1, 0xfe);
        assert_eq!(m.irq_command().as_deref(), Some("irq 32"));
    }

    #[test]
    fn posted_interrupt_is_withdrawn_when_masked() {
        let mut m = machine();
        init_pic(&mut m);
        m.io_out(0x3f9, 1, 1); // COM1 rx interrupt
        m.io_out(0x3fc, 1, 0x0b); // OUT2
        m.type_in(b"a");
        assert_eq!(m.irq_command().as_deref(), Some("irq 36"));
        m.io_out(0x21, 1, 0xff);
        assert_eq!(m.irq_command().as_deref(), Some("irq"));
        assert!(!m.irq_posted());
    }

    #[test]
    fn resets_stop_the_machine() {
        let mut m = machine();
        m.io_out(0x64, 1, 0xfe);
        assert_eq!(m.stop, Some(Stop::Reset));
        let mut m = machine();
        m.io_out(0xcf9, 1, 0x06);
        assert_eq!(m.stop, Some(Stop::Reset));
    }

    #[test]
    fn pci_through_the_bus() {
        let mut m = machine();
        m.io_out(0xcf8, 4, 0x8000_0000);
        assert_eq!(m.io_in(0xcfc, 4), 0x1237_8086);
    }
}
