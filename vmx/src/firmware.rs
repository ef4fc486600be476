//! Firmware mode (`--bios`): the guest starts as a PC does at power-on, in real mode at
//! the reset vector, and runs a BIOS ROM (SeaBIOS) that finds and boots a disk.
//!
//! The ROM lives in the VM's one segment after RAM and the scratch page and is mapped
//! read-only at the top of the 4 GiB space ([`Layout::with_rom`]), where the reset
//! vector 0xfffffff0 reads it. Its last 128 KiB also appear at 0xe0000-0xfffff, the
//! legacy BIOS area, as a copy in RAM: a PC's chipset shows the ROM there until the BIOS
//! switches the area to RAM through the host bridge's PAM registers and copies itself in;
//! SeaBIOS does that switch (which the tool's i440FX ignores) and then writes to the area,
//! so RAM with the ROM already copied in gives it the same bytes either way.
//!
//! The machine's memory size reaches the firmware through the CMOS (as on a PC without
//! fw_cfg) and through QEMU's fw_cfg device ([`fw_cfg`]), which also names the serial
//! console SeaBIOS mirrors its screen output to, so no VGA is needed. Given a kernel,
//! fw_cfg also offers it as QEMU's `-kernel` does ([`linuxboot`]).

pub mod linuxboot;

use crate::layout::Layout;
use crate::loader::{Chunk, Image};
use crate::regs::Reg;
use pcdev::fwcfg::{self, FwCfg, E820};

/// The ROM `--bios` loads without a FILE: Debian's `seabios` package's build of SeaBIOS
/// for QEMU's i440FX machine.
pub const DEFAULT_BIOS: &str = "/usr/share/seabios/bios.bin";

/// The legacy BIOS area the ROM's end is copied to: 0xe0000-0xfffff.
pub const LEGACY_BASE: u64 = 0xe0000;
pub const LEGACY_END: u64 = 0x100000;

/// The smallest ROM: 64 KiB, the F segment (0xf0000-0xfffff) that holds the reset code.
pub const ROM_MIN: u64 = 64 << 10;

/// The serial port SeaBIOS's console goes to (COM1).
pub const SERCON_PORT: u16 = 0x3f8;

/// CR0 at power-on: CD and NW (caches off) and ET. VT-x keeps NE set in the real CR0
/// (its fixed-1 bits; PE and PG may be clear under unrestricted guest), so the guest's
/// reads of CR0 come from `cr0fake`, which holds the power-on value.
pub const RESET_CR0: u64 = 0x6000_0010;

/// Access rights (VMCS format) of real-mode segments at reset: present, DPL 0,
/// read/write accessed data, and execute/read accessed code for CS.
const DATA_RIGHTS: u64 = 0x93;
const CODE_RIGHTS: u64 = 0x9b;

/// Why a ROM file cannot be the firmware.
pub fn check_rom(rom: &[u8]) -> Result<(), String> {
    let len = rom.len() as u64;
    if len < ROM_MIN {
        return Err(format!(
            "not a BIOS ROM: {len} bytes, less than the {} KiB a ROM's reset code needs",
            ROM_MIN >> 10
        ));
    }
    if !len.is_multiple_of(ROM_MIN) || len > crate::layout::ROM_MAX {
        return Err(format!(
            "not a BIOS ROM: {len} bytes is not a multiple of 64 KiB up to {} MiB",
            crate::layout::ROM_MAX >> 20
        ));
    }
    // The reset vector, 16 bytes below the end: a jump (0xe9 near, 0xea far, 0xeb
    // short), as every PC BIOS has there.
    let v = rom[rom.len() - 16];
    if !matches!(v, 0xe9..=0xeb) {
        return Err(format!(
            "not a BIOS ROM: no jump at the reset vector (byte {v:#04x} at 0xfffffff0)"
        ));
    }
    Ok(())
}

