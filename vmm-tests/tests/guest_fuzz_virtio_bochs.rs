//! Random guests with random virtio traffic on in-kernel disks (devvmx's `pci blk`) under
//! Bochs (VT-x). Each VM has a segment disk and a queue disk (nobody serves its `blkq`);
//! before each program the fuzzer writes random rings into the guest's memory (random
//! descriptors: addresses in memory, at its end, past it and anywhere; lengths; NEXT,
//! WRITE and INDIRECT flags; next indices inside and outside the table, so loops; random
//! available indices and heads) and random request headers. The program, in real,
//! protected or long mode, turns on I/O decoding for both disks, makes random accesses
//! to their BARs (mostly a queue at a ring and its notify first, then 2 to 11 accesses:
//! queue PFNs mostly at those rings, notifies, status, feature and select
//! writes, reads, anything), then runs 64 random bytes as guest_fuzz_bochs's do. After
//! each, `blk` must be readable with both disks on it; the reasons broken disks give are
//! counted and printed. The host must keep serving, no VM may be left and `memfree` must
//! come back to its first value. 300 programs here (about a minute under Bochs); the
//! ignored long run does 10,000 (about 25 minutes; GUEST_FUZZ_PROGRAMS and
//! GUEST_FUZZ_SEED override; the seed is printed):
//!
//! cargo test -p vmm-tests --test guest_fuzz_virtio_bochs -- --ignored --nocapture

mod fuzz_guests;

use fuzz::runner::Rng;
use fuzz_guests::{nothing_left, run_one, segment, start, Guest, Mode, Start, MODES};
use std::collections::BTreeMap;
use std::time::Instant;
use virtio::blk::{T_FLUSH, T_GET_ID, T_IN, T_OUT};
use virtio::queue::{DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE};
use virtio::ring::{Layout, LEGACY_ALIGN};

const SEG: &str = "fzv";
const SEGSIZE: u64 = 0x10_0000;
const DISK: &str = "fzvdisk";
const DISKSIZE: u64 = 0x1_0000;
const PROGRAM: usize = 64;
const QSIZE: u16 = 128;
/// Where the random rings go (page frame numbers the guest is likely to choose).
const RING_PFNS: [u32; 4] = [0x20, 0x22, 0x24, 0x26];
/// Random request headers, 16 bytes each.
const HEADERS: u64 = 0x30000;
const NHEADERS: u64 = 32;
/// The disks' BARs (the first two free 64-byte blocks from 0xc000) and PCI devices.
const BARS: [u32; 2] = [0xc000, 0xc040];
const DEVS: [u32; 2] = [1, 2];

fn pick<T: Copy>(rng: &mut Rng, of: &[T]) -> T {
    of[rng.next_u64() as usize % of.len()]
}

/// A random guest-physical address for a buffer.
fn addr(rng: &mut Rng) -> u64 {
    match rng.next_u64() % 6 {
        0 | 1 => HEADERS + 16 * (rng.next_u64() % NHEADERS),
        2 => rng.next_u64() % SEGSIZE,
        3 => SEGSIZE - rng.next_u64() % 0x100,
        4 => SEGSIZE + rng.next_u64() % 0x10000,
        _ => rng.next_u64(),
    }
}

fn len(rng: &mut Rng) -> u32 {
    match rng.next_u64() % 6 {
        0 => 16,
        1 => 1,
        2 => 512,
        3 => rng.next_u64() as u32 % 0x2000,
        4 => 0,
        _ => rng.next_u64() as u32,
    }
}

