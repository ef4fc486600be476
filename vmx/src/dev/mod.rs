//! The emulated PC around the guest CPU: pcdev's board (the port map of vmx(1)'s io.c and
//! its devices, the same code the kernel runs for in-kernel devices), PCI configuration
//! space with the virtio devices on it, the pacing of interrupts, and the `irq` commands
//! that keep #X's pending interrupt in step with the PIC. Every port the guest reaches
//! goes through [`Machine::io_in`] and [`Machine::io_out_to`]. Pure: time comes in as
//! numbers, guest memory through [`Mem`], bytes go out in buffers; the exit loop does the
//! 9P and the terminal.

pub mod clock;
pub mod pace;

use crate::layout::Layout;
use crate::virtio::{self, Mem};
pub use pace::{Pace, Seen};
use pcdev::fwcfg::{self, DmaMem, FwCfg};
pub use pcdev::{i8042, pci, pic, pit, rtc, uart};
pub use pcdev::{Board, Stop, DEBUGCON_PORT, DONE_PORT};
use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};

/// PCI configuration mechanism #1 and the PIIX reset control register: pcdev's PCI
/// model, here or (`pci` in the hypervisor's devices) in the kernel.
use pcdev::pci::PORTS as PCI_PORTS;

/// fw_cfg's selector, data and DMA ports (when the machine has the device).
const FWCFG_PORTS: std::ops::RangeInclusive<u16> = fwcfg::PORT_SELECT..=fwcfg::PORT_LAST;

/// The board (pcdev's devices) with PCI and the virtio devices on it, the clock, the
/// interrupt pacing and the bookkeeping of #X's posted interrupt. Derefs to the
/// [`Board`].
pub struct Machine {
    pub board: Board,
    pub pci: pci::Pci,
    /// The virtio devices (on the PCI bus through [`Machine::attach`]).
    pub virtio: virtio::Bus,
    /// Nanoseconds on the devices' clock: the guest's ([`clock::GuestClock`]) when the
    /// hypervisor tells it, else the loop's monotonic clock.
    pub now: u64,
    /// Unix time in seconds, for the RTC.
    pub wall: i64,
    /// Accesses to ports nobody handles, by port (reads give all ones).
    pub unknown: BTreeMap<u16, u64>,
    /// Warnings for the log since the loop last took them (a virtio device stopped).
    pub warnings: Vec<String>,
    /// The hold on new interrupts.
    pub pace: Pace,
    /// The vector #X was last told to post with `irq N` (None: it has none pending).
    posted: Option<u8>,
    /// PIC input levels last told to the in-kernel PIC (see [`Machine::line_commands`]).
    sent_lines: u16,
    /// QEMU's fw_cfg device on ports 0x510-0x51b, for firmware in the guest (`--bios`).
    pub fwcfg: Option<FwCfg>,
    /// QEMU's firmware debug port ([`FW_DEBUG_PORT`]), when on: what the firmware wrote
    /// to it since the loop last took it. Off, the port is unclaimed and SeaBIOS, reading
    /// all ones there, leaves it alone (each byte would cost an exit).
    pub fw_debug: Option<Vec<u8>>,
    /// System control port A ([`PORT_A`]) on a firmware machine.
    port_a: bool,
}

pub use pcdev::{FW_DEBUG_PORT, FW_DEBUG_READBACK, PORT_A, PORT_A_A20, PORT_A_RESET};

/// Guest memory for fw_cfg's DMA, through the virtio devices' [`Mem`].
struct FwMem<'m>(&'m mut dyn Mem);

impl DmaMem for FwMem<'_> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        match self.0.read(addr, buf.len()) {
            Ok(d) if d.len() == buf.len() => {
                buf.copy_from_slice(&d);
                true
            }
            _ => false,
        }
    }
    fn write(&mut self, addr: u64, data: &[u8]) -> bool {
        self.0.write(addr, data).is_ok()
    }
}

/// No guest memory, for an `out` made outside an exit: a queue notify then stops its
/// device.
struct NoMem;

impl Mem for NoMem {
    fn read(&mut self, _: u64, _: usize) -> Result<Vec<u8>, String> {
        Err("no guest memory".into())
    }
    fn write(&mut self, _: u64, _: &[u8]) -> Result<(), String> {
        Err("no guest memory".into())
    }
}

impl Machine {
    pub fn new(layout: &Layout) -> Machine {
        let rtc = rtc::Rtc::new(layout.base_kb(), layout.ext_kb(), layout.mem());
        Machine {
            board: Board::new(rtc, 0),
            pci: pci::Pci::new(),
            virtio: virtio::Bus::new(0),
            now: 0,
            wall: 0,
            unknown: BTreeMap::new(),
            warnings: Vec::new(),
            pace: Pace::default(),
            posted: None,
            sent_lines: 0,
            fwcfg: None,
            fw_debug: None,
            port_a: false,
        }
    }

