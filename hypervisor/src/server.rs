//! The main loop: one 9P connection per link over one tree. Every step is non-blocking, so a
//! slow client (or a full link) never holds up another link. The UART, each virtio port and
//! each TCP connection are alike here: a [`Link`] and a [`Conn`].

use crate::transport::{Event, Link, Listener};
use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::net::IpAddr;
use devvmx::hw::Hw;
use devvmx::throttle::{Strikes, Throttle};
use devvmx::{Facts, Namespace};
use ninep::link::Conn;
use ninep::Limits;

struct Port<H: Hw> {
    name: String,
    link: Box<dyn Link>,
    conn: Conn<Namespace<H>>,
    /// When the peer sent its last byte (a TCP FIN: it may still read). What it sent is
    /// answered and sent before the session ends; requests that would wait end with it.
    finished: Option<u64>,
    gate: Gate,
    /// Served at the engine's largest msize (one of [`BULK_LINKS`]).
    bulk: bool,
}

/// Links served at the engine's largest msize at once. Such a session may hold about
/// 2.3 MiB of heap (hypervisor/README.md, Memory), so these take about 19 MiB of a
/// 64 MiB heap; later links get [`SMALL_MSIZE`] until one of them goes, and the 64 TCP
/// connections `net` allows then hold about 40 MiB at most, not 150.
pub const BULK_LINKS: usize = 8;

/// The largest msize of the links beyond [`BULK_LINKS`]: 64 KiB of data.
pub const SMALL_MSIZE: u32 = 64 * 1024 + protocol::IOHDRSZ as u32;

/// What a connection's wrong owner secrets cost it.
#[derive(Default)]
struct Gate {
    /// The peer's address, for counting wrong secrets.
    peer: Option<IpAddr>,
    /// Wrong secrets on this connection.
    strikes: Strikes,
    /// When the held attach reply goes out (milliseconds), once the throttle has said.
    release_at: Option<u64>,
}

/// A partial message with no byte for this long is a departed client's remains (a serial
/// line has no hang-up signal, and an emulator may drop a client's last bytes): the
/// session starts anew, so the next client's Tversion is not swallowed by it.
const STALE_TICKS: u64 = 2 * crate::arch::timer::HZ as u64;

/// How long a finished peer's replies may take to leave before its session ends anyway
/// (a half-closed client that never reads must not hold its session forever).
const LINGER_TICKS: u64 = 10 * crate::arch::timer::HZ as u64;

/// A link that sends back what it receives: the raw transport's rate, for benchmarks.
struct Echo {
    link: Box<dyn Link>,
    /// Received bytes not yet sent back.
    pending: Vec<u8>,
}

/// Serves the #X device on any VT-x layer: the kernel's `KernelHw`, and `TestHw` in the
/// host tests (hypervisor/tests/server.rs).
pub struct Server<H: Hw> {
    tree: Namespace<H>,
    /// What the tree is told about the host (`cpus`, the secret: as the kernel made it):
    /// sessions and the network kept up to date here, handed over whole when they change.
    facts: Facts,
    ports: Vec<Port<H>>,
    echoes: Vec<Echo>,
    listeners: Vec<Box<dyn Listener>>,
    /// Wrong owner secrets by source address: what they cost.
    throttle: Throttle,
    /// The throttle's clock, in milliseconds.
    millis: fn() -> u64,
    /// Links (by name) that echo instead of serving 9P.
    echo_names: Vec<String>,
    /// When the switch's status lines were last made (by `millis`): at most once per
    /// timer tick, not on every pass.
    switch_at: Option<u64>,
    buf: Vec<u8>,
    next_id: u32,
    limits: Limits,
}

