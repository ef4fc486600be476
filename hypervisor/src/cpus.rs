//! The machine's processors from the firmware's tables: the ACPI MADT (found through the
//! RSDP, then the XSDT or RSDT), else the Intel MP table. Pure and total over a reader of
//! physical memory, so the host tests run it on synthetic BIOS images.

use alloc::vec::Vec;

/// CPUs beyond this many are left in wait-for-SIPI (and logged).
pub const MAX_CPUS: usize = 16;

/// Which table the CPU list came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Madt,
    MpTable,
}

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

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

fn checksum_ok(b: &[u8]) -> bool {
    b.iter().fold(0u8, |s, &x| s.wrapping_add(x)) == 0
}

/// The BIOS areas both specifications say to search: the first KiB of the EBDA (its
/// segment at 0x40E), the last KiB of base memory (its size in KiB at 0x413), and the BIOS
/// ROM at 0xE0000 (ACPI) or 0xF0000 (MP) to 1 MiB.
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

/// The first 16-byte-aligned structure in the search areas that starts with `sig` and
/// passes `ok`.
fn scan(mem: &impl PhysMem, rom: u64, sig: &[u8], ok: impl Fn(u64) -> bool) -> Option<u64> {
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

/// The ACPI RSDP: "RSD PTR " with a valid ACPI 1.0 checksum.
pub fn find_rsdp(mem: &impl PhysMem) -> Option<u64> {
    scan(mem, 0xe0000, b"RSD PTR ", |pa| {
        let b = mem.read(pa, 20);
        b.len() == 20 && checksum_ok(b)
    })
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

/// The MADT through the RSDP at `rsdp`: the XSDT where revision >= 2 gives one, else the
/// RSDT.
fn find_madt(mem: &impl PhysMem, rsdp: u64) -> Option<&[u8]> {
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
        sdt(mem, pa).filter(|t| t.starts_with(b"APIC"))
    })
}

/// Enabled processors' APIC IDs in a MADT: processor local APIC (type 0) and local x2APIC
/// (type 9) entries with the enabled flag.
pub fn madt_cpus(madt: &[u8]) -> Vec<u32> {
    let mut ids = Vec::new();
    let mut off = 44;
    while let (Some(&kind), Some(&len)) = (madt.get(off), madt.get(off + 1)) {
        let len = usize::from(len);
        let Some(e) = madt.get(off..off + len).filter(|_| len >= 2) else {
            break;
        };
        let cpu = match kind {
            0 if len >= 8 => Some((u32::from(e[3]), u32_at(e, 4).unwrap_or(0))),
            9 if len >= 16 => u32_at(e, 4).zip(u32_at(e, 8)),
            _ => None,
        };
        if let Some((id, flags)) = cpu {
            if flags & 1 != 0 && !ids.contains(&id) {
                ids.push(id);
            }
        }
        off += len;
    }
    ids
}

/// The MP floating pointer: "_MP_", 16 bytes, checksum.
fn find_mp(mem: &impl PhysMem) -> Option<u64> {
    scan(mem, 0xf0000, b"_MP_", |pa| {
        let b = mem.read(pa, 16);
        b.len() == 16 && checksum_ok(b)
    })
}

/// Enabled processors' APIC IDs in an MP configuration table (processor entries, type 0,
/// with the enabled flag), the bootstrap processor's among them.
pub fn mp_table_cpus(table: &[u8]) -> Vec<u32> {
    let count = u16_at(table, 34).unwrap_or(0);
    let mut ids = Vec::new();
    let mut off = 44;
    for _ in 0..count {
        let Some(&kind) = table.get(off) else { break };
        let len = if kind == 0 { 20 } else { 8 };
        let Some(e) = table.get(off..off + len) else {
            break;
        };
        if kind == 0 && e[3] & 1 != 0 && !ids.contains(&u32::from(e[1])) {
            ids.push(u32::from(e[1]));
        }
        off += len;
    }
    ids
}

fn mp_cpus(mem: &impl PhysMem) -> Option<Vec<u32>> {
    let fp = mem.read(find_mp(mem)?, 16);
    let cfg = u64::from(u32_at(fp, 4)?);
    // A zero address means one of the spec's default configurations (two CPUs, APIC
    // IDs 0 and 1) that no machine of ours has; treat it as none.
    if cfg == 0 {
        return None;
    }
    let len = usize::from(u16_at(mem.read(cfg, 8), 4)?);
    let table = mem.read(cfg, len);
    (table.len() == len && len >= 44 && table.starts_with(b"PCMP") && checksum_ok(table))
        .then(|| mp_table_cpus(table))
}

/// The machine's enabled processors (APIC IDs, in the table's order, at most
/// [`MAX_CPUS`]), from the MADT, else the MP table; None when neither lists a CPU.
pub fn discover(mem: &impl PhysMem) -> Option<(Source, Vec<u32>)> {
    let madt = find_rsdp(mem)
        .and_then(|r| find_madt(mem, r))
        .map(madt_cpus)
        .filter(|c| !c.is_empty());
    let (src, mut ids) = match madt {
        Some(c) => (Source::Madt, c),
        None => (Source::MpTable, mp_cpus(mem).filter(|c| !c.is_empty())?),
    };
    ids.truncate(MAX_CPUS);
    Some((src, ids))
}

/// The application processors to start: every listed CPU but the one we run on; the boot
/// CPU stays CPU 0, the others are numbered in table order.
pub fn application_processors(ids: &[u32], boot_apic: u32) -> Vec<u32> {
    ids.iter().copied().filter(|&id| id != boot_apic).collect()
}
