//! PCI configuration mechanism #1 (0xcf8 address, 0xcfc-0xcff data) with an i440FX host
//! bridge at 00:00.0 and the functions devices add (00:01.0, 00:02.0, ...: the virtio
//! devices, each with one I/O BAR and an INTA line); and the PIIX reset control register
//! at 0xcf9. The host bridge keeps the i440FX PAM registers (0x59-0x5f) as stored bytes
//! (SeaBIOS writes them to shadow its ROM); nothing acts on them here.
//!
//! One model for both sides: the vmx tool runs it in user space, the kernel for the VMs
//! that ask for `pci` in their `devices`.

use alloc::vec::Vec;

/// A type-0 function with one I/O BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    /// Device ID << 16 | vendor ID.
    pub id: u32,
    /// Class code << 8 | revision.
    pub class_rev: u32,
    /// Subsystem ID << 16 | subsystem vendor ID.
    pub subsystem: u32,
    /// Bytes of the I/O BAR (a power of two).
    pub bar_size: u32,
    /// The PIC line of INTA (the interrupt line register).
    pub irq: u8,
}

/// PCI configuration mechanism #1's ports, the PIIX reset control register among them.
pub const PORTS: core::ops::RangeInclusive<u16> = 0xcf8..=0xcff;

/// The host bridge's first PAM register (config offset) and how many there are.
pub const PAM_FIRST: u32 = 0x59;
const PAM_LEN: usize = 7;

impl Function {
    /// The arguments of devvmx's `pci add` message for this function with its I/O BAR at
    /// `bar`: `VVVV:DDDD CCSSPP SVVV:SDDD BARSIZE IRQ BAR` (revision 0).
    pub fn add_args(&self, bar: u32) -> alloc::string::String {
        alloc::format!(
            "{:04x}:{:04x} {:06x} {:04x}:{:04x} {} {} {:#x}",
            self.id & 0xffff,
            self.id >> 16,
            self.class_rev >> 8,
            self.subsystem & 0xffff,
            self.subsystem >> 16,
            self.bar_size,
            self.irq,
            bar
        )
    }
}

#[derive(Clone, Debug)]
struct Slot {
    f: Function,
    command: u16,
    bar: u32,
    /// Where the BAR was when added: its home, where a client serving the function
    /// elsewhere decodes it.
    home: u32,
}

#[derive(Clone, Debug, Default)]
pub struct Pci {
    addr: u32,
    /// Host bridge command register (the only writable field).
    command: u16,
    /// The guest asked for a reset through 0xcf9.
    pub reset: bool,
    rcr: u8,
    /// The PAM registers, config bytes 0x59-0x5f of the host bridge.
    pam: [u8; PAM_LEN],
    /// Devices 1, 2, ... on bus 0.
    slots: Vec<Slot>,
}

impl Pci {
    pub fn new() -> Pci {
        Pci::default()
    }

    /// Adds a function as the next device, its BAR at `bar` (as firmware assigns it).
    pub fn add(&mut self, f: Function, bar: u32) {
        let bar = bar & !(f.bar_size - 1);
        self.slots.push(Slot {
            f,
            command: 0,
            bar,
            home: bar,
        });
    }

    /// Every function decodes its I/O BAR where it was added: for a client whose
    /// functions sit on a bus served elsewhere (the kernel's, `pci add`), so the guest's
    /// command register writes do not reach it.
    pub fn enable_io(&mut self) {
        for s in &mut self.slots {
            s.command |= 1;
        }
    }

