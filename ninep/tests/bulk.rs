//! The bulk path's transport interfaces carry the same bytes as the plain ones: input
//! received into the session's lent buffer (`lend_input`) as input pushed, and replies
//! handed over whole (`take_output`, a sent buffer given back as the spare) as replies
//! read from `output()`. Large reads are answered in place in the output buffer.

use ninep::memfs::{Memfs, ROOT};
use ninep::{Limits, Session};
use protocol::{om, Fcall, Wnames, NOFID, NOTAG};

const MSIZE: u32 = 64 * 1024 + 24;
const BIG: usize = 200_000;

fn byte(i: usize) -> u8 {
    (i * 7 % 251) as u8
}

fn frame(tag: u16, f: Fcall<'_>) -> Vec<u8> {
    let mut b = vec![0u8; MSIZE as usize];
    let n = f.encode(tag, &mut b).unwrap();
    b.truncate(n);
    b
}

/// A session's requests: attach, open `big`, read it whole in 64 KiB reads, write to it
/// in 64 KiB writes, read a bit back, clunk.
fn requests() -> Vec<u8> {
    let mut r = frame(
        NOTAG,
        Fcall::Tversion {
            msize: MSIZE,
            version: "9P2000",
        },
    );
    let names = ["big"];
    let script = [
        Fcall::Tattach {
            fid: 0,
            afid: NOFID,
            uname: "glenda",
            aname: "",
        },
        Fcall::Twalk {
            fid: 0,
            newfid: 1,
            wnames: Wnames::new(&names).unwrap(),
        },
        Fcall::Topen {
            fid: 1,
            mode: om::RDWR,
        },
    ];
    for (i, f) in script.into_iter().enumerate() {
        r.extend(frame(i as u16, f));
    }
    for (i, off) in (0..=BIG as u64).step_by(65536).enumerate() {
        r.extend(frame(
            10 + i as u16,
            Fcall::Tread {
                fid: 1,
                offset: off,
                count: 65536,
            },
        ));
    }
    let data: Vec<u8> = (0..65536).map(|i| byte(i + 3)).collect();
    for (i, off) in [0u64, 65536, 300_000].into_iter().enumerate() {
        r.extend(frame(
            20 + i as u16,
            Fcall::Twrite {
                fid: 1,
                offset: off,
                data: &data,
            },
        ));
    }
    r.extend(frame(
        30,
        Fcall::Tread {
            fid: 1,
            offset: 65530,
            count: 100,
        },
    ));
    r.extend(frame(31, Fcall::Tclunk { fid: 1 }));
    r
}

/// Every reply byte the session sends for `requests()`, fed in `piece`-byte pieces.
fn replies(piece: usize, lend: bool, take: bool) -> Vec<u8> {
    let mut fs = Memfs::new("glenda");
    let big: Vec<u8> = (0..BIG).map(byte).collect();
    fs.add_file(ROOT, "big", 0o666, "glenda", &big).unwrap();
    let mut s: Session<Memfs> = Session::new(1, Limits::default());
    let mut out = Vec::new();
    let mut spare = Vec::new();
    let input = requests();
    let mut rest = &input[..];
    while !rest.is_empty() {
        let n = if lend {
            let (mut buf, at) = s.lend_input();
            let n = piece.min(rest.len()).min(buf.len() - at);
            buf[at..at + n].copy_from_slice(&rest[..n]);
            s.give_back_input(buf, n);
            n
        } else {
            s.input(&rest[..piece.min(rest.len())])
        };
        rest = &rest[n..];
        s.process(&mut fs);
        if take {
            let chunk = s.take_output(std::mem::take(&mut spare));
            out.extend_from_slice(&chunk);
            spare = chunk;
        } else {
            let o = s.output().to_vec();
            s.consume_output(o.len());
            out.extend(o);
        }
        assert!(s.output().is_empty());
    }
    out
}

/// The replies as (tag, type, data of an Rread).
fn decode(mut b: &[u8]) -> Vec<(u16, u8, Vec<u8>)> {
    let mut v = Vec::new();
    while !b.is_empty() {
        let size = u32::from_le_bytes(b[..4].try_into().unwrap()) as usize;
        let (tag, f) = Fcall::decode(&b[..size], MSIZE).unwrap();
        let data = match f {
            Fcall::Rread { data } => data.to_vec(),
            _ => Vec::new(),
        };
        v.push((tag, b[4], data));
        b = &b[size..];
    }
    v
}

#[test]
fn lent_input_and_taken_output_carry_the_same_bytes() {
    let want = replies(usize::MAX, false, false);
    for piece in [1000, 65536 + 7, usize::MAX] {
        for (lend, take) in [(false, true), (true, false), (true, true)] {
            assert!(
                replies(piece, lend, take) == want,
                "piece {piece} lend {lend} take {take}"
            );
        }
    }
    let r = decode(&want);
    let rerror = protocol::MsgType::Rerror as u8;
    assert!(r.iter().all(|(_, ty, _)| *ty != rerror), "{r:?}");
    // The reads return the file, 64 KiB at a time, then nothing at its end.
    let reads: Vec<u8> = r
        .iter()
        .filter(|(tag, ..)| (10..20).contains(tag))
        .flat_map(|(.., d)| d.clone())
        .collect();
    assert_eq!(reads, (0..BIG).map(byte).collect::<Vec<_>>());
    // The last read sees the second write's first bytes after the first write's last.
    let last = &r.iter().find(|(tag, ..)| *tag == 30).unwrap().2;
    let want: Vec<u8> = (65530..65536)
        .map(|i| byte(i + 3))
        .chain((0..94).map(|i| byte(i + 3)))
        .collect();
    assert_eq!(last, &want);
}
