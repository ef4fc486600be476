//! The exact message sequences plan9port's `9p` and `9pfuse` sent to ninep-host (taken
//! from their `-D` traces), replayed byte for byte so CI covers them without plan9port.
//! Each test names the command that sent the sequence and the failure it caught.

use ninep::memfs::{Memfs, MAX_FILE, ROOT};
use ninep::testing::Client;
use protocol::{om, Dir, Fcall, Wnames, NOFID, NOTAG};

/// One connection to a fresh tree like ninep-host's: `hello` 0644, `big` 0666, `dir/`
/// 0777 holding `a`, `ro/` 0555 holding `motd`, all owned by "root". Replies are reduced
/// to what lib9pclient looks at (`R`), not `ninep::testing::R`.
struct Conn {
    c: Client<Memfs>,
}

/// A reply reduced to what the tests compare.
#[derive(Debug, PartialEq)]
enum R {
    Error(String),
    Ok,
    Stat {
        name: String,
        mode: u32,
        mtime: u32,
        length: u64,
    },
    Data(Vec<u8>),
}

fn err(s: &str) -> R {
    R::Error(s.into())
}

/// The header of a request: size[4] type[1] tag[2], for types the codec lacks.
fn raw(ty: u8, tag: u16, body: &[u8]) -> Vec<u8> {
    let size = (7 + body.len()) as u32;
    let mut b = size.to_le_bytes().to_vec();
    b.push(ty);
    b.extend_from_slice(&tag.to_le_bytes());
    b.extend_from_slice(body);
    b
}

