//! COM1 as a 9P link.

use crate::arch::uart;
use crate::transport::Link;

pub struct Uart;

impl Link for Uart {
    fn recv(&mut self, buf: &mut [u8]) -> usize {
        uart::read(buf)
    }

    fn send(&mut self, data: &[u8]) -> usize {
        uart::write(data)
    }

    /// A UART has no connect signal: a client that reconnects starts with Tversion, which
    /// resets the session, and the framer resyncs past any half message.
    fn take_reset(&mut self) -> bool {
        false
    }
}
