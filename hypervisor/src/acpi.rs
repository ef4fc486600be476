//! The firmware's ACPI tables, as far as the kernel reads them: the RSDP (handed over by
//! the loader in a Multiboot2 tag, else found by the legacy BIOS-area scan), any table by
//! its signature through the XSDT or RSDT, and the FADT's power-management timer. Pure and
//! total over a reader of physical memory, so the host tests run it on synthetic images.

use crate::le::{u16_at, u32_at, u64_at};
use spin::Once;

/// Physical memory as the firmware left it: `len` bytes at `pa`, or an empty slice where
/// nothing can be read.
pub trait PhysMem {
    fn read(&self, pa: u64, len: usize) -> &[u8];
}

impl<F: Fn(u64, usize) -> &'static [u8]> PhysMem for F {
    fn read(&self, pa: u64, len: usize) -> &[u8] {
        self(pa, len)
    }
}

pub(crate) fn checksum_ok(b: &[u8]) -> bool {
    b.iter().fold(0u8, |s, &x| s.wrapping_add(x)) == 0
}

/// Where the RSDP came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RsdpSource {
    /// A copy in the loader's Multiboot2 information (tag 14 or 15).
    Multiboot2Tag,
    /// The legacy scan of the EBDA and the BIOS ROM.
    BiosScan,
}

impl RsdpSource {
    /// How the boot log names it.
    pub fn name(self) -> &'static str {
        match self {
            RsdpSource::Multiboot2Tag => "multiboot2 tag",
            RsdpSource::BiosScan => "bios area scan",
        }
    }
}

/// The RSDP the loader handed over (its copy's physical address), set once at boot before
/// anything reads the tables; without it the tables are found by the BIOS-area scan.
static LOADER_RSDP: Once<u64> = Once::new();

/// Records the RSDP copy the loader gave (a Multiboot2 ACPI tag).
pub fn set_loader_rsdp(pa: u64) {
    LOADER_RSDP.call_once(|| pa);
}

/// The BIOS areas both the ACPI and the MP specifications say to search: the first KiB of
/// the EBDA (its segment at 0x40E), the last KiB of base memory (its size in KiB at
/// 0x413), and the BIOS ROM at 0xE0000 (ACPI) or 0xF0000 (MP) to 1 MiB.
fn search_areas(mem: &impl PhysMem, rom: u64) -> [(u64, usize); 3] {
    let ebda = u16_at(mem.read(0x40e, 2), 0).map_or(0, |s| u64::from(s) << 4);
    let base_kib = u16_at(mem.read(0x413, 2), 0).map_or(640, u64::from);
    let top = base_kib.clamp(1, 640) * 1024 - 1024;
    [
        (ebda, if ebda == 0 { 0 } else { 1024 }),
        (top, 1024),
        (rom, (0x10_0000 - rom) as usize),
    ]
}

/// The first 16-byte-aligned structure in the BIOS search areas that starts with `sig`
/// and passes `ok`.
pub(crate) fn scan(
    mem: &impl PhysMem,
    rom: u64,
    sig: &[u8],
    ok: impl Fn(u64) -> bool,
) -> Option<u64> {
    for (start, len) in search_areas(mem, rom) {
        let area = mem.read(start, len);
        for off in (0..area.len()).step_by(16) {
            if area[off..].starts_with(sig) && ok(start + off as u64) {
                return Some(start + off as u64);
            }
        }
    }
    None
}

/// An RSDP at `pa`: "RSD PTR " with a valid ACPI 1.0 checksum.
fn rsdp_ok(mem: &impl PhysMem, pa: u64) -> bool {
    let b = mem.read(pa, 20);
    b.len() == 20 && b.starts_with(b"RSD PTR ") && checksum_ok(b)
}

/// The ACPI RSDP found by the legacy scan of the BIOS areas.
pub fn scan_rsdp(mem: &impl PhysMem) -> Option<u64> {
    scan(mem, 0xe0000, b"RSD PTR ", |pa| rsdp_ok(mem, pa))
}