/// A random legacy ring of QSIZE entries: the descriptor table and available ring.
fn ring(rng: &mut Rng) -> Vec<u8> {
    let layout = Layout::legacy(QSIZE);
    let mut b = vec![0u8; layout.avail_slot(0) + 2 * usize::from(QSIZE) + 2];
    // Half the rings chain most descriptors (long chains, loops).
    let next_in_8 = pick(rng, &[4, 7]);
    for i in 0..QSIZE {
        let mut flags = 0;
        if rng.next_u64() % 8 < next_in_8 {
            flags |= DESC_F_NEXT;
        }
        for (f, one_in) in [(DESC_F_WRITE, 2), (DESC_F_INDIRECT, 16)] {
            if rng.next_u64().is_multiple_of(one_in) {
                flags |= f;
            }
        }
        let next = match rng.next_u64() % 8 {
            0 => rng.next_u64() as u16,
            1 => i.wrapping_add(1),
            _ => rng.next_u64() as u16 % QSIZE,
        };
        let d = virtio::ring::Desc {
            addr: addr(rng),
            len: len(rng),
            flags,
            next,
        };
        let o = layout.desc_at(i);
        b[o..o + 16].copy_from_slice(&d.encode());
    }
    let flags = (rng.next_u64() % 2) as u16;
    let idx = match rng.next_u64() % 4 {
        0 => rng.next_u64() as u16,
        1 => QSIZE + (rng.next_u64() % 3) as u16,
        _ => (rng.next_u64() % 8) as u16,
    };
    b[layout.avail_flags()..][..2].copy_from_slice(&flags.to_le_bytes());
    b[layout.avail_idx()..][..2].copy_from_slice(&idx.to_le_bytes());
    for s in 0..QSIZE {
        let head = if rng.next_u64().is_multiple_of(8) {
            rng.next_u64() as u16
        } else {
            rng.next_u64() as u16 % QSIZE
        };
        b[layout.avail_slot(s)..][..2].copy_from_slice(&head.to_le_bytes());
    }
    b
}

fn headers(rng: &mut Rng) -> Vec<u8> {
    let mut b = Vec::new();
    for _ in 0..NHEADERS {
        let ty = match rng.next_u64() % 6 {
            0 | 1 => T_IN,
            2 | 3 => T_OUT,
            4 => pick(rng, &[T_FLUSH, T_GET_ID]),
            _ => rng.next_u64() as u32,
        };
        let sector = match rng.next_u64() % 3 {
            0 => rng.next_u64(),
            _ => rng.next_u64() % (DISKSIZE / 512 + 4),
        };
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&sector.to_le_bytes());
    }
    b
}

/// The port instructions in `mode`'s default operand size.
struct Asm {
    real: bool,
    code: Vec<u8>,
}

impl Asm {
    fn op32(&mut self) {
        if self.real {
            self.code.push(0x66);
        }
    }
    fn op16(&mut self) {
        if !self.real {
            self.code.push(0x66);
        }
    }
    /// mov edx, port; mov eax, val
    fn load(&mut self, port: u32, val: u32) {
        self.op32();
        self.code.push(0xba);
        self.code.extend_from_slice(&port.to_le_bytes());
        self.op32();
        self.code.push(0xb8);
        self.code.extend_from_slice(&val.to_le_bytes());
    }
    /// out dx, al/ax/eax (or in) for a size of 1, 2 or 4.
    fn io(&mut self, out: bool, size: u32) {
        match size {
            1 => {}
            2 => self.op16(),
            _ => self.op32(),
        }
        let op = if out { 0xee } else { 0xec };
        self.code.push(op + u8::from(size != 1));
    }
}

/// The program: I/O decoding on for both disks, mostly a queue at one of the rings
/// and a notify, 2 to 11 random BAR accesses, then
/// PROGRAM random bytes.
fn program(mode: Mode, rng: &mut Rng) -> Vec<u8> {
    let mut a = Asm {
        real: matches!(mode, Mode::Real),
        code: Vec::new(),
    };
    for dev in DEVS {
        a.load(0xcf8, 0x8000_0004 | dev << 11);
        a.io(true, 4);
        a.load(0xcfc, 1);
        a.io(true, 2);
    }
    // Mostly a queue at one of the rings, notified, first.
    if !rng.next_u64().is_multiple_of(4) {
        let bar = pick(rng, &BARS);
        a.load(bar + 0x08, pick(rng, &RING_PFNS));
        a.io(true, 4);
        a.load(bar + 0x10, 0);
        a.io(true, 2);
    }
    for _ in 0..2 + rng.next_u64() % 10 {
        let bar = pick(rng, &BARS);
        let any = rng.next_u64() as u32;
        let (off, size, val, out) = match rng.next_u64() % 10 {
            0..=2 => {
                let pfn = match rng.next_u64() % 4 {
                    0 | 1 => pick(rng, &RING_PFNS),
                    2 => (rng.next_u64() % (SEGSIZE / 4096 + 0x10)) as u32,
                    _ => any,
                };
                (0x08, 4, pfn, true)
            }
            3..=5 => (0x10, 2, pick(rng, &[0, 0, 0, 1, any]), true),
            6 => (0x12, 1, pick(rng, &[0, 1, 3, 7, 0xf, any]), true),
            7 => (pick(rng, &[0x04, 0x0e]), pick(rng, &[4, 2]), any % 4, true),
            8 => (any % 0x40, pick(rng, &[1, 2, 4]), 0, false),
            _ => (any % 0x40, pick(rng, &[1, 2, 4]), any, true),
        };
        a.load(bar + off, val);
        a.io(out, size);
    }
    a.code.extend((0..PROGRAM).map(|_| rng.next_u64() as u8));
    a.code
}

