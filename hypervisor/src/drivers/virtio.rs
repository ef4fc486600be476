//! Virtio 1.x over PCI (the "modern" interface QEMU's transitional devices also offer):
//! capability parsing, status and feature negotiation, and split virtqueues.
//!
//! The modern interface lets the driver place each ring part at its own address and shrink
//! queues, so every virtqueue fits in one 4 KiB frame and no contiguous allocation is needed.

//!
//! The specification's numbers, the ring layout and the device ids are the `virtio`
//! crate's (shared with the vmx tool's devices); this file is what touches the device.

use alloc::vec::Vec;

use crate::arch::pci::{dma_fence, Bdf, DmaFrame, Mmio, FRAME_SIZE};
use crate::drivers::pcicap::{self, CapId};
use virtio::feature::VERSION_1;
use virtio::pci::{CapCfgType, CAP_VENDOR};
use virtio::ring::{fit_queue_size, Layout, DESC_F_WRITE, USED_F_NO_NOTIFY};
use virtio::{DeviceStatus, Id};

/// Common configuration registers (4.1.4.3).
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

/// Every PCI function that is a virtio `device`, transitional or modern.
pub fn find(device: Id) -> Vec<Bdf> {
    let mut found = Vec::new();
    crate::arch::pci::scan(|bdf| {
        if virtio::pci::is_device(bdf.vendor(), bdf.device(), device) {
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
    /// The MSI-X table entry each queue signals through ([`NO_VECTOR`]: none, INTx).
    queue_vector: u16,
}

impl Transport {
    /// Finds the common, notify, ISR and device-specific windows in the capability list.
    pub fn new(bdf: Bdf) -> Result<Transport, &'static str> {
        let (mut common, mut notify, mut isr, mut device) = (None, None, None, None);
        let mut multiplier = 0;
        for cap in pcicap::caps(&bdf) {
            if cap.id != CapId::Other(CAP_VENDOR) {
                continue;
            }
            let at = cap.at;
            let cfg_type = bdf.read8(at + 3);
            let bar = bdf.read8(at + 4);
            let offset = bdf.read32(at + 8);
            let length = bdf.read32(at + 12);
            // The first capability of each type is the preferred one (4.1.4).
            match CapCfgType::from(cfg_type) {
                CapCfgType::Common if common.is_none() => {
                    common = Mmio::new(bdf, bar, offset, length.min(COMMON_LEN))
                }
                CapCfgType::Notify if notify.is_none() => {
                    multiplier = bdf.read32(at + 16);
                    notify = Mmio::new(bdf, bar, offset, length);
                }
                CapCfgType::Isr if isr.is_none() => {
                    isr = Mmio::new(bdf, bar, offset, length.min(4))
                }
                CapCfgType::Device if device.is_none() => {
                    device = Mmio::new(bdf, bar, offset, length)
                }
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
            queue_vector: NO_VECTOR,
        })
    }

    /// Queues set up from now on signal through MSI-X table `entry` (the function's MSI-X
    /// is on: `drivers::irq`); with MSI-X on the ISR no longer counts queue interrupts.
    pub fn use_msix_entry(&mut self, entry: u16) {
        self.queue_vector = entry;
    }

    pub fn status(&self) -> u8 {
        self.common.read8(DEVICE_STATUS)
    }

    fn set_status(&self, bits: DeviceStatus) {
        self.common
            .write8(DEVICE_STATUS, self.status() | bits.bits());
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
        self.set_status(DeviceStatus::ACKNOWLEDGE);
        self.set_status(DeviceStatus::DRIVER);
        let mut offered = 0u64;
        for half in 0..2u32 {
            self.common.write32(DEVICE_FEATURE_SELECT, half);
            offered |= u64::from(self.common.read32(DEVICE_FEATURE)) << (32 * half);
        }
        if offered & VERSION_1 == 0 {
            self.fail();
            return Err("virtio: device does not offer VERSION_1");
        }
        let accepted = offered & (wanted | VERSION_1);
        for half in 0..2u32 {
            self.common.write32(DRIVER_FEATURE_SELECT, half);
            self.common
                .write32(DRIVER_FEATURE, (accepted >> (32 * half)) as u32);
        }
        self.set_status(DeviceStatus::FEATURES_OK);
        if self.status() & DeviceStatus::FEATURES_OK.bits() == 0 {
            self.fail();
            return Err("virtio: device refused the features");
        }
        Ok(accepted)
    }

    pub fn fail(&self) {
        self.set_status(DeviceStatus::FAILED);
    }

    pub fn driver_ok(&self) {
        self.set_status(DeviceStatus::DRIVER_OK);
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
        let layout = Layout::modern(size);
        self.common.write16(QUEUE_SIZE, size);
        self.common.write16(QUEUE_MSIX_VECTOR, self.queue_vector);
        // A device that cannot map the entry reads back NO_VECTOR (4.1.5.1.2).
        if self.common.read16(QUEUE_MSIX_VECTOR) != self.queue_vector {
            return Err("virtio: device refused the queue's MSI-X vector");
        }
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
        Ok(Queue::new(index, ring, layout, notify_off))
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

/// The largest queue that fits in one frame (128: 3342 bytes; 256 would need 6.6 KiB).
pub const MAX_QUEUE: u16 = 128;
const _: () = assert!(Layout::modern(MAX_QUEUE).end() <= crate::arch::pci::FRAME_SIZE);

/// A split virtqueue whose buffers are single descriptors. Each posted buffer carries a
/// caller's token (e.g. the index of the buffer frame) that comes back when it is used.
pub struct Queue {
    index: u16,
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
    fn new(index: u16, ring: DmaFrame, layout: Layout, notify_off: u64) -> Queue {
        let size = layout.size;
        Queue {
            index,
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
        self.layout.size
    }

    /// Posts one buffer (`device_writes`: a receive buffer). The caller notifies afterwards.
    pub fn post(&mut self, pa: u64, len: u32, device_writes: bool, token: u16) -> bool {
        let Some(d) = self.free.pop() else {
            return false;
        };
        let at = self.layout.desc_at(d);
        self.ring.write64(at, pa);
        self.ring.write32(at + 8, len);
        self.ring
            .write16(at + 12, if device_writes { DESC_F_WRITE } else { 0 });
        self.ring.write16(at + 14, 0);
        self.tokens[usize::from(d)] = Some(token);
        self.ring.write16(self.layout.avail_slot(self.avail_idx), d);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        // The descriptor and ring slot must be visible before the index that publishes them.
        dma_fence();
        self.ring.write16(self.layout.avail_idx(), self.avail_idx);
        true
    }

    /// The next used buffer: its token and the byte count the device wrote. A used entry
    /// naming a descriptor that is not outstanding (a broken device) is skipped.
    pub fn pop_used(&mut self) -> Option<(u16, u32)> {
        loop {
            let used_idx = self.ring.read16(self.layout.used_idx());
            if used_idx == self.last_used {
                return None;
            }
            dma_fence();
            let at = self.layout.used_slot(self.last_used);
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
        self.ring.read16(self.layout.used_flags()) & USED_F_NO_NOTIFY == 0
    }
}

/// A queue and the DMA frames it carries, one frame per buffer, each posted with its index
/// as the token: the receive and transmit buffer handling virtio-net and virtio-console
/// share. A receive queue keeps every frame posted for the device to fill ([`post_all`],
/// [`repost`] once read); a transmit queue posts a free frame per [`send`] and gets it
/// back when the device has used it ([`reap`]).
///
/// [`post_all`]: Buffers::post_all
/// [`repost`]: Buffers::repost
/// [`send`]: Buffers::send
/// [`reap`]: Buffers::reap
pub struct Buffers {
    queue: Queue,
    frames: Vec<DmaFrame>,
    /// Transmit: the frames not posted.
    free: Vec<u16>,
}

impl Buffers {
    /// The queue, with no frames yet.
    pub fn new(queue: Queue) -> Buffers {
        Buffers {
            queue,
            frames: Vec::new(),
            free: Vec::new(),
        }
    }

    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    pub fn has_frames(&self) -> bool {
        !self.frames.is_empty()
    }

    /// Allocates `count` frames (at most the queue's size), all free; false, keeping none,
    /// when memory runs out.
    pub fn alloc(&mut self, count: u16) -> bool {
        let count = count.min(self.queue.size());
        let Some(frames) = (0..count)
            .map(|_| DmaFrame::new())
            .collect::<Option<Vec<_>>>()
        else {
            return false;
        };
        self.frames = frames;
        self.free = (0..count).collect();
        true
    }

    /// Gives every frame back (for a set whose partner could not be allocated).
    pub fn release(&mut self) {
        self.frames.clear();
        self.free.clear();
    }

    /// Receive: posts every frame for the device to fill. The caller notifies.
    pub fn post_all(&mut self) {
        self.free.clear();
        for (i, frame) in self.frames.iter().enumerate() {
            self.queue
                .post(frame.pa(), FRAME_SIZE as u32, true, i as u16);
        }
    }

    /// Receive: posts frame `b` again once read. The caller notifies.
    pub fn repost(&mut self, b: u16) {
        if let Some(frame) = self.frames.get(usize::from(b)) {
            self.queue.post(frame.pa(), FRAME_SIZE as u32, true, b);
        }
    }

    /// The next used buffer: its frame's index and the byte count the device wrote.
    pub fn pop_used(&mut self) -> Option<(u16, u32)> {
        self.queue.pop_used()
    }

    pub fn frame(&self, b: u16) -> Option<&DmaFrame> {
        self.frames.get(usize::from(b))
    }

    /// Transmit: takes back every frame the device has used.
    pub fn reap(&mut self) {
        while let Some((b, _)) = self.queue.pop_used() {
            self.free.push(b);
        }
    }

    /// Transmit: whether a frame is free.
    pub fn can_send(&self) -> bool {
        !self.free.is_empty()
    }

    /// Transmit: fills a free frame with `fill` (which returns the bytes it wrote) and
    /// posts it. None when no frame is free or the ring is full. The caller notifies.
    pub fn send(&mut self, fill: impl FnOnce(&DmaFrame) -> usize) -> Option<usize> {
        let b = self.free.pop()?;
        let frame = self.frames.get(usize::from(b))?;
        let len = fill(frame);
        if !self.queue.post(frame.pa(), len as u32, false, b) {
            self.free.push(b);
            return None;
        }
        Some(len)
    }
}
