use super::*;
use crate::queue::Queue;
use crate::testing::{Driver, Ram};
use alloc::vec;

fn disk() -> Vec<u8> {
    (0..8 * 512u32)
        .map(|i| (i / 512) as u8 ^ (i as u8))
        .collect()
}

fn header(ram: &mut Ram, at: usize, ty: u32, sector: u64) {
    ram.b[at..at + 4].copy_from_slice(&ty.to_le_bytes());
    ram.b[at + 8..at + 16].copy_from_slice(&sector.to_le_bytes());
}

fn one(blk: &mut Blk, ram: &mut Ram, bufs: &[(u64, u32, bool)]) -> Result<u32, String> {
    let mut q = Queue::new(8);
    q.pfn = 16;
    let mut d = Driver::new(8, 16);
    d.offer(ram, bufs);
    let c = q.take(ram, 1 << 20).unwrap();
    blk.serve(&c[0], ram)
}

#[test]
fn read_write_flush_id() {
    let mut blk = Blk::new(Box::new(disk()), false, "vmx-disk-0");
    assert_eq!(blk.config()[..8], 8u64.to_le_bytes());
    assert_eq!(blk.features(), F_FLUSH | F_SEG_MAX | F_TOPOLOGY);
    assert_eq!(blk.config()[28..32], OPT_IO.to_le_bytes());
    assert_eq!(OPT_IO, 1008);
    assert_eq!(blk.config()[12..16], SEG_MAX.to_le_bytes());
    assert_eq!(SEG_MAX, 126);
    let mut ram = Ram::new(1 << 20);
    // Read sectors 2 and 3 into two pages, status separate.
    header(&mut ram, 0x1000, T_IN, 2);
    let n = one(
        &mut blk,
        &mut ram,
        &[
            (0x1000, 16, false),
            (0x2000, 512, true),
            (0x3000, 512, true),
            (0x4000, 1, true),
        ],
    )
    .unwrap();
    assert_eq!(n, 1025);
    assert_eq!(ram.b[0x2000..0x2200], disk()[1024..1536]);
    assert_eq!(ram.b[0x3000..0x3200], disk()[1536..2048]);
    assert_eq!(ram.b[0x4000], S_OK);
    // Write sector 7 from guest memory, the data after the header in its buffer.
    header(&mut ram, 0x5000 - 16, T_OUT, 7);
    ram.b[0x5000..0x5200].fill(0xab);
    ram.b[0x4000] = 0xff;
    one(
        &mut blk,
        &mut ram,
        &[(0x5000 - 16, 528, false), (0x4000, 1, true)],
    )
    .unwrap();
    assert_eq!(ram.b[0x4000], S_OK);
    let mut s = [0u8; 512];
    blk.disk.read_at(7 * 512, &mut s).unwrap();
    assert_eq!(s, [0xab; 512]);
    // Flush, get-ID, and an unknown type.
    header(&mut ram, 0x1000, T_FLUSH, 0);
    one(
        &mut blk,
        &mut ram,
        &[(0x1000, 16, false), (0x4000, 1, true)],
    )
    .unwrap();
    assert_eq!(ram.b[0x4000], S_OK);
    header(&mut ram, 0x1000, T_GET_ID, 0);
    one(
        &mut blk,
        &mut ram,
        &[(0x1000, 16, false), (0x6000, 20, true), (0x4000, 1, true)],
    )
    .unwrap();
    assert_eq!(&ram.b[0x6000..0x600b], b"vmx-disk-0\0");
    header(&mut ram, 0x1000, 99, 0);
    one(
        &mut blk,
        &mut ram,
        &[(0x1000, 16, false), (0x4000, 1, true)],
    )
    .unwrap();
    assert_eq!(ram.b[0x4000], S_UNSUPP);
    assert_eq!((blk.reads, blk.writes), (1, 1));
}

