//! virtio-net cards in the kernel (`pci net MAC`, an extension: DEVIATIONS.md):
//! a legacy virtio-net function on the in-kernel PCI bus whose BAR, rings and frames are
//! served here, with the `virtio` crate's transport and device (the code the vmx tool
//! runs), as a `guest` port of the host's switch. Frames between two VMs' cards, or
//! between a card and the hypervisor's LAN (with `switch` on the kernel command line),
//! never reach a client.
//!
//! The card's port carries its MAC (the switch drops the guest's frames from any other
//! source), follows the MAC the driver writes, is flushed when the driver resets the card
//! and leaves the switch with the card (when the VM goes). Frames queued for the port are
//! put in the guest's receive buffers before each entry ([`KDev::net_poll`]), so a guest
//! halted for its in-kernel PIC wakes when one arrives; the card's interrupt is a line of
//! that PIC.

use super::{KDev, PCI, PIC};
use crate::guestmem::GuestRam;
use crate::hw::Hw;
use crate::mem::MemMap;
use crate::ns::HostSwitch;
use crate::plan9::{quote, EBADARG};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use netswitch::{Kind, Mac, PortId};
use ninep::Error;
use virtio::legacy::{Device, Model, Serve};
use virtio::net::device::{Net, RX};
use virtio::net::port::SwitchPort;
use virtio::queue::{GuestMem, Queue};
use virtio::{DeviceStatus, Id};

/// `pci net` on a VM without the in-kernel bus or PIC.
const ENEEDS: &str = "in-kernel cards need the in-kernel pci and pic";
/// `pci net` on a host that hands no switch to the namespace.
const ENOSWITCH: &str = "no switch";

/// PCI class of a network controller (Ethernet).
const CLASS_ETHERNET: u32 = 0x02_00_00;

/// A card's port on the host switch, removed when the card goes.
struct Port {
    sw: HostSwitch,
    id: PortId,
}

impl Drop for Port {
    fn drop(&mut self) {
        let _ = self.sw.switch.lock().remove(self.id);
    }
}

/// The virtio-net model on a switch port.
struct NetKind {
    net: Net,
    port: Port,
}

impl Model for NetKind {
    fn id(&self) -> Id {
        Id::Net
    }
    fn class(&self) -> u32 {
        CLASS_ETHERNET
    }
    fn queues(&self) -> usize {
        2
    }
    fn features(&self) -> u32 {
        self.net.features()
    }
    fn config(&self) -> Vec<u8> {
        self.net.config()
    }
    /// The driver wrote the MAC: the port's address follows it (a group address is not
    /// taken: the port keeps the old one, and the card's frames from the new one drop).
    fn config_write(&mut self, off: u16, size: u8, v: u32) {
        self.net.config_write(off, size, v);
        let mut sw = self.port.sw.switch.lock();
        let _ = sw.set_mac(self.port.id, Mac(self.net.mac));
    }
    /// The driver reset the card: what waited for it at the port is gone too.
    fn reset(&mut self) {
        self.net.reset();
        self.port.sw.switch.lock().flush(self.port.id);
    }
    fn pending(&self, qi: u16, q: &Queue) -> bool {
        self.net.pending(qi, q)
    }
}

impl<M: GuestMem + ?Sized> Serve<M> for NetKind {
    fn serve(&mut self, qi: u16, q: &mut Queue, mem: &mut M, limit: u64) -> Result<bool, String> {
        let now = (self.port.sw.millis)();
        let mut done = Vec::new();
        {
            let mut sw = self.port.sw.switch.lock();
            let mut port = SwitchPort {
                switch: &mut sw,
                port: self.port.id,
                now,
            };
            self.net.serve(qi, q, mem, limit, &mut port, &mut done)?;
        }
        if done.is_empty() {
            return Ok(false);
        }
        q.put(mem, &done)?;
        Ok(q.wants_interrupt())
    }
}

/// One card: the device, and its function's index on the in-kernel bus.
pub(crate) struct Card {
    dev: Device<NetKind>,
    slot: usize,
}

impl Card {
    fn driver_ok(&self) -> bool {
        self.dev.status & DeviceStatus::DRIVER_OK.bits() != 0
    }

    /// Frames wait at the card's port.
    fn waiting(&self) -> bool {
        let p = &self.dev.kind.port;
        p.sw.switch.lock().queued(p.id) > 0
    }
}

/// Parses the arguments of `pci net MAC` after `net`.
pub(crate) fn parse(args: &[String]) -> Result<Mac, Error> {
    match args {
        [mac] => Mac::parse(mac).ok_or_else(|| EBADARG.into()),
        _ => Err(EBADARG.into()),
    }
}

