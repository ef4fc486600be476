//! The client's side of the kernel's queue disks (`pci blk queue`): the `blkq` records
//! parsed, each request served on its image file, and the completions written back.
//! Format: devvmx/DEVIATIONS.md, "Extension: virtio-blk in the kernel". A thread keeps
//! one read of `blkq` in flight: the next read goes out as soon as one comes back,
//! before its requests are served, so a request waits at most one round trip. The
//! completions of a batch are packed into as few writes as the message size allows
//! ([`Packer`]: several completions a write, one cut across two where it does not fit),
//! each sent as soon as it is full, so serving and sending overlap.

use crate::virtio::blk::{Backend, FileDisk};
use crate::vmfs::Counter;
use ninep_client::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The longest request line the kernel sends (five numbers and spaces), with room.
const MAX_LINE: usize = 128;
/// The most data one request may carry: more than any virtio-blk request of the 128
/// entries a queue holds.
const MAX_DATA: u64 = 64 << 20;

/// What a request asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    Flush,
}

/// One request read from `blkq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub disk: usize,
    pub tag: u64,
    pub op: Op,
    pub off: u64,
    pub len: u64,
    /// A write's data.
    pub data: Vec<u8>,
}

/// Records cut anywhere between reads, put back together.
#[derive(Default)]
pub struct Parser {
    buf: Vec<u8>,
}

fn bad(line: &[u8]) -> String {
    format!("bad blkq record {:?}", String::from_utf8_lossy(line))
}

/// `DISK TAG OP OFFSET LENGTH`.
fn header(line: &[u8]) -> Result<(usize, u64, Op, u64, u64), String> {
    let s = std::str::from_utf8(line).map_err(|_| bad(line))?;
    let f: Vec<&str> = s.split_ascii_whitespace().collect();
    let [disk, tag, op, off, len] = f[..] else {
        return Err(bad(line));
    };
    let op = match op {
        "r" => Op::Read,
        "w" => Op::Write,
        "f" => Op::Flush,
        _ => return Err(bad(line)),
    };
    let num = |s: &str| s.parse::<u64>().map_err(|_| bad(line));
    let len = num(len)?;
    if len > MAX_DATA {
        return Err(bad(line));
    }
    Ok((num(disk)? as usize, num(tag)?, op, num(off)?, len))
}

impl Parser {
    /// Takes the bytes of one read: the requests they complete.
    pub fn feed(&mut self, b: &[u8]) -> Result<Vec<Request>, String> {
        self.buf.extend_from_slice(b);
        let mut out = Vec::new();
        let mut at = 0;
        while let Some(nl) = self.buf[at..].iter().position(|&c| c == b'\n') {
            let line = &self.buf[at..at + nl];
            let (disk, tag, op, off, len) = header(line)?;
            let body = at + nl + 1;
            let need = if op == Op::Write { len as usize } else { 0 };
            if self.buf.len() - body < need {
                break;
            }
            out.push(Request {
                disk,
                tag,
                op,
                off,
                len,
                data: self.buf[body..body + need].to_vec(),
            });
            at = body + need;
        }
        self.buf.drain(..at);
        if !self.buf.contains(&b'\n') && self.buf.len() > MAX_LINE {
            return Err(bad(&self.buf[..MAX_LINE]));
        }
        Ok(out)
    }
}

