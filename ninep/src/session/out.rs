//! The replies waiting for the transport, encoded in place in one buffer.
//!
//! The buffer's length is the part ever zeroed: it grows to the largest backlog plus an
//! msize and stays there, so encoding a reply (or reading a file into an Rread) touches
//! only the reply's own bytes, however large the msize.

use crate::error::EBADARG;
use alloc::vec::Vec;
use protocol::{Fcall, RREAD_HEADER_LEN};

#[derive(Default)]
pub(super) struct Out {
    buf: Vec<u8>,
    /// Bytes already handed to the transport.
    start: usize,
    /// End of the replies encoded so far.
    end: usize,
}

impl Out {
    /// Replies encoded and not yet handed to the transport.
    pub(super) fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// The transport sent `n` bytes of `pending()`.
    pub(super) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.clear();
        }
    }

    pub(super) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// `n` bytes after the last reply, zeroed only the first time the buffer reaches them.
    fn room(&mut self, n: usize) -> &mut [u8] {
        let want = self.end + n;
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        &mut self.buf[self.end..want]
    }

    /// Encodes `f` as the reply to `tag`, in at most `msize` bytes.
    pub(super) fn encode(&mut self, tag: u16, f: &Fcall<'_>, msize: usize) {
        let room = self.room(msize);
        let n = match f.encode(tag, room) {
            Ok(n) => n,
            // Only an error string longer than msize can get here.
            Err(_) => Fcall::Rerror { ename: EBADARG }
                .encode(tag, room)
                .unwrap_or(0),
        };
        self.end += n;
    }

    /// Where an Rread's `count` bytes of data go: the tree reads into this, then
    /// [`Out::commit_rread`] puts the header before the bytes it read.
    pub(super) fn rread_data(&mut self, count: usize) -> &mut [u8] {
        &mut self.room(RREAD_HEADER_LEN + count)[RREAD_HEADER_LEN..]
    }

    /// Completes the Rread to `tag` whose `n` bytes of data [`Out::rread_data`] holds.
    pub(super) fn commit_rread(&mut self, tag: u16, n: usize) {
        let room = self.room(RREAD_HEADER_LEN + n);
        if let Ok(len) = Fcall::encode_rread_in_place(tag, n, room) {
            self.end += len;
        }
    }

    /// Appends an encoded reply (a held one, released).
    pub(super) fn extend(&mut self, reply: &[u8]) {
        self.room(reply.len()).copy_from_slice(reply);
        self.end += reply.len();
    }

    /// Removes the replies encoded from `at` on and returns them.
    pub(super) fn split_off(&mut self, at: usize) -> Vec<u8> {
        let at = at.clamp(self.start, self.end);
        let r = self.buf[at..self.end].to_vec();
        self.end = at;
        r
    }

    /// The end of what is encoded: where the next reply starts.
    pub(super) fn end(&self) -> usize {
        self.end
    }

    /// Hands `pending()` over as one buffer in `spare`'s place. A buffer mostly full of
    /// replies (a large Rread) is handed over whole, and `spare` becomes the buffer for the
    /// next replies; a few small replies are copied into `spare`, so the buffer keeps its
    /// zeroed length and the next large reply is not zeroed again.
    pub(super) fn take(&mut self, spare: Vec<u8>) -> Vec<u8> {
        let r = if self.start == 0 && self.end * 2 >= self.buf.len() {
            let mut r = core::mem::replace(&mut self.buf, spare);
            r.truncate(self.end);
            r
        } else {
            let mut r = spare;
            r.clear();
            r.extend_from_slice(self.pending());
            r
        };
        self.clear();
        r
    }
}
