//! QEMU's firmware configuration device (fw_cfg) on the PC's I/O ports, as SeaBIOS and
//! QEMU's option ROMs read it: a 16-bit selector written to 0x510 picks an item, each
//! byte read from 0x511 is the item's next byte (zeros past its end), and a DMA
//! interface at 0x514 copies whole items into guest memory in one exit. Items are the
//! legacy numbered ones (signature, ID, RAM size, CPUs, a Linux kernel, initrd and
//! command line as QEMU's `-kernel` passes them) and named files listed in the file
//! directory (item 0x19: a big-endian count, then size, select and a 56-byte name per
//! file), which the board's builder adds ([`Builder`]): `etc/sercon-port`, `bootorder`,
//! `etc/e820` and any other.
//!
//! Numbers and formats after QEMU's hw/nvram/fw_cfg.c and qemu_fw_cfg.h and SeaBIOS's
//! src/fw/paravirt.c. Everything is read-only to the guest: data-port writes are dropped
//! (as QEMU has done since 2.4) and a DMA write reports an error. Nothing a guest does
//! panics: any selector, offset, access size or DMA descriptor is answered.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

/// The selector port (16-bit writes) and the data port (byte reads).
pub const PORT_SELECT: u16 = 0x510;
pub const PORT_DATA: u16 = 0x511;
/// The DMA address register: the high half of a descriptor's address at 0x514, the low
/// half at 0x518 (each a 32-bit big-endian write; the second starts the transfer).
pub const PORT_DMA: u16 = 0x514;
/// The last port of the device.
pub const PORT_LAST: u16 = PORT_DMA + 7;

/// The legacy items (qemu_fw_cfg.h's FW_CFG_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Item {
    Signature = 0x00,
    Id = 0x01,
    Uuid = 0x02,
    RamSize = 0x03,
    NoGraphic = 0x04,
    NbCpus = 0x05,
    MachineId = 0x06,
    KernelAddr = 0x07,
    KernelSize = 0x08,
    KernelCmdline = 0x09,
    InitrdAddr = 0x0a,
    InitrdSize = 0x0b,
    BootDevice = 0x0c,
    Numa = 0x0d,
    BootMenu = 0x0e,
    MaxCpus = 0x0f,
    KernelEntry = 0x10,
    KernelData = 0x11,
    InitrdData = 0x12,
    CmdlineAddr = 0x13,
    CmdlineSize = 0x14,
    CmdlineData = 0x15,
    SetupAddr = 0x16,
    SetupSize = 0x17,
    SetupData = 0x18,
    FileDir = 0x19,
}

/// The first selector of a named file.
pub const FILE_FIRST: u16 = 0x20;
/// Selector bits: the write channel (ignored for reads) and the architecture's own items.
pub const WRITE_CHANNEL: u16 = 0x4000;
pub const ARCH_LOCAL: u16 = 0x8000;
/// Bytes of a file's name in the directory, its NUL included.
pub const NAME_LEN: usize = 56;
/// Bytes of a directory entry: size (4), select (2), reserved (2), name.
pub const DIR_ENTRY_LEN: usize = 8 + NAME_LEN;

/// The signature item's bytes, and what the DMA register reads as.
pub const SIGNATURE: &[u8; 4] = b"QEMU";
pub const DMA_SIGNATURE: &[u8; 8] = b"QEMU CFG";
/// ID bits: the port interface, the DMA interface.
pub const ID_TRADITIONAL: u32 = 1 << 0;
pub const ID_DMA: u32 = 1 << 1;

/// DMA control bits (the descriptor's first big-endian word; the selector in its top 16).
pub const DMA_ERROR: u32 = 1 << 0;
pub const DMA_READ: u32 = 1 << 1;
pub const DMA_SKIP: u32 = 1 << 2;
pub const DMA_SELECT: u32 = 1 << 3;
pub const DMA_WRITE: u32 = 1 << 4;
/// Bytes of a DMA descriptor: control, length (both u32), address (u64), big-endian.
pub const DMA_DESC_LEN: usize = 16;

/// Names of the files SeaBIOS reads that a board adds.
pub const FILE_SERCON_PORT: &str = "etc/sercon-port";
pub const FILE_BOOTORDER: &str = "bootorder";
pub const FILE_E820: &str = "etc/e820";

/// e820 entry types.
pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;

