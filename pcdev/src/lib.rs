//! PC device models after vmx(1)'s io.c, as pure state machines: time comes in as numbers
//! (nanoseconds on a monotonic clock, Unix seconds for the RTC), bytes go out in buffers.
//! The vmx tool runs them in user space over 9P; the kernel runs the same code for the
//! VMs that ask for in-kernel devices (devvmx's `devices` ctl message).
//!
//! [`fwcfg`] is QEMU's firmware configuration device, for firmware (SeaBIOS) in the
//! guest; the board's builder fills it and puts it on its ports.
//!
//! [`Board`] is the set of devices on their ports ([`lookup`]) with the interrupt lines
//! wired into the PIC. [`pci`] is configuration mechanism #1 with the i440FX host bridge:
//! one model of a guest's PCI view, run by the tool or, for VMs that ask for `pci`, by
//! the kernel.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod cpu;
pub mod fwcfg;
pub mod i8042;
pub mod pci;
pub mod pic;
pub mod pit;
pub mod rtc;
pub mod script;
pub mod uart;

use alloc::vec::Vec;

/// Port the demo guest (and any guest) writes to end the run; the byte is the exit
/// status. QEMU's isa-debug-exit sits here too.
pub const DONE_PORT: u16 = 0xf4;
/// Bochs's and QEMU's debug console: bytes written here go to the terminal as well.
pub const DEBUGCON_PORT: u16 = 0xe9;

/// System control port A (0x92): bit 1 the A20 gate, bit 0 a fast reset. Firmware and
/// boot loaders read it and write it back around every A20 switch; reading all ones
/// there (no device) shows a reset in progress, and GRUB's boot code then waits forever.
pub const PORT_A: u16 = 0x92;
/// Port A's reading on a firmware machine: A20 on (the guest's memory never wraps at
/// 1 MiB).
pub const PORT_A_A20: u32 = 0x02;
/// Port A's fast-reset bit.
pub const PORT_A_RESET: u32 = 0x01;

/// QEMU's debug console for firmware (SeaBIOS's `dprintf`): reads give
/// [`FW_DEBUG_READBACK`] when it is there, bytes written are the firmware's log.
pub const FW_DEBUG_PORT: u16 = 0x402;
pub const FW_DEBUG_READBACK: u32 = 0xe9;

/// Why the machine wants the run to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// An out to [`DONE_PORT`] with this value.
    Done(u8),
    /// A reset through the keyboard controller (or, in the tool, 0xcf9).
    Reset,
}

/// Which device a port belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dev {
    Pic,
    Pit,
    Rtc,
    Kbd,
    Com(usize),
    Done,
    Debugcon,
    /// Ports legacy drivers probe or use for delays: reads all ones, writes dropped.
    Quiet,
}

/// The port map, after vmx(1)'s io.c (PCI's 0xcf8-0xcff is the tool's).
const PORTS: &[(u16, u16, Dev)] = &[
    (0x20, 0x21, Dev::Pic),
    (0xa0, 0xa1, Dev::Pic),
    (0x4d0, 0x4d1, Dev::Pic),
    (0x40, 0x43, Dev::Pit),
    (0x61, 0x61, Dev::Pit),
    (0x70, 0x71, Dev::Rtc),
    (0x60, 0x60, Dev::Kbd),
    (0x64, 0x64, Dev::Kbd),
    (0x3f8, 0x3ff, Dev::Com(0)),
    (0x2f8, 0x2ff, Dev::Com(1)),
    (DONE_PORT, DONE_PORT, Dev::Done),
    (DEBUGCON_PORT, DEBUGCON_PORT, Dev::Debugcon),
    (0x80, 0x80, Dev::Quiet),   // POST code; Linux's delay
    (0x84, 0x84, Dev::Quiet),   // DMA page; delay
    (0xed, 0xed, Dev::Quiet),   // delay
    (0x3e8, 0x3ef, Dev::Quiet), // COM3
    (0x2e8, 0x2ef, Dev::Quiet), // COM4
    (0x378, 0x37a, Dev::Quiet), // LPT1
    (0x278, 0x27a, Dev::Quiet), // LPT2
    (0x3b0, 0x3df, Dev::Quiet), // VGA
    (0x1f0, 0x1f7, Dev::Quiet), // IDE primary
    (0x3f6, 0x3f6, Dev::Quiet),
    (0x170, 0x177, Dev::Quiet), // IDE secondary
    (0x376, 0x376, Dev::Quiet),
    (0x3f0, 0x3f5, Dev::Quiet), // floppy
    (0x3f7, 0x3f7, Dev::Quiet),
    (0x00, 0x1f, Dev::Quiet), // DMA
    (0xc0, 0xdf, Dev::Quiet), // DMA
    (0x81, 0x8f, Dev::Quiet), // DMA pages
    (0x2e, 0x2f, Dev::Quiet), // Super I/O configuration (Linux probes for a chip)
    (0x4e, 0x4f, Dev::Quiet), // Super I/O, the second address
];

/// The device at `port`, if any.
pub fn lookup(port: u16) -> Option<Dev> {
    PORTS
        .iter()
        .find(|(lo, hi, _)| (*lo..=*hi).contains(&port))
        .map(|p| p.2)
}

/// Interrupt lines of the devices.
pub const IRQ_PIT: u8 = 0;
pub const IRQ_KBD: u8 = 1;
pub const IRQ_COM: [u8; 2] = [4, 3];

