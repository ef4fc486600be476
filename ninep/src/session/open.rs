//! Topen and Tcreate: how a fid comes to be open for I/O.

use super::engine::{Engine, Reply};
use crate::error::*;
use crate::perm;
use crate::tree::Tree;
use protocol::{dm, Fcall};

impl<T: Tree> Engine<T> {
    pub(super) fn open(&mut self, tree: &mut T, fid: u32, mode: u8) -> Reply<'static> {
        let f = self.fid(fid)?;
        if f.mode.is_some() {
            return Err(EISOPEN.into());
        }
        let uname = f.uname.clone();
        let ctx = self.ctx(&uname);
        let st = tree.stat(&ctx, &f.node)?;
        let need = perm::for_open(mode, st.qid.is_dir())?;
        if !tree.may_open(&ctx, &f.node, &st, need) {
            return Err(EPERM.into());
        }
        let mut node = f.node.clone();
        let qid = tree.open(&ctx, &mut node, mode)?;
        let iounit = self.iounit();
        let f = self.fid_mut(fid)?;
        f.node = node;
        f.qid = qid;
        f.mode = Some(mode);
        Ok(Fcall::Ropen { qid, iounit })
    }

    pub(super) fn create(
        &mut self,
        tree: &mut T,
        fid: u32,
        name: &str,
        perm_bits: u32,
        mode: u8,
    ) -> Reply<'static> {
        let f = self.fid(fid)?;
        if f.mode.is_some() {
            return Err(EISOPEN.into());
        }
        if !f.qid.is_dir() {
            return Err(ENOTDIR.into());
        }
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(EDOTDOT.into());
        }
        perm::for_open(mode, perm_bits & dm::DIR != 0)?;
        let uname = f.uname.clone();
        let ctx = self.ctx(&uname);
        if !perm::allowed(&tree.stat(&ctx, &f.node)?, &uname, perm::WRITE) {
            return Err(EPERM.into());
        }
        let mut node = f.node.clone();
        let qid = tree.create(&ctx, &mut node, name, perm_bits, mode)?;
        let iounit = self.iounit();
        let f = self.fid_mut(fid)?;
        let dir_node = core::mem::replace(&mut f.node, node);
        f.qid = qid;
        f.mode = Some(mode);
        tree.clunk(&ctx, dir_node, false);
        Ok(Fcall::Rcreate { qid, iounit })
    }
}
