//! A byte link a 9P session runs over: the UART, each virtio-console port.

/// Non-blocking both ways.
pub trait Link {
    /// Takes up to `buf.len()` received bytes; 0 when none are waiting.
    fn recv(&mut self, buf: &mut [u8]) -> usize;
    /// Queues bytes to send; returns how many were taken (0 when the link is full).
    fn send(&mut self, data: &[u8]) -> usize;
    /// True once after the peer closed or reopened the link: the 9P session starts anew.
    fn take_reset(&mut self) -> bool;
}
