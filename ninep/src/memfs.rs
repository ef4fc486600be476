//! An in-memory file tree: the engine's test subject and the host harness's content.
//!
//! Besides plain files and directories it has *queue* files, whose reads wait until
//! something is written to them, so deferred replies, Tflush and clunk of a blocked read
//! can be exercised the way the #X `wait` file needs them.

use crate::error::*;
use crate::tree::{Ctx, Read, Stat, Tree};
use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use protocol::{dm, om, qt, Dir, Qid};

enum Body {
    Dir(Vec<u64>),
    File(Vec<u8>),
    /// Written records are read back whole, one per read, in order.
    Queue(VecDeque<Vec<u8>>),
}

struct Node {
    name: String,
    parent: u64,
    mode: u32,
    uid: String,
    version: u32,
    /// Only what wstat set: there is no clock here.
    atime: u32,
    mtime: u32,
    body: Body,
}

/// Largest file: a client's write or wstat beyond it gets an error, not an allocation
/// that would abort the host.
pub const MAX_FILE: usize = 64 << 20;

const ETOOBIG: &str = "file too large";

/// The tree. Node handles are qid paths.
pub struct Memfs {
    nodes: BTreeMap<u64, Node>,
    next: u64,
}

pub const ROOT: u64 = 0;

impl Memfs {
    /// An empty root directory owned by `owner`, mode 0777.
    pub fn new(owner: &str) -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            ROOT,
            Node {
                name: "/".to_string(),
                parent: ROOT,
                mode: dm::DIR | 0o777,
                uid: owner.to_string(),
                version: 0,
                atime: 0,
                mtime: 0,
                body: Body::Dir(Vec::new()),
            },
        );
        Memfs { nodes, next: 1 }
    }

    fn insert(
        &mut self,
        dir: u64,
        name: &str,
        mode: u32,
        uid: &str,
        body: Body,
    ) -> Result<u64, Error> {
        let Some(Node {
            body: Body::Dir(kids),
            ..
        }) = self.nodes.get(&dir)
        else {
            return Err(ENOTDIR.into());
        };
        if kids.iter().any(|k| self.nodes[k].name == name) {
            return Err(EEXIST.into());
        }
        let path = self.next;
        self.next += 1;
        self.nodes.insert(
            path,
            Node {
                name: name.to_string(),
                parent: dir,
                mode,
                uid: uid.to_string(),
                version: 0,
                atime: 0,
                mtime: 0,
                body,
            },
        );
        if let Some(Node {
            body: Body::Dir(kids),
            ..
        }) = self.nodes.get_mut(&dir)
        {
            kids.push(path);
        }
        Ok(path)
    }

    /// Adds a directory; returns its path.
    pub fn mkdir(&mut self, dir: u64, name: &str, mode: u32, uid: &str) -> Result<u64, Error> {
        self.insert(dir, name, dm::DIR | mode, uid, Body::Dir(Vec::new()))
    }

    /// Adds a file holding `data`.
    pub fn add_file(
        &mut self,
        dir: u64,
        name: &str,
        mode: u32,
        uid: &str,
        data: &[u8],
    ) -> Result<u64, Error> {
        self.insert(dir, name, mode & 0o777, uid, Body::File(data.to_vec()))
    }

    /// Adds a queue file: reads wait for writes.
    pub fn add_queue(&mut self, dir: u64, name: &str, mode: u32, uid: &str) -> Result<u64, Error> {
        self.insert(dir, name, mode & 0o777, uid, Body::Queue(VecDeque::new()))
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The entry `name` of directory `dir`.
    fn child(&self, dir: u64, name: &str) -> Option<u64> {
        let Body::Dir(kids) = &self.nodes.get(&dir)?.body else {
            return None;
        };
        kids.iter().copied().find(|k| self.nodes[k].name == name)
    }

    fn node(&self, path: u64) -> Result<&Node, Error> {
        self.nodes.get(&path).ok_or_else(|| ENONEXIST.into())
    }

    fn qid(&self, path: u64, n: &Node) -> Qid {
        Qid {
            ty: if n.mode & dm::DIR != 0 {
                qt::DIR
            } else {
                qt::FILE
            },
            version: n.version,
            path,
        }
    }

    fn stat_of(&self, path: u64, n: &Node) -> Stat {
        let length = match &n.body {
            Body::File(d) => d.len() as u64,
            _ => 0,
        };
        Stat {
            qid: self.qid(path, n),
            mode: n.mode,
            atime: n.atime,
            mtime: n.mtime,
            length,
            name: n.name.clone(),
            uid: n.uid.clone(),
            gid: n.uid.clone(),
            muid: n.uid.clone(),
        }
    }
}

