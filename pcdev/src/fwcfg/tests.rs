//! The device as SeaBIOS drives it: port reads of the signature, ID, directory and files,
//! DMA transfers, and hostile selectors, sizes and descriptors.

use super::*;
use alloc::string::ToString;
use alloc::vec;

/// Guest memory as a byte array; accesses outside it fail.
struct Ram(Vec<u8>);

impl DmaMem for Ram {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        let Some(s) = usize::try_from(addr)
            .ok()
            .and_then(|a| self.0.get(a..a.checked_add(buf.len())?))
        else {
            return false;
        };
        buf.copy_from_slice(s);
        true
    }
    fn write(&mut self, addr: u64, data: &[u8]) -> bool {
        let Some(s) = usize::try_from(addr)
            .ok()
            .and_then(|a| self.0.get_mut(a..a.checked_add(data.len())?))
        else {
            return false;
        };
        s.copy_from_slice(data);
        true
    }
}

/// Selects `key` and reads `n` bytes through the data port, as SeaBIOS's insb does.
fn port_read(f: &mut FwCfg, key: u16, n: usize) -> Vec<u8> {
    assert_eq!(f.write(PORT_SELECT, 2, u32::from(key)), None);
    (0..n).map(|_| f.read(PORT_DATA, 1) as u8).collect()
}

fn board() -> FwCfg {
    Builder::new()
        .ram_size(256 << 20)
        .cpus(2)
        .sercon_port(0x3f8)
        .and_then(|b| b.bootorder(&["/pci@i0cf8/scsi@3/disk@0,0", "HALT"]))
        .and_then(|b| {
            b.e820(&[
                E820 {
                    addr: 0,
                    len: 0x9fc00,
                    kind: E820_RAM,
                },
                E820 {
                    addr: 0x10_0000,
                    len: 255 << 20,
                    kind: E820_RAM,
                },
            ])
        })
        .unwrap()
        .build()
}

#[test]
fn signature_and_id_as_seabios_probes_them() {
    let mut f = board();
    // Selected at power-on.
    assert_eq!(
        (0..4)
            .map(|_| f.read(PORT_DATA, 1) as u8)
            .collect::<Vec<_>>(),
        b"QEMU"
    );
    assert_eq!(port_read(&mut f, 0, 6), b"QEMU\0\0");
    assert_eq!(
        port_read(&mut f, 1, 4),
        (ID_TRADITIONAL | ID_DMA).to_le_bytes()
    );
    let mut plain = Builder::new().without_dma().build();
    assert_eq!(port_read(&mut plain, 1, 4), ID_TRADITIONAL.to_le_bytes());
    // Without DMA the DMA register is an unclaimed port; with it, its signature.
    assert_eq!(plain.read(PORT_DMA, 4), u32::MAX);
    assert_eq!(f.read(PORT_DMA, 4).to_le_bytes(), *b"QEMU");
    assert_eq!(f.read(PORT_DMA + 4, 4).to_le_bytes(), *b" CFG");
    assert_eq!(
        f.read(PORT_DMA + 6, 2),
        u32::from(u16::from_le_bytes(*b"FG"))
    );
    assert_eq!(f.read(PORT_LAST, 4), u32::from(b'G'));
}

#[test]
fn legacy_items() {
    let setup = [0x11u8; 0x400];
    let kernel = [0x22u8; 0x1234];
    let initrd = [0x33u8; 17];
    let mut f = Builder::new()
        .ram_size(0x1_2345_6789)
        .cpus(3)
        .linux(&Linux {
            setup_addr: 0x9_0000,
            setup: &setup,
            kernel_addr: 0x10_0000,
            kernel: &kernel,
            initrd_addr: 0x700_0000,
            initrd: &initrd,
            cmdline_addr: 0x2_0000,
            cmdline: b"console=ttyS0",
        })
        .unwrap()
        .build();
    let le32 = |v: u32| v.to_le_bytes().to_vec();
    let table: [(Item, Vec<u8>); 14] = [
        (Item::RamSize, 0x1_2345_6789u64.to_le_bytes().to_vec()),
        (Item::NbCpus, 3u16.to_le_bytes().to_vec()),
        (Item::MaxCpus, 3u16.to_le_bytes().to_vec()),
        (Item::SetupAddr, le32(0x9_0000)),
        (Item::SetupSize, le32(0x400)),
        (Item::SetupData, setup.to_vec()),
        (Item::KernelAddr, le32(0x10_0000)),
        (Item::KernelSize, le32(0x1234)),
        (Item::KernelData, kernel.to_vec()),
        (Item::InitrdAddr, le32(0x700_0000)),
        (Item::InitrdSize, le32(17)),
        (Item::CmdlineAddr, le32(0x2_0000)),
        (Item::CmdlineSize, le32(14)),
        (Item::CmdlineData, b"console=ttyS0\0".to_vec()),
    ];
    for (item, want) in table {
        assert_eq!(port_read(&mut f, item as u16, want.len()), want, "{item:?}");
        // Past the end: zeros, and the offset stays put.
        assert_eq!(f.read(PORT_DATA, 1), 0, "{item:?}");
    }
    // Items never set read as zeros; so do unknown and architecture selectors.
    for key in [
        Item::Uuid as u16,
        Item::Numa as u16,
        0x1f,
        0x3fff,
        ARCH_LOCAL + 3,
        0xffff,
    ] {
        assert_eq!(port_read(&mut f, key, 8), [0; 8], "{key:#x}");
    }
}

