//! The hypervisor's Ethernet switch (`switch` on the command line; `netswitch` holds the
//! rules): the NIC is its uplink port, in promiscuous mode, and the kernel's own
//! interface (smoltcp) is its host port, so the interface still gets the frames for its
//! MAC and every broadcast and multicast, and the rest is switched. VM cards and client
//! queue files join the same switch as more ports ([`Shared`]). Without `switch` they
//! join one with neither (`devvmx::HostSwitch::unbridged`): guests reach each other, not the LAN.
//!
//! [`SwitchedNic`] is the host port as the network stack sees a NIC: receiving first
//! moves what the NIC received into the switch and what the switch queued for the NIC
//! onto the wire; sending puts the interface's frame into the switch.

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use netswitch::{Config, Kind, Mac, PortId, Switch};
use spin::Mutex;

use crate::drivers::nic::Nic;

/// One switch, shared by its ports' owners (the network stack here, the namespace's
/// queue files, VM cards on other CPUs).
pub use devvmx::SharedSwitch as Shared;

/// The network stack's NIC when the switch is on: the switch's host port, with the real
/// NIC behind the uplink port.
pub struct SwitchedNic {
    nic: Box<dyn Nic>,
    switch: Shared,
    uplink: PortId,
    host: PortId,
}

impl SwitchedNic {
    /// Puts `nic` in promiscuous mode behind a new switch's uplink port, and the interface
    /// (the NIC's MAC) on its host port; or gives the NIC back, with the reason (a MAC
    /// that is a group address).
    #[allow(clippy::result_large_err)]
    pub fn new(mut nic: Box<dyn Nic>) -> Result<SwitchedNic, (Box<dyn Nic>, netswitch::Error)> {
        let mut sw = Switch::new(Config::default());
        let ports = sw
            .add(Kind::Uplink, None)
            .and_then(|u| Ok((u, sw.add(Kind::Host, Some(Mac(nic.mac())))?)));
        let (uplink, host) = match ports {
            Ok(p) => p,
            Err(e) => return Err((nic, e)),
        };
        nic.promiscuous();
        Ok(SwitchedNic {
            nic,
            switch: Arc::new(Mutex::new(sw)),
            uplink,
            host,
        })
    }

    /// The switch, for more ports and its status.
    pub fn switch(&self) -> Shared {
        self.switch.clone()
    }

    /// Moves frames the switch queued for the uplink onto the wire while the NIC takes
    /// them.
    fn flush(&mut self) {
        let mut sw = self.switch.lock();
        while sw.queued(self.uplink) > 0 && self.nic.can_send() {
            if let Some(f) = sw.pop(self.uplink) {
                self.nic.send(&f);
            }
        }
    }
}

impl Nic for SwitchedNic {
    fn model(&self) -> &'static str {
        self.nic.model()
    }

    fn mac(&self) -> [u8; 6] {
        self.nic.mac()
    }

    fn promiscuous(&mut self) {}

    /// The host port's next frame. Each call first moves one frame the NIC received into
    /// the switch, and while none is queued for the interface, the rest too (all of them,
    /// when none is for it): a port that keeps the host port's queue from emptying (a
    /// guest broadcasting from another CPU) cannot hold the LAN's frames, the 9P links'
    /// TCP segments among them, in the NIC.
    fn recv(&mut self) -> Option<Vec<u8>> {
        let frame = loop {
            let wire = self.nic.recv();
            if let Some(f) = &wire {
                let now = crate::arch::timer::millis();
                let _ = self.switch.lock().input(self.uplink, f, now);
            }
            if let Some(f) = self.switch.lock().pop(self.host) {
                break Some(f);
            }
            if wire.is_none() {
                break None;
            }
        };
        self.flush();
        frame
    }

    /// Into the switch: a frame it drops (a full queue) is counted there, and lost as a
    /// full transmit ring loses it.
    fn send(&mut self, frame: &[u8]) -> bool {
        let now = crate::arch::timer::millis();
        let _ = self.switch.lock().input(self.host, frame, now);
        self.flush();
        true
    }

    fn can_send(&mut self) -> bool {
        self.flush();
        self.switch.lock().room(self.uplink, self.host)
    }
}