    /// The functions in the order added, each with its BAR.
    pub fn functions(&self) -> impl Iterator<Item = (Function, u32)> + '_ {
        self.slots.iter().map(|s| (s.f, s.bar))
    }

    /// For functions served elsewhere: the port in the function's home (its BAR where it
    /// was added) that an access to `port` through an enabled BAR stands for, wherever
    /// the guest has moved the BAR.
    pub fn home_port(&self, port: u16) -> Option<u16> {
        let (i, off) = self.io_bar(port)?;
        u16::try_from(self.slots[i].home + u32::from(off)).ok()
    }

    /// Whether `port` lies in some function's home range.
    pub fn in_home(&self, port: u16) -> bool {
        let p = u32::from(port);
        self.slots
            .iter()
            .any(|s| (s.home..s.home + s.f.bar_size).contains(&p))
    }

    /// How many functions were added.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// No function was added.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The function (in the order added) whose enabled I/O BAR holds `port`, and the
    /// offset in it.
    pub fn io_bar(&self, port: u16) -> Option<(usize, u16)> {
        let p = u32::from(port);
        self.slots
            .iter()
            .position(|s| {
                s.command & 1 != 0
                    && s.bar != 0
                    && s.bar
                        .checked_add(s.f.bar_size)
                        .is_some_and(|end| (s.bar..end).contains(&p))
            })
            .map(|i| (i, (p - self.slots[i].bar) as u16))
    }

    fn slot_read(s: &Slot, reg: u32) -> u32 {
        match reg {
            0x00 => s.f.id,
            0x04 => u32::from(s.command),
            0x08 => s.f.class_rev,
            0x0c => 0,
            0x10 => s.bar | 1,
            0x2c => s.f.subsystem,
            0x3c => u32::from(s.f.irq) | 1 << 8, // INTA
            _ => 0,
        }
    }

    fn config_read(&self, bus: u32, dev: u32, func: u32, reg: u32) -> u32 {
        if bus != 0 || func != 0 {
            return 0xffff_ffff;
        }
        if dev != 0 {
            return match self.slots.get(dev as usize - 1) {
                Some(s) => Self::slot_read(s, reg),
                None => 0xffff_ffff,
            };
        }
        match reg {
            0x00 => 0x1237_8086,                            // i440FX
            0x04 => u32::from(self.command) | 0x0280 << 16, // status: fast b2b, medium devsel
            0x08 => 0x0600_0002,                            // host bridge, revision 2
            0x0c => 0x0000_0000,                            // header type 0, single function
            r if (PAM_FIRST & !3..PAM_FIRST + PAM_LEN as u32).contains(&r) => {
                (0..4).fold(0, |v, i| v | u32::from(self.pam_byte(r + i)) << (8 * i))
            }
            _ => 0,
        }
    }

    /// The PAM register at config offset `off` (0 outside 0x59-0x5f).
    pub fn pam_byte(&self, off: u32) -> u8 {
        off.checked_sub(PAM_FIRST)
            .and_then(|i| self.pam.get(i as usize))
            .copied()
            .unwrap_or(0)
    }

    pub fn read(&mut self, port: u16, size: u8) -> u32 {
        match (port, size) {
            (0xcf8, 4) => self.addr,
            (0xcf9, 1) => u32::from(self.rcr),
            (0xcfc..=0xcff, _) if self.addr & 1 << 31 != 0 => {
                let a = self.addr;
                let v = self.config_read(a >> 16 & 0xff, a >> 11 & 0x1f, a >> 8 & 7, a & 0xfc);
                let shift = u32::from(port & 3) * 8;
                let v = v >> shift;
                match size {
                    1 => v & 0xff,
                    2 => v & 0xffff,
                    _ => v,
                }
            }
            _ => 0xffff_ffff,
        }
    }

    pub fn write(&mut self, port: u16, size: u8, v: u32) {
        match (port, size) {
            (0xcf8, 4) => self.addr = v & 0x80ff_fffc,
            (0xcf9, 1) => {
                self.rcr = v as u8 & 0x0e;
                if v & 0x04 != 0 {
                    self.reset = true;
                }
            }
            // The host bridge's command register and PAM bytes take writes.
            (0xcfc, 2 | 4) if self.addr & 0x80ff_fffc == 0x8000_0004 => {
                self.command = v as u16 & 0x0147;
            }
            (0xcfc..=0xcff, _) if self.addr & 0x80ff_ff00 == 0x8000_0000 => {
                let base = (self.addr & 0xfc) + u32::from(port & 3);
                for i in 0..u32::from(size.min(4)) {
                    if let Some(b) = base
                        .checked_sub(PAM_FIRST)
                        .and_then(|j| self.pam.get_mut((j + i) as usize))
                    {
                        *b = (v >> (8 * i)) as u8;
                    }
                }
            }
            // A function's command register (I/O decoding, bus master) and BAR.
            (0xcfc, 2 | 4) if self.addr & 0x80ff_0000 == 0x8000_0000 => {
                let (dev, reg) = (self.addr >> 11 & 0x1f, self.addr & 0x7fc);
                if dev == 0 || reg & 0x700 != 0 {
                    return;
                }
                let Some(s) = self.slots.get_mut(dev as usize - 1) else {
                    return;
                };
                match reg {
                    0x04 => s.command = v as u16 & 0x0105,
                    // All 32 bits kept, as QEMU's BARs do: firmware sizes a BAR by
                    // writing all ones and reading back 0xffff_ffc1 (SeaBIOS takes
                    // 0x0000_ffc1 for a 4 GiB-sized one and gives up); addresses above
                    // 0xffff then decode no port.
                    0x10 if size == 4 => {
                        s.bar = v & !(s.f.bar_size - 1);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_bridge_only() {
        let mut p = Pci::new();
        p.write(0xcf8, 4, 0x8000_0000);
        assert_eq!(p.read(0xcf8, 4), 0x8000_0000);
        assert_eq!(p.read(0xcfc, 4), 0x1237_8086);
        assert_eq!(p.read(0xcfe, 2), 0x1237);
        p.write(0xcf8, 4, 0x8000_0008);
        assert_eq!(p.read(0xcff, 1), 0x06);
        p.write(0xcf8, 4, 0x8000_0800); // device 1
        assert_eq!(p.read(0xcfc, 4), 0xffff_ffff);
        assert_eq!(p.read(0xcfc, 2), 0xffff);
        p.write(0xcf8, 4, 0x8000_0004);
        p.write(0xcfc, 2, 0x0006);
        assert_eq!(p.read(0xcfc, 2), 0x0006);
        p.write(0xcf8, 4, 0); // disabled
        assert_eq!(p.read(0xcfc, 4), 0xffff_ffff);
        assert!(!p.reset);
        p.write(0xcf9, 1, 0x06);
        assert!(p.reset);
    }

    /// An I/O BAR sized as firmware does: all ones written, the size's mask read back
    /// in all 32 bits; then placed where firmware puts it, and decoding there.
    #[test]
    fn io_bar_sizing() {
        let mut p = Pci::new();
        let f = Function {
            id: 0x1001_1af4,
            class_rev: 0x0100_0000,
            subsystem: 0x0002_1af4,
            bar_size: 64,
            irq: 11,
        };
        p.add(f, 0x1000);
        p.write(0xcf8, 4, 0x8000_0810);
        p.write(0xcfc, 4, 0xffff_ffff);
        assert_eq!(p.read(0xcfc, 4), 0xffff_ffc1);
        p.write(0xcf8, 4, 0x8000_0804);
        p.write(0xcfc, 2, 1);
        assert_eq!(p.io_bar(0xffff), None); // decoding on while sized: no port, no overflow
        p.write(0xcfc, 2, 0);
        p.write(0xcf8, 4, 0x8000_0810);
        p.write(0xcfc, 4, 0xc000);
        assert_eq!(p.read(0xcfc, 4), 0xc001);
        p.write(0xcf8, 4, 0x8000_0804);
        p.write(0xcfc, 2, 1);
        assert_eq!(p.io_bar(0xc004), Some((0, 4)));
        assert_eq!(p.io_bar(0x1004), None);
    }

    #[test]
    fn a_moved_bar_still_names_its_home_port() {
        let mut p = Pci::new();
        let f = Function {
            id: 0x1001_1af4,
            class_rev: 0x0100_0000,
            subsystem: 0x0002_1af4,
            bar_size: 0x40,
            irq: 10,
        };
        p.add(f, 0xc000);
        assert_eq!(p.home_port(0xc010), None); // I/O decoding off
        p.write(0xcf8, 4, 0x8000_0810);
        p.write(0xcfc, 4, 0xd000);
        p.write(0xcf8, 4, 0x8000_0804);
        p.write(0xcfc, 2, 1);
        assert_eq!(p.home_port(0xd010), Some(0xc010));
        assert_eq!(p.home_port(0xc010), None);
        assert!(p.in_home(0xc03f) && !p.in_home(0xc040) && !p.in_home(0xd000));
        assert_eq!(p.functions().next(), Some((f, 0xd000)));
    }

    #[test]
    fn pam_registers_keep_what_firmware_writes() {
        let mut p = Pci::new();
        p.write(0xcf8, 4, 0x8000_0058);
        assert_eq!(p.read(0xcfc, 4), 0);
        p.write(0xcfd, 1, 0x30); // 0x59
        p.write(0xcfe, 2, 0x3333); // 0x5a-0x5b
        assert_eq!(p.read(0xcfc, 4), 0x3333_3000);
        p.write(0xcf8, 4, 0x8000_005c);
        p.write(0xcfc, 4, 0x1122_3344); // 0x5c-0x5f
        assert_eq!(p.read(0xcfc, 4), 0x1122_3344);
        assert_eq!(p.pam_byte(0x5f), 0x11);
        assert_eq!(p.pam_byte(0x60), 0);
        // Byte 0x58 is not a PAM register and stays zero.
        p.write(0xcf8, 4, 0x8000_0058);
        p.write(0xcfc, 1, 0xff);
        assert_eq!(p.read(0xcfc, 1), 0);
    }
}
