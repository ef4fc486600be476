//! Round-trip and totality tests of the 9P2000 codec.

use proptest::prelude::*;
use protocol::{Dir, DirIter, Error, Fcall, Qid, Qids, Wnames, MAXWELEM, NOTAG};

const MSIZE: u32 = 1 << 20;

fn roundtrip(f: Fcall<'_>, tag: u16) {
    let mut buf = vec![0u8; MSIZE as usize];
    let n = f.encode(tag, &mut buf).expect("encode");
    let (t2, f2) = Fcall::decode(&buf[..n], MSIZE).expect("decode");
    assert_eq!(t2, tag);
    assert_eq!(f2, f);
}

fn qid(path: u64) -> Qid {
    Qid {
        ty: 0x80,
        version: 7,
        path,
    }
}

fn dir() -> Dir<'static> {
    Dir {
        ty: 0,
        dev: 0,
        qid: qid(9),
        mode: 0o20000000755,
        atime: 1,
        mtime: 2,
        length: 3,
        name: "vmx",
        uid: "glenda",
        gid: "glenda",
        muid: "",
    }
}

#[test]
fn every_message_roundtrips() {
    let names = Wnames::new(&["a", "bb", "ccc"]).unwrap();
    let qids = Qids::new(&[qid(1), qid(2)]).unwrap();
    let all = [
        Fcall::Tversion {
            msize: 8192,
            version: "9P2000",
        },
        Fcall::Rversion {
            msize: 8192,
            version: "9P2000",
        },
        Fcall::Tauth {
            afid: 1,
            uname: "glenda",
            aname: "",
        },
        Fcall::Rauth { aqid: qid(5) },
        Fcall::Tattach {
            fid: 0,
            afid: protocol::NOFID,
            uname: "glenda",
            aname: "vmx",
        },
        Fcall::Rattach { qid: qid(0) },
        Fcall::Rerror {
            ename: "file does not exist",
        },
        Fcall::Tflush { oldtag: 3 },
        Fcall::Rflush,
        Fcall::Twalk {
            fid: 0,
            newfid: 1,
            wnames: names,
        },
        Fcall::Rwalk { wqids: qids },
        Fcall::Topen { fid: 1, mode: 0x12 },
        Fcall::Ropen {
            qid: qid(3),
            iounit: 0,
        },
        Fcall::Tcreate {
            fid: 1,
            name: "seg",
            perm: 0x8000_01ff,
            mode: 0,
        },
        Fcall::Rcreate {
            qid: qid(4),
            iounit: 8168,
        },
        Fcall::Tread {
            fid: 1,
            offset: 1 << 40,
            count: 4096,
        },
        Fcall::Rread { data: b"hello" },
        Fcall::Twrite {
            fid: 1,
            offset: 0,
            data: b"go",
        },
        Fcall::Rwrite { count: 2 },
        Fcall::Tclunk { fid: 1 },
        Fcall::Rclunk,
        Fcall::Tremove { fid: 1 },
        Fcall::Rremove,
        Fcall::Tstat { fid: 1 },
        Fcall::Rstat { stat: dir() },
        Fcall::Twstat {
            fid: 1,
            stat: Dir::DONT_TOUCH,
        },
        Fcall::Rwstat,
    ];
    for (i, f) in all.into_iter().enumerate() {
        roundtrip(f, if i < 2 { NOTAG } else { i as u16 });
    }
}

#[test]
fn known_bytes() {
    // Tversion tag NOTAG msize 8192 "9P2000", as every client sends it.
    let wire = b"\x13\x00\x00\x00\x64\xff\xff\x00\x20\x00\x00\x06\x009P2000";
    let (tag, f) = Fcall::decode(wire, 8192).unwrap();
    assert_eq!(tag, NOTAG);
    assert_eq!(
        f,
        Fcall::Tversion {
            msize: 8192,
            version: "9P2000"
        }
    );
    let mut out = [0u8; 64];
    let n = f.encode(tag, &mut out).unwrap();
    assert_eq!(&out[..n], wire);
}

#[test]
fn size_is_checked() {
    let mut buf = [0u8; 64];
    let n = Fcall::Tclunk { fid: 1 }.encode(1, &mut buf).unwrap();
    assert_eq!(Fcall::decode(&buf[..n], 10), Err(Error::BadSize)); // above msize
    assert_eq!(Fcall::decode(&buf[..n - 1], 64), Err(Error::BadSize)); // truncated frame
    buf[0] = 3;
    assert_eq!(Fcall::decode(&buf[..3], 64), Err(Error::Short));
    assert_eq!(Fcall::decode(&buf[..n], 64), Err(Error::BadSize));
    let bad_type = b"\x07\x00\x00\x00\x6a\x00\x00"; // Terror
    assert_eq!(Fcall::decode(bad_type, 64), Err(Error::BadType(106)));
}

