//! The driver's side of legacy virtqueues and a byte-array guest memory, for tests of
//! the devices (unit tests here and the tool's integration tests): the `virtio` crate's,
//! with the array reached as the tool reaches guest memory ([`Mem`]).

use super::queue::Mem;
pub use ::virtio::testing::{Driver, Ram, OUTSIDE};

impl Mem for Ram {
    fn read(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, String> {
        self.reads += 1;
        self.get(addr, len)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| OUTSIDE.into())
    }
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), String> {
        ::virtio::queue::GuestMem::write(self, addr, data)
    }
}
