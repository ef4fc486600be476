//! ninep-host driven by clients: python-9p and p9fs (written by others, run as python
//! scripts next to this file) and ninep-client. Missing python3 or modules fail these
//! tests; nothing is skipped.

use ninep_client::{dm, om, Client, Error, Stat};
use ninep_host::{big_byte, BIG_LEN};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

const OWNER: &str = "glenda";

/// A running ninep-host, killed on drop.
struct Host {
    child: Child,
    unix: PathBuf,
    tcp: String,
}

impl Host {
    fn start() -> Host {
        static N: AtomicU32 = AtomicU32::new(0);
        let unix = std::env::temp_dir().join(format!(
            "ninep-host-test-{}-{}.sock",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut child = Command::new(env!("CARGO_BIN_EXE_ninep-host"))
            .args(["--unix", unix.to_str().unwrap()])
            .args(["--tcp", "127.0.0.1:0", "--owner", OWNER])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start ninep-host");
        let mut tcp = None;
        let out = BufReader::new(child.stdout.take().unwrap());
        for line in out.lines() {
            let line = line.expect("ninep-host stdout");
            if let Some(a) = line.strip_prefix("tcp ") {
                tcp = Some(a.to_string());
            }
            if line == "ready" {
                break;
            }
        }
        Host {
            child,
            unix,
            tcp: tcp.expect("ninep-host printed no tcp address"),
        }
    }

    fn unix_addr(&self) -> String {
        format!("unix!{}", self.unix.display())
    }

    fn tcp_addr(&self) -> String {
        let (h, p) = self.tcp.rsplit_once(':').unwrap();
        format!("tcp!{h}!{p}")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.unix);
    }
}

fn run_python(script: &str, args: &[&str]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(script);
    let out = Command::new("python3")
        .arg(&path)
        .args(args)
        .output()
        .expect("python3 must be installed (scripts/setup installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

#[test]
fn python_9p_client() {
    let h = Host::start();
    run_python(
        "python9p_client.py",
        &[
            "--unix",
            h.unix.to_str().unwrap(),
            "--tcp",
            &h.tcp,
            "--owner",
            OWNER,
        ],
    );
}

#[test]
fn p9fs_client() {
    let h = Host::start();
    run_python("p9fs_client.py", &["--tcp", &h.tcp, "--owner", OWNER]);
}

fn remote(e: Error) -> String {
    match e {
        Error::Remote(s) => s,
        other => panic!("want a Rerror, got {other:?}"),
    }
}

fn dial(addr: &str, uname: &str) -> Client {
    let c = Client::dial_msize(addr, uname, "", 8192).expect("dial");
    c.set_timeout(Some(Duration::from_secs(20)));
    c
}

/// The python scripts' list, through ninep-client, over one transport.
fn same_list(addr: &str) {
    // version, attach
    let c = dial(addr, OWNER);
    assert_eq!(c.msize(), 8192);
    assert!(c.root_qid().is_dir());
    // walk: full and failing
    let f = c.walk("dir/a").unwrap();
    assert!(!f.qid().is_dir());
    assert_eq!(remote(c.walk("nope").err().unwrap()), "file does not exist");
    assert_eq!(
        remote(c.walk("dir/nope").err().unwrap()),
        "file does not exist"
    );
    // open, read
    let h = c.open("hello", om::READ).unwrap();
    assert_eq!(h.iounit(), 8192 - 24);
    assert_eq!(h.read_at(7, 5).unwrap(), b"world");
    let big = c.read_file("big").unwrap();
    assert_eq!(big.len(), BIG_LEN);
    assert!(big.iter().enumerate().all(|(i, b)| *b == big_byte(i)));
    // create, write
    let n = c.create("dir", "rust", 0o644, om::RDWR).unwrap();
    n.write_all_at(0, &big[..20_000]).unwrap();
    assert_eq!(n.read_at(19_990, 100).unwrap(), &big[19_990..20_000]);
    drop(n);
    let d = c.create("dir", "rdir", dm::DIR | 0o755, om::READ).unwrap();
    assert!(d.qid().is_dir());
    drop(d);
    assert_eq!(
        remote(c.create("dir", "rust", 0o644, om::READ).err().unwrap()),
        "file already exists"
    );
    // stat, wstat
    let st = c.stat("dir/rust").unwrap();
    assert_eq!(
        (st.length, st.mode, st.uid.as_str()),
        (20_000, 0o644, OWNER)
    );
    c.wstat("dir/rust", &Stat::dont_touch()).unwrap();
    let mut w = Stat::dont_touch();
    w.length = 3;
    w.name = "rust2".into();
    c.wstat("dir/rust", &w).unwrap();
    assert_eq!(c.stat("dir/rust2").unwrap().length, 3);
    let names: Vec<String> = c.ls("dir").unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["a", "b", "rust2", "rdir"]);
    // remove
    c.remove("dir/rust2").unwrap();
    c.remove("dir/rdir").unwrap();
    assert_eq!(
        remote(c.stat("dir/rust2").err().unwrap()),
        "file does not exist"
    );
    // a second attach, as someone else
    let other = c.attach("intruder", "").unwrap();
    let mut s = other.walk("secret").unwrap();
    assert_eq!(remote(s.open(om::READ).err().unwrap()), "permission denied");
    let mut m = other.walk("ro/motd").unwrap();
    assert_eq!(
        remote(m.open(om::WRITE).err().unwrap()),
        "permission denied"
    );
    assert_eq!(c.read_file("secret").unwrap(), b"owner only\n");
    // Tflush of a blocked read; the next record goes to the next read
    let wait = c.open("wait", om::READ).unwrap();
    let mut p = c.start_read(&wait, 0, 100).unwrap();
    assert!(p
        .wait_timeout(Duration::from_millis(100))
        .unwrap()
        .is_none());
    p.flush().unwrap();
    let q = c.open("wait", om::WRITE).unwrap();
    q.write_str("after flush").unwrap();
    assert_eq!(wait.read_at(0, 100).unwrap(), b"after flush");
    // a read blocked on one connection is answered by a write on another
    let c2 = dial(addr, OWNER);
    let w2 = c2.open("wait", om::READ).unwrap();
    let t = thread::spawn(move || w2.read_at(0, 100));
    assert_eq!(c.read_file("hello").unwrap(), b"hello, world\n");
    q.write_str("cross").unwrap();
    assert_eq!(t.join().unwrap().unwrap(), b"cross");
}

#[test]
fn ninep_client_over_unix() {
    let h = Host::start();
    same_list(&h.unix_addr());
    // a bare path dials too
    let c = Client::dial(h.unix.to_str().unwrap(), OWNER, "").unwrap();
    assert_eq!(c.msize(), ninep_client::DEFAULT_MSIZE);
}

#[test]
fn ninep_client_over_tcp() {
    let h = Host::start();
    same_list(&h.tcp_addr());
    let c = Client::dial(&h.tcp, OWNER, "").unwrap();
    assert_eq!(c.read_file("dir/b").unwrap(), b"beta\n");
}

/// Both transports' streams, one fresh connection each.
fn streams(h: &Host) -> [Box<dyn RawStream>; 2] {
    let u = UnixStream::connect(&h.unix).unwrap();
    let t = TcpStream::connect(&h.tcp).unwrap();
    [Box::new(u), Box::new(t)]
}

trait RawStream: std::io::Read + Write {
    fn set_timeout(&self, d: Duration);
}

impl RawStream for UnixStream {
    fn set_timeout(&self, d: Duration) {
        self.set_read_timeout(Some(d)).unwrap();
    }
}

impl RawStream for TcpStream {
    fn set_timeout(&self, d: Duration) {
        self.set_read_timeout(Some(d)).unwrap();
    }
}

/// A Tversion frame offering `msize`.
fn tversion(msize: u32) -> Vec<u8> {
    let v = b"9P2000";
    let size = 4 + 1 + 2 + 4 + 2 + v.len();
    let mut b = (size as u32).to_le_bytes().to_vec();
    b.push(100);
    b.extend_from_slice(&u16::MAX.to_le_bytes());
    b.extend_from_slice(&msize.to_le_bytes());
    b.extend_from_slice(&(v.len() as u16).to_le_bytes());
    b.extend_from_slice(v);
    b
}

/// Reads until end of file; Err if the host keeps the connection open past `wait`.
fn read_to_hangup(s: &mut dyn RawStream, wait: Duration) -> Result<Vec<u8>, String> {
    s.set_timeout(wait);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(got),
            Err(e) => return Err(format!("no hang-up after {wait:?} ({e}); got {got:02x?}")),
        }
    }
}

