//! An in-process 9P client for tests (feature `testing`): it drives a [`Session`] over any
//! [`Tree`] byte for byte, as a client on a stream would, and hands replies back owned
//! ([`R`]) so tests compare them with `assert_eq!`. The engine's own tests serve `memfs`
//! with it; devvmx's serve the `#X` namespace over the `TestHw` double.

use crate::{Limits, Session, Stat, Tree};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use protocol::{om, Dir, DirIter, Fcall, Wnames, NOFID, NOTAG};

/// A reply reduced to what tests compare: qids by path, a stat by name, length, mode and
/// owner. Replies that carry nothing else (Rclunk, Rwstat, ...) are `Ok`.
#[derive(Clone, Debug, PartialEq)]
pub enum R {
    Version(u32, String),
    Error(String),
    Ok,
    Qids(Vec<u64>),
    Open(u64),
    Data(Vec<u8>),
    Count(u32),
    Stat(String, u64, u32, String),
}

/// The Rerror carrying `s`.
pub fn err(s: &str) -> R {
    R::Error(s.into())
}

impl From<Fcall<'_>> for R {
    fn from(f: Fcall<'_>) -> R {
        match f {
            Fcall::Rversion { msize, version } => R::Version(msize, version.into()),
            Fcall::Rerror { ename } => R::Error(ename.into()),
            Fcall::Rwalk { wqids } => R::Qids(wqids.as_slice().iter().map(|q| q.path).collect()),
            Fcall::Ropen { qid, .. } | Fcall::Rcreate { qid, .. } | Fcall::Rattach { qid } => {
                R::Open(qid.path)
            }
            Fcall::Rread { data } => R::Data(data.to_vec()),
            Fcall::Rwrite { count } => R::Count(count),
            Fcall::Rstat { stat } => {
                R::Stat(stat.name.into(), stat.length, stat.mode, stat.uid.into())
            }
            _ => R::Ok,
        }
    }
}

/// The largest reply frame the client decodes.
const MAX_REPLY: u32 = 1 << 20;

/// One connection (session 1) to `ns`. Requests use fixed tags per message type unless a
/// test picks its own with [`Client::rpc`] or [`Client::send`].
pub struct Client<T: Tree> {
    pub s: Session<T>,
    /// The served tree.
    pub ns: T,
    next_fid: u32,
}

impl<T: Tree> Client<T> {
    /// A connection to `tree` with default limits, not yet versioned.
    pub fn connect(tree: T) -> Self {
        Client {
            s: Session::new(1, Limits::default()),
            ns: tree,
            next_fid: 100,
        }
    }