impl Gate {
    /// A held owner's attach on `conn` (link `name`): asks the throttle once when its
    /// reply may go (logging a wrong secret by address and count, never its text), and
    /// releases it at that time (`ms`). True if a reply was released.
    fn step<T: ninep::Tree>(
        &mut self,
        name: &str,
        conn: &mut Conn<T>,
        throttle: &mut Throttle,
        ms: u64,
    ) -> bool {
        let Some(ok) = conn.session_ref().held() else {
            self.release_at = None;
            return false;
        };
        let at = match self.release_at {
            Some(at) => at,
            None => {
                let v = throttle.verdict(&mut self.strikes, self.peer, ok, ms);
                if v.worth_logging() {
                    let from = self
                        .peer
                        .map_or_else(|| String::from("?"), |a| a.to_string());
                    log::warn!(
                        "{name}: wrong secret for the owner, failure {} from {from}: answered in {} ms",
                        v.failures,
                        v.at - ms
                    );
                }
                *self.release_at.insert(v.at)
            }
        };
        if ms < at {
            return false;
        }
        conn.session().release_held();
        self.release_at = None;
        true
    }
}

impl<H: Hw> Server<H> {
    pub fn new(tree: Namespace<H>, echo_names: Vec<String>) -> Self {
        Server {
            facts: tree.facts().clone(),
            tree,
            ports: Vec::new(),
            echoes: Vec::new(),
            listeners: Vec::new(),
            throttle: Throttle::new(),
            // The kernel's clock in milliseconds (the tick count), the throttle's unit.
            millis: crate::arch::timer::millis,
            echo_names,
            switch_at: None,
            buf: vec![0; 16 * 1024],
            next_id: 1,
            limits: Limits::default(),
        }
    }

    /// Replaces the throttle's clock (milliseconds; the kernel's tick count by default):
    /// host tests drive their own.
    pub fn set_clock(&mut self, millis: fn() -> u64) {
        self.millis = millis;
    }

