//! `bench-9p [--addr DIAL] [--secs N]`: 9P operations and bytes per second.
//!
//! Without `--addr` it serves the test tree in-process on a unix socket (the same engine
//! and host loop as `ninep-host`) and measures over it; with `--addr` (a dial string) it
//! measures whatever server is there, which must have a `hello` file and a writable root.
//! Figures, not assertions: run it with `cargo run --release -p vmm-tests --bin bench-9p`.

use ninep::Limits;
use ninep_client::{om, Client};
use ninep_host::{test_tree, Server};
use std::time::{Duration, Instant};

fn die(msg: &str) -> ! {
    eprintln!("bench-9p: {msg}");
    std::process::exit(1)
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

fn ops(c: &Client, secs: f64) {
    let (n, t) = repeat(secs, || {
        let f = c
            .open("hello", om::READ)
            .unwrap_or_else(|e| die(&e.to_string()));
        let d = f.read_at(0, 64).unwrap_or_else(|e| die(&e.to_string()));
        assert!(!d.is_empty());
        f.clunk().unwrap_or_else(|e| die(&e.to_string()));
    });
    // walk + open + read + clunk: four round trips each.
    println!(
        "ops      walk+open+read+clunk: {:>10.0} files/s ({:.0} 9P requests/s, 1 thread)",
        n as f64 / t.as_secs_f64(),
        4.0 * n as f64 / t.as_secs_f64()
    );
    let threads = 4;
    let start = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    repeat(secs, || {
                        let f = c
                            .open("hello", om::READ)
                            .unwrap_or_else(|e| die(&e.to_string()));
                        f.read_at(0, 64).unwrap_or_else(|e| die(&e.to_string()));
                        f.clunk().unwrap_or_else(|e| die(&e.to_string()));
                    })
                    .0
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    println!(
        "ops      walk+open+read+clunk: {:>10.0} files/s ({threads} threads, one connection)",
        total as f64 / start.elapsed().as_secs_f64()
    );
}

/// The same operations from a bare synchronous client (no reader thread, one request in
/// flight): what the server and the socket cost without ninep-client's demultiplexing.
fn raw_ops(path: &str, secs: f64) {
    use protocol::{Fcall, Wnames, NOFID, NOTAG};
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path)
        .unwrap_or_else(|e| die(&format!("connect: {e}")));
    let mut buf = vec![0u8; 8192];
    let mut rpc = |tag: u16, f: Fcall<'_>| {
        let n = f
            .encode(tag, &mut buf)
            .unwrap_or_else(|e| die(&e.to_string()));
        s.write_all(&buf[..n])
            .unwrap_or_else(|e| die(&e.to_string()));
        s.read_exact(&mut buf[..4])
            .unwrap_or_else(|e| die(&e.to_string()));
        let size = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if !(7..=8192).contains(&size) {
            die("bad reply size");
        }
        s.read_exact(&mut buf[4..size])
            .unwrap_or_else(|e| die(&e.to_string()));
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
    let wnames = Wnames::new(&["hello"]).unwrap_or_else(|e| die(&e.to_string()));
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
    println!(
        "ops      walk+open+read+clunk: {:>10.0} files/s ({:.0} 9P requests/s, bare synchronous client)",
        n as f64 / t.as_secs_f64(),
        4.0 * n as f64 / t.as_secs_f64()
    );
}

fn mib_s(bytes: u64, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64() / (1024.0 * 1024.0)
}

fn bytes(addr: &str, msize: u32, secs: f64) {
    let c = Client::dial_msize(addr, "glenda", "", msize).unwrap_or_else(|e| die(&e.to_string()));
    let name = format!("bench-{msize}");
    let size = 8 << 20;
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let f = c
        .create("", &name, 0o644, om::RDWR | om::TRUNC)
        .unwrap_or_else(|e| die(&e.to_string()));
    let (n, t) = repeat(secs, || {
        f.write_all_at(0, &data)
            .unwrap_or_else(|e| die(&e.to_string()))
    });
    let w = mib_s(n * size as u64, t);
    let mut got = 0u64;
    let (_, t) = repeat(secs, || {
        let mut off = 0u64;
        loop {
            let d = f
                .read_at(off, c.max_io())
                .unwrap_or_else(|e| die(&e.to_string()));
            if d.is_empty() {
                break;
            }
            off += d.len() as u64;
        }
        assert_eq!(off, size as u64);
        got += off;
    });
    let r = mib_s(got, t);
    println!(
        "bytes    msize {msize:>6} (iounit {:>5}): write {w:>8.1} MiB/s, read {r:>8.1} MiB/s",
        c.max_io()
    );
    f.remove().unwrap_or_else(|e| die(&e.to_string()));
}

fn main() {
    let mut addr = None;
    let mut secs = 2.0;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--addr", Some(v)) => addr = Some(v),
            ("--secs", Some(v)) => secs = v.parse().unwrap_or_else(|_| die("bad --secs")),
            _ => die("usage: bench-9p [--addr DIAL] [--secs N]"),
        }
    }
    let addr = match addr {
        Some(a) => a,
        None => {
            let path = std::env::temp_dir().join(format!("bench-9p-{}.sock", std::process::id()));
            let server = Server::new(test_tree("glenda"), Limits::default());
            server
                .listen_unix(&path)
                .unwrap_or_else(|e| die(&format!("listen: {e}")));
            std::thread::spawn(move || server.run());
            format!("unix!{}", path.display())
        }
    };
    println!("bench-9p: {addr}, {secs} s per figure");
    let c = Client::dial_msize(&addr, "glenda", "", 8192).unwrap_or_else(|e| die(&e.to_string()));
    ops(&c, secs);
    if let Some(p) = addr.strip_prefix("unix!") {
        raw_ops(p, secs);
    }
    for msize in [8192, 64 * 1024 + 24] {
        bytes(&addr, msize, secs);
    }
    if let Some(p) = addr.strip_prefix("unix!") {
        if p.contains("bench-9p-") {
            let _ = std::fs::remove_file(p);
        }
    }
}