impl Conn {
    fn new() -> Self {
        let mut fs = Memfs::new("root");
        fs.add_file(ROOT, "hello", 0o644, "root", b"hello, world\n")
            .unwrap();
        fs.add_file(ROOT, "big", 0o666, "root", &[7u8; 10000])
            .unwrap();
        let d = fs.mkdir(ROOT, "dir", 0o777, "root").unwrap();
        fs.add_file(d, "a", 0o644, "root", b"alpha\n").unwrap();
        let ro = fs.mkdir(ROOT, "ro", 0o555, "root").unwrap();
        fs.add_file(ro, "motd", 0o444, "root", b"read only\n")
            .unwrap();
        Conn {
            c: Client::connect(fs),
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) -> Vec<(u16, R)> {
        self.c.send_raw(bytes);
        self.replies()
    }

    fn replies(&mut self) -> Vec<(u16, R)> {
        let mut replies = Vec::new();
        for b in self.c.frames() {
            let (tag, f) = Fcall::decode(&b, 1 << 20).unwrap();
            let r = match f {
                Fcall::Rerror { ename } => R::Error(ename.into()),
                Fcall::Rstat { stat } => R::Stat {
                    name: stat.name.into(),
                    mode: stat.mode,
                    mtime: stat.mtime,
                    length: stat.length,
                },
                Fcall::Rread { data } => R::Data(data.to_vec()),
                _ => R::Ok,
            };
            replies.push((tag, r));
        }
        replies
    }

    /// Sends one request with lib9pclient's tag 0 and returns its one reply.
    fn rpc(&mut self, f: Fcall<'_>) -> R {
        let tag = if matches!(f, Fcall::Tversion { .. }) {
            NOTAG
        } else {
            0
        };
        self.c.send(tag, f);
        let mut r = self.replies();
        assert_eq!(r.len(), 1, "{r:?}");
        let (t, reply) = r.pop().unwrap();
        assert_eq!(t, tag);
        reply
    }

    /// lib9pclient's mount: Tversion msize 8192, Tauth (refused) unless `9p -n`, Tattach
    /// as fid 0.
    fn mount(uname: &str, auth: bool) -> Self {
        let mut c = Conn::new();
        assert_eq!(
            c.rpc(Fcall::Tversion {
                msize: 8192,
                version: "9P2000"
            }),
            R::Ok
        );
        if auth {
            let r = c.rpc(Fcall::Tauth {
                afid: 0,
                uname,
                aname: "",
            });
            assert_eq!(r, err("authentication not required"));
        }
        let r = c.rpc(Fcall::Tattach {
            fid: 0,
            afid: NOFID,
            uname,
            aname: "",
        });
        assert_eq!(r, R::Ok);
        c
    }

    fn walk(&mut self, fid: u32, newfid: u32, names: &[&str]) -> R {
        self.rpc(Fcall::Twalk {
            fid,
            newfid,
            wnames: Wnames::new(names).unwrap(),
        })
    }

    fn wstat(&mut self, fid: u32, stat: Dir<'_>) -> R {
        self.rpc(Fcall::Twstat { fid, stat })
    }

    fn stat(&mut self, fid: u32) -> R {
        self.rpc(Fcall::Tstat { fid })
    }

    fn stat_path(&mut self, names: &[&str]) -> R {
        assert_eq!(self.walk(0, 99, names), R::Ok);
        let r = self.stat(99);
        assert_eq!(self.rpc(Fcall::Tclunk { fid: 99 }), R::Ok);
        r
    }

    fn clunk(&mut self, fid: u32) -> R {
        self.rpc(Fcall::Tclunk { fid })
    }
}

/// `9p readfd hello` sends plan9port's Topenfd (type 98) after the walk. It used to be
/// taken for line noise and dropped, leaving `9p` waiting forever; it must get an
/// Rerror on its tag, and the session must stay in step.
#[test]
fn topenfd_is_refused_not_dropped() {
    let mut c = Conn::mount("root", true);
    assert_eq!(c.walk(0, 1, &["hello"]), R::Ok);
    // Topenfd: fid[4] mode[1].
    let mut body = 1u32.to_le_bytes().to_vec();
    body.push(om::READ);
    let r = c.send_raw(&raw(98, 0, &body));
    assert_eq!(r, vec![(0, err("bad message type"))]);
    // `9p` then clunks the fid: the connection is still in sync.
    assert_eq!(c.clunk(1), R::Ok);
    assert_eq!(c.walk(0, 1, &["hello"]), R::Ok);
    assert_eq!(c.rpc(Fcall::Topen { fid: 1, mode: 0 }), R::Ok);
    assert_eq!(
        c.rpc(Fcall::Tread {
            fid: 1,
            offset: 0,
            count: 4096
        }),
        R::Data(b"hello, world\n".to_vec())
    );
    // Before Tversion an unknown type gets the same answer as any request.
    let mut fresh = Conn::new();
    let r = fresh.send_raw(&raw(98, 5, &body));
    assert_eq!(r, vec![(5, err("version not negotiated"))]);
    // An R-message type in a session is refused the same way, except Rerror, which is
    // never answered (on a line that echoes, answers to our own Rerrors would ping-pong).
    let r = c.send_raw(&raw(105, 3, &body));
    assert_eq!(r, vec![(3, err("bad message type"))]);
    let r = c.send_raw(&raw(107, 3, &body));
    assert_eq!(r, vec![]);
    assert_eq!(c.clunk(1), R::Ok);
}

/// 9pfuse's `echo x > big` by a user who may write `big` but does not own it: Twalk,
/// then Twstat length=0 on the unopened fid, then open and write. Memfs used to allow
/// every wstat to the owner only, so the truncate failed with "permission denied".
#[test]
fn truncate_by_a_writer_who_is_not_the_owner() {
    let mut c = Conn::mount("nobody", false);
    assert_eq!(c.walk(0, 1, &["big"]), R::Ok);
    let trunc = Dir {
        length: 0,
        ..Dir::DONT_TOUCH
    };
    assert_eq!(c.wstat(1, trunc), R::Ok);
    assert_eq!(c.clunk(1), R::Ok);
    assert_eq!(c.walk(0, 1, &["big"]), R::Ok);
    assert_eq!(
        c.rpc(Fcall::Topen {
            fid: 1,
            mode: om::WRITE
        }),
        R::Ok
    );
    let r = c.rpc(Fcall::Twrite {
        fid: 1,
        offset: 0,
        data: b"x\n",
    });
    assert_eq!(r, R::Ok);
    assert!(matches!(c.stat(1), R::Stat { length: 2, .. }));
    // A file the user may not write is not truncated.
    assert_eq!(c.walk(0, 2, &["hello"]), R::Ok);
    assert_eq!(c.wstat(2, trunc), err("permission denied"));
    assert!(matches!(c.stat(2), R::Stat { length: 13, .. }));
}

/// 9pfuse's `mv dir/a dir/b` (FUSE rename within one directory): Twalk to the old
/// name, Twstat with only the name set. The right to rename is write permission in the
/// parent (stat(5)), not ownership of the file.
#[test]
fn rename_by_wstat_follows_the_parent_directory() {
    let mut c = Conn::mount("nobody", false);
    assert_eq!(c.walk(0, 1, &["dir", "a"]), R::Ok);
    let to = |name| Dir {
        name,
        ..Dir::DONT_TOUCH
    };
    assert_eq!(c.wstat(1, to("b")), R::Ok);
    assert_eq!(c.clunk(1), R::Ok);
    assert!(matches!(
        c.stat_path(&["dir", "b"]),
        R::Stat { length: 6, .. }
    ));
    assert_eq!(c.walk(0, 2, &["dir"]), R::Ok);
    assert_eq!(c.walk(2, 6, &["a"]), err("file does not exist"));
    // `mv` onto an existing name: 9pfuse passes EEXIST on ("File exists").
    assert_eq!(c.walk(0, 3, &["hello"]), R::Ok);
    assert_eq!(c.wstat(3, to("big")), err("file already exists"));
    // ro/ is 0555: only a writer of the directory may rename in it.
    assert_eq!(c.walk(0, 4, &["ro", "motd"]), R::Ok);
    assert_eq!(c.wstat(4, to("m")), err("permission denied"));
    // A name a walk could not reach is refused by the engine.
    assert_eq!(c.walk(0, 5, &["dir", "b"]), R::Ok);
    for bad in ["x/y", "..", "."] {
        assert_eq!(c.wstat(5, to(bad)), err("illegal name"));
    }
}

/// 9pfuse's `touch -d ...` and `chmod`: Twstat with atime+mtime, or with the mode
/// (DMDIR included for a directory). The owner's changes stick (memfs used to accept
/// the times and drop them); anyone else's are refused, and a refused wstat changes
/// nothing at all.
#[test]
fn touch_and_chmod_by_owner_and_others() {
    let mut c = Conn::mount("root", true);
    assert_eq!(c.walk(0, 1, &["hello"]), R::Ok);
    let touch = Dir {
        atime: 1577934245,
        mtime: 1577934245,
        ..Dir::DONT_TOUCH
    };
    assert_eq!(c.wstat(1, touch), R::Ok);
    assert!(matches!(
        c.stat(1),
        R::Stat {
            mtime: 1577934245,
            ..
        }
    ));
    assert_eq!(c.walk(0, 2, &["dir"]), R::Ok);
    let chmod = |mode| Dir {
        mode,
        ..Dir::DONT_TOUCH
    };
    assert_eq!(c.wstat(2, chmod(0x8000_0000 | 0o700)), R::Ok);
    assert!(matches!(
        c.stat(2),
        R::Stat {
            mode: 0x8000_01c0,
            ..
        }
    ));
    // stat(5): the directory bit cannot be changed.
    assert_eq!(c.wstat(2, chmod(0o700)), err("bad arg in system call"));
    assert_eq!(
        c.wstat(1, chmod(0x8000_0000 | 0o644)),
        err("bad arg in system call")
    );

    let mut o = Conn::mount("nobody", false);
    o.c.ns = c.c.ns;
    assert_eq!(o.walk(0, 1, &["big"]), R::Ok);
    assert_eq!(o.wstat(1, touch), err("permission denied"));
    assert_eq!(o.wstat(1, chmod(0o777)), err("permission denied"));
    // A length this user may set, with a mode it may not: nothing happens.
    let both = Dir {
        length: 0,
        mode: 0o600,
        ..Dir::DONT_TOUCH
    };
    assert_eq!(o.wstat(1, both), err("permission denied"));
    assert!(matches!(
        o.stat(1),
        R::Stat {
            length: 10000,
            mode: 0o666,
            ..
        }
    ));
    // Owner and group cannot be given away (chown gets EPERM from 9pfuse itself).
    let chown = Dir {
        uid: "nobody",
        ..Dir::DONT_TOUCH
    };
    assert_eq!(o.wstat(1, chown), err("permission denied"));
}

/// `truncate -s` (a length-only Twstat) or a write far past the end must not make the
/// host allocate without bound: memfs used to resize to whatever length came in, and a
/// length near 2^64 aborted the process.
#[test]
fn huge_lengths_are_refused() {
    let mut c = Conn::mount("root", true);
    assert_eq!(c.walk(0, 1, &["big"]), R::Ok);
    for length in [u64::MAX - 1, 1 << 40, MAX_FILE as u64 + 1] {
        let d = Dir {
            length,
            ..Dir::DONT_TOUCH
        };
        assert_eq!(c.wstat(1, d), err("file too large"));
    }
    assert_eq!(c.clunk(1), R::Ok);
    assert_eq!(c.walk(0, 1, &["big"]), R::Ok);
    assert_eq!(
        c.rpc(Fcall::Topen {
            fid: 1,
            mode: om::WRITE
        }),
        R::Ok
    );
    let r = c.rpc(Fcall::Twrite {
        fid: 1,
        offset: 1 << 40,
        data: b"x",
    });
    assert_eq!(r, err("file too large"));
    assert!(matches!(c.stat(1), R::Stat { length: 10000, .. }));
}
