//! The stat record owned (feature `alloc`): what a file tree returns for a file, what a
//! client keeps of an Rstat or a directory read, and what it sends in a Twstat.

use crate::{Dir, Qid};
use alloc::string::{String, ToString};

/// A file's metadata (stat(5)), owned. It has no `type` and `dev`: those are "for kernel
/// use", a Plan 9 kernel overwrites them with its own for every mounted file, and a wstat
/// may not change them. [`Stat::as_dir`] gives them as 0 (what a server sends),
/// [`Stat::as_wstat`] as "don't touch" (what a client sends).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    pub qid: Qid,
    /// Permission bits and DM* flags.
    pub mode: u32,
    pub atime: u32,
    pub mtime: u32,
    pub length: u64,
    pub name: String,
    pub uid: String,
    pub gid: String,
    pub muid: String,
}

impl Stat {
    /// A wstat record that changes nothing; set the fields to change.
    pub fn dont_touch() -> Stat {
        Stat::from(&Dir::DONT_TOUCH)
    }

    pub fn is_dir(&self) -> bool {
        self.qid.is_dir()
    }

    /// The record as a server sends it (Rstat, directory reads): type and dev 0.
    pub fn as_dir(&self) -> Dir<'_> {
        Dir {
            ty: 0,
            dev: 0,
            qid: self.qid,
            mode: self.mode,
            atime: self.atime,
            mtime: self.mtime,
            length: self.length,
            name: &self.name,
            uid: &self.uid,
            gid: &self.gid,
            muid: &self.muid,
        }
    }

    /// The record as a client's Twstat sends it: type and dev "don't touch".
    pub fn as_wstat(&self) -> Dir<'_> {
        Dir {
            ty: Dir::DONT_TOUCH.ty,
            dev: Dir::DONT_TOUCH.dev,
            ..self.as_dir()
        }
    }
}

impl From<&Dir<'_>> for Stat {
    fn from(d: &Dir<'_>) -> Self {
        Stat {
            qid: d.qid,
            mode: d.mode,
            atime: d.atime,
            mtime: d.mtime,
            length: d.length,
            name: d.name.to_string(),
            uid: d.uid.to_string(),
            gid: d.gid.to_string(),
            muid: d.muid.to_string(),
        }
    }
}
