//! Exits per second a client drives through #X's wait/go over COM1 under Bochs: the
//! baseline later fast paths are measured against (issue 4, Benchmark).
//!
//! cargo run --release -p vmm-tests --bin bench-exits [SECONDS]
//!
//! The guest (guests/bench.S, 32-bit flat) runs a counted loop of N `loop` instructions,
//! then `out 0x80, al`; the client reads the exit from `wait` and writes
//! `go pc=NEXT;` (pc advanced by ilen, as vmx(1) does): 2 round trips per exit. A second
//! mode also reads `regs` once per exit (3 round trips), as vmx(1) does when an exit
//! handler needs registers. Each figure runs for SECONDS (default 3). The raw 9P round-trip
//! rate of the same line (Tstat of `status`) is printed beside them so the ratio shows
//! what the exit path costs beyond the serial line. The same runs then go over TCP (an
//! e1000 on Bochs's slirp, the owner presenting the secret) on the same boot.

use ninep_client::Client;
use ninep_client::File;
use std::time::{Duration, Instant};
use vmm_tests::bench::{self, tstat};
use vmm_tests::emu::{Machine, Nic, Opts};
use vmm_tests::guests;

const OWNER: &str = "eve";
const SECRET: &str = "bench";
/// Loop counts between exits; each exit costs N + 4 guest instructions
/// (mov, jecxz, N x loop, out, jmp). The last count makes the guest's own run dominate,
/// which shows Bochs's guest speed under VMX.
const LOOPS: [u64; 4] = [0, 100, 10_000, 1_000_000];
/// The io exit qualification of `out 0x80, al`: port 0x80, immediate, 1 byte, out.
const OUT80: u64 = 0x80_0040;

/// A wait line's `key value` field, hexadecimal.
fn field(line: &str, key: &str) -> Option<u64> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let i = f.iter().position(|k| *k == key)?;
    u64::from_str_radix(f.get(i + 1)?.trim_start_matches("0x"), 16).ok()
}

/// The VM's files, opened once, as vmx(1) keeps them open.
struct Vm {
    ctl: File,
    wait: File,
    regs: File,
}

/// Time spent in each kind of round trip over one run.
#[derive(Default)]
struct Run {
    exits: u64,
    secs: f64,
    go: Duration,
    wait: Duration,
    regs: Duration,
    /// Each exit's whole client-side cost (go, wait, regs), for the median.
    each: Vec<Duration>,
}

impl Run {
    fn round_trips(&self, per_exit: u64) -> u64 {
        self.exits * per_exit
    }

    /// The median exit time: steadier than the mean when other work shares the cores.
    fn median(&mut self) -> Duration {
        self.each.sort_unstable();
        self.each
            .get(self.each.len() / 2)
            .copied()
            .unwrap_or_default()
    }
}

fn timed<T>(acc: &mut Duration, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let v = f();
    *acc += t.elapsed();
    v
}

impl Vm {
    /// Reads one exit; checks it is the guest's `out 0x80` at `out_pc`; returns the next pc.
    fn exit(&self, out_pc: u64) -> u64 {
        let b = self.wait.read_at(0, 512).expect("read wait");
        let line = String::from_utf8_lossy(&b);
        let what = line.split_whitespace().next().unwrap_or("");
        let qual = line
            .split_whitespace()
            .nth(1)
            .and_then(|q| u64::from_str_radix(q.trim_start_matches("0x"), 16).ok());
        let pc = field(&line, "pc");
        assert!(
            what == "io" && qual == Some(OUT80) && pc == Some(out_pc),
            "unexpected exit {line:?} (want io {OUT80:#x} at pc {out_pc:#x})"
        );
        out_pc + field(&line, "ilen").expect("ilen in the wait line")
    }

