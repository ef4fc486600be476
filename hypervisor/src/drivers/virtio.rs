//! Virtio 1.x over PCI (the "modern" interface QEMU's transitional devices also offer):
//! capability parsing, status and feature negotiation, and split virtqueues.
//!
//! The modern interface lets the driver place each ring part at its own address and shrink
//! queues, so every virtqueue fits in one 4 KiB frame and no contiguous allocation is needed.

use alloc::vec::Vec;

use crate::arch::pci::{dma_fence, Bdf, DmaFrame, Mmio};

pub const VENDOR: u16 = 0x1AF4;

/// Device status bits.
const ACKNOWLEDGE: u8 = 1;
const DRIVER: u8 = 2;
const DRIVER_OK: u8 = 4;
const FEATURES_OK: u8 = 8;
const FAILED: u8 = 0x80;

pub const F_VERSION_1: u64 = 1 << 32;

/// Vendor capability types (virtio 1.x, 4.1.4).
const CAP_VENDOR: u8 = 0x09;
const CAP_COMMON: u8 = 1;
const CAP_NOTIFY: u8 = 2;
const CAP_ISR: u8 = 3;
const CAP_DEVICE: u8 = 4;

/// Common configuration registers.
const DEVICE_FEATURE_SELECT: u64 = 0x00;
const DEVICE_FEATURE: u64 = 0x04;
const DRIVER_FEATURE_SELECT: u64 = 0x08;
const DRIVER_FEATURE: u64 = 0x0C;
const NUM_QUEUES: u64 = 0x12;
const DEVICE_STATUS: u64 = 0x14;
const CONFIG_GENERATION: u64 = 0x15;
const QUEUE_SELECT: u64 = 0x16;
const QUEUE_SIZE: u64 = 0x18;
const QUEUE_MSIX_VECTOR: u64 = 0x1A;
const QUEUE_ENABLE: u64 = 0x1C;
const QUEUE_NOTIFY_OFF: u64 = 0x1E;
const QUEUE_DESC: u64 = 0x20;
const QUEUE_DRIVER: u64 = 0x28;
const QUEUE_DEVICE: u64 = 0x30;
const COMMON_LEN: u32 = 0x38;
const NO_VECTOR: u16 = 0xFFFF;

/// PCI device ids of a virtio device type: transitional (0x1000 + legacy id) and modern.
pub fn pci_ids(virtio_type: u16) -> [u16; 2] {
    let transitional = match virtio_type {
        1 => 0x1000, // network
        2 => 0x1001, // block
        3 => 0x1003, // console
        _ => 0,
    };
    [transitional, 0x1040 + virtio_type]
}

/// Every PCI function that is a virtio device of `virtio_type`.
pub fn find(virtio_type: u16) -> Vec<Bdf> {
    let ids = pci_ids(virtio_type);
    let mut found = Vec::new();
    crate::arch::pci::scan(|bdf| {
        let dev = bdf.device();
        if bdf.vendor() == VENDOR && dev != 0 && ids.contains(&dev) {
            found.push(bdf);
        }
    });
    found
}

/// One device's modern virtio-pci register windows.
pub struct Transport {
    pub bdf: Bdf,
    common: Mmio,
    notify: Mmio,
    notify_multiplier: u32,
    isr: Mmio,
    device: Option<Mmio>,
}

