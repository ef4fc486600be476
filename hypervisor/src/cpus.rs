//! The machine's processors from the firmware's tables: the ACPI MADT (acpi.rs finds it
//! through the RSDP, then the XSDT or RSDT), else the Intel MP table. Pure and total over a reader of
//! physical memory, so the host tests run it on synthetic BIOS images.

use crate::acpi::{checksum_ok, find_rsdp, find_table, scan, PhysMem};
use crate::le::{u16_at, u32_at};
use alloc::vec::Vec;

/// The CPUs the kernel runs: its home is arch, whose per-CPU call slots it sizes.
pub use crate::arch::MAX_CPUS;

/// Which table the CPU list came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Madt,
    MpTable,
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
        .and_then(|(r, _)| find_table(mem, r, b"APIC"))
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
