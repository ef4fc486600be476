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
//!
//! The bulk path copies as little as it can: a request is decoded where the framer holds
//! it, a Twrite's data goes from there to the tree, a Tread's data is read by the tree
//! straight into the output buffer behind its Rread header, and the output buffer is
//! zeroed once as it grows, not per reply. This file frames and hands requests to the
//! [`engine`]; each kind of request is answered in its own file.

mod data;
mod engine;
mod fids;
mod gate;
mod open;
mod out;
mod stat;
mod walk;

use crate::framer::Framer;
use crate::tree::Tree;
use alloc::vec::Vec;
use engine::Engine;
use protocol::{Fcall, MsgType, BULK_IO, HEADER_LEN, IOHDRSZ};

/// Resource limits of one session.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest msize agreed to. The framer and the output buffer of a session that uses
    /// it grow to about one message each (plus `max_output`): at the default 1 MiB, a
    /// busy session holds about 2.3 MiB of heap.
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
            max_msize: BULK_IO + IOHDRSZ as u32,
            max_fids: 1024,
            max_pending: 64,
            max_output: 256 * 1024,
        }
    }
}

/// The smallest msize agreed to: room for a walk reply and a useful read.
pub const MIN_MSIZE: u32 = 256;

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
    framer: Framer,
    /// Everything but the framing, apart so a request decoded in the framer's buffer
    /// can be answered without copying it out.
    e: Engine<T>,
    /// The last `process` stopped at the output limit with bytes still held.
    stalled: bool,
}

impl<T: Tree> Session<T> {
    /// A session; `id` is passed to the tree in every [`crate::Ctx`].
    pub fn new(id: u32, limits: Limits) -> Self {
        Session {
            framer: Framer::new(limits.max_msize),
            e: Engine::new(id, limits),
            stalled: false,
        }
    }

    pub fn id(&self) -> u32 {
        self.e.id
    }

    pub fn msize(&self) -> u32 {
        self.e.msize
    }

    pub fn stats(&self) -> SessionStats {
        SessionStats {
            requests: self.e.requests,
            errors: self.e.errors,
            discarded_bytes: self.framer.discarded,
            fids: self.e.fids.len(),
            pending: self.e.pending.len(),
        }
    }

    /// The framer: a transport sets its hang-up mode and reads its state.
    pub fn framer(&mut self) -> &mut Framer {
        &mut self.framer
    }

    /// Does any request wait on the tree?
    pub fn has_pending(&self) -> bool {
        !self.e.pending.is_empty()
    }

    /// Holds the reply to each attach the tree gates until [`Session::release_held`].
    pub fn set_gate(&mut self, on: bool) {
        self.e.gate = on;
    }

    /// A gated attach's reply is held: whether it attaches (an Rattach, not an Rerror).
    /// No further request is taken until it is released.
    pub fn held(&self) -> Option<bool> {
        self.e.held.as_ref().map(|h| h.ok)
    }

    /// Queues the held reply for sending; requests are taken again.
    pub fn release_held(&mut self) {
        self.e.release_held();
    }

    /// How many received bytes [`Session::input`] takes now.
    pub fn input_space(&self) -> usize {
        self.framer.space()
    }

    /// Takes received bytes (up to `input_space()`); returns how many were taken.
    pub fn input(&mut self, bytes: &[u8]) -> usize {
        self.framer.push(bytes)
    }

    /// Lends the input buffer so a transport can receive into it without a copy
    /// ([`Framer::lend`]); [`Session::give_back_input`] returns it.
    pub fn lend_input(&mut self) -> (Vec<u8>, usize) {
        self.framer.lend()
    }

    /// Returns the lent input buffer with `n` bytes received at the offset lent.
    pub fn give_back_input(&mut self, buf: Vec<u8>, n: usize) {
        self.framer.give_back(buf, n);
    }

    /// Replies ready to send.
    pub fn output(&self) -> &[u8] {
        self.e.out.pending()
    }

    /// The transport sent `n` bytes of `output()`.
    pub fn consume_output(&mut self, n: usize) {
        self.e.out.consume(n);
    }

    /// Hands every reply ready to send to the transport as one buffer (what `output()`
    /// holds, as if consumed), without copying it; `spare` (an earlier buffer given back,
    /// or an empty one) becomes the session's next output buffer.
    pub fn take_output(&mut self, spare: Vec<u8>) -> Vec<u8> {
        self.e.out.take(spare)
    }

    /// The last [`Session::process`] stopped at the output limit ([`Limits::max_output`])
    /// with received bytes still to take: once the output is sent, the transport calls
    /// `process` again without waiting for more input (a client may have sent all its
    /// requests and be waiting for their replies).
    pub fn stalled(&self) -> bool {
        self.stalled
    }

    /// Retries pending reads, then answers every complete request received, retrying
    /// pending reads after each (another session's writes are seen at the next call), until
    /// a gated attach's reply is held.
    pub fn process(&mut self, tree: &mut T) {
        self.take_requests(tree);
        self.stalled = self.e.held.is_none()
            && self.e.out.pending().len() >= self.e.limits.max_output
            && self.framer.held() > 0
            && !self.framer.broken();
    }

    fn take_requests(&mut self, tree: &mut T) {
        self.e.poll(tree);
        while self.e.held.is_none() && self.e.out.pending().len() < self.e.limits.max_output {
            let msize = if self.e.versioned {
                self.e.msize
            } else {
                self.e.limits.max_msize
            };
            self.framer.any_type(self.e.versioned);
            self.framer.set_limit(msize);
            let Some(len) = self.framer.next_len(msize) else {
                break;
            };
            let frame = self.framer.head(len);
            // Every frame holds a header (the framer checks size[4] >= HEADER_LEN).
            let ty = frame[4];
            if ty == MsgType::Rerror as u8 {
                // Never a request, and never answered: on a line that echoes, an Rerror
                // answering our own echoed Rerror would start a ping-pong.
                self.framer.consume(len);
                continue;
            }
            // An R-message (odd type) is no request, whatever its body holds.
            let decoded = if ty % 2 == 1 {
                Err(protocol::Error::BadType(ty))
            } else {
                Fcall::decode(frame, msize)
            };
            match decoded {
                Ok((tag, f)) => {
                    self.e.requests += 1;
                    self.e.request(tree, tag, f);
                    self.framer.consume(len);
                    // The request may have made a pending read answerable (a write to
                    // the queue it waits on): retry them in arrival order.
                    self.e.poll(tree);
                }
                Err(e) => match self.undecodable(frame, e) {
                    Some(ename) => {
                        let tag = u16::from_le_bytes([frame[5], frame[6]]);
                        self.framer.consume(len);
                        self.e.requests += 1;
                        self.e.refuse(tag, ename);
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
        use crate::error::{EBADMSG, EVERSION};
        if let protocol::Error::BadType(_) = e {
            return Some(if self.e.versioned { EBADMSG } else { EVERSION });
        }
        if self.framer.holds_tversion(frame) {
            return None;
        }
        if self.e.versioned || frame[4] == MsgType::Tversion as u8 {
            Some(e.as_str())
        } else {
            None
        }
    }

    /// Retries pending reads; answers those the tree can now answer.
    pub fn poll(&mut self, tree: &mut T) {
        self.e.poll(tree);
    }

    /// The transport went away: every fid is clunked and every request forgotten.
    pub fn reset(&mut self, tree: &mut T) {
        self.e.reset(tree);
        self.framer.clear();
    }
}

const _: () = assert!(MIN_MSIZE as usize > IOHDRSZ + HEADER_LEN);
