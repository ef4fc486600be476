use super::*;
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
    assert_eq!(blk.features(), F_FLUSH);
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
    assert_eq!(blk.features(), F_FLUSH | F_RO);
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
