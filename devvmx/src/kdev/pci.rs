//! PCI configuration space in the kernel (`pci` in `devices`): 0xcf8-0xcff answered with
//! pcdev's model, the same code the vmx tool runs; and the `pci add` message, by which a
//! client puts a function of its own on the bus (its BAR's port I/O still comes to the
//! client as `io` exits, at the ports it gave even where the guest (its firmware) moved
//! the BAR). The PIIX reset (a write to 0xcf9 asking for one) goes to the
//! client as its exit, as an i8042 reset does.

use super::{KDev, PCI};
use crate::plan9::{strtoull, strtoull_whole, EBADARG};
use alloc::string::String;
use alloc::vec::Vec;
use ninep::Error;
use pcdev::pci::{Function, PORTS};
use virtio::legacy::BAR_SIZE;

/// Most functions a client may add: devices 1-31 of bus 0.
pub const MAX_FUNCTIONS: usize = 31;

/// A PCI message to a VM without the in-kernel bus.
pub(crate) const ENOPCI: &str = "no in-kernel pci";
/// The bus has [`MAX_FUNCTIONS`] functions.
pub(crate) const EBUSFULL: &str = "pci bus full";

/// Where the kernel's own functions' BARs go: the first free block of [`BAR_SIZE`] from
/// here (where firmware, and the tool, put legacy virtio BARs).
const BAR_BASE: u16 = 0xc000;
/// PIC lines for the kernel's own functions: the first one no function on the bus uses
/// (the tool's order).
const IRQS: [u8; 6] = [10, 11, 5, 9, 7, 15];

/// A hex field of exactly `digits` digits.
fn hex(s: &str, digits: usize) -> Option<u32> {
    let (v, n) = strtoull(s, 16);
    (n == digits && s.len() == digits && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some(v as u32)
}

/// `VVVV:DDDD` (lspci -n's order) as device << 16 | vendor.
fn id(s: &str) -> Option<u32> {
    let (v, d) = s.split_once(':')?;
    Some(hex(d, 4)? << 16 | hex(v, 4)?)
}

/// Parses the arguments of `pci add VVVV:DDDD CCSSPP SVVV:SDDD BARSIZE IRQ BAR`: the
/// function and the port its I/O BAR starts at.
pub(crate) fn parse_add(args: &[String]) -> Result<(Function, u32), Error> {
    let [id_, class, sub, size, irq, bar] = args else {
        return Err(EBADARG.into());
    };
    let bad = || Error::from(EBADARG);
    let num = |s: &str| strtoull_whole(s).and_then(|v| u32::try_from(v).ok());
    let f = Function {
        id: id(id_).ok_or_else(bad)?,
        class_rev: hex(class, 6).ok_or_else(bad)? << 8,
        subsystem: id(sub).ok_or_else(bad)?,
        bar_size: num(size)
            .filter(|n| n.is_power_of_two() && (4..=256).contains(n))
            .ok_or_else(bad)?,
        irq: num(irq)
            .filter(|n| *n < 16)
            .and_then(|n| u8::try_from(n).ok())
            .ok_or_else(bad)?,
    };
    let bar = num(bar)
        .filter(|b| b % f.bar_size == 0 && b + f.bar_size <= 0x1_0000 && *b != 0)
        .ok_or_else(bad)?;
    Ok((f, bar))
}

/// How the in-kernel bus takes a port access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Configuration space: answered here.
    Config,
    /// A function the kernel serves (its index on the bus), through its enabled BAR at
    /// this offset: answered here.
    Kernel(usize, u16),
    /// A client's function through its enabled BAR: the exit goes to the client with the
    /// port at the function's home (where the client added it).
    Home(u16),
    /// A port in a client's home range that no enabled BAR maps now (the guest moved it
    /// or turned decoding off): no device, answered here.
    Nothing,
    /// Not the bus's.
    No,
}

impl KDev {
    /// How the in-kernel bus takes an access to `port`.
    pub(crate) fn pci_route(&self, port: u16) -> Route {
        if !self.has(PCI) {
            return Route::No;
        }
        if PORTS.contains(&port) {
            return Route::Config;
        }
        if let Some((slot, off)) = self.pci.io_bar(port) {
            if self.disk_at(slot).is_some() || self.net_at(slot).is_some() {
                return Route::Kernel(slot, off);
            }
        }
        match self.pci.home_port(port) {
            Some(home) => Route::Home(home),
            None if self.pci.in_home(port) => Route::Nothing,
            None => Route::No,
        }
    }

