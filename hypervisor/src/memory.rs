//! Physical memory: a bitmap frame allocator over all usable RAM (identity-mapped: the boot
//! stub maps the low 4 GiB, `init` the rest), and the kernel heap on a contiguous region
//! below 4 GiB carved out first (frames.rs plans both).
//!
//! Frames leave here as `devvmx::hw::Frame`s: this allocator holds the program's one
//! `FrameMint` (taken at `init`), so nothing else can turn an address into a frame.

use crate::arch::frame_source::FrameSource;
use crate::arch::phys;
use crate::bootinfo::Region;
use crate::frames::{FrameMap, FRAME, LIMIT, LOW};
use devvmx::hw::{Frame, FrameMint};
use linked_list_allocator::LockedHeap;
use spin::{Mutex, Once};

#[cfg_attr(target_os = "none", global_allocator)]
static HEAP: LockedHeap = LockedHeap::empty();

static FRAMES: Mutex<FrameMap> = Mutex::new(FrameMap::new());
static MINT: Once<FrameMint> = Once::new();

/// What arch gets of this allocator (`kmain` hands it down: arch calls nothing above it).
pub const SOURCE: FrameSource = FrameSource {
    alloc: alloc_frame,
    alloc_low: alloc_low_frame,
    table: table_frame,
    free: free_frame,
    free_count: free_frames,
    total: total_frames,
};

/// A zeroed 4 KiB frame (its physical address is also its virtual one: identity-mapped),
/// above 4 GiB where there is RAM there.
pub fn alloc_frame() -> Option<Frame> {
    let mint = MINT.get()?;
    let pa = zeroed(FrameMap::alloc)?;
    Some(mint.frame(pa))
}

/// A zeroed 4 KiB frame below 4 GiB (DMA for devices that cannot address higher).
pub fn alloc_low_frame() -> Option<Frame> {
    let mint = MINT.get()?;
    let pa = zeroed(FrameMap::alloc_low)?;
    Some(mint.frame(pa))
}

/// A zeroed frame below 4 GiB for a page table of the identity map: never given back.
pub fn table_frame() -> Option<u64> {
    zeroed(FrameMap::alloc_low)
}

/// A frame from `pick`, zeroed: its physical address.
fn zeroed(pick: fn(&mut FrameMap) -> Option<usize>) -> Option<u64> {
    let f = crate::arch::cpu::without_interrupts(|| pick(&mut FRAMES.lock()))?;
    let pa = f as u64 * FRAME;
    phys::zero_frame(pa);
    Some(pa)
}

/// Returns a frame from `alloc_frame`. A bad or double free is logged and ignored.
pub fn free_frame(f: Frame) {
    let Some(mint) = MINT.get() else {
        return;
    };
    let pa = mint.reclaim(f);
    let ok = pa.is_multiple_of(FRAME)
        && crate::arch::cpu::without_interrupts(|| FRAMES.lock().free((pa / FRAME) as usize));
    if !ok {
        log::error!("free_frame: {pa:#x} is not an allocated frame");
    }
}

pub fn free_frames() -> usize {
    crate::arch::cpu::without_interrupts(|| FRAMES.lock().nfree)
}

pub fn total_frames() -> usize {
    crate::arch::cpu::without_interrupts(|| FRAMES.lock().total)
}

/// Sets up the heap and the frame allocator from the loader's RAM map. `reserved` ranges
/// (the kernel image, the loader's structures) are never handed out; nor is the first MiB.
/// RAM above 4 GiB is identity-mapped (its page tables from the low frames) and then
/// managed too. Returns the heap's region.
pub fn init(ram: &[Region], reserved: &[Region]) -> Option<Region> {
    MINT.call_once(|| FrameMint::take().expect("the frame allocator takes the mint first"));
    let plan = crate::frames::plan(ram, reserved)?;
    let heap = plan.heap;
    phys::init_heap(&HEAP, heap.start, (heap.end - heap.start) as usize);
    let top = crate::frames::top(ram);
    crate::arch::cpu::without_interrupts(|| FRAMES.lock().reserve(top));
    let add = |range: core::ops::Range<u64>| {
        crate::arch::cpu::without_interrupts(|| {
            let mut map = FRAMES.lock();
            crate::frames::free_frames(ram, plan.holes(), range, |pa| {
                map.add((pa / FRAME) as usize)
            });
        })
    };
    add(0..LOW);
    if top > LOW {
        if crate::arch::paging::map_ram(top, table_frame) {
            add(LOW..LIMIT);
        } else {
            log::warn!("memory: RAM above 4 GiB (to {top:#x}) could not be mapped; unused");
        }
    }
    Some(heap)
}
