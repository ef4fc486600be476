//! One 9P connection: its fids, its outstanding requests, its negotiated msize.
//!
//! The transport pushes received bytes in with [`Session::input`], calls
//! [`Session::process`] to answer what can be answered (and to retry reads that were left
//! pending), and sends what [`Session::output`] holds. A read the tree cannot answer yet
//! (the #X `wait` file) stays pending without holding up other requests.
//!
//! With [`Session::set_gate`], the reply to an attach the tree gates ([`Tree::gated`]: an
//! owner's attach that presents a secret) is held until the transport calls
//! [`Session::release_held`], and the session takes no further request meanwhile: a transport
//! can make wrong secrets cost their sender time without stalling other connections.

use crate::error::*;
use crate::framer::{Framer, Next};
use crate::perm;
use crate::tree::{Ctx, Read, Stat, Tree};
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use protocol::{dm, om, Dir, Fcall, MsgType, Qid, Qids, HEADER_LEN, IOHDRSZ, MAXWELEM, NOFID};

/// Resource limits of one session.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest msize agreed to.
    pub max_msize: u32,
    pub max_fids: usize,
    /// Reads that may be pending at once.
    pub max_pending: usize,
    /// Replies queued beyond this many bytes stop the session from taking more requests
    /// until the transport drains them.
    pub max_output: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_msize: 128 * 1024 + IOHDRSZ as u32,
            max_fids: 1024,
            max_pending: 64,
            max_output: 256 * 1024,
        }
    }
}

/// The smallest msize agreed to: room for a walk reply and a useful read.
pub const MIN_MSIZE: u32 = 256;

struct DirRead {
    entries: Vec<Stat>,
    /// Next entry to return, and the offset the next read must give.
    index: usize,
    offset: u64,
}

struct Fid<N> {
    node: N,
    qid: Qid,
    // Arc, not Rc, so a session can move between a host's threads.
    uname: Arc<str>,
    /// Topen/Tcreate mode once opened.
    mode: Option<u8>,
    dir: Option<DirRead>,
}

/// A gated attach's reply, encoded, waiting for the transport.
struct Held {
    reply: Vec<u8>,
    /// Whether it is an Rattach (else an Rerror).
    ok: bool,
}

struct Pending {
    tag: u16,
    fid: u32,
    offset: u64,
    count: u32,
}

/// Counters a status file can show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub requests: u64,
    pub errors: u64,
    pub discarded_bytes: u64,
    pub fids: usize,
    pub pending: usize,
}

pub struct Session<T: Tree> {
    id: u32,
    limits: Limits,
    framer: Framer,
    msize: u32,
    versioned: bool,
    fids: BTreeMap<u32, Fid<T::Node>>,
    pending: Vec<Pending>,
    /// Hold gated attaches' replies ([`Session::set_gate`]).
    gate: bool,
    held: Option<Held>,
    out: Vec<u8>,
    /// Bytes of `out` already handed to the transport.
    out_start: usize,
    scratch: Vec<u8>,
    requests: u64,
    errors: u64,
}

type Reply<'a> = Result<Fcall<'a>, Error>;

