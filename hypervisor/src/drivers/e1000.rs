//! Intel 8254x gigabit NICs (the e1000 family: 82540EM as Bochs and QEMU emulate it, and
//! its close relatives) and the 82574L (e1000e, QEMU `-device e1000e`), which keeps the
//! 8254x's legacy descriptors and register map: legacy receive and transmit descriptors in
//! one frame per ring, one frame per buffer, receive interrupts by MSI where the device
//! offers it (the 82574L), else on the PCI INTx line.
//! Registers from Intel's "PCI/PCI-X Family of Gigabit Ethernet Controllers Software
//! Developer's Manual" (8254x), sections 13 (registers) and 3 (descriptors), and the 82574
//! GbE Controller Family datasheet (section 10: EERD's other layout).

use alloc::vec;
use alloc::vec::Vec;

use crate::arch::pci::{Bdf, DmaFrame, Mmio, FRAME_SIZE};
use crate::drivers::irq::{self, Interrupt};
use crate::drivers::nic::{Nic, MTU_FRAME};

const INTEL: u16 = 0x8086;

/// Where a family's EERD (EEPROM read) register keeps its fields.
#[derive(Clone, Copy)]
struct Eerd {
    /// The word address's shift.
    addr_shift: u32,
    /// The done bit.
    done: u32,
}

/// The 8254x's EERD: address at bit 8, done at bit 4.
const EERD_8254X: Eerd = Eerd {
    addr_shift: 8,
    done: 1 << 4,
};
/// The 82574's: address at bit 2, done at bit 1.
const EERD_82574: Eerd = Eerd {
    addr_shift: 2,
    done: 1 << 1,
};

/// A device id served, its name in the log and its EERD.
struct Model {
    device: u16,
    name: &'static str,
    eerd: Eerd,
}

/// Device ids served: 82540EM, 82540EM (LOM), 82540EP (LOM), 82540EP, 82540EP (LP),
/// 82545EM (copper), and the 82574L. Other e1000e parts (82571-82573, the ICH/PCH
/// I217/I219) need more set-up than this driver does (see hypervisor/README.md).
const MODELS: [Model; 7] = [
    Model::e1000(0x100E),
    Model::e1000(0x1015),
    Model::e1000(0x1016),
    Model::e1000(0x1017),
    Model::e1000(0x101E),
    Model::e1000(0x100F),
    Model {
        device: 0x10D3,
        name: "e1000e",
        eerd: EERD_82574,
    },
];

impl Model {
    /// An 8254x.
    const fn e1000(device: u16) -> Model {
        Model {
            device,
            name: "e1000",
            eerd: EERD_8254X,
        }
    }
}

/// Register offsets in BAR 0.
const CTRL: u64 = 0x0000;
const STATUS: u64 = 0x0008;
const EERD: u64 = 0x0014;
const ICR: u64 = 0x00C0;
const IMS: u64 = 0x00D0;
const IMC: u64 = 0x00D8;
const RCTL: u64 = 0x0100;
const TCTL: u64 = 0x0400;
const TIPG: u64 = 0x0410;
const RDBAL: u64 = 0x2800;
const RDBAH: u64 = 0x2804;
const RDLEN: u64 = 0x2808;
const RDH: u64 = 0x2810;
const RDT: u64 = 0x2818;
const TDBAL: u64 = 0x3800;
const TDBAH: u64 = 0x3804;
const TDLEN: u64 = 0x3808;
const TDH: u64 = 0x3810;
const TDT: u64 = 0x3818;
const MTA: u64 = 0x5200;
const RAL0: u64 = 0x5400;
const RAH0: u64 = 0x5404;
const RAH_AV: u32 = 1 << 31;
/// The register window used (the BAR is 128 KiB).
const WINDOW: u32 = 0x6000;

const CTRL_SLU: u32 = 1 << 6;
const CTRL_RST: u32 = 1 << 26;
const RCTL_EN: u32 = 1 << 1;
/// Unicast and multicast promiscuous: every frame, whatever its destination.
const RCTL_UPE: u32 = 1 << 3;
const RCTL_MPE: u32 = 1 << 4;
const RCTL_BAM: u32 = 1 << 15;
/// Buffer size 2048 (BSIZE 00, BSEX 0); strip the CRC.
const RCTL_SECRC: u32 = 1 << 26;
const TCTL_EN: u32 = 1 << 1;
const TCTL_PSP: u32 = 1 << 3;
const TCTL_CT: u32 = 0x10 << 4;
const TCTL_COLD: u32 = 0x40 << 12;
/// Recommended inter-packet gap for copper (IPGT 10, IPGR1 8, IPGR2 6).
const TIPG_COPPER: u32 = 10 | 8 << 10 | 6 << 20;
/// Interrupt causes: link change, receive ring low, receive overrun, receive timer.
const INT_LSC: u32 = 1 << 2;
const INT_RXDMT0: u32 = 1 << 4;
const INT_RXO: u32 = 1 << 6;
const INT_RXT0: u32 = 1 << 7;
const EERD_START: u32 = 1;