impl Transport {
    /// Finds the common, notify, ISR and device-specific windows in the capability list.
    pub fn new(bdf: Bdf) -> Result<Transport, &'static str> {
        let (mut common, mut notify, mut isr, mut device) = (None, None, None, None);
        let mut multiplier = 0;
        for (id, at) in bdf.capabilities() {
            if id != CAP_VENDOR {
                continue;
            }
            let cfg_type = bdf.read8(at + 3);
            let bar = bdf.read8(at + 4);
            let offset = bdf.read32(at + 8);
            let length = bdf.read32(at + 12);
            // The first capability of each type is the preferred one (4.1.4).
            match cfg_type {
                CAP_COMMON if common.is_none() => {
                    common = Mmio::new(bdf, bar, offset, length.min(COMMON_LEN))
                }
                CAP_NOTIFY if notify.is_none() => {
                    multiplier = bdf.read32(at + 16);
                    notify = Mmio::new(bdf, bar, offset, length);
                }
                CAP_ISR if isr.is_none() => isr = Mmio::new(bdf, bar, offset, length.min(4)),
                CAP_DEVICE if device.is_none() => device = Mmio::new(bdf, bar, offset, length),
                _ => {}
            }
        }
        let common = common.ok_or("virtio: no usable common configuration capability")?;
        if common.size() < u64::from(COMMON_LEN) {
            return Err("virtio: common configuration window too small");
        }
        Ok(Transport {
            bdf,
            common,
            notify: notify.ok_or("virtio: no usable notify capability")?,
            notify_multiplier: multiplier,
            isr: isr.ok_or("virtio: no usable ISR capability")?,
            device,
        })
    }

    pub fn status(&self) -> u8 {
        self.common.read8(DEVICE_STATUS)
    }

    fn set_status(&self, bits: u8) {
        self.common.write8(DEVICE_STATUS, self.status() | bits);
    }

    /// Resets the device; it then forgets every queue address, so DMA stops.
    pub fn reset(&self) {
        self.common.write8(DEVICE_STATUS, 0);
        // The reset completes when the status reads back zero (4.1.4.3.2); bounded so a
        // broken device cannot hang the kernel.
        for _ in 0..1_000_000 {
            if self.status() == 0 {
                break;
            }
            core::hint::spin_loop();
        }
    }

    /// Resets and starts initialisation (3.1.1): acknowledge, driver, then features.
    /// Accepts `wanted` ∩ offered, plus VERSION_1 which must be offered. Returns the
    /// accepted set.
    pub fn negotiate(&self, wanted: u64) -> Result<u64, &'static str> {
        self.reset();
        self.set_status(ACKNOWLEDGE);
        self.set_status(DRIVER);
        let mut offered = 0u64;
        for half in 0..2u32 {
            self.common.write32(DEVICE_FEATURE_SELECT, half);
            offered |= u64::from(self.common.read32(DEVICE_FEATURE)) << (32 * half);
        }
        if offered & F_VERSION_1 == 0 {
            self.fail();
            return Err("virtio: device does not offer VERSION_1");
        }
        let accepted = offered & (wanted | F_VERSION_1);
        for half in 0..2u32 {
            self.common.write32(DRIVER_FEATURE_SELECT, half);
            self.common
                .write32(DRIVER_FEATURE, (accepted >> (32 * half)) as u32);
        }
        self.set_status(FEATURES_OK);
        if self.status() & FEATURES_OK == 0 {
            self.fail();
            return Err("virtio: device refused the features");
        }
        Ok(accepted)
    }

    pub fn fail(&self) {
        self.set_status(FAILED);
    }

    pub fn driver_ok(&self) {
        self.set_status(DRIVER_OK);
    }

    pub fn num_queues(&self) -> u16 {
        self.common.read16(NUM_QUEUES)
    }

    /// Sets up queue `index` with at most `max_size` entries in one fresh frame and enables it.
    pub fn setup_queue(&self, index: u16, max_size: u16) -> Result<Queue, &'static str> {
        self.common.write16(QUEUE_SELECT, index);
        let offered = self.common.read16(QUEUE_SIZE);
        if offered == 0 {
            return Err("virtio: queue not available");
        }
        let size = fit_queue_size(offered.min(max_size).min(MAX_QUEUE));
        if size == 0 {
            return Err("virtio: queue too small");
        }
        let ring = DmaFrame::new().ok_or("virtio: out of memory for a virtqueue")?;
        let layout = Layout::new(size);
        self.common.write16(QUEUE_SIZE, size);
        self.common.write16(QUEUE_MSIX_VECTOR, NO_VECTOR);
        self.common
            .write64(QUEUE_DESC, ring.pa() + layout.desc as u64);
        self.common
            .write64(QUEUE_DRIVER, ring.pa() + layout.avail as u64);
        self.common
            .write64(QUEUE_DEVICE, ring.pa() + layout.used as u64);
        let notify_off =
            u64::from(self.common.read16(QUEUE_NOTIFY_OFF)) * u64::from(self.notify_multiplier);
        dma_fence();
        self.common.write16(QUEUE_ENABLE, 1);
        Ok(Queue::new(index, size, ring, layout, notify_off))
    }

    /// Tells the device that `queue` has new available buffers, unless it asked not to be told.
    pub fn notify(&self, queue: &Queue) {
        dma_fence();
        if queue.device_wants_notify() {
            self.notify.write16(queue.notify_off, queue.index);
        }
    }

    /// Reads (and so clears) the interrupt status, which deasserts INTx. Bit 0: a queue
    /// was used; bit 1: the configuration changed.
    pub fn ack_interrupt(&self) -> u8 {
        self.isr.read8(0)
    }

    /// A consistent read of device-specific configuration (4.1.4.3.1: retry while the
    /// generation changes; bounded, so a device that keeps changing it cannot hang us).
    pub fn config_read32(&self, off: u64) -> u32 {
        let Some(device) = &self.device else { return 0 };
        let mut value = 0;
        for _ in 0..64 {
            let before = self.common.read8(CONFIG_GENERATION);
            value = device.read32(off);
            if self.common.read8(CONFIG_GENERATION) == before {
                break;
            }
        }
        value
    }
}

