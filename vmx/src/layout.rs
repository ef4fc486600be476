//! The guest-physical memory layout: what vmx(1) builds with mkregion, one segment holding
//! all of guest RAM at offsets equal to guest-physical addresses (so loaders, devices and
//! the exit loop never translate), plus one scratch page after it.

/// One region of guest-physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub kind: Kind,
}

/// What a region is to the guest: the e820 type it reports (none for the VGA hole).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Usable RAM (e820 type 1).
    Ram,
    /// Backed by memory but not reported: the legacy VGA window 0xa0000-0xc0000.
    Hole,
    /// Reported reserved (e820 type 2): the BIOS area 0xc0000-0x100000.
    Reserved,
}

impl Kind {
    /// The e820 / multiboot memory map type, or None when the region is not reported.
    pub fn e820(self) -> Option<u32> {
        match self {
            Kind::Ram => Some(1),
            Kind::Hole => None,
            Kind::Reserved => Some(2),
        }
    }
}

pub const PAGE: u64 = 4096;
/// Guests get at least 1 MiB (vmx(1): "640 KB of RAM is not enough for everyone").
pub const MIN_MEM: u64 = 1 << 20;
/// Everything sits below 4 GiB: the loaders hand 32-bit addresses to 32-bit entry points.
pub const MAX_MEM: u64 = 0xf000_0000;
/// The pages of a PC's I/O APIC and local APIC registers.
pub const APIC_PAGES: [u64; 2] = [0xfec0_0000, 0xfee0_0000];
/// The end of the 32-bit address space, where a firmware ROM ends.
pub const FOUR_GIB: u64 = 1 << 32;
/// The largest firmware ROM: 16 MiB, a PC's flash window below 4 GiB (and above
/// [`MAX_MEM`], so it never overlaps RAM).
pub const ROM_MAX: u64 = 16 << 20;

/// The layout for a guest with `mem` bytes of RAM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    mem: u64,
    regions: Vec<Region>,
    /// Bytes of a firmware ROM kept in the segment after the scratch page and mapped
    /// read-only just below 4 GiB ([`Layout::with_rom`]); 0: none.
    rom: u64,
}

impl Layout {
    pub fn new(mem: u64) -> Result<Layout, String> {
        if mem < MIN_MEM {
            return Err(format!("memory size {mem:#x} is below the 1 MiB minimum"));
        }
        if mem > MAX_MEM {
            return Err(format!(
                "memory size {mem:#x} is above the {MAX_MEM:#x} maximum"
            ));
        }
        if !mem.is_multiple_of(PAGE) {
            return Err(format!("memory size {mem:#x} is not a multiple of 4 KiB"));
        }
        let regions = vec![
            Region {
                start: 0,
                end: 0xa0000,
                kind: Kind::Ram,
            },
            Region {
                start: 0xa0000,
                end: 0xc0000,
                kind: Kind::Hole,
            },
            Region {
                start: 0xc0000,
                end: 0x100000,
                kind: Kind::Reserved,
            },
            Region {
                start: 0x100000,
                end: mem,
                kind: Kind::Ram,
            },
        ];
        Ok(Layout {
            mem,
            regions,
            rom: 0,
        })
    }

    /// Guest RAM size in bytes (the end of guest-physical memory).
    pub fn mem(&self) -> u64 {
        self.mem
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// Whether [addr, addr+len) lies inside guest memory.
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        addr.checked_add(len).is_some_and(|end| end <= self.mem)
    }

    /// Conventional memory in KiB, at most 640 (multiboot mem_lower, CMOS 0x15).
    pub fn base_kb(&self) -> u64 {
        0xa0000 / 1024
    }

    /// Memory above 1 MiB in KiB (multiboot mem_upper).
    pub fn ext_kb(&self) -> u64 {
        (self.mem - 0x100000) / 1024
    }

    /// The e820 map: (start, length, type) of each reported region.
    pub fn e820(&self) -> Vec<(u64, u64, u32)> {
        self.regions
            .iter()
            .filter(|r| r.end > r.start)
            .filter_map(|r| r.kind.e820().map(|t| (r.start, r.end - r.start, t)))
            .collect()
    }

    /// Bytes of the segment: guest RAM, one scratch page, then with a ROM the APICs'
    /// stand-in pages ([`Layout::apic_offset`]) and the ROM.
    pub fn segment_size(&self) -> u64 {
        match self.rom {
            0 => self.mem + PAGE,
            rom => self.rom_offset() + rom,
        }
    }

    /// The layout with a firmware ROM of `len` bytes (a multiple of 4 KiB, at most
    /// [`ROM_MAX`]): it sits in the segment after the scratch page
    /// ([`Layout::rom_offset`]) and is mapped read-only and executable at the top of the
    /// 4 GiB space, where the CPU's reset vector reads it.
    pub fn with_rom(mut self, len: u64) -> Result<Layout, String> {
        if len == 0 || !len.is_multiple_of(PAGE) || len > ROM_MAX {
            return Err(format!(
                "ROM size {len:#x} is not a multiple of 4 KiB up to {ROM_MAX:#x}"
            ));
        }
        self.rom = len;
        Ok(self)
    }