impl Tree for Memfs {
    type Node = u64;

    fn attach(&mut self, _ctx: &Ctx, aname: &str) -> Result<u64, Error> {
        if aname.is_empty() || aname == "/" {
            return Ok(ROOT);
        }
        let Body::Dir(kids) = &self.node(ROOT)?.body else {
            return Err(EBADATTACH.into());
        };
        kids.iter()
            .copied()
            .find(|k| self.nodes[k].name == aname && self.nodes[k].mode & dm::DIR != 0)
            .ok_or_else(|| EBADATTACH.into())
    }

    fn walk(&mut self, _ctx: &Ctx, dir: &u64, name: &str) -> Result<u64, Error> {
        let n = self.node(*dir)?;
        if name == ".." {
            return Ok(n.parent);
        }
        let Body::Dir(kids) = &n.body else {
            return Err(ENOTDIR.into());
        };
        kids.iter()
            .copied()
            .find(|k| self.nodes[k].name == name)
            .ok_or_else(|| ENONEXIST.into())
    }

    fn stat(&mut self, _ctx: &Ctx, node: &u64) -> Result<Stat, Error> {
        let n = self.node(*node)?;
        Ok(self.stat_of(*node, n))
    }

    fn open(&mut self, _ctx: &Ctx, node: &mut u64, mode: u8) -> Result<Qid, Error> {
        let n = self.nodes.get_mut(node).ok_or(Error::from(ENONEXIST))?;
        if mode & om::TRUNC != 0 {
            if let Body::File(d) = &mut n.body {
                d.clear();
                n.version += 1;
            }
        }
        let n = &self.nodes[node];
        Ok(self.qid(*node, n))
    }

    fn create(
        &mut self,
        ctx: &Ctx,
        dir: &mut u64,
        name: &str,
        perm: u32,
        _mode: u8,
    ) -> Result<Qid, Error> {
        // create(5): the new file's permissions are masked by the directory's.
        let dmode = self.node(*dir)?.mode;
        let path = if perm & dm::DIR != 0 {
            self.mkdir(*dir, name, perm & dmode & 0o777, ctx.uname)?
        } else {
            self.add_file(*dir, name, perm & (dmode | !0o666) & 0o777, ctx.uname, &[])?
        };
        *dir = path;
        let n = &self.nodes[&path];
        Ok(self.qid(path, n))
    }

    fn readdir(&mut self, _ctx: &Ctx, dir: &u64) -> Result<Vec<Stat>, Error> {
        let Body::Dir(kids) = &self.node(*dir)?.body else {
            return Err(ENOTDIR.into());
        };
        Ok(kids
            .iter()
            .map(|k| self.stat_of(*k, &self.nodes[k]))
            .collect())
    }

    fn read(
        &mut self,
        _ctx: &Ctx,
        node: &mut u64,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<Read, Error> {
        let n = self.nodes.get_mut(node).ok_or(Error::from(ENONEXIST))?;
        match &mut n.body {
            Body::Dir(_) => Err(EISDIR.into()),
            Body::File(d) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(d.len());
                let len = buf.len().min(d.len() - start);
                buf[..len].copy_from_slice(&d[start..start + len]);
                Ok(Read::Done(len))
            }
            Body::Queue(q) => match q.pop_front() {
                None => Ok(Read::Pending),
                Some(rec) => {
                    let len = rec.len().min(buf.len());
                    buf[..len].copy_from_slice(&rec[..len]);
                    Ok(Read::Done(len))
                }
            },
        }
    }

