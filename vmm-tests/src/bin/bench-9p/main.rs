//! `bench-9p [--tcp] [--addr DIAL] [--secs N] [--reps N] [--lib9p PLAN9]`: 9P operations
//! and bytes per second, our engine beside plan9port's lib9p.
//!
//! Without `--addr` it serves the test tree from a child process (the same engine and
//! host loop as `ninep-host`) on a unix socket, or on TCP at 127.0.0.1 with `--tcp`, and,
//! given a plan9port tree whose lib9p, lib9 and libthread are built (`--lib9p DIR`, or
//! `$PLAN9`), builds `lib9p-peer.c` (beside this file) against it: lib9p's `srv` and File
//! tree serving the same `hello` file and writable root, one forked process per
//! connection. Every figure is measured on both, alternating, `--reps` times; the medians
//! and their ratio are printed, and each server's CPU time per file or MiB. With `--addr`
//! (a dial string) it measures whatever server is there, which must have a `hello` file
//! and a writable root. `--vs NAME=DIAL[=PID]` adds another such server to every row
//! (e.g. an older build's `ninep-host --unix PATH`; with its PID its CPU time is counted
//! too); `--rows TEXT` measures only the rows whose name holds TEXT. Figures, not
//! assertions: run it with `cargo run --release -p vmm-tests --bin bench-9p`.

mod rows;
mod servers;

use rows::{engine_alone, measure, median, rows};
use servers::{build_peer, listen_addr, serve, start, stop_children, Peer};
use std::path::PathBuf;
use std::process::Command;

pub(crate) fn die(msg: &str) -> ! {
    eprintln!("bench-9p: {msg}");
    stop_children();
    std::process::exit(1)
}

pub(crate) fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| die(&e.to_string()))
}

const USAGE: &str =
    "usage: bench-9p [--tcp] [--addr DIAL] [--secs N] [--reps N] [--lib9p PLAN9] [--vs NAME=DIAL[=PID]]... [--rows TEXT]";

