//! The engine driven byte for byte, as a client on a stream would.

use ninep::memfs::{Memfs, ROOT};
use ninep::testing::{err, R};
use ninep::{Limits, Session};
use protocol::{om, Dir, DirIter, Fcall, Wnames, NOFID, NOTAG};

type Client = ninep::testing::Client<Memfs>;

/// The tree every test starts from, and a session on it.
trait Fixture {
    fn new() -> Self;
    fn session() -> Self;
}

impl Fixture for Client {
    fn new() -> Self {
        let mut fs = Memfs::new("glenda");
        fs.add_file(ROOT, "hello", 0o644, "glenda", b"hello, world\n")
            .unwrap();
        fs.add_file(ROOT, "secret", 0o600, "glenda", b"x").unwrap();
        let d = fs.mkdir(ROOT, "vmx", 0o555, "glenda").unwrap();
        fs.add_queue(d, "wait", 0o444, "glenda").unwrap();
        fs.add_file(d, "ctl", 0o666, "glenda", b"").unwrap();
        Client::connect(fs)
    }

    fn session() -> Self {
        let mut c = Client::new();
        assert_eq!(c.version(8192), R::Version(8192, "9P2000".into()));
        assert_eq!(c.attach(0, "glenda", ""), R::Open(ROOT));
        c
    }
}

#[test]
fn version_negotiates() {
    let mut c = Client::new();
    assert_eq!(
        c.rpc(
            NOTAG,
            Fcall::Tversion {
                msize: 1 << 30,
                version: "9P2000.L"
            }
        ),
        R::Version(Limits::default().max_msize, "9P2000".into())
    );
    assert_eq!(
        c.rpc(
            NOTAG,
            Fcall::Tversion {
                msize: 8192,
                version: "10P"
            }
        ),
        R::Version(8192, "unknown".into())
    );
    // Not versioned: everything else is refused.
    assert_eq!(c.attach(0, "glenda", ""), err("version not negotiated"));
    assert_eq!(c.version(100), err("bad arg in system call"));
    assert_eq!(c.version(256), R::Version(256, "9P2000".into()));
}

/// Input held is one frame of the msize agreed: a session at 8 KiB takes no more than
/// that (and a header) of pipelined requests, not a largest message's worth; a new
/// Tversion lifts the bound until it is answered.
#[test]
fn input_held_follows_the_msize_agreed() {
    let mut c = Client::new();
    let hdr = 7;
    assert_eq!(
        c.s.input_space(),
        Limits::default().max_msize as usize + hdr
    );
    assert_eq!(c.version(8192), R::Version(8192, "9P2000".into()));
    assert_eq!(c.attach(0, "glenda", ""), R::Open(ROOT));
    // Tstats nobody reads the replies of, until the output limit holds the rest back.
    let mut stats = Vec::new();
    for tag in 0..40_000u16 {
        let mut b = [0u8; 16];
        let n = Fcall::Tstat { fid: 0 }.encode(tag, &mut b).unwrap();
        stats.extend_from_slice(&b[..n]);
    }
    let mut taken = 0;
    for _ in 0..1000 {
        taken += c.s.input(&stats[taken..]);
        c.s.process(&mut c.ns);
    }
    assert!(taken < stats.len(), "every request taken");
    assert!(c.s.input_space() <= 8192 + hdr);
}

#[test]
fn auth_is_refused_and_attach_works() {
    let mut c = Client::new();
    c.version(8192);
    let r = c.rpc(
        1,
        Fcall::Tauth {
            afid: 5,
            uname: "glenda",
            aname: "",
        },
    );
    assert_eq!(r, err("authentication not required"));
    assert_eq!(
        c.attach(0, "glenda", "nope"),
        err("unknown specifier in attach")
    );
    assert!(matches!(c.attach(0, "glenda", "vmx"), R::Open(_)));
    assert_eq!(c.attach(0, "glenda", ""), err("fid in use"));
    // A second attach with another uname.
    assert_eq!(c.attach(1, "other", ""), R::Open(ROOT));
}