/// Descriptors per ring (a multiple of 8: ring lengths are multiples of 128 bytes).
const RING: usize = 64;
const DESC: usize = 16;
/// Receive buffer size programmed in RCTL.
const RX_BUF: usize = 2048;
/// Descriptor status and command bits.
const STA_DD: u32 = 1;
const STA_EOP: u32 = 1 << 1;
const CMD_EOP: u32 = 1;
const CMD_IFCS: u32 = 1 << 1;
const CMD_RS: u32 = 1 << 3;

pub struct E1000 {
    model: &'static Model,
    regs: Mmio,
    irq: Interrupt,
    rx_ring: DmaFrame,
    tx_ring: DmaFrame,
    rx_bufs: Vec<DmaFrame>,
    tx_bufs: Vec<DmaFrame>,
    /// Next receive descriptor to look at.
    rx_next: usize,
    /// Next transmit descriptor to fill, and the oldest one not yet known done.
    tx_next: usize,
    tx_done: usize,
    mac: [u8; 6],
}

impl E1000 {
    fn new(bdf: Bdf, model: &'static Model, irq: Interrupt) -> Result<E1000, &'static str> {
        let regs = Mmio::new(bdf, 0, 0, WINDOW).ok_or("e1000: BAR 0 is not a usable memory BAR")?;
        let frames =
            |n: usize| -> Option<Vec<DmaFrame>> { (0..n).map(|_| DmaFrame::new()).collect() };
        let (Some(rx_ring), Some(tx_ring), Some(rx_bufs), Some(tx_bufs)) =
            (DmaFrame::new(), DmaFrame::new(), frames(RING), frames(RING))
        else {
            return Err("e1000: out of memory for rings");
        };
        // Reset; the device reloads its MAC address from the EEPROM into RAL0/RAH0.
        regs.write32(IMC, !0);
        regs.write32(CTRL, regs.read32(CTRL) | CTRL_RST);
        for _ in 0..100_000 {
            if regs.read32(CTRL) & CTRL_RST == 0 {
                break;
            }
            core::hint::spin_loop();
        }
        regs.write32(IMC, !0);
        let _ = regs.read32(ICR);
        let mut n = E1000 {
            model,
            mac: [0; 6],
            regs,
            irq,
            rx_ring,
            tx_ring,
            rx_bufs,
            tx_bufs,
            rx_next: 0,
            tx_next: 0,
            tx_done: 0,
        };
        n.mac = n.read_mac();
        // Receive address 0 with Address Valid: not every model sets AV when it loads the
        // EEPROM (Bochs does not), and without it only broadcasts come in.
        let m = n.mac;
        n.regs
            .write32(RAL0, u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
        n.regs
            .write32(RAH0, u32::from_le_bytes([m[4], m[5], 0, 0]) | RAH_AV);
        n.regs.write32(CTRL, n.regs.read32(CTRL) | CTRL_SLU);
        for i in 0..128 {
            n.regs.write32(MTA + 4 * i, 0);
        }
        // Receive: every descriptor owned by the device but one (RDT == RDH means empty).
        for i in 0..RING {
            n.rx_ring.write64(i * DESC, n.rx_bufs[i].pa());
            n.rx_ring.write64(i * DESC + 8, 0);
        }
        let ring = |pa: u64| (pa as u32, (pa >> 32) as u32);
        let (lo, hi) = ring(n.rx_ring.pa());
        n.regs.write32(RDBAL, lo);
        n.regs.write32(RDBAH, hi);
        n.regs.write32(RDLEN, (RING * DESC) as u32);
        n.regs.write32(RDH, 0);
        n.regs.write32(RDT, (RING - 1) as u32);
        n.regs.write32(RCTL, RCTL_EN | RCTL_BAM | RCTL_SECRC);
        let (lo, hi) = ring(n.tx_ring.pa());
        n.regs.write32(TDBAL, lo);
        n.regs.write32(TDBAH, hi);
        n.regs.write32(TDLEN, (RING * DESC) as u32);
        n.regs.write32(TDH, 0);
        n.regs.write32(TDT, 0);
        n.regs.write32(TIPG, TIPG_COPPER);
        n.regs
            .write32(TCTL, TCTL_EN | TCTL_PSP | TCTL_CT | TCTL_COLD);
        // Receive causes only: a transmitted frame needs no wake-up (the ring is reaped
        // before each send), and one interrupt per frame sent would double the work.
        n.regs
            .write32(IMS, INT_RXT0 | INT_RXO | INT_RXDMT0 | INT_LSC);
        Ok(n)
    }

    /// The station address: RAL0/RAH0 as the device loaded them, else the EEPROM's words 0-2.
    fn read_mac(&self) -> [u8; 6] {
        let lo = self.regs.read32(RAL0).to_le_bytes();
        let hi = self.regs.read32(RAH0).to_le_bytes();
        let mac = [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1]];
        if mac != [0; 6] {
            return mac;
        }
        let mut mac = [0u8; 6];
        for word in 0..3u32 {
            let eerd = self.model.eerd;
            self.regs
                .write32(EERD, EERD_START | word << eerd.addr_shift);
            let mut v = 0;
            for _ in 0..100_000 {
                v = self.regs.read32(EERD);
                if v & eerd.done != 0 {
                    break;
                }
            }
            let w = ((v >> 16) as u16).to_le_bytes();
            mac[2 * word as usize..2 * word as usize + 2].copy_from_slice(&w);
        }
        mac
    }

    /// After an interrupt: reading ICR clears the causes (lowering INTx; with MSI, a cause
    /// still set in ICR sends no new message, so it must be cleared too).
    fn ack(&mut self) {
        let regs = &self.regs;
        self.irq.service(|| {
            let _ = regs.read32(ICR);
        });
    }

    /// Transmit descriptors the device has finished with.
    fn reap_tx(&mut self) {
        while self.tx_done != self.tx_next
            && self.tx_ring.read32(self.tx_done * DESC + 12) & STA_DD != 0
        {
            self.tx_done = (self.tx_done + 1) % RING;
        }
    }
}

impl Nic for E1000 {
    fn model(&self) -> &'static str {
        self.model.name
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn recv(&mut self) -> Option<Vec<u8>> {
        self.ack();
        loop {
            let at = self.rx_next * DESC;
            let word = self.rx_ring.read32(at + 8);
            let status = self.rx_ring.read32(at + 12);
            if status & STA_DD == 0 {
                return None;
            }
            let len = (word & 0xFFFF) as usize;
            let whole = status & STA_EOP != 0 && (status >> 8) & 0xFF == 0;
            let mut frame = vec![0; len.min(RX_BUF).min(FRAME_SIZE)];
            if whole {
                self.rx_bufs[self.rx_next].read_bytes(0, &mut frame);
            }
            // Give the descriptor back: clear its status, then move the tail onto it.
            self.rx_ring.write64(at + 8, 0);
            self.regs.write32(RDT, self.rx_next as u32);
            self.rx_next = (self.rx_next + 1) % RING;
            // Frames spanning buffers (longer than 2 KiB) or with errors are dropped.
            if whole && !frame.is_empty() {
                return Some(frame);
            }
        }
    }

