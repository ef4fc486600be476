//! Byte-level 9P helpers for the tests that speak to a link below the client: Tversion
//! by hand, resynchronising a serial line, and python-9p scripts.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

/// The msize the harness's clients offer.
pub const MSIZE: u32 = 8192 + 24;

/// A Tversion message (tag NOTAG).
pub fn tversion(msize: u32) -> Vec<u8> {
    let v = b"9P2000";
    let size = 4 + 1 + 2 + 4 + 2 + v.len();
    let mut m = Vec::with_capacity(size);
    m.extend_from_slice(&(size as u32).to_le_bytes());
    m.push(100);
    m.extend_from_slice(&0xffffu16.to_le_bytes());
    m.extend_from_slice(&msize.to_le_bytes());
    m.extend_from_slice(&(v.len() as u16).to_le_bytes());
    m.extend_from_slice(v);
    m
}

/// Sends Tversion until an Rversion (tag NOTAG) comes back; skips whatever precedes it.
pub fn sync(s: &mut UnixStream) -> std::io::Result<()> {
    let mut last = None;
    for _ in 0..8 {
        s.write_all(&tversion(MSIZE))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut h = [0u8; 7];
        let found = (|| -> std::io::Result<()> {
            s.read_exact(&mut h)?;
            // Rversion, tag NOTAG, a size that fits one.
            while !(h[4] == 101
                && h[5] == 0xff
                && h[6] == 0xff
                && h[0] >= 13
                && h[1..4] == [0, 0, 0])
            {
                h.copy_within(1.., 0);
                s.read_exact(&mut h[6..])?;
            }
            let mut rest = vec![0u8; h[0] as usize - 7];
            s.read_exact(&mut rest)
        })();
        match found {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no Rversion")))
}

/// Runs a python-9p (py9p) script with `args`; panics with its output unless it succeeds.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "python-9p script failed:\n{text}");
    text
}
