//! Physical memory: a bitmap frame allocator over the usable RAM below 4 GiB (the identity
//! map), and the kernel heap on a contiguous region carved out first (frames.rs plans both).
//!
//! Frames leave here as `devvmx::hw::Frame`s: this allocator holds the program's one
//! `FrameMint` (taken at `init`), so nothing else can turn an address into a frame.

use crate::arch::phys;
use crate::bootinfo::Region;
use crate::frames::{FrameMap, FRAME};
use devvmx::hw::{Frame, FrameMint};
use linked_list_allocator::LockedHeap;
use spin::{Mutex, Once};

const _: () = assert!(crate::frames::LIMIT == phys::MAPPED);

#[cfg_attr(target_os = "none", global_allocator)]
static HEAP: LockedHeap = LockedHeap::empty();

static FRAMES: Mutex<FrameMap> = Mutex::new(FrameMap::new());
static MINT: Once<FrameMint> = Once::new();

/// A zeroed 4 KiB frame (its physical address is also its virtual one: identity-mapped).
pub fn alloc_frame() -> Option<Frame> {
    let mint = MINT.get()?;
    let f = crate::arch::cpu::without_interrupts(|| FRAMES.lock().alloc())?;
    let pa = f as u64 * FRAME;
    phys::zero_frame(pa);
    Some(mint.frame(pa))
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
/// Returns the heap's region.
pub fn init(ram: &[Region], reserved: &[Region]) -> Option<Region> {
    MINT.call_once(|| FrameMint::take().expect("the frame allocator takes the mint first"));
    let plan = crate::frames::plan(ram, reserved)?;
    let heap = plan.heap;
    phys::init_heap(&HEAP, heap.start, (heap.end - heap.start) as usize);
    crate::arch::cpu::without_interrupts(|| {
        let mut map = FRAMES.lock();
        crate::frames::free_frames(ram, plan.holes(), |pa| map.add((pa / FRAME) as usize));
    });
    Some(heap)
}