    /// Feeds `bytes` to the session as the stream would, letting it answer what it can.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let mut off = 0;
        while off < bytes.len() {
            off += self.s.input(&bytes[off..]);
            self.s.process(&mut self.ns);
        }
    }

    pub fn send(&mut self, tag: u16, f: Fcall<'_>) {
        let mut buf = vec![0u8; Limits::default().max_msize as usize];
        let n = f.encode(tag, &mut buf).unwrap();
        self.send_raw(&buf[..n]);
    }

    /// Lets the session answer what it now can (after the tree changed under it).
    pub fn process(&mut self) {
        self.s.process(&mut self.ns);
    }

    /// The complete reply frames queued, taken from the session.
    pub fn frames(&mut self) -> Vec<Vec<u8>> {
        let bytes = self.s.output().to_vec();
        self.s.consume_output(bytes.len());
        let mut out = Vec::new();
        let mut b = &bytes[..];
        while !b.is_empty() {
            let size = protocol::frame_size(b).unwrap() as usize;
            out.push(b[..size].to_vec());
            b = &b[size..];
        }
        out
    }

    /// Replies queued, with tags.
    pub fn replies(&mut self) -> Vec<(u16, R)> {
        self.frames()
            .iter()
            .map(|b| {
                let (tag, f) = Fcall::decode(b, MAX_REPLY).unwrap();
                (tag, R::from(f))
            })
            .collect()
    }

    /// Sends one request and returns its one reply, which must carry `tag`.
    pub fn rpc(&mut self, tag: u16, f: Fcall<'_>) -> R {
        self.send(tag, f);
        let mut r = self.replies();
        assert_eq!(r.len(), 1, "{r:?}");
        let (t, reply) = r.pop().unwrap();
        assert_eq!(t, tag);
        reply
    }

    /// A fid number not used before.
    pub fn fid(&mut self) -> u32 {
        self.next_fid += 1;
        self.next_fid
    }

    pub fn version(&mut self, msize: u32) -> R {
        self.rpc(
            NOTAG,
            Fcall::Tversion {
                msize,
                version: "9P2000",
            },
        )
    }

    pub fn attach(&mut self, fid: u32, uname: &str, aname: &str) -> R {
        self.rpc(
            1,
            Fcall::Tattach {
                fid,
                afid: NOFID,
                uname,
                aname,
            },
        )
    }

    pub fn walk(&mut self, fid: u32, newfid: u32, names: &[&str]) -> R {
        self.rpc(
            2,
            Fcall::Twalk {
                fid,
                newfid,
                wnames: Wnames::new(names).unwrap(),
            },
        )
    }

    pub fn open(&mut self, fid: u32, mode: u8) -> R {
        self.rpc(3, Fcall::Topen { fid, mode })
    }

    pub fn create(&mut self, fid: u32, name: &str, perm: u32, mode: u8) -> R {
        self.rpc(
            3,
            Fcall::Tcreate {
                fid,
                name,
                perm,
                mode,
            },
        )
    }

    pub fn read(&mut self, fid: u32, offset: u64, count: u32) -> R {
        self.rpc(4, Fcall::Tread { fid, offset, count })
    }

    pub fn write(&mut self, fid: u32, offset: u64, data: &[u8]) -> R {
        self.rpc(5, Fcall::Twrite { fid, offset, data })
    }

    pub fn clunk(&mut self, fid: u32) -> R {
        self.rpc(6, Fcall::Tclunk { fid })
    }

    pub fn remove(&mut self, fid: u32) -> R {
        self.rpc(7, Fcall::Tremove { fid })
    }

    pub fn stat(&mut self, fid: u32) -> R {
        self.rpc(8, Fcall::Tstat { fid })
    }

    /// Sends a read at offset 0 that may block (a #X wait or cons), answered later.
    pub fn start_read(&mut self, tag: u16, fid: u32, count: u32) {
        self.send(
            tag,
            Fcall::Tread {
                fid,
                offset: 0,
                count,
            },
        );
    }

    /// Tstat of `fid`: the whole record (panics on an error).
    pub fn stat_record(&mut self, fid: u32) -> Stat {
        self.send(8, Fcall::Tstat { fid });
        let frames = self.frames();
        match frames.as_slice() {
            [b] => match Fcall::decode(b, MAX_REPLY).unwrap() {
                (8, Fcall::Rstat { stat }) => Stat::from(&stat),
                r => panic!("stat: {r:?}"),
            },
            _ => panic!("stat: {} replies", frames.len()),
        }
    }

    /// A new fid walked from `from` along `path` (panics unless the whole walk succeeds).
    fn walk_path(&mut self, from: u32, path: &str) -> u32 {
        let fid = self.fid();
        let names = names(path);
        assert!(matches!(self.walk(from, fid, &names), R::Qids(q) if q.len() == names.len()));
        fid
    }

    /// Tstat of `path` walked from the root: atime and mtime (panics on an error).
    pub fn times(&mut self, path: &str) -> (u32, u32) {
        let fid = self.walk_path(0, path);
        let st = self.stat_record(fid);
        self.clunk(fid);
        (st.atime, st.mtime)
    }

    /// A directory's entries as a directory read gives them: name and mtime.
    pub fn ls_times(&mut self, path: &str) -> Vec<(String, u32)> {
        self.read_dir(path)
            .into_iter()
            .map(|d| {
                assert_eq!(d.atime, d.mtime, "{}", d.name);
                (d.name, d.mtime)
            })
            .collect()
    }

    /// Twstat of the file at `path` (walked from the root) with `d`; the reply.
    pub fn wstat_path(&mut self, path: &str, d: Dir<'_>) -> R {
        let fid = self.walk_path(0, path);
        let r = self.rpc(9, Fcall::Twstat { fid, stat: d });
        self.clunk(fid);
        r
    }

    /// Walks from `from` along `path` to a new fid and opens it; the fid, or the error.
    pub fn open_from(&mut self, from: u32, path: &str, mode: u8) -> Result<u32, R> {
        let fid = self.fid();
        let names = names(path);
        match self.walk(from, fid, &names) {
            R::Qids(q) if q.len() == names.len() => {}
            r => return Err(r),
        }
        match self.open(fid, mode) {
            R::Open(_) => Ok(fid),
            r => {
                self.clunk(fid);
                Err(r)
            }
        }
    }

    pub fn open_path(&mut self, path: &str, mode: u8) -> Result<u32, R> {
        self.open_from(0, path, mode)
    }

    /// The whole file from offset 0, in reads of 1000 bytes.
    pub fn read_all(&mut self, fid: u32) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            match self.read(fid, out.len() as u64, 1000) {
                R::Data(d) if d.is_empty() => return out,
                R::Data(d) => out.extend(d),
                r => panic!("read: {r:?}"),
            }
        }
    }

    pub fn read_text(&mut self, path: &str) -> String {
        let fid = self.open_path(path, om::READ).unwrap();
        let t = String::from_utf8(self.read_all(fid)).unwrap();
        self.clunk(fid);
        t
    }

    /// Writes `data` to `path` (opened for writing); the reply.
    pub fn write_path(&mut self, path: &str, data: &[u8]) -> R {
        let fid = self.open_path(path, om::WRITE).unwrap();
        let r = self.write(fid, 0, data);
        self.clunk(fid);
        r
    }

    /// The entries of directory `path`, as a directory read gives them.
    pub fn read_dir(&mut self, path: &str) -> Vec<Stat> {
        let fid = self.open_path(path, om::READ).unwrap();
        let bytes = self.read_all(fid);
        self.clunk(fid);
        DirIter::new(&bytes)
            .map(|d| Stat::from(&d.unwrap()))
            .collect()
    }

    /// Names in a directory.
    pub fn ls(&mut self, path: &str) -> Vec<String> {
        self.read_dir(path).into_iter().map(|d| d.name).collect()
    }
}

/// The elements of a slash-separated path.
fn names(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}
