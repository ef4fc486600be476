//! The main loop: one 9P session per link over one tree. Every step is non-blocking, so a
//! slow client (or a full link) never holds up another link.

use crate::transport::Link;
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use ninep::{Limits, Session, Tree};

/// What the loop needs from the served tree beyond 9P.
pub trait Host: Tree {
    /// Runs guests a little; true while a VM is running (the loop must not halt).
    fn run_guests(&mut self) -> bool {
        false
    }
    /// Sessions with a client attached, for the status file.
    fn set_sessions(&mut self, n: usize) {
        let _ = n;
    }
}

/// The #X device on the kernel's VT-x layer.
impl Host for devvmx::Namespace<crate::arch::vmx::KernelHw> {
    fn run_guests(&mut self) -> bool {
        devvmx::Namespace::run_guests(self)
    }
    fn set_sessions(&mut self, n: usize) {
        devvmx::Namespace::set_sessions(self, n)
    }
}

struct Port<T: Tree> {
    name: &'static str,
    link: Box<dyn Link>,
    session: Session<T>,
    /// Timer tick of the last byte received.
    last_rx: u64,
}

/// A partial message with no byte for this long is a departed client's remains (a serial
/// line has no hang-up signal, and an emulator may drop a client's last bytes): the
/// session starts anew, so the next client's Tversion is not swallowed by it.
const STALE_TICKS: u64 = 2 * crate::arch::pit::HZ as u64;

/// A link that sends back what it receives: the raw transport's rate, for benchmarks.
struct Echo {
    name: &'static str,
    link: Box<dyn Link>,
    /// Received bytes not yet sent back.
    pending: Vec<u8>,
}

pub struct Server<T: Host> {
    tree: T,
    ports: Vec<Port<T>>,
    echoes: Vec<Echo>,
    buf: Vec<u8>,
    next_id: u32,
    limits: Limits,
}

impl<T: Host> Server<T> {
    pub fn new(tree: T) -> Self {
        Server {
            tree,
            ports: Vec::new(),
            echoes: Vec::new(),
            buf: vec![0; 16 * 1024],
            next_id: 1,
            limits: Limits::default(),
        }
    }

    /// Serves a new link with a session of its own.
    pub fn add(&mut self, name: &'static str, link: Box<dyn Link>) {
        let id = self.next_id;
        self.next_id += 1;
        log::info!("serving 9P on {name} (session {id})");
        self.ports.push(Port {
            name,
            link,
            session: Session::new(id, self.limits),
            last_rx: crate::arch::pit::ticks(),
        });
    }

    /// Echoes a link's bytes back instead of serving 9P on it.
    pub fn add_echo(&mut self, name: &'static str, link: Box<dyn Link>) {
        log::info!("echoing bytes on {name}");
        self.echoes.push(Echo {
            name,
            link,
            pending: Vec::new(),
        });
    }

    /// One pass over every link; true if anything moved.
    pub fn step(&mut self) -> bool {
        let mut busy = false;
        for e in &mut self.echoes {
            if e.link.take_reset() {
                log::info!("{}: peer reset", e.name);
                e.pending.clear();
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
        }
        let now = crate::arch::pit::ticks();
        // What `input_space` says when the session holds no received bytes.
        let empty = self.limits.max_msize as usize + protocol::HEADER_LEN;
        for p in &mut self.ports {
            if p.link.take_reset() {
                log::info!("{}: peer reset; new session", p.name);
                p.session.reset(&mut self.tree);
            }
            let room = p.session.input_space().min(self.buf.len());
            if room > 0 {
                let n = p.link.recv(&mut self.buf[..room]);
                if n > 0 {
                    p.session.input(&self.buf[..n]);
                    p.last_rx = now;
                    busy = true;
                }
            }
            p.session.process(&mut self.tree);
            // Bytes left after process() with no replies waiting to go out: part of a
            // message. Left alone for STALE_TICKS, its sender is gone.
            if p.session.input_space() < empty
                && p.session.output().is_empty()
                && now.saturating_sub(p.last_rx) > STALE_TICKS
            {
                log::warn!("{}: partial message abandoned; new session", p.name);
                p.session.reset(&mut self.tree);
            }
        }
        let running = self.tree.run_guests();
        let attached = self
            .ports
            .iter()
            .filter(|p| p.session.stats().fids > 0)
            .count();
        self.tree.set_sessions(attached);
        for p in &mut self.ports {
            p.session.poll(&mut self.tree);
            let out = p.session.output();
            if !out.is_empty() {
                let n = p.link.send(out);
                if n > 0 {
                    p.session.consume_output(n);
                    busy = true;
                }
            }
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