/// A socket has a hang-up: a frame larger than the session's msize ends the connection
/// (the client sees end of file at once), instead of every later request being dropped
/// in silence until the next Tversion. A new connection is served.
#[test]
fn a_frame_past_msize_hangs_up_the_socket() {
    let h = Host::start();
    for mut s in streams(&h) {
        s.write_all(&tversion(8192)).unwrap();
        let mut rversion = [0u8; 19];
        s.read_exact(&mut rversion).unwrap();
        assert_eq!(rversion[4], 101, "{rversion:02x?}");
        // A Twrite header claiming 9000 bytes, then a well-formed Tclunk the host must not
        // answer: it belongs to the broken stream.
        let mut big = 9000u32.to_le_bytes().to_vec();
        big.extend_from_slice(&[118, 1, 0]);
        s.write_all(&big).unwrap();
        // The host may hang up before this reaches it: a broken pipe is that hang-up.
        match s.write_all(&[11, 0, 0, 0, 120, 2, 0, 9, 0, 0, 0]) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ) => {}
            Err(e) => panic!("writing the Tclunk: {e}"),
        }
        let rest = read_to_hangup(&mut *s, Duration::from_secs(5)).unwrap();
        assert_eq!(rest, b"");
    }
    let c = dial(&h.unix_addr(), OWNER);
    assert_eq!(c.read_file("hello").unwrap(), b"hello, world\n");
}

