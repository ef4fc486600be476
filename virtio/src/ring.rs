//! Split virtqueues (virtio 1.x, 2.7): where the descriptor table, the available ring and
//! the used ring sit for a queue of a given size, what their flags mean, and the byte
//! encodings of a descriptor and a used entry. The two transports differ only in the used
//! ring's alignment: 4 bytes for the modern one, which places each part where the driver
//! says ([`Layout::modern`]); a page for the legacy one, which derives all three from one
//! page frame number ([`Layout::legacy`]).
//!
//! Offsets are relative to the descriptor table. Nothing here panics: slots wrap by the
//! queue size, and a queue of size 0 has every slot at its ring's start.

use virtio_spec::virtq::{AvailF, DescF, UsedF};

/// Descriptor flags: the buffer continues in `next`, the device writes it, it holds a
/// table of descriptors.
pub const DESC_F_NEXT: u16 = DescF::NEXT.bits().to_ne();
pub const DESC_F_WRITE: u16 = DescF::WRITE.bits().to_ne();
pub const DESC_F_INDIRECT: u16 = DescF::INDIRECT.bits().to_ne();
/// Available ring flag: the driver wants no interrupt for used buffers.
pub const AVAIL_F_NO_INTERRUPT: u16 = AvailF::NO_INTERRUPT.bits().to_ne();
/// Used ring flag: the device wants no notification of available buffers.
pub const USED_F_NO_NOTIFY: u16 = UsedF::NO_NOTIFY.bits().to_ne();

/// Bytes of a descriptor (addr u64, len u32, flags u16, next u16).
pub const DESC_SIZE: usize = 16;
/// Bytes of a used entry (id u32, len u32).
pub const USED_ELEM_SIZE: usize = 8;
/// The modern transport's alignment of the used ring.
pub const USED_ALIGN: usize = 4;
/// The legacy transport's alignment of the used ring, and the page its PFN counts.
pub const LEGACY_ALIGN: usize = 4096;

/// Where the three parts of a split ring of `size` entries sit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub size: u16,
    pub desc: usize,
    pub avail: usize,
    pub used: usize,
}

impl Layout {
    /// Descriptor table, then the available ring (flags, idx, `ring[size]`, used_event),
    /// then the used ring at the next multiple of `used_align` (a power of two).
    pub const fn new(size: u16, used_align: usize) -> Layout {
        let n = size as usize;
        let desc = 0;
        let avail = desc + DESC_SIZE * n;
        let avail_end = avail + 6 + 2 * n;
        let used = (avail_end + used_align - 1) & !(used_align - 1);
        Layout {
            size,
            desc,
            avail,
            used,
        }
    }

    /// The layout of a modern (virtio 1.x) queue placed in one piece.
    pub const fn modern(size: u16) -> Layout {
        Layout::new(size, USED_ALIGN)
    }

    /// The layout of a legacy (0.9.5) queue from its page frame number's address.
    pub const fn legacy(size: u16) -> Layout {
        Layout::new(size, LEGACY_ALIGN)
    }

    /// The end of the used ring (flags, idx, `ring[size]`, avail_event).
    pub const fn end(&self) -> usize {
        self.used + 6 + USED_ELEM_SIZE * self.size as usize
    }

    /// Descriptor `index` (taken modulo the size, as a ring slot is).
    pub const fn desc_at(&self, index: u16) -> usize {
        self.desc + DESC_SIZE * self.slot(index)
    }

    /// The available ring's flags, index, and the slot for available index `idx`.
    pub const fn avail_flags(&self) -> usize {
        self.avail
    }
    pub const fn avail_idx(&self) -> usize {
        self.avail + 2
    }
    pub const fn avail_slot(&self, idx: u16) -> usize {
        self.avail + 4 + 2 * self.slot(idx)
    }

    /// The used ring's flags, index, and the entry for used index `idx`.
    pub const fn used_flags(&self) -> usize {
        self.used
    }
    pub const fn used_idx(&self) -> usize {
        self.used + 2
    }
    pub const fn used_slot(&self, idx: u16) -> usize {
        self.used + 4 + USED_ELEM_SIZE * self.slot(idx)
    }

    /// The ring slot a free-running 16-bit index stands for.
    pub const fn slot(&self, idx: u16) -> usize {
        match idx.checked_rem(self.size) {
            Some(s) => s as usize,
            None => 0,
        }
    }
}

/// The largest power of two not above `n`, 0 for 0: a queue size both transports take
/// (legacy rings must be powers of two, and QEMU keeps that rule for modern ones).
pub const fn fit_queue_size(n: u16) -> u16 {
    if n == 0 {
        0
    } else {
        1 << (15 - n.leading_zeros())
    }
}

/// One descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    pub flags: u16,
    pub next: u16,
}

impl Desc {
    pub fn encode(self) -> [u8; DESC_SIZE] {
        let mut b = [0u8; DESC_SIZE];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..14].copy_from_slice(&self.flags.to_le_bytes());
        b[14..16].copy_from_slice(&self.next.to_le_bytes());
        b
    }

    /// The descriptor at the start of `b`; None when `b` is shorter than one.
    pub fn decode(b: &[u8]) -> Option<Desc> {
        let (b, _) = b.split_first_chunk::<DESC_SIZE>()?;
        let [a0, a1, a2, a3, a4, a5, a6, a7, l0, l1, l2, l3, f0, f1, n0, n1] = *b;
        Some(Desc {
            addr: u64::from_le_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
            len: u32::from_le_bytes([l0, l1, l2, l3]),
            flags: u16::from_le_bytes([f0, f1]),
            next: u16::from_le_bytes([n0, n1]),
        })
    }
}

