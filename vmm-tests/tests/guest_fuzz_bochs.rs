//! Random guests on the #X device under Bochs (VT-x): 64 random bytes at guest-physical
//! 0x1000, run in real, 32-bit protected or long mode with random general registers and
//! arithmetic flags. Each VM runs to its first exit, or is stopped after a timeout (`stop`
//! gives no wait line: its status must become `ready`), then removed. The host must keep
//! serving, no VM may be left and `memfree` must come back to its first value; the exit
//! kinds seen are printed. 200 programs here; the ignored long run does 10,000
//! (GUEST_FUZZ_PROGRAMS and GUEST_FUZZ_SEED override; the seed is printed, so a run
//! reproduces):
//!
//! cargo test -p vmm-tests --test guest_fuzz_bochs -- --ignored --nocapture

use fuzz::runner::{seed_from, Rng};
use ninep_client::{dm, om, Client, File};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use vmm_tests::emu::{Machine, Opts};
use vmm_tests::guests::LOAD;

const OWNER: &str = "eve";
const SEG: &str = "fz";
const SEGSIZE: u64 = 0x10_0000;
/// How long a program may run before it is stopped.
const RUN_FOR: Duration = Duration::from_millis(300);
const PROGRAM: usize = 64;
/// Long mode's identity map of the first 2 MiB: PML4, PDPT and a PD with one 2 MiB page.
const PAGE_TABLES: [(u64, u64); 3] = [(0x10000, 0x11003), (0x11000, 0x12003), (0x12000, 0x83)];

#[derive(Clone, Copy, Debug)]
enum Mode {
    Real,
    Protected,
    Long,
}

/// The registers of a VM entering `mode` at LOAD; general registers and the arithmetic
/// flags random (TF stays clear: single-stepping is the host's `step`).
fn regs(mode: Mode, rng: &mut Rng) -> String {
    let mut r = String::new();
    for g in ["ax", "bx", "cx", "dx", "si", "di", "bp"] {
        r.push_str(&format!("{g} {:#x}\n", rng.next_u64()));
    }
    // CF PF AF ZF SF IF DF OF, and the reserved bit 1.
    r.push_str(&format!("flags {:#x}\n", 0x2 | rng.next_u64() & 0xed5));
    match mode {
        Mode::Real => {
            r.push_str("cr0real 0x10\n");
            for s in ["cs", "ds", "es", "ss"] {
                let perm = if s == "cs" { 0x9b } else { 0x93 };
                r.push_str(&format!(
                    "{s} 0x0\n{s}base 0x0\n{s}limit 0xffff\n{s}perm {perm:#x}\n"
                ));
            }
            r.push_str(&format!("sp {:#x}\n", rng.next_u64() & 0xffff));
        }
        // The VMCS's initial state is flat 32-bit protected mode.
        Mode::Protected => r.push_str(&format!("sp {:#x}\n", rng.next_u64() & 0xffff_ffff)),
        Mode::Long => r.push_str(&format!(
            "cr3 {:#x}\ncr4real 0x2020\nefer 0x100\ncr0real 0x80000031\ncsperm 0xa09b\nsp {:#x}\n",
            PAGE_TABLES[0].0,
            rng.next_u64()
        )),
    }
    r.push_str(&format!("pc {LOAD:#x}\n"));
    r
}

fn status_field(c: &Client, key: &str) -> String {
    vmm_tests::status::text(&vmm_tests::status::read(c), key)
}

/// A wait line's kind: its first word.
fn kind(line: &[u8]) -> String {
    let line = String::from_utf8_lossy(line);
    line.split_whitespace().next().unwrap_or("").to_string()
}