#[test]
fn a_read_larger_than_the_chunk_moves_in_pieces() {
    let big: Vec<u8> = (0..(3 * CHUNK as u32)).map(|i| (i % 251) as u8).collect();
    let mut blk = Blk::new(Box::new(big.clone()), false, "big");
    let mut ram = Ram::new(1 << 20);
    header(&mut ram, 0x1000, T_IN, 1);
    let len = 2 * CHUNK as u32 + 512;
    one(
        &mut blk,
        &mut ram,
        &[(0x1000, 16, false), (0x40000, len, true), (0x2000, 1, true)],
    )
    .unwrap();
    assert_eq!(ram.b[0x2000], S_OK);
    assert_eq!(
        ram.b[0x40000..0x40000 + len as usize],
        big[512..512 + len as usize]
    );
    // And back: written from one buffer to sector 0.
    header(&mut ram, 0x1000, T_OUT, 0);
    one(
        &mut blk,
        &mut ram,
        &[
            (0x1000, 16, false),
            (0x40000, len, false),
            (0x2000, 1, true),
        ],
    )
    .unwrap();
    let mut got = vec![0u8; len as usize];
    blk.disk.read_at(0, &mut got).unwrap();
    assert_eq!(got, big[512..512 + len as usize]);
}

#[test]
fn errors_are_statuses() {
    let mut blk = Blk::new(Box::new(disk()), true, "ro");
    assert_eq!(blk.features(), F_FLUSH | F_SEG_MAX | F_TOPOLOGY | F_RO);
    let mut ram = Ram::new(1 << 20);
    // Past the end of the disk, and a sector number that overflows.
    for sector in [7, u64::MAX / 4] {
        header(&mut ram, 0x1000, T_IN, sector);
        one(
            &mut blk,
            &mut ram,
            &[(0x1000, 16, false), (0x2000, 1024, true), (0x4000, 1, true)],
        )
        .unwrap();
        assert_eq!(ram.b[0x4000], S_IOERR);
    }
    // A write to a read-only disk.
    header(&mut ram, 0x1000, T_OUT, 0);
    ram.b[0x4000] = 0;
    one(
        &mut blk,
        &mut ram,
        &[(0x1000, 16, false), (0x5000, 512, false), (0x4000, 1, true)],
    )
    .unwrap();
    assert_eq!(ram.b[0x4000], S_IOERR);
    assert_eq!(blk.disk.size(), 4096);
    let mut b = vec![0; 4096];
    blk.disk.read_at(0, &mut b).unwrap();
    assert_eq!(disk(), b);
    // No status byte, or a short header: the chain carries no request.
    header(&mut ram, 0x1000, T_IN, 0);
    assert!(one(&mut blk, &mut ram, &[(0x1000, 16, false)]).is_err());
    assert!(one(&mut blk, &mut ram, &[(0x1000, 8, false), (0x4000, 1, true)]).is_err());
}

/// A disk of `n` bytes whose requests are parked for a server.
struct Parked(u64);

impl Capacity for Parked {
    fn bytes(&self) -> u64 {
        self.0
    }
    fn deferred(&self) -> bool {
        true
    }
}

impl<M: ?Sized> Disk<M> for Parked {
    fn get(&mut self, _: &mut M, _: u64, _: &mut [u8]) -> Result<(), IoError> {
        Err(IoError)
    }
    fn put(&mut self, _: &mut M, _: u64, _: &[u8]) -> Result<(), IoError> {
        Err(IoError)
    }
    fn sync(&mut self, _: &mut M) -> Result<(), IoError> {
        Err(IoError)
    }
}

