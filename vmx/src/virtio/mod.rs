//! Legacy (0.9.5) virtio PCI devices, as vmx(1)'s virtio.c offers them to guests: each
//! one a PCI function (vendor 0x1af4, device 0x1000 + type - 1, revision 0) with its
//! registers in an I/O BAR and its interrupt on the PIC line its configuration space
//! reports. Queue memory is the guest's, reached over 9P through [`Mem`].
//!
//! The devices are the tool's, as is the PCI configuration space they appear in (ports
//! 0xcf8-0xcff): one view of the bus, whatever else moves into the hypervisor.

pub mod blk;
pub mod net;
pub mod queue;
pub mod testing;

use crate::dev::pci::{Function, Pci};
use ::virtio::pci::{modern_id, transitional_id, VENDOR};
use ::virtio::{DeviceStatus, Id};
pub use queue::Mem;
use queue::Queue;

/// Entries per queue (the table and available ring are read whole on each notify).
pub const QUEUE_SIZE: u16 = 128;
/// Where the BIOS would have put the devices' I/O BARs, one block of [`BAR_SIZE`] each.
pub const IO_BASE: u16 = 0xc000;
pub const BAR_SIZE: u16 = 0x40;
/// PIC lines for the devices, in order (those no legacy device uses).
pub const IRQS: [u8; 6] = [10, 11, 5, 9, 7, 15];

/// Legacy register block offsets (without MSI-X).
const R_HOST_FEATURES: u16 = 0x00;
const R_GUEST_FEATURES: u16 = 0x04;
const R_QUEUE_PFN: u16 = 0x08;
const R_QUEUE_SIZE: u16 = 0x0c;
const R_QUEUE_SEL: u16 = 0x0e;
const R_QUEUE_NOTIFY: u16 = 0x10;
const R_STATUS: u16 = 0x12;
const R_ISR: u16 = 0x13;
const R_CONFIG: u16 = 0x14;

/// Set by the device when it stopped for a bad request (virtio 1.0's DEVICE_NEEDS_RESET).
pub const S_NEEDS_RESET: u8 = DeviceStatus::DEVICE_NEEDS_RESET.bits();

pub enum Kind {
    Blk(blk::Blk),
    Net(net::Net),
}

impl Kind {
    /// Virtio device type.
    fn id(&self) -> Id {
        match self {
            Kind::Blk(_) => Id::Block,
            Kind::Net(_) => Id::Net,
        }
    }
    /// PCI class code (base, sub, interface).
    fn class(&self) -> u32 {
        match self {
            Kind::Blk(_) => 0x01_00_00,
            Kind::Net(_) => 0x02_00_00,
        }
    }
    fn queues(&self) -> usize {
        match self {
            Kind::Blk(_) => 1,
            Kind::Net(_) => 2,
        }
    }
    fn features(&self) -> u32 {
        match self {
            Kind::Blk(b) => b.features(),
            Kind::Net(n) => n.features(),
        }
    }
    fn config(&self) -> Vec<u8> {
        match self {
            Kind::Blk(b) => b.config(),
            Kind::Net(n) => n.config(),
        }
    }
}