    /// A port access to PCI configuration space: the value of an `in`; None when the
    /// access asked for a reset (the client's, as its exit).
    pub(crate) fn pci_io(&mut self, port: u16, size: u8, input: bool, val: u32) -> Option<u32> {
        self.counts.io += 1;
        if input {
            return Some(self.pci.read(port, size) & pcdev::size_mask(size));
        }
        self.pci.write(port, size, val & pcdev::size_mask(size));
        if self.pci.reset {
            self.pci.reset = false;
            return None;
        }
        Some(0)
    }

    /// The `pci add ...` message: the client's function as the next device on bus 0.
    pub(crate) fn pci_add(&mut self, args: &[String]) -> Result<(), Error> {
        if !self.has(PCI) {
            return Err(ENOPCI.into());
        }
        let (f, bar) = parse_add(args)?;
        if self.pci.len() >= MAX_FUNCTIONS {
            return Err(EBUSFULL.into());
        }
        self.pci.add(f, bar);
        Ok(())
    }

    /// Where the kernel's next function goes (kdev/blk.rs, kdev/net.rs): its BAR's home,
    /// the first block of [`BAR_SIZE`] from [`BAR_BASE`] that no function covers, and
    /// its line, the first of [`IRQS`] no function uses.
    pub(crate) fn place(&self) -> Result<(u16, u8), Error> {
        if self.pci.len() >= MAX_FUNCTIONS {
            return Err(EBUSFULL.into());
        }
        let used: Vec<u8> = self.pci.functions().map(|(f, _)| f.irq).collect();
        let irq = *IRQS
            .iter()
            .find(|i| !used.contains(i))
            .ok_or(Error::from("no free interrupt line"))?;
        let bar = (0..0x3ff)
            .map(|i| BAR_BASE + i * BAR_SIZE)
            .find(|b| (*b..*b + BAR_SIZE).all(|p| !self.pci.in_home(p)))
            .ok_or(Error::from("no free i/o ports"))?;
        Ok((bar, irq))
    }

    /// The `pci blk ...` message: a disk the kernel serves (kdev/blk.rs).
    pub(crate) fn pci_blk(
        &mut self,
        segs: &mut crate::segment::Segments,
        args: &[String],
        uname: &str,
    ) -> Result<(), Error> {
        if !self.has(PCI) {
            return Err(ENOPCI.into());
        }
        self.blk_add(segs, args, uname)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    fn p(s: &str) -> Result<(Function, u32), String> {
        let v: Vec<String> = s.split_whitespace().map(|w| w.to_string()).collect();
        parse_add(&v).map_err(|e| e.as_str().into())
    }

    #[test]
    fn add_lines() {
        assert_eq!(
            p("1af4:1001 010000 1af4:0002 64 10 0xc000"),
            Ok((
                Function {
                    id: 0x1001_1af4,
                    class_rev: 0x0100_0000,
                    subsystem: 0x0002_1af4,
                    bar_size: 64,
                    irq: 10,
                },
                0xc000
            ))
        );
        // The tool's line for a function parses back to it.
        let f = Function {
            id: 0x1000_1af4,
            class_rev: 0x0200_0000,
            subsystem: 0x0001_1af4,
            bar_size: 32,
            irq: 11,
        };
        assert_eq!(p(&f.add_args(0xc040)), Ok((f, 0xc040)));
        for bad in [
            "",
            "1af4:1001 010000 1af4:0002 64 10",
            "1af4:1001 010000 1af4:0002 64 10 0xc000 x",
            "1af41001 010000 1af4:0002 64 10 0xc000",
            "1af4:100 010000 1af4:0002 64 10 0xc000",
            "1af4:1001 0100 1af4:0002 64 10 0xc000",
            "1af4:1001 010000 1af4:0002 48 10 0xc000",
            "1af4:1001 010000 1af4:0002 512 10 0xc000",
            "1af4:1001 010000 1af4:0002 64 16 0xc000",
            "1af4:1001 010000 1af4:0002 64 10 0xc010",
            "1af4:1001 010000 1af4:0002 64 10 0xffe0",
            "1af4:1001 010000 1af4:0002 64 10 0",
            "+af4:1001 010000 1af4:0002 64 10 0xc000",
        ] {
            assert_eq!(p(bad), Err(EBADARG.into()), "{bad}");
        }
    }
}