/// The value bits of a port access of `size` bytes (1, 2 or 4).
pub fn size_mask(size: u8) -> u32 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        _ => u32::MAX,
    }
}

/// `rax` after an `in` of `size` bytes (1, 2 or 4) read `val`: the low `size` bytes replaced,
/// and a 32-bit read zero-extending into the whole register, as a 32-bit register write does.
pub fn merge_in(rax: u64, size: u8, val: u32) -> u64 {
    let mask = u64::from(size_mask(size));
    let v = u64::from(val) & mask;
    if mask == u64::from(u32::MAX) {
        v
    } else {
        rax & !mask | v
    }
}

/// The devices of a PC, wired to the PIC.
#[derive(Clone, Debug)]
pub struct Board {
    pub pic: pic::Pic,
    pub pit: pit::Pit,
    pub rtc: rtc::Rtc,
    pub kbd: i8042::I8042,
    pub com: [uart::Uart; 2],
    pub stop: Option<Stop>,
    /// Bytes written to the debug console port.
    pub debugcon: Vec<u8>,
}

impl Board {
    /// A board whose RTC knows the machine's memory (see [`rtc::Rtc::new`]) and whose
    /// UARTs queue at most `uart_limit` bytes each way (0: no limit).
    pub fn new(rtc: rtc::Rtc, uart_limit: usize) -> Board {
        Board {
            pic: pic::Pic::new(),
            pit: pit::Pit::new(),
            rtc,
            kbd: i8042::I8042::new(),
            com: [
                uart::Uart::with_limit(uart_limit),
                uart::Uart::with_limit(uart_limit),
            ],
            stop: None,
            debugcon: Vec::new(),
        }
    }

    /// An `in` of `size` bytes from `port` of device `dev`, at `now` ns (`wall`: Unix
    /// seconds for the RTC).
    pub fn io_in(&mut self, dev: Dev, port: u16, size: u8, now: u64, wall: i64) -> u32 {
        let v = match dev {
            Dev::Pic => u32::from(self.pic.read(port)),
            Dev::Pit => u32::from(self.pit.read(port, now)),
            Dev::Rtc => u32::from(self.rtc.read(port, wall)),
            Dev::Kbd => {
                let v = self.kbd.read(port);
                if port == 0x60 {
                    // The controller drops IRQ 1 as the byte is read; a next byte
                    // raises it again: a new edge.
                    self.pic.set_line(IRQ_KBD, false);
                }
                u32::from(v)
            }
            Dev::Com(i) => u32::from(self.com[i & 1].read(port & 7)),
            Dev::Done | Dev::Debugcon | Dev::Quiet => u32::MAX,
        };
        self.sync_lines();
        v & size_mask(size)
    }

    /// An `out` of `size` bytes of `val` to `port` of device `dev`.
    pub fn io_out(&mut self, dev: Dev, port: u16, size: u8, val: u32, now: u64, wall: i64) {
        let b = (val & size_mask(size)) as u8;
        match dev {
            Dev::Pic => self.pic.write(port, b),
            Dev::Pit => self.pit.write(port, b, now),
            Dev::Rtc => self.rtc.write(port, b, wall),
            Dev::Kbd => self.kbd.write(port, b),
            Dev::Com(i) => self.com[i & 1].write(port & 7, b),
            Dev::Done => self.stop = Some(Stop::Done(b)),
            Dev::Debugcon => self.debugcon.push(b),
            Dev::Quiet => {}
        }
        if self.kbd.reset {
            self.stop = Some(Stop::Reset);
        }
        self.sync_lines();
    }

    /// Level-triggered lines follow their devices after every access.
    pub fn sync_lines(&mut self) {
        for (i, irq) in IRQ_COM.iter().enumerate() {
            self.pic.set_line(*irq, self.com[i].irq());
        }
        self.pic.set_line(IRQ_KBD, self.kbd.irq());
    }

    /// Moves the PIT to `now` ns and pulses IRQ 0 if it fired.
    pub fn advance(&mut self, now: u64) {
        if self.pit.advance(now) {
            self.pic.pulse(IRQ_PIT);
        }
    }

    /// Terminal input for COM1; returns how many bytes fit.
    pub fn type_in(&mut self, bytes: &[u8]) -> usize {
        let n = self.com[0].receive(bytes);
        self.sync_lines();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::merge_in;

    #[test]
    fn an_in_replaces_its_bytes_and_a_32_bit_in_zero_extends() {
        let rax = 0x1122_3344_5566_7788;
        assert_eq!(merge_in(rax, 1, 0xab), 0x1122_3344_5566_77ab);
        assert_eq!(merge_in(rax, 2, 0xabcd), 0x1122_3344_5566_abcd);
        assert_eq!(merge_in(rax, 4, 0xdead_beef), 0xdead_beef);
        // Bits above the access are not the device's to set.
        assert_eq!(merge_in(rax, 1, 0xffab), 0x1122_3344_5566_77ab);
    }

    #[test]
    fn super_io_probes_find_no_chip() {
        for port in [0x2e, 0x2f, 0x4e, 0x4f] {
            assert_eq!(super::lookup(port), Some(super::Dev::Quiet), "{port:#x}");
        }
        assert_eq!(super::lookup(0x30), None);
    }
}
