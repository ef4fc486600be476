//! virtio-blk (device type 2), the device side: requests of a 16-byte header (type,
//! reserved, sector), data buffers and a status byte, served from a [`Backend`], as
//! vmx(1)'s -d serves them. Reads, writes (unless read-only), flushes and the device ID;
//! anything else is "unsupported". One home for the vmx tool's disks and the kernel's.
//!
//! A chain may name all of guest memory many times over: data moves through one buffer
//! of at most [`CHUNK`] bytes the device keeps, never a copy of the whole request.
//!
//! The disk is a [`Disk`], reached with the same context `M` as guest memory (the kernel's
//! segment disk needs the machine layer its guest memory holds); a [`Backend`] (the
//! tool's image file, a vector) is one without needing it. A disk may be [deferred]
//! ([`Capacity::deferred`]): its reads, writes and flushes are parked as [`Request`]s for
//! someone else to serve (the kernel's queue file), who moves their data with
//! [`Blk::write_data`] and [`Blk::read_data`] and ends each with [`Blk::complete`];
//! at most a queue's size of them are parked at once.
//!
//! [deferred]: Capacity::deferred

use crate::feature::{legacy, BLK_FLUSH, BLK_RO, BLK_SEG_MAX, BLK_TOPOLOGY};
use crate::legacy::QUEUE_SIZE;
use crate::queue::{gather_into, scatter, Budget, Buf, Chain, GuestMem};
use crate::spec::blk::{S, T};
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

pub const SECTOR: u64 = 512;
/// Most bytes moved between guest memory and the backend at once.
pub const CHUNK: usize = 64 * 1024;

/// The request types served and the status bytes (the specification's).
pub const T_IN: u32 = T::In as u32;
pub const T_OUT: u32 = T::Out as u32;
pub const T_FLUSH: u32 = T::Flush as u32;
pub const T_GET_ID: u32 = T::GetId as u32;
pub const S_OK: u8 = S::Ok as u8;
pub const S_IOERR: u8 = S::Ioerr as u8;
pub const S_UNSUPP: u8 = S::Unsupp as u8;

/// Feature bits, as the legacy transport's 32-bit register holds them.
pub const F_RO: u32 = legacy(BLK_RO);
pub const F_FLUSH: u32 = legacy(BLK_FLUSH);
pub const F_SEG_MAX: u32 = legacy(BLK_SEG_MAX);
pub const F_TOPOLOGY: u32 = legacy(BLK_TOPOLOGY);

/// Most data buffers a request may have (`seg_max`): a chain fills the queue with its
/// header and status. Without it a driver sends one buffer (Linux: one page) a request,
/// each a notify and, with a client's queue file, a record.
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;

/// The optimal I/O size offered (`opt_io_size`, in sectors): the largest request
/// [`SEG_MAX`] pages make. Linux reads ahead twice that on the disk (1008 KiB, not its
/// default 128 KiB), so a sequential read comes as a few large requests: with a
/// client's queue file, a few records and completions per megabyte.
pub const OPT_IO: u32 = SEG_MAX * 4096 / SECTOR as u32;

/// Configuration bytes: capacity in sectors, seg_max and the topology's opt_io_size (the
/// rest, size_max, geometry, blk_size and the topology's other fields, is not offered or
/// zero).
pub const CONFIG_LEN: usize = 32;

/// A backend's failure: the request ends with an I/O error status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoError;

/// The bytes behind a disk.
pub trait Backend: Send {
    fn size(&self) -> u64;
    /// Fills `buf` from byte `off` (inside the disk: the device checks).
    fn read_at(&mut self, off: u64, buf: &mut [u8]) -> Result<(), IoError>;
    fn write_at(&mut self, off: u64, data: &[u8]) -> Result<(), IoError>;
    fn flush(&mut self) -> Result<(), IoError>;
}

/// What a device needs to know of its disk outside a request.
pub trait Capacity {
    /// Its size in bytes.
    fn bytes(&self) -> u64;
    /// Reads, writes and flushes are parked for someone else to serve (see the module).
    fn deferred(&self) -> bool {
        false
    }
}

/// The bytes behind a device, reached with the device's context `M` (its guest memory).
pub trait Disk<M: ?Sized>: Capacity {
    /// Fills `buf` from byte `off` (inside the disk: the device checks).
    fn get(&mut self, mem: &mut M, off: u64, buf: &mut [u8]) -> Result<(), IoError>;
    fn put(&mut self, mem: &mut M, off: u64, data: &[u8]) -> Result<(), IoError>;
    fn sync(&mut self, mem: &mut M) -> Result<(), IoError>;
}

