//! Legacy (virtio 0.9.5) split virtqueues in guest memory: the descriptor table, the
//! available ring the driver fills and the used ring the device fills, laid out from one
//! page frame number as the legacy PCI transport places them (used ring on the next
//! 4 KiB boundary).
//!
//! Guest memory is reached through [`Mem`] (9P reads and writes of the segment's `data`),
//! so every access is batched: one read of the descriptor table and available ring per
//! notification, one read or write per contiguous run of buffers, one write of the new
//! used entries (two when they wrap) and one of the used index. Nothing the guest writes
//! can panic the tool: a bad ring (an index running ahead, a descriptor out of the
//! table, a loop, an indirect descriptor, a buffer outside guest memory) breaks the queue
//! with a reason, and it stays broken until the driver resets the device.
//!
//! The ring's layout, flags and entry encodings are the `virtio` crate's ([`Layout`]).

use ::virtio::ring::{Desc, Layout, UsedElem, LEGACY_ALIGN};
pub use ::virtio::ring::{AVAIL_F_NO_INTERRUPT, DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE};

/// Guest-physical memory as the device sees it.
pub trait Mem {
    fn read(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, String>;
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), String>;
}

/// One buffer of a descriptor chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buf {
    pub addr: u64,
    pub len: u32,
    /// Device-writable.
    pub write: bool,
}

/// A descriptor chain the driver made available.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    /// The head descriptor's index: what goes back in the used ring.
    pub head: u16,
    pub bufs: Vec<Buf>,
}

impl Chain {
    pub fn readable(&self) -> Vec<Buf> {
        self.bufs.iter().filter(|b| !b.write).copied().collect()
    }

    pub fn writable(&self) -> Vec<Buf> {
        self.bufs.iter().filter(|b| b.write).copied().collect()
    }

    pub fn writable_len(&self) -> u64 {
        self.bufs
            .iter()
            .filter(|b| b.write)
            .map(|b| u64::from(b.len))
            .sum()
    }
}

/// Adjacent buffers merged into runs, each one transfer.
fn runs(bufs: &[Buf]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for b in bufs.iter().filter(|b| b.len > 0) {
        match out.last_mut() {
            Some((a, n)) if *a + *n == b.addr => *n += u64::from(b.len),
            _ => out.push((b.addr, u64::from(b.len))),
        }
    }
    out
}

/// Reads the buffers' bytes, one read per contiguous run.
pub fn gather(mem: &mut dyn Mem, bufs: &[Buf]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for (a, n) in runs(bufs) {
        let b = mem.read(a, n as usize)?;
        if b.len() as u64 != n {
            return Err(format!("short read of guest memory at {a:#x}"));
        }
        out.extend_from_slice(&b);
    }
    Ok(out)
}

/// Writes `data` across the buffers in order, one write per contiguous run; returns the
/// bytes written (at most the buffers' total).
pub fn scatter(mem: &mut dyn Mem, bufs: &[Buf], data: &[u8]) -> Result<u32, String> {
    let mut done = 0usize;
    for (a, n) in runs(bufs) {
        if done == data.len() {
            break;
        }
        let k = (n as usize).min(data.len() - done);
        mem.write(a, &data[done..done + k])?;
        done += k;
    }
    Ok(done as u32)
}

/// The little-endian u16 at `off` in `b` (0 past its end; callers read inside it).
fn u16_at(b: &[u8], off: usize) -> u16 {
    match b.get(off..off + 2) {
        Some(&[lo, hi]) => u16::from_le_bytes([lo, hi]),
        _ => 0,
    }
}

/// One virtqueue's device side.
#[derive(Clone, Debug)]
pub struct Queue {
    /// Entries (a power of two, fixed by the device).
    pub size: u16,
    /// The page frame number the driver wrote (0: not set up).
    pub pfn: u32,
    /// The next available entry to take.
    last_avail: u16,
    /// The used index as last written.
    used_idx: u16,
    /// The driver's AVAIL_F_NO_INTERRUPT as last read.
    no_interrupt: bool,
    /// Why the queue stopped, if it did.
    pub broken: Option<String>,
}

impl Queue {
    pub fn new(size: u16) -> Queue {
        Queue {
            size,
            pfn: 0,
            last_avail: 0,
            used_idx: 0,
            no_interrupt: false,
            broken: None,
        }
    }

    /// Back to the state after a device reset.
    pub fn reset(&mut self) {
        *self = Queue::new(self.size);
    }

    pub fn ready(&self) -> bool {
        self.pfn != 0 && self.broken.is_none()
    }

    fn layout(&self) -> Layout {
        Layout::legacy(self.size)
    }

    /// Guest-physical address of `offset` in the ring (from the descriptor table).
    fn addr(&self, offset: usize) -> u64 {
        u64::from(self.pfn) * LEGACY_ALIGN as u64 + offset as u64
    }

    /// The end of the used ring (flags, index, entries, avail_event).
    fn end(&self) -> u64 {
        self.addr(self.layout().end())
    }

    /// Whether the driver wants an interrupt for used buffers (as of the last take).
    pub fn wants_interrupt(&self) -> bool {
        !self.no_interrupt
    }

