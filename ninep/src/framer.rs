//! Cuts a byte stream into 9P frames and survives garbage on the line.
//!
//! A serial line can carry anything: a client that died mid-frame, line noise, a human
//! typing. The framer trusts size[4] only while the stream is in sync; a size below the
//! header or above msize, or an R-message type before a session, puts it out of sync, and it
//! then discards bytes until something that looks like a Tversion header, which is how
//! every client starts a session (intro(5)).
//!
//! On a stream whose end the peer can signal (TCP: [`Framer::set_hangup`]) there is no
//! need to guess: a size that can never be valid breaks the stream ([`Framer::broken`]),
//! and the transport ends the connection instead of resyncing.

use alloc::vec::Vec;
use protocol::{MsgType, HEADER_LEN, NOTAG};

/// Could `ty` be a T-message? Every request type is even, R-messages odd. Even types
/// unknown to 9P2000 are taken as frames (the session answers them with Rerror):
/// clients send extensions, e.g. plan9port's `9p readfd` sends Topenfd (98), and one
/// silently dropped would leave its client waiting forever. Once a session is
/// versioned ([`Framer::any_type`]) odd types are frames too, answered the same way.
fn is_tmessage(ty: u8) -> bool {
    ty.is_multiple_of(2)
}

/// The smallest Tversion: header, msize[4], version[s] with at least "9P".
const MIN_TVERSION: u32 = HEADER_LEN as u32 + 4 + 2 + 2;

pub struct Framer {
    /// Received bytes at `start..end`; the length beyond `end` is space zeroed once, which
    /// [`Framer::lend`] lets a transport receive into directly.
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed (compacted lazily).
    start: usize,
    end: usize,
    synced: bool,
    /// Frames of any type byte are taken (a versioned session), not only T-messages'.
    any_type: bool,
    /// Largest frame ever accepted (the server's maximum msize).
    max: u32,
    /// Input held at most: one frame of the msize agreed (`max` until then) and a header.
    limit: u32,
    /// Bytes thrown away while out of sync, for diagnostics.
    pub discarded: u64,
    /// Tversion frames consumed: each starts a session (a transport logs them).
    pub versions: u64,
    /// The stream has a real hang-up: an impossible size breaks it instead of resyncing.
    hangup: bool,
    broken: bool,
}

/// What the framer found at the head of the stream.
pub enum Next<'a> {
    Frame(&'a [u8]),
    /// Need more bytes.
    Empty,
}

impl Framer {
    pub fn new(max: u32) -> Self {
        Framer {
            buf: Vec::new(),
            start: 0,
            end: 0,
            synced: true,
            any_type: false,
            max,
            limit: max,
            discarded: 0,
            versions: 0,
            hangup: false,
            broken: false,
        }
    }

    /// Takes frames whatever their type byte (`true`, in a versioned session: an
    /// R-message sent as a request is a client's mistake to answer), or only those that
    /// could be T-messages (`false`, before a session: an odd type is line noise).
    pub fn any_type(&mut self, yes: bool) {
        self.any_type = yes;
    }

    /// Does `frame` hold what looks like a Tversion header after its first byte? A frame
    /// that does not decode and holds one is taken for a departed client's partial
    /// message followed by a new client's Tversion, and skipped up to it. Never on a stream
    /// with a hang-up: one connection holds one client, so a bad frame there is its own
    /// malformed request and is answered.
    pub fn holds_tversion(&self, frame: &[u8]) -> bool {
        !self.hangup
            && frame
                .get(1..)
                .is_some_and(|rest| find_tversion(rest, self.max).is_some())
    }

    /// Streams with a real hang-up (TCP) end on a frame that can never be valid.
    pub fn set_hangup(&mut self, hangup: bool) {
        self.hangup = hangup;
    }

    /// A frame that can never be valid arrived on a stream with a hang-up: the transport
    /// should end the connection. Nothing more comes out of `next`.
    pub fn broken(&self) -> bool {
        self.broken
    }

    /// Received bytes held: part of a message when `next` gives nothing.
    pub fn held(&self) -> usize {
        self.end - self.start
    }

