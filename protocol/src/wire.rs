//! Little-endian field readers and writers with bounds checks on every access.

use crate::{Error, Qid};

/// Reads fields from a byte slice; every read is checked against its end.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).ok_or(Error::Short)?;
        let b = self.buf.get(self.pos..end).ok_or(Error::Short)?;
        self.pos = end;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// s[2] followed by that many bytes of UTF-8 without NUL (intro(5)).
    pub fn str(&mut self) -> Result<&'a str, Error> {
        let n = self.u16()? as usize;
        match core::str::from_utf8(self.bytes(n)?) {
            Ok(s) if !s.contains('\0') => Ok(s),
            _ => Err(Error::BadString),
        }
    }

    /// A string that is a file name: as [`Reader::str`], its failure named for a name.
    pub fn name(&mut self) -> Result<&'a str, Error> {
        self.str().map_err(|e| match e {
            Error::BadString => Error::BadName,
            e => e,
        })
    }

    pub fn qid(&mut self) -> Result<Qid, Error> {
        Ok(Qid {
            ty: self.u8()?,
            version: self.u32()?,
            path: self.u64()?,
        })
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), Error> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(Error::Trailing)
        }
    }
}

/// Writes fields into a byte slice; a write past its end fails with [`Error::NoSpace`].
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        Writer { buf, pos: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn bytes(&mut self, b: &[u8]) -> Result<(), Error> {
        let end = self.pos.checked_add(b.len()).ok_or(Error::NoSpace)?;
        self.buf
            .get_mut(self.pos..end)
            .ok_or(Error::NoSpace)?
            .copy_from_slice(b);
        self.pos = end;
        Ok(())
    }

    pub fn u8(&mut self, v: u8) -> Result<(), Error> {
        self.bytes(&[v])
    }

    pub fn u16(&mut self, v: u16) -> Result<(), Error> {
        self.bytes(&v.to_le_bytes())
    }

    pub fn u32(&mut self, v: u32) -> Result<(), Error> {
        self.bytes(&v.to_le_bytes())
    }

    pub fn u64(&mut self, v: u64) -> Result<(), Error> {
        self.bytes(&v.to_le_bytes())
    }

    pub fn str(&mut self, s: &str) -> Result<(), Error> {
        let n = u16::try_from(s.len()).map_err(|_| Error::NoSpace)?;
        self.u16(n)?;
        self.bytes(s.as_bytes())
    }

    pub fn qid(&mut self, q: &Qid) -> Result<(), Error> {
        self.u8(q.ty)?;
        self.u32(q.version)?;
        self.u64(q.path)
    }

    /// Overwrites a u16 written earlier at `at` (for length prefixes known only later).
    pub fn patch_u16(&mut self, at: usize, v: u16) -> Result<(), Error> {
        self.buf
            .get_mut(at..at + 2)
            .ok_or(Error::NoSpace)?
            .copy_from_slice(&v.to_le_bytes());
        Ok(())
    }

    /// Overwrites a u32 written earlier at `at`.
    pub fn patch_u32(&mut self, at: usize, v: u32) -> Result<(), Error> {
        self.buf
            .get_mut(at..at + 4)
            .ok_or(Error::NoSpace)?
            .copy_from_slice(&v.to_le_bytes());
        Ok(())
    }
}
