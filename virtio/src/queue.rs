//! The device side of a legacy (virtio 0.9.5) split virtqueue: the descriptor table, the
//! available ring the driver fills and the used ring the device fills, laid out from one
//! page frame number as the legacy PCI transport places them (used ring on the next
//! 4 KiB boundary). One home for the vmx tool's devices and the kernel's.
//!
//! Guest memory is reached through [`GuestMem`], and every access is batched (the tool's
//! memory is 9P reads and writes of a segment's `data`): one read of the descriptor table
//! and available ring per notification, one read or write per contiguous run of buffers,
//! one write of the new used entries (two when they wrap) and one of the used index. The
//! ring's bytes are read into a buffer the queue keeps, so a notification allocates only
//! the chains it returns.
//!
//! Everything in the ring is the guest's, so hostile: nothing in it can panic the device.
//! A bad ring (an index running ahead, a descriptor out of the table, a loop, an indirect
//! descriptor, a buffer outside guest memory, a queue that does not fit) breaks the queue
//! with a reason, and it stays broken, touching no memory, until the driver resets the
//! device.

use crate::ring::{Desc, Layout, UsedElem, LEGACY_ALIGN, USED_ELEM_SIZE};
pub use crate::ring::{AVAIL_F_NO_INTERRUPT, DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Guest-physical memory as the device sees it. An access outside the guest's memory is
/// an error with a reason, never a panic.
pub trait GuestMem {
    /// Fills `buf` from `addr`: all of it, or an error.
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), String>;
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

/// Adjacent buffers merged into runs (address, length), each one transfer.
fn runs(bufs: &[Buf]) -> impl Iterator<Item = (u64, u64)> + '_ {
    let mut it = bufs.iter().filter(|b| b.len > 0).peekable();
    core::iter::from_fn(move || {
        let first = it.next()?;
        let (a, mut n) = (first.addr, u64::from(first.len));
        while let Some(b) = it.next_if(|b| a.checked_add(n) == Some(b.addr)) {
            n += u64::from(b.len);
        }
        Some((a, n))
    })
}

/// Reads the buffers' first bytes into `out`, one read per contiguous run, without
/// allocating: as many as fit (the rest are left unread); returns how many were read.
/// The way for a device whose buffers must stay bounded (a chain may name all of guest
/// memory, many times over).
pub fn gather_into<M: GuestMem + ?Sized>(
    mem: &mut M,
    bufs: &[Buf],
    out: &mut [u8],
) -> Result<usize, String> {
    let mut at = 0;
    for (a, n) in runs(bufs) {
        let k = usize::try_from(n).unwrap_or(usize::MAX).min(out.len() - at);
        if k == 0 {
            break;
        }
        mem.read(a, &mut out[at..at + k])?;
        at += k;
    }
    Ok(at)
}

/// Reads the buffers' bytes, one read per contiguous run, into a vector of their total
/// length (the tool's way; see [`gather_into`] for a bounded one).
pub fn gather<M: GuestMem + ?Sized>(mem: &mut M, bufs: &[Buf]) -> Result<Vec<u8>, String> {
    let total: u64 = bufs.iter().map(|b| u64::from(b.len)).sum();
    let total = usize::try_from(total).map_err(|_| format!("buffers of {total} bytes"))?;
    let mut out = alloc::vec![0u8; total];
    let mut at = 0;
    for (a, n) in runs(bufs) {
        let n = n as usize;
        mem.read(a, &mut out[at..at + n])?;
        at += n;
    }
    Ok(out)
}

/// Writes `data` across the buffers in order, one write per contiguous run; returns the
/// bytes written (at most the buffers' total).
pub fn scatter<M: GuestMem + ?Sized>(
    mem: &mut M,
    bufs: &[Buf],
    data: &[u8],
) -> Result<u32, String> {
    let mut done = 0usize;
    for (a, n) in runs(bufs) {
        if done == data.len() {
            break;
        }
        let k = usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(data.len() - done);
        mem.write(a, &data[done..done + k])?;
        done += k;
    }
    Ok(u32::try_from(done).unwrap_or(u32::MAX))
}

/// The little-endian u16 at `off` in `b` (0 past its end; callers read inside it).
fn u16_at(b: &[u8], off: usize) -> u16 {
    match b.get(off..off + 2) {
        Some(&[lo, hi]) => u16::from_le_bytes([lo, hi]),
        _ => 0,
    }
}

/// How much one serve of a queue may do before it returns, the rest left in the ring
/// (and in the device) for the next: chains taken, and bytes of data moved. A device
/// that serves on the guest's CPU (the kernel's) bounds what one notify costs with it;
/// [`Budget::WHOLE`] serves every chain there is (the tool's devices).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub chains: u16,
    pub bytes: u64,
}

