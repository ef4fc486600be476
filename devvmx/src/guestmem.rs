//! A VM's guest-physical memory as in-kernel devices see it: the `virtio` crate's
//! [`GuestMem`] over the VM's map, used on the VM's own CPU. A guest-physical address is
//! looked up in the map (`mem`), the mapped segment's frame is found in the frame list the
//! mapping shares ([`crate::segment::SegRef`]), and its bytes come through [`Hw::frame`],
//! which takes a frame, never an address: a device reaches only what the guest's map
//! names, and nothing of another VM's.
//!
//! An access may cross pages and mapping boundaries; any byte of it that is unmapped, or
//! mapped without the access's right (a device reads only readable ranges and writes only
//! writable ones), makes the whole access an error with a reason, before anything is
//! copied.

use crate::hw::{Frame, Hw, PAGE};
use crate::mem::MemMap;
use alloc::format;
use alloc::string::String;
use virtio::queue::GuestMem;

/// Map attribute bits a device access needs (the map's rwx: r is 1, w is 2).
const READ: u16 = 1;
const WRITE: u16 = 2;

/// One VM's memory, for one device call.
pub(crate) struct GuestRam<'a, H: Hw> {
    pub(crate) hw: &'a mut H,
    pub(crate) map: &'a MemMap,
}

impl<'a, H: Hw> GuestRam<'a, H> {
    pub(crate) fn new(hw: &'a mut H, map: &'a MemMap) -> Self {
        GuestRam { hw, map }
    }

    /// The end of the highest mapped range: the `limit` the queue code checks buffers
    /// against (holes below it are found at access time).
    pub(crate) fn limit(&self) -> u64 {
        self.map.end()
    }

    /// Checks that every byte of `addr..addr + len` is mapped with `right`.
    fn check(&self, addr: u64, len: usize, right: u16) -> Result<(), String> {
        let what = if right == WRITE { "write" } else { "read" };
        let end = addr
            .checked_add(len as u64)
            .ok_or_else(|| format!("guest {what} at {addr:#x}+{len:#x} wraps"))?;
        let mut at = addr;
        while at < end {
            match self.map.range_at(at) {
                Some((m, top)) if m.seg.is_some() && m.attr & right != 0 => at = top.min(end),
                _ => {
                    return Err(format!(
                        "guest {what} at {addr:#x}+{len:#x}: {at:#x} is not mapped for it"
                    ))
                }
            }
        }
        Ok(())
    }

    /// The frame holding guest-physical `at` (checked mapped) and the offset in it.
    fn frame(&self, at: u64) -> Option<(&'a Frame, usize)> {
        let (m, _) = self.map.range_at(at)?;
        let off = m.off.checked_add(at - m.addr)?;
        let page = usize::try_from(off / PAGE as u64).ok()?;
        let f = m.seg.as_ref()?.frames().get(page)?;
        Some((f, (off % PAGE as u64) as usize))
    }

    /// Copies between guest memory at `addr` and `len` bytes, page by page.
    fn each(
        &mut self,
        addr: u64,
        len: usize,
        right: u16,
        mut f: impl FnMut(&mut [u8], usize),
    ) -> Result<(), String> {
        self.check(addr, len, right)?;
        let mut done = 0;
        while done < len {
            let at = addr + done as u64;
            let (frame, inpage) = self
                .frame(at)
                .ok_or_else(|| format!("guest memory at {at:#x} is not mapped"))?;
            let k = (PAGE - inpage).min(len - done);
            f(&mut self.hw.frame(frame)[inpage..inpage + k], done);
            done += k;
        }
        Ok(())
    }
}

impl<H: Hw> GuestMem for GuestRam<'_, H> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), String> {
        let n = buf.len();
        self.each(addr, n, READ, |page, at| {
            buf[at..at + page.len()].copy_from_slice(page)
        })
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), String> {
        self.each(addr, data.len(), WRITE, |page, at| {
            page.copy_from_slice(&data[at..at + page.len()])
        })
    }
}

#[cfg(test)]
mod tests;
