//! The kernel's boot-time parsers on the host: the Multiboot information structures and
//! the command line. Both must be total: any bytes give a value.

use hypervisor::bootinfo::{self, parse_mb1, parse_mb2, Region};
use hypervisor::cmdline;

fn tag(ty: u32, body: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&ty.to_le_bytes());
    t.extend_from_slice(&(8 + body.len() as u32).to_le_bytes());
    t.extend_from_slice(body);
    while t.len() % 8 != 0 {
        t.push(0);
    }
    t
}

fn mb2(tags: &[Vec<u8>]) -> Vec<u8> {
    let mut b = vec![0u8; 8];
    for t in tags {
        b.extend_from_slice(t);
    }
    b.extend_from_slice(&tag(0, &[]));
    let n = b.len() as u32;
    b[..4].copy_from_slice(&n.to_le_bytes());
    b
}

fn mmap_entry(base: u64, len: u64, ty: u32) -> Vec<u8> {
    let mut e = Vec::new();
    e.extend_from_slice(&base.to_le_bytes());
    e.extend_from_slice(&len.to_le_bytes());
    e.extend_from_slice(&ty.to_le_bytes());
    e.extend_from_slice(&0u32.to_le_bytes());
    e
}

#[test]
fn multiboot2_memory_map_and_command_line() {
    let mut map = Vec::new();
    map.extend_from_slice(&24u32.to_le_bytes());
    map.extend_from_slice(&0u32.to_le_bytes());
    map.extend(mmap_entry(0, 0x9fc00, 1));
    map.extend(mmap_entry(0x9fc00, 0x400, 2));
    map.extend(mmap_entry(0x100000, 0x7ee0000, 1));
    map.extend(mmap_entry(0xfffc0000, 0x40000, 2));
    let info = mb2(&[tag(1, b"owner=glenda serve=uart\0"), tag(6, &map)]);
    let bi = parse_mb2(&info);
    assert_eq!(bi.cmdline(), "owner=glenda serve=uart");
    assert_eq!(
        bi.regions(),
        &[
            Region {
                start: 0,
                end: 0x9fc00
            },
            Region {
                start: 0x100000,
                end: 0x7fe0000
            }
        ]
    );
}

#[test]
fn multiboot1_memory_map_and_command_line() {
    // Pointers lead nowhere in this build: only the flags and mem_upper fall-back count.
    let mut info = vec![0u8; 88];
    info[0] = 1; // mem_lower/mem_upper valid
    info[8..12].copy_from_slice(&(127 * 1024u32).to_le_bytes());
    let bi = parse_mb1(&info, |_, _| &[]);
    assert_eq!(
        bi.regions(),
        &[Region {
            start: 0x100000,
            end: 0x100000 + 127 * 1024 * 1024
        }]
    );
    static MAP: [u8; 48] = {
        let mut m = [0u8; 48];
        // size 20, base 0x100000, len 0x1000000, type 1; then a reserved entry.
        m[0] = 20;
        m[6] = 0x10;
        m[15] = 0x01;
        m[20] = 1;
        m[24] = 20;
        m[44] = 2;
        m
    };
    static CMD: &[u8] = b"log=debug owner=ken\0junk";
    let mut info = vec![0u8; 88];
    info[0] = (1 << 2) | (1 << 6);
    info[16..20].copy_from_slice(&0x5000u32.to_le_bytes());
    info[44..48].copy_from_slice(&48u32.to_le_bytes());
    info[48..52].copy_from_slice(&0x6000u32.to_le_bytes());
    let bi = parse_mb1(&info, |pa, len| match pa {
        0x5000 => &CMD[..len.min(CMD.len())],
        0x6000 => &MAP[..len.min(MAP.len())],
        _ => &[],
    });
    assert_eq!(bi.cmdline(), "log=debug owner=ken");
    assert_eq!(
        bi.regions(),
        &[Region {
            start: 0x100000,
            end: 0x1100000
        }]
    );
}

#[test]
fn parsers_are_total() {
    // Seeded mutations of a valid structure and plain noise: no panic, bounded output.
    let base = mb2(&[
        tag(1, b"owner=eve\0"),
        tag(6, &{
            let mut m = vec![24, 0, 0, 0, 0, 0, 0, 0];
            m.extend(mmap_entry(0x100000, 0x100000, 1));
            m
        }),
    ]);
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..20_000 {
        let mut b = if i % 2 == 0 {
            base.clone()
        } else {
            (0..(next() % 200) as usize).map(|_| next() as u8).collect()
        };
        for _ in 0..(next() % 8) {
            if !b.is_empty() {
                let at = (next() as usize) % b.len();
                b[at] = next() as u8;
            }
        }
        let bi = parse_mb2(&b);
        assert!(bi.regions().len() <= bootinfo::MAX_REGIONS);
        let noise: &'static [u8] = Box::leak(b.clone().into_boxed_slice());
        let bi = parse_mb1(&b, |_, len| &noise[..len.min(noise.len())]);
        assert!(bi.regions().len() <= bootinfo::MAX_REGIONS);
        let _ = cmdline::parse(&String::from_utf8_lossy(&b));
    }
}

