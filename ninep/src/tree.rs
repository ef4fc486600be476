//! What a file tree implements to be served: the per-node operations of a Plan 9 device.

use crate::error::Error;
/// A file's metadata, owned: what `Tree::stat` returns and directory reads pack.
pub use protocol::Stat;
use protocol::{Dir, Qid};

/// Who is asking: the attach's user and the connection it came on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ctx<'a> {
    pub uname: &'a str,
    /// Distinguishes connections, so a tree can tie state (a VM opened by clone) to one.
    pub session: u32,
}

/// The result of a read that may have to wait (the #X `wait` file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// This many bytes were placed at the start of the buffer.
    Done(usize),
    /// Nothing yet: the engine keeps the request and asks again after `Tree::poll`-worthy
    /// events, until the tree answers, the request is flushed, or its fid is clunked.
    Pending,
}

/// A served file tree. The engine does framing, fids, tags, walks' bookkeeping, directory
/// reads and permission checks from `stat`; a tree supplies nodes.
///
/// A `Node` names a file (and, once opened, whatever per-open state the tree keeps in
/// it). Nodes are cloned when fids are cloned by walk, and handed back by `clunk`.
pub trait Tree {
    type Node: Clone;

    /// The root of the tree for this attach name, or an error for an unknown one.
    fn attach(&mut self, ctx: &Ctx, aname: &str) -> Result<Self::Node, Error>;

    /// Is this attach a claim the tree checks (an owner's secret in the attach name)? On
    /// a session whose transport asked for it ([`crate::Session::set_gate`]), the reply to
    /// such an attach, right or wrong, is held until the transport releases it.
    fn gated(&self, ctx: &Ctx, aname: &str) -> bool {
        let _ = (ctx, aname);
        false
    }

    /// One step of a walk from directory `dir`; `..` must be answered too (the root's
    /// parent is the root). The engine has already checked that `dir` is a directory.
    fn walk(&mut self, ctx: &Ctx, dir: &Self::Node, name: &str) -> Result<Self::Node, Error>;

    fn stat(&mut self, ctx: &Ctx, node: &Self::Node) -> Result<Stat, Error>;

    /// May the attach's user open `node` (whose stat is `st`) for `need`, a mask of
    /// `perm::READ | WRITE | EXEC`? The engine asks this before `open`. The default is the
    /// Plan 9 owner/group/other check; a tree overrides it for files whose mode bits do
    /// not tell the whole story (#X `clone` is 0444 yet its owner opens it ORDWR, as
    /// devvmx.c's vmxopen allows).
    fn may_open(&mut self, ctx: &Ctx, node: &Self::Node, st: &Stat, need: u32) -> bool {
        let _ = node;
        crate::perm::allowed(st, ctx.uname, need)
    }

    /// Opens `node` after the engine's permission check. The tree may replace the node
    /// (opening #X `clone` yields the new VM's ctl); the returned qid is the opened file's.
    /// `mode` is the whole Topen mode (OTRUNC, ORCLOSE included).
    fn open(&mut self, ctx: &Ctx, node: &mut Self::Node, mode: u8) -> Result<Qid, Error>;

    /// Creates `name` in directory `dir` and opens it; the node becomes the new file.
    fn create(
        &mut self,
        ctx: &Ctx,
        dir: &mut Self::Node,
        name: &str,
        perm: u32,
        mode: u8,
    ) -> Result<Qid, Error> {
        let _ = (ctx, dir, name, perm, mode);
        Err(crate::error::ENOCREATE.into())
    }

    /// The entries of an opened directory, in order. Called at offset 0 of a directory
    /// read; the engine packs them into reads whose offsets follow each other.
    fn readdir(&mut self, ctx: &Ctx, dir: &Self::Node) -> Result<alloc::vec::Vec<Stat>, Error>;

    /// Reads a file opened for reading into `buf`.
    fn read(
        &mut self,
        ctx: &Ctx,
        node: &mut Self::Node,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<Read, Error>;

    /// Writes to a file opened for writing; returns the count written.
    fn write(
        &mut self,
        ctx: &Ctx,
        node: &mut Self::Node,
        offset: u64,
        data: &[u8],
    ) -> Result<usize, Error>;

    /// Removes the file. The fid is clunked whatever the answer (remove(5)).
    fn remove(&mut self, ctx: &Ctx, node: &Self::Node) -> Result<(), Error> {
        let _ = (ctx, node);
        Err(crate::error::ENOREMOVE.into())
    }

    /// Changes metadata. The engine answers an all-"don't touch" wstat itself (a sync),
    /// and refuses one that would change type, dev, qid or muid (stat(5)) or rename to a
    /// name a walk cannot reach; anything else comes here, e.g. the length-only wstat
    /// 9pfuse sends to truncate. All or nothing: refuse it whole or apply it whole.
    fn wstat(&mut self, ctx: &Ctx, node: &Self::Node, dir: &Dir<'_>) -> Result<(), Error> {
        let _ = (ctx, node, dir);
        Err(crate::error::ENOWSTAT.into())
    }

    /// The fid holding `node` is gone (clunk, remove, Tversion, disconnect). `opened`
    /// says whether it had been opened; ORCLOSE has been handled by a `remove` before.
    fn clunk(&mut self, ctx: &Ctx, node: Self::Node, opened: bool) {
        let _ = (ctx, node, opened);
    }
}
