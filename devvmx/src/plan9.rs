//! The bits of Plan 9's libc and kernel text handling that #X's interface depends on:
//! strtoull/strtoul, tokenize (rc-style quoting), getfields, %q quoting, %#x formatting,
//! parsecmd/lookupcmd and the kernel's error strings. Each behaves as the Plan 9 original
//! does on every input, so the seed's parsing stays byte-for-byte the same.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use ninep::Error;

// port/error.h: those a 9P server in general gives live in ninep (their one home); the
// rest are #X's and segment(3)'s own.
pub use ninep::error::{EBADARG, EEXIST, EISDIR, ENONEXIST, EPERM};
pub const EBADCTL: &str = "bad process or channel control request";
pub const EGREG: &str = "the front fell off";
pub const ENOMEM: &str = "kernel allocate failed";
pub const ENOVMEM: &str = "virtual memory allocation failed";
pub const ECMDARGS: &str = "wrong #args in control message";

/// Plan 9's ERRMAX: the longest error string a process sees.
pub const ERRMAX: usize = 128;

/// The bytes as C would see them: up to the first NUL.
fn cbytes(b: &[u8]) -> &[u8] {
    &b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())]
}

/// The string as C would see it: up to the first NUL. Invalid UTF-8 becomes U+FFFD,
/// which no parser here gives a meaning to.
pub fn cstr(b: &[u8]) -> String {
    String::from_utf8_lossy(cbytes(b)).into_owned()
}

/// What [`records`] does with a last record that lacks its terminator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tail {
    /// Left out, and out of the count: a file write answers that count, so a writer whose
    /// line a transport cut at msize sends the rest again (the seed's rule for `regs` and
    /// `map`).
    Leave,
    /// A record like the others: `go pc=0x1000` has no later write to complete it.
    Take,
}

/// The one record splitter of `regs` and `map` writes and of `go`'s `name=value;`
/// list: the bytes up to the first NUL (the seed copies a write into a C string),
/// split at each `rs`, and the count of bytes the records span. Empty records are kept
/// (callers skip blank ones).
pub fn records(data: &[u8], rs: u8, tail: Tail) -> (Vec<&[u8]>, usize) {
    let data = cbytes(data);
    let end = match tail {
        Tail::Take => data.len(),
        Tail::Leave => data.iter().rposition(|&c| c == rs).map_or(0, |i| i + 1),
    };
    if end == 0 {
        return (Vec::new(), 0);
    }
    // The empty piece after a last terminator is no record.
    let body = &data[..end];
    let body = body.strip_suffix(&[rs]).unwrap_or(body);
    (body.split(|&c| c == rs).collect(), end)
}

/// strtoull(s, &end, base) with base 0 or 10/16: the value and the count of bytes
/// consumed (0 when no digits, as Plan 9 sets end = s). Overflow gives all ones.
pub fn strtoull(s: &str, base: u32) -> (u64, usize) {
    strtoun(s, base, u64::MAX)
}

/// A field that must be one number and nothing else (strtoull, base 0, consuming all of
/// a nonempty `s`), as the seed checks `*end == 0` after strtoull.
pub fn strtoull_whole(s: &str) -> Option<u64> {
    let (v, n) = strtoull(s, 0);
    (n != 0 && n == s.len()).then_some(v)
}

/// strtoul: Plan 9's ulong is 32 bits on amd64 too.
pub fn strtoul(s: &str, base: u32) -> (u32, usize) {
    let (v, n) = strtoun(s, base, u32::MAX as u64);
    (v as u32, n)
}

fn strtoun(s: &str, base: u32, max: u64) -> (u64, usize) {
    let b = s.as_bytes();
    let mut p = 0;
    while p < b.len() && matches!(b[p], b' ' | b'\t' | b'\n' | 0x0c | b'\r' | 0x0b) {
        p += 1;
    }
    let mut neg = false;
    if p < b.len() && (b[p] == b'-' || b[p] == b'+') {
        neg = b[p] == b'-';
        p += 1;
    }
    let mut base = base as u64;
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    if base == 0 {
        base = 10;
        if at(p) == b'0' {
            base = 8;
            if at(p + 1) == b'x' || at(p + 1) == b'X' {
                p += 2;
                base = 16;
            }
        }
    } else if base == 16 && at(p) == b'0' && (at(p + 1) == b'x' || at(p + 1) == b'X') {
        p += 2;
    }
    let mut n: u64 = 0;
    let mut ovfl = false;
    let mut ndig = 0;
    loop {
        let c = at(p);
        let v = match c {
            b'0'..=b'9' => (c - b'0') as u64,
            b'a'..=b'z' => (c - b'a') as u64 + 10,
            b'A'..=b'Z' => (c - b'A') as u64 + 10,
            _ => base,
        };
        if v >= base {
            break;
        }
        match n.checked_mul(base).and_then(|x| x.checked_add(v)) {
            Some(x) if x <= max => n = x,
            _ => ovfl = true,
        }
        p += 1;
        ndig += 1;
    }
    if ndig == 0 {
        p = 0;
    }
    if ovfl {
        return (max, p);
    }
    let v = if neg { n.wrapping_neg() & max } else { n };
    (v, p)
}

