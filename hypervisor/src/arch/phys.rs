//! Physical memory through the identity map (virtual == physical: the low 4 GiB from the
//! boot stub, all RAM after `paging::map_ram`).
#![allow(unsafe_code)]

use super::paging::{mapped_end, LOW};

/// Bytes the boot loader left at `pa` (boot information, command line). The caller copies
/// out what it needs before the memory is handed to the frame allocator.
pub fn boot_bytes(pa: u64, len: usize) -> &'static [u8] {
    if pa == 0 || pa.saturating_add(len as u64) > LOW {
        return &[];
    }
    // SAFETY: the range is identity-mapped RAM written by the loader, read-only here and
    // not reused until the frame allocator exists (after the boot information is parsed).
    unsafe { core::slice::from_raw_parts(pa as *const u8, len) }
}

/// Zeroes the 4 KiB frame at `pa`.
pub fn zero_frame(pa: u64) {
    assert!(pa.is_multiple_of(4096) && pa + 4096 <= mapped_end());
    // SAFETY: `pa` is a free RAM frame owned by the allocator, identity-mapped.
    unsafe { core::ptr::write_bytes(pa as *mut u8, 0, 4096) }
}

/// The heap's region: handed to the allocator once at boot.
pub fn init_heap(heap: &linked_list_allocator::LockedHeap, start: u64, size: usize) {
    // SAFETY: [start, start+size) is identity-mapped RAM carved out of the memory map and
    // never handed to the frame allocator; init runs once.
    unsafe { heap.lock().init(start as *mut u8, size) }
}

/// The firmware's tables (BIOS data area, EBDA, ROM, ACPI and MP tables) at `pa`: empty
/// where the range is not in the identity map.
pub fn firmware_bytes(pa: u64, len: usize) -> &'static [u8] {
    if pa.saturating_add(len as u64) > mapped_end() {
        return &[];
    }
    // SAFETY: the range is identity-mapped; the firmware's areas are ROM or RAM the
    // memory map reserves (never handed to the frame allocator), read-only here.
    unsafe { core::slice::from_raw_parts(pa as *const u8, len) }
}
