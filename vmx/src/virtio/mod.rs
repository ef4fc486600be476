//! The tool's legacy (0.9.5) virtio PCI devices, as vmx(1)'s virtio.c offers them to
//! guests. The transport (registers, queues, the PCI function each appears as) and the
//! block device are the `virtio` crate's ([`::virtio::legacy`], [`::virtio::blk`]),
//! shared with the kernel; here are the device kinds the tool serves, their BARs and
//! lines, and guest memory reached over 9P through [`Mem`].

pub mod blk;
pub mod net;
pub mod queue;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use crate::dev::pci::Pci;
pub use ::virtio::legacy::{self, Model, Serve, BAR_SIZE, QUEUE_SIZE, S_NEEDS_RESET};
use ::virtio::Id;
pub use queue::Mem;
use queue::Queue;

/// Where the BIOS would have put the devices' I/O BARs, one block of [`BAR_SIZE`] each.
pub const IO_BASE: u16 = 0xc000;
/// PIC lines for the devices, in order (those no legacy device uses).
pub const IRQS: [u8; 6] = [10, 11, 5, 9, 7, 15];

pub enum Kind {
    Blk(blk::Blk),
    Net(net::Net),
}

impl Model for Kind {
    fn id(&self) -> Id {
        match self {
            Kind::Blk(_) => Id::Block,
            Kind::Net(_) => Id::Net,
        }
    }
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
    fn config_write(&mut self, off: u16, size: u8, v: u32) {
        if let Kind::Net(n) = self {
            n.config_write(off, size, v);
        }
    }
    fn reset(&mut self) {
        if let Kind::Net(n) = self {
            n.reset();
        }
    }
}

impl<'a> Serve<dyn Mem + 'a> for Kind {
    fn serve(
        &mut self,
        qi: u16,
        q: &mut Queue,
        mem: &mut (dyn Mem + 'a),
        limit: u64,
    ) -> Result<bool, String> {
        match self {
            Kind::Blk(b) => b.serve_queue(q, mem, limit),
            Kind::Net(n) => {
                let mut done = Vec::new();
                n.serve(qi, q, mem, limit, &mut done)?;
                if done.is_empty() {
                    return Ok(false);
                }
                q.put(mem, &done)?;
                Ok(q.wants_interrupt())
            }
        }
    }
}

/// One device and its legacy transport state.
pub type Device = ::virtio::legacy::Device<Kind>;

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
    use ::virtio::legacy::{
        R_CONFIG, R_GUEST_FEATURES, R_HOST_FEATURES, R_ISR, R_QUEUE_NOTIFY, R_QUEUE_PFN,
        R_QUEUE_SEL, R_QUEUE_SIZE, R_STATUS,
    };

    fn blk_device() -> Device {
        let disk: Vec<u8> = (0..4096u32).map(|i| (i / 512) as u8).collect();
        Device::new(Kind::Blk(blk::Blk::new(Box::new(disk), false, "d0")), 10)
    }

    #[test]
    fn legacy_registers_and_a_request() {
        let mut d = blk_device();
        let mut ram = Ram::new(1 << 20);
        let lim = 1 << 20;
        assert_eq!(
            d.read(R_HOST_FEATURES, 4),
            blk::F_FLUSH | blk::F_SEG_MAX | blk::F_TOPOLOGY
        );
        assert_eq!(d.read(R_QUEUE_SIZE, 2), u32::from(QUEUE_SIZE));
        assert_eq!(d.read(R_CONFIG, 4), 8); // capacity: 8 sectors
        assert_eq!(d.read(R_CONFIG + 4, 4), 0);
        assert_eq!(d.read(R_CONFIG + 12, 4), blk::SEG_MAX);
        d.write(R_STATUS, 1, 1 | 2, &mut ram, lim);
        d.write(R_GUEST_FEATURES, 4, 0xffff_ffff, &mut ram, lim);
        assert_eq!(
            d.read(R_GUEST_FEATURES, 4),
            blk::F_FLUSH | blk::F_SEG_MAX | blk::F_TOPOLOGY
        );
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
