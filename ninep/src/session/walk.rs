//! Tattach and Twalk: how a fid comes to name a file.

use super::engine::{Engine, Reply};
use super::fids::Fid;
use crate::error::*;
use crate::perm;
use crate::tree::Tree;
use protocol::{Fcall, Qid, Qids, MAXWELEM, NOFID};

impl<T: Tree> Engine<T> {
    pub(super) fn attach(
        &mut self,
        tree: &mut T,
        fid: u32,
        afid: u32,
        uname: &str,
        aname: &str,
    ) -> Reply<'static> {
        self.new_fid_ok(fid)?;
        if afid != NOFID {
            return Err(ENOAUTH.into());
        }
        let ctx = self.ctx(uname);
        let node = tree.attach(&ctx, aname)?;
        let qid = tree.stat(&ctx, &node)?.qid;
        self.fids.insert(fid, Fid::new(node, qid, uname.into()));
        Ok(Fcall::Rattach { qid })
    }

    pub(super) fn walk(
        &mut self,
        tree: &mut T,
        fid: u32,
        newfid: u32,
        names: &[&str],
    ) -> Reply<'static> {
        let f = self.fid(fid)?;
        if f.mode.is_some() {
            return Err(EISOPEN.into());
        }
        if newfid != fid {
            self.new_fid_ok(newfid)?;
        }
        let uname = f.uname.clone();
        let ctx = self.ctx(&uname);
        let mut node = f.node.clone();
        let mut qid = f.qid;
        let mut qids = [Qid::default(); MAXWELEM];
        let mut walked = 0;
        for name in names {
            let step = (|| {
                if !qid.is_dir() {
                    return Err(Error::from(ENOTDIR));
                }
                if !perm::allowed(&tree.stat(&ctx, &node)?, &uname, perm::EXEC) {
                    return Err(EPERM.into());
                }
                let next = tree.walk(&ctx, &node, name)?;
                let q = tree.stat(&ctx, &next)?.qid;
                Ok((next, q))
            })();
            match step {
                Ok((next, q)) => {
                    node = next;
                    qid = q;
                    qids[walked] = q;
                    walked += 1;
                }
                // walk(5): an error on the first name is an Rerror; after that, the
                // qids walked so far, and newfid is not affected.
                Err(e) if walked == 0 => return Err(e),
                Err(_) => break,
            }
        }
        if walked == names.len() {
            let new = Fid::new(node, qid, uname.clone());
            if let Some(old) = self.fids.insert(newfid, new) {
                // newfid == fid: the old node is replaced by the walked one.
                tree.clunk(&ctx, old.node, false);
            }
        }
        Ok(Fcall::Rwalk {
            wqids: Qids::new(&qids[..walked]).unwrap_or_else(|_| Qids::new(&[]).unwrap()),
        })
    }
}
