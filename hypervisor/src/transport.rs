//! A byte link a 9P connection runs over: the UART, each virtio-console port, each TCP
//! connection. Links move bytes and report their peer; what the bytes mean (framing,
//! resync, stale partial messages) is `ninep::link`'s business.

use alloc::boxed::Box;
use alloc::string::String;
use core::net::IpAddr;
pub use ninep::link::{Kind, Reset};

/// Something that happened to the link's peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The peer left and perhaps another came (a virtio port closed or reopened): the
    /// session starts anew on the same link.
    Reset(Reset),
    /// The connection is over for good (a TCP close or reset): the link is dropped.
    Closed,
}

/// Non-blocking both ways.
pub trait Link {
    /// Takes up to `buf.len()` received bytes; 0 when none are waiting.
    fn recv(&mut self, buf: &mut [u8]) -> usize;
    /// Queues bytes to send; returns how many were taken (0 when the link is full).
    fn send(&mut self, data: &[u8]) -> usize;
    /// The next change in the peer, if any.
    fn event(&mut self) -> Option<Event>;
    /// For logs and the `echo=` command-line word: "uart", "virtio:9p.0", "tcp!ADDR!PORT".
    fn name(&self) -> &str;
    /// Whether the peer can hang up (a stream) or not (a line).
    fn kind(&self) -> Kind {
        Kind::Line
    }
    /// A network link: a claimed uname is not proof (a cable to the machine is).
    fn network(&self) -> bool {
        false
    }
    /// The peer's network address, where it has one (wrong secrets are counted by it).
    fn peer(&self) -> Option<IpAddr> {
        None
    }
    /// Sends back what it receives instead of serving 9P (the raw rate, for benchmarks).
    fn echo(&self) -> bool {
        false
    }
}

/// A source of new links: a TCP listener.
pub trait Listener {
    /// Moves the source's own machinery (a network stack); true if anything moved.
    fn poll(&mut self) -> bool;
    /// A newly connected link, if one is waiting.
    fn accept(&mut self) -> Option<Box<dyn Link>>;
    /// Where clients reach it ("tcp!10.0.2.15!564"), once known.
    fn address(&self) -> Option<String>;
    /// The status lines of the switch its stack sits on, if any (`switch.rs`).
    fn switch_status(&self) -> Option<String> {
        None
    }
}
