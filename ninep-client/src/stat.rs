//! The stat record, owned.

use protocol::{Dir, Qid};

/// A file's metadata (stat(5)), owned: what `stat` and `ls` return and `wstat` sends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    pub ty: u16,
    pub dev: u32,
    pub qid: Qid,
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
        let d = Dir::DONT_TOUCH;
        Stat {
            ty: d.ty,
            dev: d.dev,
            qid: d.qid,
            mode: d.mode,
            atime: d.atime,
            mtime: d.mtime,
            length: d.length,
            ..Default::default()
        }
    }

    pub fn is_dir(&self) -> bool {
        self.qid.is_dir()
    }

    pub fn as_dir(&self) -> Dir<'_> {
        Dir {
            ty: self.ty,
            dev: self.dev,
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
}

impl From<&Dir<'_>> for Stat {
    fn from(d: &Dir<'_>) -> Self {
        Stat {
            ty: d.ty,
            dev: d.dev,
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
