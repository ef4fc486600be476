//! A Linux kernel through the firmware, as QEMU's `-kernel` hands one to SeaBIOS: the
//! tool splits the bzImage into its real-mode setup and its protected-mode kernel, patches
//! the setup header as a boot loader does, and offers both, the initrd and the command
//! line as fw_cfg's legacy items (FW_CFG_SETUP_*, FW_CFG_KERNEL_*, FW_CFG_INITRD_*,
//! FW_CFG_CMDLINE_*: `pcdev::fwcfg::Linux`). QEMU's option ROM `linuxboot_dma.bin`, a fw_cfg
//! file under `genroms/` that SeaBIOS runs as an option ROM and boots first (`bootorder`
//! names it), copies each to its address with fw_cfg DMA and jumps to the setup code in
//! real mode, which then runs on SeaBIOS's services (e820, ...) as on a PC.
//!
//! Addresses and header fields after QEMU's hw/i386/x86.c (x86_load_linux) for a boot
//! protocol 2.02+ kernel loaded high: setup at 0x10000, command line at 0x20000, kernel at
//! 1 MiB, the initrd page-aligned below `initrd_addr_max` and below the top 160 KiB of
//! RAM (where QEMU keeps its ACPI tables); the option ROM may move the initrd to the top
//! of RAM as the BIOS's e801 reports it and patches the header itself then.

use crate::layout::Layout;
use crate::loader::linux::{parse_header, CAN_USE_HEAP, CMDLINE, KERNEL};
use crate::loader::{put16, put32};
use pcdev::fwcfg;

/// Where Debian's `qemu-system-data` installs the option ROM.
pub const DEFAULT_ROM: &str = "/usr/share/qemu/linuxboot_dma.bin";
/// Its fw_cfg file name (SeaBIOS runs every `genroms/` file as an option ROM).
pub const ROM_FILE: &str = "genroms/linuxboot_dma.bin";
/// The boot order entry that puts the option ROM's boot vector first (as QEMU's
/// `bootindex=0` for it does).
pub const BOOT_PATH: &str = "/rom@genroms/linuxboot_dma.bin";
/// The package to install when the option ROM is missing.
pub const ROM_PACKAGE: &str = "qemu-system-data";

/// The real-mode setup code's address (its segment 0x1000; the entry is 0x1020:0).
pub const SETUP_ADDR: u32 = 0x10000;
/// RAM at the top QEMU keeps from the initrd (its ACPI data: 128 KiB + 32 KiB).
const TOP_RESERVED: u64 = 0x28000;
/// `type_of_loader` QEMU writes: 0xb0, "Qemu".
const LOADER_QEMU: u8 = 0xb0;

/// A kernel split for fw_cfg: the setup sectors with the patched header, the
/// protected-mode part, the initrd with its address, the command line.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub setup: Vec<u8>,
    pub kernel: Vec<u8>,
    pub initrd_addr: u32,
    pub initrd: Vec<u8>,
    pub cmdline: Vec<u8>,
}

impl Kernel {
    /// The fw_cfg items' view of it.
    pub fn items(&self) -> fwcfg::Linux<'_> {
        fwcfg::Linux {
            setup_addr: SETUP_ADDR,
            setup: &self.setup,
            kernel_addr: KERNEL as u32,
            kernel: &self.kernel,
            initrd_addr: self.initrd_addr,
            initrd: &self.initrd,
            cmdline_addr: CMDLINE as u32,
            cmdline: &self.cmdline,
        }
    }
}

/// Splits bzImage `k` and places `initrd` as QEMU does for `-kernel`, in `layout`'s RAM.
pub fn split(k: &[u8], initrd: &[u8], cmdline: &str, layout: &Layout) -> Result<Kernel, String> {
    let h = parse_header(k).map_err(|e| e.to_string())?;
    let setup_len = (usize::from(h.setup_sects) + 1) * 512;
    if setup_len >= k.len() {
        return Err(format!(
            "linux: {} setup sectors leave no protected-mode kernel in {} bytes",
            h.setup_sects,
            k.len()
        ));
    }
    if cmdline.len() as u64 >= u64::from(h.cmdline_size).max(1) {
        return Err(format!(
            "linux: command line of {} bytes is longer than the kernel's {}",
            cmdline.len(),
            h.cmdline_size.saturating_sub(1)
        ));
    }
    let kernel = k[setup_len..].to_vec();
    let kernel_end = KERNEL + (kernel.len() as u64).max(u64::from(h.init_size));
    let top = layout.mem().saturating_sub(TOP_RESERVED);
    if kernel_end > top {
        return Err(format!(
            "linux: not enough memory for the kernel: it needs {:#x} bytes from {KERNEL:#x}, the guest has {:#x} in all (try a larger -M)",
            kernel_end - KERNEL,
            layout.mem()
        ));
    }
    let initrd_max = u64::from(h.initrd_addr_max).min(top - 1);
    let initrd_addr = if initrd.is_empty() {
        0
    } else {
        let a = initrd_max
            .checked_sub(initrd.len() as u64)
            .map(|a| a & !0xfff)
            .filter(|&a| a >= kernel_end)
            .ok_or_else(|| {
                format!(
                    "linux: no room for the {}-byte initrd between the kernel's end {kernel_end:#x} and {initrd_max:#x} (try a larger -M)",
                    initrd.len()
                )
            })?;
        a as u32
    };
    let mut setup = k[..setup_len].to_vec();
    setup[0x210] = LOADER_QEMU;
    setup[0x211] |= CAN_USE_HEAP;
    put16(
        &mut setup,
        0x224,
        (CMDLINE as u32 - SETUP_ADDR - 0x200) as u16,
    ); // heap_end_ptr
    put32(&mut setup, 0x228, CMDLINE as u32); // cmd_line_ptr
    put32(&mut setup, 0x218, initrd_addr); // ramdisk_image
    put32(&mut setup, 0x21c, initrd.len() as u32); // ramdisk_size
    Ok(Kernel {
        setup,
        kernel,
        initrd_addr,
        initrd: initrd.to_vec(),
        cmdline: cmdline.as_bytes().to_vec(),
    })
}

