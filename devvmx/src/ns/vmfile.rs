//! A VM's files: reading and writing each, truncation, and the ctl file's messages (the
//! seed's vmxctlmsg[]).

use super::files::VmF;
use super::{Namespace, Node, EQUIT};
use crate::hw::Hw;
use crate::plan9::{lookupcmd, parsecmd, readstr, Cmdtab, EBADARG, EGREG};
use alloc::string::{String, ToString};
use ninep::{Ctx, Error, Read};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cm {
    Quit,
    Go,
    Stop,
    Step,
    Exc,
    Irq,
    Extrap,
    Devices,
    Line,
    Clock,
    Advance,
    Alarm,
    Pci,
    Firmware,
}

const VMXCTLMSG: [Cmdtab<Cm>; 14] = [
    Cmdtab::new(Cm::Quit, "quit", 1),
    Cmdtab::new(Cm::Go, "go", 0),
    Cmdtab::new(Cm::Stop, "stop", 1),
    Cmdtab::new(Cm::Step, "step", 0),
    Cmdtab::new(Cm::Exc, "exc", 2),
    Cmdtab::new(Cm::Irq, "irq", 0),
    Cmdtab::new(Cm::Extrap, "extrap", 2),
    // Extensions: in-kernel devices (DEVIATIONS.md).
    Cmdtab::new(Cm::Devices, "devices", 0),
    Cmdtab::new(Cm::Line, "line", 3),
    // Extension: the guest's clock for a client's devices (DEVIATIONS.md).
    Cmdtab::new(Cm::Clock, "clock", 1),
    Cmdtab::new(Cm::Advance, "advance", 2),
    Cmdtab::new(Cm::Alarm, "alarm", 0),
    // Extension: a client's function on the in-kernel PCI bus (DEVIATIONS.md).
    Cmdtab::new(Cm::Pci, "pci", 0),
    // Extension: a firmware machine, for a BIOS driven from a shell (DEVIATIONS.md).
    Cmdtab::new(Cm::Firmware, "firmware", 2),
];

impl<H: Hw> Namespace<H> {
    pub(super) fn ctl(
        &mut self,
        slot: usize,
        gen: u64,
        data: &[u8],
        uname: &str,
    ) -> Result<usize, Error> {
        let cb = parsecmd(data);
        let cm = lookupcmd(&cb, &VMXCTLMSG)?;
        let arg = cb.f.get(1).map(String::as_str);
        let nf = cb.f.len();
        if cm == Cm::Quit {
            self.vm(slot, gen)?;
            self.end_vm(slot);
            return Ok(data.len());
        }
        if matches!(cm, Cm::Go | Cm::Step | Cm::Irq | Cm::Alarm) && nf > 2 {
            // The seed read `irq a b` as a bare `irq`, withdrawing the interrupt.
            return Err(EBADARG.into());
        }
        let sw = self.switch.clone();
        self.with_vm(slot, gen, |hw, segs, vm| match cm {
            Cm::Quit => Ok(()),
            Cm::Go | Cm::Step => vm.go(hw, cm == Cm::Step, arg),
            Cm::Stop => vm.stop(),
            Cm::Exc => vm.exc(arg.unwrap_or("")),
            Cm::Irq => vm.irq(arg),
            Cm::Extrap => vm.extrap(hw, arg.unwrap_or("")),
            Cm::Devices => vm.devices(&cb.f[1..]),
            Cm::Line => vm.line(&cb.f[1], &cb.f[2]),
            Cm::Clock => {
                vm.clock();
                Ok(())
            }
            Cm::Advance => vm.advance(hw, &cb.f[1]),
            Cm::Alarm => vm.alarm(arg),
            Cm::Pci => vm.pci(segs, sw.as_ref(), &cb.f[1..], uname),
            Cm::Firmware => vm.firmware(&cb.f[1..]),
        })??;
        if cm == Cm::Devices {
            self.vms.devices_used();
        }
        Ok(data.len())
    }

    /// What OTRUNC (or a length-0 wstat) does to a VM file: `map` loses every mapping
    /// (cmdclearmeminfo); the other files are unchanged.
    pub(super) fn truncate(&mut self, slot: usize, gen: u64, f: VmF) -> Result<(), Error> {
        self.vm(slot, gen)?;
        if f == VmF::Map {
            self.with_vm(slot, gen, |hw, segs, vm| {
                vm.clear_map(hw, segs);
                vm.flush_ept();
            })?;
        }
        Ok(())
    }

