//! Linux bzImage through the 32-bit boot protocol (Documentation/arch/x86/boot.rst), as
//! vmx(1) boots it: boot protocol 2.06 or newer, the protected-mode kernel at 1 MiB, the
//! zero page (boot_params) at 0x1000 with a copy of the setup header, the command line at
//! 0x20000, a flat GDT at 0x3000 (__BOOT_CS 0x10, __BOOT_DS 0x18), the e820 map, the
//! initrd at the top of memory below initrd_addr_max; entry at code32_start with esi
//! pointing at the zero page.

use super::{align_up, err, le16, le32, put16, put32, put64, BootArgs, Image, LoadError};
use crate::layout::{Layout, PAGE};
use crate::regs::Reg;

pub const ZERO_PAGE: u64 = 0x1000;
pub const CMDLINE: u64 = 0x20000;
pub const GDT: u64 = 0x3000;
pub const KERNEL: u64 = 0x100000;

const HDRS: u32 = 0x5372_6448; // "HdrS"
const LOADED_HIGH: u8 = 1 << 0;
pub const CAN_USE_HEAP: u8 = 1 << 7;
const E820_MAX: usize = 128;

/// The setup header fields the loader uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetupHeader {
    pub version: u16,
    pub setup_sects: u8,
    pub syssize: u32,
    pub loadflags: u8,
    pub code32_start: u32,
    pub initrd_addr_max: u32,
    pub cmdline_size: u32,
    /// Memory the kernel needs from its load address while decompressing (2.10+; else 0).
    pub init_size: u32,
    /// Bytes of header to copy into the zero page, from 0x1f1.
    pub header_end: usize,
}

pub fn is_bzimage(b: &[u8]) -> bool {
    le16(b, 0x1fe) == Some(0xaa55) && le32(b, 0x202) == Some(HDRS)
}

pub fn parse_header(b: &[u8]) -> Result<SetupHeader, LoadError> {
    if b.len() < 1024 {
        return err(format!(
            "linux: image of {} bytes is too short for a setup header",
            b.len()
        ));
    }
    if !is_bzimage(b) {
        return err("linux: no boot signature 0xaa55 and HdrS setup header");
    }
    let version = le16(b, 0x206).unwrap_or(0);
    if version < 0x206 {
        return err(format!(
            "linux: kernel too old (boot protocol version {}.{:02}, needs to be 2.06 or newer)",
            version >> 8,
            version & 0xff
        ));
    }
    let loadflags = b[0x211];
    if loadflags & LOADED_HIGH == 0 {
        return err("linux: zImage (not loaded high) is not supported");
    }
    let setup_sects = match b[0x1f1] {
        0 => 4,
        n => n,
    };
    let g32 = |o| le32(b, o).unwrap_or(0);
    let header_end = 0x202 + usize::from(b[0x201]);
    if header_end > 0x1000 || header_end > b.len() {
        return err(format!(
            "linux: setup header end {header_end:#x} is out of range"
        ));
    }
    Ok(SetupHeader {
        version,
        setup_sects,
        syssize: g32(0x1f4),
        loadflags,
        code32_start: g32(0x214),
        initrd_addr_max: g32(0x22c),
        cmdline_size: g32(0x238),
        init_size: if version >= 0x20a { g32(0x260) } else { 0 },
        header_end,
    })
}

