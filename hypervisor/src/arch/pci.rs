//! PCI configuration space (mechanism #1, ports 0xCF8/0xCFC), device BARs as bounds-checked
//! MMIO windows, and DMA frames: the only `unsafe` the virtio drivers need, behind safe types.
//!
//! Every access to device registers or to memory shared with a device goes through
//! [`Mmio`] or [`DmaFrame`], which check offsets against the region they own, so the drivers
//! above stay safe code.
#![allow(unsafe_code)]

use super::port::PCI_CONFIG;
use core::sync::atomic::{fence, Ordering};

/// Offsets in the configuration mechanism's range (ports 0xCF8 and 0xCFC).
const CONFIG_ADDRESS: u16 = 0;
const CONFIG_DATA: u16 = 4;

/// Standard configuration header offsets.
pub const VENDOR_ID: u8 = 0x00;
pub const DEVICE_ID: u8 = 0x02;
pub const COMMAND: u8 = 0x04;
pub const STATUS: u8 = 0x06;
pub const HEADER_TYPE: u8 = 0x0E;
pub const BAR0: u8 = 0x10;
pub const CAP_PTR: u8 = 0x34;
pub const INTERRUPT_LINE: u8 = 0x3C;

const CMD_IO: u16 = 1 << 0;
const CMD_MEMORY: u16 = 1 << 1;
const CMD_BUS_MASTER: u16 = 1 << 2;
const CMD_INTX_DISABLE: u16 = 1 << 10;

/// A PCI function's address: bus, device (0..32), function (0..8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bdf {
    pub bus: u8,
    pub dev: u8,
    pub func: u8,
}

impl Bdf {
    fn address(self, offset: u8) -> u32 {
        0x8000_0000
            | (u32::from(self.bus) << 16)
            | (u32::from(self.dev & 31) << 11)
            | (u32::from(self.func & 7) << 8)
            | u32::from(offset & 0xFC)
    }

    pub fn read32(self, offset: u8) -> u32 {
        // Interrupts could interleave another 0xCF8/0xCFC pair only if a handler used PCI
        // configuration space; none does (drivers configure devices from the main loop).
        PCI_CONFIG.write32(CONFIG_ADDRESS, self.address(offset));
        PCI_CONFIG.read32(CONFIG_DATA)
    }

    pub fn read16(self, offset: u8) -> u16 {
        (self.read32(offset) >> ((offset & 2) * 8)) as u16
    }

    pub fn read8(self, offset: u8) -> u8 {
        (self.read32(offset) >> ((offset & 3) * 8)) as u8
    }

    pub fn write32(self, offset: u8, value: u32) {
        PCI_CONFIG.write32(CONFIG_ADDRESS, self.address(offset));
        PCI_CONFIG.write32(CONFIG_DATA, value);
    }

    pub fn write16(self, offset: u8, value: u16) {
        let shift = (offset & 2) * 8;
        let old = self.read32(offset) & !(0xFFFF << shift);
        // Writing 1s back into the status register's RW1C bits would clear them; the
        // command register (the only 16-bit write here) shares its dword with status,
        // so mask status out.
        let old = if offset & !3 == COMMAND {
            old & 0xFFFF
        } else {
            old
        };
        self.write32(offset, old | (u32::from(value) << shift));
    }

    pub fn vendor(self) -> u16 {
        self.read16(VENDOR_ID)
    }

    pub fn device(self) -> u16 {
        self.read16(DEVICE_ID)
    }

    /// The legacy interrupt line the firmware routed INTx to (0xFF: none).
    pub fn interrupt_line(self) -> u8 {
        self.read8(INTERRUPT_LINE)
    }

    /// Turns on memory and I/O decoding and bus mastering (DMA), and INTx unless `intx`.
    pub fn enable(self, intx: bool) {
        let mut cmd = self.read16(COMMAND) | CMD_IO | CMD_MEMORY | CMD_BUS_MASTER;
        if intx {
            cmd &= !CMD_INTX_DISABLE;
        } else {
            cmd |= CMD_INTX_DISABLE;
        }
        self.write16(COMMAND, cmd);
    }

    /// Base address register `index` (0..6), decoded. A 64-bit memory BAR takes two slots.
    pub fn bar(self, index: u8) -> Option<Bar> {
        if index >= 6 {
            return None;
        }
        let off = BAR0 + 4 * index;
        let low = self.read32(off);
        if low & 1 == 1 {
            let base = u64::from(low & !3);
            let size = self.probe_size(off, !3) as u64;
            return (base != 0 && size != 0).then_some(Bar::Io {
                base: base as u16,
                size: size as u16,
            });
        }
        let wide = (low >> 1) & 3 == 2;
        if wide && index == 5 {
            return None;
        }
        let high = if wide { self.read32(off + 4) } else { 0 };
        let base = (u64::from(high) << 32) | u64::from(low & !0xF);
        // A BAR's size below 4 GiB is what matters here; the high dword of a 64-bit BAR's
        // size mask is all ones for any window under 4 GiB.
        let size = u64::from(self.probe_size(off, !0xF));
        (base != 0 && size != 0).then_some(Bar::Memory { base, size })
    }