#[test]
fn walk_semantics() {
    let mut c = Client::session();
    // Clone.
    assert_eq!(c.walk(0, 1, &[]), R::Qids(vec![]));
    assert_eq!(c.walk(0, 1, &[]), err("fid in use"));
    // Full walk.
    let R::Qids(q) = c.walk(0, 2, &["vmx", "wait"]) else {
        panic!()
    };
    assert_eq!(q.len(), 2);
    // First element fails: Rerror. Later element fails: partial qids, no newfid.
    assert_eq!(c.walk(0, 3, &["nope"]), err("file does not exist"));
    assert_eq!(c.walk(0, 3, &["vmx", "nope", "x"]), R::Qids(vec![q[0]]));
    assert_eq!(c.clunk(3), err("unknown fid"));
    // Walk from a file: not a directory.
    assert_eq!(c.walk(2, 3, &["x"]), err("not a directory"));
    // newfid == fid moves the fid; .. goes back up.
    assert_eq!(c.walk(1, 1, &["vmx"]), R::Qids(vec![q[0]]));
    assert_eq!(c.walk(1, 1, &[".."]), R::Qids(vec![ROOT]));
    // An open fid cannot be walked.
    c.open(1, om::READ);
    assert_eq!(c.walk(1, 4, &[]), err("file already open"));
    assert_eq!(c.walk(9, 4, &[]), err("unknown fid"));
}

#[test]
fn read_write_and_modes() {
    let mut c = Client::session();
    c.walk(0, 1, &["hello"]);
    assert_eq!(c.read(1, 0, 100), err("file not open"));
    assert!(matches!(c.open(1, om::READ), R::Open(_)));
    assert_eq!(c.open(1, om::READ), err("file already open"));
    assert_eq!(c.read(1, 0, 5), R::Data(b"hello".to_vec()));
    assert_eq!(c.read(1, 7, 100), R::Data(b"world\n".to_vec()));
    assert_eq!(c.read(1, 100, 100), R::Data(vec![]));
    assert_eq!(c.write(1, 0, b"x"), err("inappropriate use of fd"));
    c.walk(0, 2, &["hello"]);
    c.open(2, om::RDWR | om::TRUNC);
    assert_eq!(c.write(2, 3, b"abc"), R::Count(3));
    assert_eq!(c.read(2, 0, 100), R::Data(b"\0\0\0abc".to_vec()));
    // Directories cannot be opened for writing.
    c.walk(0, 3, &[]);
    assert_eq!(c.open(3, om::WRITE), err("file is a directory"));
    assert_eq!(c.open(3, 0x80), err("bad open mode"));
}

#[test]
fn permissions_follow_uname() {
    let mut c = Client::session();
    c.attach(9, "other", "");
    c.walk(9, 1, &["secret"]);
    assert_eq!(c.open(1, om::READ), err("permission denied"));
    c.walk(9, 2, &["hello"]);
    assert_eq!(c.open(2, om::WRITE), err("permission denied"));
    assert!(matches!(c.open(2, om::READ), R::Open(_)));
    c.walk(0, 3, &["secret"]);
    assert!(matches!(c.open(3, om::RDWR), R::Open(_)));
}

#[test]
fn directory_reads_whole_records_with_following_offsets() {
    let mut c = Client::session();
    for i in 0..40 {
        c.ns.add_file(ROOT, &format!("file{i:02}"), 0o644, "glenda", b"")
            .unwrap();
    }
    c.walk(0, 1, &[]);
    c.open(1, om::READ);
    let mut names = Vec::new();
    let mut off = 0u64;
    loop {
        let R::Data(d) = c.read(1, off, 200) else {
            panic!()
        };
        if d.is_empty() {
            break;
        }
        assert!(d.len() <= 200);
        for e in DirIter::new(&d) {
            names.push(e.unwrap().name.to_string());
        }
        off += d.len() as u64;
    }
    assert_eq!(names.len(), 43);
    assert_eq!(&names[..3], ["hello", "secret", "vmx"]);
    assert_eq!(c.read(1, 3, 200), err("bad offset in directory read"));
    // Offset 0 starts over.
    let R::Data(d) = c.read(1, 0, 8000) else {
        panic!()
    };
    assert_eq!(DirIter::new(&d).count(), 43);
    // Too small for one record.
    assert_eq!(c.read(1, 0, 10), err("bad arg in system call"));
}

