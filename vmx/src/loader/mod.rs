//! Guest loaders: turn a kernel image (and its command line and modules) into a plan of
//! guest-physical writes and initial registers. Pure: no 9P, no files; the caller reads the
//! files and sends the plan. Guests start the way vmx(1) starts them: flat 32-bit
//! protected mode, paging off (the #X device's initial state), with only the registers
//! the plan names changed.

pub mod elf;
pub mod linux;
pub mod multiboot;

use crate::layout::Layout;
use crate::regs::Reg;
use std::fmt;

/// Bytes to place at a guest-physical address.
#[derive(Clone, PartialEq, Eq)]
pub struct Chunk {
    pub addr: u64,
    pub data: Vec<u8>,
}

impl fmt::Debug for Chunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Chunk({:#x}, {} bytes)", self.addr, self.data.len())
    }
}

/// A loaded guest: what to write where, and the registers to set before the first `go`.
/// Memory not covered by a chunk is left as the fresh segment has it: zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// "multiboot", "linux" or "raw".
    pub format: &'static str,
    pub chunks: Vec<Chunk>,
    pub regs: Vec<(Reg, u64)>,
}

impl Image {
    pub fn entry(&self) -> u64 {
        self.regs
            .iter()
            .find(|(r, _)| *r == Reg::Pc)
            .map_or(0, |r| r.1)
    }

    /// Total bytes the plan writes.
    pub fn bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.data.len() as u64).sum()
    }

    /// The byte the plan puts at `addr`, if any (later chunks win), for tests and dumps.
    pub fn byte_at(&self, addr: u64) -> Option<u8> {
        self.chunks.iter().rev().find_map(|c| {
            let off = addr.checked_sub(c.addr)?;
            c.data.get(usize::try_from(off).ok()?).copied()
        })
    }

    /// `len` bytes at `addr` (zero where no chunk writes).
    pub fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        (0..len as u64)
            .map(|i| self.byte_at(addr + i).unwrap_or(0))
            .collect()
    }

    fn push(&mut self, addr: u64, data: Vec<u8>) {
        if !data.is_empty() {
            self.chunks.push(Chunk { addr, data });
        }
    }
}

/// A boot module (multiboot module, or the Linux initrd).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    pub data: Vec<u8>,
}

/// What the guest is given besides its kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootArgs {
    /// The kernel arguments joined by spaces (vmx(1) passes no kernel name).
    pub cmdline: String,
    pub modules: Vec<Module>,
}

/// Why an image cannot be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError(pub String);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LoadError {}

pub(crate) fn err<T>(msg: impl Into<String>) -> Result<T, LoadError> {
    Err(LoadError(msg.into()))
}

/// Loads a kernel, trying the formats in vmx(1)'s order: a multiboot header in the first
/// 8 KiB, then a Linux bzImage setup header.
pub fn load(kernel: &[u8], layout: &Layout, args: &BootArgs) -> Result<Image, LoadError> {
    if let Some(hdr) = multiboot::find_header(kernel)? {
        return multiboot::load(kernel, &hdr, layout, args);
    }
    if linux::is_bzimage(kernel) {
        return linux::load(kernel, layout, args);
    }
    if kernel.starts_with(b"\x7fELF") {
        return err(
            "ELF image without a multiboot header: only multiboot ELF kernels boot (or use --raw)",
        );
    }
    if kernel.len() < 512 {
        return err(format!(
            "image too short ({} bytes) for any supported format",
            kernel.len()
        ));
    }
    err("unknown format: no multiboot header in the first 8 KiB and no Linux setup header (use --raw ADDR for a flat binary)")
}

/// A flat binary copied to `addr` and entered there, in flat 32-bit protected mode.
pub fn load_raw(data: &[u8], addr: u64, layout: &Layout) -> Result<Image, LoadError> {
    if data.is_empty() {
        return err("raw image is empty");
    }
    if !layout.contains(addr, data.len() as u64) {
        return err(format!(
            "raw image of {} bytes at {addr:#x} does not fit in {:#x} bytes of guest memory",
            data.len(),
            layout.mem()
        ));
    }
    let mut img = Image {
        format: "raw",
        chunks: vec![],
        regs: vec![(Reg::Pc, addr)],
    };
    img.push(addr, data.to_vec());
    Ok(img)
}

/// Little-endian field readers that never panic: out-of-range reads give None.
pub(crate) fn le16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(off..off.checked_add(2)?)?.try_into().ok()?,
    ))
}

pub(crate) fn le32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}

pub(crate) fn le64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(off..off.checked_add(8)?)?.try_into().ok()?,
    ))
}

pub(crate) fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

pub(crate) fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

pub(crate) fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

pub(crate) fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_images() {
        let l = Layout::new(1 << 20).unwrap();
        let img = load_raw(&[0x90, 0xf4], 0x7c00, &l).unwrap();
        assert_eq!(img.entry(), 0x7c00);
        assert_eq!(img.read(0x7c00, 3), vec![0x90, 0xf4, 0]);
        assert!(load_raw(&[], 0, &l).unwrap_err().0.contains("empty"));
        assert!(load_raw(&[1, 2], 0xfffff, &l)
            .unwrap_err()
            .0
            .contains("does not fit"));
    }

    #[test]
    fn unknown_images_are_rejected() {
        let l = Layout::new(64 << 20).unwrap();
        let a = BootArgs::default();
        assert!(load(&[0; 100], &l, &a).unwrap_err().0.contains("too short"));
        assert!(load(&[0; 10000], &l, &a)
            .unwrap_err()
            .0
            .contains("unknown format"));
        let mut elf = vec![0u8; 1000];
        elf[..4].copy_from_slice(b"\x7fELF");
        assert!(load(&elf, &l, &a)
            .unwrap_err()
            .0
            .contains("without a multiboot header"));
    }
}
