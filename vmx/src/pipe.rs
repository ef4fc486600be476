//! Bulk transfers with several messages in flight: an upload into a segment sends up to
//! [`WINDOW`] writes before it waits for the oldest reply, and a write-back sends as many
//! reads, so a transfer pays a link's latency about once per window, not once per
//! message. Each message carries the most the file takes (its iounit, else the msize).

use ninep_client::{Client, File, Pending, PendingWrite};
use std::collections::VecDeque;

/// Messages in flight at once (at the 1 MiB bulk msize, 4 MiB on the way).
pub const WINDOW: usize = 4;

/// The most data one message to or from `f` carries.
pub fn io_limit(client: &Client, f: &File) -> usize {
    let n = match f.iounit() {
        0 => client.max_io(),
        n => n.min(client.max_io()),
    };
    n as usize
}

/// What a transfer cost: messages sent, and of them the ones whose latency it paid
/// (one per window: a full window's first reply is waited for, the others come behind
/// it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trips {
    pub sent: u64,
    pub latency_bound: u64,
}

impl Trips {
    fn of(sent: u64) -> Trips {
        Trips {
            sent,
            latency_bound: sent.div_ceil(WINDOW as u64),
        }
    }
}

/// Writes to one file, at most [`WINDOW`] in flight.
pub struct Writer<'a> {
    client: &'a Client,
    file: &'a File,
    max: usize,
    /// Offset, length and reply of each write in flight, oldest first.
    flight: VecDeque<(u64, usize, PendingWrite)>,
    sent: u64,
}

impl<'a> Writer<'a> {
    pub fn new(client: &'a Client, file: &'a File) -> Writer<'a> {
        Writer {
            client,
            file,
            max: io_limit(client, file),
            flight: VecDeque::new(),
            sent: 0,
        }
    }

    /// Sends `data` at `off`, in messages of the most the file takes; waits only for
    /// replies that make room in the window. Errors: the server's, or a short write.
    pub fn write(&mut self, off: u64, data: &[u8]) -> Result<(), String> {
        for (i, piece) in data.chunks(self.max.max(1)).enumerate() {
            if self.flight.len() >= WINDOW {
                self.wait_one()?;
            }
            let at = off + (i * self.max) as u64;
            let w = self
                .client
                .start_write(self.file, at, piece)
                .map_err(|e| format!("write at {at:#x}: {e}"))?;
            self.sent += 1;
            self.flight.push_back((at, piece.len(), w));
        }
        Ok(())
    }

    fn wait_one(&mut self) -> Result<(), String> {
        let Some((at, len, w)) = self.flight.pop_front() else {
            return Ok(());
        };
        match w.wait() {
            Ok(n) if n == len => Ok(()),
            Ok(n) => Err(format!("write at {at:#x}: {n} of {len} bytes written")),
            Err(e) => Err(format!("write at {at:#x}: {e}")),
        }
    }

    /// Waits for every reply: what the writes cost, or the first error.
    pub fn finish(mut self) -> Result<Trips, String> {
        while !self.flight.is_empty() {
            self.wait_one()?;
        }
        Ok(Trips::of(self.sent))
    }
}

/// Where [`read_ranges`] hands what it read: offset and bytes.
pub type Sink<'a> = dyn FnMut(u64, &[u8]) -> Result<(), String> + 'a;

/// Reads `ranges` (offset, length) of `f` with at most [`WINDOW`] reads in flight,
/// handing their bytes to `got` (offset, bytes) in order; a short read's rest is read
/// at once. Errors: the server's, `got`'s, or a file that ends inside a range.
pub fn read_ranges(
    client: &Client,
    f: &File,
    ranges: &[(u64, u64)],
    got: &mut Sink,
) -> Result<Trips, String> {
    let max = io_limit(client, f).max(1) as u64;
    let pieces = ranges.iter().flat_map(|&(off, len)| {
        (0..len.div_ceil(max)).map(move |i| (off + i * max, (len - i * max).min(max)))
    });
    let mut flight: VecDeque<(u64, u64, Pending)> = VecDeque::new();
    let mut sent = 0u64;
    for (at, len) in pieces {
        if flight.len() >= WINDOW {
            sent += take(f, &mut flight, got)?;
        }
        let p = client
            .start_read(f, at, len as u32)
            .map_err(|e| format!("read at {at:#x}: {e}"))?;
        sent += 1;
        flight.push_back((at, len, p));
    }
    while !flight.is_empty() {
        sent += take(f, &mut flight, got)?;
    }
    Ok(Trips::of(sent))
}

/// The oldest read's reply to `got`, its rest (after a short read) read at once: the
/// extra reads made.
fn take(
    f: &File,
    flight: &mut VecDeque<(u64, u64, Pending)>,
    got: &mut Sink,
) -> Result<u64, String> {
    let Some((at, len, p)) = flight.pop_front() else {
        return Ok(0);
    };
    let mut b = p.wait().map_err(|e| format!("read at {at:#x}: {e}"))?;
    let (mut done, mut extra) = (0u64, 0u64);
    loop {
        got(at + done, &b)?;
        done += b.len() as u64;
        if done >= len {
            return Ok(extra);
        }
        if b.is_empty() {
            return Err(format!("read at {:#x}: end of file", at + done));
        }
        b = f
            .read_at(at + done, (len - done) as u32)
            .map_err(|e| format!("read at {:#x}: {e}", at + done))?;
        extra += 1;
    }
}
