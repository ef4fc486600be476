use super::*;
use crate::ept::Ept;
use crate::segment::Segments;
use crate::testhw::TestHw;
use alloc::vec;

/// A VM map over segment `ram` (4 pages, each page's first byte its number): pages 0-1
/// at 0x1000 (rw), page 3 at 0x4000 read-only, and nothing at 0x3000.
struct World {
    hw: TestHw,
    segs: Segments,
    ept: Ept,
    map: MemMap,
}

impl World {
    fn new() -> World {
        let mut hw = TestHw::new(256);
        let mut segs = Segments::new();
        let (slot, gen) = segs.create("ram", "eve", 0).unwrap();
        segs.ctl(&mut hw, slot, gen, b"va 0x10000000 0x4000")
            .unwrap();
        for p in 0..4u8 {
            let at = u64::from(p) * PAGE as u64;
            segs.io(&mut hw, slot, gen, at, &mut [], Some(&[p]))
                .unwrap();
        }
        let pml4 = hw.alloc_frame().unwrap();
        let mut ept = Ept::new(pml4);
        let mut map = MemMap::default();
        let lines = b"rw- wb 0x1000 0x3000 ram 0\nr-- wb 0x4000 0x5000 ram 0x3000\n";
        map.set(&mut hw, &mut segs, &mut ept, lines, "eve").unwrap();
        World { hw, segs, ept, map }
    }

    fn ram(&mut self) -> GuestRam<'_, TestHw> {
        GuestRam::new(&mut self.hw, &self.map)
    }

    /// Everything back: the map, the EPT, the segment; then no frame is left.
    fn end(mut self) {
        self.map.clear(&mut self.hw, &mut self.segs, &mut self.ept);
        if let Some(f) = self.ept.release(&mut self.hw) {
            self.hw.free_frame(f);
        }
        self.segs.remove(&mut self.hw, 0);
        assert_eq!(self.hw.frames_free(), self.hw.frames_total());
    }
}

#[test]
fn reads_and_writes_cross_pages_and_reach_the_segment() {
    let mut w = World::new();
    assert_eq!(w.ram().limit(), 0x5000);
    let mut b = [0u8; 2];
    w.ram().read(0x1fff, &mut b).unwrap();
    assert_eq!(b, [0, 1]);
    w.ram().read(0x4000, &mut b[..1]).unwrap();
    assert_eq!(b[0], 3);
    w.ram().write(0x1ffe, &[9, 8, 7, 6]).unwrap();
    let mut got = vec![0u8; 4];
    w.segs.io(&mut w.hw, 0, 1, 0xffe, &mut got, None).unwrap();
    assert_eq!(got, [9, 8, 7, 6]);
    w.end();
}

#[test]
fn unmapped_partly_mapped_and_read_only_ranges_are_errors_that_change_nothing() {
    let mut w = World::new();
    let mut b = [0u8; 2];
    for (addr, len) in [
        (0, 1),
        (0xfff, 2),
        (0x2fff, 2),
        (0x3000, 1),
        (0x5000, 1),
        (u64::MAX, 2),
    ] {
        assert!(w.ram().read(addr, &mut b[..len]).is_err(), "{addr:#x}");
    }
    // A write that runs off the end of the mapping writes nothing.
    assert!(w.ram().write(0x2fff, &[5, 5]).is_err());
    w.ram().read(0x2fff, &mut b[..1]).unwrap();
    assert_eq!(b[0], 0);
    // Read-only for the device.
    let e = w.ram().write(0x4000, &[1]).unwrap_err();
    assert!(e.contains("0x4000 is not mapped"), "{e}");
    // Empty accesses are fine anywhere.
    w.ram().read(0x9000, &mut []).unwrap();
    w.end();
}

#[test]
fn the_vms_share_of_the_frames_outlives_the_name_and_is_freed_once() {
    let mut w = World::new();
    let total = w.hw.frames_total();
    // The name goes; the map still holds the memory, and reaches it.
    w.segs.remove(&mut w.hw, 0);
    let mut b = [0u8; 1];
    w.ram().read(0x2000, &mut b).unwrap();
    assert_eq!(b[0], 1);
    assert!(w.hw.frames_free() < total);
    w.map.clear(&mut w.hw, &mut w.segs, &mut w.ept);
    if let Some(f) = w.ept.release(&mut w.hw) {
        w.hw.free_frame(f);
    }
    assert_eq!(w.hw.frames_free(), total);
}
