//! In-kernel PC devices: after a `devices` ctl message (an extension, see DEVIATIONS.md)
//! the VM's port I/O to the named devices is answered here, with pcdev's models (the same
//! code the vmx tool runs), instead of going to the client as `io` exits. The PIC's
//! interrupts are injected at entry, halts wait here for them, and COM1's bytes go through
//! the VM's `cons` file. With `cpu`, cpuid (from the real CPU through pcdev's masks), the
//! MSRs pcdev's table knows and the debug registers are answered here too.

use crate::plan9::quote;
use alloc::format;
use alloc::string::String;
use ninep::Error;
use pcdev::{Board, Dev};

mod blk;
mod blkq;
mod cons;
mod cpu;
mod exit;
mod firmware;
mod net;
mod pci;
pub use cons::{CONS_BATCH, CONS_DELAY, CONS_IDLE, CONS_LIMIT};
pub(crate) use exit::Answered;
pub(crate) use firmware::FwPort;
pub(crate) use pci::{Route, ENOPCI};

/// What an in-kernel virtio device serves of a queue at once: at a notify, and again
/// before each later entry while work is left ([`KDev::resume`]), with no new notify.
/// Its data moves on the VM's CPU, the guest and that CPU's other work waiting: 1 MiB
/// (a tenth of a millisecond's copy on hardware, well inside the run loop's 2 ms quantum
/// of device work, and about the largest request Linux makes, 1280 KiB, so most end in
/// one go) and 32 chains (a quarter of the ring; a frame's chain is at most 1.5 KiB)
/// bound it, where a whole ring of disk-sized requests would not be.
pub(crate) const VIRTIO_BUDGET: virtio::queue::Budget = virtio::queue::Budget {
    chains: 32,
    bytes: 1 << 20,
};

/// `cons` of a VM without an in-kernel UART.
pub(crate) const ENOCONS: &str = "no in-kernel uart";

/// Device names of the `devices` message, and the bit each sets.
pub(crate) const PIC: u16 = 1 << 0;
pub(crate) const PIT: u16 = 1 << 1;
pub(crate) const UART: u16 = 1 << 2;
pub(crate) const RTC: u16 = 1 << 3;
pub(crate) const KBD: u16 = 1 << 4;
pub(crate) const QUIET: u16 = 1 << 5;
pub(crate) const CPU: u16 = 1 << 6;
pub(crate) const PCI: u16 = 1 << 7;
/// A second 16550 at COM2 (0x2f8, IRQ 3), unconnected: what the guest sends is dropped,
/// nothing is ever received (the vmx tool's COM2 without -C). Linux's 8250 driver probes
/// it at boot: a score of port accesses that would each be a round trip to the client.
pub(crate) const COM2: u16 = 1 << 8;

pub(crate) const NAMES: [(&str, u16); 9] = [
    ("pic", PIC),
    ("pit", PIT),
    ("uart", UART),
    ("rtc", RTC),
    ("kbd", KBD),
    ("quiet", QUIET),
    ("cpu", CPU),
    ("pci", PCI),
    ("com2", COM2),
];

/// Devices that raise interrupts, and so need the in-kernel PIC.
const NEED_PIC: u16 = PIT | UART | COM2 | KBD;

/// The parsed `devices` message: which devices, and the RTC's Unix time at guest time 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Choice {
    pub(crate) set: u16,
    pub(crate) rtc_base: i64,
}

/// Parses the arguments of `devices NAME...`: names from [`NAMES`], each at most once;
/// `rtc` may carry the Unix time the clock starts from, `rtc=SECONDS`.
pub(crate) fn parse(args: &[String]) -> Result<Choice, Error> {
    let mut c = Choice {
        set: 0,
        rtc_base: 0,
    };
    if args.is_empty() {
        return Err("no devices named".into());
    }
    for a in args {
        let (name, val) = match a.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (a.as_str(), None),
        };
        let Some(&(_, bit)) = NAMES.iter().find(|(n, _)| *n == name) else {
            return Err(format!("unknown device {}", quote(a, false)).into());
        };
        if c.set & bit != 0 {
            return Err(format!("device {name} named twice").into());
        }
        c.set |= bit;
        match (bit, val) {
            (_, None) => {}
            (RTC, Some(v)) => {
                c.rtc_base = v
                    .parse::<i64>()
                    .map_err(|_| Error::from(format!("bad rtc time {}", quote(v, false))))?;
            }
            (_, Some(_)) => {
                return Err(format!("device {name} takes no value").into());
            }
        }
    }
    if c.set & NEED_PIC != 0 && c.set & PIC == 0 {
        return Err("pit, uart, com2 and kbd need the pic".into());
    }
    Ok(c)
}

