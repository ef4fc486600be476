//! Tstat and Twstat, with stat(5)'s rule on what a wstat may not change.

use super::engine::{Engine, Reply};
use crate::error::*;
use crate::tree::Tree;
use protocol::{Dir, Fcall};

impl<T: Tree> Engine<T> {
    /// Answers a Tstat to `tag` (the reply borrows the stat, so it is queued here).
    pub(super) fn stat(&mut self, tree: &mut T, tag: u16, fid: u32) {
        let st = self
            .fid(fid)
            .and_then(|f| tree.stat(&self.ctx(&f.uname), &f.node));
        match st {
            Ok(st) => self.reply(tag, Ok(Fcall::Rstat { stat: st.as_dir() })),
            Err(e) => self.reply(tag, Err(e)),
        }
    }

    pub(super) fn wstat(&mut self, tree: &mut T, fid: u32, d: &Dir<'_>) -> Reply<'static> {
        let f = self.fid(fid)?;
        if *d == Dir::DONT_TOUCH {
            return Ok(Fcall::Rwstat);
        }
        // A rename must leave a name a walk can reach, as create's must.
        if d.name == "." || d.name == ".." || d.name.contains('/') {
            return Err(EDOTDOT.into());
        }
        let ctx = self.ctx(&f.uname);
        let fixed = Dir {
            ty: d.ty,
            dev: d.dev,
            qid: d.qid,
            muid: d.muid,
            ..Dir::DONT_TOUCH
        };
        if fixed != Dir::DONT_TOUCH {
            unchanged(d, &tree.stat(&ctx, &f.node)?.as_dir())?;
        }
        tree.wstat(&ctx, &f.node, d)?;
        Ok(Fcall::Rwstat)
    }
}

/// stat(5): a wstat may not change type, dev, qid or muid, but may give their current
/// values (or "don't touch"). Checked before the tree sees the wstat, so nothing of a
/// refused one is applied.
fn unchanged(d: &Dir<'_>, cur: &Dir<'_>) -> Result<(), Error> {
    fn kept<T: PartialEq>(new: T, dont_touch: T, cur: T) -> bool {
        new == dont_touch || new == cur
    }
    let dt = Dir::DONT_TOUCH;
    let (q, dq, cq) = (d.qid, dt.qid, cur.qid);
    let qid = kept(q.ty, dq.ty, cq.ty)
        && kept(q.version, dq.version, cq.version)
        && kept(q.path, dq.path, cq.path);
    let checks = [
        (kept(d.ty, dt.ty, cur.ty), EWSTATTYPE),
        (kept(d.dev, dt.dev, cur.dev), EWSTATDEV),
        (qid, EWSTATQID),
        (kept(d.muid, dt.muid, cur.muid), EWSTATMUID),
    ];
    match checks.iter().find(|(ok, _)| !ok) {
        Some((_, e)) => Err((*e).into()),
        None => Ok(()),
    }
}