#[test]
fn trailing_bytes_rejected() {
    let mut buf = [0u8; 64];
    let n = Fcall::Tclunk { fid: 1 }.encode(1, &mut buf).unwrap();
    buf[0] = (n + 1) as u8;
    assert_eq!(Fcall::decode(&buf[..n + 1], 64), Err(Error::Trailing));
}

#[test]
fn walk_limit() {
    let names = [""; MAXWELEM + 1];
    assert_eq!(Wnames::new(&names), Err(Error::TooManyWalkElems));
    // A Twalk announcing 17 names is refused before reading them.
    let mut wire = vec![0u8; 4];
    wire.extend_from_slice(&[110, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 17, 0]);
    let len = wire.len() as u32;
    wire[..4].copy_from_slice(&len.to_le_bytes());
    assert_eq!(Fcall::decode(&wire, 64), Err(Error::TooManyWalkElems));
}

/// intro(5): strings are UTF-8 and NUL is illegal in every one. A bad file name (walk,
/// create, a stat's name) is told apart from another bad string, and a stat record whose
/// sizes disagree with its fields from a short or long message.
#[test]
fn strings_names_and_stats_are_checked() {
    let mut buf = [0u8; 256];
    let mut decode_patched = |f: Fcall<'_>, from: &[u8], to: &[u8]| {
        let n = f.encode(1, &mut buf).unwrap();
        let at = buf[..n]
            .windows(from.len())
            .position(|w| w == from)
            .unwrap();
        buf[at..at + to.len()].copy_from_slice(to);
        Fcall::decode(&buf[..n], 256).map(|_| ())
    };
    let walk = |name| Fcall::Twalk {
        fid: 0,
        newfid: 1,
        wnames: Wnames::new(&["a", name]).unwrap(),
    };
    assert_eq!(
        decode_patched(walk("xy"), b"xy", b"x\0"),
        Err(Error::BadName)
    );
    assert_eq!(
        decode_patched(walk("xy"), b"xy", b"\xff\xfe"),
        Err(Error::BadName)
    );
    let create = Fcall::Tcreate {
        fid: 0,
        name: "new",
        perm: 0o644,
        mode: 0,
    };
    assert_eq!(decode_patched(create, b"new", b"n\0w"), Err(Error::BadName));
    let attach = Fcall::Tattach {
        fid: 0,
        afid: protocol::NOFID,
        uname: "glenda",
        aname: "",
    };
    assert_eq!(
        decode_patched(attach, b"glenda", b"gl\0nda"),
        Err(Error::BadString)
    );
    let wstat = |d| Fcall::Twstat { fid: 0, stat: d };
    let d = Dir {
        name: "nm",
        ..dir()
    };
    assert_eq!(decode_patched(wstat(d), b"nm", b"\0m"), Err(Error::BadName));
    assert_eq!(
        decode_patched(wstat(d), b"glenda", b"gle\0da"),
        Err(Error::BadString)
    );
    // The record's own size[2] (followed by type[2] = 0) one less or one more than its
    // fields; n[2] (followed by size[2]) one less.
    let size = (d.encoded_len() - 2) as u16;
    let n = d.encoded_len() as u16;
    let le = |a: u16, b: u16| [a.to_le_bytes(), b.to_le_bytes()].concat();
    for (pat, rep) in [
        (le(size, 0), le(size - 1, 0)),
        (le(size, 0), le(size + 1, 0)),
        (le(n, size), le(n - 1, size)),
    ] {
        assert_eq!(
            decode_patched(wstat(d), &pat, &rep),
            Err(Error::BadStat),
            "{rep:?}"
        );
    }
    // Good names and strings with any other character decode.
    assert_eq!(decode_patched(walk("xy"), b"xy", "é".as_bytes()), Ok(()));
    assert_eq!(Error::BadName.as_str(), "bad character in file name");
    assert_eq!(Error::BadStat.as_str(), "malformed stat buffer");
}

#[test]
fn encode_needs_space() {
    let mut buf = [0u8; 10];
    assert_eq!(
        Fcall::Rread { data: &[0; 32] }.encode(1, &mut buf),
        Err(Error::NoSpace)
    );
}