    /// Sizes a BAR the standard way (write all ones, read the mask back) with decoding off.
    fn probe_size(self, off: u8, mask: u32) -> u32 {
        let cmd = self.read16(COMMAND);
        self.write16(COMMAND, cmd & !(CMD_IO | CMD_MEMORY));
        let old = self.read32(off);
        self.write32(off, 0xFFFF_FFFF);
        let probed = self.read32(off) & mask;
        self.write32(off, old);
        self.write16(COMMAND, cmd);
        if probed == 0 {
            0
        } else {
            // I/O BARs only decode 16 bits; their upper bits read back as zero.
            let probed = if mask == !3 {
                probed | 0xFFFF_0000
            } else {
                probed
            };
            (!probed).wrapping_add(1)
        }
    }
}

/// A decoded base address register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bar {
    Io { base: u16, size: u16 },
    Memory { base: u64, size: u64 },
}

/// Every present PCI function on every bus, by brute force (256 buses x 32 devices).
pub fn scan(mut visit: impl FnMut(Bdf)) {
    for bus in 0..=255u8 {
        for dev in 0..32u8 {
            let first = Bdf { bus, dev, func: 0 };
            if first.vendor() == 0xFFFF {
                continue;
            }
            let funcs = if first.read8(HEADER_TYPE) & 0x80 != 0 {
                8
            } else {
                1
            };
            for func in 0..funcs {
                let bdf = Bdf { bus, dev, func };
                if bdf.vendor() != 0xFFFF {
                    visit(bdf);
                }
            }
        }
    }
}

/// Memory-mapped device registers: a window inside one memory BAR of one device.
/// Accesses are volatile, naturally aligned and checked against the window.
pub struct Mmio {
    base: u64,
    len: u64,
}

impl Mmio {
    /// The window `offset..offset+len` of memory BAR `index`, if the BAR is a memory BAR
    /// that holds the whole window; one above 4 GiB is identity-mapped uncached here.
    pub fn new(bdf: Bdf, index: u8, offset: u32, len: u32) -> Option<Mmio> {
        let Some(Bar::Memory { base, size }) = bdf.bar(index) else {
            return None;
        };
        let end = u64::from(offset).checked_add(u64::from(len))?;
        if end > size
            || len == 0
            || !super::paging::map_mmio(base + u64::from(offset), u64::from(len))
        {
            return None;
        }
        Some(Mmio {
            base: base + u64::from(offset),
            len: u64::from(len),
        })
    }

    /// The window's size in bytes.
    pub fn size(&self) -> u64 {
        self.len
    }

    /// The address of a `size`-byte register at `off`, if it lies in the window and is aligned.
    fn at(&self, off: u64, size: u64) -> Option<u64> {
        (off.is_multiple_of(size) && off.checked_add(size)? <= self.len).then_some(self.base + off)
    }

    pub fn read8(&self, off: u64) -> u8 {
        match self.at(off, 1) {
            // SAFETY: the address lies inside a memory BAR the firmware assigned (checked in
            // `new`), identity-mapped; device registers are not Rust-visible memory.
            Some(pa) => unsafe { core::ptr::read_volatile(pa as *const u8) },
            None => 0xFF,
        }
    }

    pub fn read16(&self, off: u64) -> u16 {
        match self.at(off, 2) {
            // SAFETY: as in `read8`; the address is 2-aligned.
            Some(pa) => unsafe { core::ptr::read_volatile(pa as *const u16) },
            None => 0xFFFF,
        }
    }

    pub fn read32(&self, off: u64) -> u32 {
        match self.at(off, 4) {
            // SAFETY: as in `read8`; the address is 4-aligned.
            Some(pa) => unsafe { core::ptr::read_volatile(pa as *const u32) },
            None => 0xFFFF_FFFF,
        }
    }

    pub fn write8(&self, off: u64, value: u8) {
        if let Some(pa) = self.at(off, 1) {
            // SAFETY: as in `read8`.
            unsafe { core::ptr::write_volatile(pa as *mut u8, value) };
        }
    }

