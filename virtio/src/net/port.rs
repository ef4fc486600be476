//! A card's [`FramePort`] on a switch (`netswitch`): what the kernel gives its virtio-net
//! cards. The card's transmit queue feeds the switch from the card's port, its receive
//! queue takes the frames the switch queued there. Whoever holds the switch (behind a
//! lock, when cards run on several CPUs) makes one for each serve.
//!
//! The switch checks the card's frames against the port's address, so the card's MAC and
//! the port's must agree: the transport calls `Switch::set_mac` when the driver writes
//! the MAC in the configuration space, `Switch::flush` when it resets the card, and
//! serves the receive queue again when frames were queued for the port
//! (`Switch::queued`).

use super::device::FramePort;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use netswitch::{PortId, Switch};

/// Port `port` of `switch`, at time `now` (the switch's clock).
pub struct SwitchPort<'a> {
    pub switch: &'a mut Switch,
    pub port: PortId,
    pub now: u64,
}

impl FramePort for SwitchPort<'_> {
    /// Into the switch. What it drops (a spoofed source, a full queue) it counts; only a
    /// port that is gone is an error.
    fn send(&mut self, frame: &[u8]) -> Result<(), String> {
        self.switch
            .input(self.port, frame, self.now)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn next(&mut self) -> Option<Vec<u8>> {
        self.switch.pop(self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::super::device::{Net, HDR, RX, TX};
    use super::*;
    use crate::queue::Queue;
    use crate::testing::{Driver, Ram};
    use netswitch::{Config, Kind, Mac};

    const LIMIT: u64 = 1 << 20;

    /// A card in its own memory: receive queue at page 16, transmit at page 32.
    struct Card {
        net: Net,
        ram: Ram,
        qs: [Queue; 2],
        drv: [Driver; 2],
        port: PortId,
    }

    impl Card {
        fn new(sw: &mut Switch, mac: [u8; 6]) -> Card {
            let mut qs = [Queue::new(16), Queue::new(16)];
            qs[0].pfn = 16;
            qs[1].pfn = 32;
            Card {
                net: Net::new(mac),
                ram: Ram::new(LIMIT as usize),
                qs,
                drv: [Driver::new(16, 16), Driver::new(16, 32)],
                port: sw.add(Kind::Guest, Some(Mac(mac))).unwrap(),
            }
        }

        fn notify(&mut self, sw: &mut Switch, qi: u16) {
            let q = &mut self.qs[usize::from(qi)];
            let mut port = SwitchPort {
                switch: sw,
                port: self.port,
                now: 0,
            };
            let mut done = Vec::new();
            self.net
                .serve(qi, q, &mut self.ram, LIMIT, &mut port, &mut done)
                .unwrap();
            q.put(&mut self.ram, &done).unwrap();
        }

        /// The guest sends `frame` (after a zero header).
        fn send(&mut self, sw: &mut Switch, frame: &[u8]) {
            self.ram.b[0x1000 + HDR..0x1000 + HDR + frame.len()].copy_from_slice(frame);
            let n = (HDR + frame.len()) as u32;
            self.drv[1].offer(&mut self.ram, &[(0x1000, n, false)]);
            self.notify(sw, TX);
        }
    }

    fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
        let mut f = alloc::vec![0x33u8; 60];
        f[..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f
    }

    #[test]
    fn two_cards_talk_through_the_switch() {
        let (ma, mb) = ([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb]);
        let mut sw = Switch::new(Config::default());
        let mut a = Card::new(&mut sw, ma);
        let mut b = Card::new(&mut sw, mb);
        b.drv[0].offer(&mut b.ram, &[(0x4000, 1526, true)]);
        b.notify(&mut sw, RX);
        // A to B: queued on B's port, delivered when B's receive queue is served.
        a.send(&mut sw, &frame(mb, ma));
        assert_eq!(sw.queued(b.port), 1);
        b.notify(&mut sw, RX);
        assert_eq!(b.drv[0].used_idx(&b.ram), 1);
        assert_eq!(b.ram.b[0x4000 + HDR..0x4000 + HDR + 60], frame(mb, ma)[..]);
        // A posing as B: the switch drops it, the card still returns the buffer.
        a.send(&mut sw, &frame(mb, mb));
        assert_eq!(sw.queued(b.port), 0);
        assert_eq!(sw.counters(a.port).unwrap().spoof, 1);
        assert_eq!(a.drv[1].used_idx(&a.ram), 2);
        assert_eq!(a.net.counters.sent, 2, "the port took both");
        // A port that is gone: the card counts a drop and says why.
        sw.remove(a.port).unwrap();
        a.send(&mut sw, &frame(mb, ma));
        assert_eq!(a.net.link_error.as_deref(), Some("no such switch port"));
    }
}
