//! The kernel's memory plan and frame bitmap, compiled for the host: the heap and the free
//! frames lie in RAM, outside the first MiB, the kernel and the loader's structures, and
//! never overlap; frames go out once and come back once.

use hypervisor::bootinfo::Region;
use hypervisor::frames::{self, FrameMap, FRAME};

fn r(start: u64, end: u64) -> Region {
    Region { start, end }
}

fn overlaps(a: Region, b: Region) -> bool {
    a.start < b.end && b.start < a.end
}

/// QEMU's map for 512 MiB, and one above 4 GiB.
fn ram() -> Vec<Region> {
    vec![
        r(0, 0x9fc00),
        r(0x100000, 0x1ffe0000),
        r(0x1_0000_0000, 0x1_4000_0000),
    ]
}

#[test]
fn plan_keeps_out_of_reserved_ranges() {
    let kernel = r(0x100000, 0x22a000);
    let info = r(0x22a100, 0x22a9c8);
    let ram = ram();
    let plan = frames::plan(&ram, &[kernel, info]).expect("a plan");
    let heap = plan.heap;
    assert_eq!(heap.start % FRAME, 0);
    assert_eq!(
        heap.end - heap.start,
        64 << 20,
        "a quarter of RAM, at most 64 MiB"
    );
    assert!(ram
        .iter()
        .any(|&m| heap.start >= m.start && heap.end <= m.end));
    for hole in [r(0, 1 << 20), kernel, info] {
        assert!(!overlaps(heap, hole), "heap {heap:?} overlaps {hole:?}");
    }
    let mut n = 0u64;
    let mut last = 0;
    frames::free_frames(&ram, plan.holes(), 0..frames::LIMIT, |pa| {
        let f = r(pa, pa + FRAME);
        assert_eq!(pa % FRAME, 0);
        assert!(pa >= last, "in order, once each");
        last = pa + FRAME;
        assert!(
            pa + FRAME <= frames::LIMIT,
            "above the managed frames: {pa:#x}"
        );
        assert!(ram.iter().any(|&m| pa >= m.start && pa + FRAME <= m.end));
        for hole in [r(0, 1 << 20), kernel, info, heap] {
            assert!(!overlaps(f, hole), "frame {pa:#x} in {hole:?}");
        }
        n += 1;
    });
    // Usable RAM above 1 MiB, less the kernel, the info page and the heap, and the GiB
    // above 4 GiB.
    let expect = (0x1ffe0000 - 0x22a000) / FRAME - 1 - (64 << 20) / FRAME + (1 << 30) / FRAME;
    assert_eq!(n, expect);
    assert!(heap.end <= frames::LOW, "the heap stays low: {heap:?}");
    assert_eq!(frames::top(&ram), 0x1_4000_0000);
    // In two passes, as the kernel adds them (low, then high once mapped): the same frames.
    let mut m = 0u64;
    frames::free_frames(&ram, plan.holes(), 0..frames::LOW, |pa| {
        assert!(pa < frames::LOW);
        m += 1;
    });
    frames::free_frames(&ram, plan.holes(), frames::LOW..frames::LIMIT, |pa| {
        assert!(pa >= frames::LOW);
        m += 1;
    });
    assert_eq!(m, n);
}

#[test]
fn frames_above_4_gib_go_out_first_and_low_ones_on_request() {
    let low = (frames::LOW / FRAME) as usize;
    let mut map = FrameMap::new();
    for f in (256..260).chain(low..low + 3) {
        map.add(f);
    }
    map.add((frames::LIMIT / FRAME) as usize); // past the limit: not managed
    assert_eq!(map.total, 7);
    assert_eq!(map.alloc_low(), Some(256));
    let mut high: Vec<_> = (0..3).map(|_| map.alloc().unwrap()).collect();
    high.sort();
    assert_eq!(high, vec![low, low + 1, low + 2], "high frames first");
    assert_eq!(map.alloc(), Some(257), "then the low ones");
    assert!(map.free(low + 1));
    assert_eq!(
        map.alloc_low(),
        Some(258),
        "alloc_low never hands out a high one"
    );
    assert_eq!(map.alloc_low(), Some(259));
    assert_eq!(map.alloc_low(), None);
    assert_eq!(map.alloc(), Some(low + 1));
}

#[test]
fn plan_fails_without_room_for_a_heap() {
    assert!(frames::plan(&[r(0x100000, 0x200000)], &[]).is_none());
    assert!(frames::plan(&[], &[]).is_none());
}

#[test]
fn frames_go_out_once_and_come_back_once() {
    let mut map = Box::new(FrameMap::new());
    for f in 256..256 + 100 {
        map.add(f);
    }
    map.add(300); // already there: not counted twice
    assert_eq!((map.nfree, map.total), (100, 100));
    let mut got = Vec::new();
    while let Some(f) = map.alloc() {
        assert!((256..356).contains(&f));
        got.push(f);
    }
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 100, "each frame handed out once");
    assert_eq!(map.nfree, 0);
    assert!(map.free(300));
    assert!(!map.free(300), "double free refused");
    assert!(!map.free(5), "a frame never managed is refused");
    assert!(!map.free(usize::MAX), "out of range refused");
    assert_eq!(map.nfree, 1);
    assert_eq!(map.alloc(), Some(300));
}

#[test]
fn the_trampoline_page_must_be_free_ram() {
    let ram = [
        Region {
            start: 0,
            end: 0x9_fc00,
        },
        Region {
            start: 0x10_0000,
            end: 0x800_0000,
        },
    ];
    assert!(frames::page_free(0x8000, &ram, &[]));
    assert!(!frames::page_free(0x9_f000, &ram, &[]), "runs past the RAM");
    assert!(!frames::page_free(0xa_0000, &ram, &[]), "not RAM");
    let info = [Region {
        start: 0x8ff0,
        end: 0x9100,
    }];
    assert!(
        !frames::page_free(0x8000, &ram, &info),
        "the loader's structures"
    );
}