    fn promiscuous(&mut self) {
        let r = self.regs.read32(RCTL);
        self.regs.write32(RCTL, r | RCTL_UPE | RCTL_MPE);
    }

    fn can_send(&mut self) -> bool {
        self.ack();
        self.reap_tx();
        (self.tx_next + 1) % RING != self.tx_done
    }

    fn send(&mut self, frame: &[u8]) -> bool {
        if !self.can_send() {
            return false;
        }
        if frame.len() > MTU_FRAME {
            return true; // dropped: no stack sends one
        }
        let i = self.tx_next;
        self.tx_bufs[i].write_bytes(0, frame);
        let at = i * DESC;
        self.tx_ring.write64(at, self.tx_bufs[i].pa());
        self.tx_ring.write32(
            at + 8,
            frame.len() as u32 | (CMD_EOP | CMD_IFCS | CMD_RS) << 24,
        );
        self.tx_ring.write32(at + 12, 0);
        self.tx_next = (i + 1) % RING;
        crate::arch::pci::dma_fence();
        self.regs.write32(TDT, self.tx_next as u32);
        true
    }
}

impl Drop for E1000 {
    fn drop(&mut self) {
        // Stop all DMA before the rings and buffers go back to the allocator.
        self.regs.write32(IMC, !0);
        self.regs.write32(RCTL, 0);
        self.regs.write32(TCTL, 0);
        self.regs.write32(CTRL, self.regs.read32(CTRL) | CTRL_RST);
    }
}

/// The first 8254x or 82574L that initialises. Call with interrupts off.
pub fn probe() -> Option<E1000> {
    let mut found = Vec::new();
    crate::arch::pci::scan(|bdf| {
        let model = MODELS.iter().find(|m| m.device == bdf.device());
        if let (INTEL, Some(model)) = (bdf.vendor(), model) {
            found.push((bdf, model));
        }
    });
    for (bdf, model) in found {
        // MSI where offered (the 82574L; not the 8254x as Bochs and QEMU emulate it). The
        // 82574L's MSI-X would need its IVAR to map causes to table entries: not used.
        let irq = Interrupt::setup(bdf, &[irq::Kind::Msi]);
        match E1000::new(bdf, model, irq) {
            Ok(n) => {
                log::info!(
                    "{} {bdf:?} ({:04x}): mac {:02x?}, {}, status {:#x}",
                    model.name,
                    bdf.device(),
                    n.mac,
                    n.irq.mode(),
                    n.regs.read32(STATUS)
                );
                return Some(n);
            }
            Err(e) => log::warn!("{} {bdf:?} not served: {e}", model.name),
        }
    }
    None
}