const QSEP: &[char] = &[' ', '\t', '\r', '\n'];

/// tokenize(2): fields separated by blanks, with rc-style single quotes ('' is a quote).
/// At most `max` fields; the rest of the string is dropped, as in Plan 9.
pub fn tokenize(s: &str, max: usize) -> Vec<String> {
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while out.len() < max {
        while i < c.len() && QSEP.contains(&c[i]) {
            i += 1;
        }
        if i >= c.len() {
            break;
        }
        let mut tok = String::new();
        let mut quoting = false;
        while i < c.len() && (quoting || !QSEP.contains(&c[i])) {
            if c[i] != '\'' {
                tok.push(c[i]);
                i += 1;
            } else if !quoting {
                quoting = true;
                i += 1;
            } else if c.get(i + 1) != Some(&'\'') {
                quoting = false;
                i += 1;
            } else {
                tok.push('\'');
                i += 2;
            }
        }
        // qtoken overwrites the separator that ended the token.
        if i < c.len() {
            i += 1;
        }
        out.push(tok);
    }
    out
}

/// getfields(s, f, max, 1, set): runs of separators delimit fields; the count found
/// (capped at `max`) and the first fields. Only the count and the first two fields
/// matter to callers, so a capped last field need not hold the rest of the line.
pub fn getfields<'a>(s: &'a str, max: usize, set: &[char]) -> (usize, Vec<&'a str>) {
    let f: Vec<&str> = s
        .split(|c| set.contains(&c))
        .filter(|t| !t.is_empty())
        .collect();
    (f.len().min(max), f)
}

/// Plan 9 %q (the kernel installs no doquote): quoted when empty or holding a blank,
/// a control character or a quote; quotes inside are doubled. `sharp` is %#q: always quoted.
pub fn quote(s: &str, sharp: bool) -> String {
    let need = sharp || s.is_empty() || s.chars().any(|c| c <= ' ' || c == '\'');
    if !need {
        return s.into();
    }
    let mut out = String::from("'");
    for c in s.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// %#llux: "0x" and lowercase hex; 0 is "0x0".
pub fn hex(v: u64) -> String {
    format!("{v:#x}")
}

/// %#.*llux with precision `digits`: zero-padded to that many digits.
pub fn hexw(v: u64, digits: usize) -> String {
    format!("0x{v:0digits$x}")
}

/// A parsed control message (port/parse.c parsecmd).
pub struct Cmdbuf {
    pub f: Vec<String>,
}

/// parsecmd: one trailing newline dropped, then tokenize.
pub fn parsecmd(data: &[u8]) -> Cmdbuf {
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    let s = cstr(data);
    Cmdbuf {
        f: tokenize(&s, usize::MAX),
    }
}

/// cmderror: the message and the command, %q-quoted, within ERRMAX-10 bytes.
pub fn cmderror(cb: &Cmdbuf, msg: &str) -> Error {
    let mut s = format!("{msg} \"");
    for (i, f) in cb.f.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&quote(f, false));
    }
    truncate(&mut s, ERRMAX - 10 - 1);
    s.push('"');
    s.into()
}

/// Cuts `s` to at most `n` bytes at a character boundary.
pub fn truncate(s: &mut String, n: usize) {
    if s.len() > n {
        let mut k = n;
        while !s.is_char_boundary(k) {
            k -= 1;
        }
        s.truncate(k);
    }
}

/// A Cmdtab entry: index, name, argument count (0: any).
pub struct Cmdtab<T: Copy> {
    pub index: T,
    pub cmd: &'static str,
    pub narg: usize,
}

impl<T: Copy> Cmdtab<T> {
    /// One table row, as the seed writes `{CMquit, "quit", 1}`.
    pub const fn new(index: T, cmd: &'static str, narg: usize) -> Self {
        Cmdtab { index, cmd, narg }
    }
}

/// lookupcmd: the entry for the first field, or Plan 9's error.
pub fn lookupcmd<T: Copy>(cb: &Cmdbuf, tab: &[Cmdtab<T>]) -> Result<T, Error> {
    let Some(f0) = cb.f.first() else {
        return Err("empty control message".into());
    };
    for ct in tab {
        if ct.cmd != "*" && ct.cmd != f0 {
            continue;
        }
        if ct.narg != 0 && ct.narg != cb.f.len() {
            return Err(cmderror(cb, ECMDARGS));
        }
        return Ok(ct.index);
    }
    Err(cmderror(cb, "unknown control message"))
}

