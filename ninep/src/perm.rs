//! Plan 9 permission checks: owner, group, then other bits of a file's mode.

use crate::error::{Error, EBADMODE, EISDIR};
use crate::tree::Stat;
use protocol::om;

pub const READ: u32 = 4;
pub const WRITE: u32 = 2;
pub const EXEC: u32 = 1;

/// The permission bits an open (or create) mode needs (OTRUNC needs write too), for a
/// directory if `dir`: open(5) makes it illegal to write a directory, truncate it or
/// remove it on close, and Plan 9 servers allow only OREAD on one (not OEXEC either).
pub fn for_open(mode: u8, dir: bool) -> Result<u32, Error> {
    if mode & !(3 | om::TRUNC | om::RCLOSE) != 0 {
        return Err(EBADMODE.into());
    }
    if dir && mode != om::READ {
        return Err(EISDIR.into());
    }
    let base = match mode & 3 {
        om::READ => READ,
        om::WRITE => WRITE,
        om::RDWR => READ | WRITE,
        _ => EXEC,
    };
    Ok(if mode & om::TRUNC != 0 {
        base | WRITE
    } else {
        base
    })
}

/// May `uname` have `need` (a mask of READ/WRITE/EXEC) on the file?
/// There are no groups beyond a user's own: the group bits apply when gid == uname.
pub fn allowed(st: &Stat, uname: &str, need: u32) -> bool {
    let mode = st.mode;
    let mut have = mode & 7;
    if st.gid == uname {
        have |= (mode >> 3) & 7;
    }
    if st.uid == uname {
        have |= (mode >> 6) & 7;
    }
    have & need == need
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn st(mode: u32) -> Stat {
        Stat {
            mode,
            uid: "eve".to_string(),
            gid: "eve".to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn owner_and_other() {
        assert!(allowed(&st(0o600), "eve", READ | WRITE));
        assert!(!allowed(&st(0o600), "glenda", READ));
        assert!(allowed(&st(0o644), "glenda", READ));
        assert!(!allowed(&st(0o644), "glenda", WRITE));
        assert!(allowed(&st(0o555), "x", EXEC));
    }

    #[test]
    fn open_modes() {
        assert_eq!(for_open(om::READ, false).unwrap(), READ);
        assert_eq!(for_open(om::WRITE | om::TRUNC, false).unwrap(), WRITE);
        assert_eq!(
            for_open(om::RDWR | om::RCLOSE, false).unwrap(),
            READ | WRITE
        );
        assert_eq!(for_open(om::EXEC, false).unwrap(), EXEC);
        assert!(for_open(0x80, false).is_err());
        assert_eq!(for_open(om::READ, true).unwrap(), READ);
        for m in [om::WRITE, om::RDWR, om::EXEC, om::TRUNC, om::RCLOSE] {
            assert_eq!(for_open(m, true), Err(EISDIR.into()), "mode {m:#x}");
        }
    }
}
