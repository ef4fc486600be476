//! The legacy (0.9.5) virtio PCI transport, device side, as vmx(1)'s virtio.c offers it:
//! each device a PCI function (vendor 0x1af4, its transitional device id, revision 0)
//! with its registers in an I/O BAR of [`BAR_SIZE`] bytes and its interrupt on the PIC
//! line its configuration space reports. One home for the vmx tool's devices and the
//! kernel's; what a device does with its queues is its [`Model`]'s.
//!
//! A bad ring or request stops the device: DEVICE_NEEDS_RESET in its status, a
//! configuration-change interrupt, and the reason in [`Device::error`] until the driver
//! resets it.

use crate::pci::{modern_id, transitional_id, VENDOR};
use crate::queue::{GuestMem, Queue};
use crate::{DeviceStatus, Id};
use alloc::string::String;
use alloc::vec::Vec;
use pcdev::pci::Function;

/// Entries per queue (the table and available ring are read whole on each notify).
pub const QUEUE_SIZE: u16 = 128;
/// Bytes of a device's I/O BAR.
pub const BAR_SIZE: u16 = 0x40;

/// Register block offsets (without MSI-X).
pub const R_HOST_FEATURES: u16 = 0x00;
pub const R_GUEST_FEATURES: u16 = 0x04;
pub const R_QUEUE_PFN: u16 = 0x08;
pub const R_QUEUE_SIZE: u16 = 0x0c;
pub const R_QUEUE_SEL: u16 = 0x0e;
pub const R_QUEUE_NOTIFY: u16 = 0x10;
pub const R_STATUS: u16 = 0x12;
pub const R_ISR: u16 = 0x13;
pub const R_CONFIG: u16 = 0x14;

/// Set by the device when it stopped for a bad request (virtio 1.0's DEVICE_NEEDS_RESET).
pub const S_NEEDS_RESET: u8 = DeviceStatus::DEVICE_NEEDS_RESET.bits();

/// What a device type adds to the transport.
pub trait Model {
    /// Virtio device type.
    fn id(&self) -> Id;
    /// PCI class code (base, sub, interface).
    fn class(&self) -> u32;
    fn queues(&self) -> usize;
    fn features(&self) -> u32;
    /// The device-specific configuration bytes.
    fn config(&self) -> Vec<u8>;
    /// A driver's write into the configuration.
    fn config_write(&mut self, _off: u16, _size: u8, _v: u32) {}
    /// The driver reset the device.
    fn reset(&mut self) {}
    /// Work is left on queue `qi` (`q`) for another serve without a notify (a budget
    /// ran out): the transport's [`Device::resume`] does it.
    fn pending(&self, _qi: u16, _q: &Queue) -> bool {
        false
    }
}

/// How a device type serves its queues from guest memory `M`.
pub trait Serve<M: GuestMem + ?Sized>: Model {
    /// Serves queue `qi` (`limit`: the end of guest memory); true when the driver wants
    /// an interrupt for what it returned. Err: the device stops, with the reason.
    fn serve(&mut self, qi: u16, q: &mut Queue, mem: &mut M, limit: u64) -> Result<bool, String>;
}

/// One device and its legacy transport state.
pub struct Device<K> {
    pub kind: K,
    pub queues: Vec<Queue>,
    /// The PIC line.
    pub irq: u8,
    guest_features: u32,
    sel: u16,
    pub status: u8,
    isr: u8,
    /// Why the device stopped, if it did (until the driver resets it).
    pub error: Option<String>,
}

impl<K> Device<K> {
    pub fn new(kind: K, irq: u8) -> Device<K>
    where
        K: Model,
    {
        let queues = (0..kind.queues()).map(|_| Queue::new(QUEUE_SIZE)).collect();
        Device {
            kind,
            queues,
            irq,
            guest_features: 0,
            sel: 0,
            status: 0,
            isr: 0,
            error: None,
        }
    }

    /// The PCI function the device appears as: a legacy device shows its transitional
    /// id (every type served here has one).
    pub fn function(&self) -> Function
    where
        K: Model,
    {
        let id = self.kind.id();
        let device = transitional_id(id).unwrap_or_else(|| modern_id(id));
        Function {
            id: u32::from(device) << 16 | u32::from(VENDOR),
            class_rev: self.kind.class() << 8,
            subsystem: u32::from(u8::from(id)) << 16 | u32::from(VENDOR),
            bar_size: u32::from(BAR_SIZE),
            irq: self.irq,
        }
    }

    /// Whether the interrupt line is up (ISR bit 0 or 1 set).
    pub fn line(&self) -> bool {
        self.isr & 3 != 0
    }

    /// Raises the used-buffer interrupt (ISR bit 0): for a device that returned buffers
    /// outside a notify.
    pub fn used(&mut self) {
        self.isr |= 1;
    }

