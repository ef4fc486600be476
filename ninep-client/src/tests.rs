//! The client against the ninep engine serving memfs over a socketpair.

use super::*;
use ninep::memfs::{Memfs, ROOT};
use ninep::{Limits, Session};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::thread;

fn tree() -> Memfs {
    let mut fs = Memfs::new("glenda");
    fs.add_file(ROOT, "hello", 0o644, "glenda", b"hello, world\n")
        .unwrap();
    fs.add_file(ROOT, "secret", 0o600, "glenda", b"x").unwrap();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs.add_file(ROOT, "big", 0o666, "glenda", &big).unwrap();
    let d = fs.mkdir(ROOT, "vmx", 0o777, "glenda").unwrap();
    fs.add_queue(d, "wait", 0o666, "glenda").unwrap();
    fs
}

/// Serves one connection from a thread: every chunk received is processed (which also
/// retries pending reads) and the replies are sent, until none is held back by the
/// session's output limit.
fn serve(mut s: UnixStream) {
    thread::spawn(move || {
        let mut fs = tree();
        let mut sess: Session<Memfs> = Session::new(1, Limits::default());
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let mut off = 0;
            loop {
                off += sess.input(&buf[off..n]);
                sess.process(&mut fs);
                let out = sess.output().to_vec();
                if s.write_all(&out).is_err() {
                    return;
                }
                sess.consume_output(out.len());
                if off == n && !sess.stalled() {
                    break;
                }
            }
        }
    });
}

fn connect_msize(uname: &str, msize: u32) -> Client {
    let (a, b) = UnixStream::pair().unwrap();
    serve(b);
    let c = Client::over_msize(a, uname, "", msize).unwrap();
    c.set_timeout(Some(Duration::from_secs(20)));
    c
}

fn connect() -> Client {
    connect_msize("glenda", DEFAULT_MSIZE)
}

/// A client with a timeout (its waits go through the reader thread) and one without
/// (a caller alone reads its own reply): the same behaviour is asked of both.
fn clients() -> [Client; 2] {
    let untimed = connect();
    untimed.set_timeout(None);
    [connect(), untimed]
}

#[test]
fn dial_strings_parse() {
    assert!(matches!(parse_addr("unix!/tmp/x").unwrap(), Addr::Unix(p) if p == "/tmp/x"));
    assert!(matches!(parse_addr("/tmp/x").unwrap(), Addr::Unix(p) if p == "/tmp/x"));
    assert!(
        matches!(parse_addr("tcp!127.0.0.1!564").unwrap(), Addr::Tcp(a) if a == "127.0.0.1:564")
    );
    assert!(matches!(parse_addr("localhost:564").unwrap(), Addr::Tcp(a) if a == "localhost:564"));
    assert!(parse_addr("carrier-pigeon").is_err());
    assert!(parse_addr("tcp!a!b!c").is_err());
}

#[test]
fn version_attach_read_stat_ls() {
    let c = connect();
    assert_eq!(c.msize(), DEFAULT_MSIZE);
    assert!(c.root_qid().is_dir());
    assert_eq!(c.read_file("hello").unwrap(), b"hello, world\n");
    assert_eq!(c.read_file("/hello").unwrap(), b"hello, world\n");
    let st = c.stat("hello").unwrap();
    assert_eq!(
        (st.name.as_str(), st.uid.as_str(), st.length, st.mode),
        ("hello", "glenda", 13, 0o644)
    );
    let names: Vec<String> = c.ls("/").unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["hello", "secret", "big", "vmx"]);
    assert!(c.stat("vmx").unwrap().is_dir());
    assert_eq!(c.stat("vmx/../hello").unwrap().name, "hello");
}

#[test]
fn remote_errors_are_exact() {
    let c = connect();
    let e = c.open("nope", om::READ).err().unwrap();
    assert_eq!(e.remote(), Some("file does not exist"));
    assert_eq!(e.to_string(), "file does not exist");
    // A walk that fails past its first name is a partial walk.
    let e = c.walk("vmx/nope").err().unwrap();
    assert_eq!(e.remote(), Some("file does not exist"));
    let e = c.open("vmx", om::WRITE).err().unwrap();
    assert_eq!(e.remote(), Some("file is a directory"));
    let f = c.open("hello", om::READ).unwrap();
    assert_eq!(
        f.write_at(0, b"x").err().unwrap().remote(),
        Some("inappropriate use of fd")
    );
}

#[test]
fn second_attach_has_its_own_user() {
    let c = connect();
    let other = c.attach("other", "").unwrap();
    let mut f = other.walk("secret").unwrap();
    assert_eq!(
        f.open(om::READ).err().unwrap().remote(),
        Some("permission denied")
    );
    let mut h = other.walk("hello").unwrap();
    h.open(om::READ).unwrap();
    assert_eq!(h.read(0, 5).unwrap(), b"hello");
    // The first attach is untouched.
    assert_eq!(c.read_file("secret").unwrap(), b"x");
}

