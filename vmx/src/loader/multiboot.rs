//! Multiboot (version 1) kernels: the header in the first 8 KiB, loaded either by its
//! a.out-kludge address fields (flag 16, what vmx(1) requires and 9front uses) or by the
//! ELF program headers; then the multiboot information structure with mem_lower/upper,
//! the memory map, the command line, the boot loader name and the modules.

use super::{align_up, elf, err, le32, put32, put64, BootArgs, Image, LoadError};
use crate::layout::{Layout, PAGE};
use crate::regs::Reg;

pub const MAGIC: u32 = 0x1bad_b002;
/// What the kernel finds in eax.
pub const BOOT_MAGIC: u32 = 0x2bad_b002;
/// The header must lie entirely in the first 8 KiB of the file.
const SEARCH: usize = 8192;
const AOUT_KLUDGE: u32 = 1 << 16;
/// Flags 0 (page-aligned modules) and 1 (memory information) are always honoured; flag 2
/// (video mode) asks for something this tool has no framebuffer for: it is ignored and no
/// video information is passed. Other required bits (3-15) are unknown: refuse.
const UNKNOWN_REQUIRED: u32 = 0xfff8;

/// Name given to the guest in boot_loader_name.
pub const LOADER_NAME: &str = "vmx over 9P";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// File offset of the magic.
    pub offset: usize,
    pub flags: u32,
    /// The a.out-kludge fields: header_addr, load_addr, load_end_addr, bss_end_addr, entry.
    pub aout: Option<[u32; 5]>,
}

/// Looks for a multiboot header; Ok(None) when there is no magic, an error when there is
/// one with a bad checksum or unusable flags.
pub fn find_header(b: &[u8]) -> Result<Option<Header>, LoadError> {
    let end = b.len().min(SEARCH);
    let Some(offset) = (0..end.saturating_sub(3))
        .step_by(4)
        .find(|&o| le32(b, o) == Some(MAGIC))
    else {
        return Ok(None);
    };
    let field = |i: usize| le32(b, offset + 4 * i).filter(|_| offset + 4 * i + 4 <= SEARCH);
    let (Some(flags), Some(sum)) = (field(1), field(2)) else {
        return err(format!("multiboot header at {offset:#x} is truncated"));
    };
    if MAGIC.wrapping_add(flags).wrapping_add(sum) != 0 {
        return err(format!("invalid multiboot checksum at {offset:#x}"));
    }
    if flags & UNKNOWN_REQUIRED != 0 {
        return err(format!(
            "multiboot header requires features this loader lacks (flags {flags:#x})"
        ));
    }
    let aout = if flags & AOUT_KLUDGE != 0 {
        let mut a = [0u32; 5];
        for (i, v) in a.iter_mut().enumerate() {
            *v = field(3 + i).ok_or_else(|| {
                LoadError(format!("multiboot header at {offset:#x} is truncated"))
            })?;
        }
        Some(a)
    } else {
        None
    };
    Ok(Some(Header {
        offset,
        flags,
        aout,
    }))
}

/// Loads a multiboot kernel found by [`find_header`].
pub fn load(k: &[u8], h: &Header, layout: &Layout, args: &BootArgs) -> Result<Image, LoadError> {
    let mut img = Image {
        format: "multiboot",
        chunks: vec![],
        regs: vec![],
    };
    let (entry, kend) = match h.aout {
        Some(a) => load_aout(k, h, a, layout, &mut img)?,
        None => load_elf(k, layout, &mut img)?,
    };
    if !layout.contains(entry, 1) {
        return err(format!(
            "multiboot entry point {entry:#x} lies outside guest memory"
        ));
    }
    let info = align_up(kend, PAGE);
    build_info(info, layout, args, &mut img)?;
    img.regs = vec![
        (Reg::Pc, entry),
        (Reg::Ax, u64::from(BOOT_MAGIC)),
        (Reg::Bx, info),
    ];
    Ok(img)
}