    fn reset(&mut self)
    where
        K: Model,
    {
        for q in &mut self.queues {
            q.reset();
        }
        self.guest_features = 0;
        self.sel = 0;
        self.status = 0;
        self.isr = 0;
        self.error = None;
        self.kind.reset();
    }

    fn regs(&self) -> Vec<u8>
    where
        K: Model,
    {
        let q = self.queues.get(usize::from(self.sel));
        let mut r = Vec::with_capacity(64);
        r.extend_from_slice(&self.kind.features().to_le_bytes());
        r.extend_from_slice(&self.guest_features.to_le_bytes());
        r.extend_from_slice(&q.map_or(0, |q| q.pfn).to_le_bytes());
        r.extend_from_slice(&q.map_or(0, |q| q.size).to_le_bytes());
        r.extend_from_slice(&self.sel.to_le_bytes());
        r.extend_from_slice(&[0, 0, self.status, self.isr]);
        debug_assert_eq!(r.len(), usize::from(R_CONFIG));
        r.extend_from_slice(&self.kind.config());
        r
    }

    /// An `in` of `size` bytes at `off` in the BAR. Reading the ISR clears it.
    pub fn read(&mut self, off: u16, size: u8) -> u32
    where
        K: Model,
    {
        let r = self.regs();
        let mut v = 0u32;
        for i in (0..u16::from(size)).rev() {
            let b = r
                .get(usize::from(off.saturating_add(i)))
                .copied()
                .unwrap_or(0xff);
            v = v << 8 | u32::from(b);
        }
        if (off..off.saturating_add(u16::from(size))).contains(&R_ISR) {
            self.isr = 0;
        }
        v
    }

    /// An `out` to the BAR; a queue notify serves the queue at once (the guest is
    /// stopped, so its memory holds still). Returns the reason when the device broke.
    pub fn write<M: GuestMem + ?Sized>(
        &mut self,
        off: u16,
        size: u8,
        v: u32,
        mem: &mut M,
        limit: u64,
    ) -> Option<String>
    where
        K: Serve<M>,
    {
        match (off, size) {
            (R_GUEST_FEATURES, 4) => self.guest_features = v & self.kind.features(),
            (R_QUEUE_PFN, 4) => {
                if let Some(q) = self.queues.get_mut(usize::from(self.sel)) {
                    q.pfn = v;
                }
            }
            (R_QUEUE_SEL, 2) => self.sel = v as u16,
            (R_QUEUE_NOTIFY, 2) => return self.notify(v as u16, mem, limit),
            (R_STATUS, 1) => {
                if v == 0 {
                    self.reset();
                } else {
                    self.status = v as u8 | (self.status & S_NEEDS_RESET);
                }
            }
            (o, _) if o >= R_CONFIG => self.kind.config_write(o - R_CONFIG, size, v),
            _ => {}
        }
        None
    }

    /// Serves queue `q` (its notify, or new work from the host side); the reason when
    /// the device broke.
    pub fn notify<M: GuestMem + ?Sized>(
        &mut self,
        q: u16,
        mem: &mut M,
        limit: u64,
    ) -> Option<String>
    where
        K: Serve<M>,
    {
        if self.error.is_some() {
            return None;
        }
        let queue = self.queues.get_mut(usize::from(q))?;
        match self.kind.serve(q, queue, mem, limit) {
            Ok(irq) => {
                if irq {
                    self.isr |= 1;
                }
                None
            }
            Err(why) => {
                self.fail(why.clone());
                Some(why)
            }
        }
    }

    /// The queues with work left by a budget (none on a stopped device).
    fn pending_queues(&self) -> impl Iterator<Item = u16> + '_
    where
        K: Model,
    {
        let stopped = self.error.is_some();
        (0u16..)
            .zip(&self.queues)
            .filter(move |(qi, q)| !stopped && self.kind.pending(*qi, q))
            .map(|(qi, _)| qi)
    }

    /// Whether a budget left work on a queue for [`Device::resume`].
    pub fn pending(&self) -> bool
    where
        K: Model,
    {
        self.pending_queues().next().is_some()
    }

    /// Serves, once more, each queue a budget left work on (as its notify would, with no
    /// new notify); the reason when the device broke.
    pub fn resume<M: GuestMem + ?Sized>(&mut self, mem: &mut M, limit: u64) -> Option<String>
    where
        K: Serve<M>,
    {
        let qs: Vec<u16> = self.pending_queues().collect();
        qs.into_iter().find_map(|qi| self.notify(qi, mem, limit))
    }

    /// Stops the device for `why` until the driver resets it.
    pub fn fail(&mut self, why: String) {
        self.status |= S_NEEDS_RESET;
        self.isr |= 2; // configuration change: the driver looks at the status
        self.error = Some(why);
    }
}
