//! Transport drivers: each implements `transport::Link`.

pub mod e1000;
pub mod intx;
pub mod nic;
pub mod uart;
pub mod virtio;
pub mod virtio_console;
pub mod virtio_net;