/// A broken disk's reason with its numbers as `N`, to count reasons by kind.
fn shape(reason: &str) -> String {
    let mut s = String::new();
    let mut in_num = false;
    for w in reason.chars() {
        let digit = w.is_ascii_hexdigit() && (in_num || w.is_ascii_digit());
        if digit || (in_num && w == 'x') {
            if !in_num {
                s.push('N');
            }
            in_num = true;
        } else {
            in_num = false;
            s.push(w);
        }
    }
    s
}

fn fuzz(programs: usize) {
    let Start {
        seed,
        programs,
        m,
        c,
        memfree,
    } = start("virtio guest fuzz", programs);
    let data = segment(&c, SEG, SEGSIZE);
    segment(&c, DISK, DISKSIZE)
        .write_all_at(0, &vec![0x5a; DISKSIZE as usize])
        .expect("fill the disk");
    let mut rng = Rng(seed | 1);
    let map = format!("rwx wb 0x0 {SEGSIZE:#x} {SEG} 0x0\n");
    let ctl = [
        "devices pic pci".to_string(),
        format!("pci blk seg {DISK}"),
        format!("pci blk queue {DISKSIZE}"),
    ];
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    let start = Instant::now();
    for i in 0..programs {
        let mode = MODES[i % 3];
        for _ in 0..2 {
            let pfn = pick(&mut rng, &RING_PFNS);
            let r = ring(&mut rng);
            data.write_all_at(u64::from(pfn) * LEGACY_ALIGN as u64, &r)
                .expect("write a ring");
        }
        data.write_all_at(HEADERS, &headers(&mut rng))
            .expect("write the headers");
        let program = program(mode, &mut rng);
        let guest = Guest {
            program: &program,
            map: &map,
            ctl: &ctl,
        };
        let (kind, blk) = run_one(&c, &data, mode, &mut rng, &guest, |path| {
            String::from_utf8(c.read_file(&path("blk")).expect("read blk")).unwrap()
        });
        *kinds.entry(format!("{mode:?} {kind}")).or_default() += 1;
        let lines: Vec<&str> = blk.lines().collect();
        assert_eq!(lines.len(), 2, "{blk}");
        for (d, l) in lines.iter().enumerate() {
            let state = match l.split_once(" broken ") {
                Some((_, why)) => format!("disk {d} broken {}", shape(why)),
                None if l.ends_with(" ok") => format!("disk {d} ok"),
                None => panic!("disk {d}: {l}"),
            };
            *states.entry(state).or_default() += 1;
        }
        if (i + 1) % 500 == 0 {
            println!(
                "virtio guest fuzz: {} programs in {:.0?}",
                i + 1,
                start.elapsed()
            );
        }
    }
    println!(
        "virtio guest fuzz: {programs} programs in {:.1?}; exits by mode and kind:",
        start.elapsed()
    );
    for (k, n) in &kinds {
        println!("  {n:6} {k}");
    }
    println!("disk states after each:");
    for (k, n) in &states {
        println!("  {n:6} {k}");
    }
    drop(data);
    nothing_left(&c, &[SEG, DISK], &memfree, programs);
    assert!(
        states.keys().any(|k| k.contains(" broken ")),
        "no disk broke: {states:?}"
    );
    assert!(!m.log().contains("kernel panic"), "{}", m.diagnostics());
}

#[test]
fn random_guests_with_random_virtio_traffic() {
    fuzz(300);
}

#[test]
#[ignore = "10,000 programs under Bochs, about 25 minutes"]
fn ten_thousand_random_guests_with_random_virtio_traffic() {
    fuzz(10_000);
}
