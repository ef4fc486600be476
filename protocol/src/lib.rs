//! A `no_std` codec for 9P2000 as intro(5) defines it.
//!
//! Decoding borrows from the frame it reads ([`Fcall`] holds `&str` and `&[u8]` that point
//! into it), needs no allocator, and is total: any byte sequence yields a message or an
//! [`Error`], never a panic or an out-of-bounds read. Encoding writes into a caller's
//! buffer and fails cleanly when the buffer (or the negotiated msize) is too small.
//! With the `alloc` feature, [`Stat`] is the owned stat record servers and clients keep.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;

mod dir;
mod fcall;
#[cfg(feature = "alloc")]
mod stat;
mod wire;

pub use dir::{Dir, DirIter};
pub use fcall::{Fcall, MsgType, Qids, Wnames};
pub use wire::{Reader, Writer};

#[cfg(feature = "alloc")]
pub use stat::Stat;

/// The version string this codec speaks.
pub const VERSION: &str = "9P2000";
/// The tag of Tversion, which has no tag.
pub const NOTAG: u16 = 0xffff;
/// "No fid", as in Tattach's afid.
pub const NOFID: u32 = 0xffff_ffff;
/// The most names a Twalk carries.
pub const MAXWELEM: usize = 16;
/// size[4] type[1] tag[2]: every message starts with this.
pub const HEADER_LEN: usize = 7;
/// Bytes before an Rread's data: size[4] type[1] tag[2] count[4].
pub const RREAD_HEADER_LEN: usize = HEADER_LEN + 4;
/// Rread/Twrite header: size[4] type[1] tag[2] count[4] (plus fid[4] offset[8] for Twrite).
pub const IOHDRSZ: usize = 24;
/// The data of one bulk message (a Twrite or Rread at the hypervisor's largest msize,
/// `BULK_IO + IOHDRSZ`): 1 MiB, so an upload or a queue disk's batch of completions
/// moves a megabyte per message.
pub const BULK_IO: u32 = 1024 * 1024;

/// Qid.type bits.
pub mod qt {
    pub const DIR: u8 = 0x80;
    pub const APPEND: u8 = 0x40;
    pub const EXCL: u8 = 0x20;
    pub const MOUNT: u8 = 0x10;
    pub const AUTH: u8 = 0x08;
    pub const TMP: u8 = 0x04;
    pub const FILE: u8 = 0x00;
}

/// Dir.mode bits above the permission bits.
pub mod dm {
    pub const DIR: u32 = 0x8000_0000;
    pub const APPEND: u32 = 0x4000_0000;
    pub const EXCL: u32 = 0x2000_0000;
    pub const MOUNT: u32 = 0x1000_0000;
    pub const AUTH: u32 = 0x0800_0000;
    pub const TMP: u32 = 0x0400_0000;
}

/// Topen/Tcreate mode bits.
pub mod om {
    pub const READ: u8 = 0;
    pub const WRITE: u8 = 1;
    pub const RDWR: u8 = 2;
    pub const EXEC: u8 = 3;
    pub const TRUNC: u8 = 0x10;
    pub const RCLOSE: u8 = 0x40;
}

/// A file's unique identity on the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Qid {
    pub ty: u8,
    pub version: u32,
    pub path: u64,
}

impl Qid {
    pub const LEN: usize = 13;

    pub fn is_dir(&self) -> bool {
        self.ty & qt::DIR != 0
    }
}

/// Why a frame could not be decoded or a message could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The frame ended before a field it announced.
    Short,
    /// Bytes remain after the last field.
    Trailing,
    /// size[4] disagrees with the frame, is below the header or above msize.
    BadSize,
    /// The type byte names no 9P2000 message.
    BadType(u8),
    /// A string is not UTF-8 or holds NUL (intro(5): NUL is illegal in every string).
    BadString,
    /// A file name (a walk element, a created or stat'ed name) is not UTF-8 or holds NUL.
    BadName,
    /// A stat record inside a message is malformed: its sizes disagree with its fields.
    BadStat,
    /// A Twalk/Rwalk with more than MAXWELEM elements.
    TooManyWalkElems,
    /// The output buffer (or msize) cannot hold the message.
    NoSpace,
}

impl Error {
    /// The Plan 9 error string a server sends for a frame it cannot decode (the names
    /// and the stat record use port/error.h's Ebadchar and Ebadstat).
    pub fn as_str(&self) -> &'static str {
        match self {
            Error::Short => "short message",
            Error::Trailing => "extra bytes at end of message",
            Error::BadSize => "bad message size",
            Error::BadType(_) => "bad message type",
            Error::BadString => "bad character in string",
            Error::BadName => "bad character in file name",
            Error::BadStat => "malformed stat buffer",
            Error::TooManyWalkElems => "too many names in walk",
            Error::NoSpace => "message too large",
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The version a server speaking 9P2000 answers to a client's Tversion offer (version(5)):
/// any dialect of 9P2000 ("9P2000.u", "9P2000.L") is answered with plain "9P2000", which
/// the client then speaks or hangs up; anything else with "unknown".
pub fn negotiate_version(offered: &str) -> &'static str {
    if offered.starts_with(VERSION) {
        VERSION
    } else {
        "unknown"
    }
}

/// Reads size[4] from the start of a stream buffer, if four bytes are there.
pub fn frame_size(buf: &[u8]) -> Option<u32> {
    let b = buf.get(..4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}