impl KDev {
    /// The `pci net MAC` message: a virtio-net card served here as the next function on
    /// bus 0 (placed as [`KDev::place`] says), joined to `sw` as a guest port with
    /// address MAC.
    pub(crate) fn pci_net(
        &mut self,
        sw: Option<&HostSwitch>,
        args: &[String],
    ) -> Result<(), Error> {
        if !self.has(PCI) || !self.has(PIC) {
            return Err(ENEEDS.into());
        }
        let mac = parse(args)?;
        let sw = sw.ok_or_else(|| Error::from(ENOSWITCH))?;
        let (bar, irq) = self.place()?;
        let id = sw
            .switch
            .lock()
            .add(Kind::Guest, Some(mac))
            .map_err(|e| Error::from(e.to_string()))?;
        let port = Port { sw: sw.clone(), id };
        let mut net = Net::new(mac.0);
        net.budget = super::VIRTIO_BUDGET;
        let dev = Device::new(NetKind { net, port }, irq);
        let slot = self.pci.len();
        self.pci.add(dev.function(), u32::from(bar));
        self.nets.push(Card { dev, slot });
        Ok(())
    }

    /// The card whose function is at `slot` on the bus.
    pub(crate) fn net_at(&self, slot: usize) -> Option<usize> {
        self.nets.iter().position(|c| c.slot == slot)
    }

    /// A port access to card `i`'s BAR at offset `off`, an `out` of `val` or (None) an
    /// `in`: the value of an `in`. A queue notify serves the queue (a budget of it) at
    /// once over the VM's memory `map`.
    pub(crate) fn net_io<H: Hw>(
        &mut self,
        hw: &mut H,
        map: &MemMap,
        i: usize,
        off: u16,
        size: u8,
        val: Option<u32>,
    ) -> u32 {
        let mut mem = GuestRam::new(hw, map);
        let limit = mem.limit();
        self.net_io_in(i, off, size, val, &mut mem, limit)
    }

    /// [`KDev::net_io`] in memory `mem` ending at `limit`.
    fn net_io_in<M: GuestMem + ?Sized>(
        &mut self,
        i: usize,
        off: u16,
        size: u8,
        val: Option<u32>,
        mem: &mut M,
        limit: u64,
    ) -> u32 {
        self.counts.io += 1;
        let Some(c) = self.nets.get_mut(i) else {
            return pcdev::size_mask(size);
        };
        let v = match val {
            // A bad ring breaks the card, its reason kept in the device until the driver
            // resets it.
            Some(val) => {
                let _ = c.dev.write(off, size, val, mem, limit);
                0
            }
            None => c.dev.read(off, size),
        };
        self.board.pic.set_line(c.dev.irq, c.dev.line());
        v
    }

    /// Whether a card has frames a transmit budget left in its ring.
    pub(crate) fn net_pending(&self) -> bool {
        self.nets.iter().any(|c| c.dev.pending())
    }

    /// Whether a card is on the bus.
    pub(crate) fn has_nets(&self) -> bool {
        !self.nets.is_empty()
    }

    /// The `net` file: a line per card, `N MAC BAR IRQ PORT sent N received N dropped N
    /// STATE`, STATE `ok` or `broken` and the reason (quoted).
    pub(crate) fn net_text(&self) -> String {
        let mut s = String::new();
        for (i, c) in self.nets.iter().enumerate() {
            let bar = self.pci.functions().nth(c.slot).map_or(0, |(_, b)| b);
            let n = &c.dev.kind.net;
            let k = n.counters;
            s.push_str(&format!(
                "{i} {} {bar:#x} {} {} sent {} received {} dropped {} ",
                Mac(n.mac),
                c.dev.irq,
                c.dev.kind.port.id.0,
                k.sent,
                k.received,
                k.dropped,
            ));
            match &c.dev.error {
                None => s.push_str("ok\n"),
                Some(why) => s.push_str(&format!("broken {}\n", quote(why, true))),
            }
        }
        s
    }

    /// Puts the frames waiting at each card's port into the guest's receive buffers (in
    /// the VM's memory `map`), sends the next budget of frames a transmit notify's
    /// budget left in the ring, and raises the cards' lines for them: before each
    /// entry, so a guest halted for its PIC wakes when a frame arrives.
    pub(crate) fn net_poll<H: Hw>(&mut self, hw: &mut H, map: &MemMap) {
        if self.nets.is_empty() {
            return;
        }
        let mut mem = GuestRam::new(hw, map);
        let limit = mem.limit();
        self.net_poll_in(&mut mem, limit);
    }

    /// [`KDev::net_poll`] in memory `mem` ending at `limit`.
    fn net_poll_in<M: GuestMem + ?Sized>(&mut self, mem: &mut M, limit: u64) {
        for c in &mut self.nets {
            if c.dev.pending() {
                let _ = c.dev.resume(mem, limit);
                self.board.pic.set_line(c.dev.irq, c.dev.line());
            }
            if c.driver_ok() && c.dev.error.is_none() && c.waiting() {
                let _ = c.dev.notify(RX, mem, limit);
                self.board.pic.set_line(c.dev.irq, c.dev.line());
            }
        }
    }
}

#[cfg(test)]
mod tests;