/// Serves `r` on `disk` (None: a disk this client does not serve) and appends its
/// completion to `out`: `DISK TAG ok|err LENGTH\n`, a successful read's data after it.
pub fn serve(disk: Option<&mut FileDisk>, r: &Request, out: &mut Vec<u8>) {
    let Some(d) = disk else {
        out.extend_from_slice(format!("{} {} err 0\n", r.disk, r.tag).as_bytes());
        return;
    };
    let inside = r.off.checked_add(r.len).is_some_and(|end| end <= d.size());
    let ok = match r.op {
        Op::Read if inside => {
            let mut buf = vec![0u8; r.len as usize];
            if d.read_at(r.off, &mut buf).is_ok() {
                out.extend_from_slice(format!("{} {} ok {}\n", r.disk, r.tag, r.len).as_bytes());
                out.extend_from_slice(&buf);
                return;
            }
            false
        }
        Op::Write if inside => d.write_at(r.off, &r.data).is_ok(),
        Op::Flush => d.flush().is_ok(),
        _ => false,
    };
    let status = if ok { "ok" } else { "err" };
    out.extend_from_slice(format!("{} {} {status} 0\n", r.disk, r.tag).as_bytes());
}

/// Completions cut into writes of `max` bytes: the stream's bytes in order, each write
/// full but the batch's last.
pub struct Packer {
    max: usize,
    buf: Vec<u8>,
}

impl Packer {
    pub fn new(max: usize) -> Packer {
        Packer {
            max: max.max(1),
            buf: Vec::new(),
        }
    }

    /// The buffer completions are appended to ([`serve`]'s `out`).
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// The full writes the buffer holds, taken out of it.
    pub fn full(&mut self) -> Vec<Vec<u8>> {
        let n = self.buf.len() / self.max * self.max;
        let rest = self.buf.split_off(n);
        let full = std::mem::replace(&mut self.buf, rest);
        full.chunks(self.max).map(<[u8]>::to_vec).collect()
    }

    /// The batch's last, short write, if any.
    pub fn rest(&mut self) -> Option<Vec<u8>> {
        (!self.buf.is_empty()).then(|| std::mem::take(&mut self.buf))
    }
}

/// What the server did, for --stats: requests, round trips, bytes moved, batches (each
/// one round trip of latency: its read was already waiting, its writes go out together).
#[derive(Clone, Default)]
pub struct Tally {
    pub requests: Arc<AtomicU64>,
    pub trips: Counter,
    pub bytes: Arc<AtomicU64>,
    pub batches: Arc<AtomicU64>,
}

