//! What the guest fuzzers share: the registers of a random VM in each mode, and one run
//! of a program to its first exit (or a stop after a timeout).

use fuzz::runner::{seed_from, Rng};
use ninep_client::{om, Client, File};
use std::time::{Duration, Instant};
use vmm_tests::emu::{Machine, Opts};
use vmm_tests::guests::LOAD;

/// How long a program may run before it is stopped.
pub const RUN_FOR: Duration = Duration::from_millis(300);
/// Long mode's identity map of the first 2 MiB: PML4, PDPT and a PD with one 2 MiB page.
pub const PAGE_TABLES: [(u64, u64); 3] = [(0x10000, 0x11003), (0x11000, 0x12003), (0x12000, 0x83)];

#[derive(Clone, Copy, Debug)]
pub enum Mode {
    Real,
    Protected,
    Long,
}

pub const MODES: [Mode; 3] = [Mode::Real, Mode::Protected, Mode::Long];

/// The registers of a VM entering `mode` at LOAD; general registers and the arithmetic
/// flags random (TF stays clear: single-stepping is the host's `step`).
pub fn regs(mode: Mode, rng: &mut Rng) -> String {
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

/// A wait line's kind: its first word.
fn kind(line: &[u8]) -> String {
    let line = String::from_utf8_lossy(line);
    line.split_whitespace().next().unwrap_or("").to_string()
}

/// What one VM is made of: its program (at LOAD), its `map` line, and the ctl messages
/// written before `go`.
pub struct Guest<'a> {
    pub program: &'a [u8],
    pub map: &'a str,
    pub ctl: &'a [String],
}

/// Runs one program; its exit kind (the wait line's first word, or `timeout`) and what
/// `inspect` (given a VM file's path) made of the VM before it ended.
pub fn run_one<T>(
    c: &Client,
    data: &File,
    mode: Mode,
    rng: &mut Rng,
    guest: &Guest,
    inspect: impl FnOnce(&dyn Fn(&str) -> String) -> T,
) -> (String, T) {
    let program = guest.program;
    data.write_all_at(LOAD, program).expect("write the program");
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
        .and_then(|m| m.write_str(guest.map))
        .expect("write map");
    let r = regs(mode, rng);
    c.open(&path("regs"), om::RDWR)
        .and_then(|f| f.write_str(&r))
        .unwrap_or_else(|e| panic!("regs {r:?}: {e}"));
    for m in guest.ctl {
        ctl.write_str(m).unwrap_or_else(|e| panic!("{m}: {e}"));
    }
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
    let seen = inspect(&path);
    drop(wait);
    // ctl was opened ORCLOSE: clunking it ends the VM.
    ctl.clunk().expect("clunk ctl");
    (kind, seen)
}

pub const OWNER: &str = "eve";

/// A fuzzer's start: the seed and the number of programs (GUEST_FUZZ_SEED and
/// GUEST_FUZZ_PROGRAMS override; both printed, so a run reproduces), the hypervisor under
/// Bochs, the owner's client and `memfree` before the first program.
pub struct Start {
    pub seed: u64,
    pub programs: usize,
    pub m: Machine,
    pub c: Client,
    pub memfree: String,
}

pub fn start(what: &str, programs: usize) -> Start {
    let seed = seed_from("GUEST_FUZZ_SEED");
    let programs = std::env::var("GUEST_FUZZ_PROGRAMS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(programs);
    println!("{what}: seed {seed}, {programs} programs");
    let m = Machine::vtx(Opts {
        cmdline: format!("owner={OWNER} serve=uart"),
        virtio_ports: 0,
        ..Opts::default()
    });
    let c = m.client(OWNER, "");
    let memfree = status_field(&c, "memfree");
    Start {
        seed,
        programs,
        m,
        c,
        memfree,
    }
}

pub fn status_field(c: &Client, key: &str) -> String {
    vmm_tests::status::text(&vmm_tests::status::read(c), key)
}

/// A new segment NAME of `size` bytes; its `data`, open for reading and writing.
/// ([`vmm_tests::segment::sticky`]).
pub use vmm_tests::segment::sticky as segment;

/// After the last program: the segments `segs` removed, no VM or segment is left and
/// `memfree` is back to its value before the first of `programs`.
pub fn nothing_left(c: &Client, segs: &[&str], memfree: &str, programs: usize) {
    for s in segs {
        c.remove(&format!("segment/{s}"))
            .expect("remove the segment");
    }
    assert_eq!(status_field(c, "vms"), "0", "VMs left behind");
    assert_eq!(status_field(c, "segments"), "0");
    assert_eq!(
        status_field(c, "memfree"),
        memfree,
        "memory lost over {programs} programs"
    );
}
