//! The queue against the test driver: batching, wrap-around, and hostile rings (each an
//! error with a reason that sticks until reset, never a panic).

use super::*;
use crate::testing::{Driver, Ram, OUTSIDE};

const MEM: u64 = 1 << 20;

fn setup(size: u16) -> (Ram, Queue, Driver) {
    let ram = Ram::new(MEM as usize);
    let mut q = Queue::new(size);
    q.pfn = 4;
    (ram, q, Driver::new(size, 4))
}

fn buf(addr: u64, len: u32, write: bool) -> Buf {
    Buf { addr, len, write }
}

#[test]
fn chains_in_one_read_and_used_in_two_writes() {
    let (mut ram, mut q, mut d) = setup(8);
    let h1 = d.offer(
        &mut ram,
        &[(0x1000, 16, false), (0x2000, 512, true), (0x2200, 1, true)],
    );
    let h2 = d.offer(&mut ram, &[(0x3000, 4, false)]);
    let c = q.take(&mut ram, MEM).unwrap();
    assert_eq!(ram.reads, 1);
    assert_eq!(c.len(), 2);
    assert_eq!(c[0].head, h1);
    assert_eq!(
        c[0].bufs,
        [
            buf(0x1000, 16, false),
            buf(0x2000, 512, true),
            buf(0x2200, 1, true)
        ]
    );
    assert_eq!(c[0].writable_len(), 513);
    assert_eq!(c[0].readable(), [buf(0x1000, 16, false)]);
    assert_eq!(c[1].head, h2);
    // Nothing new: nothing taken.
    assert!(q.take(&mut ram, MEM).unwrap().is_empty());
    q.put(&mut ram, &[(h1, 513), (h2, 0)]).unwrap();
    assert_eq!(ram.writes, 2);
    assert_eq!(d.used_idx(&ram), 2);
    assert_eq!(d.used_entry(&ram, 0), (u32::from(h1), 513));
    assert_eq!(d.used_entry(&ram, 1), (u32::from(h2), 0));
    assert!(q.wants_interrupt());
}

#[test]
fn gather_and_scatter_merge_adjacent_buffers() {
    let mut ram = Ram::new(0x10000);
    ram.b[0x100..0x108].copy_from_slice(b"abcdefgh");
    let bufs = [
        buf(0x100, 4, false),
        buf(0x104, 4, false),
        buf(0x200, 0, false),
    ];
    assert_eq!(gather(&mut ram, &bufs).unwrap(), b"abcdefgh");
    assert_eq!(ram.reads, 1);
    let out = [
        buf(0x300, 2, true),
        buf(0x302, 2, true),
        buf(0x400, 8, true),
    ];
    assert_eq!(scatter(&mut ram, &out, b"123456").unwrap(), 6);
    assert_eq!(ram.writes, 2);
    assert_eq!(&ram.b[0x300..0x304], b"1234");
    assert_eq!(&ram.b[0x400..0x402], b"56");
    // Into a bounded buffer: as much as fits, in the same runs.
    let mut small = [0u8; 6];
    assert_eq!(gather_into(&mut ram, &bufs, &mut small).unwrap(), 6);
    assert_eq!(&small, b"abcdef");
    assert_eq!(ram.reads, 2);
    let mut big = [0u8; 16];
    assert_eq!(gather_into(&mut ram, &bufs, &mut big).unwrap(), 8);
    assert_eq!(gather_into(&mut ram, &bufs, &mut []).unwrap(), 0);
    // Memory that fails an access is an error, not a panic, both ways.
    let far = [buf(0x1_0000_0000, 4, false), buf(u64::MAX, 1, true)];
    assert_eq!(gather(&mut ram, &far).unwrap_err(), OUTSIDE);
    assert_eq!(gather_into(&mut ram, &far, &mut big).unwrap_err(), OUTSIDE);
    assert_eq!(scatter(&mut ram, &far, b"x").unwrap_err(), OUTSIDE);
}

#[test]
fn indices_wrap_around() {
    let (mut ram, mut q, mut d) = setup(4);
    // Start both sides just below the 16-bit wrap and the ring's end.
    d.avail_idx = 0xfffe;
    q.last_avail = 0xfffe;
    q.used_idx = 0xfffe;
    let heads: Vec<u16> = (0..4)
        .map(|i| d.offer(&mut ram, &[(0x1000 + i * 0x100, 8, true)]))
        .collect();
    let c = q.take(&mut ram, MEM).unwrap();
    assert_eq!(c.iter().map(|c| c.head).collect::<Vec<_>>(), heads);
    let done: Vec<(u16, u32)> = heads.iter().map(|h| (*h, 8)).collect();
    q.put(&mut ram, &done).unwrap();
    // Entries at slots 2, 3 then 0, 1: two writes, and the index.
    assert_eq!(ram.writes, 3);
    assert_eq!(d.used_idx(&ram), 2);
    for (i, h) in heads.iter().enumerate() {
        assert_eq!(
            d.used_entry(&ram, 0xfffe_u16.wrapping_add(i as u16)),
            (u32::from(*h), 8)
        );
    }
}