fn main() {
    let mut addr = None;
    // Short figures, many of them: the load of other work shifts within seconds, and
    // the median of alternating short runs sees both servers under the same.
    let mut secs = 0.5;
    let mut reps = 7usize;
    let mut plan9 = std::env::var_os("PLAN9").map(PathBuf::from);
    let mut vs = Vec::new();
    let mut only = None;
    let mut tcp = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--tcp" {
            tcp = true;
            continue;
        }
        match (a.as_str(), args.next()) {
            ("--serve", Some(v)) => serve(&v),
            ("--addr", Some(v)) => addr = Some(v),
            ("--secs", Some(v)) => secs = v.parse().unwrap_or_else(|_| die("bad --secs")),
            ("--reps", Some(v)) => reps = v.parse().unwrap_or_else(|_| die("bad --reps")),
            ("--lib9p", Some(v)) => plan9 = Some(v.into()),
            ("--rows", Some(v)) => only = Some(v),
            ("--vs", Some(v)) => {
                let mut f = v.splitn(3, '=');
                let (Some(name), Some(dial)) = (f.next(), f.next()) else {
                    die("--vs NAME=DIAL[=PID]")
                };
                let pid = f
                    .next()
                    .map(|p| p.parse().unwrap_or_else(|_| die("bad PID")));
                vs.push(Peer {
                    name: name.to_string(),
                    addr: dial.to_string(),
                    pid,
                });
            }
            _ => die(USAGE),
        }
    }
    let reps = reps.max(1);
    let dir = std::env::temp_dir().join(format!("bench-9p-{}", std::process::id()));
    ok(std::fs::create_dir_all(&dir));
    let mut peers = Vec::new();
    let addr_given = addr.clone();
    match addr {
        Some(a) => peers.push(Peer {
            name: "server".into(),
            addr: a,
            pid: None,
        }),
        None => {
            let addr = listen_addr(tcp, &dir, "ninep");
            let mut cmd = Command::new(ok(std::env::current_exe()));
            cmd.arg("--serve").arg(&addr);
            let pid = start(cmd, &addr, "the engine's server");
            peers.push(Peer {
                name: "ours".into(),
                addr,
                pid: Some(pid),
            });
            match &plan9 {
                Some(p) => {
                    let exe = build_peer(p, &dir);
                    let addr = listen_addr(tcp, &dir, "lib9p");
                    let mut cmd = Command::new(exe);
                    cmd.arg(&addr);
                    let pid = start(cmd, &addr, "the lib9p peer");
                    peers.push(Peer {
                        name: "lib9p".into(),
                        addr,
                        pid: Some(pid),
                    });
                }
                None => println!(
                    "bench-9p: lib9p not compared: pass --lib9p DIR (or set PLAN9), a plan9port \
                     tree with lib9p, lib9 and libthread built (cd src/libN && mk install)"
                ),
            }
        }
    }
    peers.extend(vs);
    println!(
        "bench-9p: {}; {secs} s per figure, median of {reps} (servers alternating); load {}",
        peers
            .iter()
            .map(|p| format!("{} {}", p.name, p.addr))
            .collect::<Vec<_>>()
            .join(", "),
        vmm_tests::bench::load_average()
    );
    if addr_given.is_none() {
        let (files, w, r) = engine_alone(secs);
        println!(
            "engine alone (in-process, no socket): {files:.0} walk+open+read+clunk/s, \
             64 KiB Twrite {w:.0} MiB/s, 64 KiB Tread {r:.0} MiB/s"
        );
    }
    let mut head = format!("{:<42}{:>8}", "", "");
    for p in &peers {
        head += &format!("{:>10}", p.name);
    }
    for p in &peers[1..] {
        head += &format!("{:>12}", format!("{}/{}", peers[0].name, p.name));
    }
    println!("{head}");
    let mut cpu_lines = Vec::new();
    let mut client_lines = Vec::new();
    for row in rows() {
        if only
            .as_ref()
            .is_some_and(|o| !row.what.contains(o.as_str()))
        {
            continue;
        }
        let mut rates = vec![Vec::new(); peers.len()];
        let mut cpus = vec![Vec::new(); peers.len()];
        let mut clients = vec![Vec::new(); peers.len()];
        for _ in 0..reps {
            for (i, p) in peers.iter().enumerate() {
                if let Some(m) = measure(&row, p, secs) {
                    rates[i].push(m.rate);
                    cpus[i].extend(m.server_cpu);
                    clients[i].extend(m.client_cpu);
                }
            }
        }
        if rates.iter().all(|f| f.is_empty()) {
            continue;
        }
        let meds: Vec<f64> = rates.into_iter().map(median).collect();
        let mut line = format!("{:<42}{:>8}", row.what, row.unit);
        for m in &meds {
            line += &format!("{m:>10.0}");
        }
        for m in &meds[1..] {
            line += &format!("{:>11.2}x", meds[0] / m);
        }
        println!("{line}");
        cpu_lines.push(cpu_line(&row, cpus));
        client_lines.push(cpu_line(&row, clients));
    }
    if peers.iter().any(|p| p.pid.is_some()) {
        println!("server CPU per operation (user+system, the server's processes only; fewer is better, ratios theirs/ours):");
        for l in cpu_lines {
            println!("{l}");
        }
    }
    println!("client CPU per operation (this process, the same client for every server; ratios theirs/ours):");
    for l in client_lines {
        println!("{l}");
    }
    stop_children();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A row's CPU time per file or MiB on each server, in microseconds (medians of `cpus`),
/// and their ratios to the first server's; fewer is better, so the ratio is theirs/ours.
fn cpu_line(row: &rows::Row, cpus: Vec<Vec<f64>>) -> String {
    let cpu: Vec<Option<f64>> = cpus
        .into_iter()
        .map(|c| (!c.is_empty()).then(|| median(c) * 1e6))
        .collect();
    let unit = if row.unit == "MiB/s" {
        "us/MiB"
    } else {
        "us/file"
    };
    let mut line = format!("{:<42}{:>8}", row.what, unit);
    for c in &cpu {
        line += &match c {
            Some(c) => format!("{c:>10.1}"),
            None => format!("{:>10}", "-"),
        };
    }
    for c in &cpu[1..] {
        line += &match (cpu[0], c) {
            (Some(o), Some(t)) => format!("{:>11.2}x", t / o),
            _ => format!("{:>12}", "-"),
        };
    }
    line
}