impl<T: Tree> Session<T> {
    /// A session; `id` is passed to the tree in every [`Ctx`].
    pub fn new(id: u32, limits: Limits) -> Self {
        Session {
            id,
            limits,
            framer: Framer::new(limits.max_msize),
            msize: limits.max_msize,
            versioned: false,
            fids: BTreeMap::new(),
            pending: Vec::new(),
            gate: false,
            held: None,
            out: Vec::new(),
            out_start: 0,
            scratch: Vec::new(),
            requests: 0,
            errors: 0,
        }
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn msize(&self) -> u32 {
        self.msize
    }

    pub fn stats(&self) -> SessionStats {
        SessionStats {
            requests: self.requests,
            errors: self.errors,
            discarded_bytes: self.framer.discarded,
            fids: self.fids.len(),
            pending: self.pending.len(),
        }
    }

    /// The framer: a transport sets its hang-up mode and reads its state.
    pub fn framer(&mut self) -> &mut Framer {
        &mut self.framer
    }

    /// Does any request wait on the tree?
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Holds the reply to each attach the tree gates until [`Session::release_held`].
    pub fn set_gate(&mut self, on: bool) {
        self.gate = on;
    }

    /// A gated attach's reply is held: whether it attaches (an Rattach, not an Rerror).
    /// No further request is taken until it is released.
    pub fn held(&self) -> Option<bool> {
        self.held.as_ref().map(|h| h.ok)
    }

    /// Queues the held reply for sending; requests are taken again.
    pub fn release_held(&mut self) {
        if let Some(h) = self.held.take() {
            self.out.extend_from_slice(&h.reply);
        }
    }

    /// How many received bytes [`Session::input`] takes now.
    pub fn input_space(&self) -> usize {
        self.framer.space()
    }

    /// Takes received bytes (up to `input_space()`); returns how many were taken.
    pub fn input(&mut self, bytes: &[u8]) -> usize {
        self.framer.push(bytes)
    }

    /// Replies ready to send.
    pub fn output(&self) -> &[u8] {
        &self.out[self.out_start..]
    }

    /// The transport sent `n` bytes of `output()`.
    pub fn consume_output(&mut self, n: usize) {
        self.out_start = (self.out_start + n).min(self.out.len());
        if self.out_start == self.out.len() {
            self.out.clear();
            self.out_start = 0;
        }
    }

    /// Retries pending reads, then answers every complete request received, retrying
    /// pending reads after each (another session's writes are seen at the next call), until
    /// a gated attach's reply is held.
    pub fn process(&mut self, tree: &mut T) {
        self.poll(tree);
        while self.held.is_none() && self.output().len() < self.limits.max_output {
            let msize = if self.versioned {
                self.msize
            } else {
                self.limits.max_msize
            };
            self.framer.any_type(self.versioned);
            let frame = match self.framer.next(msize) {
                Next::Frame(f) => f.to_vec(),
                Next::Empty => break,
            };
            // Every frame holds a header (the framer checks size[4] >= HEADER_LEN).
            let ty = frame[4];
            if ty == MsgType::Rerror as u8 {
                // Never a request, and never answered: on a line that echoes, an Rerror
                // answering our own echoed Rerror would start a ping-pong.
                self.framer.consume(frame.len());
                continue;
            }
            // An R-message (odd type) is no request, whatever its body holds.
            let decoded = if ty % 2 == 1 {
                Err(protocol::Error::BadType(ty))
            } else {
                Fcall::decode(&frame, msize)
            };
            match decoded {
                Ok((tag, f)) => {
                    self.framer.consume(frame.len());
                    self.requests += 1;
                    self.request(tree, tag, f);
                    // The request may have made a pending read answerable (a write to
                    // the queue it waits on): retry them in arrival order.
                    self.poll(tree);
                }
                Err(e) => match self.undecodable(&frame, e) {
                    Some(ename) => {
                        self.framer.consume(frame.len());
                        self.requests += 1;
                        let tag = u16::from_le_bytes([frame[5], frame[6]]);
                        self.refuse(tag, ename);
                    }
                    // Noise: look for the next Tversion.
                    None => self.framer.resync(),
                },
            }
        }
    }

    /// What answers a well-framed message (size[4] type[1] tag[2] in bounds) whose body
    /// does not decode, or `None` when it is noise to skip rather than a request.
    ///
    /// In a versioned session every such frame is a client's request, answered on its
    /// tag so the client (a kernel mount driver has no timeout) is not left waiting and
    /// the session goes on: a type 9P2000 lacks (plan9port's Topenfd), a bad name, a
    /// Twalk of 17 names, a body too short or too long for its fields. Before a session
    /// only a Tversion and an unknown even type are taken for requests (the latter is
    /// answered "version not negotiated"); anything else there is line noise. A frame
    /// that holds a Tversion header is taken for a departed client's partial message and
    /// a new client's first, and skipped to it.
    fn undecodable(&self, frame: &[u8], e: protocol::Error) -> Option<&'static str> {
        if let protocol::Error::BadType(_) = e {
            return Some(if self.versioned { EBADMSG } else { EVERSION });
        }
        if self.framer.holds_tversion(frame) {
            return None;
        }
        if self.versioned || frame[4] == MsgType::Tversion as u8 {
            Some(e.as_str())
        } else {
            None
        }
    }

    /// Retries pending reads; answers those the tree can now answer.
    pub fn poll(&mut self, tree: &mut T) {
        let mut i = 0;
        while i < self.pending.len() {
            let p = &self.pending[i];
            let (tag, fid, offset, count) = (p.tag, p.fid, p.offset, p.count);
            match self.read_file(tree, fid, offset, count) {
                Ok(None) => i += 1,
                Ok(Some(n)) => {
                    self.pending.remove(i);
                    self.reply_data(tag, n);
                }
                Err(e) => {
                    self.pending.remove(i);
                    self.reply(tag, Err(e));
                }
            }
        }
    }

