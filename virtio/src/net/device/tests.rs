//! The card through its queues, driven by the test driver over a byte-array memory.

use super::*;
use crate::testing::{Driver, Ram};
use alloc::string::ToString;

/// A port that records what it was sent and hands out frames from a list.
#[derive(Default)]
struct Port {
    sent: Vec<Vec<u8>>,
    waiting: VecDeque<Vec<u8>>,
    fail: bool,
}

impl FramePort for Port {
    fn send(&mut self, frame: &[u8]) -> Result<(), String> {
        if self.fail {
            return Err("link down".to_string());
        }
        self.sent.push(frame.to_vec());
        Ok(())
    }
    fn next(&mut self) -> Option<Vec<u8>> {
        self.waiting.pop_front()
    }
}

const SIZE: u16 = 16;
const LIMIT: u64 = 1 << 20;

/// A card with its receive queue at page 16 and transmit queue at page 32.
struct Rig {
    net: Net,
    ram: Ram,
    qs: [Queue; 2],
    drv: [Driver; 2],
    port: Port,
}

impl Rig {
    fn new() -> Rig {
        let mut qs = [Queue::new(SIZE), Queue::new(SIZE)];
        qs[0].pfn = 16;
        qs[1].pfn = 32;
        Rig {
            net: Net::new([2, 0, 0, 0, 0, 1]),
            ram: Ram::new(LIMIT as usize),
            qs,
            drv: [Driver::new(SIZE, 16), Driver::new(SIZE, 32)],
            port: Port::default(),
        }
    }

    /// Notifies queue `qi` and publishes the used entries, as a transport does.
    fn notify(&mut self, qi: u16) -> Result<(), String> {
        let q = &mut self.qs[usize::from(qi)];
        let mut done = Vec::new();
        self.net
            .serve(qi, q, &mut self.ram, LIMIT, &mut self.port, &mut done)?;
        q.put(&mut self.ram, &done)
    }
}

#[test]
fn frames_both_ways() {
    let mut r = Rig::new();
    // Transmit: the header, then the frame, which the port gets alone.
    r.ram.b[0x1000 + HDR..0x1000 + HDR + 60].fill(0x5a);
    r.drv[1].offer(
        &mut r.ram,
        &[(0x1000, 4, false), (0x1004, (HDR - 4 + 60) as u32, false)],
    );
    r.notify(TX).unwrap();
    assert_eq!(r.port.sent, [vec![0x5a; 60]]);
    assert_eq!(r.drv[1].used_idx(&r.ram), 1);
    // A frame waits in the port until a receive buffer comes.
    r.port.waiting.push_back(vec![0xa5; 42]);
    r.notify(TX).unwrap();
    assert_eq!(r.port.waiting.len(), 1);
    r.ram.b[0x4000..0x4000 + HDR].fill(0xff);
    r.drv[0].offer(&mut r.ram, &[(0x4000, 1526, true)]);
    r.notify(RX).unwrap();
    assert_eq!(r.drv[0].used_idx(&r.ram), 1);
    assert_eq!(r.drv[0].used_entry(&r.ram, 0), (0, (HDR + 42) as u32));
    assert_eq!(r.ram.b[0x4000..0x4000 + HDR], [0; HDR]);
    assert_eq!(r.ram.b[0x4000 + HDR..0x4000 + HDR + 42], [0xa5; 42]);
    assert_eq!(
        r.net.counters,
        Counters {
            sent: 1,
            received: 1,
            dropped: 0
        }
    );
    // A buffer waits for a frame; serving the receive queue again delivers one that
    // came meanwhile, and a transmit notify leaves it alone.
    r.drv[0].offer(&mut r.ram, &[(0x5000, 1526, true)]);
    r.notify(RX).unwrap();
    r.port.waiting.push_back(vec![1; 60]);
    r.notify(TX).unwrap();
    assert_eq!(r.drv[0].used_idx(&r.ram), 1);
    r.notify(RX).unwrap();
    assert_eq!(r.drv[0].used_idx(&r.ram), 2);
    assert_eq!(
        r.drv[1].used_idx(&r.ram),
        1,
        "no receive entry in the transmit ring"
    );
}

