//! Transport drivers: each implements `transport::Link`.

pub mod uart;
pub mod virtio;
pub mod virtio_console;
