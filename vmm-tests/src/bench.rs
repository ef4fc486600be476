//! What the benchmark binaries share: their prerequisites checked up front, the raw 9P
//! rate of a line, the machine's load, and the bench guest (guests/bench.S) in a segment
//! and a VM, as vmx(1) would set it up.
//!
//! The benchmarks are the `bench-*` binaries of this crate (src/bin), each run with
//! `cargo run --release -p vmm-tests --bin bench-NAME`: they print figures and assert
//! nothing. A missing prerequisite ends one with a single line saying what to run.

use crate::fixtures::Missing;
use crate::guests;
use ninep_client::{dm, om, Client, File};
use std::time::{Duration, Instant};

/// Segment size of the bench guest's segment.
pub const SEGSIZE: u64 = 0x10_0000;

/// The image `r` found, or the end of benchmark `name` with one line on stderr: `NAME:
/// WHAT missing: run scripts/setup (or set ENV)`.
pub fn require<T>(name: &str, r: Result<T, Missing>) -> T {
    r.unwrap_or_else(|e| {
        eprintln!("{name}: {e}");
        std::process::exit(2)
    })
}

/// Ends benchmark `name` with one line on stderr when one of `programs` is not on `PATH`
/// (Bochs, QEMU, grub-mkrescue: `scripts/setup` installs them).
pub fn require_programs(name: &str, programs: &[&str]) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for p in programs {
        if !std::env::split_paths(&path).any(|d| d.join(p).is_file()) {
            eprintln!("{name}: {p} missing: run scripts/setup");
            std::process::exit(2);
        }
    }
}

/// Tstat round trips on `status` for `secs`: (per second, mean latency).
pub fn tstat(c: &Client, secs: f64) -> (f64, Duration) {
    let fid = c.walk("status").expect("walk status");
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed().as_secs_f64() < secs {
        fid.stat().expect("stat status");
        n += 1;
    }
    let t = start.elapsed();
    (n as f64 / t.as_secs_f64(), t / n.max(1))
}

/// The host's 1-minute load average: above about 0.5, other work shares the cores and
/// round trips slow to the scheduler's tick.
pub fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace().next().unwrap_or("?").to_string()
}

/// The guest-physical address of the bench guest's `out 0x80, al`.
pub fn out_pc() -> u64 {
    guests::LOAD
        + guests::BENCH
            .windows(2)
            .position(|w| w == [0xe6, 0x80])
            .expect("out 0x80, al in the guest") as u64
}

/// A segment `name` holding the bench guest at guests::LOAD.
pub fn segment(c: &Client, name: &str) {
    c.create("segment", name, dm::DIR | 0o777, om::READ)
        .expect("create segment")
        .clunk()
        .ok();
    c.open(&format!("segment/{name}/ctl"), om::WRITE)
        .expect("open segment ctl")
        .write_str(&format!("va 0x10000000 {SEGSIZE:#x} sticky"))
        .expect("size segment");
    c.open(&format!("segment/{name}/data"), om::RDWR)
        .expect("open segment data")
        .write_all_at(guests::LOAD, guests::BENCH)
        .expect("write the guest");
}

/// A VM with its files open (clone ORDWR|ORCLOSE, as vmx(1) keeps them).
pub struct Vm {
    pub n: String,
    pub ctl: File,
    pub wait: File,
    pub regs: File,
}

/// A new VM running segment `seg` at guest-physical 0, in flat 32-bit protected mode
/// (the selftest state), with a stack.
pub fn vm(c: &Client, seg: &str) -> Vm {
    let ctl = c
        .open("vmx/clone", om::RDWR | om::RCLOSE)
        .expect("open vmx/clone");
    let n = String::from_utf8_lossy(&ctl.read_at(0, 64).expect("read clone"))
        .trim()
        .to_string();
    c.open(&format!("vmx/{n}/map"), om::WRITE | om::TRUNC)
        .expect("open map")
        .write_str(&format!("rwx wb 0x0 {SEGSIZE:#x} {seg} 0x0\n"))
        .expect("map");
    let regs = c
        .open(&format!("vmx/{n}/regs"), om::RDWR)
        .expect("open regs");
    regs.write_str("sp 0x8000\n").expect("regs sp");
    let wait = c
        .open(&format!("vmx/{n}/wait"), om::READ)
        .expect("open wait");
    Vm { n, ctl, wait, regs }
}