#[test]
fn bad_lengths_drop_the_frame_not_the_card() {
    let mut r = Rig::new();
    // A header alone, and a chain claiming all of memory: dropped unread.
    r.drv[1].offer(&mut r.ram, &[(0x1000, HDR as u32, false)]);
    r.drv[1].offer(&mut r.ram, &[(0x1000, (HDR + MAX_FRAME + 1) as u32, false)]);
    r.drv[1].offer(
        &mut r.ram,
        &[(0, 0x80000, false), (0x80000, 0x80000, false)],
    );
    let reads = r.ram.reads;
    r.notify(TX).unwrap();
    assert_eq!(r.ram.reads, reads + 1, "only the ring was read");
    assert!(r.port.sent.is_empty());
    assert_eq!(r.drv[1].used_idx(&r.ram), 3);
    // The longest frame passes.
    r.drv[1].offer(&mut r.ram, &[(0x1000, (HDR + MAX_FRAME) as u32, false)]);
    r.notify(TX).unwrap();
    assert_eq!(r.port.sent.len(), 1);
    // A buffer too small for its frame, and a frame too long: both dropped, buffers back.
    r.port.waiting.push_back(vec![1; 100]);
    r.port.waiting.push_back(vec![2; MAX_FRAME + 1]);
    r.port.waiting.push_back(vec![3; 60]);
    for a in [0x4000, 0x5000, 0x6000] {
        r.drv[0].offer(&mut r.ram, &[(a, (HDR + 80) as u32, true)]);
    }
    r.notify(RX).unwrap();
    assert_eq!(r.drv[0].used_entry(&r.ram, 0), (0, 0));
    assert_eq!(r.drv[0].used_entry(&r.ram, 1), (1, 0));
    assert_eq!(r.drv[0].used_entry(&r.ram, 2), (2, (HDR + 60) as u32));
    assert_eq!(r.net.counters.dropped, 5);
    assert_eq!(r.net.counters.received, 1);
}

#[test]
fn a_failing_port_counts_and_says_why() {
    let mut r = Rig::new();
    r.port.fail = true;
    r.drv[1].offer(&mut r.ram, &[(0x1000, (HDR + 60) as u32, false)]);
    r.notify(TX).unwrap();
    assert_eq!(r.net.link_error.as_deref(), Some("link down"));
    assert_eq!(r.net.counters.dropped, 1);
    assert_eq!(r.drv[1].used_idx(&r.ram), 1, "the buffer still comes back");
}

#[test]
fn a_bad_ring_or_buffer_breaks_the_queue() {
    let mut r = Rig::new();
    // A transmit buffer outside guest memory.
    r.drv[1].offer(&mut r.ram, &[(LIMIT - 8, 64, false)]);
    let e = r.notify(TX).unwrap_err();
    assert_eq!(r.qs[1].broken.as_deref(), Some(e.as_str()));
    // A receive buffer outside it.
    let mut r = Rig::new();
    r.drv[0].offer(&mut r.ram, &[(LIMIT - 8, 1526, true)]);
    r.port.waiting.push_back(vec![1; 60]);
    assert!(r.notify(RX).is_err());
}

#[test]
fn reset_forgets_receive_buffers_and_config_holds_the_mac() {
    let mut r = Rig::new();
    r.drv[0].offer(&mut r.ram, &[(0x4000, 1526, true)]);
    r.notify(RX).unwrap();
    r.net.reset();
    r.port.waiting.push_back(vec![1; 60]);
    r.notify(RX).unwrap();
    assert_eq!(r.drv[0].used_idx(&r.ram), 0);
    assert_eq!(r.port.waiting.len(), 1, "the frame stays in the port");
    assert_eq!(r.net.config(), [2, 0, 0, 0, 0, 1]);
    r.net.config_write(4, 2, 0x0bad);
    r.net.config_write(5, 4, 0xffff_ff77);
    assert_eq!(r.net.mac, [2, 0, 0, 0, 0xad, 0x77]);
    assert_eq!(r.net.features(), 1 << 5);
}

#[test]
fn a_transmit_budget_sends_the_ring_across_serves_in_order() {
    let mut r = Rig::new();
    r.net.budget = Budget {
        chains: 4,
        bytes: u64::MAX,
    };
    for i in 0..10u8 {
        let at = 0x1000 + usize::from(i) * 0x100;
        r.ram.b[at + HDR..at + HDR + 60].fill(i);
        r.drv[1].offer(&mut r.ram, &[(at as u64, (HDR + 60) as u32, false)]);
    }
    for sent in [4, 8, 10] {
        r.notify(TX).unwrap();
        assert_eq!(r.port.sent.len(), sent);
        assert_eq!(r.drv[1].used_idx(&r.ram), sent as u16);
        assert_eq!(r.net.pending(TX, &r.qs[1]), sent < 10, "{sent}");
    }
    let want: Vec<Vec<u8>> = (0..10).map(|i| vec![i; 60]).collect();
    assert_eq!(r.port.sent, want);
    for i in 0..10u16 {
        assert_eq!(r.drv[1].used_entry(&r.ram, i), (u32::from(i), 0));
    }
    // The receive queue is never behind: its buffers are all taken at once.
    assert!(!r.net.pending(RX, &r.qs[0]));
}
