//! Device drivers: the transports (each implements `transport::Link`) and the NICs (each
//! implements [`nic::Nic`]). The NIC trait lives in `nic`, below its drivers; choosing
//! one is here, above them.

use alloc::boxed::Box;

pub mod e1000;
pub mod intx;
pub mod irq;
pub mod msi;
pub mod nic;
pub mod pcicap;
pub mod uart;
pub mod virtio;
pub mod virtio_console;
pub mod virtio_net;

/// The first NIC found: virtio-net, then the e1000 family. Call with interrupts off.
pub fn probe_nic() -> Option<Box<dyn nic::Nic>> {
    if let Some(n) = virtio_net::probe() {
        return Some(Box::new(n));
    }
    if let Some(n) = e1000::probe() {
        return Some(Box::new(n));
    }
    None
}
