//! The kernel's CPU discovery (hypervisor/src/cpus.rs), compiled for the host and run over
//! synthetic BIOS images: the MADT through the RSDP (RSDT or XSDT), the MP table when no
//! MADT is good, the boot CPU left out of the CPUs to start, and garbage tables read
//! without a panic; and the APs' mailboxes (hypervisor/src/mailbox.rs) with threads for
//! CPUs.

use hypervisor::acpi::PhysMem;
use hypervisor::cpus::{self, Source};
use hypervisor::mailbox::Mailbox;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The low 1 MiB and a high window where the tables go, as the firmware would leave them.
struct Image {
    low: Vec<u8>,
    high: Vec<u8>,
}

const HIGH: u64 = 0x0fff_0000;

impl PhysMem for Image {
    fn read(&self, pa: u64, len: usize) -> &[u8] {
        let (base, mem) = if pa >= HIGH {
            (HIGH, &self.high)
        } else {
            (0, &self.low)
        };
        let off = (pa - base) as usize;
        mem.get(off..off.saturating_add(len)).unwrap_or(&[])
    }
}

impl Image {
    fn new() -> Image {
        let mut low = vec![0u8; 0x10_0000];
        // EBDA at 0x9fc00 (segment 0x9fc0), 639 KiB of base memory.
        low[0x40e..0x410].copy_from_slice(&0x9fc0u16.to_le_bytes());
        low[0x413..0x415].copy_from_slice(&639u16.to_le_bytes());
        Image {
            low,
            high: vec![0u8; 0x1_0000],
        }
    }

    fn put(&mut self, pa: u64, b: &[u8]) {
        let (base, mem) = if pa >= HIGH {
            (HIGH, &mut self.high)
        } else {
            (0, &mut self.low)
        };
        let off = (pa - base) as usize;
        mem[off..off + b.len()].copy_from_slice(b);
    }
}

/// Sets byte `at` so that the bytes sum to zero.
fn fix_checksum(b: &mut [u8], at: usize) {
    b[at] = 0;
    let s = b.iter().fold(0u8, |s, &x| s.wrapping_add(x));
    b[at] = 0u8.wrapping_sub(s);
}

fn sdt(sig: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; 36];
    t[..4].copy_from_slice(sig);
    t.extend_from_slice(body);
    let len = t.len() as u32;
    t[4..8].copy_from_slice(&len.to_le_bytes());
    fix_checksum(&mut t, 9);
    t
}

fn lapic_entry(id: u8, flags: u32) -> Vec<u8> {
    let mut e = vec![0, 8, id, id];
    e.extend_from_slice(&flags.to_le_bytes());
    e
}

fn x2apic_entry(id: u32, flags: u32) -> Vec<u8> {
    let mut e = vec![9, 16, 0, 0];
    e.extend_from_slice(&id.to_le_bytes());
    e.extend_from_slice(&flags.to_le_bytes());
    e.extend_from_slice(&id.to_le_bytes());
    e
}

fn madt(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut body = 0xfee0_0000u32.to_le_bytes().to_vec();
    body.extend_from_slice(&1u32.to_le_bytes());
    for e in entries {
        body.extend_from_slice(e);
    }
    sdt(b"APIC", &body)
}

/// An RSDP at `at` naming an RSDT (revision 0) or an XSDT (revision 2).
fn rsdp(rsdt: u32, xsdt: Option<u64>) -> Vec<u8> {
    let mut r = b"RSD PTR ".to_vec();
    r.push(0);
    r.extend_from_slice(b"BOCHS ");
    r.push(if xsdt.is_some() { 2 } else { 0 });
    r.extend_from_slice(&rsdt.to_le_bytes());
    fix_checksum(&mut r, 8);
    if let Some(x) = xsdt {
        r.extend_from_slice(&36u32.to_le_bytes());
        r.extend_from_slice(&x.to_le_bytes());
        r.extend_from_slice(&[0; 4]);
        fix_checksum(&mut r, 32);
    }
    r
}

