//! One VM entry (the body of the seed's vmxproc loop): what goes in on entry (a posted
//! exception or interrupt, an in-kernel interrupt, flushes, the step), the entry itself,
//! and what the exit leaves for `wait`.

use super::{State, Vm, FLUSHEPT, FLUSHVPID, GOTEXIT, GOTIRQACK, POSTEX, POSTIRQ, STEP};
use crate::event::{internal_exit, VmIntr};
use crate::hw::Hw;
use crate::kdev::Answered;
use crate::plan9::{truncate, ERRMAX};
use crate::vmcs::{self, *};
use alloc::string::String;
use ninep::Error;

/// Nanoseconds a guest runs before the host regains control, through the VMX-preemption
/// timer (TSC ticks at `Hw::tsc_hz`, shifted right by the CPU's rate): about 2 ms, which
/// under Bochs (the harness's 8 MHz TSC, rate 0) is the 0x4000 timer units this crate
/// used to write. Host interrupts also end a run (external-interrupt exiting), but Bochs
/// 2.7 does not exit for them while the guest's IF is clear, so the timer bounds every
/// entry.
const PREEMPT_QUANTUM_NS: u64 = 2_048_000;

/// Entries in a row one `run` makes while the in-kernel devices answer every exit,
/// before the host serves 9P again. It also stops once their answers took a
/// [`PREEMPT_QUANTUM_NS`] of host time (a virtio notify's work is cut into budgets,
/// `kdev::VIRTIO_BUDGET`, served one before each entry): a guest's device traffic
/// cannot starve 9P service.
const INSIDE_MAX: usize = 256;

impl Vm {
    /// One entry of a running VM (vmxproc's loop body). An error kills the VM with it.
    /// With in-kernel devices, the guest is entered again at once (up to [`INSIDE_MAX`]
    /// times) while they answer its exits, and a halted guest waits here for its PIC.
    pub(crate) fn run<H: Hw>(&mut self, hw: &mut H) {
        let quantum = u128::from(PREEMPT_QUANTUM_NS) * u128::from(hw.tsc_hz()) / 1_000_000_000;
        let mut answering = 0u128;
        for _ in 0..INSIDE_MAX {
            if answering > quantum || self.state != State::Running {
                return;
            }
            // Frames for the VM's in-kernel cards go in before the wake-up test: one
            // may raise the interrupt a halted guest waits for; so does the next budget
            // of the work a virtio notify left (counted as device work).
            if let Some(k) = self.kdev.as_mut() {
                let start = hw.rdtsc();
                k.net_poll(hw, &self.mem);
                k.blk_resume(hw, &self.mem);
                answering += u128::from(hw.rdtsc().wrapping_sub(start));
            }
            if !self.wake(hw) {
                return;
            }
            match self.enter(hw) {
                Ok(true) => answering += u128::from(hw.rdtsc().wrapping_sub(self.exit_tsc)),
                Ok(false) => return,
                Err(e) => {
                    let mut s = String::from(e.as_str());
                    truncate(&mut s, ERRMAX - 1);
                    self.errstr = s;
                    self.state = State::Dead;
                    return;
                }
            }
        }
    }

    /// Whether a guest halted here may run: when the PIC has an interrupt for it, or
    /// the client posted one.
    fn wake<H: Hw>(&mut self, hw: &mut H) -> bool {
        if !self.kdev.as_ref().is_some_and(|k| k.halted) {
            return true;
        }
        let now = self.guest_ns(hw);
        let posted = self.onentry & POSTIRQ != 0;
        let Some(k) = self.kdev.as_mut() else {
            return true;
        };
        if posted || k.pending(now).is_some() {
            k.wake(now);
            return true;
        }
        false
    }