/// The largest power of two not above `n` (split rings need powers of two in legacy mode
/// and QEMU keeps that rule), 0 for 0.
fn fit_queue_size(n: u16) -> u16 {
    if n == 0 {
        0
    } else {
        1 << (15 - n.leading_zeros())
    }
}

/// Where the three parts of a split ring sit inside the queue's frame.
#[derive(Clone, Copy)]
struct Layout {
    desc: usize,
    avail: usize,
    used: usize,
}

impl Layout {
    const fn new(size: u16) -> Layout {
        let n = size as usize;
        let desc = 0;
        let avail = desc + 16 * n;
        // avail: flags, idx, ring[n], used_event; used must be 4-aligned.
        let used = (avail + 6 + 2 * n + 3) & !3;
        Layout { desc, avail, used }
    }

    const fn end(self, size: u16) -> usize {
        self.used + 6 + 8 * size as usize
    }
}

/// The largest queue that fits in one frame (128: 3342 bytes; 256 would need 6.6 KiB).
pub const MAX_QUEUE: u16 = 128;
const _: () = assert!(Layout::new(MAX_QUEUE).end(MAX_QUEUE) <= crate::arch::pci::FRAME_SIZE);

const DESC_F_WRITE: u16 = 2;
const USED_F_NO_NOTIFY: u16 = 1;

/// A split virtqueue whose buffers are single descriptors. Each posted buffer carries a
/// caller's token (e.g. the index of the buffer frame) that comes back when it is used.
pub struct Queue {
    index: u16,
    size: u16,
    ring: DmaFrame,
    layout: Layout,
    notify_off: u64,
    free: Vec<u16>,
    /// Per descriptor: the token of the buffer posted in it, if one is outstanding.
    tokens: Vec<Option<u16>>,
    avail_idx: u16,
    last_used: u16,
}

impl Queue {
    fn new(index: u16, size: u16, ring: DmaFrame, layout: Layout, notify_off: u64) -> Queue {
        Queue {
            index,
            size,
            ring,
            layout,
            notify_off,
            free: (0..size).rev().collect(),
            tokens: (0..size).map(|_| None).collect(),
            avail_idx: 0,
            last_used: 0,
        }
    }

    pub fn size(&self) -> u16 {
        self.size
    }

    /// Posts one buffer (`device_writes`: a receive buffer). The caller notifies afterwards.
    pub fn post(&mut self, pa: u64, len: u32, device_writes: bool, token: u16) -> bool {
        let Some(d) = self.free.pop() else {
            return false;
        };
        let at = self.layout.desc + 16 * usize::from(d);
        self.ring.write64(at, pa);
        self.ring.write32(at + 8, len);
        self.ring
            .write16(at + 12, if device_writes { DESC_F_WRITE } else { 0 });
        self.ring.write16(at + 14, 0);
        self.tokens[usize::from(d)] = Some(token);
        let slot = usize::from(self.avail_idx % self.size);
        self.ring.write16(self.layout.avail + 4 + 2 * slot, d);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        // The descriptor and ring slot must be visible before the index that publishes them.
        dma_fence();
        self.ring.write16(self.layout.avail + 2, self.avail_idx);
        true
    }

    /// The next used buffer: its token and the byte count the device wrote. A used entry
    /// naming a descriptor that is not outstanding (a broken device) is skipped.
    pub fn pop_used(&mut self) -> Option<(u16, u32)> {
        loop {
            let used_idx = self.ring.read16(self.layout.used + 2);
            if used_idx == self.last_used {
                return None;
            }
            dma_fence();
            let slot = usize::from(self.last_used % self.size);
            let at = self.layout.used + 4 + 8 * slot;
            let id = self.ring.read32(at);
            let len = self.ring.read32(at + 4);
            self.last_used = self.last_used.wrapping_add(1);
            let Some(entry) = usize::try_from(id)
                .ok()
                .and_then(|i| self.tokens.get_mut(i))
            else {
                continue;
            };
            if let Some(token) = entry.take() {
                self.free.push(id as u16);
                return Some((token, len));
            }
        }
    }

    fn device_wants_notify(&self) -> bool {
        self.ring.read16(self.layout.used) & USED_F_NO_NOTIFY == 0
    }
}