#[test]
fn create_remove_stat_wstat() {
    let mut c = Client::session();
    c.walk(0, 1, &[]);
    let r = c.create(1, "new", 0o644, om::RDWR);
    assert!(matches!(r, R::Open(_)));
    assert_eq!(c.write(1, 0, b"data"), R::Count(4));
    assert!(matches!(c.rpc(8, Fcall::Tstat { fid: 1 }), R::Stat(n, 4, ..) if n == "new"));
    c.walk(0, 2, &[]);
    let r = c.create(2, "new", 0o644, 0);
    assert_eq!(r, err("file already exists"));
    let r = c.create(2, "..", 0o644, 0);
    assert_eq!(r, err("illegal name"));
    // The all-don't-touch wstat is a no-op; length-only truncates (9pfuse does both).
    c.walk(0, 3, &["new"]);
    assert_eq!(
        c.rpc(
            9,
            Fcall::Twstat {
                fid: 3,
                stat: Dir::DONT_TOUCH
            }
        ),
        R::Ok
    );
    let mut d = Dir::DONT_TOUCH;
    d.length = 1;
    assert_eq!(c.rpc(9, Fcall::Twstat { fid: 3, stat: d }), R::Ok);
    assert!(matches!(c.rpc(8, Fcall::Tstat { fid: 3 }), R::Stat(n, 1, ..) if n == "new"));
    // Another user may not wstat.
    c.attach(10, "other", "");
    c.walk(10, 11, &["new"]);
    assert_eq!(
        c.rpc(9, Fcall::Twstat { fid: 11, stat: d }),
        err("permission denied")
    );
    // Remove clunks the fid whatever happens.
    assert_eq!(c.rpc(10, Fcall::Tremove { fid: 3 }), R::Ok);
    assert_eq!(c.clunk(3), err("unknown fid"));
    assert_eq!(c.walk(0, 3, &["new"]), err("file does not exist"));
    c.walk(0, 4, &["vmx"]);
    assert_eq!(
        c.rpc(10, Fcall::Tremove { fid: 4 }),
        err("directory not empty")
    );
    assert_eq!(c.clunk(4), err("unknown fid"));
}

#[test]
fn orclose_removes_on_clunk() {
    let mut c = Client::session();
    c.walk(0, 1, &[]);
    c.create(1, "tmp", 0o644, om::WRITE | om::RCLOSE);
    assert!(c.walk(0, 2, &["tmp"]) != err("file does not exist"));
    c.clunk(2);
    c.clunk(1);
    assert_eq!(c.walk(0, 2, &["tmp"]), err("file does not exist"));
}

/// open(5): a directory may not be written, truncated or removed on close, and Plan 9
/// servers allow only OREAD on one. ORCLOSE was accepted and removed the directory at
/// clunk; OEXEC was accepted.
#[test]
fn directories_open_only_for_reading() {
    let mut c = Client::session();
    c.walk(0, 1, &[]);
    c.create(1, "d", 0x8000_0000 | 0o777, om::READ);
    c.clunk(1);
    for mode in [
        om::RCLOSE,
        om::READ | om::RCLOSE,
        om::EXEC,
        om::WRITE,
        om::RDWR,
        om::TRUNC,
    ] {
        c.walk(0, 1, &["d"]);
        assert_eq!(
            c.open(1, mode),
            err("file is a directory"),
            "mode {mode:#x}"
        );
        c.clunk(1);
    }
    assert!(matches!(c.walk(0, 1, &["d"]), R::Qids(q) if q.len() == 1));
    assert!(matches!(c.open(1, om::READ), R::Open(_)));
    c.clunk(1);
    // Nor is one created opened any other way.
    for mode in [om::RCLOSE, om::EXEC, om::WRITE] {
        c.walk(0, 2, &[]);
        let r = c.create(2, "e", 0x8000_0000 | 0o777, mode);
        assert_eq!(r, err("file is a directory"), "mode {mode:#x}");
        c.clunk(2);
        assert_eq!(c.walk(0, 2, &["e"]), err("file does not exist"));
    }
    // On a file, OEXEC is a matter of permission (hello is 0644).
    c.walk(0, 3, &["hello"]);
    assert_eq!(c.open(3, om::EXEC), err("permission denied"));
}