#[test]
fn version_negotiation() {
    assert_eq!(protocol::negotiate_version("9P2000"), "9P2000");
    assert_eq!(protocol::negotiate_version("9P2000.u"), "9P2000");
    assert_eq!(protocol::negotiate_version("9P2000.L"), "9P2000");
    assert_eq!(protocol::negotiate_version("9P1999"), "unknown");
    assert_eq!(protocol::negotiate_version(""), "unknown");
}

#[test]
fn dir_iter_reads_packed_records() {
    let mut buf = [0u8; 256];
    let mut n = dir().to_bytes(&mut buf).unwrap();
    let mut d2 = dir();
    d2.name = "segment";
    n += d2.to_bytes(&mut buf[n..]).unwrap();
    let got: Vec<_> = DirIter::new(&buf[..n]).collect();
    assert_eq!(got, vec![Ok(dir()), Ok(d2)]);
    let bad: Vec<_> = DirIter::new(&buf[..n - 1]).collect();
    assert_eq!(bad.len(), 2);
    assert!(bad[1].is_err());
}

fn arb_str() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._ -]{0,24}"
}

fn arb_qid() -> impl Strategy<Value = Qid> {
    (any::<u8>(), any::<u32>(), any::<u64>()).prop_map(|(ty, version, path)| Qid {
        ty,
        version,
        path,
    })
}

proptest! {
    #[test]
    fn decode_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Fcall::decode(&bytes, 8192);
        let _ = DirIter::new(&bytes).count();
    }

    #[test]
    fn decode_is_total_with_valid_size(mut bytes in proptest::collection::vec(any::<u8>(), 7..300)) {
        let len = bytes.len() as u32;
        bytes[..4].copy_from_slice(&len.to_le_bytes());
        let _ = Fcall::decode(&bytes, 8192);
    }

    #[test]
    fn walk_roundtrips(fid in any::<u32>(), newfid in any::<u32>(),
                       names in proptest::collection::vec(arb_str(), 0..=MAXWELEM), tag in any::<u16>()) {
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        roundtrip(Fcall::Twalk { fid, newfid, wnames: Wnames::new(&refs).unwrap() }, tag);
    }

    #[test]
    fn rwalk_roundtrips(qids in proptest::collection::vec(arb_qid(), 0..=MAXWELEM)) {
        roundtrip(Fcall::Rwalk { wqids: Qids::new(&qids).unwrap() }, 1);
    }

    #[test]
    fn io_roundtrips(fid in any::<u32>(), offset in any::<u64>(),
                     data in proptest::collection::vec(any::<u8>(), 0..2000)) {
        roundtrip(Fcall::Twrite { fid, offset, data: &data }, 3);
        roundtrip(Fcall::Rread { data: &data }, 4);
    }

    #[test]
    fn stat_roundtrips(q in arb_qid(), mode in any::<u32>(), length in any::<u64>(),
                       name in arb_str(), uid in arb_str(), gid in arb_str(), muid in arb_str()) {
        let d = Dir { ty: 1, dev: 2, qid: q, mode, atime: 3, mtime: 4, length,
                      name: &name, uid: &uid, gid: &gid, muid: &muid };
        roundtrip(Fcall::Rstat { stat: d }, 5);
        roundtrip(Fcall::Twstat { fid: 9, stat: d }, 6);
    }

    #[test]
    fn attach_roundtrips(fid in any::<u32>(), afid in any::<u32>(), u in arb_str(), a in arb_str()) {
        roundtrip(Fcall::Tattach { fid, afid, uname: &u, aname: &a }, 7);
        roundtrip(Fcall::Tauth { afid, uname: &u, aname: &a }, 8);
        roundtrip(Fcall::Tcreate { fid, name: &u, perm: afid, mode: 3 }, 9);
    }
}

#[test]
fn rread_in_place_is_an_encoded_rread() {
    use protocol::RREAD_HEADER_LEN;
    let data: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    for n in [0, 1, 300] {
        let mut want = vec![0u8; 512];
        let len = Fcall::Rread { data: &data[..n] }
            .encode(7, &mut want)
            .unwrap();
        let mut buf = vec![0xaau8; RREAD_HEADER_LEN + n + 5];
        buf[RREAD_HEADER_LEN..RREAD_HEADER_LEN + n].copy_from_slice(&data[..n]);
        assert_eq!(Fcall::encode_rread_in_place(7, n, &mut buf), Ok(len));
        assert_eq!(&buf[..len], &want[..len]);
        // The data must fit after the header.
        let short = RREAD_HEADER_LEN + n - 1;
        assert_eq!(
            Fcall::encode_rread_in_place(7, n, &mut buf[..short]),
            Err(Error::NoSpace)
        );
    }
}
