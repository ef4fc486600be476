//! The 9P2000 messages of intro(5), decoded from and encoded to whole frames.

use crate::dir::{malformed, Dir};
use crate::wire::{Reader, Writer};
use crate::{Error, Qid, HEADER_LEN, MAXWELEM, RREAD_HEADER_LEN};

/// Declares `MsgType` from a table of intro(5)'s message numbers, and the list
/// `from_u8` searches, so that each message type is written once.
macro_rules! msg_types {
    ($($(#[$doc:meta])* $name:ident = $n:literal,)*) => {
        /// The message type byte. Tmessages are even; the Rmessage that answers is one more.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        pub enum MsgType {
            $($(#[$doc])* $name = $n,)*
        }

        impl MsgType {
            const ALL: &'static [MsgType] = &[$(MsgType::$name,)*];
        }
    };
}

msg_types! {
    Tversion = 100, Rversion = 101,
    Tauth = 102,    Rauth = 103,
    Tattach = 104,  Rattach = 105,
    /// Terror (106) is illegal.
                    Rerror = 107,
    Tflush = 108,   Rflush = 109,
    Twalk = 110,    Rwalk = 111,
    Topen = 112,    Ropen = 113,
    Tcreate = 114,  Rcreate = 115,
    Tread = 116,    Rread = 117,
    Twrite = 118,   Rwrite = 119,
    Tclunk = 120,   Rclunk = 121,
    Tremove = 122,  Rremove = 123,
    Tstat = 124,    Rstat = 125,
    Twstat = 126,   Rwstat = 127,
}

impl MsgType {
    pub fn from_u8(b: u8) -> Option<MsgType> {
        Self::ALL.iter().copied().find(|t| *t as u8 == b)
    }
}

/// Up to MAXWELEM names of a Twalk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wnames<'a> {
    len: usize,
    names: [&'a str; MAXWELEM],
}

impl<'a> Wnames<'a> {
    pub fn new(names: &[&'a str]) -> Result<Self, Error> {
        if names.len() > MAXWELEM {
            return Err(Error::TooManyWalkElems);
        }
        let mut w = Wnames {
            len: names.len(),
            names: [""; MAXWELEM],
        };
        w.names[..names.len()].copy_from_slice(names);
        Ok(w)
    }

    pub fn as_slice(&self) -> &[&'a str] {
        &self.names[..self.len]
    }
}

/// Up to MAXWELEM qids of an Rwalk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Qids {
    len: usize,
    qids: [Qid; MAXWELEM],
}

impl Qids {
    pub fn new(qids: &[Qid]) -> Result<Self, Error> {
        if qids.len() > MAXWELEM {
            return Err(Error::TooManyWalkElems);
        }
        let mut q = Qids {
            len: qids.len(),
            qids: [Qid::default(); MAXWELEM],
        };
        q.qids[..qids.len()].copy_from_slice(qids);
        Ok(q)
    }

    pub fn as_slice(&self) -> &[Qid] {
        &self.qids[..self.len]
    }
}

/// One 9P2000 message, borrowing its strings and data from the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fcall<'a> {
    Tversion {
        msize: u32,
        version: &'a str,
    },
    Rversion {
        msize: u32,
        version: &'a str,
    },
    Tauth {
        afid: u32,
        uname: &'a str,
        aname: &'a str,
    },
    Rauth {
        aqid: Qid,
    },
    Tattach {
        fid: u32,
        afid: u32,
        uname: &'a str,
        aname: &'a str,
    },
    Rattach {
        qid: Qid,
    },
    Rerror {
        ename: &'a str,
    },
    Tflush {
        oldtag: u16,
    },
    Rflush,
    Twalk {
        fid: u32,
        newfid: u32,
        wnames: Wnames<'a>,
    },
    Rwalk {
        wqids: Qids,
    },
    Topen {
        fid: u32,
        mode: u8,
    },
    Ropen {
        qid: Qid,
        iounit: u32,
    },
    Tcreate {
        fid: u32,
        name: &'a str,
        perm: u32,
        mode: u8,
    },
    Rcreate {
        qid: Qid,
        iounit: u32,
    },
    Tread {
        fid: u32,
        offset: u64,
        count: u32,
    },
    Rread {
        data: &'a [u8],
    },
    Twrite {
        fid: u32,
        offset: u64,
        data: &'a [u8],
    },
    Rwrite {
        count: u32,
    },
    Tclunk {
        fid: u32,
    },
    Rclunk,
    Tremove {
        fid: u32,
    },
    Rremove,
    Tstat {
        fid: u32,
    },
    Rstat {
        stat: Dir<'a>,
    },
    Twstat {
        fid: u32,
        stat: Dir<'a>,
    },
    Rwstat,
}

/// stat[n] in Rstat/Twstat: n[2] then the record, which carries its own size[2].
fn read_stat<'a>(r: &mut Reader<'a>) -> Result<Dir<'a>, Error> {
    let n = r.u16()? as usize;
    Dir::from_bytes(r.bytes(n).map_err(malformed)?)
}

