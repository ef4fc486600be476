//! Fuzz target bodies, shared by the libFuzzer targets and the stable smoke runner.
//! Each takes arbitrary bytes and must neither panic nor break an invariant.

use ninep::memfs::{Memfs, ROOT};
use ninep::{Limits, Session};
use protocol::{Fcall, Wnames, NOFID, NOTAG};

/// Decoding is total, and whatever decodes re-encodes to the same frame.
pub fn decode(data: &[u8]) {
    if let Ok((tag, f)) = Fcall::decode(data, 1 << 20) {
        let mut buf = vec![0u8; data.len()];
        let n = f
            .encode(tag, &mut buf)
            .expect("a decoded message re-encodes");
        assert_eq!(&buf[..n], data, "re-encoding differs");
    }
    let _ = protocol::DirIter::new(data).count();
}

/// A session fed a valid preamble then arbitrary bytes answers only with well-formed
/// replies and keeps its bounds.
pub fn session(data: &[u8]) {
    let mut fs = Memfs::new("glenda");
    let d = fs.mkdir(ROOT, "vmx", 0o775, "glenda").expect("mkdir");
    fs.add_queue(d, "wait", 0o666, "glenda").expect("queue");
    fs.add_file(ROOT, "f", 0o666, "glenda", b"data")
        .expect("file");
    let limits = Limits {
        max_fids: 16,
        max_pending: 4,
        ..Limits::default()
    };
    let mut s = Session::new(1, limits);
    let mut input = preamble();
    input.extend_from_slice(data);
    let mut off = 0;
    while off < input.len() {
        let n = s.input(&input[off..]);
        off += n;
        s.process(&mut fs);
        check_output(&s);
        let len = s.output().len();
        s.consume_output(len);
        if n == 0 {
            break;
        }
    }
    let st = s.stats();
    assert!(st.fids <= 16 && st.pending <= 4);
    s.reset(&mut fs);
}

fn check_output(s: &Session<Memfs>) {
    let mut b = s.output();
    while !b.is_empty() {
        let size = protocol::frame_size(b).expect("whole frames") as usize;
        Fcall::decode(&b[..size], s.msize().max(1 << 17)).expect("replies decode");
        b = &b[size..];
    }
}

/// Tversion, Tattach and a walk, so that fuzzed frames reach fids.
pub fn preamble() -> Vec<u8> {
    let mut out = vec![0u8; 4096];
    let mut n = 0;
    let msgs = [
        (
            NOTAG,
            Fcall::Tversion {
                msize: 8192,
                version: "9P2000",
            },
        ),
        (
            1,
            Fcall::Tattach {
                fid: 0,
                afid: NOFID,
                uname: "glenda",
                aname: "",
            },
        ),
        (
            2,
            Fcall::Twalk {
                fid: 0,
                newfid: 1,
                wnames: Wnames::new(&["vmx", "wait"]).expect("names"),
            },
        ),
    ];
    for (tag, m) in msgs {
        n += m.encode(tag, &mut out[n..]).expect("encode");
    }
    out.truncate(n);
    out
}

/// Well-formed frames of every T-message, the seeds the mutator starts from.
pub fn seeds() -> Vec<Vec<u8>> {
    let names = Wnames::new(&["vmx", "wait"]).expect("names");
    let msgs = [
        Fcall::Tversion {
            msize: 8192,
            version: "9P2000",
        },
        Fcall::Tattach {
            fid: 2,
            afid: NOFID,
            uname: "glenda",
            aname: "vmx",
        },
        Fcall::Twalk {
            fid: 0,
            newfid: 3,
            wnames: names,
        },
        Fcall::Topen { fid: 1, mode: 0 },
        Fcall::Tread {
            fid: 1,
            offset: 0,
            count: 100,
        },
        Fcall::Twrite {
            fid: 1,
            offset: 0,
            data: b"go",
        },
        Fcall::Tflush { oldtag: 5 },
        Fcall::Tclunk { fid: 1 },
        Fcall::Tremove { fid: 3 },
        Fcall::Tstat { fid: 0 },
        Fcall::Twstat {
            fid: 1,
            stat: protocol::Dir::DONT_TOUCH,
        },
        Fcall::Tcreate {
            fid: 0,
            name: "x",
            perm: 0o644,
            mode: 2,
        },
    ];
    msgs.iter()
        .enumerate()
        .map(|(i, m)| {
            let mut b = vec![0u8; 512];
            let n = m.encode(i as u16, &mut b).expect("encode");
            b.truncate(n);
            b
        })
        .collect()
}

/// A fuzz target: arbitrary bytes in, a panic on failure.
pub type Target = fn(&[u8]);

/// Every target, by name, for runners that take them all.
pub const TARGETS: &[(&str, Target)] = &[("decode", decode), ("session", session)];