pub fn load(k: &[u8], layout: &Layout, args: &BootArgs) -> Result<Image, LoadError> {
    let h = parse_header(k)?;
    let setup_len = (usize::from(h.setup_sects) + 1) * 512;
    if setup_len >= k.len() {
        return err(format!(
            "linux: {} setup sectors leave no protected-mode kernel in {} bytes",
            h.setup_sects,
            k.len()
        ));
    }
    let kernel = &k[setup_len..];
    let want = u64::from(h.syssize) * 16;
    if (kernel.len() as u64) + 16 <= want {
        return err(format!(
            "linux: truncated image: syssize says {want:#x} bytes of kernel, the file has {:#x}",
            kernel.len()
        ));
    }
    let kend = KERNEL + (kernel.len() as u64).max(u64::from(h.init_size));
    if kend > layout.mem() {
        return err(format!(
            "linux: not enough memory for the kernel: it needs {:#x} bytes from {KERNEL:#x}, the guest has {:#x} in all (try a larger -M)",
            kend - KERNEL,
            layout.mem()
        ));
    }
    let mut img = Image {
        format: "linux",
        chunks: vec![],
        regs: vec![],
    };
    img.push(KERNEL, kernel.to_vec());

    // The zero page: boot_params with the kernel's own setup header copied in.
    let mut zp = vec![0u8; PAGE as usize];
    zp[0x1f1..h.header_end].copy_from_slice(&k[0x1f1..h.header_end]);
    put16(&mut zp, 0x02, layout.ext_kb().min(0xffff) as u16); // screen_info.ext_mem_k
    put32(
        &mut zp,
        0x1e0,
        layout.ext_kb().min(u64::from(u32::MAX)) as u32,
    ); // alt_mem_k
    put16(&mut zp, 0x1fa, 0xffff); // vid_mode: normal
    zp[0x210] = 0xff; // type_of_loader: undefined
    zp[0x211] = h.loadflags | CAN_USE_HEAP;
    put16(&mut zp, 0x224, 0xfe00); // heap_end_ptr
    put32(&mut zp, 0x228, CMDLINE as u32);

    let e820 = layout.e820();
    if e820.len() > E820_MAX {
        return err("linux: too many e820 entries");
    }
    for (i, (start, len, t)) in e820.iter().enumerate() {
        let o = 0x2d0 + 20 * i;
        put64(&mut zp, o, *start);
        put64(&mut zp, o + 8, *len);
        put32(&mut zp, o + 16, *t);
    }
    zp[0x1e8] = e820.len() as u8;

    // Command line at 0x20000, NUL-terminated, within the kernel's cmdline_size.
    if args.cmdline.len() as u64 > u64::from(h.cmdline_size) {
        return err(format!(
            "linux: command line too long ({} > {} bytes)",
            args.cmdline.len(),
            h.cmdline_size
        ));
    }
    let mut cl = args.cmdline.as_bytes().to_vec();
    cl.push(0);
    img.push(CMDLINE, cl);

    // The initrd: the first module, as high as the kernel allows, page aligned.
    if let Some(m) = args.modules.first() {
        if args.modules.len() > 1 {
            return err("linux: only one module (the initrd) can be passed");
        }
        let size = m.data.len() as u64;
        if size == 0 {
            return err("linux: empty initrd");
        }
        let max = match h.initrd_addr_max {
            0 => 0x37ff_ffff,
            a => u64::from(a),
        };
        let top = max.min(layout.mem() - 1) + 1;
        let addr = top.checked_sub(size).map(|a| a & !(PAGE - 1));
        let Some(addr) = addr.filter(|&a| a >= align_up(kend, PAGE)) else {
            return err(format!(
                "linux: no room for an initrd of {size} bytes between the kernel end {kend:#x} and {top:#x} (try a larger -M)"
            ));
        };
        put32(&mut zp, 0x218, addr as u32);
        put32(&mut zp, 0x21c, size as u32);
        img.push(addr, m.data.clone());
    }
    img.push(ZERO_PAGE, zp);

    // GDT: null, null, flat 32-bit code (0x10), flat 32-bit data (0x18).
    let mut gdt = vec![0u8; 32];
    put64(&mut gdt, 16, 0x00cf_9a00_0000_ffff);
    put64(&mut gdt, 24, 0x00cf_9200_0000_ffff);
    img.push(GDT, gdt);

    img.regs = vec![
        (Reg::Pc, u64::from(h.code32_start)),
        (Reg::Si, ZERO_PAGE),
        (Reg::Bp, 0),
        (Reg::Di, 0),
        (Reg::Bx, 0),
        (Reg::GdtrBase, GDT),
        (Reg::GdtrLimit, 31),
        (Reg::Cs, 0x10),
        (Reg::Ds, 0x18),
        (Reg::Es, 0x18),
        (Reg::Ss, 0x18),
    ];
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::super::{le64, load as load_any, Module};
    use super::*;

    /// A synthetic bzImage: the fields the loader reads, 2 setup sectors, `kernel` after.
    fn synthetic(version: u16, kernel: &[u8]) -> Vec<u8> {
        let mut k = vec![0u8; 3 * 512];
        k[0x1f1] = 2;
        put32(&mut k, 0x1f4, kernel.len().div_ceil(16) as u32);
        put16(&mut k, 0x1fe, 0xaa55);
        k[0x201] = 0x66; // header ends at 0x268
        put32(&mut k, 0x202, HDRS);
        put16(&mut k, 0x206, version);
        k[0x211] = LOADED_HIGH;
        put32(&mut k, 0x214, 0x100000);
        put32(&mut k, 0x22c, 0x7fff_ffff);
        put32(&mut k, 0x238, 2047);
        put32(&mut k, 0x260, 0x40_0000);
        k.extend_from_slice(kernel);
        k
    }

    #[test]
    fn synthetic_bzimage() {
        let code = vec![0x90u8; 5000];
        let k = synthetic(0x20f, &code);
        let l = Layout::new(32 << 20).unwrap();
        let a = BootArgs {
            cmdline: "console=ttyS0 quiet".into(),
            modules: vec![Module {
                name: "initrd".into(),
                data: vec![0x5a; 10000],
            }],
        };
        let img = load_any(&k, &l, &a).unwrap();
        assert_eq!(img.format, "linux");
        assert_eq!(img.entry(), 0x100000);
        assert!(img.regs.contains(&(Reg::Si, 0x1000)));
        assert_eq!(img.read(0x100000, 5000), code);
        let zp = img.read(ZERO_PAGE, 4096);
        assert_eq!(zp[0x1f1], 2);
        assert_eq!(le16(&zp, 0x1fe), Some(0xaa55));
        assert_eq!(le32(&zp, 0x202), Some(HDRS));
        assert_eq!(zp[0x210], 0xff);
        assert_eq!(zp[0x211], LOADED_HIGH | CAN_USE_HEAP);
        assert_eq!(le32(&zp, 0x228), Some(0x20000));
        assert_eq!(le16(&zp, 0x02), Some(31 * 1024));
        assert_eq!(img.read(CMDLINE, 20), b"console=ttyS0 quiet\0");
        // e820: 3 entries, the last the RAM above 1 MiB.
        assert_eq!(zp[0x1e8], 3);
        assert_eq!(le64(&zp, 0x2d0 + 40), Some(0x100000));
        assert_eq!(le64(&zp, 0x2d0 + 48), Some((32 << 20) - 0x100000));
        assert_eq!(le32(&zp, 0x2d0 + 56), Some(1));
        // initrd at the top of memory, page aligned.
        let (ia, is) = (le32(&zp, 0x218).unwrap(), le32(&zp, 0x21c).unwrap());
        assert_eq!(is, 10000);
        assert_eq!(u64::from(ia), ((32 << 20) - 10000) & !0xfff);
        assert_eq!(img.read(u64::from(ia), 3), vec![0x5a; 3]);
        // GDT: flat code at 0x10, data at 0x18.
        assert_eq!(le64(&img.read(GDT + 16, 8), 0), Some(0x00cf_9a00_0000_ffff));
    }

    #[test]
    fn bad_bzimages() {
        let l = Layout::new(32 << 20).unwrap();
        let a = BootArgs::default();
        let e = |k: &[u8], a: &BootArgs, l: &Layout| load_any(k, l, a).unwrap_err().0;
        assert!(
            e(&synthetic(0x204, &[1; 100]), &a, &l).contains("too old (boot protocol version 2.04")
        );
        let mut z = synthetic(0x20f, &[1; 100]);
        z[0x211] = 0;
        assert!(e(&z, &a, &l).contains("zImage"));
        let mut t = synthetic(0x20f, &[1; 1000]);
        t.truncate(t.len() - 500);
        assert!(e(&t, &a, &l).contains("truncated"));
        let small = Layout::new(4 << 20).unwrap();
        assert!(e(&synthetic(0x20f, &[1; 100]), &a, &small).contains("not enough memory"));
        let long = BootArgs {
            cmdline: "x".repeat(3000),
            modules: vec![],
        };
        assert!(e(&synthetic(0x20f, &[1; 100]), &long, &l).contains("command line too long"));
        let huge = BootArgs {
            cmdline: String::new(),
            modules: vec![Module {
                name: "i".into(),
                data: vec![1; 30 << 20],
            }],
        };
        assert!(e(&synthetic(0x20f, &[1; 100]), &huge, &l).contains("no room for an initrd"));
        let two = BootArgs {
            cmdline: String::new(),
            modules: vec![
                Module {
                    name: "a".into(),
                    data: vec![1],
                },
                Module {
                    name: "b".into(),
                    data: vec![1],
                },
            ],
        };
        assert!(e(&synthetic(0x20f, &[1; 100]), &two, &l).contains("only one module"));
        let mut s = synthetic(0x20f, &[1; 100]);
        s[0x1f1] = 200;
        assert!(e(&s, &a, &l).contains("setup sectors"));
    }
}