    /// Puts QEMU's fw_cfg device on its ports, and the memory sizes a BIOS reads in the
    /// CMOS, for firmware in the guest.
    pub fn firmware(&mut self, layout: &Layout, fwcfg: FwCfg) {
        self.board.rtc.set_ram(layout.mem(), 0);
        self.fwcfg = Some(fwcfg);
        self.port_a = true;
    }

    /// Puts the virtio devices on the PCI bus.
    pub fn attach(&mut self, bus: virtio::Bus) {
        bus.attach(&mut self.pci);
        self.virtio = bus;
    }

    /// Whether `port` is in a virtio device's BAR.
    pub fn virtio_port(&self, port: u16) -> bool {
        self.virtio_bar(port).is_some()
    }

    /// The virtio device whose enabled BAR holds `port`, and the offset in it.
    fn virtio_bar(&self, port: u16) -> Option<(usize, u16)> {
        self.pci
            .io_bar(port)
            .filter(|&(i, _)| i < self.virtio.devs.len())
    }

    /// An `in` of `size` bytes (1, 2 or 4) from `port`.
    pub fn io_in(&mut self, port: u16, size: u8) -> u32 {
        if let Some((i, off)) = self.virtio_bar(port) {
            let v = self.virtio.devs[i].read(off, size);
            self.virtio_lines();
            return v;
        }
        if PCI_PORTS.contains(&port) {
            return self.pci.read(port, size) & pcdev::size_mask(size);
        }
        if let (Some(f), true) = (self.fwcfg.as_mut(), FWCFG_PORTS.contains(&port)) {
            return f.read(port, size);
        }
        if port == FW_DEBUG_PORT && self.fw_debug.is_some() {
            return FW_DEBUG_READBACK;
        }
        if port == PORT_A && self.port_a {
            return PORT_A_A20;
        }
        match pcdev::lookup(port) {
            Some(dev) => self.board.io_in(dev, port, size, self.now, self.wall),
            None => {
                *self.unknown.entry(port).or_default() += 1;
                pcdev::size_mask(size)
            }
        }
    }

    /// An `out` of `size` bytes of `val` to `port`; `mem` is guest memory, for a virtio
    /// device serving a queue.
    pub fn io_out_to(&mut self, port: u16, size: u8, val: u32, mem: &mut dyn Mem) {
        if let Some((i, off)) = self.virtio_bar(port) {
            let limit = self.virtio.limit;
            let w = self.virtio.devs[i].write(off, size, val, mem, limit);
            self.virtio_after(i, w);
            return;
        }
        if PCI_PORTS.contains(&port) {
            self.pci.write(port, size, val & pcdev::size_mask(size));
            if self.pci.reset {
                self.board.stop = Some(Stop::Reset);
            }
            return;
        }
        if let (Some(f), true) = (self.fwcfg.as_mut(), FWCFG_PORTS.contains(&port)) {
            if let Some(dma) = f.write(port, size, val) {
                f.transfer(dma, &mut FwMem(mem));
            }
            return;
        }
        if let (Some(log), FW_DEBUG_PORT) = (self.fw_debug.as_mut(), port) {
            log.push(val as u8);
            return;
        }
        if port == PORT_A && self.port_a {
            if val & PORT_A_RESET != 0 {
                self.board.stop = Some(Stop::Reset);
            }
            return;
        }
        match pcdev::lookup(port) {
            Some(dev) => self.board.io_out(dev, port, size, val, self.now, self.wall),
            None => *self.unknown.entry(port).or_default() += 1,
        }
    }

    /// An `out` with no guest memory at hand (the devices alone, in tests).
    pub fn io_out(&mut self, port: u16, size: u8, val: u32) {
        self.io_out_to(port, size, val, &mut NoMem);
    }

    /// Serves virtio device `i`'s queue `q` outside an exit (a frame arrived).
    pub fn virtio_notify(&mut self, i: usize, q: u16, mem: &mut dyn Mem) {
        let limit = self.virtio.limit;
        let Some(d) = self.virtio.devs.get_mut(i) else {
            return;
        };
        let w = d.notify(q, mem, limit);
        self.virtio_after(i, w);
    }

    /// After device `i` did something: the warning if it stopped (`why`), and the
    /// devices' interrupt lines into the PIC.
    fn virtio_after(&mut self, i: usize, why: Option<String>) {
        if let Some(w) = why {
            self.warnings
                .push(format!("virtio device {i} stopped: {w}"));
        }
        self.virtio_lines();
    }

    /// The virtio devices' interrupt lines into the PIC.
    fn virtio_lines(&mut self) {
        for d in &self.virtio.devs {
            self.board.pic.set_line(d.irq, d.line());
        }
    }

