//! A learning Ethernet switch for the hypervisor's virtual networks, pure and host-tested.
//!
//! Its ports are of four kinds ([`KINDS`]): a VM's network card, the kernel's own network
//! interface (smoltcp), the hypervisor's NIC (the uplink: a guest appears on the LAN with
//! its own MAC, the NIC receiving all frames) and a queue file a client serves (the vmx
//! tool's `-n` links). A port either owns one address (a card, the kernel's interface) or
//! learns the addresses behind it (the uplink, a queue file). The rules:
//!
//! - a frame shorter than the Ethernet header, longer than [`MAX_FRAME`] or with a group
//!   source address is dropped (`bad`);
//! - a frame from a port that owns an address must carry it as its source, and no frame
//!   may carry as its source an address another port owns (`spoof`): a guest cannot pose
//!   as another guest or as the hypervisor, nor a LAN host as either;
//! - a group destination (broadcast, multicast) reaches every other port;
//! - a unicast destination that a port owns reaches only that port, one learned on a
//!   port reaches that port, and an unknown one reaches every other *learning* port: a
//!   port that owns an address only ever receives unicast for that address, so no guest
//!   sees unicast meant for the hypervisor's interface, another guest or the LAN;
//! - every port's queue holds at most a fixed number of frames (each at most
//!   [`MAX_FRAME`] bytes); once it is half full, a port that already has its fair share
//!   of it (the bound divided among the other ports) has no more room there: a frame for
//!   a queue with no room for its sender is dropped and counted there (`full`). One port
//!   flooding another (a guest broadcasting as fast as its CPU goes) holds at most half
//!   of that port's queue, or its share, and cannot crowd out the other ports' frames;
//! - the learned table is bounded and ages ([`table::Table`]).
//!
//! The caller moves frames: [`Switch::input`] takes one from a port, [`Switch::pop`]
//! gives a port its next. Time is the caller's clock, in whatever unit the ageing time
//! was given in.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod frame;
pub mod qfile;
pub mod table;

pub use frame::{Mac, HEADER_LEN, MAX_FRAME};

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;

/// A port's number in its switch.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct PortId(pub u16);

/// What sits behind a port.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// A VM's network card.
    Guest,
    /// The kernel's own network interface (smoltcp).
    Host,
    /// The hypervisor's NIC, bridged onto its LAN.
    Uplink,
    /// A queue file a client serves (a link of the client's: TAP, socket).
    Client,
}

/// One row of [`KINDS`].
#[derive(Debug)]
pub struct KindInfo {
    pub kind: Kind,
    /// The word for it in the status text.
    pub name: &'static str,
    /// The port owns one address (given when it is added); otherwise it learns.
    pub owns_address: bool,
}

/// The port kinds and what each does.
pub const KINDS: &[KindInfo] = &[
    KindInfo {
        kind: Kind::Guest,
        name: "guest",
        owns_address: true,
    },
    KindInfo {
        kind: Kind::Host,
        name: "host",
        owns_address: true,
    },
    KindInfo {
        kind: Kind::Uplink,
        name: "uplink",
        owns_address: false,
    },
    KindInfo {
        kind: Kind::Client,
        name: "client",
        owns_address: false,
    },
];

impl Kind {
    pub fn info(self) -> &'static KindInfo {
        KINDS.iter().find(|i| i.kind == self).unwrap_or(&KINDS[0])
    }
}

/// A port's counters.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Counters {
    /// Frames taken in from the port.
    pub input: u64,
    /// Frames queued for the port.
    pub output: u64,
    /// Frames for the port dropped: its queue was full.
    pub full: u64,
    /// Frames from the port dropped: a source address not its own.
    pub spoof: u64,
    /// Frames from the port dropped: too short, too long, or a group source.
    pub bad: u64,
}

/// Reads one counter.
pub type Counter = fn(&Counters) -> u64;

/// The counters as the status text names them, in its order.
pub const COUNTERS: &[(&str, Counter)] = &[
    ("in", |c| c.input),
    ("out", |c| c.output),
    ("full", |c| c.full),
    ("spoof", |c| c.spoof),
    ("bad", |c| c.bad),
];

/// Why a port could not be added or changed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Error {
    /// Every port is taken.
    NoRoom,
    /// No such port.
    NoPort,
    /// Another port owns that address.
    AddressInUse,
    /// A port of this kind owns an address and none was given (or one was given to a
    /// kind that learns, or the address is a group address).
    BadAddress,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::NoRoom => "switch has no free port",
            Error::NoPort => "no such switch port",
            Error::AddressInUse => "mac address in use on the switch",
            Error::BadAddress => "bad mac address for the port",
        })
    }
}

/// What became of a frame given to [`Switch::input`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    /// Queued for this many ports (0: it had nowhere to go, or every queue was full).
    Forwarded(usize),
    /// Dropped at the input, counted as `spoof`.
    Spoofed,
    /// Dropped at the input, counted as `bad`.
    Bad,
}