/// Guest-physical memory for DMA transfers: false when the access cannot be done.
pub trait DmaMem {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> bool;
    fn write(&mut self, addr: u64, data: &[u8]) -> bool;
}

/// Why the builder refused an item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// A file name empty, with a NUL, or too long for the directory's 56 bytes.
    BadName(String),
    /// Two files of one name.
    Duplicate(String),
    /// More files than selectors.
    TooManyFiles,
    /// An item longer than a 32-bit size says.
    TooLarge,
}

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BuildError::BadName(n) => write!(
                f,
                "fw_cfg file name {n:?} is empty, holds a NUL or is longer than {} bytes",
                NAME_LEN - 1
            ),
            BuildError::Duplicate(n) => write!(f, "fw_cfg file {n:?} added twice"),
            BuildError::TooManyFiles => write!(f, "too many fw_cfg files"),
            BuildError::TooLarge => write!(f, "fw_cfg item larger than 4 GiB"),
        }
    }
}

/// One region of the guest's physical memory map, as `etc/e820` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820 {
    pub addr: u64,
    pub len: u64,
    /// [`E820_RAM`] or [`E820_RESERVED`].
    pub kind: u32,
}

impl E820 {
    /// The 20-byte little-endian record (address, length, type).
    pub fn encode(self) -> [u8; 20] {
        let mut b = [0u8; 20];
        b[..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..16].copy_from_slice(&self.len.to_le_bytes());
        b[16..].copy_from_slice(&self.kind.to_le_bytes());
        b
    }
}

/// A Linux kernel as QEMU's `-kernel` hands it to its option ROM: the real-mode setup
/// part and the protected-mode part of a bzImage, an initrd and a command line, each with
/// the guest-physical address it goes to (the loader's choices, patched into the setup
/// header by whoever splits the image).
#[derive(Clone, Copy, Debug, Default)]
pub struct Linux<'a> {
    pub setup_addr: u32,
    pub setup: &'a [u8],
    pub kernel_addr: u32,
    pub kernel: &'a [u8],
    pub initrd_addr: u32,
    pub initrd: &'a [u8],
    pub cmdline_addr: u32,
    /// Without its NUL: the device adds it, and CMDLINE_SIZE counts it.
    pub cmdline: &'a [u8],
}

/// Builds the device's items: the signature, ID and file directory are the builder's.
#[derive(Clone, Debug)]
pub struct Builder {
    items: BTreeMap<u16, Vec<u8>>,
    files: Vec<(String, Vec<u8>)>,
    dma: bool,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder::new()
    }
}

fn u32_len(b: &[u8]) -> Result<u32, BuildError> {
    u32::try_from(b.len()).map_err(|_| BuildError::TooLarge)
}

impl Builder {
    /// A device with the DMA interface (SeaBIOS then reads items in one exit each).
    pub fn new() -> Builder {
        Builder {
            items: BTreeMap::new(),
            files: Vec::new(),
            dma: true,
        }
    }

    /// Leaves the DMA interface out: the guest reads every byte through the data port.
    pub fn without_dma(mut self) -> Builder {
        self.dma = false;
        self
    }

    /// Sets a legacy item's bytes.
    pub fn item(mut self, item: Item, data: &[u8]) -> Builder {
        self.items.insert(item as u16, data.to_vec());
        self
    }

    /// RAM size in bytes (a u64), as QEMU's FW_CFG_RAM_SIZE.
    pub fn ram_size(self, bytes: u64) -> Builder {
        self.item(Item::RamSize, &bytes.to_le_bytes())
    }

    /// CPUs present and possible (u16s).
    pub fn cpus(self, n: u16) -> Builder {
        self.item(Item::NbCpus, &n.to_le_bytes())
            .item(Item::MaxCpus, &n.to_le_bytes())
    }