/// `q`'s next take fails with `want` in its reason; the queue then stays broken, without
/// touching memory (nor giving anything back), until reset.
fn broken(q: &mut Queue, ram: &mut Ram, want: &str) {
    let e = q.take(ram, MEM).unwrap_err();
    assert!(e.contains(want), "{e}");
    assert!(!q.ready());
    let (r, w) = (ram.reads, ram.writes);
    assert_eq!(q.take(ram, MEM).unwrap_err(), e);
    q.put(ram, &[(0, 1)]).unwrap();
    assert_eq!((ram.reads, ram.writes), (r, w));
    q.reset();
    assert!(q.broken.is_none() && q.pfn == 0);
}

#[test]
fn bad_descriptors_break_the_queue() {
    // A next index outside the table, and a head outside it.
    let (mut ram, mut q, mut d) = setup(8);
    d.desc(&mut ram, 0, 0x1000, 4, DESC_F_NEXT, 8);
    d.publish(&mut ram, 0);
    broken(&mut q, &mut ram, "descriptor 8 is outside the table of 8");
    let (mut ram, mut q, mut d) = setup(8);
    d.publish(&mut ram, 200);
    broken(&mut q, &mut ram, "descriptor 200 is outside");
    let (mut ram, mut q, mut d) = setup(8);
    d.publish(&mut ram, u16::MAX);
    broken(&mut q, &mut ram, "descriptor 65535 is outside");
    // Indirect descriptors were not offered.
    let (mut ram, mut q, mut d) = setup(8);
    d.desc(&mut ram, 0, 0x1000, 32, DESC_F_INDIRECT, 0);
    d.publish(&mut ram, 0);
    broken(&mut q, &mut ram, "indirect");
    // A good chain before a bad one: the bad one breaks the queue, and the available
    // index is not consumed (a reset starts over anyway).
    let (mut ram, mut q, mut d) = setup(8);
    d.offer(&mut ram, &[(0x1000, 4, false)]);
    d.publish(&mut ram, 9);
    broken(&mut q, &mut ram, "descriptor 9");
}

#[test]
fn loops_break_the_queue() {
    // Descriptor 1 points back to 0.
    let (mut ram, mut q, mut d) = setup(8);
    d.desc(&mut ram, 0, 0x1000, 4, DESC_F_NEXT, 1);
    d.desc(&mut ram, 1, 0x1000, 4, DESC_F_NEXT, 0);
    d.publish(&mut ram, 0);
    broken(&mut q, &mut ram, "the chain from descriptor 0 loops");
    // A descriptor that is its own next.
    let (mut ram, mut q, mut d) = setup(8);
    d.desc(&mut ram, 3, 0x1000, 4, DESC_F_NEXT, 3);
    d.publish(&mut ram, 3);
    broken(&mut q, &mut ram, "loops");
    // A cycle through the whole table, entered from its middle.
    let (mut ram, mut q, mut d) = setup(128);
    for i in 0..128 {
        d.desc(&mut ram, i, 0x1000, 1, DESC_F_NEXT, (i + 1) % 128);
    }
    d.publish(&mut ram, 64);
    broken(&mut q, &mut ram, "more than 128 descriptors");
    // The longest chain that does not loop uses every descriptor once.
    let (mut ram, mut q, mut d) = setup(128);
    for i in 0..128 {
        let f = if i == 127 { DESC_F_WRITE } else { DESC_F_NEXT };
        d.desc(&mut ram, i, 0x1000, 1, f, i + 1);
    }
    d.publish(&mut ram, 0);
    let c = q.take(&mut ram, MEM).unwrap();
    assert_eq!(c[0].bufs.len(), 128);
}

#[test]
fn indices_out_of_step_break_the_queue() {
    // The available index running more than a ring ahead.
    let (mut ram, mut q, mut d) = setup(8);
    d.set_avail_idx(&mut ram, 9);
    broken(
        &mut q,
        &mut ram,
        "available index 9 is 9 entries ahead of 0",
    );
    // ... or going backwards (a huge distance ahead, modulo 2^16).
    let (mut ram, mut q, mut d) = setup(8);
    d.offer(&mut ram, &[(0x1000, 4, false)]);
    d.offer(&mut ram, &[(0x1000, 4, false)]);
    assert_eq!(q.take(&mut ram, MEM).unwrap().len(), 2);
    d.set_avail_idx(&mut ram, 1);
    broken(&mut q, &mut ram, "65535 entries ahead");
    // Exactly a ring ahead is a full ring, and fine.
    let (mut ram, mut q, mut d) = setup(8);
    for _ in 0..8 {
        d.offer(&mut ram, &[(0x1000, 4, false)]);
    }
    assert_eq!(q.take(&mut ram, MEM).unwrap().len(), 8);
}

