//! A PCI function's capability list (PCI Local Bus 3.0, 6.7), read from configuration
//! space through [`ConfigSpace`]: the walk itself, and the two capabilities that say how a
//! function signals interrupts by message, MSI (6.8.1) and MSI-X (6.8.2). Pure: the kernel
//! reads a real function's space (`arch::pci::Bdf`), the tests a byte array.

use crate::arch::pci::{Bdf, CAP_PTR, STATUS};

/// A function's configuration space (the first 256 bytes), read a dword at a time.
pub trait ConfigSpace {
    /// The dword at `offset & !3`.
    fn read32(&self, offset: u8) -> u32;

    fn read16(&self, offset: u8) -> u16 {
        (self.read32(offset) >> ((offset & 2) * 8)) as u16
    }

    fn read8(&self, offset: u8) -> u8 {
        (self.read32(offset) >> ((offset & 3) * 8)) as u8
    }
}

impl ConfigSpace for Bdf {
    fn read32(&self, offset: u8) -> u32 {
        Bdf::read32(*self, offset)
    }
}

/// Status register: the function has a capability list at [`CAP_PTR`].
const STATUS_CAP_LIST: u16 = 1 << 4;
/// Capabilities live above the standard header.
const FIRST_CAP: u8 = 0x40;
/// At most this many capabilities fit above the header (4 bytes each): a longer list loops.
const MAX_CAPS: u8 = 48;

/// A capability's id (the PCI Code and ID Assignment specification's table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapId {
    Msi,
    MsiX,
    Other(u8),
}

impl From<u8> for CapId {
    fn from(id: u8) -> CapId {
        match id {
            0x05 => CapId::Msi,
            0x11 => CapId::MsiX,
            other => CapId::Other(other),
        }
    }
}

/// One entry of the list: its id and where it starts in configuration space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap {
    pub id: CapId,
    pub at: u8,
}

/// The capability list of `cfg`, in list order. A pointer into the header, or a list
/// longer than the space can hold (a loop), ends it.
pub fn caps<C: ConfigSpace>(cfg: &C) -> Caps<'_, C> {
    let next = if cfg.read16(STATUS) & STATUS_CAP_LIST != 0 {
        cfg.read8(CAP_PTR) & 0xFC
    } else {
        0
    };
    Caps {
        cfg,
        next,
        budget: MAX_CAPS,
    }
}

pub struct Caps<'a, C> {
    cfg: &'a C,
    next: u8,
    budget: u8,
}

impl<C: ConfigSpace> Iterator for Caps<'_, C> {
    type Item = Cap;

    fn next(&mut self) -> Option<Cap> {
        if self.next < FIRST_CAP || self.budget == 0 {
            return None;
        }
        self.budget -= 1;
        let at = self.next;
        let id = CapId::from(self.cfg.read8(at));
        self.next = self.cfg.read8(at + 1) & 0xFC;
        Some(Cap { id, at })
    }
}

/// The first capability with `id`.
fn find<C: ConfigSpace>(cfg: &C, id: CapId) -> Option<u8> {
    caps(cfg).find(|c| c.id == id).map(|c| c.at)
}

/// MSI's message control register (at +2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiControl(pub u16);

impl MsiControl {
    pub const ENABLE: u16 = 1 << 0;
    /// Multiple Message Enable (bits 6:4): log2 of the vectors granted; 0 grants one.
    pub const MULTIPLE_ENABLE: u16 = 0b111 << 4;
    pub const ADDRESS_64: u16 = 1 << 7;
    pub const PER_VECTOR_MASK: u16 = 1 << 8;

    /// The same register with MSI on for one vector.
    pub fn one_vector_enabled(self) -> MsiControl {
        MsiControl((self.0 & !Self::MULTIPLE_ENABLE) | Self::ENABLE)
    }
}

/// A function's MSI capability: where each of its registers is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msi {
    pub at: u8,
    pub control: MsiControl,
}

impl Msi {
    pub fn control_at(&self) -> u8 {
        self.at + 2
    }

    pub fn address_at(&self) -> u8 {
        self.at + 4
    }

    /// The address's upper half, where the function takes 64-bit addresses.
    pub fn address_high_at(&self) -> Option<u8> {
        self.wide().then_some(self.at + 8)
    }

    pub fn data_at(&self) -> u8 {
        self.at + if self.wide() { 12 } else { 8 }
    }