    /// One entry; true when the in-kernel devices answered the exit (enter again).
    fn enter<H: Hw>(&mut self, hw: &mut H) -> Result<bool, Error> {
        self.load(hw)?;
        let mut procb = self.procbctls;
        // The seed or'ed MTF into its saved default controls, so the step took effect
        // only on the entry after and every later entry single-stepped for good.
        if self.onentry & STEP != 0 {
            if self.mtf {
                procb |= PROCB_MONTRAP;
            } else {
                self.arm_tf(hw)?;
            }
        }
        let mut injected = false;
        if self.onentry & POSTEX != 0 {
            self.inject(hw, self.exc)?;
            self.onentry &= !POSTEX;
            injected = true;
        }
        // An in-kernel interrupt whose delivery the last exit cut short goes in again
        // (the PIC already counts it as taken).
        let mut kinjected = None;
        if let Some(v) = self.kdev.as_mut().and_then(|k| k.redeliver.take()) {
            if injected {
                procb |= PROCB_IRQWIN;
                if let Some(k) = self.kdev.as_mut() {
                    k.redeliver = Some(v);
                }
            } else {
                self.inject(hw, VmIntr::external(v))?;
                injected = true;
                kinjected = Some(v);
            }
        }
        if self.onentry & POSTIRQ != 0 && self.onentry & STEP == 0 {
            // The seed tested POSTEX after clearing it, so an interrupt could overwrite
            // the exception injected on the same entry; it waits for the next window.
            let rflags = vmcs::read(hw, GUEST_RFLAGS)?;
            let canintr = vmcs::read(hw, GUEST_CANINTR)?;
            if !injected && rflags & RFLAGS_IF != 0 && canintr & CANINTR_BLOCKED == 0 {
                self.inject(hw, self.irq)?;
                self.onentry &= !POSTIRQ;
                self.got |= GOTIRQACK;
                self.irqack = self.irq;
            } else {
                procb |= PROCB_IRQWIN;
            }
        } else if self.onentry & STEP == 0 && self.kdev.is_some() {
            let now = self.guest_ns(hw);
            if let Some(v) = self.kdev.as_mut().and_then(|k| k.pending(now)) {
                // The in-kernel PIC's interrupt: injected as the client's `irq` would
                // be, acknowledged here (no `*ack` line).
                let rflags = vmcs::read(hw, GUEST_RFLAGS)?;
                let canintr = vmcs::read(hw, GUEST_CANINTR)?;
                if !injected && rflags & RFLAGS_IF != 0 && canintr & CANINTR_BLOCKED == 0 {
                    self.inject(hw, VmIntr::external(v))?;
                    kinjected = Some(v);
                    if let Some(k) = self.kdev.as_mut() {
                        k.board.pic.ack(v);
                        k.counts.irq += 1;
                    }
                } else {
                    procb |= PROCB_IRQWIN;
                }
            }
        }
        if self.onentry & FLUSHVPID != 0 {
            hw.invvpid(self.vpid)
                .map_err(|_| Error::from("invvpid failed"))?;
            self.onentry &= !FLUSHVPID;
        }
        if self.onentry & FLUSHEPT != 0 {
            hw.invept(self.eptp())
                .map_err(|_| Error::from("invept failed"))?;
            self.onentry &= !FLUSHEPT;
        }
        vmcs::write(hw, PROCB_CTLS, procb as u64)?;
        if let Some(rate) = self.preempt {
            let ticks = rate.ticks_in_ns(PREEMPT_QUANTUM_NS, hw.tsc_hz());
            vmcs::write(hw, VMX_PREEMPT_TIMER, ticks.into())?;
        }
        self.got &= !GOTEXIT;
        self.synthetic = false;

        let start = hw.rdtsc();
        if let Some(end) = self.tsc_end {
            // Hide the time spent outside the guest (the seed's sign was inverted, so
            // the guest's clock ran ahead by that time instead).
            self.tscoffset = self.tscoffset.wrapping_sub(start.wrapping_sub(end));
            vmcs::write(hw, VMCS_TSC_OFFSET, self.tscoffset)?;
        }
        let rc = hw.enter(self.launched, &mut self.entry);
        let end = hw.rdtsc();
        self.exit_tsc = end;
        if self.procbctls & PROCB_TSCOFFSET != 0 {
            self.tsc_end = Some(end);
        }
        rc.map_err(|_| Error::from("vmlaunch failed"))?;
        let reason = ExitReason(vmcs::read(hw, VM_EXREASON)? as u32);
        // A failed entry leaves the VMCS unlaunched: the next try must VMLAUNCH again.
        if !reason.entry_failed() {
            self.launched = true;
        }
        if self.tfstep.is_some() {
            self.tf_exit(hw, reason)?;
        }
        if let Some(k) = self.kdev.as_mut() {
            // A rewritten io qualification was for the exit before this one.
            k.qual = None;
        }
        if let Some(v) = kinjected {
            // An exit during the interrupt's delivery (an EPT fault on the IDT or stack,
            // say) leaves it in the IDT-vectoring information: deliver it again.
            let idt = IntrInfo(vmcs::read(hw, VM_IDTVECINFO)? as u32);
            if idt.event() == VmIntr::external(v).info {
                if let Some(k) = self.kdev.as_mut() {
                    k.redeliver = Some(v);
                }
            }
        }
        if self.onentry & STEP == 0 && self.kdev.is_some() && self.inside(hw, reason)? {
            return Ok(true);
        }
        // The client's alarm: an internal exit past it is reported (an extension).
        let alarm = internal_exit(reason) && self.alarm.is_some_and(|a| self.guest_ns(hw) >= a);
        if alarm {
            self.alarm = None;
        }
        self.processexit(reason, alarm);
        Ok(false)
    }

    /// Lets the in-kernel devices answer the exit; true when they did (enter again).
    fn inside<H: Hw>(&mut self, hw: &mut H, reason: ExitReason) -> Result<bool, Error> {
        let now = self.guest_ns(hw);
        let Some(k) = self.kdev.as_mut() else {
            return Ok(false);
        };
        match k.answer(hw, &self.mem, &mut self.entry, &self.caps, reason, now)? {
            Answered::No => Ok(false),
            Answered::Done => Ok(true),
            Answered::Halted => {
                // Time passes for a halted guest: its clock is not held back while it
                // waits here.
                self.tsc_end = None;
                Ok(true)
            }
        }
    }

    fn inject<H: Hw>(&mut self, hw: &mut H, e: VmIntr) -> Result<(), Error> {
        vmcs::write(hw, VMENTRY_INTRINFO, e.info.0 as u64)?;
        vmcs::write(hw, VMENTRY_INTRCODE, e.code as u64)?;
        vmcs::write(hw, VMENTRY_INTRILEN, e.ilen as u64)
    }

    fn processexit(&mut self, reason: ExitReason, alarm: bool) {
        if internal_exit(reason) && !alarm {
            return;
        }
        self.state = State::Ready;
        self.got |= GOTEXIT;
        self.onentry &= !STEP;
    }
}