#[test]
fn a_deferred_disk_parks_requests_until_completed() {
    let mut blk = Blk::with_disk(Parked(8 * 512), false, "q");
    let mut ram = Ram::new(1 << 20);
    let mut q = Queue::new(16);
    q.pfn = 16;
    let mut d = Driver::new(16, 16);
    // A write of two sectors (data split over two buffers), a read of one, GET_ID.
    header(&mut ram, 0x1000, T_OUT, 3);
    ram.b[0x1010..0x1210].fill(1);
    ram.b[0x3000..0x3200].fill(2);
    d.offer(
        &mut ram,
        &[
            (0x1000, 0x210, false),
            (0x3000, 512, false),
            (0x4000, 1, true),
        ],
    );
    header(&mut ram, 0x5000, T_IN, 7);
    d.offer(
        &mut ram,
        &[(0x5000, 16, false), (0x6000, 512, true), (0x7000, 1, true)],
    );
    header(&mut ram, 0x8000, T_GET_ID, 0);
    d.offer(
        &mut ram,
        &[(0x8000, 16, false), (0x9000, 20, true), (0xa000, 1, true)],
    );
    assert_eq!(blk.serve_queue(&mut q, &mut ram, 1 << 20), Ok(true));
    // GET_ID was answered at once; the others wait.
    assert_eq!(d.used_idx(&ram), 1);
    let reqs: Vec<Request> = blk.parked().cloned().collect();
    assert_eq!(reqs.len(), 2);
    let (w, r) = (&reqs[0], &reqs[1]);
    assert_eq!((w.op, w.off, w.len), (Op::Out, 3 * 512, 1024));
    assert_eq!((r.op, r.off, r.len), (Op::In, 7 * 512, 512));
    let mut out = vec![0u8; 1000];
    assert_eq!(blk.write_data(w, &mut ram, 10, &mut out), Ok(1000));
    assert!(out[..502].iter().all(|&b| b == 1) && out[502..].iter().all(|&b| b == 2));
    assert_eq!(blk.write_data(w, &mut ram, 1000, &mut out), Ok(24));
    // The read's data in two pieces, then both completed (the read first).
    blk.read_data(r, &mut ram, 0, &[9; 100]).unwrap();
    blk.read_data(r, &mut ram, 100, &[8; 1000]).unwrap();
    assert!(ram.b[0x6000..0x6064].iter().all(|&b| b == 9));
    assert!(ram.b[0x6064..0x6200].iter().all(|&b| b == 8));
    assert_eq!(ram.b[0x6200], 0);
    assert_eq!(blk.complete(r.tag, &mut ram, true), Ok(Some((r.head, 513))));
    assert_eq!(ram.b[0x7000], S_OK);
    assert_eq!(blk.complete(w.tag, &mut ram, false), Ok(Some((w.head, 1))));
    assert_eq!(ram.b[0x4000], S_IOERR);
    assert_eq!(blk.complete(w.tag, &mut ram, true), Ok(None));
    assert_eq!((blk.reads, blk.writes), (1, 0));
    assert_eq!(blk.parked().count(), 0);
}

#[test]
fn a_driver_cannot_park_more_than_its_queue_holds() {
    let mut blk = Blk::with_disk(Parked(8 * 512), false, "q");
    let mut ram = Ram::new(1 << 20);
    let mut q = Queue::new(8);
    q.pfn = 16;
    let mut d = Driver::new(8, 16);
    header(&mut ram, 0x5000, T_FLUSH, 0);
    let head = d.offer(&mut ram, &[(0x5000, 16, false), (0x7000, 1, true)]);
    assert_eq!(blk.serve_queue(&mut q, &mut ram, 1 << 20), Ok(false));
    // The same head made available again and again while parked.
    for i in 0..7 {
        d.publish(&mut ram, head);
        assert_eq!(blk.serve_queue(&mut q, &mut ram, 1 << 20), Ok(false), "{i}");
    }
    d.publish(&mut ram, head);
    let e = blk.serve_queue(&mut q, &mut ram, 1 << 20).unwrap_err();
    assert!(e.contains("more than 8 requests outstanding"), "{e}");
    assert_eq!(q.broken, Some(e));
    assert_eq!(blk.parked().count(), 8);
    blk.reset();
    assert_eq!(blk.parked().count(), 0);
}