#[test]
fn command_line() {
    let c = cmdline::parse("/boot/hypervisor owner=glenda serve=virtio log=debug echo=virtio:9p.1");
    assert_eq!(c.owner, "glenda");
    assert!(c.virtio && !c.uart);
    assert_eq!(c.log, log::LevelFilter::Debug);
    assert_eq!(c.echo, vec!["virtio:9p.1".to_string()]);
    assert!(!c.selftest_vmx);
    assert_eq!(c.cpus, None, "every CPU the firmware lists");
    assert_eq!(cmdline::parse("cpus=2").cpus, Some(2));
    assert_eq!(cmdline::parse("cpus=1").cpus, Some(1));
    let d = cmdline::parse("owner= serve=uart,bogus log=nonsense selftest=vmx,fault cpus=0");
    assert_eq!(d.cpus, None, "cpus=0 is no limit, not no CPU");
    assert_eq!(cmdline::parse("cpus=x").cpus, None);
    assert_eq!(d.owner, "eve", "an empty owner keeps the default");
    assert!(d.uart && !d.virtio);
    assert_eq!(d.log, log::LevelFilter::Info);
    assert!(d.selftest_vmx && d.selftest_fault);
    assert_eq!(cmdline::parse(""), cmdline::Config::default());
    let n = cmdline::parse("serve=net ip=10.1.2.3/16 gw=10.1.0.1 port=5640 secret=s3cr3t");
    assert!(n.net && !n.uart && !n.virtio);
    assert_eq!(n.ip, Some(([10, 1, 2, 3], 16)));
    assert_eq!(n.gw, Some([10, 1, 0, 1]));
    assert_eq!(n.port, 5640);
    assert_eq!(n.echo_port, None);
    assert_eq!(cmdline::parse("echoport=7").echo_port, Some(7));
    assert!(!c.switch, "the switch is opt-in");
    assert!(cmdline::parse("/boot/hypervisor switch serve=net").switch);
    assert!(
        !cmdline::parse("switch=1 /boot/switch").switch,
        "only the bare word"
    );
    assert_eq!(n.secret, Some(cmdline::Secret("s3cr3t".into())));
    assert!(
        !format!("{n:?}").contains("s3cr3t"),
        "the secret is never printed"
    );
    let bad = cmdline::parse("ip=10.1.2.3 gw=nonsense port=0 secret=");
    assert_eq!(
        (bad.ip, bad.gw, bad.port, bad.secret),
        (None, None, 564, None)
    );
    assert!(cmdline::parse("").net, "TCP is served by default");
    assert_eq!(
        cmdline::redacted("/boot/hv owner=ken secret=xyz serve=net"),
        "/boot/hv owner=ken secret=... serve=net"
    );
}

/// An ACPI RSDP copy as GRUB puts it in tags 14 (20 bytes) and 15 (36 bytes).
fn rsdp_copy(rev: u8, len: usize) -> Vec<u8> {
    let mut r = b"RSD PTR ".to_vec();
    r.resize(len, 0);
    r[15] = rev;
    r
}

#[test]
fn multiboot2_acpi_tags_give_the_rsdp_the_newer_first() {
    // Tag 14 alone: its body's offset in the structure.
    let info = mb2(&[tag(1, b"x\0"), tag(14, &rsdp_copy(0, 20))]);
    let bi = parse_mb2(&info);
    // Header 8, tag 1 (8 + 2 padded to 16), then tag 14's header.
    assert_eq!(bi.rsdp(), Some(8 + 16 + 8));
    assert_eq!(&info[32..40], b"RSD PTR ");
    // Both: tag 15 (ACPI 2.0+) wins, in either order.
    let info = mb2(&[tag(15, &rsdp_copy(2, 36)), tag(14, &rsdp_copy(0, 20))]);
    assert_eq!(parse_mb2(&info).rsdp(), Some(16));
    let info = mb2(&[tag(14, &rsdp_copy(0, 20)), tag(15, &rsdp_copy(2, 36))]);
    assert_eq!(parse_mb2(&info).rsdp(), Some(8 + 32 + 8));
    // A tag too short for an RSDP, or none: no RSDP.
    assert_eq!(parse_mb2(&mb2(&[tag(14, b"RSD PTR ")])).rsdp(), None);
    assert_eq!(parse_mb2(&mb2(&[tag(1, b"x\0")])).rsdp(), None);
}