fn load_aout(
    k: &[u8],
    h: &Header,
    a: [u32; 5],
    layout: &Layout,
    img: &mut Image,
) -> Result<(u64, u64), LoadError> {
    let [header_addr, load_addr, load_end, bss_end, entry] = a.map(u64::from);
    if load_addr > header_addr {
        return err(format!(
            "multiboot load_addr {load_addr:#x} is above header_addr {header_addr:#x}"
        ));
    }
    let start = (h.offset as u64)
        .checked_sub(header_addr - load_addr)
        .ok_or_else(|| {
            LoadError("multiboot load_addr points before the start of the file".into())
        })?;
    let file_len = k.len() as u64 - start;
    let len = if load_end == 0 {
        file_len
    } else if load_end < load_addr {
        return err(format!(
            "multiboot load_end_addr {load_end:#x} is below load_addr {load_addr:#x}"
        ));
    } else if load_end - load_addr > file_len {
        return err(format!(
            "short kernel image: load_end_addr wants {:#x} bytes, the file has {file_len:#x}",
            load_end - load_addr
        ));
    } else {
        load_end - load_addr
    };
    let end = load_addr + len;
    let bss = if bss_end == 0 { end } else { bss_end };
    if bss < end {
        return err(format!(
            "multiboot bss_end_addr {bss:#x} is below load_end_addr {end:#x}"
        ));
    }
    if !layout.contains(load_addr, bss - load_addr) {
        return err(format!(
            "kernel image [{load_addr:#x}, {bss:#x}) out of bounds of {:#x} bytes of guest memory",
            layout.mem()
        ));
    }
    img.push(
        load_addr,
        k[start as usize..(start + len) as usize].to_vec(),
    );
    Ok((entry, bss))
}

fn load_elf(k: &[u8], layout: &Layout, img: &mut Image) -> Result<(u64, u64), LoadError> {
    if !k.starts_with(b"\x7fELF") {
        return err(
            "multiboot header without the a.out kludge (flag 16) in a file that is not ELF",
        );
    }
    let e = elf::parse(k).map_err(|e| LoadError(format!("multiboot {e}")))?;
    let mut kend = 0;
    for s in &e.segments {
        if !layout.contains(s.paddr, s.memsz) {
            return err(format!(
                "ELF segment [{:#x}, {:#x}) out of bounds of {:#x} bytes of guest memory",
                s.paddr,
                s.paddr.saturating_add(s.memsz),
                layout.mem()
            ));
        }
        img.push(
            s.paddr,
            k[s.offset as usize..(s.offset + s.filesz) as usize].to_vec(),
        );
        kend = kend.max(s.paddr + s.memsz);
    }
    Ok((e.entry, kend))
}