/// One device and its legacy transport state.
pub struct Device {
    pub kind: Kind,
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

impl Device {
    pub fn new(kind: Kind, irq: u8) -> Device {
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

    /// The PCI function the device appears as.
    /// A legacy device shows its transitional id (every type served here has one).
    pub fn function(&self) -> Function {
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

    fn reset(&mut self) {
        for q in &mut self.queues {
            q.reset();
        }
        self.guest_features = 0;
        self.sel = 0;
        self.status = 0;
        self.isr = 0;
        self.error = None;
        if let Kind::Net(n) = &mut self.kind {
            n.reset();
        }
    }

    fn regs(&self) -> Vec<u8> {
        let q = self.queues.get(usize::from(self.sel));
        let mut r = Vec::with_capacity(64);
        debug_assert_eq!(r.len(), usize::from(R_HOST_FEATURES));
        r.extend_from_slice(&self.kind.features().to_le_bytes());
        r.extend_from_slice(&self.guest_features.to_le_bytes());
        r.extend_from_slice(&q.map_or(0, |q| q.pfn).to_le_bytes());
        debug_assert_eq!(r.len(), usize::from(R_QUEUE_SIZE));
        r.extend_from_slice(&q.map_or(0, |q| q.size).to_le_bytes());
        r.extend_from_slice(&self.sel.to_le_bytes());
        r.extend_from_slice(&[0, 0, self.status, self.isr]);
        debug_assert_eq!(r.len(), usize::from(R_CONFIG));
        r.extend_from_slice(&self.kind.config());
        r
    }

    /// An `in` of `size` bytes at `off` in the BAR. Reading the ISR clears it.
    pub fn read(&mut self, off: u16, size: u8) -> u32 {
        let r = self.regs();
        let mut v = 0u32;
        for i in (0..u16::from(size)).rev() {
            let b = r.get(usize::from(off + i)).copied().unwrap_or(0xff);
            v = v << 8 | u32::from(b);
        }
        if (off..off + u16::from(size)).contains(&R_ISR) {
            self.isr = 0;
        }
        v
    }

    /// An `out` to the BAR; a queue notify serves the queue at once (the guest is
    /// stopped, so its memory holds still). Returns a warning when the device broke.
    pub fn write(
        &mut self,
        off: u16,
        size: u8,
        v: u32,
        mem: &mut dyn Mem,
        limit: u64,
    ) -> Option<String> {
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
            (o, _) if o >= R_CONFIG => {
                if let Kind::Net(n) = &mut self.kind {
                    n.config_write(o - R_CONFIG, size, v);
                }
            }
            _ => {}
        }
        None
    }

    /// Serves queue `q` (its notify, or new work from the host side for a network
    /// device's receive queue).
    pub fn notify(&mut self, q: u16, mem: &mut dyn Mem, limit: u64) -> Option<String> {
        if self.error.is_some() || usize::from(q) >= self.queues.len() {
            return None;
        }
        match self.serve(q, mem, limit) {
            Ok(()) => None,
            Err(why) => {
                self.status |= S_NEEDS_RESET;
                self.isr |= 2; // configuration change: the driver looks at the status
                self.error = Some(why.clone());
                Some(why)
            }
        }
    }

    fn serve(&mut self, qi: u16, mem: &mut dyn Mem, limit: u64) -> Result<(), String> {
        let q = &mut self.queues[usize::from(qi)];
        let mut done = Vec::new();
        match &mut self.kind {
            Kind::Blk(b) => {
                let chains = q.take(mem, limit)?;
                for c in &chains {
                    let n = b.serve(c, mem).inspect_err(|e| {
                        q.broken = Some(e.clone());
                    })?;
                    done.push((c.head, n));
                }
            }
            Kind::Net(n) => n.serve(qi, q, mem, limit, &mut done)?,
        }
        if !done.is_empty() {
            q.put(mem, &done)?;
            if q.wants_interrupt() {
                self.isr |= 1;
            }
        }
        Ok(())
    }
}

/// The tool's virtio devices, registered as PCI functions in slot order.
pub struct Bus {
    pub devs: Vec<Device>,
    /// The end of guest memory: no buffer may reach past it.
    pub limit: u64,
}

impl Bus {
    pub fn new(limit: u64) -> Bus {
        Bus {
            devs: Vec::new(),
            limit,
        }
    }

    /// Adds a device on the next free line; Err when the lines are used up.
    pub fn add(&mut self, kind: Kind) -> Result<(), String> {
        let irq = *IRQS.get(self.devs.len()).ok_or_else(|| {
            format!(
                "too many virtio devices (at most {}: one PIC line each)",
                IRQS.len()
            )
        })?;
        self.devs.push(Device::new(kind, irq));
        Ok(())
    }

    /// Puts every device on the PCI bus, with its BAR where firmware would have put it.
    pub fn attach(&self, pci: &mut Pci) {
        for (i, d) in self.devs.iter().enumerate() {
            pci.add(d.function(), Self::bar(i));
        }
    }

    fn bar(i: usize) -> u32 {
        u32::from(IO_BASE + BAR_SIZE * i as u16)
    }