fn write_stat(w: &mut Writer<'_>, d: &Dir<'_>) -> Result<(), Error> {
    let n = u16::try_from(d.encoded_len()).map_err(|_| Error::NoSpace)?;
    w.u16(n)?;
    d.encode(w)
}

fn read_data<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], Error> {
    let n = r.u32()? as usize;
    r.bytes(n)
}

fn write_data(w: &mut Writer<'_>, data: &[u8]) -> Result<(), Error> {
    w.u32(u32::try_from(data.len()).map_err(|_| Error::NoSpace)?)?;
    w.bytes(data)
}

impl<'a> Fcall<'a> {
    pub fn msg_type(&self) -> MsgType {
        use Fcall::*;
        match self {
            Tversion { .. } => MsgType::Tversion,
            Rversion { .. } => MsgType::Rversion,
            Tauth { .. } => MsgType::Tauth,
            Rauth { .. } => MsgType::Rauth,
            Tattach { .. } => MsgType::Tattach,
            Rattach { .. } => MsgType::Rattach,
            Rerror { .. } => MsgType::Rerror,
            Tflush { .. } => MsgType::Tflush,
            Rflush => MsgType::Rflush,
            Twalk { .. } => MsgType::Twalk,
            Rwalk { .. } => MsgType::Rwalk,
            Topen { .. } => MsgType::Topen,
            Ropen { .. } => MsgType::Ropen,
            Tcreate { .. } => MsgType::Tcreate,
            Rcreate { .. } => MsgType::Rcreate,
            Tread { .. } => MsgType::Tread,
            Rread { .. } => MsgType::Rread,
            Twrite { .. } => MsgType::Twrite,
            Rwrite { .. } => MsgType::Rwrite,
            Tclunk { .. } => MsgType::Tclunk,
            Rclunk => MsgType::Rclunk,
            Tremove { .. } => MsgType::Tremove,
            Rremove => MsgType::Rremove,
            Tstat { .. } => MsgType::Tstat,
            Rstat { .. } => MsgType::Rstat,
            Twstat { .. } => MsgType::Twstat,
            Rwstat => MsgType::Rwstat,
        }
    }

    /// Decodes one whole frame (size[4] included). The size field must equal the frame's
    /// length and lie within `HEADER_LEN..=msize`.
    pub fn decode(frame: &'a [u8], msize: u32) -> Result<(u16, Fcall<'a>), Error> {
        let mut r = Reader::new(frame);
        let size = r.u32()?;
        if (size as usize) < HEADER_LEN || size > msize || size as usize != frame.len() {
            return Err(Error::BadSize);
        }
        let ty = r.u8()?;
        let tag = r.u16()?;
        let t = MsgType::from_u8(ty).ok_or(Error::BadType(ty))?;
        let f = Self::decode_body(t, &mut r)?;
        r.finish()?;
        Ok((tag, f))
    }

