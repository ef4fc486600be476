//! Budgets: a ring holding more than one serve may do is served across calls, oldest
//! first, every request answered once, an interrupt for each call that answered some.

use super::super::{Backend, Budget, IoError, SECTOR, S_OK, T_FLUSH, T_IN, T_OUT};
use super::*;
use crate::testing::{Driver, Ram};
use alloc::vec;

/// 64 KiB of patterned bytes the test can look at.
struct Image(Vec<u8>);

impl Capacity for Image {
    fn bytes(&self) -> u64 {
        self.0.size()
    }
}

impl<M: ?Sized> Disk<M> for Image {
    fn get(&mut self, _: &mut M, off: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.0.read_at(off, buf)
    }
    fn put(&mut self, _: &mut M, off: u64, data: &[u8]) -> Result<(), IoError> {
        self.0.write_at(off, data)
    }
    fn sync(&mut self, _: &mut M) -> Result<(), IoError> {
        Ok(())
    }
}

fn image() -> Vec<u8> {
    (0..0x10000u32)
        .map(|i| (i / 512) as u8 ^ (i as u8))
        .collect()
}

const LIMIT: u64 = 1 << 20;
const BUDGET: Budget = Budget {
    chains: 4,
    bytes: 4096,
};

fn header(ram: &mut Ram, at: usize, ty: u32, sector: u64) {
    ram.b[at..at + 4].copy_from_slice(&ty.to_le_bytes());
    ram.b[at + 8..at + 16].copy_from_slice(&sector.to_le_bytes());
}

/// A disk with [`BUDGET`], its queue of 64 at page 16 and the driver's side.
fn rig() -> (Blk<Image>, Queue, Driver, Ram) {
    let mut blk = Blk::with_disk(Image(image()), false, "b");
    blk.budget = BUDGET;
    let mut q = Queue::new(64);
    q.pfn = 16;
    (blk, q, Driver::new(64, 16), Ram::new(LIMIT as usize))
}

/// Request `i`'s header at 0x20000 + i * 0x100, its status byte at 0x30000 + i, its
/// data at 0x40000 + i * 0x2000.
fn offer(d: &mut Driver, ram: &mut Ram, i: usize, ty: u32, sector: u64, len: u32) -> u16 {
    let (h, st, data) = (0x20000 + i * 0x100, 0x30000 + i, 0x40000 + i * 0x2000);
    header(ram, h, ty, sector);
    ram.b[st] = 0xff;
    let write = ty == T_IN;
    let mut bufs = vec![(h as u64, 16, false)];
    if len > 0 {
        bufs.push((data as u64, len, write));
    }
    bufs.push((st as u64, 1, true));
    d.offer(ram, &bufs)
}

#[test]
fn a_ring_bigger_than_the_budget_is_served_across_calls_in_order() {
    let (mut blk, mut q, mut d, mut ram) = rig();
    // Twelve requests, 22 KiB of data: 2 KiB reads, 1 KiB writes of byte 0x80 + i,
    // a 6 KiB read (more than a budget) and a flush.
    let mut heads = Vec::new();
    for i in 0..12usize {
        let head = match i {
            5 => offer(&mut d, &mut ram, i, T_IN, 40, 6 * 1024),
            7 => offer(&mut d, &mut ram, i, T_FLUSH, 0, 0),
            _ if i % 2 == 0 => offer(&mut d, &mut ram, i, T_IN, 4 * i as u64, 2048),
            _ => {
                let at = 0x40000 + i * 0x2000;
                ram.b[at..at + 1024].fill(0x80 + i as u8);
                offer(&mut d, &mut ram, i, T_OUT, 96 + 2 * i as u64, 1024)
            }
        };
        heads.push(head);
    }
    let mut used = 0u16;
    let mut calls = 0;
    while calls == 0 || blk.pending(&q) {
        let irq = blk.serve_queue(&mut q, &mut ram, LIMIT).unwrap();
        let now = d.used_idx(&ram);
        assert!(now - used <= BUDGET.chains, "call {calls}: {used}..{now}");
        assert_eq!(irq, now > used, "an interrupt when requests ended");
        if calls == 0 {
            // A 2 KiB read and a 1 KiB write fit; the next read is begun.
            assert_eq!(now, 2);
        }
        used = now;
        calls += 1;
        assert!(calls < 20, "no progress");
    }
    // 22 KiB in 4 KiB budgets.
    assert!(calls >= 6, "{calls} calls");
    assert_eq!(used, 12);
    for (slot, &head) in heads.iter().enumerate() {
        let (id, _) = d.used_entry(&ram, slot as u16);
        assert_eq!(id, u32::from(head), "slot {slot}");
        assert_eq!(ram.b[0x30000 + slot], S_OK, "request {slot}");
    }
    let disk = image();
    for i in (0..12).step_by(2) {
        let (at, from) = (0x40000 + i * 0x2000, 4 * i * 512);
        assert_eq!(ram.b[at..at + 2048], disk[from..from + 2048], "read {i}");
    }
    assert_eq!(ram.b[0x4a000..0x4a000 + 6144], disk[40 * 512..52 * 512]);
    for i in [1usize, 3, 9, 11] {
        let off = (96 + 2 * i) * SECTOR as usize;
        assert!(blk.disk.0[off..off + 1024]
            .iter()
            .all(|&b| b == 0x80 + i as u8));
    }
    assert_eq!((blk.reads, blk.writes, blk.bytes), (7, 4, 22 * 1024));
    // Nothing left: another call finds nothing.
    assert_eq!(blk.serve_queue(&mut q, &mut ram, LIMIT), Ok(false));
}

#[test]
fn the_chain_budget_bounds_requests_without_data() {
    let (mut blk, mut q, mut d, mut ram) = rig();
    for i in 0..10 {
        offer(&mut d, &mut ram, i, T_FLUSH, 0, 0);
    }
    for want in [4, 8, 10] {
        assert_eq!(blk.serve_queue(&mut q, &mut ram, LIMIT), Ok(true));
        assert_eq!(d.used_idx(&ram), want);
        assert_eq!(blk.pending(&q), want < 10);
    }
}

#[test]
fn a_reset_drops_what_a_budget_left() {
    let (mut blk, mut q, mut d, mut ram) = rig();
    for i in 0..6 {
        offer(&mut d, &mut ram, i, T_IN, 0, 3 * 1024);
    }
    assert_eq!(blk.serve_queue(&mut q, &mut ram, LIMIT), Ok(true));
    assert_eq!(d.used_idx(&ram), 1);
    assert!(blk.pending(&q));
    // The driver resets the device (the transport resets its queues and model).
    blk.reset();
    q.reset();
    assert!(!blk.pending(&q));
    let before = ram.b.clone();
    assert_eq!(blk.serve_queue(&mut q, &mut ram, LIMIT), Ok(false));
    assert!(ram.b == before, "nothing touched after the reset");
    // Set up again, the queue starts afresh.
    q.pfn = 16;
    let mut d = Driver::new(64, 16);
    ram.b[16 * 4096..18 * 4096 + 4096].fill(0);
    offer(&mut d, &mut ram, 0, T_FLUSH, 0, 0);
    assert_eq!(blk.serve_queue(&mut q, &mut ram, LIMIT), Ok(true));
    assert_eq!(d.used_idx(&ram), 1);
    assert!(!blk.pending(&q));
}
