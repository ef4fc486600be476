//! String port I/O (`ins`, `outs`, with or without `rep`), which firmware uses: SeaBIOS
//! reads fw_cfg items with `rep insb` before it knows of the DMA interface. Emulated on
//! guest-physical memory, so only with paging off (firmware and boot loaders); a long
//! `rep` is done in pieces, the instruction re-executed with CX counted down.

use super::{Outcome, Runner, VmMem};
use crate::exit::{Exit, Io};
use crate::regs::Reg;
use crate::vmfs::Vmfs;

/// RFLAGS.DF: the string moves down.
const FLAGS_DF: u64 = 1 << 10;
/// CR0.PG.
const CR0_PG: u64 = 1 << 31;
/// Bytes moved per exit at most.
const PIECE: u64 = 64 * 1024;

impl<V: Vmfs> Runner<'_, V> {
    pub(super) fn string_io(&mut self, e: &Exit, io: Io) -> Result<Option<Outcome>, String> {
        if self.get(Reg::Cr0Real)? & CR0_PG != 0 {
            let why = format!(
                "string i/o on port {:#x} with paging on is not emulated",
                io.port
            );
            return Ok(Some(Outcome::Unhandled(self.diagnose(e, &why))));
        }
        // The address size, from the VM-exit instruction information.
        let amask: u64 = match e.iinfo >> 7 & 7 {
            0 => 0xffff,
            1 => 0xffff_ffff,
            _ => u64::MAX,
        };
        let cx = self.get(Reg::Cx)?;
        let count = if io.rep { cx & amask } else { 1 };
        let size = u64::from(io.size);
        let n = count.min(PIECE / size);
        let index = if io.input { Reg::Di } else { Reg::Si };
        let idx = self.get(index)?;
        // ins writes ES:DI (no override); outs reads the linear address VT-x reports.
        let va = if io.input {
            self.get(Reg::EsBase)?.wrapping_add(idx & amask)
        } else {
            self.get(Reg::ExitVa)?
        };
        let down = self.get(Reg::Flags)? & FLAGS_DF != 0;
        if n > 0 {
            let bytes = n * size;
            let lo = if down {
                va.wrapping_sub((n - 1) * size)
            } else {
                va
            };
            // Element i's offset in the block from `lo`.
            let at = |i: u64| (if down { n - 1 - i } else { i } * size) as usize;
            let s = size as usize;
            if io.input {
                let mut buf = vec![0u8; bytes as usize];
                for i in 0..n {
                    let v = self.machine.io_in(io.port, io.size);
                    buf[at(i)..at(i) + s].copy_from_slice(&v.to_le_bytes()[..s]);
                }
                self.vm
                    .write_mem(lo, &buf)
                    .map_err(|x| format!("ins to guest memory at {lo:#x}: {x}"))?;
            } else {
                let buf = self
                    .vm
                    .read_mem(lo, bytes as usize)
                    .map_err(|x| format!("outs from guest memory at {lo:#x}: {x}"))?;
                for i in 0..n {
                    let mut v = [0u8; 4];
                    v[..s].copy_from_slice(&buf[at(i)..at(i) + s]);
                    let v = u32::from_le_bytes(v);
                    self.machine
                        .io_out_to(io.port, io.size, v, &mut VmMem(&mut self.vm));
                }
            }
            let moved = if down {
                idx.wrapping_sub(bytes)
            } else {
                idx.wrapping_add(bytes)
            };
            self.set(index, idx & !amask | moved & amask);
            if io.rep {
                self.set(Reg::Cx, cx & !amask | (cx - n) & amask);
            }
        }
        if n == count {
            self.skip(e)?;
        }
        Ok(None)
    }
}