#[test]
fn write_create_wstat_remove() {
    let c = connect();
    let f = c.create("vmx", "new", 0o644, om::RDWR).unwrap();
    assert_eq!(f.iounit(), c.max_io());
    f.write_all_at(0, b"abcdef").unwrap();
    assert_eq!(f.read_at(2, 3).unwrap(), b"cde");
    f.write_str("XY").unwrap();
    assert_eq!(f.read_all().unwrap(), b"XYcdef");
    f.clunk().unwrap();
    let mut st = Stat::dont_touch();
    st.length = 2;
    c.wstat("vmx/new", &st).unwrap();
    let mut st = Stat::dont_touch();
    st.name = "renamed".into();
    st.mode = 0o600;
    c.wstat("vmx/new", &st).unwrap();
    let st = c.stat("vmx/renamed").unwrap();
    assert_eq!((st.length, st.mode), (2, 0o600));
    // The all-don't-touch wstat is a sync.
    c.wstat("vmx/renamed", &Stat::dont_touch()).unwrap();
    let d = c.create("vmx", "sub", dm::DIR | 0o755, om::READ).unwrap();
    assert!(d.qid().is_dir());
    drop(d);
    c.remove("vmx/renamed").unwrap();
    c.remove("vmx/sub").unwrap();
    assert_eq!(
        c.stat("vmx/renamed").err().unwrap().remote(),
        Some("file does not exist")
    );
}

#[test]
fn big_reads_and_writes_in_iounit_pieces() {
    for msize in [256, 8192, DEFAULT_MSIZE] {
        let c = connect_msize("glenda", msize);
        assert_eq!(c.msize(), msize);
        let data = c.read_file("big").unwrap();
        assert_eq!(data.len(), 200_000);
        assert!(data
            .iter()
            .enumerate()
            .all(|(i, b)| *b == (i as u32 * 7 % 251) as u8));
        let f = c.open("big", om::WRITE | om::TRUNC).unwrap();
        assert_eq!(f.write_at(0, &data).unwrap(), (msize - 24) as usize);
        f.write_all_at(0, &data[..100_000]).unwrap();
        drop(f);
        assert_eq!(c.read_file("big").unwrap(), &data[..100_000]);
    }
}

#[test]
fn blocked_read_does_not_hold_up_others() {
    for c in clients() {
        let w = c.open("vmx/wait", om::READ).unwrap();
        let c2 = c.clone();
        let reader = thread::spawn(move || w.read_at(0, 100));
        // Plenty of other traffic while the read is blocked on the server.
        for _ in 0..50 {
            assert_eq!(c.read_file("hello").unwrap(), b"hello, world\n");
        }
        assert!(!reader.is_finished());
        let q = c2.open("vmx/wait", om::WRITE).unwrap();
        q.write_str("exited 0").unwrap();
        assert_eq!(reader.join().unwrap().unwrap(), b"exited 0");
    }
}

