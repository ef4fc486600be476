//! The driver's side of legacy virtqueues and a byte-array guest memory, for tests of
//! the devices that use [`crate::queue`] (this crate's, the vmx tool's and the fuzz
//! target's). Nothing here checks its arguments: it is the test's driver, not a guest.

use crate::queue::{GuestMem, DESC_F_NEXT, DESC_F_WRITE};
use crate::ring::{Desc, Layout, LEGACY_ALIGN};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

/// Guest memory as a byte array, counting transfers.
pub struct Ram {
    pub b: Vec<u8>,
    pub reads: usize,
    pub writes: usize,
}

impl Ram {
    pub fn new(size: usize) -> Ram {
        Ram {
            b: vec![0; size],
            reads: 0,
            writes: 0,
        }
    }

    /// The bytes at `addr..addr + len`, if they are all inside the array.
    pub fn get(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let a = usize::try_from(addr).ok()?;
        self.b.get(a..a.checked_add(len)?)
    }

    fn get_mut(&mut self, addr: u64, len: usize) -> Option<&mut [u8]> {
        let a = usize::try_from(addr).ok()?;
        self.b.get_mut(a..a.checked_add(len)?)
    }
}

/// The error of an access outside the array (as a 9P segment's `data` answers one).
pub const OUTSIDE: &str = "bad arg in system call";

impl GuestMem for Ram {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), String> {
        self.reads += 1;
        buf.copy_from_slice(self.get(addr, buf.len()).ok_or(OUTSIDE)?);
        Ok(())
    }
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), String> {
        self.writes += 1;
        self.get_mut(addr, data.len())
            .ok_or(OUTSIDE)?
            .copy_from_slice(data);
        Ok(())
    }
}

/// The driver's side of a queue at `pfn`, as Linux's virtio_ring lays it out.
pub struct Driver {
    pub size: u16,
    pub pfn: u32,
    pub avail_idx: u16,
    pub next_desc: u16,
}

impl Driver {
    pub fn new(size: u16, pfn: u32) -> Driver {
        Driver {
            size,
            pfn,
            avail_idx: 0,
            next_desc: 0,
        }
    }
    fn base(&self) -> usize {
        self.pfn as usize * LEGACY_ALIGN
    }
    fn layout(&self) -> Layout {
        Layout::legacy(self.size)
    }
    pub fn desc(&self, ram: &mut Ram, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let o = self.base() + self.layout().desc_at(i);
        let d = Desc {
            addr,
            len,
            flags,
            next,
        };
        ram.b[o..o + 16].copy_from_slice(&d.encode());
    }
    /// Makes a chain of (addr, len, writable) buffers available, using descriptors
    /// round-robin; returns its head.
    pub fn offer(&mut self, ram: &mut Ram, bufs: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (i, (a, l, w)) in bufs.iter().enumerate() {
            let d = self.next_desc;
            let next = (d + 1) % self.size;
            let last = i + 1 == bufs.len();
            let flags = if *w { DESC_F_WRITE } else { 0 } | if last { 0 } else { DESC_F_NEXT };
            self.desc(ram, d, *a, *l, flags, next);
            self.next_desc = next;
        }
        self.publish(ram, head);
        head
    }
    pub fn publish(&mut self, ram: &mut Ram, head: u16) {
        let slot = self.base() + self.layout().avail_slot(self.avail_idx);
        ram.b[slot..slot + 2].copy_from_slice(&head.to_le_bytes());
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.set_avail_idx(ram, self.avail_idx);
    }
    pub fn set_avail_idx(&mut self, ram: &mut Ram, idx: u16) {
        let at = self.base() + self.layout().avail_idx();
        ram.b[at..at + 2].copy_from_slice(&idx.to_le_bytes());
    }
    pub fn used_idx(&self, ram: &Ram) -> u16 {
        let u = self.base() + self.layout().used_idx();
        u16::from_le_bytes([ram.b[u], ram.b[u + 1]])
    }
    pub fn used_entry(&self, ram: &Ram, slot: u16) -> (u32, u32) {
        let o = self.base() + self.layout().used_slot(slot);
        let g = |o: usize| u32::from_le_bytes(ram.b[o..o + 4].try_into().unwrap_or_default());
        (g(o), g(o + 4))
    }
}
