//! One 9P connection over a byte link, whatever carries it: a serial line, a virtio port,
//! a TCP connection. The transport moves bytes and reports its peer's comings and goings;
//! [`Conn`] decides what they mean for the session (framing, resync, stale partial
//! messages, broken streams), so no transport re-derives 9P framing.

use crate::session::{Limits, Session};
use crate::tree::Tree;

/// What the link can tell about its peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A line with no hang-up signal (a UART, a virtconsole): garbage is skipped up to the
    /// next Tversion, and a partial message left alone for the stale time is a departed
    /// client's remains.
    Line,
    /// A stream whose end the peer signals (TCP): a frame that can never be valid (size
    /// below the header or above msize) ends the connection instead of resyncing.
    Stream,
}

/// The peer went away and maybe came back (a virtio port closed or reopened).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reset {
    /// The next byte is the new client's first.
    Clean,
    /// A departed client's last bytes may come before the new one's Tversion: skip to it.
    Resync,
}

/// What happened to the connection in one [`Conn::process`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Events {
    /// Tversions answered: each starts a session.
    pub versions: u64,
    /// A partial message went stale and the session started anew (a `Line`).
    pub abandoned: bool,
    /// The stream can never be valid again: end the connection (a `Stream`).
    pub broken: bool,
}

pub struct Conn<T: Tree> {
    session: Session<T>,
    kind: Kind,
    /// Clock reading (any unit) of the last byte received.
    last_rx: u64,
    /// A partial message with no byte for this long is abandoned (`Line` only).
    stale: u64,
    versions: u64,
}