    /// A read of VM file `f`.
    pub(super) fn read_vm(
        &mut self,
        node: &mut Node,
        slot: usize,
        gen: u64,
        f: VmF,
        off: u64,
        buf: &mut [u8],
    ) -> Result<Read, Error> {
        let p = match self.vm(slot, gen) {
            Ok(p) => p,
            // A wait that was blocked when its VM ended gets Equit, as the seed's
            // killcmds gave it.
            Err(_) if node.waiting => {
                node.waiting = false;
                return Err(EQUIT.into());
            }
            Err(e) => return Err(e),
        };
        // A pending wait (or cons read) on a VM running elsewhere with nothing to report
        // (or no output) stays pending without asking.
        let quiet = match f {
            VmF::Wait => p.quiet(),
            VmF::Cons => p.cons_quiet(node.waiting),
            VmF::BlkQ => !p.blkq_ready(),
            _ => false,
        };
        if quiet && p.cpu != 0 && !buf.is_empty() {
            node.waiting = true;
            return Ok(Read::Pending);
        }
        let waiting = node.waiting;
        let aux = &mut node.aux;
        let r = self.with_vm(slot, gen, |hw, _, vm| -> Result<Option<usize>, Error> {
            Ok(match f {
                VmF::Ctl => Some(readstr(off, buf, vm.index.to_string().as_bytes())),
                VmF::Regs => {
                    if off == 0 {
                        *aux = vm.getregs(hw)?.into_bytes();
                    }
                    Some(readstr(off, buf, aux))
                }
                VmF::Map => {
                    if off == 0 {
                        *aux = vm.mem.text().into_bytes();
                    }
                    Some(readstr(off, buf, aux))
                }
                VmF::Status => Some(readstr(off, buf, vm.status_text().as_bytes())),
                VmF::Wait => vm.wait(hw)?.map(|line| {
                    let n = line.len().min(buf.len());
                    buf[..n].copy_from_slice(&line.as_bytes()[..n]);
                    n
                }),
                VmF::Fpregs => Some(readstr(off, buf, &vm.entry.fx.0)),
                VmF::Cons => vm.cons_read(hw, buf, waiting)?,
                VmF::Blk => {
                    if off == 0 {
                        *aux = vm.disks()?.blk_text().into_bytes();
                    }
                    Some(readstr(off, buf, aux))
                }
                VmF::BlkDirty => {
                    if off == 0 {
                        *aux = vm.disks()?.take_dirty().into_bytes();
                    }
                    Some(readstr(off, buf, aux))
                }
                VmF::BlkQ => vm.blkq_read(hw, buf)?,
                VmF::Net => {
                    if off == 0 {
                        *aux = vm.nets()?.net_text().into_bytes();
                    }
                    Some(readstr(off, buf, aux))
                }
            })
        })?;
        match f {
            VmF::Wait | VmF::Cons | VmF::BlkQ => blocking(node, r),
            _ => r.map(|n| Read::Done(n.unwrap_or(0))),
        }
    }

    /// A write to VM file `f` other than ctl.
    pub(super) fn write_vm(
        &mut self,
        ctx: &Ctx,
        slot: usize,
        gen: u64,
        f: VmF,
        off: u64,
        data: &[u8],
    ) -> Result<usize, Error> {
        self.with_vm(slot, gen, |hw, segs, vm| match f {
            VmF::Ctl => Err(EGREG.into()),
            VmF::Regs => vm.setregs(hw, data),
            VmF::Map => {
                // The EPT is flushed on the VM's CPU before its next entry.
                let r = vm.set_map(hw, segs, data, ctx.uname);
                vm.flush_ept();
                r
            }
            VmF::Fpregs => Ok(vm.setfpregs(off, data)),
            VmF::Cons => {
                let k = vm.cons().ok_or(Error::from(crate::kdev::ENOCONS))?;
                match k.board.type_in(data) {
                    0 if !data.is_empty() => Err("console input full".into()),
                    n => Ok(n),
                }
            }
            VmF::BlkQ => vm.blkq_write(hw, data),
            VmF::Status | VmF::Wait | VmF::Blk | VmF::BlkDirty | VmF::Net => Err(EGREG.into()),
        })?
    }
}

/// A read that may wait (wait, cons): Ok(None) keeps it pending, and the node remembers
/// that it waits (so its VM's end can answer it).
fn blocking(node: &mut Node, r: Result<Option<usize>, Error>) -> Result<Read, Error> {
    node.waiting = matches!(r, Ok(None));
    Ok(match r? {
        Some(n) => Read::Done(n),
        None => Read::Pending,
    })
}