    /// Moves the clock to `now` ns / `wall` s and raises the timer interrupts due.
    pub fn advance(&mut self, now: u64, wall: i64) {
        self.now = self.now.max(now);
        self.wall = wall;
        self.board.advance(self.now);
    }

    /// When [`Machine::advance`] or [`Machine::irq_command`] next has something to do.
    pub fn deadline(&self) -> Option<u64> {
        let held =
            (self.pace.holds(self.now) && self.posted.is_none() && self.pic.pending().is_some())
                .then_some(self.pace.until());
        match (self.pit.deadline(), held) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Paces interrupts after an exit the guest made (`seen`) at host time `host`.
    pub fn pace(&mut self, seen: Seen, host: u64, on_guest_clock: bool) {
        let eoi = self.board.pic.take_eoi();
        self.pace.exit(seen, eoi, self.now, host, on_guest_clock);
    }

    /// Terminal input for COM1.
    pub fn type_in(&mut self, bytes: &[u8]) {
        self.type_in_com(0, bytes);
    }

    /// Input for COM1 (0) or COM2 (1).
    pub fn type_in_com(&mut self, i: usize, bytes: &[u8]) {
        if let Some(c) = self.board.com.get_mut(i) {
            c.receive(bytes);
        }
        self.board.sync_lines();
    }

    /// Everything the guest wrote for the terminal since the last call.
    pub fn take_output(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.board.com[0].tx);
        out.append(&mut self.board.debugcon);
        out
    }

    /// The ctl command that brings #X's posted interrupt in line with the PIC: `irq N`
    /// when the PIC has a vector #X does not have yet, bare `irq` to withdraw one the
    /// PIC no longer asserts, None when they agree.
    pub fn irq_command(&mut self) -> Option<String> {
        let want = self.pic.pending();
        if want == self.posted
            || (want.is_some() && self.posted.is_none() && self.pace.holds(self.now))
        {
            return None;
        }
        self.posted = want;
        Some(match want {
            Some(v) => format!("irq {v}"),
            None => "irq".to_string(),
        })
    }

