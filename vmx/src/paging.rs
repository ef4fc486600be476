//! Guest linear to physical translation, for showing the instruction bytes at pc when an
//! exit cannot be handled: 32-bit, PAE and 4-level paging, reading page tables through a
//! callback (the segment's data file).

/// Control state the walk needs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mode {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

const PG: u64 = 1 << 31;
const PSE: u64 = 1 << 4;
const PAE: u64 = 1 << 5;
const LMA: u64 = 1 << 10;
const ADDR: u64 = 0x000f_ffff_ffff_f000;

/// The physical address of `lin`, or None when it is not mapped (or a table read fails).
pub fn translate(
    lin: u64,
    m: Mode,
    read: &mut dyn FnMut(u64, usize) -> Option<u64>,
) -> Option<u64> {
    if m.cr0 & PG == 0 {
        return Some(if m.efer & LMA != 0 {
            lin
        } else {
            lin & 0xffff_ffff
        });
    }
    if m.efer & LMA != 0 {
        let mut table = m.cr3 & ADDR;
        for level in (0..4).rev() {
            let shift = 12 + 9 * level;
            let e = read(table + (lin >> shift & 0x1ff) * 8, 8)?;
            if e & 1 == 0 {
                return None;
            }
            if level == 0 || (level < 3 && e & 0x80 != 0) {
                let size = 1u64 << shift;
                return Some((e & ADDR & !(size - 1)) | (lin & (size - 1)));
            }
            table = e & ADDR;
        }
        None
    } else if m.cr4 & PAE != 0 {
        let pdpte = read((m.cr3 & 0xffff_ffe0) + (lin >> 30 & 3) * 8, 8)?;
        if pdpte & 1 == 0 {
            return None;
        }
        let pde = read((pdpte & ADDR) + (lin >> 21 & 0x1ff) * 8, 8)?;
        if pde & 1 == 0 {
            return None;
        }
        if pde & 0x80 != 0 {
            return Some((pde & ADDR & !0x1f_ffff) | (lin & 0x1f_ffff));
        }
        let pte = read((pde & ADDR) + (lin >> 12 & 0x1ff) * 8, 8)?;
        (pte & 1 != 0).then_some((pte & ADDR) | (lin & 0xfff))
    } else {
        let lin = lin & 0xffff_ffff;
        let pde = read((m.cr3 & 0xffff_f000) + (lin >> 22) * 4, 4)?;
        if pde & 1 == 0 {
            return None;
        }
        if pde & 0x80 != 0 && m.cr4 & PSE != 0 {
            return Some((pde & 0xffc0_0000) | (lin & 0x3f_ffff));
        }
        let pte = read((pde & 0xffff_f000) + (lin >> 12 & 0x3ff) * 4, 4)?;
        (pte & 1 != 0).then_some((pte & 0xffff_f000) | (lin & 0xfff))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn mem(entries: &[(u64, u64)]) -> impl FnMut(u64, usize) -> Option<u64> {
        let m: HashMap<u64, u64> = entries.iter().copied().collect();
        move |a, _| Some(*m.get(&a).unwrap_or(&0))
    }

    #[test]
    fn no_paging() {
        let mut r = mem(&[]);
        assert_eq!(
            translate(0x1_0000_1234, Mode::default(), &mut r),
            Some(0x1234)
        );
    }

    #[test]
    fn four_level_with_a_2m_page() {
        let m = Mode {
            cr0: PG | 1,
            cr3: 0x1000,
            cr4: PAE,
            efer: LMA | 0x100,
        };
        // 0xffffffff80000000 + 0x1234: PML4 511, PDPT 510, PD 0 (2 MiB page at 0x1000000).
        let lin = 0xffff_ffff_8000_1234u64;
        let mut r = mem(&[
            (0x1000 + 511 * 8, 0x2003),
            (0x2000 + 510 * 8, 0x3003),
            (0x3000, 0x100_0083),
        ]);
        assert_eq!(translate(lin, m, &mut r), Some(0x100_1234));
        assert_eq!(translate(0x1234, m, &mut r), None);
    }

    #[test]
    fn pae_and_legacy() {
        let pae = Mode {
            cr0: PG | 1,
            cr3: 0x4000,
            cr4: PAE,
            efer: 0,
        };
        let mut r = mem(&[
            (0x4000, 0x5001),
            (0x5000 + 8, 0x6003),
            (0x6000 + 2 * 8, 0x9000_0003),
        ]);
        assert_eq!(translate(0x0020_2abc, pae, &mut r), Some(0x9000_0abc));
        let legacy = Mode {
            cr0: PG | 1,
            cr3: 0x7000,
            cr4: PSE,
            efer: 0,
        };
        let mut r = mem(&[
            (0x7000 + 4, 0x0080_0083),
            (0x7000 + 8, 0x8003),
            (0x8000 + 4, 0x0000_a003),
        ]);
        assert_eq!(translate(0x0040_1234, legacy, &mut r), Some(0x0080_1234));
        assert_eq!(translate(0x0080_1234, legacy, &mut r), Some(0xa234));
    }
}
