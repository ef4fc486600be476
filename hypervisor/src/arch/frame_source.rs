//! The frames arch works in (VMX regions and guest memory for `KernelHw`, device DMA for
//! `pci::DmaFrame`, page tables for `paging::map_mmio`) come from the kernel's allocator
//! above it: which frames are free is kernel policy (`memory.rs`), handed down once as a
//! [`FrameSource`] before anything here asks for a frame. Arch calls nothing above it.

use devvmx::hw::Frame;
use spin::Once;

/// The allocator's entry points, as the kernel gives them.
#[derive(Clone, Copy)]
pub struct FrameSource {
    /// A zeroed 4 KiB frame, anywhere in RAM.
    pub alloc: fn() -> Option<Frame>,
    /// A zeroed 4 KiB frame below 4 GiB (DMA).
    pub alloc_low: fn() -> Option<Frame>,
    /// A zeroed frame below 4 GiB for a page table, never given back: its address.
    pub table: fn() -> Option<u64>,
    /// Gives back a frame from `alloc` or `alloc_low`.
    pub free: fn(Frame),
    /// Frames free now.
    pub free_count: fn() -> usize,
    /// Frames managed in all.
    pub total: fn() -> usize,
}

static SOURCE: Once<FrameSource> = Once::new();

/// Hands arch the kernel's allocator; only the first call counts.
pub fn install(source: FrameSource) {
    SOURCE.call_once(|| source);
}

/// A zeroed frame; none before [`install`].
pub fn alloc() -> Option<Frame> {
    SOURCE.get().and_then(|s| (s.alloc)())
}

/// A zeroed frame below 4 GiB; none before [`install`].
pub fn alloc_low() -> Option<Frame> {
    SOURCE.get().and_then(|s| (s.alloc_low)())
}

/// A page-table frame's address; none before [`install`].
pub fn table() -> Option<u64> {
    SOURCE.get().and_then(|s| (s.table)())
}

/// Gives `f` back to the allocator it came from.
pub fn free(f: Frame) {
    if let Some(s) = SOURCE.get() {
        (s.free)(f)
    }
}

pub fn free_count() -> usize {
    SOURCE.get().map_or(0, |s| (s.free_count)())
}

pub fn total() -> usize {
    SOURCE.get().map_or(0, |s| (s.total)())
}