    /// With the hypervisor's in-kernel PIC: the `line IRQ LEVEL` commands that bring its
    /// inputs in line with what this machine's devices drive, for the lines that changed.
    pub fn line_commands(&mut self) -> Vec<String> {
        let now = self.pic.lines();
        let changed = now ^ self.sent_lines;
        self.sent_lines = now;
        (0..16)
            .filter(|i| changed >> i & 1 != 0)
            .map(|i| format!("line {i} {}", now >> i & 1))
            .collect()
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

impl Deref for Machine {
    type Target = Board;
    fn deref(&self) -> &Board {
        &self.board
    }
}

impl DerefMut for Machine {
    fn deref_mut(&mut self) -> &mut Board {
        &mut self.board
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
        m.pace.hold(25_000_000);
        let d = m.pit.deadline().unwrap();
        m.advance(d, 0);
        assert_eq!(m.irq_command(), None); // held
        assert_eq!(m.deadline(), Some(25_000_000)); // the loop wakes to post it
        m.advance(25_000_000, 0);
        assert_eq!(m.irq_command().as_deref(), Some("irq 32"));
        // A withdrawal goes through a hold.
        m.pace.hold(u64::MAX);
        m.io_out(0x21, 1, 0xff);
        assert_eq!(m.irq_command().as_deref(), Some("irq"));
        m.pace.release();
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
    fn line_commands_follow_the_pic_inputs() {
        let mut m = machine();
        assert!(m.line_commands().is_empty());
        // COM2 with its receive interrupt and OUT2 on: IRQ 3 rises with input, falls
        // when it is read.
        m.io_out(0x2f9, 1, 1);
        m.io_out(0x2fc, 1, 0x08);
        m.board.com[1].receive(b"z");
        m.board.sync_lines();
        assert_eq!(m.line_commands(), ["line 3 1"]);
        assert!(m.line_commands().is_empty());
        m.io_in(0x2f8, 1);
        assert_eq!(m.line_commands(), ["line 3 0"]);
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

    /// pcdev's scripts read the same through the tool's machine as through the board and
    /// the kernel (devvmx's tests/kdev.rs), the RTC's clock starting at the epoch.
    #[test]
    fn shared_scripts() {
        use pcdev::script::{Op, SCRIPTS};
        for s in SCRIPTS {
            let mut m = machine();
            let mut now = 0u64;
            let mut reads = Vec::new();
            for op in s.ops {
                m.advance(now, (now / 1_000_000_000) as i64);
                match *op {
                    Op::Out(p, n, v) => m.io_out(p, n, v),
                    Op::In(p, n) => reads.push(m.io_in(p, n)),
                    Op::Run(ns) => now += ns,
                }
            }
            assert_eq!(reads, s.reads, "{}", s.name);
            assert!(m.unknown.is_empty(), "{}", s.name);
        }
    }

    /// fw_cfg answers only on a firmware machine: its signature byte by byte, and a DMA
    /// transfer into guest memory.
    #[test]
    fn fw_cfg_on_a_firmware_machine() {
        use crate::virtio::testing::Ram;
        let mut m = machine();
        assert_eq!(m.io_in(0x511, 1), 0xff);
        let layout = Layout::new(64 << 20).unwrap();
        m.firmware(&layout, crate::firmware::fw_cfg(&layout, None).unwrap());
        m.io_out(0x510, 2, 0);
        let sig: Vec<u8> = (0..4).map(|_| m.io_in(0x511, 1) as u8).collect();
        assert_eq!(sig, b"QEMU");
        let mut ram = Ram::new(1 << 16);
        // Descriptor at 0x100: read 4 bytes of item 0 (selected) to 0x200.
        let ctl = (fwcfg::DMA_READ | fwcfg::DMA_SELECT).to_be_bytes();
        ram.b[0x100..0x104].copy_from_slice(&ctl);
        ram.b[0x104..0x108].copy_from_slice(&4u32.to_be_bytes());
        ram.b[0x108..0x110].copy_from_slice(&0x200u64.to_be_bytes());
        m.io_out_to(0x518, 4, 0x100u32.swap_bytes(), &mut ram);
        assert_eq!(&ram.b[0x200..0x204], b"QEMU");
        assert_eq!(ram.b[0x100..0x104], [0; 4]);
        // Only the read before the device was there went unanswered.
        assert_eq!(m.unknown.keys().collect::<Vec<_>>(), [&0x511]);
        // Port A: A20 on, no reset in progress; a write with bit 0 resets.
        assert_eq!(m.io_in(PORT_A, 1), 0x02);
        m.io_out(PORT_A, 1, 0x02);
        assert_eq!(m.stop, None);
        m.io_out(PORT_A, 1, 0x03);
        assert_eq!(m.stop, Some(Stop::Reset));
    }

    #[test]
    fn pci_through_the_bus() {
        let mut m = machine();
        m.io_out(0xcf8, 4, 0x8000_0000);
        assert_eq!(m.io_in(0xcfc, 4), 0x1237_8086);
    }

    /// A virtio BAR goes to its device, through the same `in`/`out` as every port: the
    /// register reads, the interrupt line into the PIC, and a queue served from guest
    /// memory on a notify (a notify with no memory at hand stops the device, with a
    /// warning for the log).
    #[test]
    fn virtio_bars_through_the_machine() {
        use crate::virtio::testing::{Driver, Ram};
        use crate::virtio::{blk, Bus, Kind, IO_BASE, QUEUE_SIZE};
        let mut m = machine();
        let mut bus = Bus::new(1 << 20);
        let disk: Vec<u8> = (0..2048u32).map(|i| (i / 512) as u8).collect();
        bus.add(Kind::Blk(blk::Blk::new(Box::new(disk), false, "d")))
            .unwrap();
        m.attach(bus);
        assert!(!m.virtio_port(IO_BASE));
        m.io_out(0xcf8, 4, 0x8000_0804);
        m.io_out(0xcfc, 2, 1);
        assert!(m.virtio_port(IO_BASE));
        assert_eq!(
            m.io_in(IO_BASE, 4),
            blk::F_FLUSH | blk::F_SEG_MAX | blk::F_TOPOLOGY
        );
        let mut ram = Ram::new(1 << 20);
        m.io_out_to(IO_BASE + 0x08, 4, 16, &mut ram);
        m.io_out_to(IO_BASE + 0x12, 1, 7, &mut ram);
        let mut drv = Driver::new(QUEUE_SIZE, 16);
        ram.b[0x1008] = 2; // sector 2
        drv.offer(
            &mut ram,
            &[(0x1000, 16, false), (0x2000, 512, true), (0x3000, 1, true)],
        );
        m.io_out_to(IO_BASE + 0x10, 2, 0, &mut ram);
        assert_eq!(ram.b[0x2000..0x2200], [2u8; 512]);
        assert!(m.pic.lines() >> m.virtio.devs[0].irq & 1 != 0);
        assert_eq!(m.io_in(IO_BASE + 0x13, 1), 1); // the ISR read lowers the line
        assert_eq!(m.pic.lines() >> m.virtio.devs[0].irq & 1, 0);
        assert!(m.warnings.is_empty() && m.unknown.is_empty());
        drv.offer(&mut ram, &[(0x1000, 16, false)]);
        m.io_out(IO_BASE + 0x10, 2, 0);
        assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
        assert!(m.warnings[0].starts_with("virtio device 0 stopped: "));
    }
}