/// The switch's status text, each line prefixed `switch ` (as the root status file
/// shows it).
pub fn status(sw: &Shared) -> String {
    let text = sw.lock().status().to_string();
    let mut out = String::new();
    for line in text.lines() {
        out.push_str("switch ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::VecDeque;
    use alloc::vec;

    const OURS: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const LAN: [u8; 6] = [0x52, 0x55, 10, 0, 2, 2];
    const OTHER: [u8; 6] = [2, 0, 0, 0, 0, 9];

    /// A NIC whose wire is two lists; `room` frames fit its transmit ring.
    #[derive(Default)]
    struct Wire {
        arriving: VecDeque<Vec<u8>>,
        sent: Vec<Vec<u8>>,
        room: usize,
        promiscuous: bool,
    }

    struct FakeNic(Arc<Mutex<Wire>>);

    impl Nic for FakeNic {
        fn model(&self) -> &'static str {
            "fake"
        }
        fn mac(&self) -> [u8; 6] {
            OURS
        }
        fn promiscuous(&mut self) {
            self.0.lock().promiscuous = true;
        }
        fn recv(&mut self) -> Option<Vec<u8>> {
            self.0.lock().arriving.pop_front()
        }
        fn send(&mut self, frame: &[u8]) -> bool {
            let mut w = self.0.lock();
            if w.room == 0 {
                return false;
            }
            w.room -= 1;
            w.sent.push(frame.to_vec());
            true
        }
        fn can_send(&mut self) -> bool {
            self.0.lock().room > 0
        }
    }

    fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f
    }

    fn rig() -> (SwitchedNic, Arc<Mutex<Wire>>) {
        let wire = Arc::new(Mutex::new(Wire {
            room: 1000,
            ..Wire::default()
        }));
        let Ok(nic) = SwitchedNic::new(Box::new(FakeNic(wire.clone()))) else {
            panic!("a switch for the fake NIC");
        };
        assert!(wire.lock().promiscuous, "the uplink sees every frame");
        (nic, wire)
    }

    #[test]
    fn the_interface_gets_its_unicast_and_broadcast_only() {
        let (mut nic, wire) = rig();
        let mine = frame(OURS, LAN);
        let bcast = frame([0xff; 6], LAN);
        for f in [
            frame(OTHER, LAN),
            mine.clone(),
            frame(OTHER, LAN),
            bcast.clone(),
        ] {
            wire.lock().arriving.push_back(f);
        }
        assert_eq!(nic.recv(), Some(mine));
        assert_eq!(nic.recv(), Some(bcast));
        assert_eq!(nic.recv(), None);
        assert!(wire.lock().arriving.is_empty());
        assert!(
            wire.lock().sent.is_empty(),
            "nothing comes back out the uplink"
        );
        let s = status(&nic.switch());
        assert!(s.contains("switch port 0 uplink - in 4 out 0 "), "{s}");
        assert!(
            s.contains("switch port 1 host 52:54:00:12:34:56 in 0 out 2 "),
            "{s}"
        );
    }

    #[test]
    fn the_interface_sends_through_the_uplink_from_its_own_address() {
        let (mut nic, wire) = rig();
        assert!(nic.can_send());
        assert!(nic.send(&frame(LAN, OURS)));
        assert_eq!(wire.lock().sent, [frame(LAN, OURS)]);
        // Another source is the interface posing as someone else: dropped, counted.
        nic.send(&frame(LAN, OTHER));
        assert_eq!(wire.lock().sent.len(), 1);
        let c = nic.switch().lock().counters(nic.host).unwrap();
        assert_eq!((c.input, c.spoof), (1, 1));
    }

    #[test]
    fn a_full_transmit_ring_queues_in_the_switch_then_drops() {
        let (mut nic, wire) = rig();
        wire.lock().room = 0;
        let limit = nic.switch().lock().queue_limit();
        for _ in 0..limit {
            assert!(nic.can_send());
            nic.send(&frame([0xff; 6], OURS));
        }
        assert!(!nic.can_send(), "the uplink's queue is full");
        nic.send(&frame([0xff; 6], OURS));
        assert_eq!(nic.switch().lock().counters(nic.uplink).unwrap().full, 1);
        wire.lock().room = 10;
        assert_eq!(nic.recv(), None);
        assert_eq!(wire.lock().sent.len(), 10, "the ring took what it could");
        assert!(nic.can_send());
    }

    #[test]
    fn a_port_flooding_the_interface_does_not_hold_the_wire() {
        let (mut nic, wire) = rig();
        let guest = nic
            .switch()
            .lock()
            .add(Kind::Guest, Some(Mac(OTHER)))
            .unwrap();
        let flood = |nic: &SwitchedNic| {
            let mut sw = nic.switch.lock();
            while sw.room(nic.host, guest) {
                sw.input(guest, &frame([0xff; 6], OTHER), 0).unwrap();
            }
        };
        let mine = frame(OURS, LAN);
        wire.lock().arriving.push_back(mine.clone());
        // The guest refills the host port's queue between every two frames the
        // interface takes (as from another CPU); the LAN's frame still comes, behind what
        // was queued before it.
        let mut got = 0;
        let limit = nic.switch().lock().queue_limit();
        while got <= limit {
            flood(&nic);
            got += 1;
            if nic.recv() == Some(mine.clone()) {
                break;
            }
        }
        assert!(got <= limit, "the LAN's frame never came");
        assert!(wire.lock().arriving.is_empty());
    }
}
