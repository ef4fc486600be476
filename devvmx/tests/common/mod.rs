//! A 9P client driving the namespace byte for byte through a ninep::Session, with the
//! TestHw double below it.
#![allow(dead_code)]

use devvmx::testhw::TestHw;
use devvmx::{Config, Namespace};
use ninep::{Limits, Session};
use protocol::{dm, om, DirIter, Fcall, Wnames, NOFID, NOTAG};

pub const OWNER: &str = "eve";

/// Owned copy of a reply.
#[derive(Debug, PartialEq, Clone)]
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

pub fn err(s: &str) -> R {
    R::Error(s.into())
}

fn own(f: Fcall<'_>) -> R {
    match f {
        Fcall::Rversion { msize, version } => R::Version(msize, version.into()),
        Fcall::Rerror { ename } => R::Error(ename.into()),
        Fcall::Rwalk { wqids } => R::Qids(wqids.as_slice().iter().map(|q| q.path).collect()),
        Fcall::Ropen { qid, .. } | Fcall::Rcreate { qid, .. } | Fcall::Rattach { qid } => {
            R::Open(qid.path)
        }
        Fcall::Rread { data } => R::Data(data.to_vec()),
        Fcall::Rwrite { count } => R::Count(count),
        Fcall::Rstat { stat } => R::Stat(stat.name.into(), stat.length, stat.mode, stat.uid.into()),
        _ => R::Ok,
    }
}

/// A VM's ctl fid (the clone file), its wait fid and its number.
pub struct Vm {
    pub ctl: u32,
    pub wait: u32,
    pub n: String,
}

pub struct Client {
    pub s: Session<Namespace<TestHw>>,
    pub ns: Namespace<TestHw>,
    next_fid: u32,
}

impl Client {
    /// A versioned session attached as the owner (fid 0 is the root).
    pub fn new() -> Self {
        Self::with_hw(TestHw::new(4096))
    }

    pub fn with_hw(hw: TestHw) -> Self {
        let ns = Namespace::new(
            hw,
            Config {
                owner: OWNER.into(),
                version: "test",
            },
        );
        let mut c = Client {
            s: Session::new(1, Limits::default()),
            ns,
            next_fid: 100,
        };
        assert_eq!(
            c.rpc(
                NOTAG,
                Fcall::Tversion {
                    msize: 8192 + 24,
                    version: "9P2000"
                }
            ),
            R::Version(8192 + 24, "9P2000".into())
        );
        assert!(matches!(c.attach(0, OWNER, ""), R::Open(_)));
        c
    }

    pub fn send(&mut self, tag: u16, f: Fcall<'_>) {
        let mut buf = vec![0u8; 1 << 17];
        let n = f.encode(tag, &mut buf).unwrap();
        let mut off = 0;
        while off < n {
            off += self.s.input(&buf[off..n]);
            self.s.process(&mut self.ns);
        }
    }

    /// Replies queued, with tags.
    pub fn replies(&mut self) -> Vec<(u16, R)> {
        let mut out = Vec::new();
        let bytes = self.s.output().to_vec();
        self.s.consume_output(bytes.len());
        let mut b = &bytes[..];
        while !b.is_empty() {
            let size = u32::from_le_bytes(b[..4].try_into().unwrap()) as usize;
            let (tag, f) = Fcall::decode(&b[..size], 1 << 20).unwrap();
            out.push((tag, own(f)));
            b = &b[size..];
        }
        out
    }

    pub fn rpc(&mut self, tag: u16, f: Fcall<'_>) -> R {
        self.send(tag, f);
        let mut r = self.replies();
        assert_eq!(r.len(), 1, "{r:?}");
        let (t, reply) = r.pop().unwrap();
        assert_eq!(t, tag);
        reply
    }

    /// Runs the guests once and lets the session answer what it now can.
    pub fn run(&mut self) -> bool {
        let running = self.ns.run_guests();
        self.s.process(&mut self.ns);
        running
    }

    pub fn fid(&mut self) -> u32 {
        self.next_fid += 1;
        self.next_fid
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

    /// Walks from `from` along `path` to a new fid and opens it; the fid, or the error.
    pub fn open_from(&mut self, from: u32, path: &str, mode: u8) -> Result<u32, R> {
        let fid = self.fid();
        let names: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
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

    /// The whole file from offset 0, in reads of `chunk`.
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

    /// Opens clone ORDWR: the ctl fid and the VM's name.
    pub fn new_vm(&mut self) -> (u32, String) {
        let fid = self.open_path("vmx/clone", om::RDWR).unwrap();
        let R::Data(d) = self.read(fid, 0, 100) else {
            panic!()
        };
        (fid, String::from_utf8(d).unwrap())
    }

    /// A new VM with its wait file open.
    pub fn vm(&mut self) -> Vm {
        let (ctl, n) = self.new_vm();
        let wait = self.open_path(&format!("vmx/{n}/wait"), om::READ).unwrap();
        Vm { ctl, wait, n }
    }

    /// Sends a read that may block (wait, cons), answered later.
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

    /// Names in a directory.
    pub fn ls(&mut self, path: &str) -> Vec<String> {
        let fid = self.open_path(path, om::READ).unwrap();
        let bytes = self.read_all(fid);
        self.clunk(fid);
        DirIter::new(&bytes)
            .map(|d| d.unwrap().name.to_string())
            .collect()
    }

    /// Creates segment `name` sized `len` bytes.
    pub fn segment(&mut self, name: &str, len: u64) {
        let dir = self.fid();
        self.walk(0, dir, &["segment"]);
        assert!(matches!(
            self.create(dir, name, dm::DIR | 0o777, om::READ),
            R::Open(_)
        ));
        self.clunk(dir);
        let ctl = format!("va 0x10000000 {len:#x} sticky");
        assert_eq!(
            self.write_path(&format!("segment/{name}/ctl"), ctl.as_bytes()),
            R::Count(ctl.len() as u32)
        );
    }
}
