//! The tree served until the #X device is wired in: `vmx/` (with `clone`), `segment/` and a
//! `status` file of the kernel's state, built on ninep's memfs.

use crate::server::Host;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use ninep::memfs::{Memfs, ROOT};
use ninep::{Ctx, Error, Read, Stat, Tree};
use protocol::{Dir, Qid};

pub struct Placeholder {
    fs: Memfs,
    status: u64,
    sessions: usize,
    version: &'static str,
}

impl Placeholder {
    pub fn new(owner: &str, version: &'static str) -> Self {
        let mut fs = Memfs::new(owner);
        let build = |fs: &mut Memfs| -> Result<u64, Error> {
            let vmx = fs.mkdir(ROOT, "vmx", 0o555, owner)?;
            fs.add_file(vmx, "clone", 0o660, owner, b"")?;
            fs.mkdir(ROOT, "segment", 0o775, owner)?;
            fs.add_file(ROOT, "status", 0o444, owner, b"")
        };
        let status = build(&mut fs).unwrap_or(u64::MAX);
        Placeholder {
            fs,
            status,
            sessions: 0,
            version,
        }
    }

    fn status_text(&self) -> String {
        let total = crate::memory::total_frames() * 4096;
        let free = crate::memory::free_frames() * 4096;
        let (heap_used, heap_size) = crate::memory::heap_usage();
        format!(
            "version {}\nmemtotal {}\nmemfree {}\nmemused {}\nheapused {}\nheaptotal {}\nvms 0\nsessions {}\nuartdropped {}\nvmx unavailable\n",
            self.version,
            total,
            free,
            total - free,
            heap_used,
            heap_size,
            self.sessions,
            crate::arch::uart::dropped()
        )
    }
}

impl Host for Placeholder {
    fn set_sessions(&mut self, n: usize) {
        self.sessions = n;
    }
}

impl Tree for Placeholder {
    type Node = u64;

    fn attach(&mut self, ctx: &Ctx, aname: &str) -> Result<u64, Error> {
        self.fs.attach(ctx, aname)
    }

    fn walk(&mut self, ctx: &Ctx, dir: &u64, name: &str) -> Result<u64, Error> {
        self.fs.walk(ctx, dir, name)
    }

    fn stat(&mut self, ctx: &Ctx, node: &u64) -> Result<Stat, Error> {
        self.fs.stat(ctx, node)
    }

    fn open(&mut self, ctx: &Ctx, node: &mut u64, mode: u8) -> Result<Qid, Error> {
        self.fs.open(ctx, node, mode)
    }

    fn readdir(&mut self, ctx: &Ctx, dir: &u64) -> Result<Vec<Stat>, Error> {
        self.fs.readdir(ctx, dir)
    }

    fn read(
        &mut self,
        ctx: &Ctx,
        node: &mut u64,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<Read, Error> {
        if *node != self.status {
            return self.fs.read(ctx, node, offset, buf);
        }
        let text = self.status_text();
        let text = text.as_bytes();
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(text.len());
        let n = buf.len().min(text.len() - start);
        buf[..n].copy_from_slice(&text[start..start + n]);
        Ok(Read::Done(n))
    }

    fn write(
        &mut self,
        ctx: &Ctx,
        node: &mut u64,
        offset: u64,
        data: &[u8],
    ) -> Result<usize, Error> {
        self.fs.write(ctx, node, offset, data)
    }

    fn wstat(&mut self, ctx: &Ctx, node: &u64, dir: &Dir<'_>) -> Result<(), Error> {
        self.fs.wstat(ctx, node, dir)
    }
}
