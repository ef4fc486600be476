//! `bench-9p [--tcp] [--addr DIAL] [--secs N] [--reps N] [--lib9p PLAN9]`: 9P operations
//! and bytes per second, our engine beside plan9port's lib9p.
//!
//! Without `--addr` it serves the test tree from a child process (the same engine and
//! host loop as `ninep-host`) on a unix socket, or on TCP at 127.0.0.1 with `--tcp`, and,
//! given a plan9port tree whose lib9p, lib9 and libthread are built (`--lib9p DIR`, or
//! `$PLAN9`), builds `vmm-tests/bench/lib9p-peer.c` against it: lib9p's `srv` and File
//! tree serving the same `hello` file and writable root, one forked process per
//! connection. Every figure is measured on both, alternating, `--reps` times; the medians
//! and their ratio are printed, and each server's CPU time per file or MiB. With `--addr`
//! (a dial string) it measures whatever server is there, which must have a `hello` file
//! and a writable root. `--vs NAME=DIAL[=PID]` adds another such server to every row
//! (e.g. an older build's `ninep-host --unix PATH`; with its PID its CPU time is counted
//! too); `--rows TEXT` measures only the rows whose name holds TEXT. Figures, not
//! assertions: run it with `cargo run --release -p vmm-tests --bin bench-9p`.

use ninep::Limits;
use ninep_client::{om, Client};
use ninep_host::{test_tree, Server};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The servers this run started, ended on every way out.
static CHILDREN: Mutex<Vec<Child>> = Mutex::new(Vec::new());

fn stop_children() {
    let mut cs = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    for c in cs.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    cs.clear();
}

fn die(msg: &str) -> ! {
    eprintln!("bench-9p: {msg}");
    stop_children();
    std::process::exit(1)
}

/// What one measurement did: `amount` (files or MiB) in `secs` seconds.
#[derive(Clone, Copy)]
struct Figure {
    amount: f64,
    secs: f64,
}

impl Figure {
    fn new(amount: f64, t: Duration) -> Self {
        Figure {
            amount,
            secs: t.as_secs_f64(),
        }
    }

    fn rate(&self) -> f64 {
        self.amount / self.secs
    }
}

/// Runs `op` repeatedly for `secs`; returns (iterations, elapsed).
fn repeat(secs: f64, mut op: impl FnMut()) -> (u64, Duration) {
    let start = Instant::now();
    let limit = Duration::from_secs_f64(secs);
    let mut n = 0;
    while start.elapsed() < limit {
        op();
        n += 1;
    }
    (n, start.elapsed())
}

fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| die(&e.to_string()))
}

fn dial(addr: &str, msize: u32) -> Client {
    ok(Client::dial_msize(addr, "glenda", "", msize))
}

/// Walk, open, read and clunk `hello` (four round trips): files.
fn ops(addr: &str, secs: f64) -> Figure {
    let c = dial(addr, 8192);
    let (n, t) = repeat(secs, || {
        let f = ok(c.open("hello", om::READ));
        let d = ok(f.read_at(0, 64));
        assert!(!d.is_empty());
        ok(f.clunk());
    });
    Figure::new(n as f64, t)
}

/// The same from four threads sharing one connection.
fn ops_threads(addr: &str, secs: f64) -> Figure {
    let c = dial(addr, 8192);
    let start = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    repeat(secs, || {
                        let f = ok(c.open("hello", om::READ));
                        ok(f.read_at(0, 64));
                        ok(f.clunk());
                    })
                    .0
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    Figure::new(total as f64, start.elapsed())
}

/// The same operations from a bare synchronous client (no reader thread, one request in
/// flight): what the server and the socket cost without ninep-client's demultiplexing.
fn raw_ops(addr: &str, secs: f64) -> Figure {
    use protocol::{Fcall, Wnames, NOFID, NOTAG};
    use std::io::{Read, Write};
    let mut s = ok(connect(addr));
    let mut buf = vec![0u8; 8192];
    let mut rpc = |tag: u16, f: Fcall<'_>| {
        let n = ok(f.encode(tag, &mut buf));
        ok(s.write_all(&buf[..n]));
        ok(s.read_exact(&mut buf[..4]));
        let size = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if !(7..=8192).contains(&size) {
            die("bad reply size");
        }
        ok(s.read_exact(&mut buf[4..size]));
        if buf[4] == protocol::MsgType::Rerror as u8 {
            die("Rerror");
        }
    };
    let version = "9P2000";
    rpc(
        NOTAG,
        Fcall::Tversion {
            msize: 8192,
            version,
        },
    );
    let (uname, aname) = ("glenda", "");
    rpc(
        1,
        Fcall::Tattach {
            fid: 0,
            afid: NOFID,
            uname,
            aname,
        },
    );
    let wnames = ok(Wnames::new(&["hello"]));
    let (n, t) = repeat(secs, || {
        rpc(
            1,
            Fcall::Twalk {
                fid: 0,
                newfid: 1,
                wnames,
            },
        );
        rpc(
            1,
            Fcall::Topen {
                fid: 1,
                mode: om::READ,
            },
        );
        rpc(
            1,
            Fcall::Tread {
                fid: 1,
                offset: 0,
                count: 64,
            },
        );
        rpc(1, Fcall::Tclunk { fid: 1 });
    });
    Figure::new(n as f64, t)
}

