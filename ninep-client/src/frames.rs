//! Reply frames read off the connection. Reads are buffered, so a small reply (often
//! several) costs one read system call instead of two (its size, then the rest); a reply
//! larger than what is buffered is read the rest of the way straight into its own buffer.
//! Before the first reply (the answer to Tversion) anything that is not one is skipped,
//! as a serial line may carry other output first.

use protocol::{MsgType, HEADER_LEN, NOTAG};
use std::io::{self, Read};

/// How much one read asks for: a few small replies, or the head of a large one.
const BUF: usize = 8192;

pub(crate) struct Frames {
    r: Box<dyn Read + Send>,
    buf: Box<[u8]>,
    /// The unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// Replies larger than this (the msize offered) kill the connection.
    max: u32,
    /// Nothing read yet: skip to the answer to Tversion.
    first: bool,
}

/// Is `h` the header of an answer to Tversion (Rversion or Rerror, tag NOTAG)?
fn is_version_reply(h: &[u8], max: u32) -> bool {
    let size = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let ty = h[4];
    (HEADER_LEN as u32 + 2..=max).contains(&size)
        && (ty == MsgType::Rversion as u8 || ty == MsgType::Rerror as u8)
        && u16::from_le_bytes([h[5], h[6]]) == NOTAG
}

impl Frames {
    pub(crate) fn new(r: Box<dyn Read + Send>, max: u32) -> Frames {
        Frames {
            r,
            buf: vec![0u8; BUF].into_boxed_slice(),
            start: 0,
            end: 0,
            max,
            first: true,
        }
    }

    fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Reads until at least `n` (at most `BUF`) bytes are buffered.
    fn need(&mut self, n: usize) -> io::Result<()> {
        if self.buffered() >= n {
            return Ok(());
        }
        // What is left is short of `n`, so moving it to the front is cheap.
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        while self.end < n {
            match self.r.read(&mut self.buf[self.end..]) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(got) => self.end += got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The next reply frame, or why the connection is unusable.
    pub(crate) fn next(&mut self) -> Result<Vec<u8>, String> {
        let failed = |e: io::Error| format!("reading reply: {e}");
        if self.first {
            loop {
                self.need(HEADER_LEN).map_err(failed)?;
                if is_version_reply(&self.buf[self.start..self.end], self.max) {
                    break;
                }
                self.start += 1;
            }
            self.first = false;
        }
        self.need(4).map_err(failed)?;
        let b = &self.buf[self.start..];
        let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if (n as usize) < HEADER_LEN || n > self.max {
            return Err(format!("bad reply size {n}"));
        }
        let n = n as usize;
        let have = self.buffered().min(n);
        let mut frame = Vec::with_capacity(n);
        frame.extend_from_slice(&self.buf[self.start..self.start + have]);
        self.start += have;
        if have < n {
            frame.resize(n, 0);
            self.r.read_exact(&mut frame[have..]).map_err(failed)?;
        }
        Ok(frame)
    }
}
