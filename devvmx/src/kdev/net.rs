//! virtio-net cards in the kernel (`pci net MAC IRQ BAR`, an extension: DEVIATIONS.md):
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
use crate::ns::HostSwitch;
use crate::plan9::{strtoull_whole, EBADARG};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use netswitch::{Kind, Mac, PortId};
use ninep::Error;
use virtio::legacy::{Device, Model, Serve, BAR_SIZE};
use virtio::net::device::{Net, RX};
use virtio::net::port::SwitchPort;
use virtio::queue::{GuestMem, Queue};
use virtio::{DeviceStatus, Id};

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

/// One card: the device, and the function's home BAR on the in-kernel bus.
pub(crate) struct Card {
    dev: Device<NetKind>,
    /// Where the card was added (its BAR's home); accesses come as offsets from it.
    home: u16,
}

/// Parses the arguments of `pci net MAC IRQ BAR` after `net`: the MAC, the PIC line
/// and the I/O BAR's port (a multiple of the BAR's size).
pub(crate) fn parse(args: &[String]) -> Result<(Mac, u8, u16), Error> {
    let [mac, irq, bar] = args else {
        return Err(EBADARG.into());
    };
    let bad = || Error::from(EBADARG);
    let mac = Mac::parse(mac).ok_or_else(bad)?;
    let irq = strtoull_whole(irq)
        .filter(|n| *n < 16)
        .and_then(|n| u8::try_from(n).ok())
        .ok_or_else(bad)?;
    let size = u64::from(BAR_SIZE);
    let bar = strtoull_whole(bar)
        .filter(|b| *b != 0 && b % size == 0 && b + size <= 0x1_0000)
        .and_then(|b| u16::try_from(b).ok())
        .ok_or_else(bad)?;
    Ok((mac, irq, bar))
}

impl Card {
    /// The PCI line the card raises.
    fn irq(&self) -> u8 {
        self.dev.irq
    }

    fn driver_ok(&self) -> bool {
        self.dev.status & DeviceStatus::DRIVER_OK.bits() != 0
    }
}

impl KDev {
    /// The `pci net MAC IRQ BAR` message: a virtio-net card served here as the next
    /// function on bus 0, joined to `sw` as a guest port with address MAC.
    pub(crate) fn pci_net(
        &mut self,
        sw: Option<&HostSwitch>,
        args: &[String],
    ) -> Result<(), Error> {
        if !self.has(PCI) {
            return Err("no in-kernel pci".into());
        }
        if !self.has(PIC) {
            return Err("no in-kernel pic".into());
        }
        let (mac, irq, bar) = parse(args)?;
        let sw = sw.ok_or_else(|| Error::from("no switch"))?;
        if self.pci.len() >= super::pci::MAX_FUNCTIONS {
            return Err("pci bus full".into());
        }
        let id = sw
            .switch
            .lock()
            .add(Kind::Guest, Some(mac))
            .map_err(|e| Error::from(e.to_string()))?;
        let port = Port { sw: sw.clone(), id };
        let dev = Device::new(
            NetKind {
                net: Net::new(mac.0),
                port,
            },
            irq,
        );
        self.pci.add(dev.function(), u32::from(bar));
        self.nets.push(Card { dev, home: bar });
        Ok(())
    }

    /// The card whose BAR's home holds `home`, and the offset in it.
    fn card_at(&mut self, home: u16) -> Option<(&mut Card, u16)> {
        self.nets.iter_mut().find_map(|c| {
            let off = home.checked_sub(c.home)?;
            (off < BAR_SIZE).then_some((c, off))
        })
    }

    /// Whether `home` (a port of a function's home, [`super::Route::Home`]) is a card's.
    pub(crate) fn is_net(&self, home: u16) -> bool {
        self.nets
            .iter()
            .any(|c| home.checked_sub(c.home).is_some_and(|o| o < BAR_SIZE))
    }

    /// A port access to a card's BAR at its home port `home`: the value of an `in`. A
    /// queue notify serves the queue from guest memory `mem` (ending at `limit`) at once.
    pub(crate) fn net_io<M: GuestMem + ?Sized>(
        &mut self,
        home: u16,
        size: u8,
        input: bool,
        val: u32,
        mem: &mut M,
        limit: u64,
    ) -> u32 {
        self.counts.io += 1;
        let Some((c, off)) = self.card_at(home) else {
            return pcdev::size_mask(size);
        };
        let v = if input {
            c.dev.read(off, size)
        } else {
            // A bad ring breaks the card, with its reason kept in the device until the
            // driver resets it.
            let _ = c.dev.write(off, size, val, mem, limit);
            0
        };
        let (irq, line) = (c.irq(), c.dev.line());
        self.board.pic.set_line(irq, line);
        v
    }

    /// Puts frames waiting at each card's port into the guest's receive buffers, and
    /// raises the cards' lines for them: before each entry, so a halted guest wakes.
    pub(crate) fn net_poll<M: GuestMem + ?Sized>(&mut self, mem: &mut M, limit: u64) {
        for c in &mut self.nets {
            if !c.driver_ok() || c.dev.error.is_some() {
                continue;
            }
            let waiting = {
                let k = &c.dev.kind;
                k.port.sw.switch.lock().queued(k.port.id) > 0
            };
            if waiting {
                let _ = c.dev.notify(RX, mem, limit);
            }
            self.board.pic.set_line(c.dev.irq, c.dev.line());
        }
    }

    /// Whether any card is on this VM's bus.
    pub(crate) fn has_nets(&self) -> bool {
        !self.nets.is_empty()
    }
}

#[cfg(test)]
mod tests;
