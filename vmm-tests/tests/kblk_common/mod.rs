//! What the in-kernel device tests share: the tiny guest that sets up two disks, segments,
//! request headers, text files over 9P and a second client's timed Tstats.

#![allow(dead_code)]

use ninep_client::{om, Client, File};
use std::time::{Duration, Instant};
use virtio::ring::{Layout, LEGACY_ALIGN};
use vmm_tests::emu::{Machine, Opts};

pub const OWNER: &str = "eve";

/// Flat 32-bit protected mode: decoding on for 00:01.0 and 00:02.0, queue PFNs 4 and 6
/// (BARs 0xc000 and 0xc040).
pub const SETUP: &[u8] = &[
    0x66, 0xba, 0xf8, 0x0c, // mov dx, 0xcf8
    0xb8, 0x04, 0x08, 0x00, 0x80, // mov eax, 0x80000804
    0xef, // out dx, eax
    0x66, 0xba, 0xfc, 0x0c, // mov dx, 0xcfc
    0x66, 0xb8, 0x01, 0x00, // mov ax, 1
    0x66, 0xef, // out dx, ax
    0x66, 0xba, 0xf8, 0x0c, // mov dx, 0xcf8
    0xb8, 0x04, 0x10, 0x00, 0x80, // mov eax, 0x80001004
    0xef, // out dx, eax
    0x66, 0xba, 0xfc, 0x0c, // mov dx, 0xcfc
    0x66, 0xb8, 0x01, 0x00, // mov ax, 1
    0x66, 0xef, // out dx, ax
    0x66, 0xba, 0x08, 0xc0, // mov dx, 0xc008
    0xb8, 0x04, 0x00, 0x00, 0x00, // mov eax, 4
    0xef, // out dx, eax
    0x66, 0xba, 0x48, 0xc0, // mov dx, 0xc048
    0xb8, 0x06, 0x00, 0x00, 0x00, // mov eax, 6
    0xef, // out dx, eax
];

/// After [`SETUP`], forever: notify both queues, `out 0x99, al`.
pub const NOTIFY_AND_EXIT: &[u8] = &[
    // loop:
    0x66, 0xba, 0x10, 0xc0, // mov dx, 0xc010
    0x31, 0xc0, // xor eax, eax
    0x66, 0xef, // out dx, ax
    0x66, 0xba, 0x50, 0xc0, // mov dx, 0xc050
    0x66, 0xef, // out dx, ax
    0xe6, 0x99, // out 0x99, al
    0xeb, 0xee, // jmp loop
];

/// The queues [`SETUP`] gives disks 0 and 1.
pub const QUEUE0: u32 = 4;
pub const QUEUE1: u32 = 6;

pub fn machine() -> Machine {
    Machine::vtx(Opts {
        cmdline: format!("owner={OWNER} serve=uart"),
        virtio_ports: 0,
        ..Opts::default()
    })
}

/// A new segment NAME of `len` bytes; its `data`, open for reading and writing.
/// ([`vmm_tests::segment::sticky`]).
pub use vmm_tests::segment::sticky as segment;

/// At a test's end: the segments `segs` removed, no VM or segment is left, and `memfree`
/// is back to `before`.
pub fn nothing_left(c: &Client, segs: &[&str], before: u64) {
    for s in segs {
        c.remove(&format!("segment/{s}")).unwrap();
    }
    let st = vmm_tests::status::read(c);
    assert!(st.contains("vms 0") && st.contains("segments 0"), "{st}");
    assert_eq!(
        vmm_tests::status::num(&st, "memfree"),
        before,
        "memory left behind: {st}"
    );
}

/// A new VM (`vmx/clone` opened with `mode`) whose RAM is segment `ram` (`len` bytes)
/// at 0, entering [`SETUP`] at 0x1000 with its stack below 0x8000: its ctl and number.
pub fn vm(c: &Client, mode: u8, ram: &str, len: u64) -> (File, String) {
    let ctl = c.open("vmx/clone", mode).unwrap();
    let n = String::from_utf8(ctl.read_at(0, 64).unwrap()).unwrap();
    let n = n.trim().to_string();
    c.open(&format!("vmx/{n}/map"), om::WRITE)
        .and_then(|f| f.write_str(&format!("rwx wb 0x0 {len:#x} {ram} 0x0\n")))
        .unwrap();
    c.open(&format!("vmx/{n}/regs"), om::RDWR)
        .and_then(|f| f.write_str("pc 0x1000\nsp 0x8000\n"))
        .unwrap();
    (ctl, n)
}

/// A virtio-blk request header (type, sector) at `at`.
pub fn header(ram: &mut virtio::testing::Ram, at: usize, ty: u32, sector: u64) {
    ram.b[at..at + 4].copy_from_slice(&ty.to_le_bytes());
    ram.b[at + 8..at + 16].copy_from_slice(&sector.to_le_bytes());
}

pub fn text(c: &Client, path: &str) -> String {
    String::from_utf8(c.read_file(path).unwrap()).unwrap()
}

/// The used index of the 128-entry queue at `pfn`, read from the guest's RAM segment.
pub fn used_idx(ram: &File, pfn: u32) -> u16 {
    let b = ram
        .read_at(used_idx_at(pfn), 2)
        .expect("read the used index");
    u16::from_le_bytes([b[0], b[1]])
}

/// The byte offset of the used index of the 128-entry queue at `pfn`.
pub fn used_idx_at(pfn: u32) -> u64 {
    u64::from(pfn) * LEGACY_ALIGN as u64 + Layout::legacy(128).used_idx() as u64
}

/// The byte offset of the available index of the 128-entry queue at `pfn`.
pub fn avail_idx_at(pfn: u32) -> u64 {
    u64::from(pfn) * LEGACY_ALIGN as u64 + Layout::legacy(128).avail_idx() as u64
}

/// How many Tstats a flood test makes.
pub const STATS: usize = 30;

/// `n` Tstats of `path`, each timed; their spread printed, the slowest returned.
pub fn tstats(c: &Client, path: &str, when: &str, n: usize) -> Duration {
    let mut took = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        c.stat(path).expect("Tstat");
        took.push(t.elapsed());
    }
    took.sort();
    println!(
        "{n} Tstats {when}: min {:?}, median {:?}, max {:?}",
        took[0],
        took[n / 2],
        took[n - 1]
    );
    took[n - 1]
}
