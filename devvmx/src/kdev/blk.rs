//! virtio-blk in the kernel (an extension, `pci blk` after `devices ... pci`): a legacy
//! virtio PCI function on the in-kernel bus, its transport and request model the `virtio`
//! crate's (the vmx tool's own), its queue served on the VM's CPU at the guest's notify
//! (no exit to the client) over the VM's memory ([`GuestRam`]), its interrupt on the
//! in-kernel PIC. Two disks:
//!
//! - a segment (`pci blk seg NAME [ro]`): the image lives in segment NAME (the disk is
//!   the whole segment), which the client filled through `data`; the device holds a
//!   reference on it, and remembers the pages the guest's writes changed, which the
//!   `blkdirty` file lists (reading it clears them);
//! - a queue the client serves (`pci blk queue BYTES [ro]`): reads, writes and flushes are
//!   parked for the `blkq` file (kdev/blkq.rs).
//!
//! A notify serves at most [`super::VIRTIO_BUDGET`] of the queue; what is left is served
//! a budget at a time before the following entries ([`KDev::blk_resume`]).
//!
//! A bad ring or request breaks only its device, with the reason in the `blk` file, until
//! the driver resets it.

use super::KDev;
use crate::guestmem::GuestRam;
use crate::hw::{Hw, PAGE};
use crate::plan9::{quote, strtoull_whole, EBADARG};
use crate::segment::{SegRef, Segments, ENOSEG};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use ninep::Error;
use virtio::blk::{Blk, Capacity, Disk, IoError, SECTOR};
use virtio::legacy::{Device, Model, Serve};
use virtio::queue::Queue;
use virtio::Id;

/// Most in-kernel disks per VM.
pub(crate) const MAX_DISKS: usize = 4;

/// A disk's bytes.
pub(crate) enum KDisk {
    /// In a segment; `dirty` has a bit per page the guest wrote since the last
    /// `blkdirty` read.
    Seg { seg: SegRef, dirty: Vec<u64> },
    /// Served by the client through `blkq`: this many bytes.
    Queue(u64),
    /// Given back (the VM ended).
    Gone,
}

impl KDisk {
    fn kind(&self) -> &'static str {
        match self {
            KDisk::Seg { .. } => "seg",
            KDisk::Queue(_) | KDisk::Gone => "queue",
        }
    }

    /// The frame and offset of disk byte `off`, and how many bytes of it follow.
    fn page(&self, off: u64) -> Option<(&crate::hw::Frame, usize, usize)> {
        let KDisk::Seg { seg, .. } = self else {
            return None;
        };
        let page = usize::try_from(off / PAGE as u64).ok()?;
        let at = (off % PAGE as u64) as usize;
        Some((seg.frames().get(page)?, at, PAGE - at))
    }

    /// Copies between the disk at `off` and `n` bytes, page by page.
    fn each<H: Hw>(
        &mut self,
        hw: &mut H,
        off: u64,
        n: usize,
        mut f: impl FnMut(&mut [u8], usize),
    ) -> Result<(), IoError> {
        let mut done = 0;
        while done < n {
            let at = off + done as u64;
            let (frame, inpage, room) = self.page(at).ok_or(IoError)?;
            let k = room.min(n - done);
            f(&mut hw.frame(frame)[inpage..inpage + k], done);
            done += k;
        }
        Ok(())
    }
}

impl Capacity for KDisk {
    fn bytes(&self) -> u64 {
        match self {
            KDisk::Seg { seg, .. } => (seg.frames().len() * PAGE) as u64,
            KDisk::Queue(n) => *n,
            KDisk::Gone => 0,
        }
    }

    fn deferred(&self) -> bool {
        matches!(self, KDisk::Queue(_))
    }
}

impl<H: Hw> Disk<GuestRam<'_, H>> for KDisk {
    fn get(&mut self, mem: &mut GuestRam<'_, H>, off: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let n = buf.len();
        self.each(mem.hw, off, n, |page, at| {
            buf[at..at + page.len()].copy_from_slice(page)
        })
    }

    fn put(&mut self, mem: &mut GuestRam<'_, H>, off: u64, data: &[u8]) -> Result<(), IoError> {
        self.each(mem.hw, off, data.len(), |page, at| {
            page.copy_from_slice(&data[at..at + page.len()])
        })?;
        if let KDisk::Seg { dirty, .. } = self {
            let first = off / PAGE as u64;
            let last = (off + data.len().max(1) as u64 - 1) / PAGE as u64;
            for p in first..=last {
                if let Some(w) = dirty.get_mut((p / 64) as usize) {
                    *w |= 1 << (p % 64);
                }
            }
        }
        Ok(())
    }

    fn sync(&mut self, _: &mut GuestRam<'_, H>) -> Result<(), IoError> {
        Ok(())
    }
}

