//! PCI configuration mechanism #1 (0xcf8 address, 0xcfc-0xcff data) with one device, an
//! i440FX host bridge at 00:00.0, so a guest finds a working PCI bus with nothing on it;
//! and the PIIX reset control register at 0xcf9.

#[derive(Clone, Debug, Default)]
pub struct Pci {
    addr: u32,
    /// Host bridge command register (the only writable field).
    command: u16,
    /// The guest asked for a reset through 0xcf9.
    pub reset: bool,
    rcr: u8,
}

impl Pci {
    pub fn new() -> Pci {
        Pci::default()
    }

    fn config_read(&self, bus: u32, dev: u32, func: u32, reg: u32) -> u32 {
        if bus != 0 || dev != 0 || func != 0 {
            return 0xffff_ffff;
        }
        match reg {
            0x00 => 0x1237_8086,                            // i440FX
            0x04 => u32::from(self.command) | 0x0280 << 16, // status: fast b2b, medium devsel
            0x08 => 0x0600_0002,                            // host bridge, revision 2
            0x0c => 0x0000_0000,                            // header type 0, single function
            _ => 0,
        }
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
            // Only the host bridge's command register takes writes.
            (0xcfc, 2 | 4) if self.addr & 0x80ff_fffc == 0x8000_0004 => {
                self.command = v as u16 & 0x0147;
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
}