/// An MP floating pointer at `fp` and configuration table at `cfg` with processor entries
/// (APIC ID, enabled) and a bus entry between them.
fn mp(img: &mut Image, fp: u64, cfg: u64, cpus: &[(u8, bool)]) {
    let mut entries = Vec::new();
    for (i, &(id, on)) in cpus.iter().enumerate() {
        let mut e = vec![0u8; 20];
        e[1] = id;
        e[2] = 0x14;
        e[3] = u8::from(on) | if i == 0 { 2 } else { 0 };
        entries.extend_from_slice(&e);
        entries.extend_from_slice(&[1, 0, b'I', b'S', b'A', b' ', b' ', b' ']);
    }
    let mut t = b"PCMP".to_vec();
    t.extend_from_slice(&((44 + entries.len()) as u16).to_le_bytes());
    t.push(4);
    t.push(0);
    t.extend_from_slice(&[b' '; 20]);
    t.extend_from_slice(&[0; 6]);
    t.extend_from_slice(&((cpus.len() * 2) as u16).to_le_bytes());
    t.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
    t.extend_from_slice(&[0; 4]);
    assert_eq!(t.len(), 44);
    t.extend_from_slice(&entries);
    fix_checksum(&mut t, 7);
    img.put(cfg, &t);
    let mut f = b"_MP_".to_vec();
    f.extend_from_slice(&(cfg as u32).to_le_bytes());
    f.extend_from_slice(&[1, 4, 0, 0, 0, 0, 0, 0]);
    fix_checksum(&mut f, 10);
    img.put(fp, &f);
}

#[test]
fn madt_through_the_rsdt() {
    let mut img = Image::new();
    let m = madt(&[
        lapic_entry(0, 1),
        lapic_entry(1, 1),
        lapic_entry(2, 0),                               // disabled
        vec![1, 12, 0, 0, 0, 0, 0xc0, 0xfe, 0, 0, 0, 0], // an I/O APIC
        lapic_entry(3, 1),
    ]);
    img.put(HIGH + 0x100, &m);
    let rsdt = sdt(b"RSDT", &((HIGH + 0x100) as u32).to_le_bytes());
    img.put(HIGH, &rsdt);
    // In the BIOS ROM area, 16-byte aligned.
    img.put(0xf_5a40, &rsdp(HIGH as u32, None));
    assert_eq!(cpus::discover(&img), Some((Source::Madt, vec![0, 1, 3])));
}

#[test]
fn madt_through_the_xsdt_with_x2apic_entries() {
    let mut img = Image::new();
    let m = madt(&[
        lapic_entry(0, 1),
        x2apic_entry(0, 1), // the same CPU again
        x2apic_entry(300, 1),
        x2apic_entry(301, 0),
    ]);
    img.put(HIGH + 0x200, &m);
    // A FACP first: the MADT is found by its signature, not its place.
    let facp = sdt(b"FACP", &[0; 8]);
    img.put(HIGH + 0x400, &facp);
    let mut body = (HIGH + 0x400).to_le_bytes().to_vec();
    body.extend_from_slice(&(HIGH + 0x200).to_le_bytes());
    img.put(HIGH, &sdt(b"XSDT", &body));
    // The RSDT names no MADT: the XSDT must be the one followed.
    img.put(
        HIGH + 0x800,
        &sdt(b"RSDT", &((HIGH + 0x400) as u32).to_le_bytes()),
    );
    // In the EBDA's first KiB.
    img.put(0x9fc00 + 0x30, &rsdp((HIGH + 0x800) as u32, Some(HIGH)));
    assert_eq!(cpus::discover(&img), Some((Source::Madt, vec![0, 300])));
}

#[test]
fn mp_table_when_no_madt() {
    let mut img = Image::new();
    mp(
        &mut img,
        0xf_b000,
        0xf_b100,
        &[(0, true), (1, true), (2, false), (5, true)],
    );
    assert_eq!(cpus::discover(&img), Some((Source::MpTable, vec![0, 1, 5])));
}

#[test]
fn a_bad_madt_checksum_falls_back_to_the_mp_table() {
    let mut img = Image::new();
    let mut m = madt(&[lapic_entry(0, 1), lapic_entry(1, 1)]);
    m[9] ^= 1;
    img.put(HIGH + 0x100, &m);
    img.put(HIGH, &sdt(b"RSDT", &((HIGH + 0x100) as u32).to_le_bytes()));
    img.put(0xe_0000, &rsdp(HIGH as u32, None));
    // In the last KiB of base memory.
    mp(&mut img, 639 * 1024, 0x9_f000, &[(0, true), (7, true)]);
    assert_eq!(cpus::discover(&img), Some((Source::MpTable, vec![0, 7])));
}

