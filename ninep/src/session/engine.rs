//! A session's state apart from framing, and the dispatch of each decoded request to
//! its handler (the handlers live in this module's sibling files, one kind each).

use super::data::Pending;
use super::fids::Fid;
use super::gate::Held;
use super::out::Out;
use super::{Limits, MIN_MSIZE};
use crate::error::*;
use crate::tree::{Ctx, Tree};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use protocol::{Fcall, IOHDRSZ};

pub(super) struct Engine<T: Tree> {
    pub(super) id: u32,
    pub(super) limits: Limits,
    pub(super) msize: u32,
    pub(super) versioned: bool,
    pub(super) fids: BTreeMap<u32, Fid<T::Node>>,
    pub(super) pending: Vec<Pending>,
    /// Hold gated attaches' replies ([`super::Session::set_gate`]).
    pub(super) gate: bool,
    pub(super) held: Option<Held>,
    pub(super) out: Out,
    pub(super) requests: u64,
    pub(super) errors: u64,
}

pub(super) type Reply<'a> = Result<Fcall<'a>, Error>;

impl<T: Tree> Engine<T> {
    pub(super) fn new(id: u32, limits: Limits) -> Self {
        Engine {
            id,
            limits,
            msize: limits.max_msize,
            versioned: false,
            fids: BTreeMap::new(),
            pending: Vec::new(),
            gate: false,
            held: None,
            out: Out::default(),
            requests: 0,
            errors: 0,
        }
    }

    /// The context the tree is called with for `uname`.
    pub(super) fn ctx<'a>(&self, uname: &'a str) -> Ctx<'a> {
        Ctx {
            uname,
            session: self.id,
        }
    }

    pub(super) fn iounit(&self) -> u32 {
        self.msize - IOHDRSZ as u32
    }

    /// The transport went away: every fid is clunked and every request forgotten.
    pub(super) fn reset(&mut self, tree: &mut T) {
        self.clunk_all(tree);
        self.held = None;
        self.out.clear();
        self.versioned = false;
        self.msize = self.limits.max_msize;
    }

    /// Queues the reply to `tag`: `r`, or the Rerror its error names.
    pub(super) fn reply(&mut self, tag: u16, r: Reply<'_>) {
        let f = match r {
            Ok(f) => f,
            Err(ref e) => {
                self.errors += 1;
                Fcall::Rerror { ename: e.as_str() }
            }
        };
        self.out.encode(tag, &f, self.msize as usize);
    }

    pub(super) fn request(&mut self, tree: &mut T, tag: u16, f: Fcall<'_>) {
        if let Fcall::Tversion { msize, version } = f {
            let r = self.version(tree, msize, version);
            return self.reply(tag, r);
        }
        if !self.versioned {
            return self.reply(tag, Err(EVERSION.into()));
        }
        if self.pending.iter().any(|p| p.tag == tag) {
            return self.reply(tag, Err(EDUPTAG.into()));
        }
        let r = match f {
            Fcall::Tauth { .. } => Err(ENOAUTH.into()),
            Fcall::Tattach {
                fid,
                afid,
                uname,
                aname,
            } => return self.attach_gated(tree, tag, fid, afid, uname, aname),
            Fcall::Tflush { oldtag } => {
                // The flushed request gets no reply; the Rflush says it never will.
                self.pending.retain(|p| p.tag != oldtag);
                Ok(Fcall::Rflush)
            }
            Fcall::Twalk {
                fid,
                newfid,
                wnames,
            } => self.walk(tree, fid, newfid, wnames.as_slice()),
            Fcall::Topen { fid, mode } => self.open(tree, fid, mode),
            Fcall::Tcreate {
                fid,
                name,
                perm,
                mode,
            } => self.create(tree, fid, name, perm, mode),
            Fcall::Tread { fid, offset, count } => return self.read(tree, tag, fid, offset, count),
            Fcall::Twrite { fid, offset, data } => self.write(tree, fid, offset, data),
            Fcall::Tclunk { fid } => self.clunk(tree, fid),
            Fcall::Tremove { fid } => self.remove(tree, fid),
            Fcall::Tstat { fid } => return self.stat(tree, tag, fid),
            Fcall::Twstat { fid, stat } => self.wstat(tree, fid, &stat),
            _ => Err(EBADMSG.into()),
        };
        self.reply(tag, r)
    }

    /// Answers a request that did not decode: with `ename`, unless its tag is a pending
    /// read's (whose client would take the answer for that read's).
    pub(super) fn refuse(&mut self, tag: u16, ename: &'static str) {
        let e = if self.pending.iter().any(|p| p.tag == tag) {
            EDUPTAG
        } else {
            ename
        };
        self.reply(tag, Err(e.into()));
    }

    fn version(&mut self, tree: &mut T, msize: u32, version: &str) -> Reply<'static> {
        // version(5): all outstanding I/O is aborted and all fids are clunked.
        self.clunk_all(tree);
        self.versioned = false;
        if msize < MIN_MSIZE {
            return Err(EBADARG.into());
        }
        let version = protocol::negotiate_version(version);
        self.msize = msize.min(self.limits.max_msize);
        self.versioned = version == protocol::VERSION;
        Ok(Fcall::Rversion {
            msize: self.msize,
            version,
        })
    }
}