#[test]
fn file_directory_and_files() {
    let mut f = board();
    let count = u32::from_be_bytes(
        port_read(&mut f, Item::FileDir as u16, 4)
            .try_into()
            .unwrap(),
    );
    assert_eq!(count, 3);
    let mut files = Vec::new();
    for _ in 0..count {
        let e: Vec<u8> = (0..DIR_ENTRY_LEN)
            .map(|_| f.read(PORT_DATA, 1) as u8)
            .collect();
        let size = u32::from_be_bytes(e[0..4].try_into().unwrap());
        let select = u16::from_be_bytes([e[4], e[5]]);
        assert_eq!(&e[6..8], [0, 0]);
        let name = &e[8..];
        let end = name.iter().position(|&b| b == 0).unwrap();
        files.push((
            String::from_utf8(name[..end].to_vec()).unwrap(),
            select,
            size,
        ));
    }
    assert_eq!(
        files,
        [
            (FILE_SERCON_PORT.into(), 0x20, 2),
            (FILE_BOOTORDER.into(), 0x21, 32),
            (FILE_E820.into(), 0x22, 40),
        ]
    );
    assert_eq!(port_read(&mut f, 0x20, 2), 0x3f8u16.to_le_bytes());
    assert_eq!(
        port_read(&mut f, 0x21, 32),
        b"/pci@i0cf8/scsi@3/disk@0,0\nHALT\0"
    );
    let e820 = port_read(&mut f, 0x22, 40);
    assert_eq!(
        u64::from_le_bytes(e820[20..28].try_into().unwrap()),
        0x10_0000
    );
    assert_eq!(
        u64::from_le_bytes(e820[28..36].try_into().unwrap()),
        255 << 20
    );
    assert_eq!(
        u32::from_le_bytes(e820[36..40].try_into().unwrap()),
        E820_RAM
    );
    // The write channel bit selects the same item for reading.
    assert_eq!(
        port_read(&mut f, 0x20 | WRITE_CHANNEL, 2),
        0x3f8u16.to_le_bytes()
    );
}

#[test]
fn the_builder_refuses_bad_files() {
    let long = "x".repeat(NAME_LEN);
    for (name, want) in [
        ("", BuildError::BadName("".into())),
        ("a\0b", BuildError::BadName("a\0b".into())),
        (long.as_str(), BuildError::BadName(long.clone())),
    ] {
        assert_eq!(Builder::new().file(name, b"").unwrap_err(), want);
    }
    let err = Builder::new()
        .file("a", b"1")
        .unwrap()
        .file("a", b"2")
        .unwrap_err();
    assert_eq!(err, BuildError::Duplicate("a".into()));
    assert!(err.to_string().contains("added twice"));
    // The longest name fits, NUL included.
    let name = "y".repeat(NAME_LEN - 1);
    let mut f = Builder::new().file(&name, b"z").unwrap().build();
    let dir = port_read(&mut f, Item::FileDir as u16, 4 + DIR_ENTRY_LEN);
    assert_eq!(&dir[12..12 + NAME_LEN - 1], name.as_bytes());
    assert_eq!(dir[4 + DIR_ENTRY_LEN - 1], 0);
}

