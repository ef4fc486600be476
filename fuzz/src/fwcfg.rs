//! The fw_cfg target: QEMU's firmware configuration device (`pcdev::fwcfg`, which the
//! tool and the kernel put on the guest's ports) driven by arbitrary port accesses and
//! DMA descriptors in a small guest memory. Every access is answered; nothing panics.

use pcdev::fwcfg::{
    Builder, DmaMem, FwCfg, DMA_READ, DMA_SELECT, E820, E820_RAM, PORT_DMA, PORT_SELECT,
};

/// Guest memory: 4 KiB, its bytes the input's tail (descriptors, buffers).
struct Ram(Vec<u8>);

impl DmaMem for Ram {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        let a = usize::try_from(addr).ok();
        match a.and_then(|a| self.0.get(a..a.checked_add(buf.len())?)) {
            Some(s) => {
                buf.copy_from_slice(s);
                true
            }
            None => false,
        }
    }
    fn write(&mut self, addr: u64, data: &[u8]) -> bool {
        let a = usize::try_from(addr).ok();
        match a.and_then(|a| self.0.get_mut(a..a.checked_add(data.len())?)) {
            Some(s) => {
                s.copy_from_slice(data);
                true
            }
            None => false,
        }
    }
}

/// The device the target drives: a board's items and files (e820 is the third file).
fn board() -> FwCfg {
    let b = Builder::new()
        .ram_size(64 << 20)
        .cpus(1)
        .sercon_port(0x3f8)
        .and_then(|b| b.bootorder(&["HALT"]))
        .and_then(|b| {
            b.e820(&[E820 {
                addr: 0,
                len: 64 << 20,
                kind: E820_RAM,
            }])
        });
    match b {
        Ok(b) => b.build(),
        Err(e) => panic!("the builder refused a good board: {e}"),
    }
}

/// Bytes of one access in the input: port, size and direction, value[4].
const OP: usize = 6;

/// Input: accesses of [`OP`] bytes each (the first 256 at most), then guest memory.
/// Port 0x510 + b0 % 12; size 1, 2 or 4 from b1; b1's top bit makes it a write of the
/// little-endian value, which a DMA transfer follows when the device asks for one.
pub fn fwcfg(data: &[u8]) {
    let mut dev = board();
    let ops = (data.len() / OP).min(256);
    let (ops_bytes, mem) = data.split_at(ops * OP);
    let mut ram = Ram(mem
        .iter()
        .copied()
        .chain(std::iter::repeat(0))
        .take(4096)
        .collect());
    for op in ops_bytes.chunks_exact(OP) {
        let port = PORT_SELECT + u16::from(op[0] % 12);
        let size = [1u8, 2, 4][usize::from(op[1] & 3) % 3];
        let val = u32::from_le_bytes([op[2], op[3], op[4], op[5]]);
        if op[1] & 0x80 != 0 {
            if let Some(d) = dev.write(port, size, val) {
                assert!(port >= PORT_DMA);
                dev.transfer(d, &mut ram);
            }
        } else {
            let v = dev.read(port, size);
            assert!(size == 4 || v <= pcdev::size_mask(size) || v == u32::MAX);
        }
    }
}

/// Starts from: the signature probe, a directory read, and a DMA read of the e820 file.
pub fn seeds() -> Vec<Vec<u8>> {
    // Size codes: 0 a byte, 1 a word, 2 a dword.
    let op = |port: u16, write: bool, size: u8, v: u32| {
        let mut b = vec![
            (port - PORT_SELECT) as u8,
            size | if write { 0x80 } else { 0 },
        ];
        b.extend_from_slice(&v.to_le_bytes());
        b
    };
    let mut probe = op(PORT_SELECT, true, 1, 0);
    let mut dir = op(PORT_SELECT, true, 1, 0x19);
    for _ in 0..8 {
        probe.extend(op(PORT_SELECT + 1, false, 0, 0));
        dir.extend(op(PORT_SELECT + 1, false, 0, 0));
    }
    // A descriptor at 0x100 of guest memory: select the third file (etc/e820), read 40
    // bytes to 0x200.
    let mut dma = op(PORT_DMA, true, 2, 0);
    dma.extend(op(PORT_DMA + 4, true, 2, 0x100u32.swap_bytes()));
    let mut mem = vec![0u8; 0x100];
    let control = 0x22u32 << 16 | DMA_SELECT | DMA_READ;
    mem.extend_from_slice(&control.to_be_bytes());
    mem.extend_from_slice(&40u32.to_be_bytes());
    mem.extend_from_slice(&0x200u64.to_be_bytes());
    dma.extend(mem);
    vec![probe, dir, dma]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The DMA seed moves the e820 file into memory: the target reaches transfers.
    #[test]
    fn the_dma_seed_transfers() {
        let s = &seeds()[2];
        let mut ram = Ram(s[2 * OP..].to_vec());
        ram.0.resize(4096, 0);
        let mut dev = board();
        let _ = dev.write(PORT_DMA, 4, 0);
        let d = dev.write(PORT_DMA + 4, 4, 0x100u32.swap_bytes()).unwrap();
        dev.transfer(d, &mut ram);
        assert_eq!(&ram.0[0x100..0x104], [0; 4], "DMA status");
        assert_eq!(&ram.0[0x200..0x208], 0u64.to_le_bytes());
        assert_eq!(&ram.0[0x208..0x210], (64u64 << 20).to_le_bytes());
        fwcfg(s);
    }
}
