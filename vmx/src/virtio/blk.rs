//! virtio-blk (device type 2): requests of a 16-byte header (type, reserved, sector),
//! data buffers and a status byte, served from an image file, as vmx(1)'s -d serves
//! them. Reads, writes (unless read-only), flushes and the device ID; anything else is
//! "unsupported".

use super::Mem;
use ::virtio::feature::{legacy, BLK_FLUSH, BLK_RO};
use ::virtio::queue::{gather, scatter, Chain};
use ::virtio::spec::blk::{S, T};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

pub const SECTOR: u64 = 512;

/// The request types served and the status bytes (the specification's, from `virtio`).
const T_IN: u32 = T::In as u32;
const T_OUT: u32 = T::Out as u32;
const T_FLUSH: u32 = T::Flush as u32;
const T_GET_ID: u32 = T::GetId as u32;
const S_OK: u8 = S::Ok as u8;
const S_IOERR: u8 = S::Ioerr as u8;
const S_UNSUPP: u8 = S::Unsupp as u8;

/// Feature bits, as the legacy transport's 32-bit register holds them.
pub const F_RO: u32 = legacy(BLK_RO);
pub const F_FLUSH: u32 = legacy(BLK_FLUSH);

/// The bytes behind a disk.
pub trait Backing: Send {
    fn size(&self) -> u64;
    fn read_at(&mut self, off: u64, buf: &mut [u8]) -> io::Result<()>;
    fn write_at(&mut self, off: u64, data: &[u8]) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()>;
}

/// An image file; its length is taken once, when opened.
pub struct FileDisk {
    f: File,
    len: u64,
}

impl FileDisk {
    pub fn open(path: &std::path::Path, readonly: bool) -> Result<FileDisk, String> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(!readonly)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let len = f
            .metadata()
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len();
        Ok(FileDisk { f, len })
    }
}

impl Backing for FileDisk {
    fn size(&self) -> u64 {
        self.len
    }
    fn read_at(&mut self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        self.f.read_exact_at(buf, off)
    }
    fn write_at(&mut self, off: u64, data: &[u8]) -> io::Result<()> {
        self.f.write_all_at(data, off)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.f.sync_data()
    }
}