    /// Puts every device on the hypervisor's PCI bus (`pci add`), at the BARs
    /// [`Bus::attach`] gives them here: their port I/O still comes here as exits.
    pub fn kernel_pci(&self, vm: &mut dyn crate::vmfs::Vmfs) -> Result<(), String> {
        for (i, d) in self.devs.iter().enumerate() {
            vm.ctl(&format!("pci add {}", d.function().add_args(Self::bar(i))))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::testing::{Driver, Ram};

    fn blk_device() -> Device {
        let disk: Vec<u8> = (0..4096u32).map(|i| (i / 512) as u8).collect();
        Device::new(Kind::Blk(blk::Blk::new(Box::new(disk), false, "d0")), 10)
    }

    #[test]
    fn legacy_registers_and_a_request() {
        let mut d = blk_device();
        let mut ram = Ram::new(1 << 20);
        let lim = 1 << 20;
        assert_eq!(d.read(R_HOST_FEATURES, 4), blk::F_FLUSH);
        assert_eq!(d.read(R_QUEUE_SIZE, 2), u32::from(QUEUE_SIZE));
        assert_eq!(d.read(R_CONFIG, 4), 8); // capacity: 8 sectors
        assert_eq!(d.read(R_CONFIG + 4, 4), 0);
        d.write(R_STATUS, 1, 1 | 2, &mut ram, lim);
        d.write(R_GUEST_FEATURES, 4, 0xffff_ffff, &mut ram, lim);
        assert_eq!(d.read(R_GUEST_FEATURES, 4), blk::F_FLUSH);
        d.write(R_QUEUE_SEL, 2, 0, &mut ram, lim);
        d.write(R_QUEUE_PFN, 4, 16, &mut ram, lim);
        assert_eq!(d.read(R_QUEUE_PFN, 4), 16);
        d.write(R_QUEUE_SEL, 2, 1, &mut ram, lim);
        assert_eq!(d.read(R_QUEUE_SIZE, 2), 0); // no second queue
        d.write(R_STATUS, 1, 7, &mut ram, lim);
        assert_eq!(d.read(R_STATUS, 1), 7);

        let mut drv = Driver::new(QUEUE_SIZE, 16);
        ram.b[0x1000] = 0; // T_IN
        ram.b[0x1008] = 3; // sector 3
        drv.offer(
            &mut ram,
            &[(0x1000, 16, false), (0x2000, 512, true), (0x3000, 1, true)],
        );
        assert_eq!(d.write(R_QUEUE_NOTIFY, 2, 0, &mut ram, lim), None);
        assert_eq!(ram.b[0x2000..0x2200], [3u8; 512]);
        assert_eq!(ram.b[0x3000], 0);
        assert_eq!(drv.used_idx(&ram), 1);
        assert!(d.line());
        // Reading the ISR (a byte, or within a wider read) lowers the line.
        assert_eq!(d.read(R_STATUS, 2), 7 | 1 << 8);
        assert!(!d.line());
        assert_eq!(d.read(R_ISR, 1), 0);
    }

    #[test]
    fn a_bad_chain_stops_the_device_until_reset() {
        let mut d = blk_device();
        let mut ram = Ram::new(1 << 20);
        let lim = 1 << 20;
        d.write(R_QUEUE_PFN, 4, 16, &mut ram, lim);
        d.write(R_STATUS, 1, 7, &mut ram, lim);
        let mut drv = Driver::new(QUEUE_SIZE, 16);
        drv.offer(&mut ram, &[(0xfff00, 0x1000, true)]);
        let w = d.write(R_QUEUE_NOTIFY, 2, 0, &mut ram, lim).unwrap();
        assert!(w.contains("past the end of guest memory"), "{w}");
        assert_eq!(d.read(R_STATUS, 1), u32::from(7 | S_NEEDS_RESET));
        assert!(d.line());
        // Further notifies do nothing.
        assert_eq!(d.write(R_QUEUE_NOTIFY, 2, 0, &mut ram, lim), None);
        assert_eq!(drv.used_idx(&ram), 0);
        // A reset brings it back.
        d.write(R_STATUS, 1, 0, &mut ram, lim);
        assert_eq!(d.read(R_STATUS, 1), 0);
        assert!(d.error.is_none() && d.queues[0].pfn == 0);
        // A request without a status byte breaks it too; notify of a queue that does not
        // exist is ignored.
        d.write(R_QUEUE_PFN, 4, 16, &mut ram, lim);
        let mut drv = Driver::new(QUEUE_SIZE, 16);
        drv.offer(&mut ram, &[(0x1000, 16, false)]);
        assert_eq!(d.write(R_QUEUE_NOTIFY, 2, 5, &mut ram, lim), None);
        assert!(d.write(R_QUEUE_NOTIFY, 2, 0, &mut ram, lim).is_some());
    }

    #[test]
    fn bus_lines_and_pci_functions() {
        let mut bus = Bus::new(1 << 20);
        for _ in 0..IRQS.len() {
            bus.add(Kind::Blk(blk::Blk::new(
                Box::new(vec![0u8; 512]),
                true,
                "x",
            )))
            .unwrap();
        }
        assert!(bus
            .add(Kind::Blk(blk::Blk::new(Box::new(vec![]), true, "y")))
            .is_err());
        let mut pci = Pci::new();
        bus.attach(&mut pci);
        // 00:01.0 is the first disk: virtio-blk, its BAR and line.
        pci.write(0xcf8, 4, 0x8000_0800);
        assert_eq!(pci.read(0xcfc, 4), 0x1001_1af4);
        pci.write(0xcf8, 4, 0x8000_0810);
        assert_eq!(pci.read(0xcfc, 4), u32::from(IO_BASE) | 1);
        pci.write(0xcf8, 4, 0x8000_083c);
        assert_eq!(pci.read(0xcfc, 2), 0x010a);
        // I/O decoding is off until the driver enables it.
        assert_eq!(pci.io_bar(IO_BASE + 0x12), None);
        pci.write(0xcf8, 4, 0x8000_0804);
        pci.write(0xcfc, 2, 1);
        assert_eq!(pci.io_bar(IO_BASE + 0x12), Some((0, 0x12)));
    }
}