    fn fail(&mut self, why: String) -> String {
        self.broken = Some(why.clone());
        why
    }

    /// Takes every chain the driver made available since the last call. `limit` is the
    /// end of guest memory. On a bad ring the queue breaks and the reason comes back.
    pub fn take(&mut self, mem: &mut dyn Mem, limit: u64) -> Result<Vec<Chain>, String> {
        if let Some(b) = &self.broken {
            return Err(b.clone());
        }
        if self.pfn == 0 {
            return Ok(Vec::new());
        }
        if self.end() > limit {
            let why = format!(
                "queue at {:#x}..{:#x} lies past the end of guest memory ({limit:#x})",
                self.addr(0),
                self.end()
            );
            return Err(self.fail(why));
        }
        let layout = self.layout();
        // The descriptor table and the available ring (without used_event) are adjacent:
        // one read.
        let len = layout.avail_slot(0) + 2 * usize::from(self.size);
        let ring = match mem.read(self.addr(0), len) {
            Ok(r) => r,
            Err(e) => return Err(self.fail(format!("reading the queue: {e}"))),
        };
        if ring.len() != len {
            return Err(self.fail("short read of the queue".into()));
        }
        self.no_interrupt = u16_at(&ring, layout.avail_flags()) & AVAIL_F_NO_INTERRUPT != 0;
        let idx = u16_at(&ring, layout.avail_idx());
        let count = idx.wrapping_sub(self.last_avail);
        if count > self.size {
            let why = format!(
                "available index {idx} is {count} entries ahead of {} in a queue of {}",
                self.last_avail, self.size
            );
            return Err(self.fail(why));
        }
        let mut chains = Vec::with_capacity(usize::from(count));
        for i in 0..count {
            let head = u16_at(&ring, layout.avail_slot(self.last_avail.wrapping_add(i)));
            match self.chain(&ring, head, limit) {
                Ok(c) => chains.push(c),
                Err(why) => return Err(self.fail(why)),
            }
        }
        self.last_avail = idx;
        Ok(chains)
    }

    fn chain(&self, ring: &[u8], head: u16, limit: u64) -> Result<Chain, String> {
        let mut bufs = Vec::new();
        let mut d = head;
        loop {
            if d >= self.size {
                return Err(format!(
                    "descriptor {d} is outside the table of {}",
                    self.size
                ));
            }
            if bufs.len() >= usize::from(self.size) {
                return Err(format!(
                    "the chain from descriptor {head} loops (more than {} descriptors)",
                    self.size
                ));
            }
            let Some(Desc {
                addr,
                len,
                flags,
                next,
            }) = ring.get(self.layout().desc_at(d)..).and_then(Desc::decode)
            else {
                return Err(format!("descriptor {d} is outside the ring read"));
            };
            if flags & DESC_F_INDIRECT != 0 {
                return Err(format!("descriptor {d} is indirect, a feature not offered"));
            }
            if addr
                .checked_add(u64::from(len))
                .is_none_or(|end| end > limit)
            {
                return Err(format!(
                    "descriptor {d}: buffer {addr:#x}+{len:#x} lies past the end of guest memory ({limit:#x})"
                ));
            }
            bufs.push(Buf {
                addr,
                len,
                write: flags & DESC_F_WRITE != 0,
            });
            if flags & DESC_F_NEXT == 0 {
                return Ok(Chain { head, bufs });
            }
            d = next;
        }
    }