    /// Runs the guest with `loops` iterations per exit for `secs`, reading regs per exit
    /// when `with_regs`.
    fn run(&self, loops: u64, with_regs: bool, secs: f64, out_pc: u64) -> Run {
        // Restart the loop from the top with the new count; the first exit is not timed.
        self.ctl
            .write_str(&format!("go pc={:#x};bx={loops:#x};", guests::LOAD))
            .expect("go");
        let mut next = self.exit(out_pc);
        let mut r = Run::default();
        let start = Instant::now();
        while start.elapsed().as_secs_f64() < secs {
            let t = Instant::now();
            let cmd = format!("go pc={next:#x};");
            timed(&mut r.go, || self.ctl.write_str(&cmd).expect("go"));
            next = timed(&mut r.wait, || self.exit(out_pc));
            if with_regs {
                let text = timed(&mut r.regs, || self.regs.read_at(0, 4095).expect("regs"));
                assert!(
                    field(&String::from_utf8_lossy(&text), "bx") == Some(loops),
                    "regs bx is not {loops}"
                );
            }
            r.each.push(t.elapsed());
            r.exits += 1;
        }
        r.secs = start.elapsed().as_secs_f64();
        r
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    bench::require_programs("bench-exits", &["bochs", "grub-mkrescue"]);
    let secs: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3.0);
    let opts = Opts {
        cmdline: format!("owner={OWNER} secret={SECRET} serve=uart,net"),
        virtio_ports: 0,
        nic: Some(Nic::E1000),
        ..Opts::default()
    };
    let ips = opts.ips;
    // Bochs keeps a core busy; the client and the COM1 relay need the other one, or each
    // round trip waits for the scheduler's tick (about 4 ms here). Say when it is taken.
    let load = bench::load_average();
    let m = Machine::bochs(opts);
    let c = m.client(OWNER, "");
    c.set_timeout(Some(Duration::from_secs(60)));
    println!(
        "load average before boot {load} (above about 0.5, other work shares the cores \
         and round trips slow to the scheduler's tick: compare figures with care)"
    );
    bench(&c, "COM1", "bench", ips, secs);
    drop(c);
    let t = m.tcp_client(OWNER, &format!("!{SECRET}"));
    t.set_timeout(Some(Duration::from_secs(60)));
    bench(&t, "TCP (e1000)", "bencht", ips, secs);
}

/// Every row over one client's link.
fn bench(c: &Client, link: &str, seg: &str, ips: u64, secs: f64) {
    // The guest in a segment, mapped at 0, entered in flat 32-bit protected mode.
    bench::segment(c, seg);
    let out_pc = bench::out_pc();
    let b = bench::vm(c, seg);
    let vm = Vm {
        ctl: b.ctl,
        wait: b.wait,
        regs: b.regs,
    };

    tstat(c, 0.5); // warm-up: the first round trips after set-up run slower
    let (tstat_rate, tstat_lat) = tstat(c, secs);
    println!(
        "Bochs (ips {ips}), {link} 9P msize {}, {secs} s per figure",
        c.msize()
    );
    println!(
        "raw 9P: Tstat of status {tstat_rate:.0} round trips/s, mean {:.2} ms",
        ms(tstat_lat)
    );
    println!(
        "{:>10} {:<12} {:>8} {:>7} {:>7} {:>8} {:>7} {:>8} {:>7} {:>7} {:>7} {:>9}",
        "insns/exit",
        "per exit",
        "exits/s",
        "RTs/s",
        "Tstat/s",
        "RT/Tstat",
        "mean ms",
        "p50 exit",
        "go ms",
        "wait ms",
        "regs ms",
        "guest i/s"
    );
    for loops in LOOPS {
        for with_regs in [false, true] {
            // The line's own rate just before, for the ratio: it drifts during a run.
            let (near, _) = tstat(c, (secs / 3.0).max(0.5));
            let mut r = vm.run(loops, with_regs, secs, out_pc);
            let per_exit = if with_regs { 3 } else { 2 };
            let rts = r.round_trips(per_exit);
            let exits = r.exits.max(1) as f64;
            let insns = loops + 4;
            let rt_rate = rts as f64 / r.secs;
            println!(
                "{:>10} {:<12} {:>8.1} {:>7.1} {:>7.0} {:>8.2} {:>7.2} {:>8.2} {:>7.2} {:>7.2} {:>7} {:>9.0}",
                insns,
                if with_regs { "wait+go+regs" } else { "wait+go" },
                r.exits as f64 / r.secs,
                rt_rate,
                near,
                rt_rate / near,
                r.secs * 1e3 / rts.max(1) as f64,
                ms(r.median()),
                ms(r.go) / exits,
                ms(r.wait) / exits,
                if with_regs {
                    format!("{:.2}", ms(r.regs) / exits)
                } else {
                    "-".into()
                },
                insns as f64 * r.exits as f64 / r.secs,
            );
        }
    }
    let (after, after_lat) = tstat(c, secs);
    println!(
        "raw 9P after the runs: Tstat of status {after:.0} round trips/s, mean {:.2} ms",
        ms(after_lat)
    );
    println!(
        "insns/exit: guest instructions per exit (N x loop + mov, jecxz, out, jmp); \
         RT: a 9P round trip; Tstat/s: raw 9P rate just before the row; p50 exit: median ms per exit; go ms: Twrite of ctl; wait ms: Tread of wait (includes the \
         guest's run); guest i/s: guest instructions per wall second"
    );
    // The VM ends with its ctl fid (ORCLOSE); the segment goes too.
    drop(vm);
    c.remove(&format!("segment/{seg}")).ok();
}