const FILE_SIZE: usize = 8 << 20;

fn mib(bytes: u64, t: Duration) -> Figure {
    Figure::new(bytes as f64 / (1024.0 * 1024.0), t)
}

/// MiB/s writing an 8 MiB file over and over in iounit-sized Twrites.
fn write_rate(addr: &str, msize: u32, secs: f64) -> Figure {
    let c = dial(addr, msize);
    let data: Vec<u8> = (0..FILE_SIZE).map(|i| (i % 251) as u8).collect();
    let f = ok(c.create("", &format!("bench-w{msize}"), 0o644, om::RDWR | om::TRUNC));
    let (n, t) = repeat(secs, || ok(f.write_all_at(0, &data)));
    ok(f.remove());
    mib(n * FILE_SIZE as u64, t)
}

/// MiB/s reading an 8 MiB file over and over in iounit-sized Treads.
fn read_rate(addr: &str, msize: u32, secs: f64) -> Figure {
    let c = dial(addr, msize);
    let data: Vec<u8> = (0..FILE_SIZE).map(|i| (i % 251) as u8).collect();
    let f = ok(c.create("", &format!("bench-r{msize}"), 0o644, om::RDWR | om::TRUNC));
    ok(f.write_all_at(0, &data));
    let mut got = 0u64;
    let (_, t) = repeat(secs, || {
        let mut off = 0u64;
        loop {
            let d = ok(f.read_at(off, c.max_io()));
            if d.is_empty() {
                break;
            }
            off += d.len() as u64;
        }
        assert_eq!(off, FILE_SIZE as u64);
        got += off;
    });
    ok(f.remove());
    mib(got, t)
}

/// The engine alone, in this process, with no socket: a Session on the test tree fed
/// encoded requests and drained, as a transport would. Returns (files/s for
/// walk+open+read+clunk, MiB/s of 64 KiB Twrites, MiB/s of 64 KiB Treads): the engine's
/// own cost, which the socket rows add the kernel's and the scheduler's to.
fn engine_alone(secs: f64) -> (f64, f64, f64) {
    use ninep::Session;
    use protocol::{Fcall, Wnames, NOFID, NOTAG};
    const MSIZE: u32 = 64 * 1024 + 24;
    let mut tree = test_tree("glenda");
    let mut s: Session<ninep::memfs::Memfs> = Session::new(1, Limits::default());
    let enc = |tag: u16, f: Fcall<'_>| {
        let mut b = vec![0u8; MSIZE as usize];
        let n = ok(f.encode(tag, &mut b));
        b.truncate(n);
        b
    };
    let rpc = |s: &mut Session<_>, tree: &mut _, req: &[u8]| {
        s.input(req);
        s.process(tree);
        let n = s.output().len();
        if n == 0 || s.output()[4] == protocol::MsgType::Rerror as u8 {
            die("the engine alone: no reply, or Rerror");
        }
        s.consume_output(n);
    };
    let version = "9P2000";
    rpc(
        &mut s,
        &mut tree,
        &enc(
            NOTAG,
            Fcall::Tversion {
                msize: MSIZE,
                version,
            },
        ),
    );
    let (uname, aname) = ("glenda", "");
    let attach = Fcall::Tattach {
        fid: 0,
        afid: NOFID,
        uname,
        aname,
    };
    rpc(&mut s, &mut tree, &enc(1, attach));
    let hello = ok(Wnames::new(&["hello"]));
    let script = [
        enc(
            1,
            Fcall::Twalk {
                fid: 0,
                newfid: 1,
                wnames: hello,
            },
        ),
        enc(
            1,
            Fcall::Topen {
                fid: 1,
                mode: om::READ,
            },
        ),
        enc(
            1,
            Fcall::Tread {
                fid: 1,
                offset: 0,
                count: 64,
            },
        ),
        enc(1, Fcall::Tclunk { fid: 1 }),
    ];
    let (n, t) = repeat(secs, || {
        for req in &script {
            rpc(&mut s, &mut tree, req);
        }
    });
    let files = n as f64 / t.as_secs_f64();
    let name = "bench-engine";
    let create = Fcall::Tcreate {
        fid: 1,
        name,
        perm: 0o644,
        mode: om::RDWR,
    };
    rpc(
        &mut s,
        &mut tree,
        &enc(
            1,
            Fcall::Twalk {
                fid: 0,
                newfid: 1,
                wnames: ok(Wnames::new(&[])),
            },
        ),
    );
    rpc(&mut s, &mut tree, &enc(1, create));
    let data = vec![0x5au8; 65536];
    let writes: Vec<Vec<u8>> = (0..128u64)
        .map(|i| {
            enc(
                1,
                Fcall::Twrite {
                    fid: 1,
                    offset: i * 65536,
                    data: &data,
                },
            )
        })
        .collect();
    let (n, t) = repeat(secs, || {
        for w in &writes {
            rpc(&mut s, &mut tree, w);
        }
    });
    let w = mib(n * 128 * 65536, t).rate();
    let reads: Vec<Vec<u8>> = (0..128u64)
        .map(|i| {
            enc(
                1,
                Fcall::Tread {
                    fid: 1,
                    offset: i * 65536,
                    count: 65536,
                },
            )
        })
        .collect();
    let (n, t) = repeat(secs, || {
        for r in &reads {
            rpc(&mut s, &mut tree, r);
        }
    });
    let r = mib(n * 128 * 65536, t).rate();
    (files, w, r)
}