/// stat(5): type, dev, qid and muid cannot be changed by wstat; trying is an error and
/// nothing of that wstat is applied. Their current values, or "don't touch", are fine.
/// They used to be answered Rwstat and silently ignored.
#[test]
fn wstat_cannot_change_type_dev_qid_muid() {
    let mut c = Client::session();
    c.walk(0, 1, &["hello"]);
    let st = c.stat_record(1);
    let (qid, muid) = (st.qid, st.muid);
    let base = Dir {
        mode: 0o600,
        ..Dir::DONT_TOUCH
    };
    let mut bad = Vec::new();
    bad.push((Dir { ty: 1, ..base }, "wstat -- attempt to change type"));
    bad.push((Dir { dev: 2, ..base }, "wstat -- attempt to change dev"));
    for q in [
        protocol::Qid { ty: 0x80, ..qid },
        protocol::Qid {
            version: qid.version + 1,
            ..qid
        },
        protocol::Qid { path: 99, ..qid },
        protocol::Qid {
            path: 99,
            ..Dir::DONT_TOUCH.qid
        },
    ] {
        bad.push((Dir { qid: q, ..base }, "wstat -- attempt to change qid"));
    }
    bad.push((
        Dir {
            muid: "other",
            ..base
        },
        "wstat -- attempt to change muid",
    ));
    for (d, e) in bad {
        assert_eq!(c.rpc(9, Fcall::Twstat { fid: 1, stat: d }), err(e), "{d:?}");
    }
    // Nothing applied: the mode is still 0644, so another user may read.
    c.attach(10, "other", "");
    c.walk(10, 11, &["hello"]);
    assert!(matches!(c.open(11, om::READ), R::Open(_)));
    // The current values are not a change.
    let same = Dir {
        ty: 0,
        dev: 0,
        qid,
        muid: &muid,
        ..base
    };
    assert_eq!(c.rpc(9, Fcall::Twstat { fid: 1, stat: same }), R::Ok);
    c.walk(10, 12, &["hello"]);
    assert_eq!(c.open(12, om::READ), err("permission denied"));
}

#[test]
fn pending_read_flush_and_clunk() {
    let mut c = Client::session();
    c.walk(0, 1, &["vmx", "wait"]);
    c.open(1, om::READ);
    // A read that waits does not block other requests.
    c.start_read(20, 1, 100);
    assert_eq!(c.replies(), vec![]);
    assert_eq!(c.walk(0, 2, &["vmx", "wait"]), R::Qids(vec![3, 4]));
    c.open(2, om::READ);
    c.start_read(21, 2, 100);
    // A duplicate tag is refused, the pending one kept.
    assert_eq!(c.rpc(21, Fcall::Tclunk { fid: 99 }), err("duplicate tag"));
    // Tflush of a pending read: Rflush and never a reply to it.
    assert_eq!(c.rpc(22, Fcall::Tflush { oldtag: 20 }), R::Ok);
    // Write to the queue: the remaining read (tag 21) completes.
    let qfid = {
        c.walk(0, 3, &["vmx", "wait"]);
        3
    };
    c.ns.add_file(ROOT, "unused", 0o644, "glenda", b"").unwrap();
    // Memfs queues are written through the tree directly, as the kernel's VM exits are.
    use ninep::Tree;
    let ctx = ninep::Ctx {
        uname: "glenda",
        session: 1,
    };
    let mut node = 4u64;
    c.ns.write(&ctx, &mut node, 0, b"exit line").unwrap();
    c.process();
    assert_eq!(c.replies(), vec![(21, R::Data(b"exit line".to_vec()))]);
    // Clunk of a fid with a pending read aborts it with an error, then Rclunk.
    c.start_read(23, 2, 100);
    c.send(24, Fcall::Tclunk { fid: 2 });
    assert_eq!(c.replies(), vec![(23, err("interrupted")), (24, R::Ok)]);
    c.clunk(qfid);
}