impl Capacity for Box<dyn Backend> {
    fn bytes(&self) -> u64 {
        self.size()
    }
}

impl<M: ?Sized> Disk<M> for Box<dyn Backend> {
    fn get(&mut self, _: &mut M, off: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.read_at(off, buf)
    }
    fn put(&mut self, _: &mut M, off: u64, data: &[u8]) -> Result<(), IoError> {
        self.write_at(off, data)
    }
    fn sync(&mut self, _: &mut M) -> Result<(), IoError> {
        self.flush()
    }
}

impl Backend for Vec<u8> {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_at(&mut self, off: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let s = usize::try_from(off).map_err(|_| IoError)?;
        let e = s.checked_add(buf.len()).ok_or(IoError)?;
        buf.copy_from_slice(self.get(s..e).ok_or(IoError)?);
        Ok(())
    }
    fn write_at(&mut self, off: u64, data: &[u8]) -> Result<(), IoError> {
        let s = usize::try_from(off).map_err(|_| IoError)?;
        let e = s.checked_add(data.len()).ok_or(IoError)?;
        self.get_mut(s..e).ok_or(IoError)?.copy_from_slice(data);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), IoError> {
        Ok(())
    }
}

/// The pieces (address, length) of the bytes `skip..skip + len` of the buffers taken as
/// one stream.
fn pieces(bufs: &[Buf], skip: u64, len: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
    let end = skip.saturating_add(len);
    let mut at = 0u64;
    bufs.iter().filter_map(move |b| {
        let (s, n) = (at, u64::from(b.len));
        at += n;
        let lo = skip.max(s);
        let hi = end.min(s + n);
        (lo < hi).then(|| (b.addr + (lo - s), hi - lo))
    })
}

/// What a request that reaches the disk does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Disk to guest.
    In,
    /// Guest to disk.
    Out,
    Flush,
}

/// A request that reaches the disk: a read, write or flush inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Told apart from every other request of its device (parked ones are completed by
    /// it).
    pub tag: u64,
    /// The chain's head: what goes back in the used ring.
    pub head: u16,
    pub op: Op,
    /// Disk byte offset and data length (0 for a flush).
    pub off: u64,
    pub len: u64,
    rd: Vec<Buf>,
    wr: Vec<Buf>,
    /// Writable bytes of the chain: what the used entry reports.
    room: u64,
}

/// A chain taken apart: a request for the disk, or one answered without it (its status).
enum Step {
    Disk(Request),
    Now(Request, u8),
}

pub struct Blk<D = Box<dyn Backend>> {
    pub disk: D,
    pub readonly: bool,
    /// The ID string (GET_ID, at most 20 bytes).
    pub id: String,
    /// Requests served and bytes moved, for the figures.
    pub reads: u64,
    pub writes: u64,
    pub bytes: u64,
    /// The buffer data moves through.
    buf: Vec<u8>,
    /// Requests a deferred disk has not completed, oldest first.
    parked: VecDeque<Request>,
    next_tag: u64,
    /// What one [`Blk::serve_queue`] may do ([`Budget::WHOLE`] unless set).
    pub budget: Budget,
    /// Chains taken from the ring and not yet begun, oldest first (a budget ran out).
    waiting: VecDeque<Chain>,
    /// The request a budget ran out in the middle of, and how far it got.
    inflight: Option<serve::InFlight>,
}

impl Blk {
    pub fn new(disk: Box<dyn Backend>, readonly: bool, id: &str) -> Blk {
        Blk::with_disk(disk, readonly, id)
    }
}

impl<D: Capacity> Blk<D> {
    pub fn with_disk(disk: D, readonly: bool, id: &str) -> Blk<D> {
        Blk {
            disk,
            readonly,
            id: id.chars().take(20).collect(),
            reads: 0,
            writes: 0,
            bytes: 0,
            buf: Vec::new(),
            parked: VecDeque::new(),
            next_tag: 0,
            budget: Budget::WHOLE,
            waiting: VecDeque::new(),
            inflight: None,
        }
    }

    pub fn features(&self) -> u32 {
        F_FLUSH | F_SEG_MAX | F_TOPOLOGY | if self.readonly { F_RO } else { 0 }
    }

