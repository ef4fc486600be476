//! Exit emulation: what each exit asks of the CPU (io, cpuid, MSRs, control and debug
//! registers, xsetbv, hlt), done on the register cache and the machine, after vmx(1)'s
//! exith.c. Registers changed here ride on the next `go`.

use super::{Outcome, Runner, VmMem};
use crate::cpu::{self, Msr};
use crate::exit::{Exit, Io};
use crate::regs::{Reg, Regs};
use crate::vmfs::Vmfs;
use std::collections::HashMap;

/// RFLAGS.IF.
const FLAGS_IF: u64 = 1 << 9;

/// Where an MSR lives: pcdev's [`Msr`] with its register as a [`Reg`].
enum Place {
    Reg(Reg),
    Kept(u64),
    Zero,
}

/// The guest CPU as the handlers see it: the register cache, read through the regs file
/// when a handler needs a register the wait line did not carry, and the MSRs kept here.
#[derive(Clone, Debug, Default)]
pub(super) struct Cpu {
    pub(super) regs: Regs,
    kept: HashMap<u32, u64>,
}

impl<V: Vmfs> Runner<'_, V> {
    pub(super) fn get(&mut self, r: Reg) -> Result<u64, String> {
        if let Some(v) = self.cpu.regs.known(r) {
            return Ok(v);
        }
        let text = self
            .vm
            .read_regs()
            .map_err(|e| format!("reading regs: {e}"))?;
        self.cpu.regs.load(&text)?;
        self.cpu
            .regs
            .known(r)
            .ok_or_else(|| format!("the hypervisor has no register {:?}", r.name()))
    }

    pub(super) fn set(&mut self, r: Reg, v: u64) {
        self.cpu.regs.set(r, v);
    }

    pub(super) fn skip(&mut self, e: &Exit) -> Result<(), String> {
        let pc = self.get(Reg::Pc)?;
        self.set(Reg::Pc, pc.wrapping_add(e.ilen));
        Ok(())
    }

    fn exc(&mut self, what: &str) -> Result<(), String> {
        self.ctl(&format!("exc {what}"))
    }

    /// Handles one exit; Some when the run must end.
    pub(super) fn handle(&mut self, e: &Exit) -> Result<Option<Outcome>, String> {
        if !e.is_notification() {
            self.running = false;
            for (r, v) in [(Reg::Pc, e.pc), (Reg::Sp, e.sp), (Reg::Ax, e.ax)] {
                if let Some(v) = v {
                    self.cpu.regs.poke(r, v);
                }
            }
        }
        match e.name.as_str() {
            "io" => return self.io(e),
            ".cpuid" => self.cpuid(e)?,
            ".hlt" => return self.hlt(e),
            "*ack" => self.machine.irq_ack(e.qual as u8),
            // Exits the hypervisor keeps, reported when its alarm went off: the devices'
            // deadline has come (the clock moved on with the line); the guest resumes.
            "extirq" | "preempt" | "irqwin" | "nmiwin" => self.alarm = None,
            ".rdmsr" | ".wrmsr" => self.msr(e)?,
            "movcr" => self.movcr(e)?,
            ".movdr" => self.movdr(e)?,
            "#db" => {
                let dr6 = self.get(Reg::Dr6)?;
                self.set(Reg::Dr6, dr6 | e.qual);
                self.exc("#db")?;
            }
            ".xsetbv" => {
                if self.get(Reg::Cx)? as u32 == 0 {
                    let v = self.edx_eax()?;
                    self.set(Reg::Xcr0, v);
                    self.skip(e)?;
                } else {
                    self.exc("#gp,0")?;
                }
            }
            "eptfault" => {
                let why = format!(
                    "{} guest-physical address {:#x} (nothing is mapped there and no device is emulated)",
                    if e.qual & 2 != 0 { "write to" } else { "access to" },
                    e.pa.unwrap_or(0)
                );
                return Ok(Some(Outcome::Unhandled(self.diagnose(e, &why))));
            }
            n if n.starts_with('.') => {
                let msg = format!(
                    "unknown instruction {} at pc {:#x}: #ud injected",
                    &n[1..],
                    e.pc.unwrap_or(0)
                );
                self.warn(msg);
                self.exc("#ud")?;
            }
            n if n.starts_with('*') => self.warn(format!("unknown notification {n} ignored")),
            n => {
                let why = match n {
                    "triplef" => "triple fault".to_string(),
                    _ if n.starts_with('!') => format!("VM entry failed ({})", &n[1..]),
                    _ if n.starts_with('#') => format!("exception {n} in the guest"),
                    _ => format!("exit {n} is not handled"),
                };
                return Ok(Some(Outcome::Unhandled(self.diagnose(e, &why))));
            }
        }
        Ok(None)
    }

    /// edx:eax as one value (wrmsr, xsetbv).
    fn edx_eax(&mut self) -> Result<u64, String> {
        Ok((self.get(Reg::Dx)? & 0xffff_ffff) << 32 | (self.get(Reg::Ax)? & 0xffff_ffff))
    }

    fn io(&mut self, e: &Exit) -> Result<Option<Outcome>, String> {
        let io = Io::decode(e.qual);
        if io.string {
            return self.string_io(e, io);
        }
        let ax = self.get(Reg::Ax)?;
        if io.input {
            let v = self.machine.io_in(io.port, io.size);
            self.set(Reg::Ax, pcdev::merge_in(ax, io.size, v));
        } else {
            self.machine
                .io_out_to(io.port, io.size, ax as u32, &mut VmMem(&mut self.vm));
        }
        self.skip(e)?;
        Ok(None)
    }

    fn cpuid(&mut self, e: &Exit) -> Result<(), String> {
        let leaf = self.get(Reg::Ax)? as u32;
        let sub = self.get(Reg::Cx)? as u32;
        let (r, known) = cpu::cpuid(leaf, sub);
        if !known {
            self.warn(format!("unknown cpuid leaf {leaf:#x}: zeros"));
        }
        for (reg, v) in [Reg::Ax, Reg::Bx, Reg::Cx, Reg::Dx].into_iter().zip(r) {
            self.set(reg, u64::from(v));
        }
        self.skip(e)
    }

    fn hlt(&mut self, e: &Exit) -> Result<Option<Outcome>, String> {
        self.skip(e)?;
        if self.machine.irq_posted() {
            return Ok(None);
        }
        // Nothing pending: with interrupts off nothing ever will be.
        if self.get(Reg::Flags)? & FLAGS_IF == 0 {
            let pc = self.get(Reg::Pc)?;
            return Ok(Some(Outcome::Halted { pc }));
        }
        self.halted = true;
        if let Some(mut g) = self.guest_clock {
            g.halt((self.clock)().0);
            self.guest_clock = Some(g);
        }
        Ok(None)
    }

    fn msr(&mut self, e: &Exit) -> Result<(), String> {
        let rd = e.name == ".rdmsr";
        let idx = self.get(Reg::Cx)? as u32;
        // pcdev names the registers behind MSRs as the regs file does (a test in
        // regs.rs checks each is a [`Reg`]).
        let msr = cpu::msr(idx).map(|m| match m {
            Msr::Reg(n) => Reg::from_name(n).map_or(Place::Zero, Place::Reg),
            Msr::Kept(v) => Place::Kept(v),
            Msr::Zero => Place::Zero,
        });
        if rd {
            let v = match msr {
                Some(Place::Reg(r)) => self.get(r)?,
                Some(Place::Kept(init)) => *self.cpu.kept.get(&idx).unwrap_or(&init),
                Some(Place::Zero) => 0,
                None => {
                    self.warn(format!("read from unknown MSR {idx:#x}: 0"));
                    0
                }
            };
            self.set(Reg::Ax, v & 0xffff_ffff);
            self.set(Reg::Dx, v >> 32);
        } else {
            let v = self.edx_eax()?;
            match msr {
                Some(Place::Reg(r)) => self.set(r, v),
                Some(Place::Kept(_)) => {
                    self.cpu.kept.insert(idx, v);
                }
                Some(Place::Zero) => {}
                None => self.warn(format!("write to unknown MSR {idx:#x} ignored")),
            }
        }
        self.skip(e)
    }

    fn movcr(&mut self, e: &Exit) -> Result<(), String> {
        let q = e.qual;
        let gpr = Reg::GPR[(q >> 8 & 15) as usize];
        match (q & 15, q >> 4 & 3) {
            (0, 0) => {
                let v = self.get(gpr)?;
                self.set(Reg::Cr0Real, v);
            }
            (0, 1) => {
                let v = self.get(Reg::Cr0Fake)?;
                self.set(gpr, v);
            }
            (0, 2) => {
                let v = self.get(Reg::Cr0Real)?;
                self.set(Reg::Cr0Real, v & !8);
            }
            (4, 0) => {
                let v = self.get(gpr)?;
                self.set(Reg::Cr4Real, v);
            }
            (4, 1) => {
                let v = self.get(Reg::Cr4Fake)?;
                self.set(gpr, v);
            }
            (cr, op) => {
                self.warn(format!(
                    "control register access CR{cr} type {op} not emulated: #ud injected"
                ));
                return self.exc("#ud");
            }
        }
        self.skip(e)
    }

    fn movdr(&mut self, e: &Exit) -> Result<(), String> {
        const DR: [Option<Reg>; 8] = [
            Some(Reg::Dr0),
            Some(Reg::Dr1),
            Some(Reg::Dr2),
            Some(Reg::Dr3),
            None,
            None,
            Some(Reg::Dr6),
            Some(Reg::Dr7),
        ];
        let q = e.qual;
        let Some(dr) = DR[(q & 7) as usize] else {
            return self.exc("#gp,0");
        };
        let gpr = Reg::GPR[(q >> 8 & 15) as usize];
        if q & 16 != 0 {
            let v = self.get(dr)?;
            self.set(gpr, v);
        } else {
            let v = self.get(gpr)?;
            self.set(dr, v);
        }
        self.skip(e)
    }
}
