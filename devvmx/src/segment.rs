//! Global segments after 9front's segment(3) (`#g`): named, sized once through `ctl`,
//! backed by zeroed host frames, read and written through `data`, and mapped into guests
//! by `map` lines. The memory is reference counted as putseg/incref do: the named entry
//! holds one reference and each guest mapping one more. A mapping's reference is a
//! [`SegRef`], which also shares the segment's frame list, so the VM's own CPU reaches
//! the memory its map names (`guestmem`) without the boot CPU's `Segments`; the frames
//! go back through [`Hw::free_frame`] once, when the last reference is put.

use crate::hw::{alloc_frames, Frame, Hw, PAGE};
use crate::plan9::{parsecmd, strtoull, EBADARG, EBADCTL, EEXIST, ENOVMEM};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use ninep::Error;

/// globalseg[] has 100 slots in devsegment.c.
pub(crate) const MAXSEG: usize = 100;
/// amd64 USTKTOP: the highest address a segment may reach.
pub(crate) const USTKTOP: u64 = 0x0000_7fff_ffff_f000;

pub(crate) type SegId = u32;

/// A name that no segment has (a `map` line's, a disk's).
pub(crate) const ENOSEG: &str = "no such segment";

/// A segment's memory.
pub(crate) struct SegMem {
    pub(crate) base: u64,
    /// Shared with every mapping's [`SegRef`]; freed when the last reference is put.
    pub(crate) frames: Arc<Vec<Frame>>,
    refs: usize,
}

impl SegMem {
    pub(crate) fn size(&self) -> u64 {
        self.frames.len() as u64 * PAGE as u64
    }
}

/// A guest mapping's reference on a segment's memory: counted in the segment's `refs`,
/// and sharing its frames. Cloning it is taking a reference ([`Segments::incref`] counts
/// it); every reference ends in [`Segments::put`], which consumes it.
#[derive(Clone)]
pub(crate) struct SegRef {
    pub(crate) id: SegId,
    frames: Arc<Vec<Frame>>,
}

impl SegRef {
    /// The segment's frames, in order.
    pub(crate) fn frames(&self) -> &[Frame] {
        &self.frames
    }
}

impl PartialEq for SegRef {
    fn eq(&self, o: &SegRef) -> bool {
        self.id == o.id
    }
}

impl Eq for SegRef {}

impl core::fmt::Debug for SegRef {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SegRef({})", self.id)
    }
}

/// A named global segment (devsegment's Globalseg).
pub(crate) struct Global {
    pub(crate) name: String,
    pub(crate) uid: String,
    pub(crate) perm: u32,
    pub(crate) seg: Option<SegId>,
    /// Tells a new segment in a reused slot from the one an old fid named.
    pub(crate) gen: u64,
    /// When it was made: the directory's and ctl's times.
    pub(crate) made: u32,
    /// When `data` last changed (a write, the sizing, or a wstat's mtime): its times.
    pub(crate) written: u32,
}

#[derive(Default)]
pub(crate) struct Segments {
    pub(crate) globals: Vec<Option<Global>>,
    mems: BTreeMap<SegId, SegMem>,
    next_id: SegId,
    next_gen: u64,
}

impl Segments {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Named segments in existence.
    pub(crate) fn count(&self) -> usize {
        self.globals.iter().flatten().count()
    }

    pub(crate) fn global(&self, slot: usize, gen: u64) -> Result<&Global, Error> {
        match self.globals.get(slot) {
            Some(Some(g)) if g.gen == gen => Ok(g),
            _ => Err("global segment disappeared".into()),
        }
    }

    pub(crate) fn global_mut(&mut self, slot: usize, gen: u64) -> Result<&mut Global, Error> {
        match self.globals.get_mut(slot) {
            Some(Some(g)) if g.gen == gen => Ok(g),
            _ => Err("global segment disappeared".into()),
        }
    }

    pub(crate) fn mem(&self, id: SegId) -> Option<&SegMem> {
        self.mems.get(&id)
    }

    /// A named segment's memory, once a write to its ctl has sized it (its `data` and
    /// `ctl` read refuse before).
    pub(crate) fn allocated(&self, slot: usize, gen: u64) -> Result<&SegMem, Error> {
        self.global(slot, gen)?
            .seg
            .and_then(|id| self.mems.get(&id))
            .ok_or(Error::from("segment not yet allocated"))
    }

    /// segmentcreate: a new, unsized segment owned by `uid`, made at `now`; its slot and
    /// generation.
    pub(crate) fn create(
        &mut self,
        name: &str,
        uid: &str,
        now: u32,
    ) -> Result<(usize, u64), Error> {
        if self.globals.iter().flatten().any(|g| g.name == name) {
            return Err(EEXIST.into());
        }
        let slot = match self.globals.iter().position(Option::is_none) {
            Some(i) => i,
            None if self.globals.len() < MAXSEG => {
                self.globals.push(None);
                self.globals.len() - 1
            }
            None => return Err("too many global segments".into()),
        };
        self.next_gen += 1;
        self.globals[slot] = Some(Global {
            name: name.into(),
            uid: uid.into(),
            perm: 0o660,
            seg: None,
            gen: self.next_gen,
            made: now,
            written: now,
        });
        Ok((slot, self.next_gen))
    }

    /// segmentremove: the name goes at once; the memory when no mapping holds it.
    pub(crate) fn remove<H: Hw>(&mut self, hw: &mut H, slot: usize) {
        if let Some(Some(g)) = self.globals.get_mut(slot).map(Option::take) {
            if let Some(id) = g.seg {
                self.drop_ref(hw, id);
            }
        }
    }

