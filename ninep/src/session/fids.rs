//! The fid table: what each fid holds, taking fids on and ending them (Tclunk, Tremove,
//! and every fid at once when a session ends or starts over).

use super::engine::{Engine, Reply};
use crate::error::*;
use crate::tree::{Stat, Tree};
use alloc::sync::Arc;
use alloc::vec::Vec;
use protocol::{om, Fcall, Qid, NOFID};

/// A directory being read: the entries listed at offset 0, and how far reads got.
pub(super) struct DirRead {
    pub(super) entries: Vec<Stat>,
    /// Next entry to return, and the offset the next read must give.
    pub(super) index: usize,
    pub(super) offset: u64,
}

pub(super) struct Fid<N> {
    pub(super) node: N,
    pub(super) qid: Qid,
    // Arc, not Rc, so a session can move between a host's threads.
    pub(super) uname: Arc<str>,
    /// Topen/Tcreate mode once opened.
    pub(super) mode: Option<u8>,
    pub(super) dir: Option<DirRead>,
}

impl<N> Fid<N> {
    /// A fid not yet opened.
    pub(super) fn new(node: N, qid: Qid, uname: Arc<str>) -> Self {
        Fid {
            node,
            qid,
            uname,
            mode: None,
            dir: None,
        }
    }
}

impl<T: Tree> Engine<T> {
    pub(super) fn fid(&self, fid: u32) -> Result<&Fid<T::Node>, Error> {
        self.fids.get(&fid).ok_or_else(|| EUNKNOWNFID.into())
    }

    pub(super) fn fid_mut(&mut self, fid: u32) -> Result<&mut Fid<T::Node>, Error> {
        self.fids.get_mut(&fid).ok_or_else(|| EUNKNOWNFID.into())
    }

    /// May `fid` be taken on as a new fid?
    pub(super) fn new_fid_ok(&self, fid: u32) -> Result<(), Error> {
        if fid == NOFID || self.fids.contains_key(&fid) {
            Err(EINUSE.into())
        } else if self.fids.len() >= self.limits.max_fids {
            Err(ETOOMANYFIDS.into())
        } else {
            Ok(())
        }
    }

    /// Every fid clunked, every pending read forgotten.
    pub(super) fn clunk_all(&mut self, tree: &mut T) {
        self.pending.clear();
        let fids = core::mem::take(&mut self.fids);
        for (_, f) in fids {
            self.release(tree, f);
        }
    }

    /// Ends a fid: ORCLOSE removes the file, then the tree is told.
    fn release(&mut self, tree: &mut T, f: Fid<T::Node>) {
        let ctx = self.ctx(&f.uname);
        if f.mode.is_some_and(|m| m & om::RCLOSE != 0) {
            let _ = tree.remove(&ctx, &f.node);
        }
        tree.clunk(&ctx, f.node, f.mode.is_some());
    }

    /// Removes a fid, answering any read pending on it with an error first.
    fn take_fid(&mut self, fid: u32) -> Result<Fid<T::Node>, Error> {
        let f = self.fids.remove(&fid).ok_or(Error::from(EUNKNOWNFID))?;
        let aborted: Vec<u16> = self
            .pending
            .iter()
            .filter(|p| p.fid == fid)
            .map(|p| p.tag)
            .collect();
        self.pending.retain(|p| p.fid != fid);
        for tag in aborted {
            self.reply(tag, Err(EINTR.into()));
        }
        Ok(f)
    }

    pub(super) fn clunk(&mut self, tree: &mut T, fid: u32) -> Reply<'static> {
        let f = self.take_fid(fid)?;
        self.release(tree, f);
        Ok(Fcall::Rclunk)
    }

    pub(super) fn remove(&mut self, tree: &mut T, fid: u32) -> Reply<'static> {
        let f = self.take_fid(fid)?;
        let ctx = self.ctx(&f.uname);
        let r = tree.remove(&ctx, &f.node);
        tree.clunk(&ctx, f.node, f.mode.is_some());
        r.map(|_| Fcall::Rremove)
    }
}