#[test]
fn no_tables_no_cpus() {
    let mut img = Image::new();
    assert_eq!(cpus::discover(&img), None);
    // A signature with a bad checksum is not a table.
    img.put(0xf_0000, b"_MP_\0\0\0\0\x01\x04\x55\0\0\0\0\0");
    img.put(0xe_0010, b"RSD PTR \x01");
    assert_eq!(cpus::discover(&img), None);
}

#[test]
fn at_most_max_cpus_and_the_boot_cpu_is_not_started() {
    let mut img = Image::new();
    let entries: Vec<_> = (0..40).map(|i| lapic_entry(i, 1)).collect();
    img.put(HIGH + 0x100, &madt(&entries));
    img.put(HIGH, &sdt(b"RSDT", &((HIGH + 0x100) as u32).to_le_bytes()));
    img.put(0xe_0000, &rsdp(HIGH as u32, None));
    let (_, ids) = cpus::discover(&img).expect("cpus");
    assert_eq!(ids, (0..cpus::MAX_CPUS as u32).collect::<Vec<_>>());
    assert_eq!(cpus::application_processors(&[0, 1, 2], 1), vec![0, 2]);
    assert_eq!(cpus::application_processors(&[4], 4), Vec::<u32>::new());
}

#[test]
fn garbage_tables_parse_without_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..2000 {
        let len = (next() % 200) as usize;
        let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if round % 2 == 0 && len > 44 {
            b[..4].copy_from_slice(b"APIC");
        }
        let ids = cpus::madt_cpus(&b);
        assert!(ids.len() <= b.len() / 2);
        let ids = cpus::mp_table_cpus(&b);
        assert!(ids.len() <= b.len() / 8);
    }
    // An entry of length 0 or 1 ends the walk instead of looping.
    let mut m = vec![0u8; 44];
    m.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(cpus::madt_cpus(&m), Vec::<u32>::new());
}

#[test]
fn mailbox_tickets_are_served_in_order_and_coalesce() {
    let mb = Mailbox::new();
    assert_eq!(mb.pending(), None);
    let (a, b) = (mb.post(), mb.post());
    assert_eq!((a, b), (1, 2));
    assert!(!mb.done(a));
    // One wake-up serves everything posted so far.
    assert_eq!(mb.pending(), Some(2));
    mb.serve(2);
    assert!(mb.done(a) && mb.done(b));
    assert_eq!(mb.pending(), None);
    let c = mb.post();
    assert!(!mb.done(c));
    // A late serve of an older ticket never takes served backwards.
    mb.serve(1);
    assert_eq!(mb.pending(), Some(3));
}

#[test]
fn mailbox_between_two_threads_loses_nothing() {
    // A server thread as the AP (it serves whatever is pending and counts each request
    // it sees), the test thread as the boot CPU posting without ever blocking on it.
    static MB: Mailbox = Mailbox::new();
    static STOP: AtomicBool = AtomicBool::new(false);
    static SEEN: AtomicU64 = AtomicU64::new(0);
    let server = std::thread::spawn(|| {
        let mut last = 0;
        while !STOP.load(Ordering::Acquire) {
            if let Some(t) = MB.pending() {
                assert!(t > last, "tickets go forward");
                SEEN.fetch_add(t - last, Ordering::Relaxed);
                last = t;
                MB.serve(t);
            } else {
                std::thread::yield_now();
            }
        }
    });
    let mut tickets = Vec::new();
    for i in 0..20_000 {
        tickets.push(MB.post());
        if i % 1000 == 999 {
            // Now and then the poster waits for its latest ticket (the start-up check).
            let t = *tickets.last().unwrap();
            while !MB.done(t) {
                std::thread::yield_now();
            }
        }
    }
    let last = *tickets.last().unwrap();
    while !MB.done(last) {
        std::thread::yield_now();
    }
    STOP.store(true, Ordering::Release);
    server.join().unwrap();
    assert_eq!(SEEN.load(Ordering::Relaxed), 20_000);
    assert!(tickets.iter().all(|&t| MB.done(t)));
    assert_eq!(MB.pending(), None);
}
