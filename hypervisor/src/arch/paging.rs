//! The identity map past the boot stub's low 4 GiB (virtual == physical everywhere): all of
//! RAM, mapped once at boot so frames above 4 GiB serve segments, EPT tables and guest
//! memory like the low ones, and the memory BARs that firmware placed above 4 GiB, mapped
//! uncached when a driver asks. 2 MiB pages; the tables come from low frames that are never
//! given back. Entries are only ever added, never changed, so no TLB needs flushing.
#![allow(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;

/// Page-table entry bits: present, writable, write-through and cache-disable (uncached),
/// a large page (2 MiB in a directory).
const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const PWT: u64 = 1 << 3;
const PCD: u64 = 1 << 4;
const LARGE: u64 = 1 << 7;
const ADDR: u64 = 0x000f_ffff_ffff_f000;
const PAGE_2M: u64 = 1 << 21;
/// What the boot stub maps.
pub const LOW: u64 = 1 << 32;
/// Identity-mapped addresses must stay in the canonical lower half.
const MAX: u64 = 1 << 46;

/// Addresses below this are mapped (RAM and the holes between).
static END: AtomicU64 = AtomicU64::new(LOW);
static LOCK: Mutex<()> = Mutex::new(());

/// The end of the identity map's contiguous part: every address below it is mapped.
pub fn mapped_end() -> u64 {
    END.load(Ordering::Acquire)
}

fn entry(table: u64, i: u64) -> u64 {
    // SAFETY: `table` is a page table of the live hierarchy (CR3's PML4 or a table one of
    // its present entries names), identity-mapped below 4 GiB; `i` < 512.
    unsafe { core::ptr::read_volatile((table + 8 * i) as *const u64) }
}

fn set_entry(table: u64, i: u64, v: u64) {
    // SAFETY: as for `entry`; the caller writes only a not-present entry, so no mapping in
    // use changes.
    unsafe { core::ptr::write_volatile((table + 8 * i) as *mut u64, v) }
}

/// The table under entry `i` of `table`, made from `alloc` (a zeroed frame below 4 GiB)
/// where absent; None where a large page maps it already or no frame is left.
fn next(table: u64, i: u64, alloc: &mut impl FnMut() -> Option<u64>) -> Option<u64> {
    let e = entry(table, i);
    if e & PRESENT != 0 {
        return (e & LARGE == 0).then_some(e & ADDR);
    }
    let t = alloc().filter(|&t| t < LOW)?;
    set_entry(table, i, t | PRESENT | WRITABLE);
    Some(t)
}

/// Identity-maps `[start, end)` in 2 MiB pages (uncached where `uncached`); pages mapped
/// already stay as they are. False where a table could not be had or the range is too high.
fn map(start: u64, end: u64, uncached: bool, alloc: &mut impl FnMut() -> Option<u64>) -> bool {
    if end > MAX {
        return false;
    }
    let _g = LOCK.lock();
    let pml4 = x86_64::registers::control::Cr3::read_raw()
        .0
        .start_address()
        .as_u64();
    let cache = if uncached { PCD | PWT } else { 0 };
    let mut pa = start & !(PAGE_2M - 1);
    while pa < end {
        let Some(pdpt) = next(pml4, pa >> 39 & 511, alloc) else {
            return false;
        };
        // A 1 GiB page (or a missing frame) there: nothing to add under it.
        if entry(pdpt, pa >> 30 & 511) & (PRESENT | LARGE) == PRESENT | LARGE {
            pa += PAGE_2M;
            continue;
        }
        let Some(pd) = next(pdpt, pa >> 30 & 511, alloc) else {
            return false;
        };
        if entry(pd, pa >> 21 & 511) & PRESENT == 0 {
            set_entry(pd, pa >> 21 & 511, pa | PRESENT | WRITABLE | LARGE | cache);
        }
        pa += PAGE_2M;
    }
    true
}

/// Maps RAM (write-back) up to `end`; afterwards every address below `end` is mapped.
pub fn map_ram(end: u64, mut alloc: impl FnMut() -> Option<u64>) -> bool {
    if end <= mapped_end() {
        return true;
    }
    let ok = map(LOW, end, false, &mut alloc);
    if ok {
        END.store(end, Ordering::Release);
    }
    ok
}

/// Maps device memory `[base, base + len)` uncached where it lies above the mapped RAM;
/// whether it is mapped now.
pub fn map_mmio(base: u64, len: u64) -> bool {
    let Some(end) = base.checked_add(len) else {
        return false;
    };
    end <= LOW || map(base.max(LOW), end, true, &mut super::frame_source::table)
}