#[test]
fn many_threads_share_a_connection() {
    for c in clients() {
        let ts: Vec<_> = (0..8)
            .map(|i| {
                let c = c.clone();
                thread::spawn(move || {
                    let name = format!("f{i}");
                    let f = c.create("vmx", &name, 0o644, om::RDWR).unwrap();
                    for j in 0..50u32 {
                        f.write_at(0, &j.to_le_bytes()).unwrap();
                        assert_eq!(f.read_at(0, 4).unwrap(), j.to_le_bytes());
                    }
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(c.ls("vmx").unwrap().len(), 9);
    }
}

#[test]
fn flush_a_blocked_read() {
    for c in clients() {
        let w = c.open("vmx/wait", om::READ).unwrap();
        let mut p = c.start_read(&w, 0, 100).unwrap();
        assert!(p
            .wait_timeout(Duration::from_millis(100))
            .unwrap()
            .is_none());
        p.flush().unwrap();
        // The flushed read took nothing: the next record goes to the next read.
        let q = c.open("vmx/wait", om::WRITE).unwrap();
        q.write_str("one").unwrap();
        let p = c.start_read(&w, 0, 100).unwrap();
        assert_eq!(p.wait().unwrap(), b"one");
        // Flushing a read that was already answered is harmless too.
        q.write_str("two").unwrap();
        let p = c.start_read(&w, 0, 100).unwrap();
        thread::sleep(Duration::from_millis(50));
        p.flush().unwrap();
        assert_eq!(c.read_file("hello").unwrap(), b"hello, world\n");
    }
}

#[test]
fn clunk_aborts_a_blocked_read() {
    for c in clients() {
        let w = c.open("vmx/wait", om::READ).unwrap();
        let p = c.start_read(&w, 0, 100).unwrap();
        w.clunk().unwrap();
        assert_eq!(p.wait().err().unwrap().remote(), Some("interrupted"));
    }
}

#[test]
fn fids_are_clunked_on_drop() {
    for c in clients() {
        for _ in 0..3000 {
            // More than the server's fid limit (1024) if drops leaked fids.
            let f = c.open("hello", om::READ).unwrap();
            drop(f);
        }
        assert_eq!(c.read_file("hello").unwrap(), b"hello, world\n");
    }
}

#[test]
fn a_dead_server_fails_requests() {
    let (a, b) = UnixStream::pair().unwrap();
    serve(b.try_clone().unwrap());
    let c = Client::over(a, "glenda", "").unwrap();
    let w = c.open("vmx/wait", om::READ).unwrap();
    let p = c.start_read(&w, 0, 10).unwrap();
    b.shutdown(std::net::Shutdown::Both).unwrap();
    assert!(matches!(p.wait(), Err(Error::Io(_))));
    assert!(matches!(c.read_file("hello"), Err(Error::Io(_))));
}

#[test]
fn garbage_then_a_fresh_session() {
    let (mut a, b) = UnixStream::pair().unwrap();
    serve(b);
    a.write_all(&[0xff, 0x00, 0x13, 0x37, 1, 2, 3, 4, 5, 6, 7, 8, 9])
        .unwrap();
    let c = Client::over(a, "glenda", "").unwrap();
    assert_eq!(c.read_file("hello").unwrap(), b"hello, world\n");
}

#[test]
fn a_timeout_does_not_wedge_the_connection() {
    let c = connect();
    c.set_timeout(Some(Duration::from_millis(100)));
    let w = c.open("vmx/wait", om::READ).unwrap();
    let e = w.read_at(0, 10).err().unwrap();
    assert!(matches!(&e, Error::Io(io) if io.kind() == io::ErrorKind::TimedOut));
    c.set_timeout(None);
    assert_eq!(c.read_file("hello").unwrap(), b"hello, world\n");
}

#[test]
fn noise_before_rversion_is_skipped() {
    // A server behind a serial line: boot noise, then the 9P server.
    let (a, b) = UnixStream::pair().unwrap();
    let mut noise = b.try_clone().unwrap();
    noise
        .write_all(b"SeaBIOS (version 1.16)\r\nBooting from DVD/CD...\r\n\xff\xff\x00")
        .unwrap();
    serve(b);
    let c = Client::over(a, "glenda", "").unwrap();
    assert_eq!(c.read_file("hello").unwrap(), b"hello, world\n");
}

#[test]
fn rerror_to_tversion_is_reported() {
    let (a, mut b) = UnixStream::pair().unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 64];
        let _ = b.read(&mut buf);
        let mut out = [0u8; 64];
        let n = protocol::Fcall::Rerror { ename: "go away" }
            .encode(protocol::NOTAG, &mut out)
            .unwrap();
        b.write_all(&out[..n]).unwrap();
        thread::sleep(Duration::from_millis(200));
    });
    match Client::over(a, "glenda", "") {
        Err(e) => assert_eq!(e.remote(), Some("go away")),
        Ok(_) => panic!("dial succeeded against a refusing server"),
    }
}

#[test]
fn a_write_in_flight_with_a_blocked_read() {
    for c in clients() {
        let w = c.open("vmx/wait", om::READ).unwrap();
        let p = c.start_read(&w, 0, 100).unwrap();
        // The write goes out while the read is still blocked; its reply is collected after
        // the read's, as a pipelining client does.
        let q = c.open("vmx/wait", om::WRITE).unwrap();
        let pw = c.start_write(&q, 0, b"line").unwrap();
        assert_ne!(pw.tag(), p.tag());
        assert_eq!(p.wait().unwrap(), b"line");
        assert_eq!(pw.wait().unwrap(), 4);
        // An error comes back through the pending write.
        let r = c.open("hello", om::READ).unwrap();
        let pw = c.start_write(&r, 0, b"x").unwrap();
        assert!(pw.wait().unwrap_err().remote().is_some());
    }
}

#[test]
fn replies_nobody_waits_for_are_still_read() {
    for c in clients() {
        let done = std::sync::mpsc::channel();
        let c2 = c.clone();
        thread::spawn(move || {
            let f = c2.open("big", om::RDWR).unwrap();
            // Far more reply bytes, then request bytes, than the sockets hold, with no
            // reply waited for: were the replies left unread, the server would stop
            // reading and these sends would block for good.
            for _ in 0..200 {
                drop(c2.start_read(&f, 0, 8192).unwrap());
            }
            let data = [0x5au8; 8000];
            for _ in 0..200 {
                drop(c2.start_write(&f, 0, &data).unwrap());
            }
            let _ = done.0.send(c2.read_file("hello").unwrap());
        });
        let got = done.1.recv_timeout(Duration::from_secs(20));
        assert_eq!(got.unwrap(), b"hello, world\n");
    }
}