#[test]
fn tversion_resets_the_session() {
    let mut c = Client::session();
    c.walk(0, 1, &["vmx", "wait"]);
    c.open(1, om::READ);
    c.start_read(20, 1, 100);
    c.walk(0, 2, &[]);
    c.create(2, "tmp", 0o644, om::WRITE | om::RCLOSE);
    // The pending read is aborted without a reply; the ORCLOSE file goes.
    assert_eq!(c.version(8192), R::Version(8192, "9P2000".into()));
    assert_eq!(c.clunk(0), err("unknown fid"));
    assert_eq!(c.s.stats().pending, 0);
    c.attach(0, "glenda", "");
    assert_eq!(c.walk(0, 1, &["tmp"]), err("file does not exist"));
}

#[test]
fn garbage_then_tversion_recovers() {
    let mut c = Client::session();
    c.send_raw(b"\x05\x00\x00\x00garbage and more garbage\r\n");
    c.send_raw(&[0xff; 100]);
    assert_eq!(c.replies(), vec![]);
    assert_eq!(c.version(8192), R::Version(8192, "9P2000".into()));
    assert_eq!(c.attach(0, "glenda", ""), R::Open(ROOT));
    // Before a session, a well-sized frame that does not decode is noise too.
    let mut c = Client::new();
    c.send_raw(&sized(vec![0, 0, 0, 0, 120, 1, 0, 1, 2])); // Tclunk, short fid
    c.send_raw(&encode(3, Fcall::Rclunk));
    assert_eq!(c.replies(), vec![]);
    assert_eq!(c.version(8192), R::Version(8192, "9P2000".into()));
}

/// A frame with its size[4] set to its length.
fn sized(mut frame: Vec<u8>) -> Vec<u8> {
    let n = frame.len() as u32;
    frame[..4].copy_from_slice(&n.to_le_bytes());
    frame
}

