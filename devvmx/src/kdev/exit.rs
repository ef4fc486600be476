//! The in-kernel devices' answers to a VM exit: port I/O to a chosen device (PCI
//! configuration space and the kernel's own PCI functions among them, the latter over the
//! VM's memory map), cpuid, MSRs and debug registers (with `cpu`, kdev/cpu.rs), and a
//! halt with interrupts on (the PIC will wake the guest). Anything else goes to the
//! client as before.

use super::{FwPort, KDev, Route, CPU, PIC};
use crate::caps::Caps;
use crate::hw::{EntryState, Hw};
use crate::mem::MemMap;
use crate::vmcs::{self, *};
use ninep::Error;

/// How the in-kernel devices took an exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answered {
    /// Not theirs: the exit goes to the client.
    No,
    /// Answered: the guest goes on after the instruction.
    Done,
    /// A halt with interrupts on, answered: the guest waits here for the PIC.
    Halted,
}

impl KDev {
    /// Answers the exit `reason` where the devices can, at guest time `now`, with the
    /// guest's registers in `entry` (written with the checks of `caps`, as the regs file
    /// writes them); an answered instruction is skipped.
    pub(crate) fn answer<H: Hw>(
        &mut self,
        hw: &mut H,
        map: &MemMap,
        entry: &mut EntryState,
        caps: &Caps,
        reason: ExitReason,
        now: u64,
    ) -> Result<Answered, Error> {
        let answered = match reason {
            r if r.is(EXIT_IO) => {
                let q = vmcs::read(hw, VM_EXQUALIF)?;
                let port = (q >> 16) as u16;
                let size = (q & IOQUAL_SIZE) as u8 + 1;
                let input = q & IOQUAL_IN != 0;
                // String and rep I/O go to the client (the tool reports them).
                if q & IOQUAL_STRING != 0 || !matches!(size, 1 | 2 | 4) {
                    return Ok(Answered::No);
                }
                let ax = entry.regs.ax;
                let v = match self.pci_route(port) {
                    Route::Config => {
                        // None: a reset through 0xcf9, the client's to see as its io exit.
                        let Some(v) = self.pci_io(port, size, input, ax as u32) else {
                            return Ok(Answered::No);
                        };
                        v
                    }
                    Route::Kernel(slot, off) => {
                        let val = (!input).then_some(ax as u32);
                        match (self.disk_at(slot), self.net_at(slot)) {
                            (Some(i), _) => self.blk_io(hw, map, i, off, size, val),
                            (_, Some(i)) => self.net_io(hw, map, i, off, size, val),
                            _ => pcdev::size_mask(size),
                        }
                    }
                    Route::Home(home) => {
                        if home != port {
                            self.qual = Some(q & !(0xffff << 16) | u64::from(home) << 16);
                        }
                        return Ok(Answered::No);
                    }
                    Route::Nothing => {
                        self.counts.io += 1;
                        pcdev::size_mask(size)
                    }
                    Route::No => match self.claims(port) {
                        Some(dev) => self.io(dev, port, size, input, ax as u32, now),
                        // A firmware machine has no port for the client but resets.
                        None => match self.firmware_io(port, size, input, ax as u32, now) {
                            Some(FwPort::Value(v)) => v,
                            Some(FwPort::Reset) | None => return Ok(Answered::No),
                        },
                    },
                };
                if self.board.stop.take().is_some() {
                    // A reset through the i8042: the client's to see, as its io exit.
                    self.board.kbd.reset = false;
                    return Ok(Answered::No);
                }
                if input {
                    entry.regs.ax = pcdev::merge_in(ax, size, v);
                }
                Answered::Done
            }
            r if r.is(EXIT_CPUID) && self.has(CPU) => {
                self.cpuid(hw, entry);
                Answered::Done
            }
            r if r.is(EXIT_RDMSR) && self.has(CPU) => match self.rdmsr(hw, entry)? {
                true => Answered::Done,
                false => return Ok(Answered::No),
            },
            r if r.is(EXIT_WRMSR) && self.has(CPU) => match self.wrmsr(hw, entry, caps)? {
                true => Answered::Done,
                false => return Ok(Answered::No),
            },
            r if r.is(EXIT_MOVDR) && self.has(CPU) => match self.movdr(hw, entry, caps)? {
                true => Answered::Done,
                false => return Ok(Answered::No),
            },
            r if r.is(EXIT_HLT) && self.has(PIC) => {
                if vmcs::read(hw, GUEST_RFLAGS)? & RFLAGS_IF == 0 {
                    return Ok(Answered::No);
                }
                self.halt(now);
                self.counts.hlt += 1;
                Answered::Halted
            }
            _ => return Ok(Answered::No),
        };
        let rip = vmcs::read(hw, GUEST_RIP)?;
        let ilen = vmcs::read(hw, VM_EXINSTRLEN)?;
        vmcs::write(hw, GUEST_RIP, rip.wrapping_add(ilen))?;
        // The instruction is done, so an STI or MOV SS shadow it sat in is over, as the
        // CPU ends it: `sti; hlt` woken here takes its interrupt before the next
        // instruction (a `cli` there would otherwise shut it out).
        let intr = vmcs::read(hw, GUEST_CANINTR)?;
        if intr & CANINTR_BLOCKED != 0 {
            vmcs::write(hw, GUEST_CANINTR, intr & !CANINTR_BLOCKED)?;
        }
        Ok(answered)
    }
}