    /// Returns chains to the driver: (head, bytes written) in order, the entries in one
    /// write (two if they wrap), then the used index.
    pub fn put(&mut self, mem: &mut dyn Mem, done: &[(u16, u32)]) -> Result<(), String> {
        if done.is_empty() {
            return Ok(());
        }
        let layout = self.layout();
        let entries: Vec<[u8; 8]> = done
            .iter()
            .map(|&(head, len)| {
                UsedElem {
                    id: u32::from(head),
                    len,
                }
                .encode()
            })
            .collect();
        let mut i = 0;
        while i < entries.len() {
            let idx = self.used_idx.wrapping_add(i as u16);
            let slot = idx % self.size;
            let k = (usize::from(self.size - slot)).min(entries.len() - i);
            let bytes: Vec<u8> = entries[i..i + k].iter().flatten().copied().collect();
            mem.write(self.addr(layout.used_slot(idx)), &bytes)?;
            i += k;
        }
        self.used_idx = self.used_idx.wrapping_add(done.len() as u16);
        mem.write(self.addr(layout.used_idx()), &self.used_idx.to_le_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::testing::{Driver, Ram};

    fn setup(size: u16) -> (Ram, Queue, Driver) {
        let ram = Ram::new(1 << 20);
        let mut q = Queue::new(size);
        q.pfn = 4;
        (ram, q, Driver::new(size, 4))
    }

    #[test]
    fn chains_in_one_read_and_used_in_two_writes() {
        let (mut ram, mut q, mut d) = setup(8);
        let h1 = d.offer(
            &mut ram,
            &[(0x1000, 16, false), (0x2000, 512, true), (0x2200, 1, true)],
        );
        let h2 = d.offer(&mut ram, &[(0x3000, 4, false)]);
        let c = q.take(&mut ram, 1 << 20).unwrap();
        assert_eq!(ram.reads, 1);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].head, h1);
        assert_eq!(
            c[0].bufs,
            [
                Buf {
                    addr: 0x1000,
                    len: 16,
                    write: false
                },
                Buf {
                    addr: 0x2000,
                    len: 512,
                    write: true
                },
                Buf {
                    addr: 0x2200,
                    len: 1,
                    write: true
                },
            ]
        );
        assert_eq!(c[0].writable_len(), 513);
        assert_eq!(c[1].head, h2);
        // Nothing new: nothing taken.
        assert!(q.take(&mut ram, 1 << 20).unwrap().is_empty());
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
            Buf {
                addr: 0x100,
                len: 4,
                write: false,
            },
            Buf {
                addr: 0x104,
                len: 4,
                write: false,
            },
            Buf {
                addr: 0x200,
                len: 0,
                write: false,
            },
        ];
        assert_eq!(gather(&mut ram, &bufs).unwrap(), b"abcdefgh");
        assert_eq!(ram.reads, 1);
        let out = [
            Buf {
                addr: 0x300,
                len: 2,
                write: true,
            },
            Buf {
                addr: 0x302,
                len: 2,
                write: true,
            },
            Buf {
                addr: 0x400,
                len: 8,
                write: true,
            },
        ];
        assert_eq!(scatter(&mut ram, &out, b"123456").unwrap(), 6);
        assert_eq!(ram.writes, 2);
        assert_eq!(&ram.b[0x300..0x304], b"1234");
        assert_eq!(&ram.b[0x400..0x402], b"56");
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
        let c = q.take(&mut ram, 1 << 20).unwrap();
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

    fn broken(q: &mut Queue, ram: &mut Ram, want: &str) {
        let e = q.take(ram, 1 << 20).unwrap_err();
        assert!(e.contains(want), "{e}");
        assert!(!q.ready());
        // It stays broken, without touching memory, until reset.
        let r = ram.reads;
        assert_eq!(q.take(ram, 1 << 20).unwrap_err(), e);
        assert_eq!(ram.reads, r);
        q.reset();
        assert!(q.broken.is_none() && q.pfn == 0);
    }

    #[test]
    fn bad_rings_break_the_queue() {
        // A buffer past the end of guest memory.
        let (mut ram, mut q, mut d) = setup(8);
        d.offer(&mut ram, &[(0xff000, 0x2000, true)]);
        broken(&mut q, &mut ram, "past the end of guest memory");
        // An address that overflows.
        let (mut ram, mut q, mut d) = setup(8);
        d.offer(&mut ram, &[(u64::MAX - 1, 4, false)]);
        broken(&mut q, &mut ram, "past the end");
        // A loop: descriptor 1 points back to 0.
        let (mut ram, mut q, mut d) = setup(8);
        d.desc(&mut ram, 0, 0x1000, 4, DESC_F_NEXT, 1);
        d.desc(&mut ram, 1, 0x1000, 4, DESC_F_NEXT, 0);
        d.publish(&mut ram, 0);
        broken(&mut q, &mut ram, "loops");
        // A next index outside the table, and a head outside it.
        let (mut ram, mut q, mut d) = setup(8);
        d.desc(&mut ram, 0, 0x1000, 4, DESC_F_NEXT, 8);
        d.publish(&mut ram, 0);
        broken(&mut q, &mut ram, "outside the table");
        let (mut ram, mut q, mut d) = setup(8);
        d.publish(&mut ram, 200);
        broken(&mut q, &mut ram, "descriptor 200 is outside");
        // Indirect descriptors were not offered.
        let (mut ram, mut q, mut d) = setup(8);
        d.desc(&mut ram, 0, 0x1000, 32, DESC_F_INDIRECT, 0);
        d.publish(&mut ram, 0);
        broken(&mut q, &mut ram, "indirect");
        // The available index running more than a ring ahead.
        let (mut ram, mut q, mut d) = setup(8);
        d.set_avail_idx(&mut ram, 9);
        broken(&mut q, &mut ram, "ahead");
        // The queue itself past the end of memory.
        let (mut ram, mut q, _) = setup(8);
        q.pfn = 0x100;
        broken(&mut q, &mut ram, "queue at");
        // A PFN so large the addresses overflow u64 is impossible (u32 PFN), and an
        // unset queue takes nothing.
        let (mut ram, mut q, _) = setup(8);
        q.pfn = 0;
        assert!(q.take(&mut ram, 1 << 20).unwrap().is_empty());
    }

    #[test]
    fn no_interrupt_flag_is_read() {
        let (mut ram, mut q, mut d) = setup(8);
        d.offer(&mut ram, &[(0x1000, 4, false)]);
        let avail = 4 * 4096 + 16 * 8;
        ram.b[avail] = AVAIL_F_NO_INTERRUPT as u8;
        q.take(&mut ram, 1 << 20).unwrap();
        assert!(!q.wants_interrupt());
    }
}
