//! The text of a client-served queue file for a switch port (a `client` port): what a
//! read returns and a write delivers. Each frame is a header line, `frame N\n` (N its
//! length in decimal), then its N bytes; a read returns as many whole frames as fit in
//! its count, a write carries whole frames only. From a shell: `read` the header line,
//! `dd bs=N count=1` the frame.
//!
//! A read whose count cannot hold the next frame is an error ([`Error::Short`]) that
//! takes nothing; a write is checked whole before any of its frames is delivered, so a
//! bad one delivers nothing.

use crate::{PortId, Switch, HEADER_LEN, MAX_FRAME};
use alloc::vec::Vec;
use core::fmt;

/// Why a read or write of a queue file failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Error {
    /// The read's count holds no header and frame (the next frame's whole length).
    Short(usize),
    /// A header line other than `frame N\n`, N within a frame's bounds.
    BadHeader,
    /// A write ending inside a frame.
    Partial,
    /// No such port.
    NoPort,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Short(n) => write!(f, "read count too small: the next frame needs {n}"),
            Error::BadHeader => f.write_str("bad frame header: want frame N"),
            Error::Partial => f.write_str("write ends inside a frame"),
            Error::NoPort => f.write_str("no such switch port"),
        }
    }
}

/// The header word.
const WORD: &str = "frame ";
/// The longest header line: `frame 1518\n`.
pub const MAX_HEADER: usize = WORD.len() + 4 + 1;

/// Appends frame `f` with its header to `out`.
pub fn encode(f: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(WORD.as_bytes());
    let mut digits = [0u8; 20];
    let mut n = f.len();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.push(b'\n');
    out.extend_from_slice(f);
}

/// The whole frames in `data`, each a slice of it, or why not.
pub fn decode(mut data: &[u8]) -> Result<Vec<&[u8]>, Error> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let line_end = data
            .iter()
            .take(MAX_HEADER)
            .position(|&b| b == b'\n')
            .ok_or(Error::BadHeader)?;
        let n = core::str::from_utf8(&data[..line_end])
            .ok()
            .and_then(|l| l.strip_prefix(WORD))
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<usize>().ok())
            .filter(|n| (HEADER_LEN..=MAX_FRAME).contains(n))
            .ok_or(Error::BadHeader)?;
        let rest = &data[line_end + 1..];
        if rest.len() < n {
            return Err(Error::Partial);
        }
        out.push(&rest[..n]);
        data = &rest[n..];
    }
    Ok(out)
}

/// The length of a frame of `len` bytes with its header.
pub fn encoded_len(len: usize) -> usize {
    WORD.len() + digits(len) + 1 + len
}

fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// A read of `count` bytes of port `p`'s queue file: the frames queued for it that fit,
/// taken off its queue (empty when none is queued).
pub fn read(sw: &mut Switch, p: PortId, count: usize) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    while let Some(len) = sw.peek_len(p) {
        let need = encoded_len(len);
        if out.len() + need > count {
            if out.is_empty() {
                return Err(Error::Short(need));
            }
            break;
        }
        if let Some(f) = sw.pop(p) {
            encode(&f, &mut out);
        }
    }
    if out.is_empty() && sw.kind(p).is_none() {
        return Err(Error::NoPort);
    }
    Ok(out)
}

/// A write to port `p`'s queue file at time `now`: every frame in it into the switch
/// from that port (what the switch then drops it counts). Returns the frames taken.
pub fn write(sw: &mut Switch, p: PortId, data: &[u8], now: u64) -> Result<usize, Error> {
    if sw.kind(p).is_none() {
        return Err(Error::NoPort);
    }
    let frames = decode(data)?;
    for f in &frames {
        sw.input(p, f, now).map_err(|_| Error::NoPort)?;
    }
    Ok(frames.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Kind, Mac, Verdict};
    use alloc::string::ToString;
    use alloc::vec;

    fn frame(dst: [u8; 6], src: [u8; 6], len: usize) -> Vec<u8> {
        let mut f = vec![0x11u8; len];
        f[..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f
    }

    const GUEST: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const FAR: [u8; 6] = [2, 0, 0, 0, 0, 7];

    #[test]
    fn encoding_round_trips() {
        let mut out = Vec::new();
        let a = frame(GUEST, FAR, 60);
        let b = frame([0xff; 6], FAR, MAX_FRAME);
        encode(&a, &mut out);
        encode(&b, &mut out);
        assert!(out.starts_with(b"frame 60\n"));
        assert_eq!(encoded_len(a.len()) + encoded_len(b.len()), out.len());
        assert_eq!(decode(&out), Ok(vec![&a[..], &b[..]]));
        assert_eq!(decode(b""), Ok(vec![]));
        assert_eq!(MAX_HEADER, "frame 1518\n".len());
    }

    #[test]
    fn bad_writes_are_errors() {
        for bad in [
            &b"frame 13\n0123456789abc"[..],
            b"frame 1519\n",
            b"frame -1\n",
            b"frame +60\n",
            b"frame\n",
            b"frame 60",
            b"frame 00000000000060\n",
            b"FRAME 60\n",
        ] {
            assert_eq!(decode(bad), Err(Error::BadHeader), "{bad:?}");
        }
        assert_eq!(decode(b"frame 14\n0123"), Err(Error::Partial));
        assert_eq!(
            Error::Short(70).to_string(),
            "read count too small: the next frame needs 70"
        );
    }

    #[test]
    fn a_client_port_through_its_file() {
        let mut sw = Switch::new(Config::default());
        let g = sw.add(Kind::Guest, Some(Mac(GUEST))).unwrap();
        let c = sw.add(Kind::Client, None).unwrap();
        // The guest's frames for an address beyond the client's link, read in batches.
        for i in 0..3u8 {
            let mut f = frame(FAR, GUEST, 60);
            f[20] = i;
            assert_eq!(sw.input(g, &f, 0), Ok(Verdict::Forwarded(1)));
        }
        assert_eq!(read(&mut sw, c, 10), Err(Error::Short(69)));
        assert_eq!(sw.queued(c), 3, "a short read takes nothing");
        let two = read(&mut sw, c, 2 * 69 + 68).unwrap();
        let got = decode(&two).unwrap();
        assert_eq!((got.len(), got[1][20]), (2, 1));
        assert_eq!(read(&mut sw, c, 8192).unwrap().len(), 69);
        assert_eq!(read(&mut sw, c, 8192).unwrap(), b"");
        // Frames written are the client's: the guest gets its own; a spoofed or bad one
        // is the switch's to count, and a bad write delivers nothing.
        let mut w = Vec::new();
        encode(&frame(GUEST, FAR, 60), &mut w);
        encode(&frame(GUEST, GUEST, 60), &mut w);
        assert_eq!(write(&mut sw, c, &w, 0), Ok(2));
        assert_eq!(sw.queued(g), 1);
        assert_eq!(sw.counters(c).unwrap().spoof, 1);
        w.extend_from_slice(b"frame 60\n");
        assert_eq!(write(&mut sw, c, &w, 0), Err(Error::Partial));
        assert_eq!(sw.queued(g), 1);
        sw.remove(c).unwrap();
        assert_eq!(read(&mut sw, c, 100), Err(Error::NoPort));
        assert_eq!(write(&mut sw, c, b"", 0), Err(Error::NoPort));
    }
}
