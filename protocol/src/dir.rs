//! The stat record (stat(5)): what Rstat returns, Twstat sends and directory reads hold.

use crate::wire::{Reader, Writer};
use crate::{Error, Qid};

/// A directory entry. `size[2]` is not stored: it is derived on encoding and checked on
/// decoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dir<'a> {
    pub ty: u16,
    pub dev: u32,
    pub qid: Qid,
    pub mode: u32,
    pub atime: u32,
    pub mtime: u32,
    pub length: u64,
    pub name: &'a str,
    pub uid: &'a str,
    pub gid: &'a str,
    pub muid: &'a str,
}

/// Fixed part of a stat record after size[2]: type dev qid mode atime mtime length and the
/// four string lengths.
const FIXED: usize = 2 + 4 + Qid::LEN + 4 + 4 + 4 + 8 + 4 * 2;

impl<'a> Dir<'a> {
    /// A wstat record that changes nothing ("don't touch" in every field, stat(5)).
    pub const DONT_TOUCH: Dir<'static> = Dir {
        ty: !0,
        dev: !0,
        qid: Qid {
            ty: !0,
            version: !0,
            path: !0,
        },
        mode: !0,
        atime: !0,
        mtime: !0,
        length: !0,
        name: "",
        uid: "",
        gid: "",
        muid: "",
    };

    /// Bytes the record takes on the wire, size[2] included.
    pub fn encoded_len(&self) -> usize {
        2 + FIXED + self.name.len() + self.uid.len() + self.gid.len() + self.muid.len()
    }

    /// Decodes one record (with its size[2]) from the reader. A record whose sizes
    /// disagree with its fields is [`Error::BadStat`].
    pub fn decode(r: &mut Reader<'a>) -> Result<Self, Error> {
        Self::decode_fields(r).map_err(malformed)
    }

    fn decode_fields(r: &mut Reader<'a>) -> Result<Self, Error> {
        let size = r.u16()? as usize;
        let mut r = Reader::new(r.bytes(size)?);
        let d = Dir {
            ty: r.u16()?,
            dev: r.u32()?,
            qid: r.qid()?,
            mode: r.u32()?,
            atime: r.u32()?,
            mtime: r.u32()?,
            length: r.u64()?,
            name: r.name()?,
            uid: r.str()?,
            gid: r.str()?,
            muid: r.str()?,
        };
        r.finish()?;
        Ok(d)
    }

    /// Decodes a record that must fill `buf` exactly.
    pub fn from_bytes(buf: &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader::new(buf);
        let d = Self::decode(&mut r)?;
        r.finish().map_err(malformed)?;
        Ok(d)
    }

    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        let size = u16::try_from(self.encoded_len() - 2).map_err(|_| Error::NoSpace)?;
        w.u16(size)?;
        w.u16(self.ty)?;
        w.u32(self.dev)?;
        w.qid(&self.qid)?;
        w.u32(self.mode)?;
        w.u32(self.atime)?;
        w.u32(self.mtime)?;
        w.u64(self.length)?;
        w.str(self.name)?;
        w.str(self.uid)?;
        w.str(self.gid)?;
        w.str(self.muid)
    }

    /// Encodes into `buf`, returning the bytes written.
    pub fn to_bytes(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let mut w = Writer::new(buf);
        self.encode(&mut w)?;
        Ok(w.pos())
    }
}

/// A record cut short or followed by bytes is a malformed stat, not a malformed message.
pub(crate) fn malformed(e: Error) -> Error {
    match e {
        Error::Short | Error::Trailing => Error::BadStat,
        e => e,
    }
}

/// Iterates over the stat records packed in a directory read's data.
pub struct DirIter<'a> {
    r: Reader<'a>,
}

impl<'a> DirIter<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        DirIter {
            r: Reader::new(data),
        }
    }
}

impl<'a> Iterator for DirIter<'a> {
    type Item = Result<Dir<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.r.remaining() == 0 {
            return None;
        }
        let d = Dir::decode(&mut self.r);
        if d.is_err() {
            // Stop after the first bad record: what follows cannot be framed.
            self.r = Reader::new(&[]);
        }
        Some(d)
    }
}