/// The switch's sizes.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Ports, at most.
    pub ports: u16,
    /// Frames each port's queue holds, at most.
    pub queue: usize,
    /// Learned addresses, at most.
    pub table: usize,
    /// How long a learned address stays good after it was last seen.
    pub age: u64,
}

impl Default for Config {
    /// 16 ports of 256 frames (at most 6 MiB queued in all), 1024 addresses, 300 s
    /// (802.1D's default) in milliseconds.
    fn default() -> Config {
        Config {
            ports: 16,
            queue: 256,
            table: 1024,
            age: 300_000,
        }
    }
}

#[derive(Debug)]
struct Port {
    kind: Kind,
    mac: Option<Mac>,
    /// Each frame with the port it came from.
    queue: VecDeque<(PortId, Vec<u8>)>,
    /// How many of the queued frames came from each port, by its number.
    held: Vec<u16>,
    counters: Counters,
}

impl Port {
    /// Whether the queue, at most `limit` frames, has room for a frame from `from` when
    /// each port's fair share of it is `share`.
    fn room(&self, from: PortId, limit: usize, share: usize) -> bool {
        let held = self.held.get(usize::from(from.0)).copied().unwrap_or(0);
        let len = self.queue.len();
        len < limit && (len < limit.div_ceil(2) || usize::from(held) < share)
    }

    fn push(&mut self, from: PortId, frame: &[u8]) {
        if let Some(h) = self.held.get_mut(usize::from(from.0)) {
            *h = h.saturating_add(1);
        }
        self.queue.push_back((from, frame.to_vec()));
    }

    fn pop(&mut self) -> Option<Vec<u8>> {
        let (from, f) = self.queue.pop_front()?;
        if let Some(h) = self.held.get_mut(usize::from(from.0)) {
            *h = h.saturating_sub(1);
        }
        Some(f)
    }
}

/// One switch: its ports and its learned table.
#[derive(Debug)]
pub struct Switch {
    ports: Vec<Option<Port>>,
    table: table::Table,
    queue: usize,
}

impl Switch {
    pub fn new(c: Config) -> Switch {
        let mut ports = Vec::with_capacity(usize::from(c.ports));
        ports.resize_with(usize::from(c.ports), || None);
        Switch {
            ports,
            table: table::Table::new(c.table, c.age),
            queue: c.queue.max(1),
        }
    }

    /// Adds a port of `kind`, with its address if the kind owns one.
    pub fn add(&mut self, kind: Kind, mac: Option<Mac>) -> Result<PortId, Error> {
        self.check_address(kind, mac, None)?;
        let i = self
            .ports
            .iter()
            .position(Option::is_none)
            .ok_or(Error::NoRoom)?;
        if let Some(m) = mac {
            self.table.forget(m);
        }
        let held = alloc::vec![0; self.ports.len()];
        self.ports[i] = Some(Port {
            kind,
            mac,
            queue: VecDeque::new(),
            held,
            counters: Counters::default(),
        });
        Ok(PortId(i as u16))
    }

    fn check_address(&self, kind: Kind, mac: Option<Mac>, me: Option<PortId>) -> Result<(), Error> {
        match mac {
            Some(m) if !kind.info().owns_address || m.is_group() => Err(Error::BadAddress),
            None if kind.info().owns_address => Err(Error::BadAddress),
            Some(m) if self.owner(m).is_some_and(|o| Some(o) != me) => Err(Error::AddressInUse),
            _ => Ok(()),
        }
    }

    /// Removes a port, its queue and what was learned on it.
    pub fn remove(&mut self, p: PortId) -> Result<(), Error> {
        let slot = self.ports.get_mut(usize::from(p.0)).ok_or(Error::NoPort)?;
        slot.take().ok_or(Error::NoPort)?;
        self.table.forget_port(p);
        Ok(())
    }

    /// A port that owns an address takes a new one (a guest wrote its card's MAC).
    pub fn set_mac(&mut self, p: PortId, mac: Mac) -> Result<(), Error> {
        let kind = self.port(p).ok_or(Error::NoPort)?.kind;
        self.check_address(kind, Some(mac), Some(p))?;
        self.table.forget(mac);
        if let Some(port) = self.port_mut(p) {
            port.mac = Some(mac);
        }
        Ok(())
    }

    fn port(&self, p: PortId) -> Option<&Port> {
        self.ports.get(usize::from(p.0)).and_then(Option::as_ref)
    }

    fn port_mut(&mut self, p: PortId) -> Option<&mut Port> {
        self.ports
            .get_mut(usize::from(p.0))
            .and_then(Option::as_mut)
    }

    /// The port that owns `mac`.
    fn owner(&self, mac: Mac) -> Option<PortId> {
        self.live()
            .find(|(_, p)| p.mac == Some(mac))
            .map(|(id, _)| id)
    }