impl Budget {
    /// No bound: the whole ring at once.
    pub const WHOLE: Budget = Budget {
        chains: u16::MAX,
        bytes: u64::MAX,
    };
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
    /// The driver's available index as last read (ahead of `last_avail` when a take
    /// left chains in the ring).
    avail_idx: u16,
    /// The used index as last written.
    used_idx: u16,
    /// The driver's AVAIL_F_NO_INTERRUPT as last read.
    no_interrupt: bool,
    /// Why the queue stopped, if it did.
    pub broken: Option<String>,
    /// The descriptor table and available ring as last read (kept to be reused).
    ring: Vec<u8>,
}

impl Queue {
    pub fn new(size: u16) -> Queue {
        Queue {
            size,
            pfn: 0,
            last_avail: 0,
            avail_idx: 0,
            used_idx: 0,
            no_interrupt: false,
            broken: None,
            ring: Vec::new(),
        }
    }

    /// Back to the state after a device reset.
    pub fn reset(&mut self) {
        let ring = core::mem::take(&mut self.ring);
        *self = Queue::new(self.size);
        self.ring = ring;
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
    pub fn take<M: GuestMem + ?Sized>(
        &mut self,
        mem: &mut M,
        limit: u64,
    ) -> Result<Vec<Chain>, String> {
        self.take_some(mem, limit, u16::MAX)
    }

    /// Chains were left in the ring by a take that stopped at its `most` (as of that
    /// take's reading of the driver's index): the next take starts with them.
    pub fn behind(&self) -> bool {
        self.ready() && self.avail_idx != self.last_avail
    }

    /// As [`Queue::take`], but at most `most` chains, oldest first; the rest stay in
    /// the ring ([`Queue::behind`]).
    pub fn take_some<M: GuestMem + ?Sized>(
        &mut self,
        mem: &mut M,
        limit: u64,
        most: u16,
    ) -> Result<Vec<Chain>, String> {
        if let Some(b) = &self.broken {
            return Err(b.clone());
        }
        if self.pfn == 0 {
            return Ok(Vec::new());
        }
        if !self.size.is_power_of_two() {
            let why = format!("queue size {} is not a power of two", self.size);
            return Err(self.fail(why));
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
        let mut ring = core::mem::take(&mut self.ring);
        ring.resize(len, 0);
        let got = mem.read(self.addr(0), &mut ring);
        let out = got
            .map_err(|e| format!("reading the queue: {e}"))
            .and_then(|()| self.chains(&ring, limit, most));
        self.ring = ring;
        out.map_err(|why| self.fail(why))
    }

    /// The chains between the last available index taken and the driver's (at most
    /// `most` of them), from the descriptor table and available ring in `ring`.
    fn chains(&mut self, ring: &[u8], limit: u64, most: u16) -> Result<Vec<Chain>, String> {
        let layout = self.layout();
        let no_interrupt = u16_at(ring, layout.avail_flags()) & AVAIL_F_NO_INTERRUPT != 0;
        let idx = u16_at(ring, layout.avail_idx());
        let count = idx.wrapping_sub(self.last_avail);
        if count > self.size {
            return Err(format!(
                "available index {idx} is {count} entries ahead of {} in a queue of {}",
                self.last_avail, self.size
            ));
        }
        let n = count.min(most);
        let mut chains = Vec::with_capacity(usize::from(n));
        for i in 0..n {
            let head = u16_at(ring, layout.avail_slot(self.last_avail.wrapping_add(i)));
            chains.push(self.chain(ring, head, limit)?);
        }
        self.no_interrupt = no_interrupt;
        self.avail_idx = idx;
        self.last_avail = self.last_avail.wrapping_add(n);
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
    /// write (two if they wrap), then the used index. A queue not set up (or broken)
    /// takes nothing back.
    pub fn put<M: GuestMem + ?Sized>(
        &mut self,
        mem: &mut M,
        done: &[(u16, u32)],
    ) -> Result<(), String> {
        if done.is_empty() || !self.ready() || !self.size.is_power_of_two() {
            return Ok(());
        }
        let layout = self.layout();
        let mut bytes = Vec::with_capacity(USED_ELEM_SIZE * done.len().min(usize::from(self.size)));
        let mut rest = done;
        let mut idx = self.used_idx;
        while !rest.is_empty() {
            let slot = idx % self.size;
            let k = usize::from(self.size - slot).min(rest.len());
            bytes.clear();
            for &(head, len) in &rest[..k] {
                let e = UsedElem {
                    id: u32::from(head),
                    len,
                };
                bytes.extend_from_slice(&e.encode());
            }
            mem.write(self.addr(layout.used_slot(idx)), &bytes)?;
            idx = idx.wrapping_add(k as u16);
            rest = &rest[k..];
        }
        self.used_idx = self.used_idx.wrapping_add(done.len() as u16);
        mem.write(self.addr(layout.used_idx()), &self.used_idx.to_le_bytes())
    }
}

#[cfg(test)]
mod tests;