/// The registers of a CPU at power-on, as the `regs` file takes them: real mode at
/// 0xf000:0xfff0 with CS's base 0xffff0000 (the reset vector 0xfffffff0), 64 KiB
/// segments at 0, RFLAGS 2, EDX the CPU signature (cpuid 1's eax), CR0 as
/// [`RESET_CR0`] says.
pub fn reset_regs() -> Vec<(Reg, u64)> {
    let signature = crate::cpu::cpuid(1, 0).0[0];
    let mut r = vec![
        (Reg::Cr0Real, RESET_CR0),
        (Reg::Cr0Fake, RESET_CR0),
        (Reg::Cs, 0xf000),
        (Reg::CsBase, 0xffff_0000),
        (Reg::CsLimit, 0xffff),
        (Reg::CsPerm, CODE_RIGHTS),
    ];
    for (sel, base, limit, perm) in [
        (Reg::Ds, Reg::DsBase, Reg::DsLimit, Reg::DsPerm),
        (Reg::Es, Reg::EsBase, Reg::EsLimit, Reg::EsPerm),
        (Reg::Fs, Reg::FsBase, Reg::FsLimit, Reg::FsPerm),
        (Reg::Gs, Reg::GsBase, Reg::GsLimit, Reg::GsPerm),
        (Reg::Ss, Reg::SsBase, Reg::SsLimit, Reg::SsPerm),
    ] {
        r.extend([(sel, 0), (base, 0), (limit, 0xffff), (perm, DATA_RIGHTS)]);
    }
    r.extend([
        (Reg::GdtrBase, 0),
        (Reg::GdtrLimit, 0xffff),
        (Reg::IdtrBase, 0),
        (Reg::IdtrLimit, 0xffff),
        (Reg::Flags, 2),
        (Reg::Sp, 0),
        (Reg::Dx, u64::from(signature)),
        (Reg::Pc, 0xfff0),
    ]);
    r
}

/// The plan for a firmware boot: the ROM whole at its segment offset (mapped below
/// 4 GiB), its last 128 KiB (or all of a smaller one) in RAM at the top of the legacy
/// BIOS area, and the reset registers. `layout` must come from
/// [`Layout::with_rom`] for this ROM's size.
pub fn load(rom: &[u8], layout: &Layout) -> Result<Image, String> {
    check_rom(rom)?;
    if layout.rom_base() != Some(crate::layout::FOUR_GIB - rom.len() as u64) {
        return Err("the layout has no room for this ROM".into());
    }
    let legacy = (LEGACY_END - LEGACY_BASE).min(rom.len() as u64) as usize;
    Ok(Image {
        format: "firmware",
        chunks: vec![
            Chunk {
                addr: LEGACY_END - legacy as u64,
                data: rom[rom.len() - legacy..].to_vec(),
            },
            Chunk {
                addr: layout.rom_offset(),
                data: rom.to_vec(),
            },
        ],
        regs: reset_regs(),
    })
}

/// A kernel for the firmware to boot: its parts and the option ROM that loads them.
pub struct KernelBoot<'a> {
    pub kernel: &'a linuxboot::Kernel,
    /// `linuxboot_dma.bin`'s bytes.
    pub rom: &'a [u8],
}