    fn live(&self) -> impl Iterator<Item = (PortId, &Port)> {
        self.ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((PortId(i as u16), p.as_ref()?)))
    }

    /// Takes a frame from port `from` at time `now` and queues it where it goes.
    pub fn input(&mut self, from: PortId, frame: &[u8], now: u64) -> Result<Verdict, Error> {
        let port = self.port(from).ok_or(Error::NoPort)?;
        let own = port.mac;
        let learns = !port.kind.info().owns_address;
        let verdict = match frame::addresses(frame) {
            None => Some(Verdict::Bad),
            Some((_, src)) if src.is_group() => Some(Verdict::Bad),
            Some((_, src)) => match own {
                Some(m) => (src != m).then_some(Verdict::Spoofed),
                None => self.owner(src).is_some().then_some(Verdict::Spoofed),
            },
        };
        let c = &mut self.port_mut(from).ok_or(Error::NoPort)?.counters;
        match verdict {
            Some(Verdict::Bad) => c.bad += 1,
            Some(Verdict::Spoofed) => c.spoof += 1,
            _ => c.input += 1,
        }
        if let Some(v) = verdict {
            return Ok(v);
        }
        let Some((dst, src)) = frame::addresses(frame) else {
            return Ok(Verdict::Bad);
        };
        if learns {
            self.table.learn(src, from, now);
        }
        let one = if dst.is_group() {
            None
        } else {
            self.owner(dst).or_else(|| self.table.lookup(dst, now))
        };
        let targets: Vec<PortId> = match one {
            Some(p) if p == from => Vec::new(),
            Some(p) => alloc::vec![p],
            None => self
                .live()
                .filter(|&(id, p)| id != from && (dst.is_group() || !p.kind.info().owns_address))
                .map(|(id, _)| id)
                .collect(),
        };
        let limit = self.queue;
        let share = self.share();
        let mut queued = 0;
        for t in targets {
            if let Some(p) = self.port_mut(t) {
                if p.room(from, limit, share) {
                    p.push(from, frame);
                    p.counters.output += 1;
                    queued += 1;
                } else {
                    p.counters.full += 1;
                }
            }
        }
        Ok(Verdict::Forwarded(queued))
    }

    /// Each port's fair share of another's queue: the bound divided among the other
    /// ports (at least one frame).
    fn share(&self) -> usize {
        let others = self.live().count().saturating_sub(1).max(1);
        (self.queue / others).max(1)
    }

    /// Whether port `to`'s queue has room for a frame from port `from` now.
    pub fn room(&self, to: PortId, from: PortId) -> bool {
        self.port(to)
            .is_some_and(|p| p.room(from, self.queue, self.share()))
    }

    /// The next frame queued for port `p`.
    pub fn pop(&mut self, p: PortId) -> Option<Vec<u8>> {
        self.port_mut(p)?.pop()
    }

    /// The length of the next frame queued for port `p`.
    pub fn peek_len(&self, p: PortId) -> Option<usize> {
        self.port(p)?.queue.front().map(|(_, f)| f.len())
    }

    /// Frames queued for port `p`.
    pub fn queued(&self, p: PortId) -> usize {
        self.port(p).map_or(0, |p| p.queue.len())
    }

    /// Drops the frames queued for port `p` (its device was reset).
    pub fn flush(&mut self, p: PortId) {
        if let Some(p) = self.port_mut(p) {
            p.queue.clear();
            p.held.fill(0);
        }
    }

    /// Port `p`'s counters.
    pub fn counters(&self, p: PortId) -> Option<Counters> {
        self.port(p).map(|p| p.counters)
    }

    /// Port `p`'s kind and address.
    pub fn kind(&self, p: PortId) -> Option<(Kind, Option<Mac>)> {
        self.port(p).map(|p| (p.kind, p.mac))
    }

    /// The most frames a port's queue holds.
    pub fn queue_limit(&self) -> usize {
        self.queue
    }

    /// The learned table.
    pub fn table(&self) -> &table::Table {
        &self.table
    }

    /// Drops the learned addresses older than the ageing time (lookups ignore them
    /// anyway; this frees their room).
    pub fn expire(&mut self, now: u64) {
        self.table.expire(now);
    }

    /// The status text: one line per port, `port N KIND MAC|- in N out N full N spoof N
    /// bad N queued N`, then `table N/CAP evicted N`.
    pub fn status(&self) -> Status<'_> {
        Status(self)
    }
}

/// [`Switch::status`]'s text.
pub struct Status<'a>(&'a Switch);

impl fmt::Display for Status<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (id, p) in self.0.live() {
            write!(f, "port {} {} ", id.0, p.kind.info().name)?;
            match p.mac {
                Some(m) => write!(f, "{m}")?,
                None => f.write_str("-")?,
            }
            for (name, get) in COUNTERS {
                write!(f, " {name} {}", get(&p.counters))?;
            }
            writeln!(f, " queued {}", p.queue.len())?;
        }
        let t = &self.0.table;
        writeln!(
            f,
            "table {}/{} evicted {}",
            t.len(),
            t.capacity(),
            t.evicted
        )
    }
}

#[cfg(test)]
mod tests;