/// Garbage first: what can never be a frame (a size below the header or past any msize)
/// hangs up; an even type of a plausible size is a request, answered with Rerror, and a
/// Tversion after it starts the session. On both transports.
#[test]
fn malformed_frame_then_tversion() {
    let h = Host::start();
    let ends: &[&[u8]] = &[
        b"\x03\x00\x00\x00",
        b"\xff\xff\xff\x7fnot a frame at all",
        &[0u8; 100],
    ];
    for g in ends {
        for mut s in streams(&h) {
            s.write_all(g).unwrap();
            read_to_hangup(&mut *s, Duration::from_secs(5)).unwrap();
        }
    }
    let g = b"\x0b\x00\x00\x00\x06\x01\x00abcd";
    let s = UnixStream::connect(&h.unix).unwrap();
    (&s).write_all(g).unwrap();
    let c = Client::over_msize(s, OWNER, "", 8192).unwrap();
    assert_eq!(c.read_file("hello").unwrap(), b"hello, world\n");
    let mut s = TcpStream::connect(&h.tcp).unwrap();
    s.write_all(g).unwrap();
    let c = Client::over_msize(s, OWNER, "", 8192).unwrap();
    assert_eq!(c.read_file("dir/a").unwrap(), b"alpha\n");
}

#[test]
fn a_closed_connection_clunks_its_fids_and_frees_its_reads() {
    let h = Host::start();
    for _ in 0..5 {
        let s = UnixStream::connect(&h.unix).unwrap();
        let c = Client::over(s.try_clone().unwrap(), OWNER, "").unwrap();
        let w = c.open("wait", om::READ).unwrap();
        let p = c.start_read(&w, 0, 10).unwrap();
        // The connection goes away under the client: no clunk, no flush is sent.
        s.shutdown(std::net::Shutdown::Both).unwrap();
        assert!(matches!(p.wait(), Err(Error::Io(_))));
    }
    // Give the host's reader threads a moment to see the closes.
    thread::sleep(Duration::from_millis(200));
    // The records go to live readers, not to the reads of connections gone.
    let c = dial(&h.unix_addr(), OWNER);
    let w = c.open("wait", om::RDWR).unwrap();
    w.write_str("kept").unwrap();
    assert_eq!(w.read_at(0, 10).unwrap(), b"kept");
}

