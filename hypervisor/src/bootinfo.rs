//! What the boot loader tells us: usable RAM, the command line and (Multiboot2) the ACPI
//! RSDP, from a Multiboot2 (GRUB, BIOS or UEFI) or Multiboot1 (QEMU -kernel) information
//! structure. Parsing is total: a malformed
//! structure yields fewer regions, never a fault.

use crate::arch::phys::boot_bytes;
use crate::le::{u32_at, u64_at};

pub const MB2_MAGIC: u32 = 0x36d7_6289;
pub const MB1_MAGIC: u32 = 0x2bad_b002;

pub const MAX_REGIONS: usize = 64;
const MAX_CMDLINE: usize = 1024;
/// Larger Multiboot2 structures are cut here (ours holds a few tags).
const MAX_INFO: usize = 64 * 1024;

/// A range of usable RAM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
}

pub struct BootInfo {
    regions: [Region; MAX_REGIONS],
    nregions: usize,
    cmdline: [u8; MAX_CMDLINE],
    cmdline_len: usize,
    /// Where the loader's structure lies (kept out of the frame allocator).
    pub info: Region,
    pub loader: &'static str,
    /// The offset in the structure of the loader's copy of the RSDP (Multiboot2 tag 15,
    /// else 14), and whether it came from tag 15 (ACPI 2.0+).
    rsdp: Option<(usize, bool)>,
    /// The screen the loader left (Multiboot2 tag 8).
    pub framebuffer: Option<Framebuffer>,
}

/// The screen a Multiboot2 framebuffer tag describes: its home is arch, which writes it.
pub use crate::arch::vga::{Channel, Framebuffer, FramebufferKind, RgbLayout};

impl BootInfo {
    fn new(loader: &'static str) -> Self {
        BootInfo {
            regions: [Region::default(); MAX_REGIONS],
            nregions: 0,
            cmdline: [0; MAX_CMDLINE],
            cmdline_len: 0,
            info: Region::default(),
            loader,
            rsdp: None,
            framebuffer: None,
        }
    }

    /// The physical address of the loader's copy of the RSDP, where it gave one.
    pub fn rsdp(&self) -> Option<u64> {
        self.rsdp.map(|(off, _)| self.info.start + off as u64)
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions[..self.nregions]
    }

    pub fn cmdline(&self) -> &str {
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }

    fn add_region(&mut self, start: u64, len: u64) {
        if self.nregions < MAX_REGIONS && len > 0 {
            self.regions[self.nregions] = Region {
                start,
                end: start.saturating_add(len),
            };
            self.nregions += 1;
        }
    }

    fn set_cmdline(&mut self, s: &[u8]) {
        let s = s.split(|&b| b == 0).next().unwrap_or(&[]);
        let n = s.len().min(MAX_CMDLINE);
        self.cmdline[..n].copy_from_slice(&s[..n]);
        self.cmdline_len = n;
    }
}

/// Multiboot2 tag types.
const MB2_CMDLINE: u32 = 1;
const MB2_MMAP: u32 = 6;
const MB2_FRAMEBUFFER: u32 = 8;
const MB2_ACPI_OLD: u32 = 14;
const MB2_ACPI_NEW: u32 = 15;
const MB2_EFI_MMAP: u32 = 17;
/// The memory map's type for usable RAM.
const MMAP_AVAILABLE: u32 = 1;
/// EFI memory types free once boot services have exited: loader code and data, boot
/// services code and data, conventional memory.
const EFI_USABLE: [u32; 5] = [1, 2, 3, 4, 7];
const EFI_PAGE: u64 = 4096;

/// The usable RAM in an EFI memory map (Multiboot2 tag 17's body after its header:
/// descriptor size, version, then the descriptors).
fn efi_regions(bi: &mut BootInfo, tag: &[u8]) {
    let dsize = u32_at(tag, 8).unwrap_or(0) as usize;
    if dsize < 40 {
        return;
    }
    let mut e = 16;
    while e + dsize <= tag.len() {
        let (kind, base, pages) = (
            u32_at(tag, e).unwrap_or(0),
            u64_at(tag, e + 8).unwrap_or(0),
            u64_at(tag, e + 24).unwrap_or(0),
        );
        if EFI_USABLE.contains(&kind) {
            bi.add_region(base, pages.saturating_mul(EFI_PAGE));
        }
        e += dsize;
    }
}