/// virtio-blk as the legacy transport's device type.
pub(crate) struct BlkModel(pub(crate) Blk<KDisk>);

impl Model for BlkModel {
    fn id(&self) -> Id {
        Id::Block
    }
    fn class(&self) -> u32 {
        0x01_00_00 // mass storage, SCSI
    }
    fn queues(&self) -> usize {
        1
    }
    fn features(&self) -> u32 {
        self.0.features()
    }
    fn config(&self) -> Vec<u8> {
        self.0.config()
    }
    fn reset(&mut self) {
        self.0.reset();
    }
    fn pending(&self, _qi: u16, q: &Queue) -> bool {
        self.0.pending(q)
    }
}

impl<'a, H: Hw> Serve<GuestRam<'a, H>> for BlkModel {
    fn serve(
        &mut self,
        _qi: u16,
        q: &mut Queue,
        mem: &mut GuestRam<'a, H>,
        limit: u64,
    ) -> Result<bool, String> {
        self.0.serve_queue(q, mem, limit)
    }
}

/// One in-kernel disk.
pub(crate) struct KBlk {
    pub(crate) dev: Device<BlkModel>,
    /// Its function's index on the in-kernel bus.
    pub(crate) slot: usize,
    /// The segment's name ("-" for a queue).
    name: String,
}

/// The parsed `pci blk` arguments.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Spec {
    Seg(String, bool),
    Queue(u64, bool),
}

/// Parses `seg NAME [ro]` or `queue BYTES [ro]` (BYTES a positive multiple of 512).
pub(crate) fn parse(args: &[String]) -> Result<Spec, Error> {
    let (kind, what, ro) = match args {
        [k, w] => (k, w, false),
        [k, w, ro] if ro == "ro" => (k, w, true),
        _ => return Err(EBADARG.into()),
    };
    match kind.as_str() {
        "seg" => Ok(Spec::Seg(what.clone(), ro)),
        "queue" => match strtoull_whole(what) {
            Some(n) if n > 0 && n % SECTOR == 0 => Ok(Spec::Queue(n, ro)),
            _ => Err(EBADARG.into()),
        },
        _ => Err(EBADARG.into()),
    }
}

impl KDev {
    /// The `pci blk ...` message: a disk as the next function of the in-kernel bus, its
    /// BAR at the first free block from 0xc000, its line the first free one.
    pub(crate) fn blk_add(
        &mut self,
        segs: &mut Segments,
        args: &[String],
        uname: &str,
    ) -> Result<(), Error> {
        if !self.has(super::PCI) || !self.has(super::PIC) {
            return Err("in-kernel disks need the in-kernel pci and pic".into());
        }
        let spec = parse(args)?;
        if self.disks.len() >= MAX_DISKS {
            return Err("too many in-kernel disks".into());
        }
        let (bar, irq) = self.place()?;
        let (disk, ro, name) = match spec {
            Spec::Seg(name, ro) => {
                let seg = segs.attach(&name, uname)?.ok_or(Error::from(ENOSEG))?;
                let pages = seg.frames().len();

                let dirty = vec![0u64; pages.div_ceil(64)];
                (KDisk::Seg { seg, dirty }, ro, name)
            }
            Spec::Queue(n, ro) => (KDisk::Queue(n), ro, String::from("-")),
        };
        let id = format!("kblk{}", self.disks.len());
        let mut blk = Blk::with_disk(disk, ro, &id);
        blk.budget = super::VIRTIO_BUDGET;
        let dev = Device::new(BlkModel(blk), irq);
        let slot = self.pci.len();
        self.pci.add(dev.function(), u32::from(bar));
        self.disks.push(KBlk { dev, slot, name });
        Ok(())
    }

    /// The disk whose function is at `slot` on the bus.
    pub(crate) fn disk_at(&self, slot: usize) -> Option<usize> {
        self.disks.iter().position(|d| d.slot == slot)
    }

    /// A port access to disk `i`'s BAR at offset `off`, an `out` of `val` or (None) an
    /// `in`: the value of an `in`. A notify serves the queue here, over the VM's memory
    /// `map`.
    pub(crate) fn blk_io<H: Hw>(
        &mut self,
        hw: &mut H,
        map: &crate::mem::MemMap,
        i: usize,
        off: u16,
        size: u8,
        val: Option<u32>,
    ) -> u32 {
        self.counts.io += 1;
        let Some(d) = self.disks.get_mut(i) else {
            return pcdev::size_mask(size);
        };
        let v = if let Some(val) = val {
            let mut mem = GuestRam::new(hw, map);
            let limit = mem.limit();
            // A broken device keeps its reason in `error` (the `blk` file's).
            let _ = d.dev.write(off, size, val, &mut mem, limit);
            0
        } else {
            d.dev.read(off, size)
        };
        self.sync_disk_lines();
        v
    }