/// Writes the information structure and what it points to at `at`.
fn build_info(at: u64, layout: &Layout, args: &BootArgs, img: &mut Image) -> Result<(), LoadError> {
    const INFO: usize = 128;
    let e820 = layout.e820();
    let mut b = vec![0u8; INFO];
    let mut flags = 1 << 0 | 1 << 6 | 1 << 9;
    put32(&mut b, 4, layout.base_kb() as u32);
    put32(&mut b, 8, layout.ext_kb().min(u64::from(u32::MAX)) as u32);
    // Memory map: entries of size(4) base(8) length(8) type(4); size excludes itself.
    let mmap = b.len();
    for (start, len, t) in &e820 {
        let o = b.len();
        b.resize(o + 24, 0);
        put32(&mut b, o, 20);
        put64(&mut b, o + 4, *start);
        put64(&mut b, o + 12, *len);
        put32(&mut b, o + 20, *t);
    }
    let mmap_len = (b.len() - mmap) as u32;
    put32(&mut b, 44, mmap_len);
    put32(&mut b, 48, (at + mmap as u64) as u32);
    let cstr = |b: &mut Vec<u8>, s: &str| -> u32 {
        let o = b.len();
        b.extend_from_slice(s.as_bytes());
        b.push(0);
        (at + o as u64) as u32
    };
    if !args.cmdline.is_empty() {
        flags |= 1 << 2;
        let p = cstr(&mut b, &args.cmdline);
        put32(&mut b, 16, p);
    }
    let p = cstr(&mut b, LOADER_NAME);
    put32(&mut b, 64, p);
    if !args.modules.is_empty() {
        flags |= 1 << 3;
        let names: Vec<u32> = args.modules.iter().map(|m| cstr(&mut b, &m.name)).collect();
        b.resize(align_up(b.len() as u64, 16) as usize, 0);
        let list = b.len();
        b.resize(list + 16 * args.modules.len(), 0);
        put32(&mut b, 20, args.modules.len() as u32);
        put32(&mut b, 24, (at + list as u64) as u32);
        let mut next = align_up(at + b.len() as u64, PAGE);
        for (i, (m, name)) in args.modules.iter().zip(names).enumerate() {
            let len = m.data.len() as u64;
            if !layout.contains(next, len) {
                return err(format!(
                    "out of guest memory for module {} ({len} bytes at {next:#x})",
                    m.name
                ));
            }
            let o = list + 16 * i;
            put32(&mut b, o, next as u32);
            put32(&mut b, o + 4, (next + len) as u32);
            put32(&mut b, o + 8, name);
            img.push(next, m.data.clone());
            next = align_up(next + len, PAGE);
        }
    }
    put32(&mut b, 0, flags);
    if !layout.contains(at, b.len() as u64) {
        return err(format!("no space for the multiboot information at {at:#x}"));
    }
    img.push(at, b);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{le64, load as load_any, Module};
    use super::*;

    fn header(flags: u32, aout: Option<[u32; 5]>) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(&MAGIC.to_le_bytes());
        h.extend_from_slice(&flags.to_le_bytes());
        h.extend_from_slice(&(0u32.wrapping_sub(MAGIC).wrapping_sub(flags)).to_le_bytes());
        for v in aout.unwrap_or_default() {
            if aout.is_some() {
                h.extend_from_slice(&v.to_le_bytes());
            }
        }
        h
    }

    /// An a.out-kludge kernel: 16 bytes of padding, the header, code, loaded at 1 MiB.
    fn aout_kernel() -> Vec<u8> {
        let mut k = vec![0xccu8; 16];
        let load = 0x100000u32;
        let hdr_addr = load + 16;
        let code = [0xb8, 1, 0, 0, 0, 0xf4];
        let file_len = 16 + 32 + code.len() as u32;
        k.extend(header(
            AOUT_KLUDGE | 3,
            Some([hdr_addr, load, load + file_len, load + 0x3000, load + 48]),
        ));
        k.extend_from_slice(&code);
        k
    }

    fn args() -> BootArgs {
        BootArgs {
            cmdline: "console=com1 -v".into(),
            modules: vec![
                Module {
                    name: "plan9.ini".into(),
                    data: b"bootfile=x\n".to_vec(),
                },
                Module {
                    name: "initrd".into(),
                    data: vec![7; 5000],
                },
            ],
        }
    }

    fn cstr(img: &Image, addr: u64) -> String {
        let b = img.read(addr, 256);
        String::from_utf8_lossy(&b[..b.iter().position(|&c| c == 0).unwrap()]).into_owned()
    }

    fn u32_at(img: &Image, addr: u64) -> u32 {
        le32(&img.read(addr, 4), 0).unwrap()
    }

    #[test]
    fn aout_kludge_kernel() {
        let k = aout_kernel();
        let l = Layout::new(64 << 20).unwrap();
        let img = load_any(&k, &l, &args()).unwrap();
        assert_eq!(img.format, "multiboot");
        assert_eq!(img.entry(), 0x100030);
        assert_eq!(img.read(0x100000, 2), vec![0xcc, 0xcc]);
        assert_eq!(img.read(0x100030, 6), vec![0xb8, 1, 0, 0, 0, 0xf4]);
        let info = 0x103000;
        assert!(img.regs.contains(&(Reg::Ax, 0x2badb002)));
        assert!(img.regs.contains(&(Reg::Bx, info)));
        let flags = u32_at(&img, info);
        assert_eq!(flags, 1 | 1 << 2 | 1 << 3 | 1 << 6 | 1 << 9);
        assert_eq!(u32_at(&img, info + 4), 640);
        assert_eq!(u32_at(&img, info + 8), 63 * 1024);
        assert_eq!(
            cstr(&img, u64::from(u32_at(&img, info + 16))),
            "console=com1 -v"
        );
        assert_eq!(cstr(&img, u64::from(u32_at(&img, info + 64))), LOADER_NAME);
        // Memory map: three entries of 24 bytes.
        assert_eq!(u32_at(&img, info + 44), 72);
        let mm = u64::from(u32_at(&img, info + 48));
        let e = img.read(mm, 72);
        assert_eq!(
            (le32(&e, 0), le64(&e, 4), le64(&e, 12), le32(&e, 20)),
            (Some(20), Some(0), Some(0xa0000), Some(1))
        );
        assert_eq!(
            (le64(&e, 52), le64(&e, 60), le32(&e, 68)),
            (Some(0x100000), Some((64 << 20) - 0x100000), Some(1))
        );
        // Modules: page aligned, contents and names.
        assert_eq!(u32_at(&img, info + 20), 2);
        let mods = u64::from(u32_at(&img, info + 24));
        let (s0, e0) = (u32_at(&img, mods), u32_at(&img, mods + 4));
        let (s1, e1) = (u32_at(&img, mods + 16), u32_at(&img, mods + 20));
        assert_eq!(s0 % 4096, 0);
        assert_eq!(s1 % 4096, 0);
        assert_eq!(e0 - s0, 11);
        assert_eq!(e1 - s1, 5000);
        assert!(s1 >= e0);
        assert_eq!(img.read(u64::from(s0), 11), b"bootfile=x\n");
        assert_eq!(img.byte_at(u64::from(e1) - 1), Some(7));
        assert_eq!(cstr(&img, u64::from(u32_at(&img, mods + 8))), "plan9.ini");
        assert_eq!(cstr(&img, u64::from(u32_at(&img, mods + 24))), "initrd");
    }

    #[test]
    fn elf_kernel_without_kludge() {
        let mut code = vec![0x90; 64];
        let h = header(3, None);
        code[8..8 + h.len()].copy_from_slice(&h);
        let k = elf::tests::elf32(&code, 0x200000, 0x1800, 0x200000);
        let l = Layout::new(16 << 20).unwrap();
        let img = load_any(&k, &l, &BootArgs::default()).unwrap();
        assert_eq!(img.entry(), 0x200000);
        assert_eq!(img.read(0x200000, 64), code);
        // Info after bss, page aligned; no cmdline or modules flags.
        assert!(img.regs.contains(&(Reg::Bx, 0x202000)));
        assert_eq!(u32_at(&img, 0x202000), 1 | 1 << 6 | 1 << 9);
    }

    #[test]
    fn bad_multiboot_images() {
        let l = Layout::new(64 << 20).unwrap();
        let a = BootArgs::default();
        let mut k = aout_kernel();
        k[16 + 8] ^= 1;
        assert!(load_any(&k, &l, &a).unwrap_err().0.contains("checksum"));

        let mut k = header(1 << 5, None);
        k.resize(1000, 0);
        assert!(load_any(&k, &l, &a)
            .unwrap_err()
            .0
            .contains("requires features"));

        let mut k = header(0, None);
        k.resize(1000, 0);
        assert!(load_any(&k, &l, &a).unwrap_err().0.contains("not ELF"));

        // load_end_addr beyond the file.
        let mut k = vec![0u8; 16];
        k.extend(header(
            AOUT_KLUDGE,
            Some([0x100010, 0x100000, 0x200000, 0, 0x100000]),
        ));
        assert!(load_any(&k, &l, &a)
            .unwrap_err()
            .0
            .contains("short kernel image"));

        // Loaded above the end of guest memory.
        let mut k = vec![0u8; 16];
        k.extend(header(
            AOUT_KLUDGE,
            Some([0x8000010, 0x8000000, 0, 0, 0x8000000]),
        ));
        assert!(load_any(&k, &l, &a)
            .unwrap_err()
            .0
            .contains("out of bounds"));

        // Header cut off by the end of the file.
        let mut k = vec![0u8; 16];
        k.extend(&header(AOUT_KLUDGE, Some([0; 5]))[..20]);
        assert!(load_any(&k, &l, &a).unwrap_err().0.contains("truncated"));

        // Header past the 8 KiB search window is not found.
        let mut k = vec![0u8; 8192];
        k.extend(aout_kernel());
        assert!(load_any(&k, &l, &a)
            .unwrap_err()
            .0
            .contains("unknown format"));

        // Modules that do not fit.
        let big = BootArgs {
            cmdline: String::new(),
            modules: vec![Module {
                name: "m".into(),
                data: vec![1; 2 << 20],
            }],
        };
        let small = Layout::new(2 << 20).unwrap();
        assert!(load_any(&aout_kernel(), &small, &big)
            .unwrap_err()
            .0
            .contains("out of guest memory"));
    }
}