impl<T: Tree> Conn<T> {
    /// A connection; `stale` is in the unit of the `now` arguments.
    pub fn new(id: u32, limits: Limits, kind: Kind, stale: u64, now: u64) -> Self {
        let mut session = Session::new(id, limits);
        session.framer().set_hangup(kind == Kind::Stream);
        Conn {
            session,
            kind,
            last_rx: now,
            stale,
            versions: 0,
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn session(&mut self) -> &mut Session<T> {
        &mut self.session
    }

    pub fn session_ref(&self) -> &Session<T> {
        &self.session
    }

    /// How many received bytes [`Conn::input`] takes now.
    pub fn input_space(&self) -> usize {
        self.session.input_space()
    }

    /// Takes received bytes (up to `input_space()`).
    pub fn input(&mut self, bytes: &[u8], now: u64) -> usize {
        if !bytes.is_empty() {
            self.last_rx = now;
        }
        self.session.input(bytes)
    }

    /// Lends the session's input buffer to receive into outside a lock
    /// ([`Session::lend_input`]).
    pub fn lend_input(&mut self) -> (alloc::vec::Vec<u8>, usize) {
        self.session.lend_input()
    }

    /// Returns the lent buffer with `n` bytes received at `now`.
    pub fn give_back_input(&mut self, buf: alloc::vec::Vec<u8>, n: usize, now: u64) {
        if n > 0 {
            self.last_rx = now;
        }
        self.session.give_back_input(buf, n);
    }

    /// The peer went away (its fids are clunked: ORCLOSE files removed) and, on a line,
    /// perhaps a new one came.
    pub fn reset(&mut self, tree: &mut T, how: Reset) {
        self.session.reset(tree);
        if how == Reset::Resync {
            self.session.framer().expect_tversion();
        }
    }

    /// The connection ends for good: every fid is clunked.
    pub fn close(&mut self, tree: &mut T) {
        self.session.reset(tree);
    }

    /// Answers every complete request received; then judges what is left over.
    pub fn process(&mut self, tree: &mut T, now: u64) -> Events {
        self.session.process(tree);
        let mut ev = Events::default();
        let versions = self.session.framer().versions;
        ev.versions = versions - self.versions;
        self.versions = versions;
        ev.broken = self.session.framer().broken();
        // Bytes left with no replies waiting to go out: part of a message. On a line, left
        // alone for `stale`, its sender is gone, and those bytes would swallow the next
        // client's Tversion.
        if self.kind == Kind::Line
            && self.session.framer().held() > 0
            && self.session.output().is_empty()
            && now.saturating_sub(self.last_rx) > self.stale
        {
            self.session.reset(tree);
            ev.abandoned = true;
        }
        ev
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memfs::Memfs;
    use alloc::vec;
    use alloc::vec::Vec;
    use protocol::{Fcall, NOTAG};

    fn frame(tag: u16, f: Fcall<'_>) -> Vec<u8> {
        let mut b = [0u8; 256];
        let n = f.encode(tag, &mut b).unwrap();
        b[..n].to_vec()
    }

    fn tversion() -> Vec<u8> {
        frame(
            NOTAG,
            Fcall::Tversion {
                msize: 8192,
                version: "9P2000",
            },
        )
    }

    fn conn(kind: Kind) -> (Conn<Memfs>, Memfs) {
        (
            Conn::new(1, Limits::default(), kind, 10, 0),
            Memfs::new("eve"),
        )
    }

    #[test]
    fn tversion_is_counted() {
        let (mut c, mut t) = conn(Kind::Line);
        c.input(&tversion(), 1);
        assert_eq!(c.process(&mut t, 1).versions, 1);
        assert!(!c.session().output().is_empty());
        assert_eq!(c.process(&mut t, 2).versions, 0);
    }

    #[test]
    fn impossible_size_breaks_a_stream_but_resyncs_a_line() {
        for bad in [
            &[3u8, 0, 0, 0, 100, 0xff, 0xff][..],
            &[0xff, 0xff, 0xff, 0xff, 100],
        ] {
            let (mut c, mut t) = conn(Kind::Stream);
            c.input(bad, 1);
            c.input(&tversion(), 1);
            let ev = c.process(&mut t, 1);
            assert!(ev.broken, "{bad:?}");
            assert!(c.session().output().is_empty());

            let (mut c, mut t) = conn(Kind::Line);
            c.input(bad, 1);
            c.input(&tversion(), 1);
            let ev = c.process(&mut t, 1);
            assert!(!ev.broken);
            assert_eq!(ev.versions, 1, "{bad:?}");
        }
    }

    /// A request that does not decode and happens to hold a Tversion header (here a
    /// Twalk whose name is one) is a departed client's remains on a line, skipped to that
    /// Tversion; on a stream it is its own client's request and gets an Rerror.
    #[test]
    fn a_tversion_inside_a_bad_frame_is_a_new_client_on_a_line_only() {
        let tv = tversion();
        // Twalk fid 0 newfid 1 with one name: the Tversion's bytes and 0xff (not UTF-8).
        let mut body = vec![
            protocol::MsgType::Twalk as u8,
            1,
            0,
            0,
            0,
            0,
            0,
            1,
            0,
            0,
            0,
            1,
            0,
        ];
        body.extend_from_slice(&(tv.len() as u16 + 1).to_le_bytes());
        body.extend_from_slice(&tv);
        body.push(0xff);
        let mut walk = (body.len() as u32 + 4).to_le_bytes().to_vec();
        walk.extend_from_slice(&body);
        for (kind, answered) in [(Kind::Line, false), (Kind::Stream, true)] {
            let (mut c, mut t) = conn(kind);
            c.input(&tv, 1);
            c.process(&mut t, 1);
            let out = c.session().output().len();
            c.session().consume_output(out);
            c.input(&walk, 2);
            let ev = c.process(&mut t, 2);
            let out = c.session().output();
            let rerror = out.len() > 4 && out[4] == protocol::MsgType::Rerror as u8;
            assert_eq!(rerror, answered, "{kind:?}: {out:?}");
            assert_eq!(ev.versions, u64::from(!answered), "{kind:?}");
        }
    }

    #[test]
    fn stale_partial_message_is_abandoned_on_a_line_only() {
        let half = &tversion()[..5];
        let (mut c, mut t) = conn(Kind::Line);
        c.input(half, 1);
        assert!(!c.process(&mut t, 5).abandoned);
        assert!(c.process(&mut t, 12).abandoned);
        // The next client's Tversion is whole again.
        c.input(&tversion(), 13);
        assert_eq!(c.process(&mut t, 13).versions, 1);

        let (mut c, mut t) = conn(Kind::Stream);
        c.input(half, 1);
        assert!(!c.process(&mut t, 100).abandoned);
    }

    #[test]
    fn resync_reset_skips_to_the_next_tversion() {
        let (mut c, mut t) = conn(Kind::Line);
        c.reset(&mut t, Reset::Resync);
        // The tail of an old client's Tclunk, then the new client's Tversion.
        let old = frame(1, Fcall::Tclunk { fid: 0 });
        c.input(&old[3..], 1);
        c.input(&tversion(), 1);
        let ev = c.process(&mut t, 1);
        assert_eq!(ev.versions, 1);
        assert_eq!(c.session().stats().requests, 1);
    }
}