fn efi_descriptor(kind: u32, base: u64, pages: u64) -> Vec<u8> {
    let mut d = vec![0u8; 48];
    d[0..4].copy_from_slice(&kind.to_le_bytes());
    d[8..16].copy_from_slice(&base.to_le_bytes());
    d[24..32].copy_from_slice(&pages.to_le_bytes());
    d
}

fn efi_map(descs: &[Vec<u8>]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&48u32.to_le_bytes()); // descriptor size (larger than the 40 defined)
    m.extend_from_slice(&1u32.to_le_bytes()); // version
    for d in descs {
        m.extend_from_slice(d);
    }
    m
}

#[test]
fn multiboot2_efi_memory_map_when_there_is_no_mmap_tag() {
    let efi = efi_map(&[
        efi_descriptor(7, 0, 0x9f),               // conventional
        efi_descriptor(6, 0x9f000, 1),            // runtime services data
        efi_descriptor(4, 0x100000, 0x100),       // boot services data: free now
        efi_descriptor(9, 0x200000, 0x10),        // ACPI reclaim
        efi_descriptor(7, 0x1_0000_0000, 0x8000), // above 4 GiB
        efi_descriptor(11, 0xfec0_0000, 1),       // MMIO
    ]);
    let bi = parse_mb2(&mb2(&[tag(17, &efi)]));
    assert_eq!(
        bi.regions(),
        &[
            Region {
                start: 0,
                end: 0x9f000
            },
            Region {
                start: 0x100000,
                end: 0x200000
            },
            Region {
                start: 0x1_0000_0000,
                end: 0x1_0800_0000
            }
        ]
    );
    // With the Multiboot2 map there too, that one counts.
    let mut map = Vec::new();
    map.extend_from_slice(&24u32.to_le_bytes());
    map.extend_from_slice(&0u32.to_le_bytes());
    map.extend(mmap_entry(0x100000, 0x100000, 1));
    let bi = parse_mb2(&mb2(&[tag(17, &efi), tag(6, &map)]));
    assert_eq!(
        bi.regions(),
        &[Region {
            start: 0x100000,
            end: 0x200000
        }]
    );
    // A descriptor size below the defined 40 bytes: nothing.
    let mut bad = efi.clone();
    bad[..4].copy_from_slice(&8u32.to_le_bytes());
    assert_eq!(parse_mb2(&mb2(&[tag(17, &bad)])).regions(), &[]);
}

#[test]
fn multiboot2_framebuffer_tag() {
    // GRUB under a BIOS in text mode: EGA text, 80x25 at 0xb8000.
    let mut fb = Vec::new();
    fb.extend_from_slice(&0xb8000u64.to_le_bytes());
    fb.extend_from_slice(&160u32.to_le_bytes());
    fb.extend_from_slice(&80u32.to_le_bytes());
    fb.extend_from_slice(&25u32.to_le_bytes());
    fb.extend_from_slice(&[16, 2, 0, 0]);
    let bi = parse_mb2(&mb2(&[tag(8, &fb)]));
    assert_eq!(
        bi.framebuffer,
        Some(bootinfo::Framebuffer {
            addr: 0xb8000,
            pitch: 160,
            width: 80,
            height: 25,
            bpp: 16,
            kind: bootinfo::FramebufferKind::EgaText,
        })
    );
    // GRUB under UEFI: a GOP framebuffer, 32-bit pixels with red at bit 16 (GRUB puts the
    // colour information after a 16-bit reserved field).
    let mut rgb = Vec::new();
    rgb.extend_from_slice(&0x1_4000_0000u64.to_le_bytes());
    rgb.extend_from_slice(&5120u32.to_le_bytes());
    rgb.extend_from_slice(&1280u32.to_le_bytes());
    rgb.extend_from_slice(&800u32.to_le_bytes());
    rgb.extend_from_slice(&[32, 1, 0, 0, 16, 8, 8, 8, 0, 8]);
    let bi = parse_mb2(&mb2(&[tag(8, &rgb)]));
    let ch = |shift, bits| bootinfo::Channel { shift, bits };
    assert_eq!(
        bi.framebuffer,
        Some(bootinfo::Framebuffer {
            addr: 0x1_4000_0000,
            pitch: 5120,
            width: 1280,
            height: 800,
            bpp: 32,
            kind: bootinfo::FramebufferKind::Rgb(bootinfo::RgbLayout {
                red: ch(16, 8),
                green: ch(8, 8),
                blue: ch(0, 8),
            }),
        })
    );
    // Its colour information cut short: no screen.
    assert_eq!(parse_mb2(&mb2(&[tag(8, &rgb[..27])])).framebuffer, None);
    // An unknown type, or a tag cut short: no screen.
    fb[21] = 7;
    assert_eq!(parse_mb2(&mb2(&[tag(8, &fb)])).framebuffer, None);
    assert_eq!(parse_mb2(&mb2(&[tag(8, &fb[..10])])).framebuffer, None);
}
