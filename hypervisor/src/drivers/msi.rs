//! Message-signalled interrupts: the message an x86 PCI function writes to reach a local
//! APIC (Intel SDM vol. 3, 11.11: "Message Signalled Interrupts"), and turning MSI or
//! MSI-X on in a function's capability (found by `pcicap`) so that it sends that message
//! instead of asserting its INTx line.

use crate::arch::pci::{Bdf, Mmio};
use crate::drivers::pcicap::{entry, Msi, Msix, MsixControl};

/// The message address (SDM 11.11.1): 0xFEE in bits 31:20, the destination APIC ID in
/// bits 19:12, redirection hint (bit 3) and destination mode (bit 2) clear: physical
/// destination mode, the one CPU named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Address {
    /// The destination's (8-bit, xAPIC-format) APIC ID.
    pub apic: u8,
}

impl Address {
    const BASE: u32 = 0xFEE0_0000;
    const DEST_SHIFT: u32 = 12;

    pub fn encode(self) -> u32 {
        Self::BASE | u32::from(self.apic) << Self::DEST_SHIFT
    }
}

/// The delivery mode (data bits 10:8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Delivery {
    /// The vector to the destination CPU (mode 0b000).
    Fixed = 0,
}

/// The trigger mode (data bit 15; bit 14, the level, only matters for level).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Trigger {
    /// A message is an event: nothing to deassert, no EOI broadcast to an I/O APIC
    /// (bit 15 clear).
    Edge = 0,
}

/// The message data (SDM 11.11.2): the vector in bits 7:0, delivery and trigger mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Data {
    pub vector: u8,
    pub delivery: Delivery,
    pub trigger: Trigger,
}

impl Data {
    pub fn encode(self) -> u32 {
        u32::from(self.vector) | self.delivery as u32 | self.trigger as u32
    }
}

/// What a function writes, and where, to raise its interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    pub address: Address,
    pub data: Data,
}

impl Message {
    /// `vector`, edge-triggered and fixed, to the CPU with APIC ID `apic`. None for an ID
    /// above 255: the address has 8 bits for it (more need interrupt remapping).
    pub fn to(apic: u32, vector: u8) -> Option<Message> {
        Some(Message {
            address: Address {
                apic: u8::try_from(apic).ok()?,
            },
            data: Data {
                vector,
                delivery: Delivery::Fixed,
                trigger: Trigger::Edge,
            },
        })
    }
}

/// Turns MSI on with one vector sending `msg`, and INTx off.
pub fn enable_msi(bdf: Bdf, cap: &Msi, msg: Message) {
    bdf.enable(false);
    bdf.write32(cap.address_at(), msg.address.encode());
    if let Some(high) = cap.address_high_at() {
        bdf.write32(high, 0);
    }
    bdf.write16(cap.data_at(), msg.data.encode() as u16);
    if let Some(mask) = cap.mask_at() {
        bdf.write32(mask, 0);
    }
    bdf.write16(cap.control_at(), cap.control.one_vector_enabled().0);
}

/// Turns MSI-X on with table entry 0 sending `msg` (the function masked while the entry is
/// written), and INTx off. The other entries stay as reset left them: masked. None when the
/// table's BAR is not a usable memory BAR.
pub fn enable_msix(bdf: Bdf, cap: &Msix, msg: Message) -> Option<()> {
    let table = Mmio::new(bdf, cap.table.bar, cap.table.offset, entry::SIZE)?;
    bdf.enable(false);
    let control = cap.control.0 & !(MsixControl::ENABLE | MsixControl::FUNCTION_MASK);
    bdf.write16(
        cap.control_at(),
        control | MsixControl::ENABLE | MsixControl::FUNCTION_MASK,
    );
    table.write32(entry::VECTOR_CONTROL, entry::MASKED);
    table.write32(entry::ADDRESS_LOW, msg.address.encode());
    table.write32(entry::ADDRESS_HIGH, 0);
    table.write32(entry::DATA, msg.data.encode());
    table.write32(entry::VECTOR_CONTROL, 0);
    bdf.write16(cap.control_at(), control | MsixControl::ENABLE);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_edge_message_to_an_apic() {
        let m = Message::to(3, 50).unwrap();
        assert_eq!(m.address.encode(), 0xFEE0_3000);
        assert_eq!(m.data.encode(), 50);
        assert_eq!(Message::to(0, 0x30).unwrap().address.encode(), 0xFEE0_0000);
        assert_eq!(
            Message::to(255, 0xFF).unwrap().address.encode(),
            0xFEEF_F000
        );
    }

    #[test]
    fn an_apic_id_past_8_bits_cannot_be_addressed() {
        assert_eq!(Message::to(256, 50), None);
    }
}