/// The fw_cfg device of a firmware boot: RAM size and one CPU, the e820 map (all RAM
/// below the ROM as one range from 0, as QEMU gives it: SeaBIOS reserves its own areas),
/// the serial console on COM1, and an empty boot order (SeaBIOS's default: the disks in
/// PCI order). With a kernel: its items, the option ROM as `genroms/linuxboot_dma.bin`,
/// and that ROM first in the boot order.
pub fn fw_cfg(layout: &Layout, kernel: Option<KernelBoot>) -> Result<FwCfg, String> {
    let e = |e: fwcfg::BuildError| e.to_string();
    let mut b = fwcfg::Builder::new()
        .ram_size(layout.mem())
        .cpus(1)
        .sercon_port(SERCON_PORT)
        .map_err(e)?;
    b = match &kernel {
        Some(k) => b
            .bootorder(&[linuxboot::BOOT_PATH])
            .and_then(|b| b.linux(&k.kernel.items()))
            .and_then(|b| b.file(linuxboot::ROM_FILE, k.rom))
            .map_err(e)?,
        None => b.bootorder(&[]).map_err(e)?,
    };
    let b = b
        .e820(&[E820 {
            addr: 0,
            len: layout.mem(),
            kind: fwcfg::E820_RAM,
        }])
        .map_err(e)?;
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rom(len: usize) -> Vec<u8> {
        let mut r = vec![0u8; len];
        r[len - 16] = 0xea;
        r[len - 1] = 0x42;
        r
    }

    #[test]
    fn roms_are_checked() {
        assert!(check_rom(&rom(128 << 10)).is_ok());
        assert!(check_rom(&rom(256 << 10)).is_ok());
        assert!(check_rom(&rom(64 << 10)).is_ok());
        let e = check_rom(&[0xea; 100]).unwrap_err();
        assert!(e.starts_with("not a BIOS ROM: 100 bytes"), "{e}");
        let e = check_rom(&rom(100 << 10)).unwrap_err();
        assert!(e.contains("multiple of 64 KiB"), "{e}");
        let e = check_rom(&vec![0u8; 128 << 10]).unwrap_err();
        assert!(e.contains("no jump at the reset vector"), "{e}");
    }

    #[test]
    fn image_maps_the_rom_twice() {
        let r = rom(256 << 10);
        let l = Layout::new(64 << 20).unwrap().with_rom(256 << 10).unwrap();
        let img = load(&r, &l).unwrap();
        assert_eq!(img.chunks[0].addr, LEGACY_BASE);
        assert_eq!(img.chunks[0].data.len(), 128 << 10);
        assert_eq!(img.byte_at(0xfffff), Some(0x42));
        assert_eq!(img.byte_at(0xffff0), Some(0xea));
        assert_eq!(img.byte_at(l.rom_offset() + (256 << 10) - 1), Some(0x42));
        assert_eq!(img.entry(), 0xfff0);
        assert!(img.regs.contains(&(Reg::CsBase, 0xffff_0000)));
        assert!(img.regs.contains(&(Reg::Flags, 2)));
        // A layout made for another size is refused.
        let small = Layout::new(64 << 20).unwrap().with_rom(128 << 10).unwrap();
        assert!(load(&r, &small).is_err());
    }

    #[test]
    fn fw_cfg_items() {
        let l = Layout::new(64 << 20).unwrap();
        let f = fw_cfg(&l, None).unwrap();
        assert_eq!(f.get(fwcfg::Item::Signature as u16), Some(&b"QEMU"[..]));
        let dir = f.get(fwcfg::Item::FileDir as u16).unwrap();
        assert_eq!(dir[..4], 3u32.to_be_bytes());
        let names: Vec<String> = dir[4..]
            .chunks(fwcfg::DIR_ENTRY_LEN)
            .map(|e| {
                String::from_utf8_lossy(&e[8..])
                    .trim_end_matches('\0')
                    .to_string()
            })
            .collect();
        assert_eq!(names, ["etc/sercon-port", "bootorder", "etc/e820"]);
        assert_eq!(f.get(fwcfg::FILE_FIRST), Some(&[0xf8, 0x03][..]));
        assert_eq!(f.get(fwcfg::FILE_FIRST + 1), Some(&b"\0"[..]));
        assert_eq!(f.get(fwcfg::Item::KernelSize as u16), None);
    }

    #[test]
    fn fw_cfg_offers_a_kernel_as_qemu() {
        let l = Layout::new(64 << 20).unwrap();
        let k = linuxboot::Kernel {
            setup: vec![1; 1024],
            kernel: vec![2; 4096],
            initrd_addr: 0x300_0000,
            initrd: vec![3; 100],
            cmdline: b"console=ttyS0".to_vec(),
        };
        let rom = [0x55, 0xaa, 3];
        let f = fw_cfg(
            &l,
            Some(KernelBoot {
                kernel: &k,
                rom: &rom,
            }),
        )
        .unwrap();
        let item = |i: fwcfg::Item| f.get(i as u16).unwrap().to_vec();
        assert_eq!(item(fwcfg::Item::SetupAddr), 0x10000u32.to_le_bytes());
        assert_eq!(item(fwcfg::Item::KernelAddr), 0x100000u32.to_le_bytes());
        assert_eq!(item(fwcfg::Item::KernelSize), 4096u32.to_le_bytes());
        assert_eq!(item(fwcfg::Item::InitrdAddr), 0x300_0000u32.to_le_bytes());
        assert_eq!(item(fwcfg::Item::CmdlineSize), 14u32.to_le_bytes());
        assert_eq!(item(fwcfg::Item::CmdlineData), b"console=ttyS0\0");
        // The boot order names the option ROM, which is a file of its own.
        assert_eq!(
            f.get(fwcfg::FILE_FIRST + 1),
            Some(&b"/rom@genroms/linuxboot_dma.bin\0"[..])
        );
        let dir = item(fwcfg::Item::FileDir);
        let name = linuxboot::ROM_FILE.as_bytes();
        assert!(dir.windows(name.len()).any(|w| w == name));
    }
}