    pub fn write16(&self, off: u64, value: u16) {
        if let Some(pa) = self.at(off, 2) {
            // SAFETY: as in `read16`.
            unsafe { core::ptr::write_volatile(pa as *mut u16, value) };
        }
    }

    pub fn write32(&self, off: u64, value: u32) {
        if let Some(pa) = self.at(off, 4) {
            // SAFETY: as in `read32`.
            unsafe { core::ptr::write_volatile(pa as *mut u32, value) };
        }
    }

    /// A 64-bit register written as two 32-bit halves, low first (virtio's rule).
    pub fn write64(&self, off: u64, value: u64) {
        self.write32(off, value as u32);
        self.write32(off + 4, (value >> 32) as u32);
    }
}

/// One zeroed 4 KiB physical frame below 4 GiB (devices that cannot address higher can
/// reach it) owned by this value and shared with a device by its
/// physical address (identity-mapped, so also a valid pointer). Freed on drop.
///
/// Accesses are volatile because the device reads and writes the frame concurrently.
/// Out-of-range offsets read as zero and writes to them are ignored; drivers compute
/// offsets from their own layout and clamp anything a device reports.
pub struct DmaFrame {
    pa: u64,
    /// The allocator's frame, given back on drop.
    frame: Option<devvmx::hw::Frame>,
}

pub const FRAME_SIZE: usize = 4096;

impl DmaFrame {
    pub fn new() -> Option<DmaFrame> {
        super::frame_source::alloc_low().map(|f| DmaFrame {
            pa: f.pa(),
            frame: Some(f),
        })
    }

    /// The frame's physical address, for the device.
    pub fn pa(&self) -> u64 {
        self.pa
    }

    fn at(&self, off: usize, size: usize) -> Option<*mut u8> {
        let end = off.checked_add(size)?;
        (off.is_multiple_of(size) && end <= FRAME_SIZE)
            .then_some((self.pa as usize + off) as *mut u8)
    }

    pub fn read16(&self, off: usize) -> u16 {
        match self.at(off, 2) {
            // SAFETY: inside the 4 KiB frame this value owns (identity-mapped RAM), aligned.
            Some(p) => unsafe { core::ptr::read_volatile(p as *const u16) },
            None => 0,
        }
    }

    pub fn read32(&self, off: usize) -> u32 {
        match self.at(off, 4) {
            // SAFETY: as in `read16`; 4-aligned.
            Some(p) => unsafe { core::ptr::read_volatile(p as *const u32) },
            None => 0,
        }
    }

    pub fn write16(&self, off: usize, value: u16) {
        if let Some(p) = self.at(off, 2) {
            // SAFETY: as in `read16`.
            unsafe { core::ptr::write_volatile(p as *mut u16, value) };
        }
    }

    pub fn write32(&self, off: usize, value: u32) {
        if let Some(p) = self.at(off, 4) {
            // SAFETY: as in `read32`.
            unsafe { core::ptr::write_volatile(p as *mut u32, value) };
        }
    }

    pub fn write64(&self, off: usize, value: u64) {
        if let Some(p) = self.at(off, 8) {
            // SAFETY: as in `read16`; 8-aligned.
            unsafe { core::ptr::write_volatile(p as *mut u64, value) };
        }
    }

    /// Copies `data` into the frame at `off`, truncated at the frame's end; returns the count.
    pub fn write_bytes(&self, off: usize, data: &[u8]) -> usize {
        let n = data.len().min(FRAME_SIZE.saturating_sub(off));
        if n > 0 {
            // SAFETY: `off..off+n` lies inside the owned frame; the device does not touch a
            // buffer before the driver publishes it, and the fence orders the copy before that.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    data.as_ptr(),
                    (self.pa as usize + off) as *mut u8,
                    n,
                )
            };
        }
        fence(Ordering::SeqCst);
        n
    }

    /// Copies from the frame at `off` into `out`, truncated at the frame's end.
    pub fn read_bytes(&self, off: usize, out: &mut [u8]) -> usize {
        fence(Ordering::SeqCst);
        let n = out.len().min(FRAME_SIZE.saturating_sub(off));
        if n > 0 {
            // SAFETY: `off..off+n` lies inside the owned frame; the device finished writing
            // it before it published the buffer as used, which the caller observed.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    (self.pa as usize + off) as *const u8,
                    out.as_mut_ptr(),
                    n,
                )
            };
        }
        n
    }
}

impl Drop for DmaFrame {
    fn drop(&mut self) {
        if let Some(f) = self.frame.take() {
            super::frame_source::free(f);
        }
    }
}

/// Orders ring memory accesses against each other and against device register accesses.
pub fn dma_fence() {
    fence(Ordering::SeqCst);
}