    /// Offsets in the segment of the pages mapped read-write at the APICs' addresses
    /// ([`APIC_PAGES`]) in firmware layouts, in that table's order: the guest has no local
    /// APIC (cpuid says so) and no I/O APIC, but SeaBIOS reads the local APIC's version
    /// while it builds the MP table, and Linux, reading that table, writes the I/O APIC's
    /// register select; a page of RAM takes those accesses (reads give 0 or what was
    /// written) where nothing mapped would stop the guest on an EPT violation.
    pub fn apic_offset(&self, i: usize) -> u64 {
        self.mem + PAGE * (1 + i as u64)
    }

    /// Offset of the ROM in the segment.
    pub fn rom_offset(&self) -> u64 {
        self.apic_offset(APIC_PAGES.len())
    }

    /// The guest-physical address the ROM is mapped at (it ends at 4 GiB), if any.
    pub fn rom_base(&self) -> Option<u64> {
        (self.rom != 0).then(|| FOUR_GIB - self.rom)
    }

    /// Offset of the scratch page in the segment (never mapped into the guest).
    pub fn scratch(&self) -> u64 {
        self.mem
    }

    /// The text written to `map`: all of guest RAM in one line (vmx(1) merges adjacent
    /// regions of one segment the same way), identity offsets.
    /// With a ROM, a second line maps it read-only below 4 GiB.
    pub fn map_text(&self, segment: &str) -> String {
        let mut t = format!("rwx wb {:#x} {:#x} {segment} {:#x}\n", 0, self.mem, 0);
        if let Some(base) = self.rom_base() {
            for (i, a) in APIC_PAGES.iter().enumerate() {
                t += &format!(
                    "rw- wb {a:#x} {:#x} {segment} {:#x}\n",
                    a + PAGE,
                    self.apic_offset(i)
                );
            }
            t += &format!(
                "r-x wb {base:#x} {FOUR_GIB:#x} {segment} {:#x}\n",
                self.rom_offset()
            );
        }
        t
    }
}

/// Parses a size with an optional K, M or G suffix (vmx(1)'s -M), in any base strtoull
/// accepts (0x.. hexadecimal, 0.. octal, decimal).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mul) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    let n = parse_u64(num).ok_or_else(|| format!("invalid size: {s:?}"))?;
    n.checked_mul(mul)
        .ok_or_else(|| format!("size too large: {s:?}"))
}

/// strtoull(s, nil, 0) without its leniency: the whole string must be a number.
pub fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        u64::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("0x100000"), Ok(0x100000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("M").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn layout_64m() {
        let l = Layout::new(64 << 20).unwrap();
        assert_eq!(
            l.e820(),
            vec![
                (0, 0xa0000, 1),
                (0xc0000, 0x40000, 2),
                (0x100000, (64 << 20) - 0x100000, 1)
            ]
        );
        assert_eq!(l.map_text("vm"), "rwx wb 0x0 0x4000000 vm 0x0\n");
        assert_eq!(l.base_kb(), 640);
        assert_eq!(l.ext_kb(), 63 * 1024);
        assert!(l.contains(0x3fff000, 0x1000));
        assert!(!l.contains(0x3fff000, 0x1001));
        assert!(!l.contains(u64::MAX, 2));
        assert_eq!(l.segment_size(), (64 << 20) + 4096);
    }

    #[test]
    fn layout_with_rom() {
        let l = Layout::new(64 << 20).unwrap().with_rom(128 << 10).unwrap();
        assert_eq!(l.rom_offset(), (64 << 20) + 3 * 4096);
        assert_eq!(l.rom_base(), Some(0xfffe_0000));
        assert_eq!(l.segment_size(), (64 << 20) + 3 * 4096 + (128 << 10));
        assert_eq!(
            l.map_text("vm"),
            "rwx wb 0x0 0x4000000 vm 0x0\n\
             rw- wb 0xfec00000 0xfec01000 vm 0x4001000\n\
             rw- wb 0xfee00000 0xfee01000 vm 0x4002000\n\
             r-x wb 0xfffe0000 0x100000000 vm 0x4003000\n"
        );
        let l = Layout::new(64 << 20).unwrap();
        assert!(l.clone().with_rom(0).is_err());
        assert!(l.clone().with_rom(1000).is_err());
        assert!(l.with_rom(32 << 20).is_err());
    }

    #[test]
    fn bad_layouts() {
        assert!(Layout::new(512 << 10).unwrap_err().contains("1 MiB"));
        assert!(Layout::new((64 << 20) + 1).unwrap_err().contains("4 KiB"));
        assert!(Layout::new(8 << 30).unwrap_err().contains("maximum"));
    }
}
