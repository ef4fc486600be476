//! The `blkq` file (an extension): the requests of a VM's queue disks (`pci blk queue`),
//! served by the client. Both directions are byte streams of records, each a text line
//! and then raw data; a record may be cut anywhere across reads or writes.
//!
//! Reading returns the requests not yet read, oldest first, as many as fit (a read waits
//! while there are none):
//!
//! ```text
//! DISK TAG OP OFFSET LENGTH\n      OP: r (read), w (write: LENGTH data bytes follow), f (flush)
//! ```
//!
//! Writing completes them:
//!
//! ```text
//! DISK TAG STATUS LENGTH\n         STATUS: ok or err; LENGTH bytes follow
//! ```
//!
//! where a read's `ok` carries its LENGTH bytes of data (any other length is an I/O
//! error) and everything else carries 0. Numbers are decimal digits; OFFSET and LENGTH
//! are bytes. A completion for a request the device no longer has (the driver
//! reset it) is read and dropped. Requests outstanding are bounded by the queue's size
//! (128): a driver offering more breaks its device.

use super::blk::KBlk;
use super::KDev;
use crate::guestmem::GuestRam;
use crate::hw::Hw;
use crate::mem::MemMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use ninep::Error;
use virtio::blk::{Op, Request};

/// A completion line that does not parse (the line follows).
const EBADLINE: &str = "bad blkq completion";
/// Longest completion line.
const MAX_LINE: usize = 80;

/// The record a reader is in the middle of.
struct Sending {
    disk: usize,
    tag: u64,
    header: Vec<u8>,
    /// Header and data.
    total: u64,
    pos: u64,
}

/// The completion a writer is in the middle of (its data).
struct Body {
    disk: usize,
    tag: u64,
    /// Its data is the request's: it goes to the guest.
    ok: bool,
    len: u64,
    pos: u64,
}

/// Both directions' positions.
#[derive(Default)]
pub(crate) struct BlkQ {
    /// Per disk, the highest tag read.
    sent: Vec<u64>,
    cur: Option<Sending>,
    line: Vec<u8>,
    body: Option<Body>,
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::In => "r",
        Op::Out => "w",
        Op::Flush => "f",
    }
}

impl BlkQ {
    /// The first request of any disk not read yet, as a record to send.
    fn next(&self, disks: &[KBlk]) -> Option<Sending> {
        disks.iter().enumerate().find_map(|(i, d)| {
            let sent = self.sent.get(i).copied().unwrap_or(0);
            let r = d.dev.kind.0.parked().find(|r| r.tag > sent)?;
            let header = format!("{i} {} {} {} {}\n", r.tag, op_name(r.op), r.off, r.len);
            let data = if r.op == Op::Out { r.len } else { 0 };
            Some(Sending {
                disk: i,
                tag: r.tag,
                total: header.len() as u64 + data,
                header: header.into_bytes(),
                pos: 0,
            })
        })
    }

    /// Something is there for a read.
    pub(crate) fn ready(&self, disks: &[KBlk]) -> bool {
        self.cur.is_some() || self.next(disks).is_some()
    }
}

/// Parses `DISK TAG STATUS LENGTH`.
fn completion(line: &[u8]) -> Result<(usize, u64, bool, u64), Error> {
    let bad = || Error::from(format!("{EBADLINE} {}", String::from_utf8_lossy(line)));
    let s = core::str::from_utf8(line).map_err(|_| bad())?;
    let f: Vec<&str> = s.split_ascii_whitespace().collect();
    let [disk, tag, status, len] = f[..] else {
        return Err(bad());
    };
    let num = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse::<u64>().ok())
            .flatten()
            .ok_or_else(bad)
    };
    let ok = match status {
        "ok" => true,
        "err" => false,
        _ => return Err(bad()),
    };
    let disk = usize::try_from(num(disk)?).map_err(|_| bad())?;
    Ok((disk, num(tag)?, ok, num(len)?))
}

/// Whether a completion of `len` bytes with `ok` fits request `r`.
fn fits(r: &Request, ok: bool, len: u64) -> bool {
    ok && len == if r.op == Op::In { r.len } else { 0 }
}

