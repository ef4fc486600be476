//! COM1 as a 9P link.

use crate::arch::uart;
use crate::transport::{Event, Link};

#[derive(Default)]
pub struct Uart {
    /// Receive-ring overruns already reported.
    dropped: u64,
}

impl Link for Uart {
    fn recv(&mut self, buf: &mut [u8]) -> usize {
        let n = uart::read(buf);
        let dropped = uart::dropped();
        if dropped != self.dropped {
            log::warn!(
                "uart: {} received bytes lost to a full ring",
                dropped - self.dropped
            );
            self.dropped = dropped;
        }
        n
    }

    fn send(&mut self, data: &[u8]) -> usize {
        uart::write(data)
    }

    /// A UART has no connect signal: a client that reconnects starts with Tversion, which
    /// resets the session, and the framer resyncs past any half message.
    fn event(&mut self) -> Option<Event> {
        None
    }

    fn name(&self) -> &str {
        "uart"
    }
}