/// Random bytes (and random-looking frames) from many connections at once: the host
/// keeps serving, and a good client afterwards gets right answers.
#[test]
fn garbage_storm_leaves_the_host_serving() {
    let h = Host::start();
    let threads: Vec<_> = (0..6u64)
        .map(|t| {
            let path = h.unix.clone();
            thread::spawn(move || {
                // xorshift: deterministic per thread
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (t + 1);
                let mut next = move || {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x
                };
                let mut s = UnixStream::connect(&path).unwrap();
                for _ in 0..200 {
                    let len = (next() % 64) as usize + 1;
                    let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                    if next() % 3 == 0 && len >= 7 {
                        // A plausible header: small size, a T-message type.
                        b[..4].copy_from_slice(&(len as u32).to_le_bytes());
                        b[4] = 100 + 2 * (next() % 14) as u8;
                    }
                    if s.write_all(&b).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let c = dial(&h.unix_addr(), OWNER);
    assert_eq!(c.read_file("hello").unwrap(), b"hello, world\n");
    assert_eq!(c.ls("dir").unwrap().len(), 2);
}

/// A client that sends many large reads before reading any reply fills the socket: the
/// host's writer waits (its socket is non-blocking while the reader polls) and every
/// reply arrives whole and in order once the client reads. On both transports.
#[test]
fn a_client_reading_late_gets_every_reply() {
    use protocol::{Fcall, Wnames, NOFID};
    let frame = |tag: u16, f: Fcall<'_>| {
        let mut b = vec![0u8; 256];
        let n = f.encode(tag, &mut b).unwrap();
        b.truncate(n);
        b
    };
    const MSIZE: u32 = 64 * 1024 + 24;
    const READS: u16 = 64;
    let h = Host::start();
    for mut s in streams(&h) {
        s.set_timeout(Duration::from_secs(30));
        let mut req = tversion(MSIZE);
        let attach = Fcall::Tattach {
            fid: 0,
            afid: NOFID,
            uname: OWNER,
            aname: "",
        };
        req.extend(frame(1, attach));
        let big = ["big"];
        let wnames = Wnames::new(&big).unwrap();
        req.extend(frame(
            2,
            Fcall::Twalk {
                fid: 0,
                newfid: 1,
                wnames,
            },
        ));
        req.extend(frame(
            3,
            Fcall::Topen {
                fid: 1,
                mode: om::READ,
            },
        ));
        for i in 0..READS {
            let offset = (u64::from(i) * 65536) % BIG_LEN as u64;
            let count = 65536;
            req.extend(frame(
                10 + i,
                Fcall::Tread {
                    fid: 1,
                    offset,
                    count,
                },
            ));
        }
        s.write_all(&req).unwrap();
        // 4 MiB of replies wait for us, far more than the socket holds.
        thread::sleep(Duration::from_millis(300));
        let mut tags = Vec::new();
        for _ in 0..4 + READS {
            let mut size = [0u8; 4];
            s.read_exact(&mut size).unwrap();
            let mut f = size.to_vec();
            f.resize(u32::from_le_bytes(size) as usize, 0);
            s.read_exact(&mut f[4..]).unwrap();
            let (tag, r) = Fcall::decode(&f, MSIZE).unwrap();
            if let Fcall::Rread { data } = r {
                let off = (u64::from(tag - 10) * 65536) as usize % BIG_LEN;
                assert_eq!(data.len(), 65536);
                assert!(data
                    .iter()
                    .enumerate()
                    .all(|(i, b)| *b == big_byte(off + i)));
            } else {
                assert!(!matches!(r, Fcall::Rerror { .. }), "{r:?}");
            }
            tags.push(tag);
        }
        let want: Vec<u16> = [u16::MAX, 1, 2, 3]
            .into_iter()
            .chain(10..10 + READS)
            .collect();
        assert_eq!(tags, want);
    }
}