/// A framebuffer tag's screen: address, pitch, width, height, bits per pixel, type, and for
/// RGB the position and size of each channel (GRUB's layout: a 16-bit reserved field after
/// the type, so the colour information starts at byte 32).
fn framebuffer(tag: &[u8]) -> Option<Framebuffer> {
    let channel = |at: usize| -> Option<Channel> {
        Some(Channel {
            shift: *tag.get(at)?,
            bits: *tag.get(at + 1)?,
        })
    };
    let kind = match *tag.get(29)? {
        0 => FramebufferKind::Indexed,
        1 => FramebufferKind::Rgb(RgbLayout {
            red: channel(32)?,
            green: channel(34)?,
            blue: channel(36)?,
        }),
        2 => FramebufferKind::EgaText,
        _ => return None,
    };
    Some(Framebuffer {
        addr: u64_at(tag, 8)?,
        pitch: u32_at(tag, 16)?,
        width: u32_at(tag, 20)?,
        height: u32_at(tag, 24)?,
        bpp: *tag.get(28)?,
        kind,
    })
}

/// Parses a Multiboot2 information structure: the memory map from tag 6 (the EFI map, tag
/// 17, where there is no tag 6), the command line, the RSDP's copy from tag 15 or 14.
pub fn parse_mb2(info: &[u8]) -> BootInfo {
    let mut bi = BootInfo::new("multiboot2");
    let total = u32_at(info, 0).unwrap_or(0) as usize;
    let info = &info[..total.min(info.len())];
    let mut off = 8;
    let mut efi_map = None;
    while let (Some(ty), Some(size)) = (u32_at(info, off), u32_at(info, off + 4)) {
        let size = size as usize;
        if ty == 0 || size < 8 {
            break;
        }
        let Some(tag) = info.get(off..off + size) else {
            break;
        };
        match ty {
            MB2_CMDLINE => bi.set_cmdline(&tag[8..]),
            MB2_ACPI_NEW if size >= 8 + 36 => bi.rsdp = Some((off + 8, true)),
            MB2_ACPI_OLD if size >= 8 + 20 && !bi.rsdp.is_some_and(|(_, new)| new) => {
                bi.rsdp = Some((off + 8, false))
            }
            MB2_EFI_MMAP => efi_map = Some(tag),
            MB2_FRAMEBUFFER => bi.framebuffer = framebuffer(tag),
            MB2_MMAP => {
                let esize = u32_at(tag, 8).unwrap_or(0) as usize;
                if esize >= 20 {
                    let mut e = 16;
                    while e + esize <= tag.len() {
                        let (base, len, kind) = (
                            u64_at(tag, e).unwrap_or(0),
                            u64_at(tag, e + 8).unwrap_or(0),
                            u32_at(tag, e + 16).unwrap_or(0),
                        );
                        if kind == MMAP_AVAILABLE {
                            bi.add_region(base, len);
                        }
                        e += esize;
                    }
                }
            }
            _ => {}
        }
        off += size.div_ceil(8) * 8;
    }
    if let (0, Some(tag)) = (bi.nregions, efi_map) {
        efi_regions(&mut bi, tag);
    }
    bi
}

/// Parses a Multiboot1 information structure; `mem` reads the memory it points to.
pub fn parse_mb1(info: &[u8], mem: impl Fn(u64, usize) -> &'static [u8]) -> BootInfo {
    let mut bi = BootInfo::new("multiboot1");
    let flags = u32_at(info, 0).unwrap_or(0);
    if flags & (1 << 2) != 0 {
        if let Some(p) = u32_at(info, 16) {
            bi.set_cmdline(mem(p as u64, MAX_CMDLINE));
        }
    }
    if flags & (1 << 6) != 0 {
        let len = u32_at(info, 44).unwrap_or(0) as usize;
        let addr = u32_at(info, 48).unwrap_or(0) as u64;
        let map = mem(addr, len.min(MAX_INFO));
        let mut e = 0;
        while let Some(size) = u32_at(map, e) {
            let (base, len, kind) = (
                u64_at(map, e + 4).unwrap_or(0),
                u64_at(map, e + 12).unwrap_or(0),
                u32_at(map, e + 20).unwrap_or(0),
            );
            if kind == MMAP_AVAILABLE {
                bi.add_region(base, len);
            }
            e += size as usize + 4;
        }
    } else if flags & 1 != 0 {
        // Only mem_upper: KiB above 1 MiB.
        let upper = u32_at(info, 8).unwrap_or(0) as u64;
        bi.add_region(1 << 20, upper * 1024);
    }
    bi
}

/// Reads what the loader that jumped to the entry stub left.
pub fn from_loader(magic: u32, info: u32) -> Option<BootInfo> {
    let pa = info as u64;
    match magic {
        MB2_MAGIC => {
            let total = u32_at(boot_bytes(pa, 8), 0)? as usize;
            let mut bi = parse_mb2(boot_bytes(pa, total.min(MAX_INFO)));
            bi.info = Region {
                start: pa,
                end: pa + total as u64,
            };
            Some(bi)
        }
        MB1_MAGIC => {
            let mut bi = parse_mb1(boot_bytes(pa, 88), boot_bytes);
            bi.info = Region {
                start: pa,
                end: pa + 88,
            };
            Some(bi)
        }
        _ => None,
    }
}
