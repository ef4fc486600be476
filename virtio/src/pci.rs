//! virtio over PCI (virtio 1.x, 4.1): the ids a virtio function shows in its configuration
//! space, and the vendor capability that points a modern driver at its register windows.

use virtio_spec::Id;

pub use virtio_spec::pci::CapCfgType;

/// The vendor id of every virtio PCI function (4.1.2).
pub const VENDOR: u16 = 0x1AF4;

/// The PCI capability id of the virtio capabilities (vendor-specific; 4.1.4).
pub const CAP_VENDOR: u8 = 0x09;

/// Transitional device ids (legacy and modern interfaces in one function; 4.1.2.3).
#[rustfmt::skip]
const TRANSITIONAL: [(Id, u16); 7] = [
    (Id::Net,     0x1000),
    (Id::Block,   0x1001),
    (Id::Balloon, 0x1002),
    (Id::Console, 0x1003),
    (Id::Scsi,    0x1004),
    (Id::Rng,     0x1005),
    (Id::NineP,   0x1009),
];

/// The device id of a transitional function of `device`, for the types that have one:
/// what a legacy (0.9.5) device shows, and what QEMU's default virtio-pci devices show.
pub fn transitional_id(device: Id) -> Option<u16> {
    TRANSITIONAL
        .iter()
        .find(|(d, _)| *d == device)
        .map(|&(_, id)| id)
}

/// The device id of a modern-only function of `device`: 0x1040 plus the device type.
pub fn modern_id(device: Id) -> u16 {
    0x1040 + u16::from(u8::from(device))
}

/// Whether a function with these vendor and device ids is a virtio `device`, in either
/// its transitional or its modern form.
pub fn is_device(vendor: u16, id: u16, device: Id) -> bool {
    vendor == VENDOR && (transitional_id(device) == Some(id) || modern_id(device) == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_the_devices_served() {
        assert_eq!(transitional_id(Id::Net), Some(0x1000));
        assert_eq!(transitional_id(Id::Block), Some(0x1001));
        assert_eq!(transitional_id(Id::Console), Some(0x1003));
        assert_eq!(transitional_id(Id::Gpu), None);
        assert_eq!(modern_id(Id::Net), 0x1041);
        assert_eq!(modern_id(Id::Console), 0x1043);
        assert_eq!(modern_id(Id::Unknown(0xff)), 0x113f);
        assert!(is_device(0x1af4, 0x1003, Id::Console));
        assert!(is_device(0x1af4, 0x1043, Id::Console));
        assert!(!is_device(0x1af4, 0x1000, Id::Console));
        assert!(!is_device(0x8086, 0x1003, Id::Console));
        // No id of 0 (an absent transitional id) matches anything.
        assert!(!is_device(0x1af4, 0, Id::Gpu));
    }

    #[test]
    fn capability_types() {
        assert_eq!(CapCfgType::from(1), CapCfgType::Common);
        assert_eq!(CapCfgType::from(2), CapCfgType::Notify);
        assert_eq!(CapCfgType::from(3), CapCfgType::Isr);
        assert_eq!(CapCfgType::from(4), CapCfgType::Device);
        assert_eq!(CapCfgType::from(0xee), CapCfgType::Unknown(0xee));
    }
}