/// A server measured: its dial string, and its process when this run started it.
struct Peer {
    name: String,
    addr: String,
    pid: Option<u32>,
}

/// CPU seconds process `pid` used, its reaped children's included (the lib9p peer
/// serves each connection in a child it reaps), from /proc's utime, stime, cutime and
/// cstime (in USER_HZ, 100 on Linux).
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after "(comm)": state is the 3rd field, utime the 14th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    Some(f.iter().sum::<u64>() as f64 / 100.0)
}

/// Measures `row` on `p`: the figure and, for a server this run started, the server's
/// CPU seconds per unit of it.
fn measure(row: &Row, p: &Peer, secs: f64) -> Option<(f64, Option<f64>)> {
    let before = p.pid.and_then(cpu_secs);
    let fig = (row.measure)(p, secs)?;
    // The connection is closed: let the lib9p peer's child end and be reaped.
    std::thread::sleep(Duration::from_millis(50));
    let after = p.pid.and_then(cpu_secs);
    let cpu = before.zip(after).map(|(b, a)| (a - b) / fig.amount);
    Some((fig.rate(), cpu))
}

/// A socket both ways.
trait Stream: std::io::Read + std::io::Write {}
impl<S: std::io::Read + std::io::Write> Stream for S {}

/// Connects to `unix!PATH` or `tcp!HOST!PORT` (with TCP_NODELAY, as ninep-client and
/// ninep-host set it).
fn connect(addr: &str) -> std::io::Result<Box<dyn Stream>> {
    if let Some(p) = addr.strip_prefix("unix!") {
        return Ok(Box::new(std::os::unix::net::UnixStream::connect(p)?));
    }
    let hp = addr
        .strip_prefix("tcp!")
        .unwrap_or(addr)
        .replacen('!', ":", 1);
    let s = std::net::TcpStream::connect(hp)?;
    s.set_nodelay(true)?;
    Ok(Box::new(s))
}

/// Measures a row on a server for a number of seconds (`None`: not on this server).
type Measure = Box<dyn Fn(&Peer, f64) -> Option<Figure>>;

/// One row of figures: what it measures and how.
struct Row {
    what: String,
    unit: &'static str,
    measure: Measure,
}

