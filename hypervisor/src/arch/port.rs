//! Port I/O: every I/O port the kernel touches, claimed once here as an [`IoRange`], and
//! the one place the `in`/`out` instructions run (through the `x86_64` crate's `Port`).
//!
//! A device module takes its range from here and reads and writes registers at offsets
//! inside it; no safe function takes a port number. Offsets are checked against the range: outside
//! it a read gives all ones and a write is dropped (what an absent device answers), as
//! [`super::pci::Mmio`] does for memory-mapped registers.
#![allow(unsafe_code)]

use x86_64::instructions::port::{Port, PortRead, PortWrite};

/// The ports `base..base + len` of one device, owned by the kernel.
pub struct IoRange {
    base: u16,
    len: u16,
}

impl IoRange {
    /// # Safety
    /// The ports are one device's registers, no other range covers them, and no access
    /// the arch module driving that device makes through the range can change memory or
    /// another device: that module may then use them from safe code.
    const unsafe fn claim(base: u16, len: u16) -> IoRange {
        IoRange { base, len }
    }

    /// The port of a `T`-sized register at `off`, if it lies inside the range.
    fn port<T>(&self, off: u16) -> Option<Port<T>> {
        let size = core::mem::size_of::<T>() as u16;
        (off.checked_add(size)? <= self.len).then(|| Port::new(self.base + off))
    }

    fn read<T: PortRead>(&self, off: u16, absent: T) -> T {
        match self.port::<T>(off) {
            // SAFETY: the port lies inside a range claimed below for its device.
            Some(mut p) => unsafe { p.read() },
            None => absent,
        }
    }

    fn write<T: PortWrite>(&self, off: u16, value: T) {
        if let Some(mut p) = self.port::<T>(off) {
            // SAFETY: the port lies inside a range claimed below for its device.
            unsafe { p.write(value) }
        }
    }

    pub fn read8(&self, off: u16) -> u8 {
        self.read(off, 0xff)
    }

    pub fn write8(&self, off: u16, value: u8) {
        self.write(off, value)
    }

    pub fn read32(&self, off: u16) -> u32 {
        self.read(off, 0xffff_ffff)
    }

    pub fn write32(&self, off: u16, value: u32) {
        self.write(off, value)
    }
}

// The claims: one per device, each the only range over its ports.

/// The ACPI PM timer's 32-bit counter at `base` (the FADT's PM_TMR_BLK), claimed once at
/// boot by pmtimer.rs.
pub fn claim_pm_timer(base: u16) -> IoRange {
    // SAFETY: the firmware's FADT names these four ports as the PM timer's counter, a
    // read-only register whose reads change nothing; pmtimer.rs only reads it.
    unsafe { IoRange::claim(base, 4) }
}

/// The master 8259 (command 0x20, data 0x21).
// SAFETY: the interrupt controller is the kernel's; it only routes IRQs.
pub static PIC1: IoRange = unsafe { IoRange::claim(0x20, 2) };
/// The slave 8259 (command 0xa0, data 0xa1).
// SAFETY: as for PIC1.
pub static PIC2: IoRange = unsafe { IoRange::claim(0xa0, 2) };
/// The 8254: channels 0-2 (0x40-0x42) and the mode register (0x43).
// SAFETY: the timer is the kernel's; it only counts and raises IRQ 0.
pub static PIT: IoRange = unsafe { IoRange::claim(0x40, 4) };
/// Port 0x61 (system control port B): channel 2's gate and output, the speaker.
// SAFETY: only the PIT's channel 2 gate and the speaker hang on it (the kernel keeps the
// speaker off); the NMI status bits are read-only.
pub static PORT_B: IoRange = unsafe { IoRange::claim(0x61, 1) };
/// The CMOS RTC: index 0x70, data 0x71.
// SAFETY: index writes only select a CMOS byte (the RTC module keeps bit 7, NMI enable,
// clear) and the kernel reads the data port, never writes it.
pub static RTC: IoRange = unsafe { IoRange::claim(0x70, 2) };
/// COM1's 16550 (0x3f8-0x3ff).
// SAFETY: the UART's registers move bytes on the serial line and raise IRQ 4, nothing else.
pub static COM1: IoRange = unsafe { IoRange::claim(0x3f8, 8) };
/// PCI configuration mechanism #1: CONFIG_ADDRESS (0xcf8) and CONFIG_DATA (0xcfc).
// SAFETY: configuration space is reached only through these two ports; what is written
// there (BAR sizing, the command register) is pci.rs's to keep sound.
pub static PCI_CONFIG: IoRange = unsafe { IoRange::claim(0xcf8, 8) };
/// Port 0xe9: Bochs's port_e9_hack and QEMU's -debugcon, the log channel.
// SAFETY: a byte written there is printed by the emulator; PCs leave the port unused.
pub static DEBUGCON: IoRange = unsafe { IoRange::claim(0xe9, 1) };
/// QEMU's isa-debug-exit (iobase 0xf4, iosize 4): a write ends the emulator.
// SAFETY: ending the machine is what the write is for; PCs leave the port unused.
pub static QEMU_EXIT: IoRange = unsafe { IoRange::claim(0xf4, 4) };
/// Bochs's shutdown port: "Shutdown" written byte by byte ends the emulator.
// SAFETY: as for QEMU_EXIT.
pub static BOCHS_SHUTDOWN: IoRange = unsafe { IoRange::claim(0x8900, 1) };