    /// Serves the next budget of each disk's queue a notify's budget left work on
    /// (before an entry, so the guest sees its requests end without notifying again).
    pub(crate) fn blk_resume<H: Hw>(&mut self, hw: &mut H, map: &crate::mem::MemMap) {
        if !self.blk_pending() {
            return;
        }
        let mut mem = GuestRam::new(hw, map);
        let limit = mem.limit();
        for d in &mut self.disks {
            // A broken device keeps its reason in `error` (the `blk` file's).
            let _ = d.dev.resume(&mut mem, limit);
        }
        self.sync_disk_lines();
    }

    /// Whether a disk has work a budget left.
    pub(crate) fn blk_pending(&self) -> bool {
        self.disks.iter().any(|d| d.dev.pending())
    }

    /// Each disk's interrupt line to the PIC as its ISR has it.
    pub(crate) fn sync_disk_lines(&mut self) {
        for d in &self.disks {
            self.board.pic.set_line(d.dev.irq, d.dev.line());
        }
    }

    /// The `blk` file: a line per disk, `N KIND NAME MODE SECTORS BAR IRQ STATE`, the
    /// state `ok` or `broken` and its reason.
    pub(crate) fn blk_text(&self) -> String {
        let mut s = String::new();
        for (i, d) in self.disks.iter().enumerate() {
            let blk = &d.dev.kind.0;
            let bar = self.pci.functions().nth(d.slot).map_or(0, |(_, b)| b);
            s.push_str(&format!(
                "{i} {} {} {} {} {bar:#x} {} ",
                blk.disk.kind(),
                quote(&d.name, false),
                if blk.readonly { "ro" } else { "rw" },
                blk.disk.bytes() / SECTOR,
                d.dev.irq,
            ));
            match &d.dev.error {
                None => s.push_str("ok\n"),
                Some(why) => s.push_str(&format!("broken {}\n", quote(why, true))),
            }
        }
        s
    }

    /// The `blkdirty` file: `N OFFSET LENGTH` (hex bytes) for each run of pages the
    /// guest wrote on segment disk N since the last read, which this one clears.
    pub(crate) fn take_dirty(&mut self) -> String {
        let mut s = String::new();
        for (i, d) in self.disks.iter_mut().enumerate() {
            let KDisk::Seg { dirty, .. } = &mut d.dev.kind.0.disk else {
                continue;
            };
            let bits = dirty.len() * 64;
            let set = |p: usize| dirty[p / 64] >> (p % 64) & 1 != 0;
            let mut p = 0;
            while p < bits {
                if !set(p) {
                    p += 1;
                    continue;
                }
                let start = p;
                while p < bits && set(p) {
                    p += 1;
                }
                s.push_str(&format!(
                    "{i} {:#x} {:#x}\n",
                    start * PAGE,
                    (p - start) * PAGE
                ));
            }
            dirty.fill(0);
        }
        s
    }

    /// The VM ends: each segment disk's reference goes back.
    pub(crate) fn release_disks<H: Hw>(&mut self, hw: &mut H, segs: &mut Segments) {
        for d in &mut self.disks {
            if let KDisk::Seg { seg, .. } = core::mem::replace(&mut d.dev.kind.0.disk, KDisk::Gone)
            {
                segs.put(hw, seg);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn p(s: &str) -> Result<Spec, String> {
        let v: Vec<String> = s.split_whitespace().map(|w| w.to_string()).collect();
        parse(&v).map_err(|e| e.as_str().into())
    }

    #[test]
    fn blk_lines() {
        assert_eq!(p("seg disk"), Ok(Spec::Seg("disk".into(), false)));
        assert_eq!(p("seg disk ro"), Ok(Spec::Seg("disk".into(), true)));
        assert_eq!(p("queue 1048576"), Ok(Spec::Queue(1 << 20, false)));
        assert_eq!(p("queue 0x200 ro"), Ok(Spec::Queue(512, true)));
        for bad in [
            "",
            "seg",
            "seg d rw",
            "queue 0",
            "queue 100",
            "queue x",
            "nbd d",
        ] {
            assert_eq!(p(bad), Err(EBADARG.into()), "{bad}");
        }
    }
}
