//! An Ethernet NIC as the network stack sees it: whole frames in and out, non-blocking.
//! Receive is interrupt-driven: a frame's arrival sends the device's message or raises its
//! line, which wakes the idle loop (`drivers::irq`), and the stack then polls.

use alloc::vec::Vec;

/// Largest Ethernet frame handled (no VLAN tag, no FCS).
pub const MTU_FRAME: usize = 1514;

pub trait Nic {
    /// "virtio-net", "e1000": for the log.
    fn model(&self) -> &'static str;
    fn mac(&self) -> [u8; 6];
    /// The next received frame, if any (acknowledges the device's interrupt first).
    fn recv(&mut self) -> Option<Vec<u8>>;
    /// Queues a frame for transmission; false when the transmit ring is full.
    fn send(&mut self, frame: &[u8]) -> bool;
    /// Whether `send` would take a frame now.
    fn can_send(&mut self) -> bool;
    /// Receives every frame on the wire, whatever its destination (a bridge's uplink).
    /// A device that does so already (virtio-net without the control queue's receive
    /// filter) does nothing.
    fn promiscuous(&mut self) {}
}