/// readstr(off, buf, n, str): the bytes of `s` from `off`.
pub fn readstr(off: u64, buf: &mut [u8], s: &[u8]) -> usize {
    let Ok(off) = usize::try_from(off) else {
        return 0;
    };
    if off >= s.len() {
        return 0;
    }
    let n = buf.len().min(s.len() - off);
    buf[..n].copy_from_slice(&s[off..off + n]);
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn strtoull_like_plan9() {
        assert_eq!(strtoull("0x10", 0), (16, 4));
        assert_eq!(strtoull("010", 0), (8, 3));
        assert_eq!(strtoull("0", 0), (0, 1));
        assert_eq!(strtoull("0x", 0), (0, 0));
        assert_eq!(strtoull("", 0), (0, 0));
        assert_eq!(strtoull("  12z", 0), (12, 4));
        assert_eq!(strtoull("-1", 0), (u64::MAX, 2));
        assert_eq!(strtoull("99999999999999999999999", 0).0, u64::MAX);
        assert_eq!(strtoul("0x100000000", 0).0, u32::MAX);
        assert_eq!(strtoul("-1", 10), (u32::MAX, 2));
        assert_eq!(strtoull("09", 0), (0, 1));
    }

    #[test]
    fn records_tail_rules() {
        let r = |d: &'static [u8], t| records(d, b';', t);
        assert_eq!(r(b"a=1;b=2;", Tail::Leave), (vec![&b"a=1"[..], b"b=2"], 8));
        assert_eq!(r(b"a=1;b=2;", Tail::Take), (vec![&b"a=1"[..], b"b=2"], 8));
        assert_eq!(r(b"a=1;b=2", Tail::Leave), (vec![&b"a=1"[..]], 4));
        assert_eq!(r(b"a=1;b=2", Tail::Take), (vec![&b"a=1"[..], b"b=2"], 7));
        assert_eq!(r(b"b=2", Tail::Leave), (vec![], 0));
        assert_eq!(r(b"b=2", Tail::Take), (vec![&b"b=2"[..]], 3));
        assert_eq!(r(b"", Tail::Take), (vec![], 0));
        assert_eq!(r(b";;", Tail::Leave), (vec![&b""[..], b""], 2));
        // A NUL ends the text, as in the seed's C string.
        assert_eq!(r(b"a=1\0;b=2;", Tail::Take), (vec![&b"a=1"[..]], 3));
        assert_eq!(r(b"a=1\0;b=2;", Tail::Leave), (vec![], 0));
    }

    #[test]
    fn tokenize_quotes() {
        assert_eq!(tokenize("  a b\t c  ", 10), vec!["a", "b", "c"]);
        assert_eq!(tokenize("'a b' c", 10), vec!["a b", "c"]);
        assert_eq!(tokenize("'it''s' x", 10), vec!["it's", "x"]);
        assert_eq!(tokenize("a'b c'd", 10), vec!["ab cd"]);
        assert_eq!(tokenize("''", 10), vec![""]);
        assert_eq!(tokenize("a b c", 2), vec!["a", "b"]);
        assert_eq!(tokenize("'unterminated x", 10), vec!["unterminated x"]);
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("abc", false), "abc");
        assert_eq!(quote("a b", false), "'a b'");
        assert_eq!(quote("", false), "''");
        assert_eq!(quote("it's", true), "'it''s'");
        assert_eq!(quote("x", true), "'x'");
    }

    #[test]
    fn lookup_errors() {
        #[derive(Clone, Copy, Debug, PartialEq)]
        enum C {
            Quit,
            Go,
        }
        let tab = [Cmdtab::new(C::Quit, "quit", 1), Cmdtab::new(C::Go, "go", 0)];
        assert_eq!(lookupcmd(&parsecmd(b"quit\n"), &tab), Ok(C::Quit));
        assert_eq!(lookupcmd(&parsecmd(b"go a b"), &tab), Ok(C::Go));
        assert_eq!(
            lookupcmd(&parsecmd(b"quit now"), &tab)
                .unwrap_err()
                .as_str(),
            "wrong #args in control message \"quit now\""
        );
        assert_eq!(
            lookupcmd(&parsecmd(b"fly 'a b'"), &tab)
                .unwrap_err()
                .as_str(),
            "unknown control message \"fly 'a b'\""
        );
        assert_eq!(
            lookupcmd(&parsecmd(b"\n"), &tab).unwrap_err().as_str(),
            "empty control message"
        );
        let long = [b'x'; 300];
        let e = lookupcmd(&parsecmd(&long), &tab).unwrap_err();
        assert_eq!(e.as_str().len(), 118);
        assert!(e.as_str().ends_with("x\""));
    }

    #[test]
    fn hex_formats() {
        assert_eq!(hex(0), "0x0");
        assert_eq!(hex(0x1f), "0x1f");
        assert_eq!(hexw(0x1f, 8), "0x0000001f");
        assert_eq!(hexw(0x123456789, 4), "0x123456789");
    }
}
