//! virtio-blk (device type 2), the device side: requests of a 16-byte header (type,
//! reserved, sector), data buffers and a status byte, served from a [`Backend`], as
//! vmx(1)'s -d serves them. Reads, writes (unless read-only), flushes and the device ID;
//! anything else is "unsupported". One home for the vmx tool's disks and the kernel's.
//!
//! A chain may name all of guest memory many times over: data moves through one buffer
//! of at most [`CHUNK`] bytes the device keeps, never a copy of the whole request.

use crate::feature::{legacy, BLK_FLUSH, BLK_RO};
use crate::queue::{gather_into, scatter, Buf, Chain, GuestMem, Queue};
use crate::spec::blk::{S, T};
use alloc::boxed::Box;
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

/// Configuration bytes: capacity in sectors (the rest, size_max, seg_max, geometry and
/// blk_size, is not offered and reads as zero).
pub const CONFIG_LEN: usize = 24;

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

pub struct Blk {
    pub disk: Box<dyn Backend>,
    pub readonly: bool,
    /// The ID string (GET_ID, at most 20 bytes).
    pub id: String,
    /// Requests served and bytes moved, for the figures.
    pub reads: u64,
    pub writes: u64,
    pub bytes: u64,
    /// The buffer data moves through.
    buf: Vec<u8>,
}

impl Blk {
    pub fn new(disk: Box<dyn Backend>, readonly: bool, id: &str) -> Blk {
        Blk {
            disk,
            readonly,
            id: id.chars().take(20).collect(),
            reads: 0,
            writes: 0,
            bytes: 0,
            buf: Vec::new(),
        }
    }

    pub fn features(&self) -> u32 {
        F_FLUSH | if self.readonly { F_RO } else { 0 }
    }

    /// The device-specific configuration (see [`CONFIG_LEN`]).
    pub fn config(&self) -> Vec<u8> {
        let mut c = alloc::vec![0u8; CONFIG_LEN];
        c[..8].copy_from_slice(&(self.disk.size() / SECTOR).to_le_bytes());
        c
    }

    /// The byte range of the disk `n` bytes from `sector` cover, if inside it.
    fn span(&self, sector: u64, n: u64) -> Option<u64> {
        let off = sector.checked_mul(SECTOR)?;
        (off.checked_add(n)? <= self.disk.size()).then_some(off)
    }

    /// Moves `len` bytes from the disk at `off` into the buffers at stream offset 0.
    fn disk_to_guest<M: GuestMem + ?Sized>(
        &mut self,
        mem: &mut M,
        wr: &[Buf],
        off: u64,
        len: u64,
    ) -> Result<u8, String> {
        let mut done = 0u64;
        let mut status = S_OK;
        for (a, n) in pieces(wr, 0, len) {
            let mut k = 0u64;
            while k < n {
                let c = (n - k).min(CHUNK as u64) as usize;
                self.buf.resize(c, 0);
                if status == S_OK && self.disk.read_at(off + done, &mut self.buf).is_err() {
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
    ) -> Result<u8, String> {
        let mut done = 0u64;
        for (a, n) in pieces(rd, skip, len) {
            let mut k = 0u64;
            while k < n {
                let c = (n - k).min(CHUNK as u64) as usize;
                self.buf.resize(c, 0);
                mem.read(a + k, &mut self.buf)?;
                if self.disk.write_at(off + done, &self.buf).is_err() {
                    return Ok(S_IOERR);
                }
                k += c as u64;
                done += c as u64;
            }
        }
        Ok(S_OK)
    }

    /// Serves one request; returns the bytes written into the chain. Err only when the
    /// chain cannot carry a request at all (no header, no status byte) or guest memory
    /// failed: the queue then breaks.
    pub fn serve<M: GuestMem + ?Sized>(
        &mut self,
        chain: &Chain,
        mem: &mut M,
    ) -> Result<u32, String> {
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
        let status = match ty {
            T_IN => match self.span(sector, data_len) {
                Some(off) => {
                    self.reads += 1;
                    self.bytes += data_len;
                    self.disk_to_guest(mem, &wr, off, data_len)?
                }
                None => S_IOERR,
            },
            T_OUT => {
                let n = head_len - 16;
                match self.span(sector, n) {
                    Some(off) if !self.readonly => {
                        self.writes += 1;
                        self.bytes += n;
                        self.guest_to_disk(mem, &rd, 16, off, n)?
                    }
                    _ => S_IOERR,
                }
            }
            T_FLUSH => match self.disk.flush() {
                Ok(()) => S_OK,
                Err(_) => S_IOERR,
            },
            T_GET_ID => {
                let mut id = [0u8; 20];
                id[..self.id.len().min(20)]
                    .copy_from_slice(&self.id.as_bytes()[..self.id.len().min(20)]);
                let n = data_len.min(20) as usize;
                scatter(mem, &wr, &id[..n])?;
                S_OK
            }
            _ => S_UNSUPP,
        };
        // The status byte is the last writable byte.
        let at: Vec<Buf> = pieces(&wr, data_len, 1)
            .map(|(addr, len)| Buf {
                addr,
                len: len as u32,
                write: true,
            })
            .collect();
        scatter(mem, &at, &[status])?;
        Ok(u32::try_from(room).unwrap_or(u32::MAX))
    }

    /// Serves every request the driver made available on `q` (`limit`: the end of guest
    /// memory) and returns them to it; true when the driver wants an interrupt. A chain
    /// that carries no request breaks the queue (Err, the reason).
    pub fn serve_queue<M: GuestMem + ?Sized>(
        &mut self,
        q: &mut Queue,
        mem: &mut M,
        limit: u64,
    ) -> Result<bool, String> {
        let chains = q.take(mem, limit)?;
        let mut done = Vec::with_capacity(chains.len());
        for c in &chains {
            let n = self.serve(c, mem).inspect_err(|e| {
                q.broken = Some(e.clone());
            })?;
            done.push((c.head, n));
        }
        if done.is_empty() {
            return Ok(false);
        }
        q.put(mem, &done)?;
        Ok(q.wants_interrupt())
    }
}

#[cfg(test)]
mod tests;
