//! The tool's guest memory for the virtqueues: the segment's `data`, reached by 9P reads
//! and writes ([`Mem`], which the run loop implements). The queue itself, its chains and
//! every check of what the guest put in the ring are the `virtio` crate's
//! ([`::virtio::queue`]), shared with the kernel; they reach memory through
//! [`GuestMem`], which every `dyn Mem` is.

use ::virtio::queue::GuestMem;
pub use ::virtio::queue::{gather, scatter, Buf, Chain, Queue};

/// Guest-physical memory as the tool reaches it: a read returns the bytes it got.
pub trait Mem {
    fn read(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, String>;
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), String>;
}

impl GuestMem for dyn Mem + '_ {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), String> {
        let got = Mem::read(self, addr, buf.len())?;
        if got.len() != buf.len() {
            return Err(format!("short read of guest memory at {addr:#x}"));
        }
        buf.copy_from_slice(&got);
        Ok(())
    }
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), String> {
        Mem::write(self, addr, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory that returns fewer bytes than asked.
    struct Short;
    impl Mem for Short {
        fn read(&mut self, _: u64, len: usize) -> Result<Vec<u8>, String> {
            Ok(vec![0; len / 2])
        }
        fn write(&mut self, _: u64, _: &[u8]) -> Result<(), String> {
            Ok(())
        }
    }

    #[test]
    fn a_short_read_breaks_the_queue() {
        let mut q = Queue::new(8);
        q.pfn = 1;
        let mem: &mut dyn Mem = &mut Short;
        let e = q.take(mem, 1 << 20).unwrap_err();
        assert_eq!(e, "reading the queue: short read of guest memory at 0x1000");
        assert!(q.broken.is_some());
    }
}