    /// The ctl write: `va ADDR LEN [sticky|fixed]` sizes the segment once.
    pub(crate) fn ctl<H: Hw>(
        &mut self,
        hw: &mut H,
        slot: usize,
        gen: u64,
        data: &[u8],
    ) -> Result<(), Error> {
        let cb = parsecmd(data);
        let g = self.global(slot, gen)?;
        if cb.f.first().map(String::as_str) != Some("va") {
            return Err(EBADCTL.into());
        }
        if g.seg.is_some() {
            return Err("already has a virtual address".into());
        }
        if cb.f.len() < 3 {
            return Err(EBADARG.into());
        }
        let va = strtoull(&cb.f[1], 0).0;
        let len = strtoull(&cb.f[2], 0).0;
        let pg = PAGE as u64;
        let top = va.wrapping_add(len).wrapping_add(pg - 1) & !(pg - 1);
        let va = va & !(pg - 1);
        if va == 0 || top > USTKTOP || top <= va {
            return Err(EBADARG.into());
        }
        let npages = ((top - va) / pg) as usize;
        if npages > hw.frames_free() {
            return Err(ENOVMEM.into());
        }
        let frames = alloc_frames(hw, npages).ok_or(Error::from(ENOVMEM))?;
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.mems.insert(
            id,
            SegMem {
                base: va,
                frames: Arc::new(frames),
                refs: 1,
            },
        );
        if let Ok(g) = self.global_mut(slot, gen) {
            g.seg = Some(id);
            g.written = hw.now();
        }
        Ok(())
    }

    /// The ctl read: devsegment's "va %#p %#p\n".
    pub(crate) fn ctl_text(&self, slot: usize, gen: u64) -> Result<String, Error> {
        let m = self.allocated(slot, gen)?;
        Ok(format!("va {:#x} {:#x}\n", m.base, m.size()))
    }

    /// segio: reads stop at the end (0 at or past it); writes must fit, and set the time
    /// `data` was written.
    pub(crate) fn io<H: Hw>(
        &mut self,
        hw: &mut H,
        slot: usize,
        gen: u64,
        off: u64,
        buf: &mut [u8],
        write: Option<&[u8]>,
    ) -> Result<usize, Error> {
        let m = self.allocated(slot, gen)?;
        let size = m.size();
        let n = write.map_or(buf.len(), <[u8]>::len) as u64;
        if off >= size {
            return if write.is_some() {
                Err(EBADARG.into())
            } else {
                Ok(0)
            };
        }
        let n = if off + n > size {
            if write.is_some() {
                return Err(EBADARG.into());
            }
            size - off
        } else {
            n
        } as usize;
        let mut done = 0;
        while done < n {
            let at = off as usize + done;
            let (page, inpage) = (at / PAGE, at % PAGE);
            let k = (PAGE - inpage).min(n - done);
            let f = hw.frame(&m.frames[page]);
            match write {
                Some(src) => f[inpage..inpage + k].copy_from_slice(&src[done..done + k]),
                None => buf[done..done + k].copy_from_slice(&f[inpage..inpage + k]),
            }
            done += k;
        }
        if write.is_some() {
            self.global_mut(slot, gen)?.written = hw.now();
        }
        Ok(n)
    }

    /// Looks a segment up by name for a guest mapping (globalsegattach) and takes a
    /// reference on its memory.
    pub(crate) fn attach(&mut self, name: &str, uname: &str) -> Result<Option<SegRef>, Error> {
        let Some(g) = self.globals.iter().flatten().find(|g| g.name == name) else {
            return Ok(None);
        };
        let st = ninep::Stat {
            mode: g.perm,
            uid: g.uid.clone(),
            gid: g.uid.clone(),
            ..Default::default()
        };
        if !ninep::perm::allowed(&st, uname, ninep::perm::READ | ninep::perm::WRITE) {
            return Err(crate::plan9::EPERM.into());
        }
        let id = g
            .seg
            .ok_or(Error::from("global segment not assigned a virtual address"))?;
        let m = self
            .mems
            .get_mut(&id)
            .ok_or(Error::from("global segment not assigned a virtual address"))?;
        m.refs += 1;
        Ok(Some(SegRef {
            id,
            frames: m.frames.clone(),
        }))
    }

    /// Counts a clone of a mapping's reference (a range split in two).
    pub(crate) fn incref(&mut self, r: &SegRef) {
        if let Some(m) = self.mems.get_mut(&r.id) {
            m.refs += 1;
        }
    }

    /// putseg: drops a mapping's reference; the last one frees the frames.
    pub(crate) fn put<H: Hw>(&mut self, hw: &mut H, r: SegRef) {
        let id = r.id;
        drop(r);
        self.drop_ref(hw, id);
    }

    /// Drops a counted reference (the named entry's, or a mapping's already released
    /// share); at the last one the frames go back, exactly once: every other share of
    /// the list has been dropped by then.
    fn drop_ref<H: Hw>(&mut self, hw: &mut H, id: SegId) {
        let Some(m) = self.mems.get_mut(&id) else {
            return;
        };
        m.refs -= 1;
        if m.refs == 0 {
            if let Some(frames) = self
                .mems
                .remove(&id)
                .and_then(|m| Arc::into_inner(m.frames))
            {
                for f in frames {
                    hw.free_frame(f);
                }
            }
        }
    }

    /// References held on a segment's memory (for tests).
    #[cfg(any(test, feature = "testhw"))]
    pub(crate) fn refs(&self, id: SegId) -> usize {
        self.mems.get(&id).map_or(0, |m| m.refs)
    }
}
