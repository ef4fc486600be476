//! `step` on a CPU without the monitor trap flag (Bochs 2.7's haswell): one instruction
//! by RFLAGS.TF, whose #DB exit reads as the MTF exit it stands for.

use super::Vm;
use crate::event::internal_exit;
use crate::hw::{Hw, VmcsField};
use crate::vmcs::{self, *};
use ninep::Error;

/// An exception exit's interruption information for a hardware #DB.
const DB_EXIT_INFO: IntrInfo = IntrInfo::new(IntrKind::HwException, VEC_DB);

/// A step done with RFLAGS.TF on a CPU without the monitor trap flag, armed until the
/// step reports an exit.
#[derive(Clone, Copy, Debug)]
pub(super) struct TfStep {
    /// The guest had TF set itself: leave it (and its pending trap) alone.
    guest_tf: bool,
    /// The client's exception bitmap, when it lacked #DB and the step added it.
    bitmap: Option<u64>,
}

impl Vm {
    /// Arms a step by RFLAGS.TF (no MTF): the #DB trap after one instruction exits
    /// through the exception bitmap. Again on each entry of the step (an internal exit
    /// may come first, or the client may have written regs).
    pub(super) fn arm_tf<H: Hw>(&mut self, hw: &mut H) -> Result<(), Error> {
        let rflags = vmcs::read(hw, GUEST_RFLAGS)?;
        let t = self.tfstep.get_or_insert(TfStep {
            guest_tf: rflags & RFLAGS_TF != 0,
            bitmap: None,
        });
        vmcs::write(hw, GUEST_RFLAGS, rflags | RFLAGS_TF)?;
        let bm = vmcs::read(hw, EXC_BITMAP)?;
        if bm & 1 << VEC_DB == 0 {
            t.bitmap = Some(bm);
            vmcs::write(hw, EXC_BITMAP, bm | 1 << VEC_DB)?;
        }
        // Blocking by STI or MOV SS would defer the trap past a second instruction
        // (and with TF set, VM entry wants BS pending, which would trap before the
        // first): the step drops it. Interrupts reach the host, not the guest, here.
        let intr = vmcs::read(hw, GUEST_CANINTR)?;
        if intr & CANINTR_BLOCKED != 0 {
            vmcs::write(hw, GUEST_CANINTR, intr & !CANINTR_BLOCKED)?;
        }
        Ok(())
    }

    /// After an exit of a TF step: its own #DB (single-step, no breakpoint matched)
    /// reads as the MTF exit; any exit reported ends the step and undoes what it set.
    pub(super) fn tf_exit<H: Hw>(&mut self, hw: &mut H, reason: ExitReason) -> Result<(), Error> {
        if reason.is(EXIT_EXC) {
            let info = IntrInfo(vmcs::read(hw, VM_EXINTRINFO)? as u32);
            let qual = vmcs::read(hw, VM_EXQUALIF)?;
            self.synthetic =
                info.event() == DB_EXIT_INFO && qual & DBG_BS != 0 && qual & DBG_B0_3 == 0;
        }
        if internal_exit(reason) {
            return Ok(());
        }
        let Some(t) = self.tfstep.take() else {
            return Ok(());
        };
        if !t.guest_tf {
            let rflags = vmcs::read(hw, GUEST_RFLAGS)?;
            vmcs::write(hw, GUEST_RFLAGS, rflags & !RFLAGS_TF)?;
            // A trap-like exit may have left the step's BS pending: it must not fire
            // on the next go.
            let pend = vmcs::read(hw, GUEST_PENDING_DBG)?;
            if pend & DBG_BS != 0 {
                vmcs::write(hw, GUEST_PENDING_DBG, pend & !DBG_BS)?;
            }
        }
        if let Some(bm) = t.bitmap {
            vmcs::write(hw, EXC_BITMAP, bm)?;
        }
        Ok(())
    }

    /// The exit fields a TF step's #DB exit reads as: those of the MTF exit it stands
    /// for (reason 37, qualification 0, no event). The rest are the CPU's.
    pub(super) fn exit_override(&self) -> &'static [(VmcsField, u64)] {
        if self.synthetic {
            &[
                (VM_EXREASON, EXIT_MONTRAP as u64),
                (VM_EXQUALIF, 0),
                (VM_EXINTRINFO, 0),
            ]
        } else {
            &[]
        }
    }

    /// The exception bitmap to write for the client's `bm` (cmdextrap): while a TF step
    /// is under way it keeps #DB, and the client's bitmap comes back when the step ends.
    pub(super) fn step_bitmap(&mut self, bm: u64) -> u64 {
        let Some(t) = &mut self.tfstep else {
            return bm;
        };
        if bm & 1 << VEC_DB == 0 {
            t.bitmap = Some(bm);
            bm | 1 << VEC_DB
        } else {
            t.bitmap = None;
            bm
        }
    }
}
