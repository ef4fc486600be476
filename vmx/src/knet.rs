//! `-n` links (TAP, unix, tcp) through the hypervisor's Ethernet switch
//! (devvmx/DEVIATIONS.md, "Extension: virtio-net in the kernel" and `switch/clone`): the
//! guest's card is the kernel's (`pci net MAC`), and the tool opens a client port on the
//! switch (`switch/clone`) and pumps frames between that port and the link: one read of
//! the port always in flight (its frames go to the link as they come), and the link's
//! frames written to the port in batches (whatever arrived while the last write was out).
//! The switch forwards to the port only what is meant for the link (broadcast, unknown
//! unicast, addresses learned behind the link): traffic between guests, or between a
//! guest and the hypervisor's LAN, never crosses the client's connection. Where the
//! hypervisor has no such cards or switch (9front's #X, an older kernel) the same
//! [`Card`]s become the tool's own virtio-net ([`Card::tool`]).

use crate::run::Event;
use crate::virtio::net::{FrameSource, Link, Net};
use crate::vmfs::{Counter, Vmfs};
use netswitch::qfile;
use ninep_client::{om, Client, File};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, Sender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The links' row in the run's statistics ([`crate::run::Stats`]): frames pumped, and
/// the reads and writes of the switch ports.
pub const ROW: &str = "(netlink)";

/// Frames from a link waiting for the next write to the port, at most (more are dropped
/// and counted, as a NIC's full ring drops them).
pub const BACKLOG: usize = 256;

/// How often a pump thread looks whether the run has ended.
const TICK: Duration = Duration::from_millis(100);

/// A `-n` card on a link: its MAC, the link to send on, and the link's frames.
pub struct Card {
    pub mac: [u8; 6],
    pub link: Box<dyn Link>,
    pub source: FrameSource,
    /// The link as the user wrote it (`unix!/PATH`...), for messages.
    pub name: String,
}

impl Card {
    /// The same card as the tool's own virtio-net.
    pub fn tool(self) -> (Net, FrameSource) {
        (Net::new(self.mac, self.link), self.source)
    }
}

/// A group address, which no card may have: the probe's (`pci net` of it answers with
/// the switch's refusal where the hypervisor has in-kernel cards).
const PROBE_MAC: &str = "01:00:00:00:00:00";

/// Whether the hypervisor serves cards on a switch itself: asks for a card with a group
/// address, which a hypervisor with the extension refuses as such and one without it as
/// a bad argument or an unknown message. Needs the in-kernel PCI bus. Err: its answer.
pub fn probe(vm: &mut dyn Vmfs) -> Result<(), String> {
    let want = netswitch::Error::BadAddress.to_string();
    match vm.ctl(&format!("pci net {PROBE_MAC}")) {
        Err(e) if e.ends_with(&want) => Ok(()),
        Err(e) => Err(e),
        Ok(()) => Err(format!("pci net {PROBE_MAC}: accepted a group address")),
    }
}

/// What the links cost, for --stats.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Costs {
    /// Frames from the switch to the links, and from the links to the switch.
    pub to_links: u64,
    pub from_links: u64,
    /// Frames from the links dropped here: the backlog was full, or a length no
    /// Ethernet frame has (the switch takes 14 to 1518 bytes).
    pub dropped: u64,
    /// Reads and writes of the ports.
    pub trips: u64,
}

/// What the pumps did, shared with their threads.
#[derive(Clone, Default)]
struct Tally {
    to_links: Arc<AtomicU64>,
    from_links: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    trips: Counter,
}

/// The switch ports opened for the cards, before the cards exist.
pub struct Ports {
    files: Vec<File>,
}

