//! EPT tables in host frames: the seed's eptwalk, eptfree and the leaf writes of
//! epttranslate.
//!
//! Frames stay typed: each table's [`Frame`] handle is kept in a tree beside the entries
//! the CPU reads ([`Ept`]), and walks go down through those handles. No frame is ever
//! rebuilt from an address read back from an entry (the seed's walks did that), so
//! [`Hw::frame`] is only ever handed a frame this crate got from [`Hw::alloc_frame`].

use crate::hw::{Frame, Hw, Phys};
use crate::plan9::ENOMEM;
use alloc::collections::btree_map::{BTreeMap, Entry};
use core::mem;
use ninep::Error;

/// Present, writable, executable (and user-executable): what the seed puts in every
/// non-leaf entry.
const TABLE: u64 = 0x407;

/// An entry (only the tests read entries back: walks go through the handles).
#[cfg(any(test, feature = "testhw"))]
fn get<H: Hw>(hw: &mut H, tab: &Frame, i: usize) -> u64 {
    let f = hw.frame(tab);
    let mut b = [0u8; 8];
    b.copy_from_slice(&f[i * 8..i * 8 + 8]);
    u64::from_le_bytes(b)
}

fn set<H: Hw>(hw: &mut H, tab: &Frame, i: usize, v: u64) {
    hw.frame(tab)[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
}

fn index(addr: u64, level: u32) -> usize {
    (addr >> (12 + 9 * level) & 0x1ff) as usize
}

/// One table: its frame, and the tables its present entries point at (by entry index;
/// none below a last-level table, whose entries are leaves).
struct Table {
    frame: Frame,
    next: BTreeMap<usize, Table>,
}

impl Table {
    fn new(frame: Frame) -> Table {
        Table {
            frame,
            next: BTreeMap::new(),
        }
    }

    /// eptfree below this table: every table under it freed (post-order, entries in
    /// ascending order, as the seed's recursion), its entries cleared.
    fn free_below<H: Hw>(&mut self, hw: &mut H) {
        for (i, mut t) in mem::take(&mut self.next) {
            t.free_below(hw);
            set(hw, &self.frame, i, 0);
            hw.free_frame(t.frame);
        }
    }
}

/// A VM's EPT: the PML4 and every table below it, each with its own frame handle.
#[derive(Default)]
pub(crate) struct Ept {
    root: Option<Table>,
}

impl Ept {
    /// An EPT whose PML4 is `pml4` (a zeroed frame).
    pub(crate) fn new(pml4: Frame) -> Ept {
        Ept {
            root: Some(Table::new(pml4)),
        }
    }

    /// The PML4's physical address, for the EPT pointer (0 once released).
    pub(crate) fn pml4(&self) -> Phys {
        self.root.as_ref().map_or(0, |t| t.frame.pa())
    }

    /// eptwalk and the leaf write of epttranslate: `leaf` becomes the entry of `addr`,
    /// making tables on the way.
    pub(crate) fn map<H: Hw>(&mut self, hw: &mut H, addr: u64, leaf: u64) -> Result<(), Error> {
        let Some(mut tab) = self.root.as_mut() else {
            return Err(ENOMEM.into());
        };
        for level in (1..=3).rev() {
            let i = index(addr, level);
            tab = match tab.next.entry(i) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    let nt = hw.alloc_frame().ok_or(Error::from(ENOMEM))?;
                    set(hw, &tab.frame, i, nt.pa() | TABLE);
                    e.insert(Table::new(nt))
                }
            };
        }
        set(hw, &tab.frame, index(addr, 0), leaf);
        Ok(())
    }

    /// Clears the leaves of [addr, end) without making tables for absent ranges (the
    /// seed walked, and so allocated, every page of an unmapped range).
    pub(crate) fn clear<H: Hw>(&self, hw: &mut H, addr: u64, end: u64) {
        let Some(root) = &self.root else {
            return;
        };
        let mut p = addr;
        'outer: while p < end {
            let mut tab = root;
            for level in (1..=3).rev() {
                match tab.next.get(&index(p, level)) {
                    Some(t) => tab = t,
                    None => {
                        // Nothing mapped below this entry: skip the range it covers.
                        let span = 1u64 << (12 + 9 * level);
                        p = (p & !(span - 1)).saturating_add(span);
                        continue 'outer;
                    }
                }
            }
            set(hw, &tab.frame, index(p, 0), 0);
            p += 4096;
        }
    }

    /// eptfree: frees every table below the PML4, which is kept but emptied. Leaves point
    /// at segment frames, which are not the tables' to free.
    pub(crate) fn free<H: Hw>(&mut self, hw: &mut H) {
        if let Some(root) = &mut self.root {
            root.free_below(hw);
        }
    }

    /// The PML4's frame, given up with every table below it freed (at quit).
    pub(crate) fn release<H: Hw>(&mut self, hw: &mut H) -> Option<Frame> {
        self.free(hw);
        self.root.take().map(|t| t.frame)
    }

    /// The leaf entry for guest-physical `addr`, 0 where there is none (for tests).
    #[cfg(any(test, feature = "testhw"))]
    pub(crate) fn lookup<H: Hw>(&self, hw: &mut H, addr: u64) -> u64 {
        let Some(mut tab) = self.root.as_ref() else {
            return 0;
        };
        for level in (1..=3).rev() {
            match tab.next.get(&index(addr, level)) {
                Some(t) => tab = t,
                None => return 0,
            }
        }
        get(hw, &tab.frame, index(addr, 0))
    }
}