    fn decode_body(t: MsgType, r: &mut Reader<'a>) -> Result<Fcall<'a>, Error> {
        use Fcall::*;
        Ok(match t {
            MsgType::Tversion => Tversion {
                msize: r.u32()?,
                version: r.str()?,
            },
            MsgType::Rversion => Rversion {
                msize: r.u32()?,
                version: r.str()?,
            },
            MsgType::Tauth => Tauth {
                afid: r.u32()?,
                uname: r.str()?,
                aname: r.str()?,
            },
            MsgType::Rauth => Rauth { aqid: r.qid()? },
            MsgType::Tattach => Tattach {
                fid: r.u32()?,
                afid: r.u32()?,
                uname: r.str()?,
                aname: r.str()?,
            },
            MsgType::Rattach => Rattach { qid: r.qid()? },
            MsgType::Rerror => Rerror { ename: r.str()? },
            MsgType::Tflush => Tflush { oldtag: r.u16()? },
            MsgType::Rflush => Rflush,
            MsgType::Twalk => {
                let fid = r.u32()?;
                let newfid = r.u32()?;
                let n = r.u16()? as usize;
                if n > MAXWELEM {
                    return Err(Error::TooManyWalkElems);
                }
                let mut names = [""; MAXWELEM];
                for name in names.iter_mut().take(n) {
                    *name = r.name()?;
                }
                Twalk {
                    fid,
                    newfid,
                    wnames: Wnames::new(&names[..n])?,
                }
            }
            MsgType::Rwalk => {
                let n = r.u16()? as usize;
                if n > MAXWELEM {
                    return Err(Error::TooManyWalkElems);
                }
                let mut qids = [Qid::default(); MAXWELEM];
                for q in qids.iter_mut().take(n) {
                    *q = r.qid()?;
                }
                Rwalk {
                    wqids: Qids::new(&qids[..n])?,
                }
            }
            MsgType::Topen => Topen {
                fid: r.u32()?,
                mode: r.u8()?,
            },
            MsgType::Ropen => Ropen {
                qid: r.qid()?,
                iounit: r.u32()?,
            },
            MsgType::Tcreate => Tcreate {
                fid: r.u32()?,
                name: r.name()?,
                perm: r.u32()?,
                mode: r.u8()?,
            },
            MsgType::Rcreate => Rcreate {
                qid: r.qid()?,
                iounit: r.u32()?,
            },
            MsgType::Tread => Tread {
                fid: r.u32()?,
                offset: r.u64()?,
                count: r.u32()?,
            },
            MsgType::Rread => Rread {
                data: read_data(r)?,
            },
            MsgType::Twrite => Twrite {
                fid: r.u32()?,
                offset: r.u64()?,
                data: read_data(r)?,
            },
            MsgType::Rwrite => Rwrite { count: r.u32()? },
            MsgType::Tclunk => Tclunk { fid: r.u32()? },
            MsgType::Rclunk => Rclunk,
            MsgType::Tremove => Tremove { fid: r.u32()? },
            MsgType::Rremove => Rremove,
            MsgType::Tstat => Tstat { fid: r.u32()? },
            MsgType::Rstat => Rstat {
                stat: read_stat(r)?,
            },
            MsgType::Twstat => Twstat {
                fid: r.u32()?,
                stat: read_stat(r)?,
            },
            MsgType::Rwstat => Rwstat,
        })
    }

    /// Completes an Rread whose `count` bytes of data already sit in `buf` right after
    /// its header ([`RREAD_HEADER_LEN`] bytes, which this writes): a server reads a file
    /// straight into its output and encodes nothing twice. Returns the frame's length;
    /// the bytes are those [`Fcall::encode`] gives for `Rread` with the same data.
    pub fn encode_rread_in_place(tag: u16, count: usize, buf: &mut [u8]) -> Result<usize, Error> {
        let len = RREAD_HEADER_LEN
            .checked_add(count)
            .filter(|&l| l <= buf.len())
            .ok_or(Error::NoSpace)?;
        let mut w = Writer::new(&mut buf[..RREAD_HEADER_LEN]);
        w.u32(u32::try_from(len).map_err(|_| Error::NoSpace)?)?;
        w.u8(MsgType::Rread as u8)?;
        w.u16(tag)?;
        w.u32(count as u32)?;
        Ok(len)
    }

    /// Encodes the message with `tag` into `buf` as one frame; returns its length.
    pub fn encode(&self, tag: u16, buf: &mut [u8]) -> Result<usize, Error> {
        let mut w = Writer::new(buf);
        w.u32(0)?;
        w.u8(self.msg_type() as u8)?;
        w.u16(tag)?;
        self.encode_body(&mut w)?;
        let len = w.pos();
        w.patch_u32(0, u32::try_from(len).map_err(|_| Error::NoSpace)?)?;
        Ok(len)
    }

    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        use Fcall::*;
        match *self {
            Tversion { msize, version } | Rversion { msize, version } => {
                w.u32(msize)?;
                w.str(version)
            }
            Tauth { afid, uname, aname } => {
                w.u32(afid)?;
                w.str(uname)?;
                w.str(aname)
            }
            Rauth { aqid: qid } | Rattach { qid } => w.qid(&qid),
            Tattach {
                fid,
                afid,
                uname,
                aname,
            } => {
                w.u32(fid)?;
                w.u32(afid)?;
                w.str(uname)?;
                w.str(aname)
            }
            Rerror { ename } => w.str(ename),
            Tflush { oldtag } => w.u16(oldtag),
            Rflush | Rclunk | Rremove | Rwstat => Ok(()),
            Twalk {
                fid,
                newfid,
                ref wnames,
            } => {
                w.u32(fid)?;
                w.u32(newfid)?;
                let names = wnames.as_slice();
                w.u16(names.len() as u16)?;
                names.iter().try_for_each(|n| w.str(n))
            }
            Rwalk { ref wqids } => {
                let qids = wqids.as_slice();
                w.u16(qids.len() as u16)?;
                qids.iter().try_for_each(|q| w.qid(q))
            }
            Topen { fid, mode } => {
                w.u32(fid)?;
                w.u8(mode)
            }
            Ropen { qid, iounit } | Rcreate { qid, iounit } => {
                w.qid(&qid)?;
                w.u32(iounit)
            }
            Tcreate {
                fid,
                name,
                perm,
                mode,
            } => {
                w.u32(fid)?;
                w.str(name)?;
                w.u32(perm)?;
                w.u8(mode)
            }
            Tread { fid, offset, count } => {
                w.u32(fid)?;
                w.u64(offset)?;
                w.u32(count)
            }
            Rread { data } => write_data(w, data),
            Twrite { fid, offset, data } => {
                w.u32(fid)?;
                w.u64(offset)?;
                write_data(w, data)
            }
            Rwrite { count } => w.u32(count),
            Tclunk { fid } | Tremove { fid } | Tstat { fid } => w.u32(fid),
            Rstat { ref stat } => write_stat(w, stat),
            Twstat { fid, ref stat } => {
                w.u32(fid)?;
                write_stat(w, stat)
            }
        }
    }
}