fn encode(tag: u16, f: Fcall<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 1 << 16];
    let n = f.encode(tag, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// Replaces the first `from` in `frame` by `to` (same length).
fn patch(mut frame: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = frame
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern in frame");
    frame[at..at + to.len()].copy_from_slice(to);
    frame
}

/// Issue 8: a well-framed request whose body does not decode used to get no reply, and
/// the session ignored everything until the next Tversion: a client with no timeout (a
/// kernel mount driver) hung for good. Each gets an Rerror on its own tag, and the
/// session, its fids and its pending reads go on.
#[test]
fn undecodable_requests_are_answered_and_the_session_goes_on() {
    let mut c = Client::session();
    c.walk(0, 1, &["vmx", "wait"]);
    c.open(1, om::READ);
    c.start_read(40, 1, 100);
    let walk = |name| {
        encode(
            50,
            Fcall::Twalk {
                fid: 0,
                newfid: 2,
                wnames: Wnames::new(&[name]).unwrap(),
            },
        )
    };
    let create = |name| {
        encode(
            51,
            Fcall::Tcreate {
                fid: 0,
                name,
                perm: 0o644,
                mode: om::RDWR,
            },
        )
    };
    let sixteen = encode(
        52,
        Fcall::Twalk {
            fid: 0,
            newfid: 2,
            wnames: Wnames::new(&["a"; 16]).unwrap(),
        },
    );
    let mut seventeen = patch(sixteen, &[16, 0, 1, 0, b'a'], &[17, 0, 1, 0, b'a']);
    seventeen.extend_from_slice(&[1, 0, b'a']);
    let clunk = encode(53, Fcall::Tclunk { fid: 0 });
    let mut trailing = clunk.clone();
    trailing.push(0);
    let attach = encode(
        54,
        Fcall::Tattach {
            fid: 3,
            afid: NOFID,
            uname: "glenda",
            aname: "",
        },
    );
    let write = encode(
        55,
        Fcall::Twrite {
            fid: 1,
            offset: 0,
            data: b"abcd",
        },
    );
    let mut stat = Dir::DONT_TOUCH;
    stat.name = "zz";
    let wstat = encode(56, Fcall::Twstat { fid: 0, stat });
    let inner = (stat.encoded_len() - 2) as u16;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "walk name not UTF-8",
            patch(walk("xy"), b"xy", b"\xff\xfe"),
            "bad character in file name",
        ),
        (
            "walk name with NUL",
            patch(walk("x.y"), b"x.y", b"x\0y"),
            "bad character in file name",
        ),
        (
            "create name not UTF-8",
            patch(create("xy"), b"xy", b"\xc3("),
            "bad character in file name",
        ),
        (
            "create name with NUL",
            patch(create("new.c"), b"new.c", b"new\0c"),
            "bad character in file name",
        ),
        (
            "wstat rename with NUL",
            patch(wstat.clone(), b"zz", b"z\0"),
            "bad character in file name",
        ),
        (
            "uname not UTF-8",
            patch(attach.clone(), b"glenda", b"glen\xffa"),
            "bad character in string",
        ),
        (
            "walk of 17 names",
            sized(seventeen),
            "too many names in walk",
        ),
        (
            "trailing byte",
            sized(trailing),
            "extra bytes at end of message",
        ),
        (
            "body shorter than its fields",
            sized(clunk[..clunk.len() - 2].to_vec()),
            "short message",
        ),
        (
            "string running past the frame",
            patch(attach, &[6, 0, b'g'], &[60, 0, b'g']),
            "short message",
        ),
        (
            "write count above its data",
            patch(write.clone(), &[4, 0, 0, 0, b'a'], &[5, 0, 0, 0, b'a']),
            "short message",
        ),
        (
            "write count below its data",
            patch(write, &[4, 0, 0, 0, b'a'], &[3, 0, 0, 0, b'a']),
            "extra bytes at end of message",
        ),
        (
            "stat's own size too small",
            patch(
                wstat.clone(),
                &inner.to_le_bytes(),
                &(inner - 1).to_le_bytes(),
            ),
            "malformed stat buffer",
        ),
        (
            "stat's own size too large",
            patch(wstat, &inner.to_le_bytes(), &(inner + 1).to_le_bytes()),
            "malformed stat buffer",
        ),
        (
            "R-message as a request",
            encode(57, Fcall::Rclunk),
            "bad message type",
        ),
        (
            "R-message with a body",
            encode(58, Fcall::Rwrite { count: 1 }),
            "bad message type",
        ),
        (
            "odd type unknown to 9P2000",
            sized(vec![0, 0, 0, 0, 201, 59, 0, 1, 2, 3]),
            "bad message type",
        ),
    ];
    for (what, frame, ename) in cases {
        let tag = u16::from_le_bytes([frame[5], frame[6]]);
        c.send_raw(&frame);
        assert_eq!(c.replies(), vec![(tag, err(ename))], "{what}");
        // Still in step: the next request is answered as usual.
        assert_eq!(c.walk(0, 2, &["hello"]), R::Qids(vec![1]), "after {what}");
        assert_eq!(c.clunk(2), R::Ok);
    }
    // Nothing was created or renamed, and the pending read is still there.
    assert_eq!(c.walk(0, 2, &["new"]), err("file does not exist"));
    assert_eq!(c.s.stats().pending, 1);
    // A bad frame on the tag of a pending read is answered "duplicate tag", which the
    // client cannot take for that read's answer.
    c.send_raw(&patch(walk("xy"), &[50, 0], &[40, 0]));
    assert_eq!(c.replies(), vec![(40, err("duplicate tag"))]);
    assert_eq!(c.s.stats().pending, 1);
}

