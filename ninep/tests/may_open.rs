//! A tree's `may_open` decides opens instead of the mode bits (the #X `clone` case).

use ninep::memfs::{Memfs, ROOT};
use ninep::{Ctx, Error, Limits, Read, Session, Stat, Tree};
use protocol::{om, Dir, Fcall, Qid, Wnames, NOFID, NOTAG};

/// Memfs, except that the owner may open `clone` (mode 0444) for writing too.
struct CloneFs {
    fs: Memfs,
    clone: u64,
}

impl Tree for CloneFs {
    type Node = u64;
    fn attach(&mut self, ctx: &Ctx, aname: &str) -> Result<u64, Error> {
        self.fs.attach(ctx, aname)
    }
    fn walk(&mut self, ctx: &Ctx, dir: &u64, name: &str) -> Result<u64, Error> {
        self.fs.walk(ctx, dir, name)
    }
    fn stat(&mut self, ctx: &Ctx, node: &u64) -> Result<Stat, Error> {
        self.fs.stat(ctx, node)
    }
    fn may_open(&mut self, ctx: &Ctx, node: &u64, st: &Stat, need: u32) -> bool {
        (*node == self.clone && st.uid == ctx.uname) || ninep::perm::allowed(st, ctx.uname, need)
    }
    fn open(&mut self, ctx: &Ctx, node: &mut u64, mode: u8) -> Result<Qid, Error> {
        self.fs.open(ctx, node, mode)
    }
    fn readdir(&mut self, ctx: &Ctx, dir: &u64) -> Result<Vec<Stat>, Error> {
        self.fs.readdir(ctx, dir)
    }
    fn read(&mut self, ctx: &Ctx, n: &mut u64, off: u64, buf: &mut [u8]) -> Result<Read, Error> {
        self.fs.read(ctx, n, off, buf)
    }
    fn write(&mut self, ctx: &Ctx, n: &mut u64, off: u64, data: &[u8]) -> Result<usize, Error> {
        self.fs.write(ctx, n, off, data)
    }
    fn wstat(&mut self, ctx: &Ctx, node: &u64, d: &Dir<'_>) -> Result<(), Error> {
        self.fs.wstat(ctx, node, d)
    }
}

/// Sends one request and returns whether the reply was an error, and its string.
fn rpc(s: &mut Session<CloneFs>, t: &mut CloneFs, tag: u16, f: Fcall<'_>) -> Option<String> {
    let mut buf = vec![0u8; 8192];
    let n = f.encode(tag, &mut buf).unwrap();
    assert_eq!(s.input(&buf[..n]), n);
    s.process(t);
    let out = s.output().to_vec();
    s.consume_output(out.len());
    let (rtag, r) = Fcall::decode(&out, 1 << 20).unwrap();
    assert_eq!(rtag, tag);
    match r {
        Fcall::Rerror { ename } => Some(ename.to_string()),
        _ => None,
    }
}

fn open_clone(uname: &str, mode: u8) -> Option<String> {
    let mut fs = Memfs::new("eve");
    let clone = fs.add_file(ROOT, "clone", 0o444, "eve", b"").unwrap();
    fs.add_file(ROOT, "plain", 0o444, "eve", b"").unwrap();
    let mut t = CloneFs { fs, clone };
    let mut s = Session::new(1, Limits::default());
    let version = Fcall::Tversion {
        msize: 8192,
        version: "9P2000",
    };
    assert_eq!(rpc(&mut s, &mut t, NOTAG, version), None);
    let attach = Fcall::Tattach {
        fid: 0,
        afid: NOFID,
        uname,
        aname: "",
    };
    assert_eq!(rpc(&mut s, &mut t, 1, attach), None);
    for (fid, name) in [(1, "clone"), (2, "plain")] {
        let walk = Fcall::Twalk {
            fid: 0,
            newfid: fid,
            wnames: Wnames::new(&[name]).unwrap(),
        };
        assert_eq!(rpc(&mut s, &mut t, 2, walk), None);
    }
    // The plain 0444 file still follows its mode bits for everyone.
    assert_eq!(
        rpc(
            &mut s,
            &mut t,
            3,
            Fcall::Topen {
                fid: 2,
                mode: om::RDWR
            }
        )
        .as_deref(),
        Some("permission denied")
    );
    rpc(&mut s, &mut t, 4, Fcall::Topen { fid: 1, mode })
}

#[test]
fn owner_opens_clone_rdwr_despite_mode() {
    assert_eq!(open_clone("eve", om::RDWR), None);
}

#[test]
fn others_still_follow_mode_bits() {
    assert_eq!(
        open_clone("glenda", om::RDWR).as_deref(),
        Some("permission denied")
    );
    assert_eq!(open_clone("glenda", om::READ), None);
}