/// The RSDP: `loader`'s copy where it is good, else the legacy scan's find.
pub fn find_rsdp_from(mem: &impl PhysMem, loader: Option<u64>) -> Option<(u64, RsdpSource)> {
    match loader.filter(|&pa| rsdp_ok(mem, pa)) {
        Some(pa) => Some((pa, RsdpSource::Multiboot2Tag)),
        None => scan_rsdp(mem).map(|pa| (pa, RsdpSource::BiosScan)),
    }
}

/// The RSDP: the loader's where it gave one (`set_loader_rsdp`), else the scan's.
pub fn find_rsdp(mem: &impl PhysMem) -> Option<(u64, RsdpSource)> {
    find_rsdp_from(mem, LOADER_RSDP.get().copied())
}

/// An ACPI table at `pa` whose header and checksum are good: all of its bytes.
fn sdt(mem: &impl PhysMem, pa: u64) -> Option<&[u8]> {
    let len = u32_at(mem.read(pa, 36), 4)? as usize;
    if !(36..=1 << 20).contains(&len) {
        return None;
    }
    let b = mem.read(pa, len);
    (b.len() == len && checksum_ok(b)).then_some(b)
}

/// The table with signature `sig` through the RSDP at `rsdp`: the XSDT where revision >= 2
/// gives one, else the RSDT.
pub fn find_table<'m>(mem: &'m impl PhysMem, rsdp: u64, sig: &[u8; 4]) -> Option<&'m [u8]> {
    let r = mem.read(rsdp, 36);
    let rev = *r.get(15)?;
    let xsdt = if rev >= 2 && r.len() == 36 && checksum_ok(r) {
        u64_at(r, 24).filter(|&x| x != 0)
    } else {
        None
    };
    let (root, width) = match xsdt {
        Some(x) => (x, 8),
        None => (u64::from(u32_at(r, 16)?), 4),
    };
    let root = sdt(mem, root)?;
    root[36..].chunks_exact(width).find_map(|e| {
        let pa = if width == 8 {
            u64_at(e, 0)?
        } else {
            u64::from(u32_at(e, 0)?)
        };
        sdt(mem, pa).filter(|t| t.starts_with(sig))
    })
}

/// The timer the FADT describes: its home is arch, which counts on it.
pub use crate::arch::PmTimer;

/// FADT offsets: PM_TMR_BLK (a 32-bit port), PM_TMR_LEN, the flags, X_PM_TMR_BLK (a
/// generic address: space, width, offset, access size, 64-bit address).
const FADT_PM_TMR_BLK: usize = 76;
const FADT_PM_TMR_LEN: usize = 91;
const FADT_FLAGS: usize = 112;
const FADT_X_PM_TMR_BLK: usize = 208;
/// FADT flags: TMR_VAL_EXT (the PM timer counts 32 bits).
const TMR_VAL_EXT: u32 = 1 << 8;
/// Generic address space: system I/O.
const GAS_SYSTEM_IO: u8 = 1;

/// The PM timer the FADT describes in port space: X_PM_TMR_BLK where it gives an I/O
/// address, else PM_TMR_BLK (with PM_TMR_LEN 4); None where it has none (hardware-reduced
/// ACPI) or only a memory-mapped one.
pub fn pm_timer(fadt: &[u8]) -> Option<PmTimer> {
    let flags = u32_at(fadt, FADT_FLAGS)?;
    let bits = if flags & TMR_VAL_EXT != 0 { 32 } else { 24 };
    let x = fadt
        .get(FADT_X_PM_TMR_BLK..FADT_X_PM_TMR_BLK + 12)
        .filter(|g| g[0] == GAS_SYSTEM_IO)
        .and_then(|g| u64_at(g, 4))
        .filter(|&a| a != 0);
    let legacy = u32_at(fadt, FADT_PM_TMR_BLK)
        .filter(|&p| p != 0 && fadt.get(FADT_PM_TMR_LEN) == Some(&4))
        .map(u64::from);
    let port = u16::try_from(x.or(legacy)?).ok()?;
    Some(PmTimer { port, bits })
}