    /// The transport went away: every fid is clunked and every request forgotten.
    pub fn reset(&mut self, tree: &mut T) {
        self.clunk_all(tree);
        self.held = None;
        self.framer.clear();
        self.out.clear();
        self.out_start = 0;
        self.versioned = false;
        self.msize = self.limits.max_msize;
    }

    fn clunk_all(&mut self, tree: &mut T) {
        self.pending.clear();
        let fids = core::mem::take(&mut self.fids);
        for (_, f) in fids {
            self.release(tree, f);
        }
    }

    /// Ends a fid: ORCLOSE removes the file, then the tree is told.
    fn release(&mut self, tree: &mut T, f: Fid<T::Node>) {
        let ctx = Ctx {
            uname: &f.uname,
            session: self.id,
        };
        if f.mode.is_some_and(|m| m & om::RCLOSE != 0) {
            let _ = tree.remove(&ctx, &f.node);
        }
        tree.clunk(&ctx, f.node, f.mode.is_some());
    }

    fn reply(&mut self, tag: u16, r: Reply<'_>) {
        let f = match r {
            Ok(f) => f,
            Err(ref e) => {
                self.errors += 1;
                Fcall::Rerror { ename: e.as_str() }
            }
        };
        let start = self.out.len();
        self.out.resize(start + self.msize as usize, 0);
        let n = match f.encode(tag, &mut self.out[start..]) {
            Ok(n) => n,
            // Only an error string longer than msize can get here.
            Err(_) => Fcall::Rerror { ename: EBADARG }
                .encode(tag, &mut self.out[start..])
                .unwrap_or(0),
        };
        self.out.truncate(start + n);
    }

    /// Answers a read with the first `n` bytes of the scratch buffer.
    fn reply_data(&mut self, tag: u16, n: usize) {
        let scratch = core::mem::take(&mut self.scratch);
        self.reply(
            tag,
            Ok(Fcall::Rread {
                data: &scratch[..n],
            }),
        );
        self.scratch = scratch;
    }