    /// A Linux kernel, initrd and command line, as QEMU's `-kernel` passes them.
    pub fn linux(self, l: &Linux) -> Result<Builder, BuildError> {
        let mut cmdline = l.cmdline.to_vec();
        cmdline.push(0);
        let rows: [(Item, u32, Item, Item, &[u8]); 4] = [
            (
                Item::SetupAddr,
                l.setup_addr,
                Item::SetupSize,
                Item::SetupData,
                l.setup,
            ),
            (
                Item::KernelAddr,
                l.kernel_addr,
                Item::KernelSize,
                Item::KernelData,
                l.kernel,
            ),
            (
                Item::InitrdAddr,
                l.initrd_addr,
                Item::InitrdSize,
                Item::InitrdData,
                l.initrd,
            ),
            (
                Item::CmdlineAddr,
                l.cmdline_addr,
                Item::CmdlineSize,
                Item::CmdlineData,
                &cmdline,
            ),
        ];
        let mut b = self;
        for (addr_item, addr, size_item, data_item, data) in rows {
            let size = u32_len(data)?;
            b = b
                .item(addr_item, &addr.to_le_bytes())
                .item(size_item, &size.to_le_bytes())
                .item(data_item, data);
        }
        Ok(b)
    }

    /// A named file, listed in the directory in the order added.
    pub fn file(mut self, name: &str, data: &[u8]) -> Result<Builder, BuildError> {
        if name.is_empty() || name.len() >= NAME_LEN || name.contains('\0') {
            return Err(BuildError::BadName(name.into()));
        }
        if self.files.iter().any(|(n, _)| n == name) {
            return Err(BuildError::Duplicate(name.into()));
        }
        if self.files.len() >= usize::from(WRITE_CHANNEL - FILE_FIRST) {
            return Err(BuildError::TooManyFiles);
        }
        u32_len(data)?;
        self.files.push((name.into(), data.to_vec()));
        Ok(self)
    }

    /// `etc/sercon-port`: SeaBIOS's console goes to the UART at `port` (a u16, which its
    /// integer loader takes).
    pub fn sercon_port(self, port: u16) -> Result<Builder, BuildError> {
        self.file(FILE_SERCON_PORT, &port.to_le_bytes())
    }

    /// `bootorder`: device paths, one a line, NUL-terminated as QEMU writes it.
    pub fn bootorder(self, paths: &[&str]) -> Result<Builder, BuildError> {
        let mut b = Vec::new();
        for (i, p) in paths.iter().enumerate() {
            if i > 0 {
                b.push(b'\n');
            }
            b.extend_from_slice(p.as_bytes());
        }
        b.push(0);
        self.file(FILE_BOOTORDER, &b)
    }

    /// `etc/e820`: the memory map, RAM and reserved regions.
    pub fn e820(self, map: &[E820]) -> Result<Builder, BuildError> {
        let b: Vec<u8> = map.iter().flat_map(|e| e.encode()).collect();
        self.file(FILE_E820, &b)
    }

    pub fn build(self) -> FwCfg {
        let Builder {
            mut items,
            files,
            dma,
        } = self;
        items.insert(Item::Signature as u16, SIGNATURE.to_vec());
        let id = ID_TRADITIONAL | if dma { ID_DMA } else { 0 };
        items.insert(Item::Id as u16, id.to_le_bytes().to_vec());
        let mut dir = Vec::with_capacity(4 + DIR_ENTRY_LEN * files.len());
        dir.extend_from_slice(&(files.len() as u32).to_be_bytes());
        for (i, (name, data)) in files.into_iter().enumerate() {
            let select = FILE_FIRST + i as u16;
            dir.extend_from_slice(&(data.len() as u32).to_be_bytes());
            dir.extend_from_slice(&select.to_be_bytes());
            dir.extend_from_slice(&[0, 0]);
            let mut n = [0u8; NAME_LEN];
            n[..name.len()].copy_from_slice(name.as_bytes());
            dir.extend_from_slice(&n);
            items.insert(select, data);
        }
        items.insert(Item::FileDir as u16, dir);
        FwCfg {
            items,
            selected: Item::Signature as u16,
            offset: 0,
            dma_high: 0,
            dma,
        }
    }
}

/// The device: its items and the guest's place in them.
#[derive(Clone, Debug)]
pub struct FwCfg {
    /// By selector (the architecture bit kept, the write channel's dropped).
    items: BTreeMap<u16, Vec<u8>>,
    selected: u16,
    /// The next byte of the selected item to read.
    offset: u64,
    /// The DMA descriptor address's high half, as last written.
    dma_high: u32,
    dma: bool,
}

/// What an `out` asks of the board: a DMA transfer of the descriptor at this address
/// (see [`FwCfg::transfer`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dma(pub u64);

impl FwCfg {
    /// The item under `key`, if the device has one.
    pub fn get(&self, key: u16) -> Option<&[u8]> {
        self.items.get(&(key & !WRITE_CHANNEL)).map(Vec::as_slice)
    }

