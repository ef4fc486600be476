//! EPT tables in host frames: the seed's eptwalk, eptfree and the leaf writes of
//! epttranslate.

use crate::hw::{Hw, Phys};
use crate::plan9::ENOMEM;
use ninep::Error;

/// Present, writable, executable (and user-executable): what the seed puts in every
/// non-leaf entry.
const TABLE: u64 = 0x407;

pub fn get<H: Hw>(hw: &mut H, tab: Phys, i: usize) -> u64 {
    let f = hw.frame(tab);
    let mut b = [0u8; 8];
    b.copy_from_slice(&f[i * 8..i * 8 + 8]);
    u64::from_le_bytes(b)
}

pub fn set<H: Hw>(hw: &mut H, tab: Phys, i: usize, v: u64) {
    hw.frame(tab)[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
}

fn index(addr: u64, level: u32) -> usize {
    (addr >> (12 + 9 * level) & 0x1ff) as usize
}

/// eptwalk: the page table and index of `addr`'s leaf entry, making tables on the way.
pub fn walk<H: Hw>(hw: &mut H, pml4: Phys, addr: u64) -> Result<(Phys, usize), Error> {
    let mut tab = pml4;
    for level in (1..=3).rev() {
        let i = index(addr, level);
        let mut v = get(hw, tab, i);
        if v & 3 == 0 {
            let nt = hw.alloc_frame().ok_or(Error::from(ENOMEM))?;
            v = nt | TABLE;
            set(hw, tab, i, v);
        }
        tab = v & 0x000f_ffff_ffff_f000;
    }
    Ok((tab, index(addr, 0)))
}

/// Clears the leaves of [addr, end) without making tables for absent ranges (the seed
/// walked, and so allocated, every page of an unmapped range).
pub fn clear<H: Hw>(hw: &mut H, pml4: Phys, addr: u64, end: u64) {
    let mut p = addr;
    'outer: while p < end {
        let mut tab = pml4;
        for level in (1..=3).rev() {
            let v = get(hw, tab, index(p, level));
            if v & 3 == 0 {
                // Nothing mapped below this entry: skip the range it covers.
                let span = 1u64 << (12 + 9 * level);
                p = (p & !(span - 1)).saturating_add(span);
                continue 'outer;
            }
            tab = v & 0x000f_ffff_ffff_f000;
        }
        set(hw, tab, index(p, 0), 0);
        p += 4096;
    }
}

/// eptfree: frees every table below `tab` (level 0 is the PML4, which is kept but
/// emptied). Leaves point at segment frames, which are not the tables' to free.
pub fn free<H: Hw>(hw: &mut H, tab: Phys, level: u32) {
    if level < 3 {
        for i in 0..512 {
            let v = get(hw, tab, i);
            if v & 3 == 0 {
                continue;
            }
            free(hw, v & 0x000f_ffff_ffff_f000, level + 1);
            set(hw, tab, i, 0);
        }
    }
    if level > 0 {
        hw.free_frame(tab);
    }
}

/// The leaf entry for guest-physical `addr`, 0 where there is none (for tests).
#[cfg(any(test, feature = "testhw"))]
pub fn lookup<H: Hw>(hw: &mut H, pml4: Phys, addr: u64) -> u64 {
    let mut tab = pml4;
    for level in (1..=3).rev() {
        let v = get(hw, tab, index(addr, level));
        if v & 3 == 0 {
            return 0;
        }
        tab = v & 0x000f_ffff_ffff_f000;
    }
    get(hw, tab, index(addr, 0))
}