fn rows() -> Vec<Row> {
    let mut rows = vec![
        Row {
            what: "walk+open+read+clunk, 1 thread".into(),
            unit: "files/s",
            measure: Box::new(|p, s| Some(ops(&p.addr, s))),
        },
        Row {
            what: "walk+open+read+clunk, 4 threads, 1 conn".into(),
            unit: "files/s",
            measure: Box::new(|p, s| Some(ops_threads(&p.addr, s))),
        },
        Row {
            what: "walk+open+read+clunk, bare sync client".into(),
            unit: "files/s",
            measure: Box::new(|p, s| Some(raw_ops(&p.addr, s))),
        },
    ];
    let sizes = [
        (8192u32, "msize 8192 (iounit 8168)"),
        (64 * 1024 + 24, "msize 65560 (iounit 64 KiB)"),
    ];
    for (msize, label) in sizes {
        rows.push(Row {
            what: format!("write, {label}"),
            unit: "MiB/s",
            measure: Box::new(move |p, s| Some(write_rate(&p.addr, msize, s))),
        });
        rows.push(Row {
            what: format!("read, {label}"),
            unit: "MiB/s",
            measure: Box::new(move |p, s| Some(read_rate(&p.addr, msize, s))),
        });
    }
    rows
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Serves the test tree at `unix!PATH` or `tcp!HOST!PORT` until killed (the child
/// `--serve`).
fn serve(addr: &str) -> ! {
    let server = Server::new(test_tree("glenda"), Limits::default());
    let r = match addr.strip_prefix("unix!") {
        Some(p) => server.listen_unix(Path::new(p)),
        None => {
            let hp = addr
                .strip_prefix("tcp!")
                .unwrap_or(addr)
                .replacen('!', ":", 1);
            server.listen_tcp(&hp).map(|_| ())
        }
    };
    if let Err(e) = r {
        die(&format!("listen {addr}: {e}"));
    }
    server.run();
    std::process::exit(0)
}

/// Where a server this run starts listens: a unix socket in `dir`, or a free TCP port
/// on 127.0.0.1.
fn listen_addr(tcp: bool, dir: &Path, name: &str) -> String {
    if !tcp {
        return format!("unix!{}", dir.join(format!("{name}.sock")).display());
    }
    let l = ok(std::net::TcpListener::bind("127.0.0.1:0"));
    format!("tcp!127.0.0.1!{}", ok(l.local_addr()).port())
}

/// Starts `cmd` as a server and waits for it to answer at `addr`; returns its pid.
fn start(mut cmd: Command, addr: &str, what: &str) -> u32 {
    let child = cmd
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| die(&format!("start {what}: {e}")));
    let pid = child.id();
    CHILDREN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(child);
    let t = Instant::now();
    while connect(addr).is_err() {
        if t.elapsed() > Duration::from_secs(10) {
            die(&format!("{what} did not listen on {addr}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    pid
}

/// Builds the lib9p peer against the plan9port tree `plan9` into `dir`.
fn build_peer(plan9: &Path, dir: &Path) -> PathBuf {
    let src = dir.join("lib9p-peer.c");
    let (obj, exe) = (dir.join("lib9p-peer.o"), dir.join("lib9p-peer"));
    ok(std::fs::write(
        &src,
        include_str!("../../bench/lib9p-peer.c"),
    ));
    let path = format!(
        "{}:{}",
        plan9.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let steps: [(&str, Vec<&std::ffi::OsStr>); 2] = [
        ("9c", vec!["-o".as_ref(), obj.as_os_str(), src.as_os_str()]),
        (
            "9l",
            vec![
                "-o".as_ref(),
                exe.as_os_str(),
                obj.as_os_str(),
                "-l9p".as_ref(),
                "-lthread".as_ref(),
                "-l9".as_ref(),
            ],
        ),
    ];
    for (tool, args) in steps {
        let st = Command::new(plan9.join("bin").join(tool))
            .args(args)
            .env("PLAN9", plan9)
            .env("PATH", &path)
            .status();
        if !st.is_ok_and(|s| s.success()) {
            die(&format!(
                "{tool} failed building the lib9p peer against {} (it needs lib9p, lib9 and libthread built there)",
                plan9.display()
            ));
        }
    }
    exe
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
    for row in rows() {
        if only
            .as_ref()
            .is_some_and(|o| !row.what.contains(o.as_str()))
        {
            continue;
        }
        let mut rates = vec![Vec::new(); peers.len()];
        let mut cpus = vec![Vec::new(); peers.len()];
        for _ in 0..reps {
            for (i, p) in peers.iter().enumerate() {
                if let Some((rate, cpu)) = measure(&row, p, secs) {
                    rates[i].push(rate);
                    cpus[i].extend(cpu);
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
        // Server CPU per file or per MiB, in microseconds; fewer is better, so the ratio
        // is theirs over ours.
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
        cpu_lines.push(line);
    }
    if peers.iter().any(|p| p.pid.is_some()) {
        println!("server CPU per operation (user+system, the server's processes only; fewer is better, ratios theirs/ours):");
        for l in cpu_lines {
            println!("{l}");
        }
    }
    stop_children();
    let _ = std::fs::remove_dir_all(&dir);
}