    /// The per-vector mask bits, where the function has them.
    pub fn mask_at(&self) -> Option<u8> {
        (self.control.0 & MsiControl::PER_VECTOR_MASK != 0)
            .then_some(self.at + if self.wide() { 16 } else { 12 })
    }

    fn wide(&self) -> bool {
        self.control.0 & MsiControl::ADDRESS_64 != 0
    }
}

/// The function's MSI capability, if it has one.
pub fn msi<C: ConfigSpace>(cfg: &C) -> Option<Msi> {
    let at = find(cfg, CapId::Msi)?;
    Some(Msi {
        at,
        control: MsiControl(cfg.read16(at + 2)),
    })
}

/// MSI-X's message control register (at +2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixControl(pub u16);

impl MsixControl {
    /// Table Size (bits 10:0): entries less one.
    pub const TABLE_SIZE: u16 = 0x7FF;
    pub const FUNCTION_MASK: u16 = 1 << 14;
    pub const ENABLE: u16 = 1 << 15;
}

/// Where an MSI-X structure lies: a memory BAR (the BIR) and an offset into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarOffset {
    pub bar: u8,
    pub offset: u32,
}

impl BarOffset {
    /// A Table or PBA Offset/BIR register: BIR in bits 2:0 (6 and 7 are reserved), the
    /// offset (8-byte aligned) above.
    fn decode(reg: u32) -> Option<BarOffset> {
        let bar = (reg & 7) as u8;
        (bar < 6).then_some(BarOffset {
            bar,
            offset: reg & !7,
        })
    }
}

/// A function's MSI-X capability: its table and pending-bit array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msix {
    pub at: u8,
    pub control: MsixControl,
    pub table: BarOffset,
    pub pba: BarOffset,
}

impl Msix {
    pub fn control_at(&self) -> u8 {
        self.at + 2
    }

    /// Entries in the table (1..=2048).
    pub fn entries(&self) -> u16 {
        (self.control.0 & MsixControl::TABLE_SIZE) + 1
    }
}

/// One MSI-X table entry: 16 bytes, the message address (low, high), data and vector
/// control (bit 0 masks the entry).
pub mod entry {
    pub const SIZE: u32 = 16;
    pub const ADDRESS_LOW: u64 = 0;
    pub const ADDRESS_HIGH: u64 = 4;
    pub const DATA: u64 = 8;
    pub const VECTOR_CONTROL: u64 = 12;
    pub const MASKED: u32 = 1;
}