/// Serves the queue disks until `blkq` fails or comes back empty (the VM ended):
/// `disks[N]` is the kernel's disk N (None for its segment disks), `rd` and `wr` two
/// handles on `blkq`. Ok(()) at the VM's end; Err with why it stopped otherwise.
pub fn run(
    rd: File,
    wr: File,
    mut disks: Vec<Option<FileDisk>>,
    tally: Tally,
) -> Result<(), String> {
    let client = rd.fid().client().clone();
    let count = crate::pipe::io_limit(&client, &rd) as u32;
    let mut packer = Packer::new(crate::pipe::io_limit(&client, &wr));
    let mut parser = Parser::default();
    let mut pending = client
        .start_read(&rd, 0, count)
        .map_err(|e| e.to_string())?;
    tally.trips.add(1);
    loop {
        let b = match pending.wait() {
            Ok(b) if b.is_empty() => return Ok(()),
            Ok(b) => b,
            // The VM ended under the read.
            Err(e) if e.remote().is_some() => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        // The next read waits in the kernel while these are served.
        pending = client
            .start_read(&rd, 0, count)
            .map_err(|e| e.to_string())?;
        tally.trips.add(1);
        let reqs = parser.feed(&b)?;
        // The completions' writes go out as they fill (the server takes them in
        // order, as it takes pipelined ctl writes), then their replies are collected:
        // a batch costs one round trip of latency however many messages it needs.
        let mut writes = Vec::new();
        let mut send = |w: Vec<u8>| -> Result<(), String> {
            tally.trips.add(1);
            writes.push(client.start_write(&wr, 0, &w).map_err(|e| e.to_string())?);
            Ok(())
        };
        for r in &reqs {
            let d = disks.get_mut(r.disk).and_then(Option::as_mut);
            serve(d, r, packer.buf());
            if r.op != Op::Flush {
                tally.bytes.fetch_add(r.len, Ordering::Relaxed);
            }
            packer.full().into_iter().try_for_each(&mut send)?;
        }
        packer.rest().into_iter().try_for_each(&mut send)?;
        tally
            .requests
            .fetch_add(reqs.len() as u64, Ordering::Relaxed);
        if !writes.is_empty() {
            tally.batches.fetch_add(1, Ordering::Relaxed);
        }
        for w in writes {
            match w.wait() {
                Ok(_) => {}
                Err(e) if e.remote().is_some_and(|r| r.starts_with("bad blkq")) => {
                    return Err(e.to_string())
                }
                // The VM ended meanwhile.
                Err(e) if e.remote().is_some() => return Ok(()),
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_cut_anywhere_come_back_whole() {
        let stream = b"0 1 r 0 512\n0 2 w 4096 3\nabc1 7 f 0 0\n";
        for cut in 0..stream.len() {
            let mut p = Parser::default();
            let mut got = p.feed(&stream[..cut]).unwrap();
            got.extend(p.feed(&stream[cut..]).unwrap());
            assert_eq!(got.len(), 3, "cut at {cut}");
            assert_eq!((got[0].op, got[0].off, got[0].len), (Op::Read, 0, 512));
            assert_eq!((got[1].tag, &got[1].data[..]), (2, &b"abc"[..]));
            assert_eq!((got[2].disk, got[2].op), (1, Op::Flush));
        }
        for bad in [
            &b"0 1 x 0 0\n"[..],
            b"0 1 r 0\n",
            b"a b c d e\n",
            &[b'9'; 200],
        ] {
            assert!(Parser::default().feed(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn completions_are_packed_into_full_writes() {
        // Three completions (a 3-byte read, a write, a 10-byte read) in writes of 16:
        // several in one write, the last cut across two.
        let mut p = Packer::new(16);
        let mut stream = Vec::new();
        let mut writes = Vec::new();
        for c in [
            &b"0 1 ok 3\nabc"[..],
            b"0 2 ok 0\n",
            b"0 3 ok 10\n0123456789",
        ] {
            p.buf().extend_from_slice(c);
            stream.extend_from_slice(c);
            writes.extend(p.full());
        }
        writes.extend(p.rest());
        assert_eq!(writes.concat(), stream);
        assert_eq!(
            writes.iter().map(Vec::len).collect::<Vec<_>>(),
            [16, 16, 9],
            "{writes:?}"
        );
        assert!(p.rest().is_none() && p.full().is_empty());
    }

    #[test]
    fn requests_served_on_an_image_file() {
        let path = std::env::temp_dir().join(format!("vmx-blkq-{}", std::process::id()));
        std::fs::write(&path, vec![5u8; 1024]).unwrap();
        let mut d = FileDisk::open(&path, false).unwrap();
        let req = |op, off, len, data: &[u8]| Request {
            disk: 0,
            tag: 9,
            op,
            off,
            len,
            data: data.to_vec(),
        };
        let mut out = Vec::new();
        serve(Some(&mut d), &req(Op::Write, 510, 3, b"xyz"), &mut out);
        assert_eq!(out, b"0 9 ok 0\n");
        out.clear();
        serve(Some(&mut d), &req(Op::Read, 508, 6, b""), &mut out);
        assert_eq!(out, b"0 9 ok 6\n\x05\x05xyz\x05");
        out.clear();
        serve(Some(&mut d), &req(Op::Read, 1020, 8, b""), &mut out);
        assert_eq!(out, b"0 9 err 0\n");
        out.clear();
        serve(None, &req(Op::Flush, 0, 0, b""), &mut out);
        assert_eq!(out, b"0 9 err 0\n");
        out.clear();
        serve(Some(&mut d), &req(Op::Flush, 0, 0, b""), &mut out);
        assert_eq!(out, b"0 9 ok 0\n");
        let _ = std::fs::remove_file(&path);
    }
}