    /// Back to the power-on state: the signature selected.
    pub fn reset(&mut self) {
        self.select(Item::Signature as u16);
        self.dma_high = 0;
    }

    fn select(&mut self, key: u16) {
        self.selected = key & !WRITE_CHANNEL;
        self.offset = 0;
    }

    fn next_byte(&mut self) -> u8 {
        let b = self
            .get(self.selected)
            .and_then(|d| d.get(usize::try_from(self.offset).ok()?))
            .copied();
        if b.is_some() {
            self.offset += 1;
        }
        b.unwrap_or(0)
    }

    /// An `in` of `size` bytes (1, 2 or 4) from `port`. A byte from either of the first
    /// two ports is the selected item's next; the DMA register reads as its signature;
    /// anything else reads all ones, as an unclaimed port.
    pub fn read(&mut self, port: u16, size: u8) -> u32 {
        match (port, size) {
            (PORT_SELECT | PORT_DATA, 1) => u32::from(self.next_byte()),
            (PORT_DMA..=PORT_LAST, 1 | 2 | 4) if self.dma => {
                let at = usize::from(port - PORT_DMA);
                let mut v = [0u8; 4];
                for (i, b) in v.iter_mut().take(usize::from(size)).enumerate() {
                    *b = DMA_SIGNATURE.get(at + i).copied().unwrap_or(0);
                }
                u32::from_le_bytes(v)
            }
            _ => u32::MAX,
        }
    }

    /// An `out` of `size` bytes of `val` to `port`. A 16-bit write to the selector port
    /// selects; data writes are dropped; the DMA register's low half asks for a transfer.
    pub fn write(&mut self, port: u16, size: u8, val: u32) -> Option<Dma> {
        match (port, size) {
            (PORT_SELECT, 2) => self.select(val as u16),
            (PORT_DMA, 4) if self.dma => self.dma_high = val.swap_bytes(),
            (p, 4) if self.dma && p == PORT_DMA + 4 => {
                let addr = u64::from(self.dma_high) << 32 | u64::from(val.swap_bytes());
                self.dma_high = 0;
                return Some(Dma(addr));
            }
            _ => {}
        }
        None
    }

    /// Runs the DMA transfer whose descriptor is at `at` in guest memory and writes its
    /// status back there: 0, or [`DMA_ERROR`] (a descriptor or buffer memory cannot be
    /// reached, or a write, which no item takes). Reads past the item's end are zeros.
    pub fn transfer<M: DmaMem + ?Sized>(&mut self, Dma(at): Dma, mem: &mut M) {
        let mut d = [0u8; DMA_DESC_LEN];
        if !mem.read(at, &mut d) {
            mem.write(at, &DMA_ERROR.to_be_bytes());
            return;
        }
        let control = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
        let mut len = u64::from(u32::from_be_bytes([d[4], d[5], d[6], d[7]]));
        let mut addr = u64::from_be_bytes([d[8], d[9], d[10], d[11], d[12], d[13], d[14], d[15]]);
        if control & DMA_SELECT != 0 {
            self.select((control >> 16) as u16);
        }
        let (read, write) = if control & DMA_READ != 0 {
            (true, false)
        } else if control & DMA_WRITE != 0 {
            (false, true)
        } else if control & DMA_SKIP != 0 {
            (false, false)
        } else {
            len = 0;
            (false, false)
        };
        let mut status = 0;
        const ZEROS: [u8; 4096] = [0; 4096];
        while len > 0 && status == 0 {
            let item = self.items.get(&self.selected).map(Vec::as_slice);
            let rest = item
                .and_then(|d| d.get(usize::try_from(self.offset).ok()?..))
                .filter(|r| !r.is_empty());
            let n = match rest {
                Some(r) => {
                    let n = len.min(r.len() as u64);
                    if write || read && !mem.write(addr, &r[..n as usize]) {
                        status = DMA_ERROR;
                    }
                    self.offset += n;
                    n
                }
                None => {
                    let n = len.min(ZEROS.len() as u64);
                    if write || read && !mem.write(addr, &ZEROS[..n as usize]) {
                        status = DMA_ERROR;
                    }
                    n
                }
            };
            addr = addr.wrapping_add(n);
            len -= n;
        }
        mem.write(at, &status.to_be_bytes());
    }
}

#[cfg(test)]
mod tests;
