//! Physical memory: a bitmap frame allocator over the usable RAM below 4 GiB (the identity
//! map), and the kernel heap on a contiguous region carved out first.

use crate::arch::phys;
use crate::bootinfo::Region;
use linked_list_allocator::LockedHeap;
use spin::Mutex;

pub const FRAME: u64 = 4096;
const MAX_FRAMES: usize = (phys::MAPPED / FRAME) as usize;
const WORDS: usize = MAX_FRAMES / 64;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// One bit per frame: `usable` marks frames the allocator manages, `free` those not handed out.
struct FrameMap {
    usable: [u64; WORDS],
    free: [u64; WORDS],
    nfree: usize,
    total: usize,
    /// Word to start the next search at.
    hint: usize,
}

impl FrameMap {
    const fn new() -> Self {
        FrameMap {
            usable: [0; WORDS],
            free: [0; WORDS],
            nfree: 0,
            total: 0,
            hint: 0,
        }
    }

    fn add(&mut self, frame: usize) {
        let (w, b) = (frame / 64, 1u64 << (frame % 64));
        if w < WORDS && self.usable[w] & b == 0 {
            self.usable[w] |= b;
            self.free[w] |= b;
            self.nfree += 1;
            self.total += 1;
        }
    }

    fn alloc(&mut self) -> Option<usize> {
        for i in 0..WORDS {
            let w = (self.hint + i) % WORDS;
            if self.free[w] != 0 {
                let bit = self.free[w].trailing_zeros() as usize;
                self.free[w] &= !(1 << bit);
                self.nfree -= 1;
                self.hint = w;
                return Some(w * 64 + bit);
            }
        }
        None
    }

    /// False for a frame not managed here or already free.
    fn free(&mut self, frame: usize) -> bool {
        let (w, b) = (frame / 64, 1u64 << (frame % 64));
        if w >= WORDS || self.usable[w] & b == 0 || self.free[w] & b != 0 {
            return false;
        }
        self.free[w] |= b;
        self.nfree += 1;
        true
    }
}

static FRAMES: Mutex<FrameMap> = Mutex::new(FrameMap::new());

/// A zeroed 4 KiB frame's physical (and, identity-mapped, virtual) address.
pub fn alloc_frame() -> Option<u64> {
    let f = crate::arch::cpu::without_interrupts(|| FRAMES.lock().alloc())?;
    let pa = f as u64 * FRAME;
    phys::zero_frame(pa);
    Some(pa)
}

/// Returns a frame from `alloc_frame`. A bad or double free is logged and ignored.
pub fn free_frame(pa: u64) {
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

/// `r` minus every range in `holes`, as up to `holes.len() + 1` pieces, visited in order.
fn subtract(r: Region, holes: &[Region], f: &mut impl FnMut(Region)) {
    let mut start = r.start;
    while start < r.end {
        // The nearest hole that overlaps [start, end).
        let next = holes
            .iter()
            .filter(|h| h.end > start && h.start < r.end)
            .min_by_key(|h| h.start);
        match next {
            Some(h) if h.start <= start => start = h.end,
            Some(h) => {
                f(Region {
                    start,
                    end: h.start,
                });
                start = h.end;
            }
            None => {
                f(Region { start, end: r.end });
                break;
            }
        }
    }
}

fn clip(r: Region) -> Region {
    let start = r.start.div_ceil(FRAME) * FRAME;
    let end = (r.end.min(phys::MAPPED) / FRAME) * FRAME;
    Region {
        start,
        end: end.max(start),
    }
}

/// Sets up the heap and the frame allocator from the loader's RAM map. `reserved` ranges
/// (the kernel image, the loader's structures) are never handed out; nor is the first MiB.
/// Returns the heap's region.
pub fn init(ram: &[Region], reserved: &[Region]) -> Option<Region> {
    let mut holes = [Region::default(); 8];
    holes[0] = Region {
        start: 0,
        end: 1 << 20,
    };
    let n = reserved.len().min(6);
    holes[1..1 + n].copy_from_slice(&reserved[..n]);
    let holes = &mut holes[..n + 2];

    let mut total = 0u64;
    for &r in ram {
        let r = clip(r);
        total += r.end - r.start;
    }
    // A quarter of RAM, between 4 and 64 MiB: sessions' buffers and tree state.
    let want = ((total / 4) / FRAME * FRAME).clamp(4 << 20, 64 << 20);
    let mut heap = None;
    for &r in ram {
        subtract(clip(r), &holes[..holes.len() - 1], &mut |piece| {
            let start = piece.start.div_ceil(FRAME) * FRAME;
            if heap.is_none() && piece.end.saturating_sub(start) >= want {
                heap = Some(Region {
                    start,
                    end: start + want,
                });
            }
        });
    }
    let heap = heap?;
    let last = holes.len() - 1;
    holes[last] = heap;
    phys::init_heap(&HEAP, heap.start, want as usize);

    crate::arch::cpu::without_interrupts(|| {
        let mut map = FRAMES.lock();
        for &r in ram {
            subtract(clip(r), holes, &mut |piece| {
                let mut pa = piece.start.div_ceil(FRAME) * FRAME;
                while pa + FRAME <= piece.end {
                    map.add((pa / FRAME) as usize);
                    pa += FRAME;
                }
            });
        }
    });
    Some(heap)
}