/// The function's MSI-X capability, if it has one with valid BAR indicators.
pub fn msix<C: ConfigSpace>(cfg: &C) -> Option<Msix> {
    let at = find(cfg, CapId::MsiX)?;
    Some(Msix {
        at,
        control: MsixControl(cfg.read16(at + 2)),
        table: BarOffset::decode(cfg.read32(at + 4))?,
        pba: BarOffset::decode(cfg.read32(at + 8))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Configuration space as bytes.
    struct Space([u8; 256]);

    impl ConfigSpace for Space {
        fn read32(&self, offset: u8) -> u32 {
            let at = usize::from(offset & 0xFC);
            u32::from_le_bytes(self.0[at..at + 4].try_into().unwrap())
        }
    }

    impl Space {
        /// A function with a capability list at `first`.
        fn new(first: u8) -> Space {
            let mut s = Space([0; 256]);
            s.put16(STATUS, STATUS_CAP_LIST);
            s.0[usize::from(CAP_PTR)] = first;
            s
        }

        fn cap(&mut self, at: u8, id: u8, next: u8) {
            self.0[usize::from(at)] = id;
            self.0[usize::from(at) + 1] = next;
        }

        fn put16(&mut self, at: u8, v: u16) {
            let at = usize::from(at);
            self.0[at..at + 2].copy_from_slice(&v.to_le_bytes());
        }

        fn put32(&mut self, at: u8, v: u32) {
            let at = usize::from(at);
            self.0[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
    }

    /// QEMU's e1000e: power management at 0xc8, MSI at 0xd0, PCI Express at 0xe0, MSI-X at
    /// 0xa0 (table in BAR 3 at 0, PBA at 0x2000); the list's order is not the address order.
    fn e1000e() -> Space {
        let mut s = Space::new(0xC8);
        s.cap(0xC8, 0x01, 0xD0);
        s.cap(0xD0, 0x05, 0xE0);
        s.put16(0xD2, MsiControl::ADDRESS_64);
        s.cap(0xE0, 0x10, 0xA0);
        s.cap(0xA0, 0x11, 0x00);
        s.put16(0xA2, 4);
        s.put32(0xA4, 3);
        s.put32(0xA8, 0x2000 | 3);
        s
    }

    #[test]
    fn the_list_is_walked_in_its_own_order() {
        let ids: Vec<Cap> = caps(&e1000e()).collect();
        assert_eq!(
            ids,
            [
                Cap {
                    id: CapId::Other(0x01),
                    at: 0xC8
                },
                Cap {
                    id: CapId::Msi,
                    at: 0xD0
                },
                Cap {
                    id: CapId::Other(0x10),
                    at: 0xE0
                },
                Cap {
                    id: CapId::MsiX,
                    at: 0xA0
                },
            ]
        );
    }

    #[test]
    fn no_list_without_the_status_bit_and_none_into_the_header() {
        let mut s = e1000e();
        s.put16(STATUS, 0);
        assert_eq!(caps(&s).count(), 0);
        assert_eq!(msi(&s), None);
        let mut s = Space::new(0x40);
        s.cap(0x40, 0x05, 0x10); // the next pointer lands in the header: the list ends
        assert_eq!(caps(&s).count(), 1);
    }

    #[test]
    fn a_looping_list_ends() {
        let mut s = Space::new(0x40);
        s.cap(0x40, 0x09, 0x50);
        s.cap(0x50, 0x09, 0x40);
        assert_eq!(caps(&s).count(), usize::from(MAX_CAPS));
        assert_eq!(msix(&s), None);
    }

    #[test]
    fn the_low_pointer_bits_are_ignored() {
        let mut s = Space::new(0x43);
        s.cap(0x40, 0x11, 0x00);
        assert_eq!(caps(&s).next().map(|c| c.at), Some(0x40));
    }

    #[test]
    fn msi_registers_move_with_64_bit_addressing_and_masking() {
        let m = msi(&e1000e()).unwrap();
        assert_eq!(m.control_at(), 0xD2);
        assert_eq!(m.address_at(), 0xD4);
        assert_eq!(m.address_high_at(), Some(0xD8));
        assert_eq!(m.data_at(), 0xDC);
        assert_eq!(m.mask_at(), None);

        let mut s = Space::new(0x50);
        s.cap(0x50, 0x05, 0);
        s.put16(0x52, MsiControl::PER_VECTOR_MASK | 0b010 << 1);
        let m = msi(&s).unwrap();
        assert_eq!(m.address_high_at(), None);
        assert_eq!(m.data_at(), 0x58);
        assert_eq!(m.mask_at(), Some(0x5C));
        s.put16(0x52, MsiControl::PER_VECTOR_MASK | MsiControl::ADDRESS_64);
        assert_eq!(msi(&s).unwrap().mask_at(), Some(0x60));
    }

    #[test]
    fn enabling_msi_grants_one_vector() {
        let c = MsiControl(MsiControl::ADDRESS_64 | 0b011 << 4 | 0b011 << 1);
        assert_eq!(
            c.one_vector_enabled(),
            MsiControl(MsiControl::ADDRESS_64 | 0b011 << 1 | MsiControl::ENABLE)
        );
    }

    #[test]
    fn msix_table_and_pba_are_bar_and_offset() {
        let m = msix(&e1000e()).unwrap();
        assert_eq!(m.control_at(), 0xA2);
        assert_eq!(m.entries(), 5);
        assert_eq!(m.table, BarOffset { bar: 3, offset: 0 });
        assert_eq!(
            m.pba,
            BarOffset {
                bar: 3,
                offset: 0x2000
            }
        );
    }

    #[test]
    fn msix_with_a_reserved_bar_indicator_is_unusable() {
        let mut s = e1000e();
        s.put32(0xA4, 0x800 | 7);
        assert_eq!(msix(&s), None);
        // MSI is still there.
        assert!(msi(&s).is_some());
    }

    #[test]
    fn a_full_msix_table_has_2048_entries() {
        let mut s = e1000e();
        s.put16(0xA2, 0x7FF | MsixControl::ENABLE);
        assert_eq!(msix(&s).unwrap().entries(), 2048);
    }
}