/// One used entry: the head of the chain the device used, and the bytes it wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsedElem {
    pub id: u32,
    pub len: u32,
}

impl UsedElem {
    pub fn encode(self) -> [u8; USED_ELEM_SIZE] {
        let mut b = [0u8; USED_ELEM_SIZE];
        b[0..4].copy_from_slice(&self.id.to_le_bytes());
        b[4..8].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    /// The entry at the start of `b`; None when `b` is shorter than one.
    pub fn decode(b: &[u8]) -> Option<UsedElem> {
        let (b, _) = b.split_first_chunk::<USED_ELEM_SIZE>()?;
        let [i0, i1, i2, i3, l0, l1, l2, l3] = *b;
        Some(UsedElem {
            id: u32::from_le_bytes([i0, i1, i2, i3]),
            len: u32::from_le_bytes([l0, l1, l2, l3]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux's vring_size(): the bytes of a legacy ring with `align`.
    fn vring_size(num: usize, align: usize) -> usize {
        ((16 * num + 2 * (3 + num) + align - 1) & !(align - 1)) + 2 * 3 + 8 * num
    }

    #[test]
    fn flags_are_the_specifications() {
        assert_eq!((DESC_F_NEXT, DESC_F_WRITE, DESC_F_INDIRECT), (1, 2, 4));
        assert_eq!((AVAIL_F_NO_INTERRUPT, USED_F_NO_NOTIFY), (1, 1));
    }

    #[test]
    fn modern_layout_of_a_queue_in_one_frame() {
        let l = Layout::modern(128);
        assert_eq!((l.desc, l.avail, l.used), (0, 2048, 2312));
        assert_eq!(l.end(), 3342);
        // 256 entries no longer fit a 4 KiB frame.
        assert!(Layout::modern(256).end() > 4096);
        // The used ring is 4-aligned whatever the size.
        for size in 1..=512u16 {
            let l = Layout::modern(size);
            assert_eq!(l.used % 4, 0);
            assert!(l.used >= l.avail + 6 + 2 * usize::from(size));
            assert!(l.used < l.avail + 6 + 2 * usize::from(size) + 4);
        }
    }

    #[test]
    fn legacy_layout_is_linuxs() {
        for size in [1u16, 2, 4, 8, 64, 128, 256, 1024, 32768] {
            let l = Layout::legacy(size);
            assert_eq!(l.end(), vring_size(usize::from(size), 4096), "size {size}");
            assert_eq!(l.used % 4096, 0);
        }
        let l = Layout::legacy(128);
        assert_eq!((l.avail, l.used, l.end()), (2048, 4096, 5126));
    }

    #[test]
    fn slots_wrap_with_the_index() {
        let l = Layout::modern(8);
        assert_eq!(l.avail_idx(), l.avail + 2);
        assert_eq!(l.avail_slot(0), l.avail + 4);
        assert_eq!(l.avail_slot(9), l.avail + 4 + 2);
        assert_eq!(l.avail_slot(u16::MAX), l.avail + 4 + 2 * 7);
        assert_eq!(l.used_idx(), l.used + 2);
        assert_eq!(l.used_slot(8), l.used + 4);
        assert_eq!(l.used_slot(0xfffe), l.used + 4 + 8 * 6);
        assert_eq!(l.desc_at(3), 48);
        assert_eq!(l.desc_at(11), 48);
        // The largest ring: nothing overflows.
        let l = Layout::legacy(u16::MAX);
        assert!(l.used_slot(u16::MAX) < l.end());
    }

    #[test]
    fn a_zero_size_queue_does_not_panic() {
        let l = Layout::modern(0);
        assert_eq!((l.avail, l.used), (0, 8));
        assert_eq!(l.avail_slot(5), 4);
        assert_eq!(l.used_slot(u16::MAX), l.used + 4);
        assert_eq!(l.desc_at(7), 0);
    }

    #[test]
    fn queue_sizes_fit_down_to_a_power_of_two() {
        let cases = [
            (0, 0),
            (1, 1),
            (2, 2),
            (3, 2),
            (127, 64),
            (128, 128),
            (1000, 512),
        ];
        for (n, want) in cases {
            assert_eq!(fit_queue_size(n), want, "{n}");
        }
        assert_eq!(fit_queue_size(u16::MAX), 32768);
    }

    #[test]
    fn descriptors_and_used_entries_round_trip() {
        let d = Desc {
            addr: 0x1122_3344_5566_7788,
            len: 0x99aa_bbcc,
            flags: DESC_F_NEXT | DESC_F_WRITE,
            next: 0xfedc,
        };
        let b = d.encode();
        assert_eq!(b[0], 0x88);
        assert_eq!(b[12..14], [3, 0]);
        assert_eq!(Desc::decode(&b), Some(d));
        let u = UsedElem { id: 7, len: 513 };
        assert_eq!(u.encode(), [7, 0, 0, 0, 1, 2, 0, 0]);
        assert_eq!(UsedElem::decode(&u.encode()), Some(u));
    }

    #[test]
    fn short_entries_are_refused() {
        let b = [0xffu8; DESC_SIZE];
        for n in 0..DESC_SIZE {
            assert_eq!(Desc::decode(&b[..n]), None);
        }
        for n in 0..USED_ELEM_SIZE {
            assert_eq!(UsedElem::decode(&b[..n]), None);
        }
        // Longer input: the first entry.
        let mut long = [0u8; 20];
        long[..8].copy_from_slice(&UsedElem { id: 1, len: 2 }.encode());
        assert_eq!(UsedElem::decode(&long), Some(UsedElem { id: 1, len: 2 }));
    }
}
