//! The kblk target: the kernel's virtio-blk device (devvmx's `pci blk`, a segment disk or
//! a queue disk the client serves through `blkq`) driven through the namespace over
//! TestHw: the guest's ring image is the input's, uploaded into its RAM segment, then the
//! input's operations notify the device, poke ring bytes, reset the device, and read and
//! write `blkq` as a client would. Nothing may panic, a segment the VM does not map is
//! never touched, and every frame comes back when the VM and segments go.

use crate::world::{World, RAM};
use devvmx::testhw::Exit;
use ninep::{Read, Tree};
use virtio::blk::{T_FLUSH, T_IN, T_OUT};
use virtio::legacy::{R_ISR, R_QUEUE_NOTIFY, R_QUEUE_PFN, R_STATUS};
use virtio::ring::Layout;
use virtio::testing::{Driver, Ram};

/// The queue (128 entries, the kernel's) at 0x2000; buffers above 0x4000.
const PFN: u32 = 2;
const QSIZE: u16 = 128;
/// Where the kernel puts the disk's BAR.
const BAR: u16 = 0xc000;
/// The disk: 16 KiB.
const DISK: u64 = 0x4000;
/// At most this many operations per input.
const OPS: usize = 48;

fn span() -> usize {
    Layout::legacy(QSIZE).end()
}

/// The input's image: the ring and the first requests' headers (0x2000-0x4800).
const IMAGE: usize = 0x2800;

/// Input: `[mode] image (op a b c)...`. Mode bit 0: a queue disk (else a segment
/// disk); bit 1: read-only; bit 2: RAM mapped with holes and a read-only range (else
/// whole, rwx). The image fills 0x2000-0x4800 (the ring, then buffers); each op: 0 the guest notifies and
/// reads the ISR, 1 writes byte c at ring offset a|b<<8, 2 writes c at buffer offset
/// 0x4000 + (a|b<<8), 3 reads `blkq` (a*8 bytes), 4 writes the next a bytes of the
/// input to `blkq`, 5 resets the device (status 0) and gives it the queue again, 6
/// reads `blk` and `blkdirty`.
pub fn kblk(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut w = World::new(|_| {});
    let (mut ctl, mut other) = w.vm(mode & 4 != 0);
    let ro = if mode & 2 != 0 { " ro" } else { "" };
    let disk = if mode & 1 != 0 {
        format!("pci blk queue {DISK}{ro}")
    } else {
        w.segment("disk", DISK);
        format!("pci blk seg disk{ro}")
    };
    w.write(&mut ctl, 0, disk.as_bytes()).expect("pci blk");
    let mut ramdata = w.open(&["segment", "ram", "data"], 2);
    let (image, mut ops) = rest.split_at(IMAGE.min(rest.len()));
    if !image.is_empty() {
        let _ = w.write(&mut ramdata, u64::from(PFN) * 4096, image);
    }
    let mut blkq = w.open(&["vmx", "0", "blkq"], 2);
    let mut files = [
        w.open(&["vmx", "0", "blk"], 0),
        w.open(&["vmx", "0", "blkdirty"], 0),
    ];
    let setup = [
        Exit::io(0xcf8, 4, false, 0x8000_0804),
        Exit::io(0xcfc, 2, false, 1),
        Exit::io(BAR + R_QUEUE_PFN, 4, false, u64::from(PFN)),
    ];
    w.run(&mut ctl, &setup);
    let mut buf = vec![0u8; 4096];
    for _ in 0..OPS {
        let [op, a, b, c, tail @ ..] = ops else {
            break;
        };
        ops = tail;
        let at = u64::from(u16::from_le_bytes([*a, *b]));
        match op % 7 {
            0 => w.run(
                &mut ctl,
                &[
                    Exit::io(BAR + R_QUEUE_NOTIFY, 2, false, 0),
                    Exit::io(BAR + R_ISR, 1, true, 0),
                ],
            ),
            1 => {
                let off = u64::from(PFN) * 4096 + at % span() as u64;
                let _ = w.write(&mut ramdata, off, &[*c]);
            }
            2 => {
                let _ = w.write(&mut ramdata, 0x4000 + at % 0x4000, &[*c]);
            }
            3 => {
                let n = usize::from(*a) * 8;
                if let Ok(Read::Done(k)) = w.ns.read(&w.ctx, &mut blkq, 0, &mut buf[..n]) {
                    assert!(k <= n);
                }
            }
            4 => {
                let n = usize::from(*a).min(ops.len());
                let _ = w.write(&mut blkq, 0, &ops[..n]);
                ops = &ops[n..];
            }
            5 => w.run(
                &mut ctl,
                &[
                    Exit::io(BAR + R_STATUS, 1, false, 0),
                    Exit::io(BAR + R_QUEUE_PFN, 4, false, u64::from(PFN)),
                ],
            ),
            _ => {
                for f in files.iter_mut() {
                    if let Ok(Read::Done(k)) = w.ns.read(&w.ctx, f, 0, &mut buf) {
                        assert!(std::str::from_utf8(&buf[..k]).is_ok());
                    }
                }
            }
        }
    }
    w.other_untouched(&mut other, &mut buf);
    w.ns.remove(&w.ctx, &ctl).expect("quit");
    w.release(&["ram", "other", "disk"]);
}

/// Good rings: a read, a write and a flush made available, then notified; for the
/// queue disk, completions of them written to `blkq`.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut ram = Ram::new(RAM);
    let mut d = Driver::new(QSIZE, PFN);
    let header = |ram: &mut Ram, at: usize, ty: u32, sector: u64| {
        ram.b[at..at + 4].copy_from_slice(&ty.to_le_bytes());
        ram.b[at + 8..at + 16].copy_from_slice(&sector.to_le_bytes());
    };
    header(&mut ram, 0x4000, T_IN, 1);
    d.offer(
        &mut ram,
        &[(0x4000, 16, false), (0x5000, 512, true), (0x4100, 1, true)],
    );
    header(&mut ram, 0x4200, T_OUT, 8);
    d.offer(&mut ram, &[(0x4200, 16 + 512, false), (0x4101, 1, true)]);
    header(&mut ram, 0x4600, T_FLUSH, 0);
    d.offer(&mut ram, &[(0x4600, 16, false), (0x4102, 1, true)]);
    let base = PFN as usize * 4096;
    let image = &ram.b[base..base + IMAGE];
    let mut out = Vec::new();
    for mode in [0u8, 1, 2, 4, 5] {
        let mut s = vec![mode];
        s.extend_from_slice(image);
        s.extend_from_slice(&[0, 0, 0, 0]); // notify
        s.extend_from_slice(&[6, 0, 0, 0]);
        if mode & 1 != 0 {
            s.extend_from_slice(&[3, 200, 0, 0]);
            // The read's completion in three writes, then the write's and the flush's.
            let mut done = b"0 1 ok 512\n".to_vec();
            done.extend_from_slice(&[0x3c; 512]);
            done.extend_from_slice(b"0 2 ok 0\n0 3 err 0\n");
            for chunk in done.chunks(255) {
                s.extend_from_slice(&[4, chunk.len() as u8, 0, 0]);
                s.extend_from_slice(chunk);
            }
            s.extend_from_slice(&[0, 0, 0, 0]);
        }
        s.extend_from_slice(&[5, 0, 0, 0, 1, 0x40, 0x18, 0xff, 0, 0, 0, 0]);
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_run() {
        for s in seeds() {
            kblk(&s);
        }
    }
}
