//! Tread and Twrite: data in and out of files, reads the tree cannot answer yet left
//! pending (and retried), and directories read as packed stat records.
//!
//! A read's data goes from the tree straight into the output buffer, behind the Rread
//! header written once the count is known; a write's data reaches the tree where the
//! request was decoded.

use super::engine::{Engine, Reply};
use super::fids::{DirRead, Fid};
use crate::error::*;
use crate::tree::{Ctx, Read, Tree};
use protocol::{om, Fcall};

/// A read the tree could not answer yet, retried by [`Engine::poll`].
pub(super) struct Pending {
    pub(super) tag: u16,
    pub(super) fid: u32,
    offset: u64,
    count: u32,
}

impl<T: Tree> Engine<T> {
    /// Answers a Tread to `tag` now, or leaves it pending.
    pub(super) fn read(&mut self, tree: &mut T, tag: u16, fid: u32, offset: u64, count: u32) {
        match self.start_read(tree, tag, fid, offset, count) {
            Ok(Some(n)) => self.out.commit_rread(tag, n),
            Ok(None) => {}
            Err(e) => self.reply(tag, Err(e)),
        }
    }

    /// Starts a read: `Some(n)` answered now, `None` left pending.
    fn start_read(
        &mut self,
        tree: &mut T,
        tag: u16,
        fid: u32,
        offset: u64,
        count: u32,
    ) -> Result<Option<usize>, Error> {
        let mode = self.fid(fid)?.mode.ok_or(Error::from(ENOTOPEN))?;
        if mode & 3 == om::WRITE {
            return Err(EBADUSEFD.into());
        }
        let r = self.read_file(tree, fid, offset, count)?;
        if r.is_none() {
            if self.pending.len() >= self.limits.max_pending {
                return Err(ETOOMANYREQS.into());
            }
            self.pending.push(Pending {
                tag,
                fid,
                offset,
                count,
            });
        }
        Ok(r)
    }

    /// Retries pending reads; answers those the tree can now answer.
    pub(super) fn poll(&mut self, tree: &mut T) {
        let mut i = 0;
        while i < self.pending.len() {
            let p = &self.pending[i];
            let (tag, fid, offset, count) = (p.tag, p.fid, p.offset, p.count);
            match self.read_file(tree, fid, offset, count) {
                Ok(None) => i += 1,
                Ok(Some(n)) => {
                    self.pending.remove(i);
                    self.out.commit_rread(tag, n);
                }
                Err(e) => {
                    self.pending.remove(i);
                    self.reply(tag, Err(e));
                }
            }
        }
    }

    /// Reads into the output buffer, where [`super::out::Out::commit_rread`] finds it.
    fn read_file(
        &mut self,
        tree: &mut T,
        fid: u32,
        offset: u64,
        count: u32,
    ) -> Result<Option<usize>, Error> {
        let count = count.min(self.iounit()) as usize;
        let id = self.id;
        let f = self.fids.get_mut(&fid).ok_or(Error::from(EUNKNOWNFID))?;
        let buf = self.out.rread_data(count);
        let uname = f.uname.clone();
        let ctx = Ctx {
            uname: &uname,
            session: id,
        };
        if f.qid.is_dir() {
            return read_dir(tree, &ctx, f, offset, buf).map(Some);
        }
        match tree.read(&ctx, &mut f.node, offset, buf)? {
            Read::Done(n) => Ok(Some(n.min(count))),
            Read::Pending => Ok(None),
        }
    }

    pub(super) fn write(
        &mut self,
        tree: &mut T,
        fid: u32,
        offset: u64,
        data: &[u8],
    ) -> Reply<'static> {
        let id = self.id;
        let f = self.fid_mut(fid)?;
        let mode = f.mode.ok_or(Error::from(ENOTOPEN))?;
        if !matches!(mode & 3, om::WRITE | om::RDWR) {
            return Err(EBADUSEFD.into());
        }
        let ctx = Ctx {
            uname: &f.uname,
            session: id,
        };
        let n = tree.write(&ctx, &mut f.node, offset, data)?;
        Ok(Fcall::Rwrite {
            count: n.min(data.len()) as u32,
        })
    }
}

/// Packs whole stat records into `buf`, continuing where the previous read stopped.
fn read_dir<T: Tree>(
    tree: &mut T,
    ctx: &Ctx,
    f: &mut Fid<T::Node>,
    offset: u64,
    buf: &mut [u8],
) -> Result<usize, Error> {
    if offset == 0 {
        f.dir = Some(DirRead {
            entries: tree.readdir(ctx, &f.node)?,
            index: 0,
            offset: 0,
        });
    }
    let d = f.dir.as_mut().ok_or(Error::from(EBADOFFSET))?;
    if offset != d.offset {
        return Err(EBADOFFSET.into());
    }
    let mut n = 0;
    while let Some(st) = d.entries.get(d.index) {
        match st.as_dir().to_bytes(&mut buf[n..]) {
            Ok(len) => n += len,
            Err(_) => break,
        }
        d.index += 1;
    }
    if n == 0 && d.index < d.entries.len() {
        // Not even one record fits: the count is too small to make progress.
        return Err(EBADARG.into());
    }
    d.offset += n as u64;
    Ok(n)
}