    /// Skips input up to the next Tversion: the transport knows the bytes before it may be
    /// a departed client's (e.g. a virtio port closed and reopened in one breath).
    pub fn expect_tversion(&mut self) {
        self.synced = false;
    }

    /// Bounds the input held to one frame of `msize` (the msize agreed; at most the
    /// largest) plus a header, so a session at a small msize does not hold a largest
    /// message's worth of pipelined requests while its replies wait.
    pub fn set_limit(&mut self, msize: u32) {
        self.limit = msize.min(self.max);
    }

    /// How many more bytes `push` will take now: one frame of the limit plus a header.
    pub fn space(&self) -> usize {
        (self.limit as usize + HEADER_LEN).saturating_sub(self.end - self.start)
    }

    /// Appends received bytes; returns how many were taken (at most `space()`).
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        if self.start == self.end || self.start > self.max as usize {
            self.compact();
        }
        let n = bytes.len().min(self.space());
        self.room()[..n].copy_from_slice(&bytes[..n]);
        self.end += n;
        n
    }

    /// Moves the held bytes to the front of the buffer.
    fn compact(&mut self) {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
    }

    /// The free space after the held bytes, `space()` long.
    fn room(&mut self) -> &mut [u8] {
        let want = self.end + self.space();
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        &mut self.buf[self.end..want]
    }

    /// Lends the buffer to a transport that receives outside a lock (the host's threads
    /// share one lock over every session): it receives up to `space()` bytes into the
    /// buffer from the offset returned, then [`Framer::give_back`] returns it with the
    /// count, and nothing is copied. Meanwhile the framer holds nothing.
    pub fn lend(&mut self) -> (Vec<u8>, usize) {
        if self.start > 0 {
            self.compact();
        }
        self.room();
        // A transport receives into all it is lent: no more than `space()`.
        self.buf.truncate(self.end + self.space());
        (core::mem::take(&mut self.buf), self.end)
    }

    /// Takes back the buffer [`Framer::lend`] lent, with `n` bytes received into it.
    pub fn give_back(&mut self, buf: Vec<u8>, n: usize) {
        self.buf = buf;
        self.end = (self.end + n).min(self.buf.len());
    }

    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
        self.limit = self.max;
        self.synced = true;
        self.broken = false;
    }

    /// Marks the current head as garbage and looks for the next Tversion (on a stream
    /// with a hang-up: breaks it).
    pub fn resync(&mut self) {
        self.broken |= self.hangup;
        self.synced = false;
        self.start += 1;
        self.discarded += 1;
    }

    /// The next complete frame, with sizes checked against `msize`. The frame stays at
    /// the head until `consume` is called with its length.
    pub fn next(&mut self, msize: u32) -> Next<'_> {
        match self.next_len(msize) {
            Some(len) => Next::Frame(self.head(len)),
            None => Next::Empty,
        }
    }

    /// The first `len` bytes at the head: the frame [`Framer::next_len`] found, borrowed
    /// without holding the framer mutably (a session decodes it in place).
    pub fn head(&self, len: usize) -> &[u8] {
        let end = (self.start + len).min(self.end);
        &self.buf[self.start..end]
    }

    /// As [`Framer::next`], giving the length of the complete frame at the head.
    pub fn next_len(&mut self, msize: u32) -> Option<usize> {
        loop {
            if self.broken {
                return None;
            }
            let head = &self.buf[self.start..self.end];
            if !self.synced {
                match find_tversion(head, self.max) {
                    Some(i) => {
                        self.start += i;
                        self.discarded += i as u64;
                        self.synced = true;
                    }
                    None => {
                        // Keep a tail that may be the start of a Tversion header.
                        let keep = head.len().min(HEADER_LEN - 1);
                        let drop = head.len() - keep;
                        self.start += drop;
                        self.discarded += drop as u64;
                        return None;
                    }
                }
                continue;
            }
            let size = protocol::frame_size(head)?;
            let ty_ok = self.any_type || head.get(4).is_none_or(|&ty| is_tmessage(ty));
            if self.hangup && ((size as usize) < HEADER_LEN || size > msize) {
                self.broken = true;
                return None;
            }
            if (size as usize) < HEADER_LEN || size > msize || !ty_ok {
                self.resync();
                continue;
            }
            if head.len() < size as usize {
                return None;
            }
            return Some(size as usize);
        }
    }

    pub fn consume(&mut self, n: usize) {
        let ty = self.buf[self.start..self.end].get(4);
        if n >= HEADER_LEN && ty == Some(&(MsgType::Tversion as u8)) {
            self.versions += 1;
        }
        self.start = (self.start + n).min(self.end);
    }
}

