//! One home for what both sides of virtio here use: the kernel's drivers
//! (`hypervisor/src/drivers/virtio*.rs`, modern virtio-pci) and the vmx tool's devices
//! (`vmx/src/virtio`, legacy 0.9.5 PCI). Everything is pure and host-tested:
//!
//! - the specification's numbers, taken from `virtio-spec` ([`spec`]): device types
//!   ([`Id`]), status bits ([`DeviceStatus`]), feature bits ([`feature`], as the words
//!   the transports carry), descriptor and ring flags ([`ring`]), console events
//!   ([`console::Event`]), PCI capability types ([`pci::CapCfgType`]);
//! - what `virtio-spec` does not have: the PCI vendor and device ids ([`pci`]), the
//!   split ring's layout arithmetic ([`ring::Layout`]) and its descriptor and used-entry
//!   encodings, the console's control messages ([`console::Control`]) and the network
//!   header's lengths ([`net`]);
//! - the device side of a legacy split ring ([`queue`], with the `alloc` feature, on by
//!   default): the tool's virtio devices and the kernel's walk guest rings with the same
//!   code, guest memory behind [`queue::GuestMem`], what one serve may do bounded by a
//!   [`queue::Budget`] (the kernel's; the tool's is the whole ring); [`testing`] is a
//!   driver for tests;
//! - the device side of a legacy virtio-net card ([`net::device`]), independent of its
//!   transport, its frames crossing a [`net::device::FramePort`]: the tool's link, or a
//!   port of the kernel's switch ([`net::port`], over `netswitch`).
//! - the device side of the legacy PCI transport ([`legacy`]: registers, queues, the PCI
//!   function as pcdev's model takes it) and virtio-blk's device model ([`blk`], over a
//!   [`blk::Disk`]: the tool's [`blk::Backend`]s, the kernel's segment disk, or a deferred
//!   disk whose requests are parked and completed later, the kernel's queue file), both
//!   with `alloc`: the tool's disks and the kernel's.
//!
//! Decoders are total: short or unknown input is an error, never a panic.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;

#[cfg(feature = "alloc")]
pub mod blk;
pub mod console;
#[cfg(feature = "alloc")]
pub mod legacy;
pub mod net;
pub mod pci;
#[cfg(feature = "alloc")]
pub mod queue;
pub mod ring;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use virtio_spec as spec;
pub use virtio_spec::{DeviceStatus, Id};

/// Feature bits as the 64-bit word the modern transport negotiates (the legacy
/// transport's 32-bit registers carry the low half).
pub mod feature {
    use virtio_spec as spec;

    /// The device speaks virtio 1.x (the modern interface).
    pub const VERSION_1: u64 = spec::F::VERSION_1.bits().to_ne() as u64;
    /// virtio-net: the configuration holds a MAC address.
    pub const NET_MAC: u64 = spec::net::F::MAC.bits().to_ne() as u64;
    /// virtio-blk: the disk is read-only.
    pub const BLK_RO: u64 = spec::blk::F::RO.bits().to_ne() as u64;
    /// virtio-blk: the device takes flush requests.
    pub const BLK_FLUSH: u64 = spec::blk::F::FLUSH.bits().to_ne() as u64;
    /// virtio-blk: the configuration says how many data buffers a request may have.
    pub const BLK_SEG_MAX: u64 = spec::blk::F::SEG_MAX.bits().to_ne() as u64;
    /// virtio-blk: the configuration holds the disk's topology (its optimal I/O size).
    pub const BLK_TOPOLOGY: u64 = spec::blk::F::TOPOLOGY.bits().to_ne() as u64;
    /// virtio-console: several ports and the control queues.
    pub const CONSOLE_MULTIPORT: u64 = spec::console::F::MULTIPORT.bits().to_ne() as u64;

    /// The low half, what a legacy (0.9.5) transport's feature registers hold.
    pub const fn legacy(bits: u64) -> u32 {
        bits as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_bits_are_the_specifications() {
        assert_eq!(feature::VERSION_1, 1 << 32);
        assert_eq!(feature::NET_MAC, 1 << 5);
        assert_eq!(feature::BLK_RO, 1 << 5);
        assert_eq!(feature::BLK_FLUSH, 1 << 9);
        assert_eq!(feature::CONSOLE_MULTIPORT, 1 << 1);
        assert_eq!(
            feature::legacy(feature::VERSION_1 | feature::BLK_FLUSH),
            1 << 9
        );
    }

    #[test]
    fn status_bits_are_the_specifications() {
        let bits = [
            (DeviceStatus::ACKNOWLEDGE, 1),
            (DeviceStatus::DRIVER, 2),
            (DeviceStatus::DRIVER_OK, 4),
            (DeviceStatus::FEATURES_OK, 8),
            (DeviceStatus::DEVICE_NEEDS_RESET, 0x40),
            (DeviceStatus::FAILED, 0x80),
        ];
        for (status, bit) in bits {
            assert_eq!(status.bits(), bit, "{status:?}");
        }
        assert_eq!(u8::from(Id::Net), 1);
        assert_eq!(u8::from(Id::Block), 2);
        assert_eq!(u8::from(Id::Console), 3);
    }
}
