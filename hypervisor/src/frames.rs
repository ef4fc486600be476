//! The frame allocator's bookkeeping and the boot-time memory plan, free of hardware so the
//! host can test them: a bitmap over the frames of all RAM (below [`LIMIT`]), and the
//! arithmetic that carves the heap and the free frames out of the loader's RAM map.

use crate::bootinfo::Region;
use alloc::vec::Vec;
use core::ops::Range;

pub const FRAME: u64 = 4096;
/// Frames at or above this physical address are not managed (256 GiB: the bitmaps, on the
/// heap, then take 16 MiB).
pub const LIMIT: u64 = 1 << 38;
/// The boot stub's identity map ends here: the heap, the page tables that map the rest and
/// DMA for devices that cannot reach higher lie below it.
pub const LOW: u64 = 1 << 32;
/// Bitmap words below [`LOW`].
const LOW_WORDS: usize = (LOW / FRAME / 64) as usize;

/// One bit per frame: `usable` marks frames the allocator manages, `free` those not handed
/// out. The bitmaps grow as frames are added (they live on the heap).
pub struct FrameMap {
    usable: Vec<u64>,
    free: Vec<u64>,
    pub nfree: usize,
    pub total: usize,
    /// How many of the free frames lie below [`LOW`] (so a search skips an exhausted half).
    low_free: usize,
    /// Word to start the next search at.
    hint: usize,
}

impl FrameMap {
    pub const fn new() -> Self {
        FrameMap {
            usable: Vec::new(),
            free: Vec::new(),
            nfree: 0,
            total: 0,
            low_free: 0,
            hint: 0,
        }
    }

    /// Makes room for frames below `end` (a physical address) at once, so adding them does
    /// not grow the bitmaps piecemeal.
    pub fn reserve(&mut self, end: u64) {
        let words = (end.min(LIMIT) / FRAME).div_ceil(64) as usize;
        let more = words.saturating_sub(self.usable.len());
        self.usable.reserve_exact(more);
        self.free.reserve_exact(more);
    }

    /// Adds a frame (a frame number, below LIMIT / FRAME) to those managed.
    pub fn add(&mut self, frame: usize) {
        let (w, b) = (frame / 64, 1u64 << (frame % 64));
        if frame as u64 >= LIMIT / FRAME {
            return;
        }
        if w >= self.usable.len() {
            self.usable.resize(w + 1, 0);
            self.free.resize(w + 1, 0);
        }
        if self.usable[w] & b == 0 {
            self.usable[w] |= b;
            self.free[w] |= b;
            self.nfree += 1;
            self.total += 1;
            self.low_free += usize::from(w < LOW_WORDS);
        }
    }

    /// A free frame, those above [`LOW`] first (the low ones stay for what needs them).
    pub fn alloc(&mut self) -> Option<usize> {
        let n = self.free.len();
        if self.nfree > self.low_free {
            self.alloc_in(LOW_WORDS.min(n)..n)
        } else {
            self.alloc_low()
        }
    }

    /// A free frame below [`LOW`].
    pub fn alloc_low(&mut self) -> Option<usize> {
        if self.low_free == 0 {
            return None;
        }
        let f = self.alloc_in(0..LOW_WORDS.min(self.free.len()))?;
        self.low_free -= 1;
        Some(f)
    }

    /// A free frame in the bitmap words `words`, searched from the hint.
    fn alloc_in(&mut self, words: Range<usize>) -> Option<usize> {
        let len = words.len();
        let first = if words.contains(&self.hint) {
            self.hint - words.start
        } else {
            0
        };
        for i in 0..len {
            let w = words.start + (first + i) % len;
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
    pub fn free(&mut self, frame: usize) -> bool {
        let (w, b) = (frame / 64, 1u64 << (frame % 64));
        if w >= self.usable.len() || self.usable[w] & b == 0 || self.free[w] & b != 0 {
            return false;
        }
        self.free[w] |= b;
        self.nfree += 1;
        self.low_free += usize::from(w < LOW_WORDS);
        true
    }
}

impl Default for FrameMap {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether the frame at `pa` lies wholly in `ram` and outside every `reserved` range (a
/// page below 1 MiB that the allocator never hands out, e.g. the AP trampoline's, must be
/// RAM nothing else uses).
pub fn page_free(pa: u64, ram: &[Region], reserved: &[Region]) -> bool {
    let end = pa + FRAME;
    ram.iter().any(|r| r.start <= pa && end <= r.end)
        && !reserved.iter().any(|r| r.start < end && pa < r.end)
}

/// `r` minus every range in `holes`, as up to `holes.len() + 1` pieces, visited in order.
pub fn subtract(r: Region, holes: &[Region], f: &mut impl FnMut(Region)) {
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

/// `r` in whole frames below [`LIMIT`].
pub fn clip(r: Region) -> Region {
    clip_below(r, LIMIT)
}

/// `r` in whole frames below `limit`.
pub fn clip_below(r: Region, limit: u64) -> Region {
    let start = r.start.div_ceil(FRAME) * FRAME;
    let end = (r.end.min(limit) / FRAME) * FRAME;
    Region {
        start,
        end: end.max(start),
    }
}

/// Where the heap goes and what must never be handed out.
pub struct Plan {
    pub heap: Region,
    holes: [Region; 8],
    n: usize,
}

impl Plan {
    /// The first MiB, the reserved ranges and the heap.
    pub fn holes(&self) -> &[Region] {
        &self.holes[..self.n]
    }
}

/// Plans memory from the loader's RAM map: the heap (a quarter of RAM, 4-64 MiB, frame
/// aligned) in the first usable piece below [`LOW`] that holds it, outside the first MiB and the
/// `reserved` ranges (at most 6: the kernel image, the loader's structures).
pub fn plan(ram: &[Region], reserved: &[Region]) -> Option<Plan> {
    let mut holes = [Region::default(); 8];
    holes[0] = Region {
        start: 0,
        end: 1 << 20,
    };
    let n = reserved.len().min(6);
    holes[1..1 + n].copy_from_slice(&reserved[..n]);
    let total: u64 = ram.iter().map(|&r| clip(r)).map(|r| r.end - r.start).sum();
    let want = ((total / 4) / FRAME * FRAME).clamp(4 << 20, 64 << 20);
    let mut heap = None;
    for &r in ram {
        subtract(clip_below(r, LOW), &holes[..n + 1], &mut |piece| {
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
    holes[n + 1] = heap;
    Some(Plan {
        heap,
        holes,
        n: n + 2,
    })
}

/// Calls `f` with every whole frame of `ram` outside `holes` in `range` (and below
/// [`LIMIT`]).
pub fn free_frames(ram: &[Region], holes: &[Region], range: Range<u64>, mut f: impl FnMut(u64)) {
    for &r in ram {
        let r = Region {
            start: r.start.max(range.start),
            end: r.end.min(range.end),
        };
        subtract(clip(r), holes, &mut |piece| {
            let mut pa = piece.start.div_ceil(FRAME) * FRAME;
            while pa + FRAME <= piece.end {
                f(pa);
                pa += FRAME;
            }
        });
    }
}

/// The end of the highest frame of `ram` (below [`LIMIT`]): what the identity map must cover.
pub fn top(ram: &[Region]) -> u64 {
    ram.iter()
        .map(|&r| clip(r))
        .map(|r| r.end)
        .max()
        .unwrap_or(0)
}
