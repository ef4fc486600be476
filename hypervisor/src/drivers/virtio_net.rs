//! virtio-net over PCI (QEMU `-device virtio-net-pci`), on our own virtio transport
//! (`drivers::virtio`): one receive and one transmit queue, one frame per buffer, no
//! offloads; its interrupt by MSI-X where offered, else INTx. Each buffer starts with the
//! 12-byte `virtio_net_hdr` (VERSION_1 layout).

use alloc::vec;
use alloc::vec::Vec;

use crate::arch::pci::FRAME_SIZE;
use crate::drivers::irq::{self, Interrupt};
use crate::drivers::nic::{Nic, MTU_FRAME};
use crate::drivers::virtio::{self, Buffers, Transport};
use ::virtio::feature::NET_MAC;
use ::virtio::net::HDR_LEN as HDR;
use ::virtio::Id;

const RX_QUEUE: u16 = 0;
const TX_QUEUE: u16 = 1;
/// Buffers per queue, one frame each.
const BUFFERS: u16 = 64;

pub struct VirtioNet {
    transport: Transport,
    irq: Interrupt,
    rx: Buffers,
    tx: Buffers,
    mac: [u8; 6],
}

impl VirtioNet {
    fn new(mut transport: Transport, irq: Interrupt) -> Result<VirtioNet, &'static str> {
        if let irq::Mode::MsiX { .. } = irq.mode() {
            // Both queues signal through MSI-X table entry 0; configuration changes not at all.
            transport.use_msix_entry(0);
        }
        let features = transport.negotiate(NET_MAC)?;
        let mut rx = Buffers::new(transport.setup_queue(RX_QUEUE, BUFFERS)?);
        let mut tx = Buffers::new(transport.setup_queue(TX_QUEUE, BUFFERS)?);
        if !(rx.alloc(BUFFERS) && tx.alloc(BUFFERS)) {
            transport.reset();
            return Err("virtio-net: out of memory for buffers");
        }
        let mut mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        if features & NET_MAC != 0 {
            let lo = transport.config_read32(0).to_le_bytes();
            let hi = transport.config_read32(4).to_le_bytes();
            mac = [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1]];
        }
        let mut n = VirtioNet {
            transport,
            irq,
            rx,
            tx,
            mac,
        };
        n.rx.post_all();
        n.transport.driver_ok();
        n.transport.notify(n.rx.queue());
        Ok(n)
    }

    fn ack(&mut self) {
        let transport = &self.transport;
        self.irq.service(|| {
            transport.ack_interrupt();
        });
        self.tx.reap();
    }
}

impl Nic for VirtioNet {
    fn model(&self) -> &'static str {
        "virtio-net"
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn recv(&mut self) -> Option<Vec<u8>> {
        self.ack();
        loop {
            let (b, len) = self.rx.pop_used()?;
            let buf = self.rx.frame(b)?;
            let len = (len as usize).min(FRAME_SIZE);
            let mut frame = vec![0; len.saturating_sub(HDR)];
            buf.read_bytes(HDR, &mut frame);
            self.rx.repost(b);
            self.transport.notify(self.rx.queue());
            if !frame.is_empty() {
                return Some(frame);
            }
        }
    }

    fn can_send(&mut self) -> bool {
        self.ack();
        self.tx.can_send()
    }

    fn send(&mut self, frame: &[u8]) -> bool {
        self.ack();
        if frame.len() > MTU_FRAME {
            return true; // dropped: no stack sends one
        }
        let sent = self.tx.send(|buf| {
            buf.write_bytes(0, &[0; HDR]);
            buf.write_bytes(HDR, frame);
            HDR + frame.len()
        });
        if sent.is_none() {
            return false;
        }
        self.transport.notify(self.tx.queue());
        true
    }
}

impl Drop for VirtioNet {
    fn drop(&mut self) {
        // Stop all DMA before the rings and buffers go back to the allocator.
        self.transport.reset();
    }
}

/// The first virtio-net device that initialises. Call with interrupts off.
pub fn probe() -> Option<VirtioNet> {
    for bdf in virtio::find(Id::Net) {
        let irq = Interrupt::setup(bdf, &[irq::Kind::MsiX]);
        let dev = Transport::new(bdf).and_then(|t| VirtioNet::new(t, irq));
        match dev {
            Ok(n) => {
                log::info!("virtio-net {bdf:?}: mac {:02x?}, {}", n.mac, n.irq.mode());
                return Some(n);
            }
            Err(e) => log::warn!("virtio-net {bdf:?} not served: {e}"),
        }
    }
    None
}
