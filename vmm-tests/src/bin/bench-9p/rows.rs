//! What bench-9p measures: each row's operation on a server (ninep-client's and a bare
//! synchronous client's small operations, bulk writes and reads), the engine alone with
//! no socket, and a row's figure with the server's CPU per unit.

use crate::servers::{connect, cpu_secs, Peer};
use crate::{die, ok};
use ninep::Limits;
use ninep_client::{om, Client};
use ninep_host::test_tree;
use std::time::{Duration, Instant};

/// What one measurement did: `amount` (files or MiB) in `secs` seconds.
#[derive(Clone, Copy)]
pub(crate) struct Figure {
    pub(crate) amount: f64,
    pub(crate) secs: f64,
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
pub(crate) fn repeat(secs: f64, mut op: impl FnMut()) -> (u64, Duration) {
    let start = Instant::now();
    let limit = Duration::from_secs_f64(secs);
    let mut n = 0;
    while start.elapsed() < limit {
        op();
        n += 1;
    }
    (n, start.elapsed())
}

pub(crate) fn dial(addr: &str, msize: u32) -> Client {
    ok(Client::dial_msize(addr, "glenda", "", msize))
}

/// Walk, open, read and clunk `hello` (four round trips): files.
pub(crate) fn ops(addr: &str, secs: f64) -> Figure {
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
pub(crate) fn ops_threads(addr: &str, secs: f64) -> Figure {
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
pub(crate) fn raw_ops(addr: &str, secs: f64) -> Figure {
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

pub(crate) const FILE_SIZE: usize = 8 << 20;

pub(crate) fn mib(bytes: u64, t: Duration) -> Figure {
    Figure::new(bytes as f64 / (1024.0 * 1024.0), t)
}

/// MiB/s writing an 8 MiB file over and over in iounit-sized Twrites.
pub(crate) fn write_rate(addr: &str, msize: u32, secs: f64) -> Figure {
    let c = dial(addr, msize);
    let data: Vec<u8> = (0..FILE_SIZE).map(|i| (i % 251) as u8).collect();
    let f = ok(c.create("", &format!("bench-w{msize}"), 0o644, om::RDWR | om::TRUNC));
    let (n, t) = repeat(secs, || ok(f.write_all_at(0, &data)));
    ok(f.remove());
    mib(n * FILE_SIZE as u64, t)
}

/// MiB/s reading an 8 MiB file over and over in iounit-sized Treads.
pub(crate) fn read_rate(addr: &str, msize: u32, secs: f64) -> Figure {
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
pub(crate) fn engine_alone(secs: f64) -> (f64, f64, f64) {
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

/// One row's figure on one server: the rate, and the CPU seconds per unit of it of the
/// server (one this run started) and of the client (this process: the same client code
/// drives every server, so its cost is shared by both columns).
pub(crate) struct Measured {
    pub(crate) rate: f64,
    pub(crate) server_cpu: Option<f64>,
    pub(crate) client_cpu: Option<f64>,
}

/// Measures `row` on `p`.
pub(crate) fn measure(row: &Row, p: &Peer, secs: f64) -> Option<Measured> {
    let before = p.pid.and_then(cpu_secs);
    let client_before = cpu_secs(std::process::id());
    let fig = (row.measure)(p, secs)?;
    let client_after = cpu_secs(std::process::id());
    // The connection is closed: let the lib9p peer's child end and be reaped.
    std::thread::sleep(Duration::from_millis(50));
    let after = p.pid.and_then(cpu_secs);
    let per = |b: Option<f64>, a: Option<f64>| b.zip(a).map(|(b, a)| (a - b) / fig.amount);
    Some(Measured {
        rate: fig.rate(),
        server_cpu: per(before, after),
        client_cpu: per(client_before, client_after),
    })
}

/// Measures a row on a server for a number of seconds (`None`: not on this server).
pub(crate) type Measure = Box<dyn Fn(&Peer, f64) -> Option<Figure>>;

/// One row of figures: what it measures and how.
pub(crate) struct Row {
    pub(crate) what: String,
    pub(crate) unit: &'static str,
    pub(crate) measure: Measure,
}

pub(crate) fn rows() -> Vec<Row> {
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

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