impl Ports {
    /// One client port per card (`switch/clone`), after checking that the hypervisor
    /// serves cards on its switch. Err: why the cards stay the tool's.
    pub fn open(
        vm: &mut dyn Vmfs,
        client: &Client,
        kernel_pci: bool,
        cards: usize,
    ) -> Result<Ports, String> {
        if !kernel_pci {
            return Err("the hypervisor serves no PCI bus of its own (no pci extension)".into());
        }
        probe(vm).map_err(|e| format!("no in-kernel cards (pci net: {e})"))?;
        let files = (0..cards)
            .map(|_| {
                client
                    .open("switch/clone", om::RDWR)
                    .map_err(|e| format!("no switch port (switch/clone: {e})"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Ports { files })
    }

    /// The cards on the VM's in-kernel bus (`pci net MAC`, in order), each port's pump
    /// started on its card's link; notes (a link gone) go to `events` as the run's.
    pub fn attach(
        self,
        vm: &mut dyn Vmfs,
        cards: Vec<Card>,
        events: Sender<Event>,
    ) -> Result<Pumps, String> {
        for c in &cards {
            let mac = netswitch::Mac(c.mac);
            vm.ctl(&format!("pci net {mac}"))
                .map_err(|e| format!("-n {}: pci net {mac}: {e}", c.name))?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Tally::default();
        let mut threads = Vec::new();
        for (file, card) in self.files.into_iter().zip(cards) {
            threads.extend(pump(file, card, &stop, &tally, &events));
        }
        Ok(Pumps {
            stop,
            tally,
            threads,
        })
    }
}

/// The running pumps.
pub struct Pumps {
    stop: Arc<AtomicBool>,
    tally: Tally,
    threads: Vec<JoinHandle<()>>,
}

impl Pumps {
    /// Stops the pumps (the pending reads flushed, the ports clunked: they leave the
    /// switch) and says what they did.
    pub fn finish(mut self) -> Costs {
        self.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.threads) {
            let _ = t.join();
        }
        let t = &self.tally;
        Costs {
            to_links: t.to_links.load(Ordering::Relaxed),
            from_links: t.from_links.load(Ordering::Relaxed),
            dropped: t.dropped.load(Ordering::Relaxed),
            trips: t.trips.get(),
        }
    }
}

impl Drop for Pumps {
    /// Pumps dropped unfinished (a run cut short) stop all the same.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts `card`'s pump on port `file`: the link's reader (into a bounded backlog, never
/// joined: it ends with the link), the port's writer and the port's reader (both joined
/// by [`Pumps::finish`]; the last to end clunks the port).
fn pump(
    file: File,
    card: Card,
    stop: &Arc<AtomicBool>,
    tally: &Tally,
    events: &Sender<Event>,
) -> [JoinHandle<()>; 2] {
    let Card {
        link,
        mut source,
        name,
        ..
    } = card;
    let file = Arc::new(file);
    let (tx, rx) = sync_channel::<Vec<u8>>(BACKLOG);
    std::thread::spawn({
        let (tally, events, name) = (tally.clone(), events.clone(), name.clone());
        move || loop {
            let why = match source() {
                Ok(Some(f)) if !fits(&f) => {
                    tally.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Ok(Some(f)) => match tx.try_send(f) {
                    Ok(()) => continue,
                    Err(TrySendError::Full(_)) => {
                        tally.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    // The run is over.
                    Err(TrySendError::Disconnected(_)) => return,
                },
                Ok(None) => "the peer closed the link".to_string(),
                Err(e) => e.to_string(),
            };
            let _ = events.send(Event::Note(format!("-n {name}: link down: {why}")));
            return;
        }
    });
    let writer = std::thread::spawn({
        let (file, stop, tally, events, name) = (
            file.clone(),
            stop.clone(),
            tally.clone(),
            events.clone(),
            name.clone(),
        );
        move || {
            if let Err(e) = write_port(&file, rx, &stop, &tally) {
                let _ = events.send(Event::Note(format!("-n {name}: switch port: {e}")));
            }
        }
    });
    let reader = std::thread::spawn({
        let (stop, tally, events) = (stop.clone(), tally.clone(), events.clone());
        move || {
            if let Err(e) = read_port(&file, link, &stop, &tally) {
                let _ = events.send(Event::Note(format!("-n {name}: switch port: {e}")));
            }
        }
    });
    [writer, reader]
}

/// Whether the switch takes a frame of this length.
fn fits(f: &[u8]) -> bool {
    (netswitch::HEADER_LEN..=netswitch::MAX_FRAME).contains(&f.len())
}

/// The most a read or write of `file` carries.
fn max_io(file: &File) -> usize {
    let c = file.fid().client().max_io();
    let n = match file.iounit() {
        0 => c,
        n => n.min(c),
    };
    n as usize
}

/// The switch's frames for the link: a read always in flight, its frames sent to the
/// link once the next one is out. Ends when `stop` is set (the read flushed) or on an
/// error (the port's or the link's).
fn read_port(
    file: &File,
    mut link: Box<dyn Link>,
    stop: &AtomicBool,
    tally: &Tally,
) -> Result<(), String> {
    let client = file.fid().client().clone();
    let count = max_io(file) as u32;
    let start = |tally: &Tally| {
        tally.trips.add(1);
        client.start_read(file, 0, count).map_err(|e| e.to_string())
    };
    let mut pending = start(tally)?;
    loop {
        let got = match pending.wait_timeout(TICK) {
            Ok(Some(b)) => b,
            Ok(None) if stop.load(Ordering::Relaxed) => {
                let _ = pending.flush();
                return Ok(());
            }
            Ok(None) => continue,
            Err(e) => return Err(e.to_string()),
        };
        pending = start(tally)?;
        let frames = qfile::decode(&got).map_err(|e| e.to_string())?;
        for f in &frames {
            link.send(f)
                .map_err(|e| format!("sending to the link: {e}"))?;
        }
        tally
            .to_links
            .fetch_add(frames.len() as u64, Ordering::Relaxed);
    }
}

/// The link's frames into the switch: each write carries every frame waiting (up to a
/// write's size), so a burst from the link costs a few writes, not one per frame. Ends
/// when `stop` is set or the backlog's sender is gone, or on the port's error.
fn write_port(
    file: &File,
    rx: Receiver<Vec<u8>>,
    stop: &AtomicBool,
    tally: &Tally,
) -> Result<(), String> {
    let max = max_io(file);
    let mut next = None;
    loop {
        let first = match next.take() {
            Some(f) => f,
            None => match rx.recv_timeout(TICK) {
                Ok(f) => f,
                Err(RecvTimeoutError::Timeout) if !stop.load(Ordering::Relaxed) => continue,
                Err(_) => return Ok(()),
            },
        };
        let (b, n, rest) = batch(first, || rx.try_recv().ok(), max);
        next = rest;
        tally.trips.add(1);
        file.write_at(0, &b).map_err(|e| e.to_string())?;
        tally.from_links.fetch_add(n, Ordering::Relaxed);
    }
}

/// One write's worth of frames in the queue file's form (`frame N\n` and N bytes each):
/// `first`, then those `more` gives while they fit in `max` bytes. Returns the bytes,
/// the frames in them, and a frame taken that did not fit (the next write's first).
pub fn batch(
    first: Vec<u8>,
    mut more: impl FnMut() -> Option<Vec<u8>>,
    max: usize,
) -> (Vec<u8>, u64, Option<Vec<u8>>) {
    let mut out = Vec::with_capacity(max.min(1 << 16));
    qfile::encode(&first, &mut out);
    let mut n = 1;
    while let Some(f) = more() {
        if out.len() + qfile::encoded_len(f.len()) > max {
            return (out, n, Some(f));
        }
        qfile::encode(&f, &mut out);
        n += 1;
    }
    (out, n, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_fill_a_write_and_keep_the_rest() {
        let mut q: std::collections::VecDeque<Vec<u8>> = (1..=5u8).map(|i| vec![i; 60]).collect();
        // Two frames' worth and a bit: "frame 60\n" + 60 bytes each.
        let max = 2 * 69 + 10;
        let (b, n, rest) = batch(q.pop_front().unwrap(), || q.pop_front(), max);
        assert_eq!((n, b.len()), (2, 138));
        assert_eq!(qfile::decode(&b).unwrap(), vec![&[1u8; 60][..], &[2; 60]]);
        assert_eq!(rest, Some(vec![3; 60]));
        let (b, n, rest) = batch(rest.unwrap(), || q.pop_front(), 1 << 16);
        assert_eq!((n, rest), (3, None));
        assert!(b.starts_with(b"frame 60\n\x03"));
        // A frame alone always goes, whatever the size (the read count holds one).
        let (b, n, _) = batch(vec![7; 1518], || None, 100);
        assert_eq!((n, b.len()), (1, qfile::encoded_len(1518)));
    }

    #[test]
    fn only_ethernet_lengths_reach_the_switch() {
        assert!(!fits(&[0; 13]));
        assert!(fits(&[0; 14]));
        assert!(fits(&[0; 1518]));
        assert!(!fits(&[0; 1519]));
    }

    /// The probe tells the extension's refusal from anything else.
    #[test]
    fn the_probe_reads_the_switchs_refusal() {
        struct Answer(Result<(), String>, Vec<String>);
        impl Vmfs for Answer {
            fn ctl(&mut self, cmd: &str) -> Result<(), String> {
                self.1.push(cmd.into());
                self.0.clone()
            }
            fn read_regs(&mut self) -> Result<String, String> {
                Err("none".into())
            }
            fn write_regs(&mut self, _: &str) -> Result<(), String> {
                Err("none".into())
            }
            fn read_mem(&mut self, _: u64, _: usize) -> Result<Vec<u8>, String> {
                Err("none".into())
            }
            fn write_mem(&mut self, _: u64, _: &[u8]) -> Result<(), String> {
                Err("none".into())
            }
            fn round_trips(&self) -> u64 {
                0
            }
        }
        let mut a = Answer(Err("bad mac address for the port".into()), vec![]);
        assert_eq!(probe(&mut a), Ok(()));
        assert_eq!(a.1, ["pci net 01:00:00:00:00:00"]);
        for refusal in [
            "bad arg in system call",
            "no switch",
            "unknown control message",
        ] {
            let mut a = Answer(Err(refusal.into()), vec![]);
            assert_eq!(probe(&mut a), Err(refusal.into()));
        }
    }
}