#[test]
fn other_accesses_are_answered_and_change_nothing() {
    let mut f = board();
    f.write(PORT_SELECT, 2, 0x20);
    assert_eq!(f.read(PORT_DATA, 1), 0xf8);
    // Wider reads of the data port, selector reads of other sizes, data writes, byte and
    // dword writes of the selector: all answered, none moves or reselects.
    assert_eq!(f.read(PORT_DATA, 2), u32::MAX);
    assert_eq!(f.read(PORT_SELECT, 4), u32::MAX);
    for (port, size) in [
        (PORT_DATA, 1),
        (PORT_SELECT, 1),
        (PORT_SELECT, 4),
        (PORT_DATA, 2),
    ] {
        assert_eq!(f.write(port, size, 0x19), None);
    }
    assert_eq!(f.read(PORT_DATA, 1), 0x03);
    // A byte read of the selector port reads data too, as QEMU's does.
    assert_eq!(f.read(PORT_SELECT, 1), 0);
    // Reset selects the signature again.
    f.reset();
    assert_eq!(f.read(PORT_DATA, 1), u32::from(b'Q'));
    // Every port, size and value: no panic.
    for port in PORT_SELECT - 1..=PORT_LAST + 1 {
        for size in [0, 1, 2, 3, 4, 8] {
            f.read(port, size);
            if let Some(d) = f.write(port, size, 0xdead_beef) {
                f.transfer(d, &mut Ram(vec![0; 64]));
            }
        }
    }
}

/// Writes a DMA descriptor at `at` and starts it as SeaBIOS does (two big-endian halves).
fn dma(f: &mut FwCfg, ram: &mut Ram, at: u64, control: u32, len: u32, addr: u64) -> u32 {
    let a = at as usize;
    ram.0[a..a + 4].copy_from_slice(&control.to_be_bytes());
    ram.0[a + 4..a + 8].copy_from_slice(&len.to_be_bytes());
    ram.0[a + 8..a + 16].copy_from_slice(&addr.to_be_bytes());
    assert_eq!(f.write(PORT_DMA, 4, ((at >> 32) as u32).swap_bytes()), None);
    let d = f.write(PORT_DMA + 4, 4, (at as u32).swap_bytes()).unwrap();
    assert_eq!(d, Dma(at));
    f.transfer(d, ram);
    u32::from_be_bytes(ram.0[a..a + 4].try_into().unwrap())
}

#[test]
fn dma_reads_skips_and_errors() {
    let mut f = board();
    let mut ram = Ram(vec![0xee; 0x2000]);
    // Select the bootorder and read 10 bytes, then skip 1, then read the rest and past
    // its end (zeros).
    let sel = 0x21 << 16 | DMA_SELECT | DMA_READ;
    assert_eq!(dma(&mut f, &mut ram, 0x100, sel, 10, 0x1000), 0);
    assert_eq!(&ram.0[0x1000..0x100a], b"/pci@i0cf8");
    assert_eq!(ram.0[0x100a], 0xee);
    assert_eq!(dma(&mut f, &mut ram, 0x100, DMA_SKIP, 1, 0), 0);
    assert_eq!(dma(&mut f, &mut ram, 0x100, DMA_READ, 30, 0x1100), 0);
    assert_eq!(&ram.0[0x1100..0x1115], b"scsi@3/disk@0,0\nHALT\0");
    assert_eq!(&ram.0[0x1115..0x111e], [0; 9]);
    assert_eq!(ram.0[0x111e], 0xee);
    // No operation: nothing moves, status 0.
    assert_eq!(dma(&mut f, &mut ram, 0x100, 0, 100, 0x1200), 0);
    assert_eq!(ram.0[0x1200], 0xee);
    // A write: no item takes one.
    let w = 0x20 << 16 | DMA_SELECT | DMA_WRITE;
    assert_eq!(dma(&mut f, &mut ram, 0x100, w, 2, 0x1000), DMA_ERROR);
    // A buffer outside memory, and one running off its end.
    let r = 0x22 << 16 | DMA_SELECT | DMA_READ;
    assert_eq!(dma(&mut f, &mut ram, 0x100, r, 40, u64::MAX - 3), DMA_ERROR);
    assert_eq!(dma(&mut f, &mut ram, 0x100, r, 40, 0x1ff0), DMA_ERROR);
    // The largest length past an item's end, into memory that ends: an error, soon.
    assert_eq!(dma(&mut f, &mut ram, 0x100, r, u32::MAX, 0), DMA_ERROR);
    // A descriptor outside memory: nothing to write the status to, no panic.
    f.transfer(Dma(0x1_0000_0000), &mut ram);
    f.transfer(Dma(u64::MAX - 8), &mut ram);
}