#[test]
fn lengths_past_memory_break_the_queue() {
    // A buffer past the end of guest memory.
    let (mut ram, mut q, mut d) = setup(8);
    d.offer(&mut ram, &[(0xff000, 0x2000, true)]);
    broken(&mut q, &mut ram, "past the end of guest memory");
    // Ending exactly at the end is inside.
    let (mut ram, mut q, mut d) = setup(8);
    d.offer(&mut ram, &[(0xff000, 0x1000, true)]);
    assert_eq!(q.take(&mut ram, MEM).unwrap().len(), 1);
    // An address that overflows, and the longest length at the top of memory.
    let (mut ram, mut q, mut d) = setup(8);
    d.offer(&mut ram, &[(u64::MAX - 1, 4, false)]);
    broken(&mut q, &mut ram, "past the end");
    let (mut ram, mut q, mut d) = setup(8);
    d.offer(&mut ram, &[(0x1000, 4, false), (0x2000, u32::MAX, true)]);
    broken(&mut q, &mut ram, "descriptor 1: buffer 0x2000+0xffffffff");
    // The queue itself past the end of memory, or straddling it.
    let (mut ram, mut q, _) = setup(8);
    q.pfn = 0x100;
    broken(&mut q, &mut ram, "queue at 0x100000..");
    let (mut ram, mut q, _) = setup(8);
    q.pfn = 0xff;
    broken(&mut q, &mut ram, "lies past the end of guest memory");
    let (mut ram, mut q, _) = setup(8);
    q.pfn = u32::MAX;
    broken(&mut q, &mut ram, "queue at 0xffffffff000..");
    // Memory that is smaller than the limit the device was told: the read fails.
    let mut ram = Ram::new(0x4000);
    let mut q = Queue::new(8);
    q.pfn = 4;
    broken(&mut q, &mut ram, "reading the queue: bad arg");
}

#[test]
fn odd_queue_sizes_break_the_queue_without_a_panic() {
    for size in [0, 3, 100, u16::MAX] {
        let mut ram = Ram::new(MEM as usize);
        let mut q = Queue::new(size);
        q.pfn = 1;
        q.put(&mut ram, &[(0, 1)]).unwrap();
        assert_eq!(ram.writes, 0);
        broken(&mut q, &mut ram, "not a power of two");
    }
    // The largest legal size: its rings take 852 KiB.
    let mut ram = Ram::new(MEM as usize);
    let mut q = Queue::new(32768);
    q.pfn = 1;
    assert!(q.take(&mut ram, MEM).unwrap().is_empty());
    q.pfn = 0x80;
    broken(&mut q, &mut ram, "past the end of guest memory");
}

#[test]
fn unset_queue_takes_and_gives_nothing() {
    let (mut ram, mut q, mut d) = setup(8);
    d.offer(&mut ram, &[(0x1000, 4, false)]);
    q.pfn = 0;
    assert!(q.take(&mut ram, MEM).unwrap().is_empty());
    q.put(&mut ram, &[(0, 4)]).unwrap();
    assert_eq!((ram.reads, ram.writes), (0, 0));
}

#[test]
fn no_interrupt_flag_is_read() {
    let (mut ram, mut q, mut d) = setup(8);
    d.offer(&mut ram, &[(0x1000, 4, false)]);
    let avail = 4 * 4096 + 16 * 8;
    ram.b[avail] = AVAIL_F_NO_INTERRUPT as u8;
    q.take(&mut ram, MEM).unwrap();
    assert!(!q.wants_interrupt());
}

/// Random bytes where the ring lies: every take is chains inside memory and the table,
/// or a reason; never a panic.
#[test]
fn random_rings_are_chains_or_reasons() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let limit = 0x8000;
    for round in 0..2000 {
        let size = 1u16 << (round % 5);
        let mut ram = Ram::new(limit as usize);
        for b in ram.b[0x1000..0x2000].chunks_mut(8) {
            let v = next();
            // Small addresses and lengths half the time, so that some chains are good.
            let v = if v & 1 == 0 {
                v & 0x0003_0007_0000_7fff
            } else {
                v
            };
            b.copy_from_slice(&v.to_le_bytes()[..b.len()]);
        }
        let mut q = Queue::new(size);
        q.pfn = 1;
        for _ in 0..4 {
            match q.take(&mut ram, limit) {
                Ok(chains) => {
                    for c in &chains {
                        assert!(c.head < size && c.bufs.len() <= usize::from(size));
                        for b in &c.bufs {
                            assert!(b.addr + u64::from(b.len) <= limit);
                        }
                    }
                    let done: Vec<(u16, u32)> = chains.iter().map(|c| (c.head, 0)).collect();
                    q.put(&mut ram, &done).unwrap();
                }
                Err(why) => {
                    assert!(!why.is_empty() && !q.ready());
                    break;
                }
            }
            let v = next();
            ram.b[0x1000 + (v as usize % 0x1000)] = (v >> 32) as u8;
        }
    }
}