/// Runs one program; its exit kind: the wait line's first word, or `timeout`.
fn run_one(c: &Client, data: &File, mode: Mode, rng: &mut Rng) -> String {
    let program: Vec<u8> = (0..PROGRAM).map(|_| rng.next_u64() as u8).collect();
    data.write_all_at(LOAD, &program)
        .expect("write the program");
    if let Mode::Long = mode {
        for (at, entry) in PAGE_TABLES {
            data.write_all_at(at, &entry.to_le_bytes())
                .expect("write the page tables");
        }
    }
    let ctl = c
        .open("vmx/clone", om::RDWR | om::RCLOSE)
        .expect("open clone");
    let n = String::from_utf8(ctl.read_at(0, 32).expect("read clone")).unwrap();
    let path = |f: &str| format!("vmx/{}/{f}", n.trim());
    let wait = c.open(&path("wait"), om::READ).expect("open wait");
    c.open(&path("map"), om::WRITE | om::TRUNC)
        .and_then(|m| m.write_str(&format!("rwx wb 0x0 {SEGSIZE:#x} {SEG} 0x0\n")))
        .expect("write map");
    let r = regs(mode, rng);
    c.open(&path("regs"), om::RDWR)
        .and_then(|f| f.write_str(&r))
        .unwrap_or_else(|e| panic!("regs {r:?}: {e}"));
    ctl.write_str("go").expect("go");
    let mut pending = c.start_read(&wait, 0, 512).expect("read wait");
    let kind = match pending.wait_timeout(RUN_FOR).expect("wait") {
        Some(line) => kind(&line),
        None => match ctl.write_str("stop") {
            Ok(()) => {
                // No wait line comes: withdraw the read; the VM must be ready again.
                pending.flush().expect("flush the wait read");
                let start = Instant::now();
                loop {
                    let st = String::from_utf8(c.read_file(&path("status")).unwrap()).unwrap();
                    if st.trim() == "ready" {
                        break;
                    }
                    assert!(
                        start.elapsed() < Duration::from_secs(10),
                        "status {st:?} after stop ({mode:?}, {program:02x?})"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
                "timeout".into()
            }
            // The guest exited just as the timeout ran out: its line is on its way.
            Err(_) => {
                let line = pending
                    .wait_timeout(Duration::from_secs(10))
                    .expect("wait")
                    .expect("a wait line after a refused stop");
                kind(&line)
            }
        },
    };
    drop(wait);
    // ctl was opened ORCLOSE: clunking it ends the VM.
    ctl.clunk().expect("clunk ctl");
    kind
}

fn fuzz(programs: usize) {
    let seed = seed_from("GUEST_FUZZ_SEED");
    let programs = std::env::var("GUEST_FUZZ_PROGRAMS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(programs);
    println!("guest fuzz: seed {seed}, {programs} programs");
    let m = Machine::vtx(Opts {
        cmdline: format!("owner={OWNER} serve=uart"),
        virtio_ports: 0,
        ..Opts::default()
    });
    let c = m.client(OWNER, "");
    let memfree = status_field(&c, "memfree");
    c.create("segment", SEG, dm::DIR | 0o777, om::READ)
        .expect("create the segment");
    c.open(&format!("segment/{SEG}/ctl"), om::WRITE)
        .and_then(|f| f.write_str(&format!("va 0x10000000 {SEGSIZE:#x} sticky")))
        .expect("size the segment");
    let data = c
        .open(&format!("segment/{SEG}/data"), om::RDWR)
        .expect("open data");
    let mut rng = Rng(seed | 1);
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let start = Instant::now();
    for i in 0..programs {
        let mode = [Mode::Real, Mode::Protected, Mode::Long][i % 3];
        let kind = run_one(&c, &data, mode, &mut rng);
        *kinds.entry(format!("{mode:?} {kind}")).or_default() += 1;
        if (i + 1) % 1000 == 0 {
            println!("guest fuzz: {} programs in {:.0?}", i + 1, start.elapsed());
        }
    }
    println!(
        "guest fuzz: {programs} programs in {:.1?}; exits by mode and kind:",
        start.elapsed()
    );
    for (k, n) in &kinds {
        println!("  {n:6} {k}");
    }
    drop(data);
    c.remove(&format!("segment/{SEG}"))
        .expect("remove the segment");
    assert_eq!(status_field(&c, "vms"), "0", "VMs left behind");
    assert_eq!(status_field(&c, "segments"), "0");
    assert_eq!(
        status_field(&c, "memfree"),
        memfree,
        "memory lost over {programs} programs"
    );
    assert!(
        kinds.keys().any(|k| !k.ends_with(" timeout")),
        "no program exited: {kinds:?}"
    );
    let log = m.log();
    assert!(!log.contains("kernel panic"), "{}", m.diagnostics());
}

#[test]
fn two_hundred_random_guests() {
    fuzz(200);
}

#[test]
#[ignore = "10,000 programs under Bochs, about 6 minutes"]
fn ten_thousand_random_guests() {
    fuzz(10_000);
}