    fn request(&mut self, tree: &mut T, tag: u16, f: Fcall<'_>) {
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
            } => {
                let ctx = Ctx {
                    uname,
                    session: self.id,
                };
                let gated = self.gate && tree.gated(&ctx, aname);
                let r = self.attach(tree, fid, afid, uname, aname);
                if gated {
                    let ok = r.is_ok();
                    let start = self.out.len();
                    self.reply(tag, r);
                    let reply = self.out.split_off(start);
                    self.held = Some(Held { reply, ok });
                    return;
                }
                r
            }
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
            Fcall::Tread { fid, offset, count } => match self.read(tree, tag, fid, offset, count) {
                Ok(Some(n)) => return self.reply_data(tag, n),
                Ok(None) => return,
                Err(e) => Err(e),
            },
            Fcall::Twrite { fid, offset, data } => self.write(tree, fid, offset, data),
            Fcall::Tclunk { fid } => self.clunk(tree, fid),
            Fcall::Tremove { fid } => self.remove(tree, fid),
            Fcall::Tstat { fid } => {
                return match self.stat(tree, fid) {
                    Ok(st) => self.reply(tag, Ok(Fcall::Rstat { stat: st.as_dir() })),
                    Err(e) => self.reply(tag, Err(e)),
                };
            }
            Fcall::Twstat { fid, stat } => self.wstat(tree, fid, &stat),
            _ => Err(EBADMSG.into()),
        };
        self.reply(tag, r)
    }

    /// Answers a request that did not decode: with `ename`, unless its tag is a pending
    /// read's (whose client would take the answer for that read's).
    fn refuse(&mut self, tag: u16, ename: &'static str) {
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

    fn fid(&self, fid: u32) -> Result<&Fid<T::Node>, Error> {
        self.fids.get(&fid).ok_or_else(|| EUNKNOWNFID.into())
    }

    fn fid_mut(&mut self, fid: u32) -> Result<&mut Fid<T::Node>, Error> {
        self.fids.get_mut(&fid).ok_or_else(|| EUNKNOWNFID.into())
    }

    fn new_fid_ok(&self, fid: u32) -> Result<(), Error> {
        if fid == NOFID || self.fids.contains_key(&fid) {
            Err(EINUSE.into())
        } else if self.fids.len() >= self.limits.max_fids {
            Err(ETOOMANYFIDS.into())
        } else {
            Ok(())
        }
    }

    fn attach(
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
        let ctx = Ctx {
            uname,
            session: self.id,
        };
        let node = tree.attach(&ctx, aname)?;
        let qid = tree.stat(&ctx, &node)?.qid;
        self.fids.insert(
            fid,
            Fid {
                node,
                qid,
                uname: uname.into(),
                mode: None,
                dir: None,
            },
        );
        Ok(Fcall::Rattach { qid })
    }

    fn walk(&mut self, tree: &mut T, fid: u32, newfid: u32, names: &[&str]) -> Reply<'static> {
        let f = self.fid(fid)?;
        if f.mode.is_some() {
            return Err(EISOPEN.into());
        }
        if newfid != fid {
            self.new_fid_ok(newfid)?;
        }
        let uname = f.uname.clone();
        let ctx = Ctx {
            uname: &uname,
            session: self.id,
        };
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
            let new = Fid {
                node,
                qid,
                uname: uname.clone(),
                mode: None,
                dir: None,
            };
            if let Some(old) = self.fids.insert(newfid, new) {
                // newfid == fid: the old node is replaced by the walked one.
                tree.clunk(&ctx, old.node, false);
            }
        }
        Ok(Fcall::Rwalk {
            wqids: Qids::new(&qids[..walked]).unwrap_or_else(|_| Qids::new(&[]).unwrap()),
        })
    }

    fn iounit(&self) -> u32 {
        self.msize - IOHDRSZ as u32
    }

    fn open(&mut self, tree: &mut T, fid: u32, mode: u8) -> Reply<'static> {
        let id = self.id;
        let f = self.fid(fid)?;
        if f.mode.is_some() {
            return Err(EISOPEN.into());
        }
        let uname = f.uname.clone();
        let ctx = Ctx {
            uname: &uname,
            session: id,
        };
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

    fn create(
        &mut self,
        tree: &mut T,
        fid: u32,
        name: &str,
        perm_bits: u32,
        mode: u8,
    ) -> Reply<'static> {
        let id = self.id;
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
        let ctx = Ctx {
            uname: &uname,
            session: id,
        };
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

    /// Starts a read: `Some(n)` answered now, `None` left pending.
    fn read(
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

    /// Reads into the scratch buffer.
    fn read_file(
        &mut self,
        tree: &mut T,
        fid: u32,
        offset: u64,
        count: u32,
    ) -> Result<Option<usize>, Error> {
        let count = count.min(self.iounit()) as usize;
        let id = self.id;
        let mut scratch = core::mem::take(&mut self.scratch);
        if scratch.len() < count {
            scratch = vec![0; self.msize as usize];
        }
        let f = self.fids.get_mut(&fid).ok_or(Error::from(EUNKNOWNFID))?;
        let uname = f.uname.clone();
        let ctx = Ctx {
            uname: &uname,
            session: id,
        };
        let r = if f.qid.is_dir() {
            read_dir(tree, &ctx, f, offset, &mut scratch[..count]).map(Some)
        } else {
            match tree.read(&ctx, &mut f.node, offset, &mut scratch[..count]) {
                Ok(Read::Done(n)) => Ok(Some(n.min(count))),
                Ok(Read::Pending) => Ok(None),
                Err(e) => Err(e),
            }
        };
        self.scratch = scratch;
        r
    }

    fn write(&mut self, tree: &mut T, fid: u32, offset: u64, data: &[u8]) -> Reply<'static> {
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

    fn clunk(&mut self, tree: &mut T, fid: u32) -> Reply<'static> {
        let f = self.take_fid(fid)?;
        self.release(tree, f);
        Ok(Fcall::Rclunk)
    }

    fn remove(&mut self, tree: &mut T, fid: u32) -> Reply<'static> {
        let f = self.take_fid(fid)?;
        let ctx = Ctx {
            uname: &f.uname,
            session: self.id,
        };
        let r = tree.remove(&ctx, &f.node);
        tree.clunk(&ctx, f.node, f.mode.is_some());
        r.map(|_| Fcall::Rremove)
    }

    fn stat(&mut self, tree: &mut T, fid: u32) -> Result<Stat, Error> {
        let f = self.fid(fid)?;
        let ctx = Ctx {
            uname: &f.uname,
            session: self.id,
        };
        tree.stat(&ctx, &f.node)
    }

    fn wstat(&mut self, tree: &mut T, fid: u32, d: &Dir<'_>) -> Reply<'static> {
        let f = self.fid(fid)?;
        if *d == Dir::DONT_TOUCH {
            return Ok(Fcall::Rwstat);
        }
        // A rename must leave a name a walk can reach, as create's must.
        if d.name == "." || d.name == ".." || d.name.contains('/') {
            return Err(EDOTDOT.into());
        }
        let ctx = Ctx {
            uname: &f.uname,
            session: self.id,
        };
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

const _: () = assert!(MIN_MSIZE as usize > IOHDRSZ + HEADER_LEN);