/// An Rerror sent to the server is never a request and is not answered: on a line that
/// echoes, answering our own echoed Rerror would ping-pong for ever.
#[test]
fn rerror_is_not_answered() {
    let mut c = Client::session();
    c.send(9, Fcall::Rerror { ename: "echo" });
    c.send_raw(&sized(vec![0, 0, 0, 0, 107, 9, 0, 50, 0]));
    assert_eq!(c.replies(), vec![]);
    assert_eq!(c.walk(0, 1, &["hello"]), R::Qids(vec![1]));
}

/// A Tversion that does not decode is answered even before a session, on its tag.
#[test]
fn undecodable_tversion_is_answered() {
    let mut c = Client::new();
    let tv = encode(
        NOTAG,
        Fcall::Tversion {
            msize: 8192,
            version: "9P2000",
        },
    );
    c.send_raw(&patch(tv, b"9P2000", b"9P\x0000"));
    assert_eq!(c.replies(), vec![(NOTAG, err("bad character in string"))]);
    assert_eq!(c.version(8192), R::Version(8192, "9P2000".into()));
}

/// A client that died in the middle of a message, and a new one whose Tversion the stale
/// size[4] swallows: the frame does not decode and holds a Tversion header, so the
/// session skips to it instead of answering the remains.
#[test]
fn partial_frame_then_new_clients_tversion() {
    let mut c = Client::session();
    let tv = encode(
        NOTAG,
        Fcall::Tversion {
            msize: 4096,
            version: "9P2000",
        },
    );
    // A Twrite header announcing 40 bytes, of which 7 were sent before the client died.
    let mut bytes = vec![40, 0, 0, 0, 118, 1, 0];
    bytes.extend_from_slice(&tv);
    bytes.extend_from_slice(&[0; 14]); // what follows the new client's Tversion
    c.send_raw(&bytes);
    assert_eq!(
        c.replies(),
        vec![(NOTAG, R::Version(4096, "9P2000".into()))]
    );
}

#[test]
fn msize_bounds_reads_and_frames() {
    let mut c = Client::new();
    c.version(256);
    c.attach(0, "glenda", "");
    c.ns.add_file(ROOT, "big", 0o644, "glenda", &[7u8; 5000])
        .unwrap();
    c.walk(0, 1, &["big"]);
    c.open(1, om::READ);
    let R::Data(d) = c.read(1, 0, 4096) else {
        panic!()
    };
    assert_eq!(d.len(), 256 - 24);
    // A frame above msize is garbage: nothing answers until the next Tversion.
    c.send_raw(&[0, 2, 0, 0, 118, 1, 0]);
    c.send_raw(&[0u8; 600]);
    assert_eq!(c.replies(), vec![]);
    assert!(matches!(c.version(8192), R::Version(8192, _)));
}

#[test]
fn limits_hold() {
    let mut c = Client::new();
    c.s = Session::new(
        1,
        Limits {
            max_fids: 4,
            max_pending: 2,
            ..Limits::default()
        },
    );
    c.version(8192);
    c.attach(0, "glenda", "");
    for f in 1..4 {
        assert_eq!(c.walk(0, f, &[]), R::Qids(vec![]));
    }
    assert_eq!(c.walk(0, 4, &[]), err("too many fids"));
    c.clunk(3);
    c.walk(0, 3, &["vmx", "wait"]);
    c.open(3, om::READ);
    c.start_read(30, 3, 10);
    c.start_read(31, 3, 10);
    c.start_read(32, 3, 10);
    assert_eq!(
        c.replies(),
        vec![(32, err("too many outstanding requests"))]
    );
}