impl Backing for Vec<u8> {
    fn size(&self) -> u64 {
        self.as_slice().len() as u64
    }
    fn read_at(&mut self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        let s = self
            .get(off as usize..off as usize + buf.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(s);
        Ok(())
    }
    fn write_at(&mut self, off: u64, data: &[u8]) -> io::Result<()> {
        self.get_mut(off as usize..off as usize + data.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?
            .copy_from_slice(data);
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub struct Blk {
    pub disk: Box<dyn Backing>,
    pub readonly: bool,
    /// The ID string (GET_ID, at most 20 bytes).
    pub id: String,
    /// Requests served and bytes moved, for the figures.
    pub reads: u64,
    pub writes: u64,
    pub bytes: u64,
}

impl Blk {
    pub fn new(disk: Box<dyn Backing>, readonly: bool, id: &str) -> Blk {
        Blk {
            disk,
            readonly,
            id: id.chars().take(20).collect(),
            reads: 0,
            writes: 0,
            bytes: 0,
        }
    }

    pub fn features(&self) -> u32 {
        F_FLUSH | if self.readonly { F_RO } else { 0 }
    }

    /// The device-specific configuration: capacity in sectors (the rest, size_max,
    /// seg_max, geometry and blk_size, is not offered and reads as zero).
    pub fn config(&self) -> Vec<u8> {
        let mut c = vec![0u8; 24];
        c[..8].copy_from_slice(&(self.disk.size() / SECTOR).to_le_bytes());
        c
    }

    /// Serves one request; returns the bytes written into the chain. Err only when the
    /// chain cannot carry a request at all (no header, no status byte) or guest memory
    /// failed: the queue then breaks.
    pub fn serve(&mut self, chain: &Chain, mem: &mut dyn Mem) -> Result<u32, String> {
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
        let out = gather(mem, &rd)?;
        let ty = u32::from_le_bytes(out[0..4].try_into().unwrap_or_default());
        let sector = u64::from_le_bytes(out[8..16].try_into().unwrap_or_default());
        let data_len = room - 1;
        let mut reply = Vec::new();
        let span = |n: u64| {
            sector
                .checked_mul(SECTOR)
                .and_then(|o| o.checked_add(n).map(|e| (o, e)))
                .filter(|(_, e)| *e <= self.disk.size())
        };
        let status = match ty {
            T_IN => match span(data_len) {
                Some((off, _)) => {
                    reply = vec![0u8; data_len as usize];
                    self.reads += 1;
                    self.bytes += data_len;
                    match self.disk.read_at(off, &mut reply) {
                        Ok(()) => S_OK,
                        Err(_) => S_IOERR,
                    }
                }
                None => S_IOERR,
            },
            T_OUT => {
                let data = &out[16..];
                match span(data.len() as u64) {
                    Some((off, _)) if !self.readonly => {
                        self.writes += 1;
                        self.bytes += data.len() as u64;
                        match self.disk.write_at(off, data) {
                            Ok(()) => S_OK,
                            Err(_) => S_IOERR,
                        }
                    }
                    _ => S_IOERR,
                }
            }
            T_FLUSH => match self.disk.flush() {
                Ok(()) => S_OK,
                Err(_) => S_IOERR,
            },
            T_GET_ID => {
                let mut id = self.id.as_bytes().to_vec();
                id.resize(20, 0);
                id.truncate(data_len as usize);
                reply = id;
                S_OK
            }
            _ => S_UNSUPP,
        };
        // The status byte is the last writable byte: data short of the room is padded.
        reply.resize(data_len as usize, 0);
        reply.push(status);
        scatter(mem, &wr, &reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::testing::{Driver, Ram};
    use ::virtio::queue::Queue;

    fn disk() -> Vec<u8> {
        (0..8 * 512u32)
            .map(|i| (i / 512) as u8 ^ (i as u8))
            .collect()
    }

    fn header(ram: &mut Ram, at: usize, ty: u32, sector: u64) {
        ram.b[at..at + 4].copy_from_slice(&ty.to_le_bytes());
        ram.b[at + 8..at + 16].copy_from_slice(&sector.to_le_bytes());
    }

    fn one(blk: &mut Blk, ram: &mut Ram, bufs: &[(u64, u32, bool)]) -> Result<u32, String> {
        let mut q = Queue::new(8);
        q.pfn = 16;
        let mut d = Driver::new(8, 16);
        d.offer(ram, bufs);
        let c = q.take(ram, 1 << 20).unwrap();
        blk.serve(&c[0], ram)
    }

    #[test]
    fn read_write_flush_id() {
        let mut blk = Blk::new(Box::new(disk()), false, "vmx-disk-0");
        assert_eq!(blk.config()[..8], 8u64.to_le_bytes());
        assert_eq!(blk.features(), F_FLUSH);
        let mut ram = Ram::new(1 << 20);
        // Read sectors 2 and 3 into two pages, status separate.
        header(&mut ram, 0x1000, T_IN, 2);
        let n = one(
            &mut blk,
            &mut ram,
            &[
                (0x1000, 16, false),
                (0x2000, 512, true),
                (0x3000, 512, true),
                (0x4000, 1, true),
            ],
        )
        .unwrap();
        assert_eq!(n, 1025);
        assert_eq!(ram.b[0x2000..0x2200], disk()[1024..1536]);
        assert_eq!(ram.b[0x3000..0x3200], disk()[1536..2048]);
        assert_eq!(ram.b[0x4000], S_OK);
        // Write sector 7 from guest memory.
        header(&mut ram, 0x1000, T_OUT, 7);
        ram.b[0x5000..0x5200].fill(0xab);
        ram.b[0x4000] = 0xff;
        one(
            &mut blk,
            &mut ram,
            &[(0x1000, 16, false), (0x5000, 512, false), (0x4000, 1, true)],
        )
        .unwrap();
        assert_eq!(ram.b[0x4000], S_OK);
        let mut s = [0u8; 512];
        blk.disk.read_at(7 * 512, &mut s).unwrap();
        assert_eq!(s, [0xab; 512]);
        // Flush, get-ID, and an unknown type.
        header(&mut ram, 0x1000, T_FLUSH, 0);
        one(
            &mut blk,
            &mut ram,
            &[(0x1000, 16, false), (0x4000, 1, true)],
        )
        .unwrap();
        assert_eq!(ram.b[0x4000], S_OK);
        header(&mut ram, 0x1000, T_GET_ID, 0);
        one(
            &mut blk,
            &mut ram,
            &[(0x1000, 16, false), (0x6000, 20, true), (0x4000, 1, true)],
        )
        .unwrap();
        assert_eq!(&ram.b[0x6000..0x600b], b"vmx-disk-0\0");
        header(&mut ram, 0x1000, 99, 0);
        one(
            &mut blk,
            &mut ram,
            &[(0x1000, 16, false), (0x4000, 1, true)],
        )
        .unwrap();
        assert_eq!(ram.b[0x4000], S_UNSUPP);
        assert_eq!((blk.reads, blk.writes), (1, 1));
    }

    #[test]
    fn errors_are_statuses() {
        let mut blk = Blk::new(Box::new(disk()), true, "ro");
        assert_eq!(blk.features(), F_FLUSH | F_RO);
        let mut ram = Ram::new(1 << 20);
        // Past the end of the disk, and a sector number that overflows.
        for sector in [7, u64::MAX / 4] {
            header(&mut ram, 0x1000, T_IN, sector);
            one(
                &mut blk,
                &mut ram,
                &[(0x1000, 16, false), (0x2000, 1024, true), (0x4000, 1, true)],
            )
            .unwrap();
            assert_eq!(ram.b[0x4000], S_IOERR);
        }
        // A write to a read-only disk.
        header(&mut ram, 0x1000, T_OUT, 0);
        ram.b[0x4000] = 0;
        one(
            &mut blk,
            &mut ram,
            &[(0x1000, 16, false), (0x5000, 512, false), (0x4000, 1, true)],
        )
        .unwrap();
        assert_eq!(ram.b[0x4000], S_IOERR);
        assert_eq!(blk.disk.size(), 4096);
        assert_eq!(
            &disk()[..],
            &{
                let mut b = vec![0; 4096];
                blk.disk.read_at(0, &mut b).unwrap();
                b
            }[..]
        );
        // No status byte, or a short header: the chain carries no request.
        header(&mut ram, 0x1000, T_IN, 0);
        assert!(one(&mut blk, &mut ram, &[(0x1000, 16, false)]).is_err());
        assert!(one(&mut blk, &mut ram, &[(0x1000, 8, false), (0x4000, 1, true)]).is_err());
    }
}