/// What a VM's in-kernel devices did, for the host's log and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Port accesses answered here.
    pub io: u64,
    /// Halts waited out here.
    pub hlt: u64,
    /// cpuid, RDMSR, WRMSR and MOV DR answered here.
    pub cpu: u64,
    /// Interrupts injected from the in-kernel PIC.
    pub irq: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.io += o.io;
        self.hlt += o.hlt;
        self.cpu += o.cpu;
        self.irq += o.irq;
    }
}

/// One VM's in-kernel devices.
pub(crate) struct KDev {
    pub(crate) board: Board,
    /// PCI configuration space, with `pci`.
    pub(crate) pci: pcdev::pci::Pci,
    pub(crate) set: u16,
    rtc_base: i64,
    /// The guest halted with interrupts on; it is not entered until the PIC has one.
    pub(crate) halted: bool,
    /// When COM1's output is due for a waiting `cons` read.
    batch: cons::Batch,
    /// The io exit now at the client names this qualification instead of the CPU's (a
    /// client's PCI function reached through a BAR the guest moved).
    pub(crate) qual: Option<u64>,
    /// A vector whose delivery an exit cut short: injected again on the next entry.
    pub(crate) redeliver: Option<u8>,
    pub(crate) counts: Counts,
    /// The MSRs the guest wrote that pcdev's table keeps (`cpu`).
    kept: cpu::Kept,
    /// A firmware machine (`firmware`, see [`firmware`]).
    firmware: bool,
    /// virtio-net cards served here (`pci net`, kdev/net.rs).
    nets: alloc::vec::Vec<net::Card>,
    /// virtio-blk disks on the in-kernel bus (`pci blk`, kdev/blk.rs), and the client's
    /// position in their queue file (kdev/blkq.rs).
    pub(crate) disks: alloc::vec::Vec<blk::KBlk>,
    pub(crate) blkq: blkq::BlkQ,
}

impl KDev {
    pub(crate) fn new(c: Choice) -> KDev {
        // The kernel does not know the guest's memory layout: the CMOS holds no sizes
        // until a `firmware` message gives them.
        let rtc = pcdev::rtc::Rtc::new(0, 0, 0);
        KDev {
            board: Board::new(rtc, CONS_LIMIT),
            pci: pcdev::pci::Pci::new(),
            set: c.set,
            rtc_base: c.rtc_base,
            halted: false,
            batch: cons::Batch::default(),
            qual: None,
            redeliver: None,
            counts: Counts::default(),
            kept: cpu::Kept::default(),
            firmware: false,
            nets: alloc::vec::Vec::new(),
            disks: alloc::vec::Vec::new(),
            blkq: blkq::BlkQ::default(),
        }
    }

    pub(crate) fn has(&self, bit: u16) -> bool {
        self.set & bit != 0
    }

    /// The device answering `port` here, if it is one of the chosen.
    pub(crate) fn claims(&self, port: u16) -> Option<Dev> {
        let dev = pcdev::lookup(port)?;
        let bit = match dev {
            Dev::Pic => PIC,
            Dev::Pit => PIT,
            Dev::Rtc => RTC,
            Dev::Kbd => KBD,
            Dev::Com(0) => UART,
            Dev::Com(1) => COM2,
            Dev::Quiet => QUIET,
            // The done and debug ports stay the client's.
            Dev::Com(_) | Dev::Done | Dev::Debugcon => return None,
        };
        self.has(bit).then_some(dev)
    }

