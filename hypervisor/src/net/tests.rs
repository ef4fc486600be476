//! The stack's poll under a flood on the wire.

use super::*;
use alloc::rc::Rc;
use core::cell::Cell;

/// Frames the storm sends.
const STORM: usize = 10 * RX_BUDGET;

/// A NIC on which broadcast frames keep arriving (`left` more), as they do from a LAN's
/// storm or a flooding guest's card on the switch; it counts what it gave.
struct Storm {
    left: usize,
    taken: Rc<Cell<usize>>,
}

impl Nic for Storm {
    fn model(&self) -> &'static str {
        "storm"
    }
    fn mac(&self) -> [u8; 6] {
        [2, 0, 0, 0, 0, 1]
    }
    fn recv(&mut self) -> Option<Vec<u8>> {
        self.left = self.left.checked_sub(1)?;
        self.taken.set(self.taken.get() + 1);
        let mut f = vec![0xff; 60];
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x0f]);
        f[12..14].copy_from_slice(&[0x88, 0xb5]);
        Some(f)
    }
    fn send(&mut self, _: &[u8]) -> bool {
        true
    }
    fn can_send(&mut self) -> bool {
        true
    }
}

#[test]
fn a_poll_takes_a_bounded_number_of_frames_and_says_more_wait() {
    let taken = Rc::new(Cell::new(0));
    let nic = Storm {
        left: STORM,
        taken: taken.clone(),
    };
    let mut s = Stack::new(Box::new(nic), Addressing::Dhcp, 564, None);
    let mut polls = 0;
    while taken.get() < STORM {
        let before = taken.get();
        assert!(s.poll(), "frames wait: the server must not idle");
        assert_eq!(taken.get() - before, RX_BUDGET);
        polls += 1;
    }
    assert_eq!(polls, 10);
    // The storm is over: a poll finds nothing more.
    s.poll();
    assert_eq!(taken.get(), STORM);
}