    /// Serves a new link with a session of its own (or echoes it, if `echo=` names it).
    pub fn add(&mut self, link: Box<dyn Link>) {
        if link.echo() || self.echo_names.iter().any(|e| e == link.name()) {
            log::info!("echoing bytes on {}", link.name());
            self.echoes.push(Echo {
                link,
                pending: Vec::new(),
            });
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        log::info!("serving 9P on {} (session {id})", link.name());
        // A claimed uname is not proof on a network link.
        self.facts.owners.set_network(id, link.network());
        self.tree.set_facts(self.facts.clone());
        let bulk = self.ports.iter().filter(|p| p.bulk).count() < BULK_LINKS;
        let limits = Limits {
            max_msize: if bulk {
                self.limits.max_msize
            } else {
                SMALL_MSIZE.min(self.limits.max_msize)
            },
            ..self.limits
        };
        let mut conn = Conn::new(
            id,
            limits,
            link.kind(),
            STALE_TICKS,
            crate::arch::timer::ticks(),
        );
        // The owner's attaches are answered when the throttle says.
        conn.session().set_gate(link.network());
        let name = link.name().into();
        self.ports.push(Port {
            name,
            gate: Gate {
                peer: link.peer(),
                ..Gate::default()
            },
            link,
            conn,
            finished: None,
            bulk,
        });
    }

    /// Serves every link the listener accepts.
    pub fn add_listener(&mut self, l: Box<dyn Listener>) {
        self.listeners.push(l);
    }

    /// Moves the listeners' stacks; serves new connections.
    fn listen(&mut self) -> bool {
        let mut busy = false;
        for i in 0..self.listeners.len() {
            busy |= self.listeners[i].poll();
            while let Some(link) = self.listeners[i].accept() {
                self.add(link);
                busy = true;
            }
        }
        let addresses: Vec<String> = self.listeners.iter().filter_map(|l| l.address()).collect();
        let addresses = (!addresses.is_empty()).then(|| addresses.join(" "));
        if addresses != self.facts.network {
            self.facts.network = addresses;
            self.tree.set_facts(self.facts.clone());
        }
        let now = (self.millis)();
        if self.switch_at != Some(now) {
            self.switch_at = Some(now);
            let switch = self.listeners.iter().find_map(|l| l.switch_status());
            if switch != self.facts.switch {
                self.facts.switch = switch;
                self.tree.set_facts(self.facts.clone());
            }
        }
        busy
    }

    /// One pass over every link; true if anything moved.
    pub fn step(&mut self) -> bool {
        let mut busy = self.listen();
        self.echoes.retain_mut(|e| {
            match e.link.event() {
                Some(Event::Closed) => return false,
                Some(Event::Reset(_)) => {
                    log::info!("{}: peer reset", e.link.name());
                    e.pending.clear();
                }
                None => {}
            }
            if e.pending.len() < self.buf.len() {
                let n = e.link.recv(&mut self.buf);
                e.pending.extend_from_slice(&self.buf[..n]);
                busy |= n > 0;
            }
            if !e.pending.is_empty() {
                let n = e.link.send(&e.pending);
                e.pending.drain(..n);
                busy |= n > 0;
            }
            true
        });
        let now = crate::arch::timer::ticks();
        let ms = (self.millis)();
        let tree = &mut self.tree;
        let facts = &mut self.facts;
        let buf = &mut self.buf;
        let throttle = &mut self.throttle;
        self.ports.retain_mut(|p| {
            let name = &p.name;
            let id = p.conn.session_ref().id();
            if p.finished.is_none() {
                match p.link.event() {
                    Some(Event::Reset(how)) => {
                        log::info!("{name}: peer reset; new session");
                        p.conn.reset(tree, how);
                        p.gate.release_at = None;
                    }
                    Some(Event::Closed) => p.finished = Some(now),
                    None => {}
                }
            }
            let room = p.conn.input_space().min(buf.len());
            if room > 0 && p.finished.is_none() {
                let n = p.link.recv(&mut buf[..room]);
                if n > 0 {
                    p.conn.input(&buf[..n], now);
                    busy = true;
                }
            }
            let ev = p.conn.process(tree, now);
            if ev.versions > 0 {
                log::info!("{name}: Tversion: new 9P session (session {id})");
            }
            if ev.abandoned {
                log::warn!("{name}: partial message abandoned; new session");
            }
            if ev.broken {
                log::warn!("{name}: a frame that can never be valid; hanging up (session {id})");
                p.conn.close(tree);
                facts.owners.set_network(id, false);
                tree.set_facts(facts.clone());
                busy = true;
                return false;
            }
            busy |= p.gate.step(name, &mut p.conn, throttle, ms);
            // A finished peer's session ends once every reply it can have is on its way.
            if let Some(t) = p.finished {
                let s = p.conn.session_ref();
                let sent = s.output().is_empty() && s.held().is_none();
                if sent || now.saturating_sub(t) > LINGER_TICKS {
                    log::info!("{name}: closed (session {id})");
                    p.conn.close(tree);
                    facts.owners.set_network(id, false);
                    tree.set_facts(facts.clone());
                    busy = true;
                    return false;
                }
            }
            true
        });
        let running = self.tree.run_guests();
        let attached = self
            .ports
            .iter()
            .filter(|p| p.conn.session_ref().stats().fids > 0)
            .count();
        if attached != self.facts.sessions {
            self.facts.sessions = attached;
            self.tree.set_facts(self.facts.clone());
        }
        for p in &mut self.ports {
            let s = p.conn.session();
            s.poll(&mut self.tree);
            let out = s.output();
            if !out.is_empty() {
                let n = p.link.send(out);
                if n > 0 {
                    s.consume_output(n);
                    busy = true;
                }
            }
        }
        // Replies just queued go out now rather than at the next step.
        if busy {
            self.listen();
        }
        busy || running
    }

    /// Serves forever, halting when nothing moves until an interrupt.
    pub fn run(&mut self) -> ! {
        loop {
            crate::arch::cpu::clear_wake();
            if !self.step() {
                crate::arch::cpu::idle();
            }
        }
    }
}