    fn wall(&self, now: u64) -> i64 {
        self.rtc_base
            .saturating_add(i64::try_from(now / 1_000_000_000).unwrap_or(i64::MAX))
    }

    /// A port access of the guest at guest time `now` (ns): the value read for an `in`.
    pub(crate) fn io(
        &mut self,
        dev: Dev,
        port: u16,
        size: u8,
        input: bool,
        val: u32,
        now: u64,
    ) -> u32 {
        self.counts.io += 1;
        self.board.advance(now);
        let wall = self.wall(now);
        if input {
            self.board.io_in(dev, port, size, now, wall)
        } else {
            let queued = self.board.com[0].tx.len();
            self.board.io_out(dev, port, size, val, now, wall);
            if self.board.com[0].tx.len() > queued {
                self.batch.queued(now);
            }
            // COM2 is connected to nothing: its bytes leave and are gone.
            self.board.com[1].tx.clear();
            0
        }
    }

    /// The guest halted here at guest time `now`, waiting for an interrupt.
    pub(crate) fn halt(&mut self, now: u64) {
        self.halted = true;
        self.batch.halt(now);
    }

    /// The guest runs again at `now`: an interrupt came, or the client said `go`.
    pub(crate) fn wake(&mut self, now: u64) {
        self.halted = false;
        self.batch.wake(now);
    }

    /// COM1's output for a `cons` read at guest time `now`: with `wait`, None until it
    /// is due (see [`cons`]); else what fits in `buf` (possibly nothing).
    pub(crate) fn cons_take(&mut self, buf: &mut [u8], wait: bool, now: u64) -> Option<usize> {
        if wait && !self.batch.due(self.board.com[0].tx.len(), buf.len(), now) {
            return None;
        }
        let n = self.board.com[0].take(buf);
        self.batch.taken(self.board.com[0].tx.len(), now);
        // Room again may raise the THR-empty interrupt.
        self.board.sync_lines();
        Some(n)
    }

    /// The vector the PIC wants the CPU to take at guest time `now`, if any.
    pub(crate) fn pending(&mut self, now: u64) -> Option<u8> {
        if !self.has(PIC) {
            return None;
        }
        self.board.advance(now);
        self.board.pic.pending()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    fn p(s: &str) -> Result<Choice, String> {
        let v: Vec<String> = s.split_whitespace().map(|w| w.to_string()).collect();
        parse(&v).map_err(|e| e.as_str().into())
    }

    #[test]
    fn names() {
        assert_eq!(
            p("pic pit uart rtc=100 kbd quiet cpu pci com2"),
            Ok(Choice {
                set: 0x1ff,
                rtc_base: 100
            })
        );
        assert_eq!(p("rtc").map(|c| c.set), Ok(RTC));
        assert_eq!(p(""), Err("no devices named".into()));
        assert_eq!(p("pic vga"), Err("unknown device vga".into()));
        assert_eq!(p("pic pic"), Err("device pic named twice".into()));
        assert_eq!(p("rtc rtc=5"), Err("device rtc named twice".into()));
        assert_eq!(p("pit"), Err("pit, uart, com2 and kbd need the pic".into()));
        assert_eq!(p("pic=1"), Err("device pic takes no value".into()));
        assert_eq!(p("rtc=x"), Err("bad rtc time x".into()));
        assert_eq!(p("it's"), Err("unknown device 'it''s'".into()));
    }

    #[test]
    fn claims_only_the_chosen() {
        let k = KDev::new(p("pic uart").unwrap());
        assert_eq!(k.claims(0x20), Some(Dev::Pic));
        assert_eq!(k.claims(0x3fd), Some(Dev::Com(0)));
        assert_eq!(k.claims(0x40), None);
        assert_eq!(k.claims(0x2f8), None);
        assert_eq!(k.claims(0xf4), None);
        let k = KDev::new(p("pic com2").unwrap());
        assert_eq!(k.claims(0x2f8), Some(Dev::Com(1)));
        assert_eq!(k.claims(0x2ff), Some(Dev::Com(1)));
        assert_eq!(k.claims(0x3f8), None);
        assert_eq!(k.claims(0xcf8), None);
    }
}