/// The offset of the first plausible Tversion header in `b`: size in range, type 100,
/// tag NOTAG. A header cut short at the end of `b` is not reported.
fn find_tversion(b: &[u8], max: u32) -> Option<usize> {
    (0..b.len().saturating_sub(HEADER_LEN - 1)).find(|&i| {
        let size = u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        (MIN_TVERSION..=max).contains(&size)
            && b[i + 4] == MsgType::Tversion as u8
            && u16::from_le_bytes([b[i + 5], b[i + 6]]) == NOTAG
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use protocol::Fcall;

    fn tversion() -> Vec<u8> {
        let mut b = [0u8; 64];
        let n = Fcall::Tversion {
            msize: 8192,
            version: "9P2000",
        }
        .encode(NOTAG, &mut b)
        .unwrap();
        b[..n].to_vec()
    }

    fn frames(f: &mut Framer) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Next::Frame(b) = f.next(8192) {
            let v = b.to_vec();
            if Fcall::decode(&v, 8192).is_err() {
                // What the session does with a frame it cannot decode.
                f.resync();
                continue;
            }
            f.consume(v.len());
            out.push(v);
        }
        out
    }

    #[test]
    fn split_frames_reassemble() {
        let tv = tversion();
        let mut f = Framer::new(8192);
        for b in tv.iter().chain(tv.iter()) {
            f.push(core::slice::from_ref(b));
        }
        assert_eq!(frames(&mut f), vec![tv.clone(), tv]);
    }

    #[test]
    fn garbage_then_tversion() {
        let tv = tversion();
        for garbage in [
            &b"hello, world\n"[..],
            &[0, 0, 0, 0][..],
            &[0xff; 40][..],
            &[20, 0, 0, 0, 100, 0][..], // looks like a header, then a bad tag
            &[100, 0, 0, 0, 0x69, 1, 0][..], // size 100, type Rattach
        ] {
            let mut f = Framer::new(8192);
            f.push(garbage);
            f.push(&tv);
            assert_eq!(frames(&mut f), vec![tv.clone()], "after {garbage:?}");
        }
    }

    #[test]
    fn odd_types_are_frames_only_in_a_session() {
        let rclunk = [7, 0, 0, 0, 121, 1, 0];
        let mut f = Framer::new(8192);
        f.any_type(true);
        f.push(&rclunk);
        assert!(matches!(f.next(8192), Next::Frame(b) if b == rclunk));
        let mut f = Framer::new(8192);
        f.push(&rclunk);
        assert!(matches!(f.next(8192), Next::Empty));
        assert_eq!(f.discarded, 1);
    }

    #[test]
    fn tversion_inside_a_frame_is_seen() {
        let tv = tversion();
        let f = Framer::new(8192);
        let mut frame = vec![40, 0, 0, 0, 118, 1, 0];
        assert!(!f.holds_tversion(&frame));
        assert!(!f.holds_tversion(&tv));
        frame.extend_from_slice(&tv);
        assert!(f.holds_tversion(&frame));
    }

    #[test]
    fn oversized_frame_resyncs() {
        let tv = tversion();
        let mut f = Framer::new(8192);
        f.push(&[0, 0, 1, 0, 110]); // 64 KiB Twalk, above msize
        f.push(&tv);
        assert_eq!(frames(&mut f), vec![tv]);
    }

    #[test]
    fn space_is_bounded() {
        let mut f = Framer::new(256);
        let big = [0x55u8; 10_000];
        let mut taken = 0;
        for _ in 0..100 {
            taken += f.push(&big);
            let _ = frames(&mut f);
        }
        assert!(taken > 0);
        assert!(f.buf.len() <= 256 + 2 * HEADER_LEN + 256);
        assert!(f.held() <= 256 + HEADER_LEN);
    }
}
