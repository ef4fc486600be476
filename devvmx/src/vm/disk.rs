//! A VM's in-kernel disks through its files: `blk`, `blkdirty` and `blkq`
//! (kdev/blk.rs, kdev/blkq.rs), each over the VM's memory map.

use super::Vm;
use crate::hw::Hw;
use crate::kdev::KDev;
use alloc::boxed::Box;
use ninep::Error;

/// A VM's disk file when it has no in-kernel disk.
pub(crate) const ENODISK: &str = "no in-kernel disks";

impl Vm {
    /// Its in-kernel devices, if it has a disk among them.
    pub(crate) fn disks(&mut self) -> Result<&mut KDev, Error> {
        with_disks(&mut self.kdev)
    }

    /// A read of `blkq`: Ok(None) waits for requests.
    pub(crate) fn blkq_read<H: Hw>(
        &mut self,
        hw: &mut H,
        buf: &mut [u8],
    ) -> Result<Option<usize>, Error> {
        let map = &self.mem;
        let k = with_disks(&mut self.kdev)?;
        if buf.is_empty() {
            return Ok(Some(0));
        }
        Ok(match k.blkq_read(hw, map, buf) {
            0 => None,
            n => Some(n),
        })
    }

    /// A write of `blkq`: completions.
    pub(crate) fn blkq_write<H: Hw>(&mut self, hw: &mut H, data: &[u8]) -> Result<usize, Error> {
        let map = &self.mem;
        let k = with_disks(&mut self.kdev)?;
        k.blkq_write(hw, map, data)
    }
}

/// The in-kernel devices `kdev`, if they have a disk (a free function, so that a caller
/// may hold the VM's memory map at once).
fn with_disks(kdev: &mut Option<Box<KDev>>) -> Result<&mut KDev, Error> {
    kdev.as_deref_mut()
        .filter(|k| !k.disks.is_empty())
        .ok_or(Error::from(ENODISK))
}
