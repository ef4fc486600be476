//! The kernel's ACPI reader (hypervisor/src/acpi.rs) on the host: the RSDP from the
//! loader's copy before the BIOS-area scan, and the FADT's PM timer.

use hypervisor::acpi::{find_rsdp_from, pm_timer, PhysMem, PmTimer, RsdpSource};

/// Low memory (1 MiB) as the firmware would leave it.
struct Low(Vec<u8>);

impl PhysMem for Low {
    fn read(&self, pa: u64, len: usize) -> &[u8] {
        let off = pa as usize;
        self.0.get(off..off.saturating_add(len)).unwrap_or(&[])
    }
}

fn rsdp() -> Vec<u8> {
    let mut r = b"RSD PTR ".to_vec();
    r.resize(20, 0);
    r[9..15].copy_from_slice(b"BOCHS ");
    let sum = r.iter().fold(0u8, |s, &b| s.wrapping_add(b));
    r[8] = 0u8.wrapping_sub(sum);
    r
}

#[test]
fn the_loaders_rsdp_before_the_bios_scan() {
    let mut mem = Low(vec![0; 0x10_0000]);
    mem.0[0xf_5a40..0xf_5a54].copy_from_slice(&rsdp());
    mem.0[0x8_0000..0x8_0014].copy_from_slice(&rsdp());
    assert_eq!(
        find_rsdp_from(&mem, Some(0x8_0000)),
        Some((0x8_0000, RsdpSource::Multiboot2Tag))
    );
    // No copy, or a bad one: the scan's.
    assert_eq!(
        find_rsdp_from(&mem, None),
        Some((0xf_5a40, RsdpSource::BiosScan))
    );
    assert_eq!(
        find_rsdp_from(&mem, Some(0x7_0000)),
        Some((0xf_5a40, RsdpSource::BiosScan))
    );
    // With no BIOS areas at all (UEFI): only the loader's.
    let mut efi = Low(vec![0; 0x10_0000]);
    efi.0[0x8_0000..0x8_0014].copy_from_slice(&rsdp());
    assert_eq!(find_rsdp_from(&efi, None), None);
    assert_eq!(
        find_rsdp_from(&efi, Some(0x8_0000)),
        Some((0x8_0000, RsdpSource::Multiboot2Tag))
    );
}

/// A FADT of `len` bytes with PM_TMR_BLK, PM_TMR_LEN, the flags and X_PM_TMR_BLK set.
fn fadt(len: usize, blk: u32, tmr_len: u8, flags: u32, x: Option<(u8, u64)>) -> Vec<u8> {
    let mut f = b"FACP".to_vec();
    f.resize(len, 0);
    f[76..80].copy_from_slice(&blk.to_le_bytes());
    f[91] = tmr_len;
    f[112..116].copy_from_slice(&flags.to_le_bytes());
    if let Some((space, addr)) = x {
        f[208] = space;
        f[209] = 32;
        f[212..220].copy_from_slice(&addr.to_le_bytes());
    }
    f
}

#[test]
fn pm_timer_from_the_fadt() {
    // ACPI 1.0 (QEMU's SeaBIOS tables): the 32-bit port, 24 bits wide.
    assert_eq!(
        pm_timer(&fadt(116, 0x608, 4, 0, None)),
        Some(PmTimer {
            port: 0x608,
            bits: 24
        })
    );
    // TMR_VAL_EXT: 32 bits; X_PM_TMR_BLK in I/O space wins over PM_TMR_BLK.
    assert_eq!(
        pm_timer(&fadt(276, 0x608, 4, 1 << 8, Some((1, 0xb008)))),
        Some(PmTimer {
            port: 0xb008,
            bits: 32
        })
    );
    // A memory-mapped X_PM_TMR_BLK: the port block instead.
    assert_eq!(
        pm_timer(&fadt(276, 0x608, 4, 0, Some((0, 0xfed0_0000)))).map(|t| t.port),
        Some(0x608)
    );
    // None (hardware-reduced ACPI), a bad length, a port past 16 bits, a short table.
    assert_eq!(pm_timer(&fadt(276, 0, 0, 0, None)), None);
    assert_eq!(pm_timer(&fadt(116, 0x608, 2, 0, None)), None);
    assert_eq!(pm_timer(&fadt(276, 0, 0, 0, Some((1, 0x1_0000)))), None);
    assert_eq!(pm_timer(&[0u8; 40]), None);
}
