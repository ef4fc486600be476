//! Plan 9 error strings. Clients (9pfuse, v9fs) map them to errno by substring, so the
//! spelling matters: these follow the Plan 9 kernel's port/error.h where one fits.

use alloc::borrow::Cow;
use alloc::string::String;

/// An error a request is answered with: the Rerror string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error(pub Cow<'static, str>);

impl Error {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&'static str> for Error {
    fn from(s: &'static str) -> Self {
        Error(Cow::Borrowed(s))
    }
}

impl From<String> for Error {
    fn from(s: String) -> Self {
        Error(Cow::Owned(s))
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

pub const ENONEXIST: &str = "file does not exist";
pub const EPERM: &str = "permission denied";
pub const EINUSE: &str = "fid in use";
pub const EUNKNOWNFID: &str = "unknown fid";
pub const ENOTOPEN: &str = "file not open";
pub const EISOPEN: &str = "file already open";
pub const EISDIR: &str = "file is a directory";
pub const ENOTDIR: &str = "not a directory";
pub const EEXIST: &str = "file already exists";
pub const EBADUSEFD: &str = "inappropriate use of fd";
pub const EBADOFFSET: &str = "bad offset in directory read";
pub const EBADARG: &str = "bad arg in system call";
pub const ENOAUTH: &str = "authentication not required";
pub const EVERSION: &str = "version not negotiated";
pub const ETOOMANYFIDS: &str = "too many fids";
pub const ETOOMANYREQS: &str = "too many outstanding requests";
pub const EDUPTAG: &str = "duplicate tag";
pub const EBADATTACH: &str = "unknown specifier in attach";
pub const ENOCREATE: &str = "create prohibited";
pub const ENOREMOVE: &str = "remove prohibited";
pub const ENOWSTAT: &str = "wstat prohibited";
pub const EBADMSG: &str = "bad message type";
pub const EINTR: &str = "interrupted";
pub const EBADMODE: &str = "bad open mode";
pub const EDOTDOT: &str = "illegal name";
/// stat(5): type, dev, qid and muid cannot be changed by wstat (lib9p's wording).
pub const EWSTATTYPE: &str = "wstat -- attempt to change type";
pub const EWSTATDEV: &str = "wstat -- attempt to change dev";
pub const EWSTATQID: &str = "wstat -- attempt to change qid";
pub const EWSTATMUID: &str = "wstat -- attempt to change muid";
