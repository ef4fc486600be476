//! The device side of a legacy virtio-net card (device type 1) with a MAC address and
//! nothing else offered: queue 0 receives, queue 1 transmits, every buffer starts with
//! the 10-byte legacy header (no offloads: all zeros on receive, ignored on transmit).
//!
//! The model knows neither its transport nor where frames go: the transport (the tool's
//! legacy PCI registers, the kernel's) calls [`Net::serve`] on a queue notify, and frames
//! leave and arrive through a [`FramePort`] (the tool's link to a socket or TAP device,
//! the kernel's switch port). A frame is taken from the port only when the guest has a
//! receive buffer for it, so frames wait in the port's own bounded queue, and a transmit
//! chain is read into a buffer of one frame's size, whatever length the guest claims.

use super::{LEGACY_HDR_LEN, MAX_FRAME};
use crate::feature::{legacy, NET_MAC};
use crate::queue::{gather_into, scatter, Budget, Chain, GuestMem, Queue};
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

/// Where a card's frames go and come from.
pub trait FramePort {
    /// A frame the guest sent (its header stripped). An error (the link failed) is
    /// counted as a drop and kept as [`Net::link_error`].
    fn send(&mut self, frame: &[u8]) -> Result<(), String>;
    /// The next frame for the guest, if one waits; taken only when a receive buffer is
    /// ready for it.
    fn next(&mut self) -> Option<Vec<u8>>;
}

/// Feature bits offered (the legacy transport's word): the configuration holds a MAC.
pub const FEATURES: u32 = legacy(NET_MAC);
/// The header before every frame (legacy, no mergeable buffers).
pub const HDR: usize = LEGACY_HDR_LEN;
/// The receive queue's index.
pub const RX: u16 = 0;
/// The transmit queue's index.
pub const TX: u16 = 1;

/// A card's counters.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Counters {
    /// Frames the guest sent that the port took.
    pub sent: u64,
    /// Frames put in the guest's receive buffers.
    pub received: u64,
    /// Frames dropped: a transmit chain too short or too long, a receive buffer too
    /// small, a frame from the port too long, or the port failing.
    pub dropped: u64,
}

/// One card's state between notifications.
#[derive(Debug)]
pub struct Net {
    pub mac: [u8; 6],
    /// Receive chains the driver gave, not yet filled (at most a queue's worth).
    rx_bufs: VecDeque<Chain>,
    pub counters: Counters,
    /// Why the port last refused a frame, if it did.
    pub link_error: Option<String>,
    /// What one serve of [`TX`] may send: its chains ([`Budget::WHOLE`] unless set;
    /// a frame's bytes are bounded anyway). The rest wait in the ring ([`Net::pending`]).
    pub budget: Budget,
}

impl Net {
    pub fn new(mac: [u8; 6]) -> Net {
        Net {
            mac,
            rx_bufs: VecDeque::new(),
            counters: Counters::default(),
            link_error: None,
            budget: Budget::WHOLE,
        }
    }

    pub fn features(&self) -> u32 {
        FEATURES
    }

    /// The configuration space: the MAC address.
    pub fn config(&self) -> Vec<u8> {
        self.mac.to_vec()
    }

    /// A write to the configuration space at `off`: the MAC is writable, as in QEMU.
    pub fn config_write(&mut self, off: u16, size: u8, v: u32) {
        for i in 0..u16::from(size) {
            if let Some(b) = self.mac.get_mut(usize::from(off.saturating_add(i))) {
                *b = (v >> (8 * i)) as u8;
            }
        }
    }

    /// The driver reset the device: its receive buffers are gone.
    pub fn reset(&mut self) {
        self.rx_bufs.clear();
    }

    /// Frames the driver queued on `q`, queue `qi`, wait for another serve (a budget
    /// left them in the ring).
    pub fn pending(&self, qi: u16, q: &Queue) -> bool {
        qi == TX && q.behind()
    }

    /// Serves queue `qi` (`q`, in guest memory `mem` ending at `limit`): transmits what
    /// the driver queued (as much as the budget allows, oldest first), or takes its receive buffers and fills them with frames from
    /// `port`. The used entries, all of queue `qi`, go to `done` for the transport to
    /// publish. When frames arrive for the guest, the transport serves [`RX`] again.
    /// An error is a bad ring (the queue is broken with it).
    pub fn serve<M: GuestMem + ?Sized>(
        &mut self,
        qi: u16,
        q: &mut Queue,
        mem: &mut M,
        limit: u64,
        port: &mut dyn FramePort,
        done: &mut Vec<(u16, u32)>,
    ) -> Result<(), String> {
        let most = if qi == TX {
            self.budget.chains
        } else {
            u16::MAX
        };
        let chains = q.take_some(mem, limit, most)?;
        match qi {
            TX => {
                let mut buf = vec![0u8; HDR + MAX_FRAME];
                for c in chains {
                    self.transmit(&c, mem, port, &mut buf).inspect_err(|e| {
                        q.broken = Some(e.clone());
                    })?;
                    done.push((c.head, 0));
                }
            }
            RX => {
                for c in chains {
                    if self.rx_bufs.len() >= usize::from(q.size) {
                        // More buffers outstanding than the ring holds: the driver
                        // offered one twice. It goes back empty.
                        done.push((c.head, 0));
                    } else {
                        self.rx_bufs.push_back(c);
                    }
                }
                self.fill(mem, port, done)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn transmit<M: GuestMem + ?Sized>(
        &mut self,
        c: &Chain,
        mem: &mut M,
        port: &mut dyn FramePort,
        buf: &mut [u8],
    ) -> Result<(), String> {
        let rd = c.readable();
        let len: u64 = rd.iter().map(|b| u64::from(b.len)).sum();
        if len <= HDR as u64 || len > buf.len() as u64 {
            self.counters.dropped += 1;
            return Ok(());
        }
        let n = gather_into(mem, &rd, buf)?;
        match port.send(&buf[HDR..n]) {
            Ok(()) => self.counters.sent += 1,
            Err(e) => {
                self.counters.dropped += 1;
                self.link_error = Some(e);
            }
        }
        Ok(())
    }

    /// Fills receive buffers with the port's frames while both last.
    fn fill<M: GuestMem + ?Sized>(
        &mut self,
        mem: &mut M,
        port: &mut dyn FramePort,
        done: &mut Vec<(u16, u32)>,
    ) -> Result<(), String> {
        while !self.rx_bufs.is_empty() {
            let Some(frame) = port.next() else { break };
            let Some(c) = self.rx_bufs.pop_front() else {
                break;
            };
            if frame.len() > MAX_FRAME || c.writable_len() < (HDR + frame.len()) as u64 {
                // A frame too long, or a buffer too small for it: the frame is dropped
                // and the buffer given back empty.
                self.counters.dropped += 1;
                done.push((c.head, 0));
                continue;
            }
            let mut b = vec![0u8; HDR + frame.len()];
            b[HDR..].copy_from_slice(&frame);
            let n = scatter(mem, &c.writable(), &b)?;
            self.counters.received += 1;
            done.push((c.head, n));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