    /// The device-specific configuration (see [`CONFIG_LEN`]).
    pub fn config(&self) -> Vec<u8> {
        let mut c = alloc::vec![0u8; CONFIG_LEN];
        c[..8].copy_from_slice(&(self.disk.bytes() / SECTOR).to_le_bytes());
        c[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        c[28..32].copy_from_slice(&OPT_IO.to_le_bytes());
        c
    }

    /// The driver reset the device: parked requests are forgotten (their completions
    /// find no request), and so is the work a budget left for later.
    pub fn reset(&mut self) {
        self.parked.clear();
        self.waiting.clear();
        self.inflight = None;
    }

    /// Requests parked for a deferred disk, oldest first.
    pub fn parked(&self) -> impl Iterator<Item = &Request> {
        self.parked.iter()
    }

    /// The parked request `tag`, if it is still parked.
    pub fn parked_request(&self, tag: u64) -> Option<&Request> {
        self.parked.iter().find(|r| r.tag == tag)
    }

    /// The byte range of the disk `n` bytes from `sector` cover, if inside it.
    fn span(&self, sector: u64, n: u64) -> Option<u64> {
        let off = sector.checked_mul(SECTOR)?;
        (off.checked_add(n)? <= self.disk.bytes()).then_some(off)
    }

    /// Takes a chain apart; GET_ID and requests that fail before the disk are answered
    /// here. Err when the chain cannot carry a request at all (no header, no status
    /// byte) or guest memory failed.
    fn parse<M: GuestMem + ?Sized>(&mut self, chain: &Chain, mem: &mut M) -> Result<Step, String> {
        let rd = chain.readable();
        let wr = chain.writable();
        let head_len: u64 = rd.iter().map(|b| u64::from(b.len)).sum();
        let room = chain.writable_len();
        if head_len < 16 || room == 0 {
            return Err(format!(
                "request at descriptor {} has {head_len} readable and {room} writable bytes (needs a 16-byte header and a status byte)",
                chain.head
            ));
        }
        let mut h = [0u8; 16];
        gather_into(mem, &rd, &mut h)?;
        let ty = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let sector = u64::from_le_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
        let data_len = room - 1;
        self.next_tag = self.next_tag.wrapping_add(1);
        let mut req = Request {
            tag: self.next_tag,
            head: chain.head,
            op: Op::Flush,
            off: 0,
            len: 0,
            rd,
            wr,
            room,
        };
        let mut io = |op, off, len| {
            req.op = op;
            req.off = off;
            req.len = len;
        };
        let status = match ty {
            T_IN => match self.span(sector, data_len) {
                Some(off) => {
                    io(Op::In, off, data_len);
                    return Ok(Step::Disk(req));
                }
                None => S_IOERR,
            },
            T_OUT => {
                let n = head_len - 16;
                match self.span(sector, n) {
                    Some(off) if !self.readonly => {
                        io(Op::Out, off, n);
                        return Ok(Step::Disk(req));
                    }
                    _ => S_IOERR,
                }
            }
            T_FLUSH => return Ok(Step::Disk(req)),
            T_GET_ID => {
                let mut id = [0u8; 20];
                id[..self.id.len().min(20)]
                    .copy_from_slice(&self.id.as_bytes()[..self.id.len().min(20)]);
                let n = data_len.min(20) as usize;
                scatter(mem, &req.wr, &id[..n])?;
                S_OK
            }
            _ => S_UNSUPP,
        };
        Ok(Step::Now(req, status))
    }

    /// Writes the status byte (the last writable byte) and counts the request; the
    /// used entry's length.
    fn finish<M: GuestMem + ?Sized>(
        &mut self,
        req: &Request,
        mem: &mut M,
        status: u8,
    ) -> Result<u32, String> {
        if status == S_OK {
            match req.op {
                Op::In => self.reads += 1,
                Op::Out => self.writes += 1,
                Op::Flush => {}
            }
            self.bytes += req.len;
        }
        let at: Vec<Buf> = pieces(&req.wr, req.room - 1, 1)
            .map(|(addr, len)| Buf {
                addr,
                len: len as u32,
                write: true,
            })
            .collect();
        scatter(mem, &at, &[status])?;
        Ok(u32::try_from(req.room).unwrap_or(u32::MAX))
    }

    /// Up to `out.len()` bytes of a write's data from byte `skip` of it (fewer at its
    /// end): for a deferred disk's server.
    pub fn write_data<M: GuestMem + ?Sized>(
        &self,
        req: &Request,
        mem: &mut M,
        skip: u64,
        out: &mut [u8],
    ) -> Result<usize, String> {
        if req.op != Op::Out || skip >= req.len {
            return Ok(0);
        }
        let n = (req.len - skip).min(out.len() as u64);
        let bufs: Vec<Buf> = pieces(&req.rd, 16 + skip, n)
            .map(|(addr, len)| Buf {
                addr,
                len: len as u32,
                write: false,
            })
            .collect();
        gather_into(mem, &bufs, &mut out[..n as usize])
    }

    /// Puts a read's data at byte `skip` of it (what lies past its length is dropped):
    /// for a deferred disk's server.
    pub fn read_data<M: GuestMem + ?Sized>(
        &self,
        req: &Request,
        mem: &mut M,
        skip: u64,
        data: &[u8],
    ) -> Result<(), String> {
        if req.op != Op::In || skip >= req.len {
            return Ok(());
        }
        let n = (req.len - skip).min(data.len() as u64);
        let bufs: Vec<Buf> = pieces(&req.wr, skip, n)
            .map(|(addr, len)| Buf {
                addr,
                len: len as u32,
                write: true,
            })
            .collect();
        scatter(mem, &bufs, &data[..n as usize]).map(|_| ())
    }

    /// Ends parked request `tag` with `ok` (else an I/O error): its status written, its
    /// used entry (head, length) to put in the ring. None when no such request is parked
    /// (the driver reset the device since, or the tag is wrong).
    pub fn complete<M: GuestMem + ?Sized>(
        &mut self,
        tag: u64,
        mem: &mut M,
        ok: bool,
    ) -> Result<Option<(u16, u32)>, String> {
        let Some(i) = self.parked.iter().position(|r| r.tag == tag) else {
            return Ok(None);
        };
        let Some(req) = self.parked.remove(i) else {
            return Ok(None);
        };
        let n = self.finish(&req, mem, if ok { S_OK } else { S_IOERR })?;
        Ok(Some((req.head, n)))
    }

    /// Moves `len` bytes from the disk at `off` into the buffers from stream offset
    /// `skip`, the request's `status` so far (after an error, zeros); its status after.
    fn disk_to_guest<M: GuestMem + ?Sized>(
        &mut self,
        mem: &mut M,
        wr: &[Buf],
        skip: u64,
        off: u64,
        len: u64,
        mut status: u8,
    ) -> Result<u8, String>
    where
        D: Disk<M>,
    {
        let mut done = 0u64;
        for (a, n) in pieces(wr, skip, len) {
            let mut k = 0u64;
            while k < n {
                let c = (n - k).min(CHUNK as u64) as usize;
                self.buf.resize(c, 0);
                if status == S_OK && self.disk.get(mem, off + done, &mut self.buf).is_err() {
                    status = S_IOERR;
                }
                if status != S_OK {
                    // What follows an error is zeros, as the whole request's bytes are.
                    self.buf.fill(0);
                }
                mem.write(a + k, &self.buf)?;
                k += c as u64;
                done += c as u64;
            }
        }
        Ok(status)
    }

    /// Moves `len` bytes of the buffers from stream offset `skip` to the disk at `off`.
    fn guest_to_disk<M: GuestMem + ?Sized>(
        &mut self,
        mem: &mut M,
        rd: &[Buf],
        skip: u64,
        off: u64,
        len: u64,
    ) -> Result<u8, String>
    where
        D: Disk<M>,
    {
        let mut done = 0u64;
        for (a, n) in pieces(rd, skip, len) {
            let mut k = 0u64;
            while k < n {
                let c = (n - k).min(CHUNK as u64) as usize;
                self.buf.resize(c, 0);
                mem.read(a + k, &mut self.buf)?;
                if self.disk.put(mem, off + done, &self.buf).is_err() {
                    return Ok(S_IOERR);
                }
                k += c as u64;
                done += c as u64;
            }
        }
        Ok(S_OK)
    }

    /// A request's disk work, at once; its status.
    fn execute<M: GuestMem + ?Sized>(&mut self, req: &Request, mem: &mut M) -> Result<u8, String>
    where
        D: Disk<M>,
    {
        match req.op {
            Op::In => self.disk_to_guest(mem, &req.wr, 0, req.off, req.len, S_OK),
            Op::Out => self.guest_to_disk(mem, &req.rd, 16, req.off, req.len),
            Op::Flush => Ok(match self.disk.sync(mem) {
                Ok(()) => S_OK,
                Err(_) => S_IOERR,
            }),
        }
    }

    /// Serves one request at once (whatever the disk); returns the bytes written into the
    /// chain. Err only when the chain cannot carry a request at all (no header, no status
    /// byte) or guest memory failed: the queue then breaks.
    pub fn serve<M: GuestMem + ?Sized>(&mut self, chain: &Chain, mem: &mut M) -> Result<u32, String>
    where
        D: Disk<M>,
    {
        let (req, status) = match self.parse(chain, mem)? {
            Step::Now(req, status) => (req, status),
            Step::Disk(req) => {
                let status = self.execute(&req, mem)?;
                (req, status)
            }
        };
        self.finish(&req, mem, status)
    }
}

mod serve;
#[cfg(test)]
mod tests;