    fn write(
        &mut self,
        _ctx: &Ctx,
        node: &mut u64,
        offset: u64,
        data: &[u8],
    ) -> Result<usize, Error> {
        let n = self.nodes.get_mut(node).ok_or(Error::from(ENONEXIST))?;
        match &mut n.body {
            Body::Dir(_) => Err(EISDIR.into()),
            Body::File(d) => {
                let start = usize::try_from(offset).map_err(|_| Error::from(EBADARG))?;
                let end = start.checked_add(data.len()).ok_or(Error::from(EBADARG))?;
                if end > MAX_FILE {
                    return Err(ETOOBIG.into());
                }
                if end > d.len() {
                    d.resize(end, 0);
                }
                d[start..end].copy_from_slice(data);
                n.version = n.version.wrapping_add(1);
                Ok(data.len())
            }
            Body::Queue(q) => {
                q.push_back(data.to_vec());
                Ok(data.len())
            }
        }
    }

    fn remove(&mut self, ctx: &Ctx, node: &u64) -> Result<(), Error> {
        let n = self.node(*node)?;
        if *node == ROOT {
            return Err(EPERM.into());
        }
        if matches!(&n.body, Body::Dir(k) if !k.is_empty()) {
            return Err("directory not empty".into());
        }
        let parent = n.parent;
        let pst = self.stat_of(parent, self.node(parent)?);
        if !crate::perm::allowed(&pst, ctx.uname, crate::perm::WRITE) {
            return Err(EPERM.into());
        }
        self.nodes.remove(node);
        if let Some(Node {
            body: Body::Dir(kids),
            ..
        }) = self.nodes.get_mut(&parent)
        {
            kids.retain(|k| k != node);
        }
        Ok(())
    }

    /// stat(5)'s rules, all checked before anything changes: the name by whoever may
    /// write the parent, the length by whoever may write the file (9pfuse truncates
    /// this way), mode and mtime by the owner; the owner never, the group only to
    /// itself (a user is its own only group here); atime is kept as given (touch).
    fn wstat(&mut self, ctx: &Ctx, node: &u64, d: &Dir<'_>) -> Result<(), Error> {
        use crate::perm::{allowed, WRITE};
        let n = self.node(*node)?;
        let st = self.stat_of(*node, n);
        let owner = n.uid == ctx.uname;
        if !d.name.is_empty() && d.name != n.name {
            if *node == ROOT {
                return Err(EPERM.into());
            }
            let parent = n.parent;
            let pst = self.stat_of(parent, self.node(parent)?);
            if !allowed(&pst, ctx.uname, WRITE) {
                return Err(EPERM.into());
            }
            if self.child(parent, d.name).is_some() {
                return Err(EEXIST.into());
            }
        }
        if d.length != !0 {
            if !allowed(&st, ctx.uname, WRITE) {
                return Err(EPERM.into());
            }
            match &n.body {
                Body::File(_) if d.length > MAX_FILE as u64 => return Err(ETOOBIG.into()),
                Body::File(_) => {}
                _ if d.length == 0 => {}
                _ => return Err(EBADARG.into()),
            }
        }
        if d.mode != !0 {
            if !owner {
                return Err(EPERM.into());
            }
            if (d.mode ^ n.mode) & dm::DIR != 0 {
                return Err(EBADARG.into());
            }
        }
        if d.mtime != !0 && !owner {
            return Err(EPERM.into());
        }
        if (!d.uid.is_empty() && d.uid != n.uid) || (!d.gid.is_empty() && d.gid != n.uid) {
            return Err(EPERM.into());
        }
        let n = self.nodes.get_mut(node).ok_or(Error::from(ENONEXIST))?;
        if d.length != !0 {
            if let Body::File(data) = &mut n.body {
                // Checked against MAX_FILE above.
                data.resize(d.length as usize, 0);
            }
        }
        if d.mode != !0 {
            n.mode = (n.mode & dm::DIR) | (d.mode & 0o777);
        }
        if d.mtime != !0 {
            n.mtime = d.mtime;
        }
        if d.atime != !0 {
            n.atime = d.atime;
        }
        if !d.name.is_empty() {
            n.name = d.name.to_string();
        }
        n.version = n.version.wrapping_add(1);
        Ok(())
    }
}