impl KDev {
    /// A read of `blkq`: the next requests' records, as many bytes as fit; 0 when there
    /// are none (the read waits).
    pub(crate) fn blkq_read<H: Hw>(&mut self, hw: &mut H, map: &MemMap, buf: &mut [u8]) -> usize {
        let q = &mut self.blkq;
        q.sent.resize(self.disks.len(), 0);
        let mut n = 0;
        while n < buf.len() {
            if q.cur.is_none() {
                q.cur = q.next(&self.disks);
            }
            let Some(cur) = q.cur.as_mut() else {
                break;
            };
            let hlen = cur.header.len() as u64;
            let k = (cur.total - cur.pos).min((buf.len() - n) as u64) as usize;
            let out = &mut buf[n..n + k];
            if cur.pos < hlen {
                let k = k.min((hlen - cur.pos) as usize);
                out[..k].copy_from_slice(&cur.header[cur.pos as usize..cur.pos as usize + k]);
                cur.pos += k as u64;
                n += k;
                continue;
            }
            // A write's data, from the guest's buffers; zeros once the request is gone
            // or the device broke (the stream keeps its framing).
            out.fill(0);
            if let Some(d) = self.disks.get_mut(cur.disk) {
                let blk = &d.dev.kind.0;
                if let (Some(r), None) = (blk.parked_request(cur.tag), &d.dev.error) {
                    let mut mem = GuestRam::new(hw, map);
                    if let Err(why) = blk.write_data(r, &mut mem, cur.pos - hlen, out) {
                        d.dev.fail(why);
                    }
                }
            }
            cur.pos += k as u64;
            n += k;
            if cur.pos == cur.total {
                q.sent[cur.disk] = cur.tag;
                q.cur = None;
            }
        }
        if let Some(cur) = q.cur.as_ref().filter(|c| c.pos == c.total) {
            q.sent[cur.disk] = cur.tag;
            q.cur = None;
        }
        self.sync_disk_lines();
        n
    }

    /// A write to `blkq`: completions; all of `data` is taken, or an error for a bad
    /// line (what came before it was applied).
    pub(crate) fn blkq_write<H: Hw>(
        &mut self,
        hw: &mut H,
        map: &MemMap,
        data: &[u8],
    ) -> Result<usize, Error> {
        let mut i = 0;
        let r = (|| {
            while i < data.len() {
                if let Some(b) = self.blkq.body.as_mut() {
                    let k = (b.len - b.pos).min((data.len() - i) as u64) as usize;
                    if b.ok {
                        if let Some(d) = self.disks.get_mut(b.disk) {
                            let blk = &d.dev.kind.0;
                            if let Some(r) = blk.parked_request(b.tag) {
                                let mut mem = GuestRam::new(hw, map);
                                if let Err(why) = blk.read_data(r, &mut mem, b.pos, &data[i..i + k])
                                {
                                    d.dev.fail(why);
                                }
                            }
                        }
                    }
                    b.pos += k as u64;
                    i += k;
                    if b.pos == b.len {
                        self.finish(hw, map);
                    }
                    continue;
                }
                match data[i..].iter().position(|&c| c == b'\n') {
                    Some(j) => {
                        self.blkq.line.extend_from_slice(&data[i..i + j]);
                        i += j + 1;
                        let line = core::mem::take(&mut self.blkq.line);
                        let (disk, tag, ok, len) = completion(&line)?;
                        let ok = self
                            .disks
                            .get(disk)
                            .and_then(|d| d.dev.kind.0.parked_request(tag))
                            .is_some_and(|r| fits(r, ok, len));
                        self.blkq.body = Some(Body {
                            disk,
                            tag,
                            ok,
                            len,
                            pos: 0,
                        });
                        if len == 0 {
                            self.finish(hw, map);
                        }
                    }
                    None => {
                        self.blkq.line.extend_from_slice(&data[i..]);
                        i = data.len();
                        if self.blkq.line.len() > MAX_LINE {
                            let line = core::mem::take(&mut self.blkq.line);
                            return Err(Error::from(format!(
                                "{EBADLINE} {}",
                                String::from_utf8_lossy(&line[..MAX_LINE])
                            )));
                        }
                    }
                }
            }
            Ok(data.len())
        })();
        self.sync_disk_lines();
        r
    }

    /// The completion whose data has all come: its request ends, its used entry goes in
    /// the ring, and the driver gets its interrupt.
    fn finish<H: Hw>(&mut self, hw: &mut H, map: &MemMap) {
        let Some(b) = self.blkq.body.take() else {
            return;
        };
        let Some(d) = self.disks.get_mut(b.disk) else {
            return;
        };
        if d.dev.error.is_some() {
            return;
        }
        let mut mem = GuestRam::new(hw, map);
        let done = d.dev.kind.0.complete(b.tag, &mut mem, b.ok);
        let r = done.and_then(|u| match (u, d.dev.queues.first_mut()) {
            (Some(u), Some(q)) => q.put(&mut mem, &[u]).map(|()| q.wants_interrupt()),
            _ => Ok(false),
        });
        match r {
            Ok(true) => d.dev.used(),
            Ok(false) => {}
            Err(why) => d.dev.fail(why),
        }
    }
}