/// The option ROM's bytes, or one line naming it and the package that ships it.
pub fn read_rom(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let rom = std::fs::read(path).map_err(|e| {
        format!(
            "{}: {e}: booting a kernel through the firmware needs QEMU's option ROM linuxboot_dma.bin (install Debian's {ROM_PACKAGE})",
            path.display()
        )
    })?;
    if rom.len() < 512 || rom[..2] != [0x55, 0xaa] {
        return Err(format!(
            "{}: not an option ROM (no 0x55 0xaa signature)",
            path.display()
        ));
    }
    Ok(rom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::le32;

    /// A bzImage of protocol 2.15: 4 setup sectors, then `kernel` bytes.
    fn bzimage(kernel: usize) -> Vec<u8> {
        let mut k = vec![0u8; 5 * 512 + kernel];
        k[0x1f1] = 4;
        put16(&mut k, 0x1fe, 0xaa55);
        k[0x201] = 0x6a;
        put32(&mut k, 0x202, 0x5372_6448);
        put16(&mut k, 0x206, 0x20f);
        k[0x211] = 1;
        put32(&mut k, 0x1f4, (kernel / 16) as u32);
        put32(&mut k, 0x22c, 0x7fff_ffff);
        put32(&mut k, 0x238, 2048);
        k
    }

    #[test]
    fn split_patches_the_header_as_qemu() {
        let l = Layout::new(64 << 20).unwrap();
        let k = bzimage(0x3000);
        let s = split(&k, &[7u8; 5000], "console=ttyS0", &l).unwrap();
        assert_eq!(s.setup.len(), 5 * 512);
        assert_eq!(s.kernel.len(), 0x3000);
        assert_eq!(s.setup[0x210], LOADER_QEMU);
        assert_eq!(s.setup[0x211], 1 | CAN_USE_HEAP);
        assert_eq!(le32(&s.setup, 0x228), Some(0x20000));
        assert_eq!(s.setup[0x224..0x226], 0xfe00u16.to_le_bytes());
        // The initrd page-aligned below the top 160 KiB.
        let want = ((64 << 20) - 0x28000 - 1 - 5000) & !0xfff;
        assert_eq!(s.initrd_addr, want);
        assert_eq!(le32(&s.setup, 0x218), Some(want));
        assert_eq!(le32(&s.setup, 0x21c), Some(5000));
        let items = s.items();
        assert_eq!(items.setup_addr, 0x10000);
        assert_eq!(items.kernel_addr, 0x100000);
        assert_eq!(items.cmdline, b"console=ttyS0");
        // No initrd: address and size 0.
        let s = split(&k, &[], "", &l).unwrap();
        assert_eq!((s.initrd_addr, le32(&s.setup, 0x21c)), (0, Some(0)));
    }

    #[test]
    fn bad_kernels_and_sizes_are_refused() {
        let l = Layout::new(4 << 20).unwrap();
        assert!(split(&[0u8; 4096], &[], "", &l).is_err());
        let e = split(&bzimage(0x3000), &[0; 3 << 20], "", &l).unwrap_err();
        assert!(e.contains("no room for the"), "{e}");
        let e = split(&bzimage(8 << 20), &[], "", &l).unwrap_err();
        assert!(e.contains("not enough memory"), "{e}");
        let e = split(&bzimage(0x3000), &[], &"x".repeat(3000), &l).unwrap_err();
        assert!(e.contains("command line"), "{e}");
    }

    #[test]
    fn a_missing_rom_names_the_package() {
        let e = read_rom(std::path::Path::new("/nonexistent/linuxboot_dma.bin")).unwrap_err();
        assert!(e.contains("install Debian's qemu-system-data"), "{e}");
        assert!(!e.contains('\n'));
    }
}
