//! One virtual machine: its VMCS and the frames around it (vmxstart, vmcsinit), the
//! ctl commands, the wait and status texts, and one VM entry (the body of the seed's
//! vmxproc loop). The seed ran commands on a kernel process per VM; here they run when
//! the request arrives and the guest runs only inside `Namespace::run_guests`.

use crate::ept::Ept;
use crate::event::{ackline, eventparse, internal_exit, waitline, ExitInfo, VmIntr};
use crate::hw::{alloc_array, EntryState, Frame, FxArea, Hw, Msr, VmcsField, VmxFail, PAGE};
use crate::kdev::{self, KDev};
use crate::mem::MemMap;
use crate::plan9::{
    quote, strtoul, strtoull_whole, truncate, Tail, EBADARG, EGREG, ENOMEM, ERRMAX,
};
use crate::regs;
use crate::segment::Segments;
use crate::vmcs::{self, *};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use ninep::Error;

/// VMX-preemption timer units a guest runs before the host regains control. Host
/// interrupts also end a run (external-interrupt exiting), but Bochs 2.7 does not exit for
/// them while the guest's IF is clear, so the timer bounds every entry.
pub const PREEMPT_QUANTUM: u64 = 0x4000;

/// Entries in a row one `run` makes while the in-kernel devices answer every exit,
/// before the host serves 9P again.
pub const INSIDE_MAX: usize = 256;

/// Room in one frame for the MSR load/store areas (16 bytes an entry). The seed's
/// MAXMSR was 512 over two pages that need not be contiguous here.
pub const MAXMSR: usize = PAGE / 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Init,
    Ready,
    Running,
    Dead,
    Ending,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Init => "init",
            State::Ready => "ready",
            State::Running => "running",
            State::Dead => "dead",
            State::Ending => "ending",
        }
    }
}

// onentry
const FLUSHVPID: u32 = 1;
const FLUSHEPT: u32 = 2;
const STEP: u32 = 4;
const POSTEX: u32 = 8;
const POSTIRQ: u32 = 16;
// got
const GOTEXIT: u32 = 1;
const GOTIRQACK: u32 = 2;

/// An exception exit's interruption information for a hardware #DB.
const DB_EXIT_INFO: IntrInfo = IntrInfo::new(IntrKind::HwException, VEC_DB);

/// Blocking by STI or MOV SS: the guest cannot take an interrupt now.
const CANINTR_BLOCKED: u64 = CANINTR_STI | CANINTR_MOVSS;

/// A step done with RFLAGS.TF on a CPU without the monitor trap flag, armed until the
/// step reports an exit.
#[derive(Clone, Copy, Debug)]
struct TfStep {
    /// The guest had TF set itself: leave it (and its pending trap) alone.
    guest_tf: bool,
    /// The client's exception bitmap, when it lacked #DB and the step added it.
    bitmap: Option<u64>,
}

pub struct Vm {
    pub index: usize,
    pub gen: u64,
    pub state: State,
    pub errstr: String,
    /// Its own frames besides the EPT's; `None` once given back (at quit).
    frames: Option<VmFrames>,
    /// The EPT, which owns its tables' frames.
    pub ept: Ept,
    pub entry: EntryState,
    pub vpid: u16,
    pub mem: MemMap,
    /// When the VM was made ([`Hw::now`]): its directory's and files' times.
    pub made: u32,
    tscoffset: u64,
    /// vmcsinit's adjusted processor-based controls: what every entry starts from.
    procbctls: u32,
    launched: bool,
    onentry: u32,
    got: u32,
    exc: VmIntr,
    irq: VmIntr,
    irqack: VmIntr,
    nmsr: usize,
    /// The TSC at the last exit, to hide the time spent outside the guest.
    tsc_end: Option<u64>,
    /// The VMX-preemption timer is on (pin-based control 6 allowed).
    preempt: bool,
    /// The CPU has the monitor trap flag (Bochs 2.7's haswell has not): else `step`
    /// single-steps with RFLAGS.TF.
    mtf: bool,
    /// A TF step is armed in the VMCS.
    tfstep: Option<TfStep>,
    /// The last exit was a TF step's #DB, reported as the MTF exit it stands for.
    synthetic: bool,
    /// In-kernel devices, after a `devices` message.
    pub kdev: Option<Box<KDev>>,
    /// Exit lines carry the guest's clock (after a `clock` message).
    clock: bool,
    /// The `alarm` message's time (guest ns): the first internal exit at or after it
    /// goes to the client.
    alarm: Option<u64>,
}

/// The frames a VM owns besides its EPT tables.
struct VmFrames {
    vmcs: Frame,
    /// The MSR bitmap.
    msrbits: Frame,
    /// The MSR load/store areas: the host's (loaded at exit) and the guest's.
    msrhost: Frame,
    msrguest: Frame,
}

/// The initial FXSAVE image of a freshly initialised FPU (fpinit): FCW 0x37f, MXCSR 0x1f80.
fn fpinit() -> FxArea {
    let mut fx = FxArea::default();
    fx.0[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
    fx.0[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
    fx
}

impl Vm {
    /// vmxstart after VMXON plus vmcsinit: a ready VM, or an error with every frame it
    /// took given back.
    pub fn create<H: Hw>(hw: &mut H, index: usize, gen: u64, vpid: u16) -> Result<Vm, Error> {
        let [vmcs, pml4, msrbits, msrhost, msrguest] =
            alloc_array(hw).ok_or(Error::from(ENOMEM))?;
        let mut vm = Vm {
            index,
            gen,
            state: State::Init,
            errstr: String::new(),
            frames: Some(VmFrames {
                vmcs,
                msrbits,
                msrhost,
                msrguest,
            }),
            ept: Ept::new(pml4),
            entry: EntryState::default(),
            vpid,
            mem: MemMap::default(),
            made: hw.now(),
            tscoffset: 0,
            procbctls: 0,
            launched: false,
            onentry: 0,
            got: 0,
            exc: VmIntr::default(),
            irq: VmIntr::default(),
            irqack: VmIntr::default(),
            nmsr: 0,
            tsc_end: None,
            preempt: false,
            mtf: false,
            tfstep: None,
            synthetic: false,
            kdev: None,
            clock: false,
            alarm: None,
        };
        match vm.start(hw) {
            Ok(()) => {
                vm.state = State::Ready;
                Ok(vm)
            }
            Err(e) => {
                vm.vmclear(hw);
                vm.free_frames(hw);
                Err(e)
            }
        }
    }

    /// Its frames, while it has them.
    fn frames(&self) -> Result<&VmFrames, Error> {
        self.frames.as_ref().ok_or(Error::from(EGREG))
    }

    fn start<H: Hw>(&mut self, hw: &mut H) -> Result<(), Error> {
        let basic = hw.rdmsr(VMX_BASIC_MSR).unwrap_or(0);
        let vmcs = &self.frames()?.vmcs;
        hw.frame(vmcs)[0..4].copy_from_slice(&(basic as u32).to_le_bytes());
        hw.vmclear(vmcs)
            .map_err(|_| Error::from("vmclear failed"))?;
        self.load(hw)?;
        self.vmcsinit(hw)
    }

    /// Makes this VM's VMCS the current one.
    pub fn load<H: Hw>(&self, hw: &mut H) -> Result<(), Error> {
        let vmcs = self.frames.as_ref().map(|f| &f.vmcs);
        vmcs.map_or(Err(VmxFail), |f| hw.vmptrld(f))
            .map_err(|_| Error::from("vmptrld failed"))
    }

    /// Does it still hold its frames (it has not quit)?
    pub fn has_frames(&self) -> bool {
        self.frames.is_some()
    }

    /// VMCLEAR of its VMCS (a failure is ignored: there is nothing left to undo).
    pub fn vmclear<H: Hw>(&self, hw: &mut H) {
        if let Some(f) = &self.frames {
            let _ = hw.vmclear(&f.vmcs);
        }
    }

    /// Returns the VM's own frames (the map must have been cleared first).
    pub fn free_frames<H: Hw>(&mut self, hw: &mut H) {
        let pml4 = self.ept.release(hw);
        if let Some(f) = self.frames.take() {
            hw.free_frame(f.vmcs);
            if let Some(pml4) = pml4 {
                hw.free_frame(pml4);
            }
            hw.free_frame(f.msrbits);
            hw.free_frame(f.msrhost);
            hw.free_frame(f.msrguest);
        }
    }

    /// cmdclearmeminfo: every mapping and EPT table gone.
    pub fn clear_map<H: Hw>(&mut self, hw: &mut H, segs: &mut Segments) {
        self.mem.clear(hw, segs, &mut self.ept);
    }

    /// cmdsetmeminfo on this VM's map and EPT.
    pub fn set_map<H: Hw>(
        &mut self,
        hw: &mut H,
        segs: &mut Segments,
        data: &[u8],
        uname: &str,
    ) -> Result<usize, Error> {
        self.mem.set(hw, segs, &mut self.ept, data, uname)
    }

    pub fn eptp(&self) -> u64 {
        self.ept.pml4() | EPTP_WALK4
    }

    fn vmcsinit<H: Hw>(&mut self, hw: &mut H) -> Result<(), Error> {
        let w = |hw: &mut H, f: VmcsField, v: u64| vmcs::write(hw, f, v);
        self.entry = EntryState::default();
        self.launched = false;
        self.onentry = 0;

        let basic = vmcs::rdmsr(hw, VMX_BASIC_MSR)?;
        // The seed read VMX_PINB_CTLS_MSR once more here and dropped the value.
        let (procb_ctls, pinb_ctls) = if basic & VMX_BASIC_TRUECTLS != 0 {
            (
                vmcs::rdmsr(hw, VMX_TRUE_PROCB_CTLS_MSR)?,
                vmcs::rdmsr(hw, VMX_TRUE_PINB_CTLS_MSR)?,
            )
        } else {
            (
                vmcs::rdmsr(hw, VMX_PROCB_CTLS_MSR)?,
                vmcs::rdmsr(hw, VMX_PINB_CTLS_MSR)?,
            )
        };

        let mut x = pinb_ctls as u32 | PINB_DEFAULT1;
        x |= PINB_EXITIRQ | PINB_EXITNMI;
        // Not in the seed: the preemption timer, where the CPU has it.
        x |= PINB_PREEMPT;
        x &= (pinb_ctls >> 32) as u32;
        w(hw, PINB_CTLS, x as u64)?;
        self.preempt = x & PINB_PREEMPT != 0;

        let msr = vmcs::rdmsr(hw, VMX_PROCB_CTLS_MSR)?;
        let mut x = procb_ctls as u32 | PROCB_DEFAULT1;
        x |= PROCB_TSCOFFSET | PROCB_EXITMWAIT | PROCB_EXITMONITOR | PROCB_EXITHLT;
        x |= PROCB_EXITMOVDR | PROCB_EXITIO | PROCB_MSRBITMAP;
        x |= PROCB_USECTLS2;
        x &= (msr >> 32) as u32;
        w(hw, PROCB_CTLS, x as u64)?;
        self.procbctls = x;
        self.mtf = (msr >> 32) as u32 & PROCB_MONTRAP != 0;

        let msr = vmcs::rdmsr(hw, VMX_PROCB_CTLS2_MSR)?;
        let x = (PROCB_EPT | PROCB_VPID | PROCB_UNRESTR) & (msr >> 32) as u32;
        w(hw, PROCB_CTLS2, x as u64)?;

        let msr = vmcs::rdmsr(hw, VMX_VMEXIT_CTLS_MSR)?;
        let mut x = msr as u32 | VMEXIT_HOST64;
        x |= VMEXIT_LD_IA32_PAT | VMEXIT_LD_IA32_EFER | VMEXIT_ST_DEBUG | VMEXIT_ST_IA32_EFER;
        x &= (msr >> 32) as u32;
        w(hw, VMEXIT_CTLS, x as u64)?;

        let msr = vmcs::rdmsr(hw, VMX_VMENTRY_CTLS_MSR)?;
        let mut x = msr as u32;
        x |= VMENTRY_LD_IA32_PAT | VMENTRY_LD_IA32_EFER | VMENTRY_LD_DEBUG;
        x &= (msr >> 32) as u32;
        w(hw, VMENTRY_CTLS, x as u64)?;

        w(hw, CR3_TARGCNT, 0)?;
        w(hw, VMENTRY_INTRINFO, 0)?;
        w(hw, VMCS_LINK, u64::MAX)?;

        hw.write_host_state()
            .map_err(|_| Error::from("vmcswrite failed (host state)"))?;

        w(hw, EXC_BITMAP, 1 << VEC_MC | 1 << VEC_DB)?;
        w(hw, PFAULT_MASK, 0)?;
        w(hw, PFAULT_MATCH, 0)?;

        for f in [
            GUEST_CSBASE,
            GUEST_DSBASE,
            GUEST_ESBASE,
            GUEST_FSBASE,
            GUEST_GSBASE,
            GUEST_SSBASE,
        ] {
            w(hw, f, 0)?;
        }
        for f in [
            GUEST_CSLIMIT,
            GUEST_DSLIMIT,
            GUEST_ESLIMIT,
            GUEST_FSLIMIT,
            GUEST_GSLIMIT,
            GUEST_SSLIMIT,
        ] {
            w(hw, f, u64::MAX)?;
        }
        let code = (SEGG | SEGD | SEGP | SEGEXEC | SEGR) >> 8 | 1;
        let data = (SEGG | SEGB | SEGP | SEGDATA | SEGW) >> 8 | 1;
        w(hw, GUEST_CSPERM, code as u64)?;
        for f in [
            GUEST_DSPERM,
            GUEST_ESPERM,
            GUEST_FSPERM,
            GUEST_GSPERM,
            GUEST_SSPERM,
        ] {
            w(hw, f, data as u64)?;
        }
        w(hw, GUEST_LDTRPERM, SEGUNUSABLE as u64)?;

        let (cr0, cr4) = (hw.cr0(), hw.cr4());
        w(hw, GUEST_CR0MASK, CR0KERNEL)?;
        w(hw, GUEST_CR4MASK, CR4KERNEL)?;
        w(hw, GUEST_CR0, cr0 & CR0KERNEL | CR0_PE | CR0_ET | CR0_NE)?;
        w(hw, GUEST_CR3, 0)?;
        w(hw, GUEST_CR4, cr4 & CR4KERNEL)?;
        w(
            hw,
            GUEST_CR0SHADOW,
            cr0 & CR0KERNEL | CR0_PE | CR0_ET | CR0_NE,
        )?;
        w(hw, GUEST_CR4SHADOW, cr4 & !CR4VMXE & CR4KERNEL)?;

        w(hw, GUEST_IA32_PAT, 0x0007_0406_0007_0406)?;
        w(hw, GUEST_IA32_EFER, 0)?;

        w(hw, GUEST_TRBASE, 0)?;
        w(hw, GUEST_TRLIMIT, 0xffff)?;
        w(hw, GUEST_TRPERM, ((SEGTSS | SEGP) >> 8 | 2) as u64)?;

        w(hw, VM_EPTP, self.eptp())?;
        w(hw, VM_VPID, self.vpid as u64)?;

        w(hw, GUEST_RFLAGS, RFLAGS_RSVD1)?;

        self.onentry = FLUSHVPID | FLUSHEPT;

        self.entry.fx = fpinit();
        self.entry.xcr0 = hw.host_xcr0() & 1;

        let f = self.frames()?;
        let (guest, host, bits) = (f.msrguest.pa(), f.msrhost.pa(), f.msrbits.pa());
        hw.frame(&f.msrbits).fill(0xff);
        self.trapmsr(hw, EFER, false);
        w(hw, VMENTRY_MSRLDADDR, guest)?;
        w(hw, VMEXIT_MSRSTADDR, guest)?;
        w(hw, VMEXIT_MSRLDADDR, host)?;
        w(hw, MSR_BITMAP, bits)?;

        if self.procbctls & PROCB_TSCOFFSET != 0 {
            // The guest's TSC starts at 0 (the seed started it at the host's TSC again).
            self.tscoffset = hw.rdtsc().wrapping_neg();
            w(hw, VMCS_TSC_OFFSET, self.tscoffset)?;
        }

        for msr in [STAR, LSTAR, CSTAR, SFMASK, KERNEL_GSBASE] {
            self.addmsr(hw, msr, 0)?;
        }
        for msr in [STAR, LSTAR, CSTAR, SFMASK, FSBASE, GSBASE, KERNEL_GSBASE] {
            self.trapmsr(hw, msr, false);
        }
        Ok(())
    }

    /// vmxaddmsr: an MSR switched through the autoload areas.
    fn addmsr<H: Hw>(&mut self, hw: &mut H, msr: Msr, gval: u64) -> Result<(), Error> {
        if self.nmsr >= MAXMSR {
            return Err("too many MSRs".into());
        }
        let i = self.nmsr * 16;
        self.nmsr += 1;
        let host = hw.rdmsr(msr).unwrap_or(0);
        let fr = self.frames()?;
        for (frame, v) in [(&fr.msrhost, host), (&fr.msrguest, gval)] {
            let f = hw.frame(frame);
            f[i..i + 8].copy_from_slice(&(msr.0 as u64).to_le_bytes());
            f[i + 8..i + 16].copy_from_slice(&v.to_le_bytes());
        }
        let n = self.nmsr as u64;
        vmcs::write(hw, VMENTRY_MSRLDCNT, n)?;
        vmcs::write(hw, VMEXIT_MSRSTCNT, n)?;
        vmcs::write(hw, VMEXIT_MSRLDCNT, n)
    }

    /// vmxtrapmsr with TRAPRD|TRAPWR both set (`trap`) or both clear.
    fn trapmsr<H: Hw>(&mut self, hw: &mut H, Msr(msr): Msr, trap: bool) {
        if msr >= 0x2000 && msr.wrapping_sub(0xc000_0000) >= 0x2000 {
            return;
        }
        let m = msr & 0x1fff | msr >> 18 & 0x2000;
        let bit = 1u32 << (m & 31);
        let Some(fr) = &self.frames else {
            return;
        };
        let f = hw.frame(&fr.msrbits);
        for word in [m / 32, m / 32 + 512] {
            let at = word as usize * 4;
            let mut v = u32::from_le_bytes([f[at], f[at + 1], f[at + 2], f[at + 3]]);
            if trap {
                v |= bit;
            } else {
                v &= !bit;
            }
            f[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
    }

    /// The `devices` message: the kernel answers the named devices from now on. Once
    /// per VM, and not while it runs.
    pub fn devices(&mut self, args: &[String]) -> Result<(), Error> {
        let c = kdev::parse(args)?;
        if self.state == State::Running {
            return Err("VM running".into());
        }
        if self.kdev.is_some() {
            return Err("devices already chosen".into());
        }
        self.kdev = Some(Box::new(KDev::new(c)));
        Ok(())
    }

    /// The `line IRQ LEVEL` message: a client's device drives an in-kernel PIC input.
    pub fn line(&mut self, irq: &str, level: &str) -> Result<(), Error> {
        let k = self
            .kdev
            .as_mut()
            .filter(|k| k.has(kdev::PIC))
            .ok_or(Error::from("no in-kernel pic"))?;
        let n = irq
            .parse::<u8>()
            .ok()
            .filter(|n| *n < 16 && irq.bytes().all(|b| b.is_ascii_digit()))
            .ok_or(Error::from(EBADARG))?;
        let level = match level {
            "0" => false,
            "1" => true,
            _ => return Err(EBADARG.into()),
        };
        k.board.pic.set_line(n, level);
        Ok(())
    }

    /// The `clock` message: from now on every exit's wait line ends with the guest's
    /// clock, so a client's devices can run on the time the guest's TSC shows.
    pub fn clock(&mut self) {
        self.clock = true;
    }

    /// The `advance NS` message: the guest's clock (its TSC) moves on by NS ns, the time
    /// its client's devices ran ahead of it (while it halted at the client, or to a timer
    /// raised while it ran). Not while it runs. With no TSC offsetting the guest's clock
    /// is the host's, which ran anyway.
    pub fn advance<H: Hw>(&mut self, hw: &mut H, ns: &str) -> Result<(), Error> {
        let v = strtoull_whole(ns).ok_or(Error::from(EBADARG))?;
        match self.state {
            State::Running => return Err("VM running".into()),
            State::Ready => {}
            _ => return Err("VM not ready".into()),
        }
        if self.procbctls & PROCB_TSCOFFSET == 0 {
            return Ok(());
        }
        let ticks = u128::from(v) * u128::from(hw.tsc_hz().max(1)) / 1_000_000_000;
        let ticks = u64::try_from(ticks).map_err(|_| Error::from(EBADARG))?;
        self.load(hw)?;
        self.tscoffset = self.tscoffset.wrapping_add(ticks);
        vmcs::write(hw, VMCS_TSC_OFFSET, self.tscoffset)
    }

    /// The `alarm [NS]` message: the first exit the kernel would keep (a preemption
    /// timer or host interrupt) once the guest's clock has reached NS ns goes to the
    /// client instead, so a client's timer due then is raised on time although the
    /// guest makes no exit of its own. Once; a bare `alarm` withdraws it.
    pub fn alarm(&mut self, ns: Option<&str>) -> Result<(), Error> {
        self.alarm = match ns {
            None => None,
            Some(s) => Some(strtoull_whole(s).ok_or(Error::from(EBADARG))?),
        };
        Ok(())
    }

    /// The in-kernel UART, if there is one (for `cons`).
    pub fn cons(&mut self) -> Option<&mut KDev> {
        self.kdev.as_deref_mut().filter(|k| k.has(kdev::UART))
    }

    /// A read of `cons`: Ok(None) to wait. Output is answered when there is enough of it,
    /// or it has waited long enough (guest time), or the guest halts or stops; a stopped
    /// VM with nothing queued reads 0 bytes (all output up to the stop has been read); a
    /// dead one fails with its error.
    pub fn cons_read<H: Hw>(&mut self, hw: &mut H, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        let now = self.guest_ns(hw);
        let state = self.state;
        let k = self.cons().ok_or(Error::from(kdev::ENOCONS))?;
        match k.cons_take(buf, state == State::Running, now) {
            Some(0) if state == State::Dead => Err(self.errstr.clone().into()),
            Some(0) if state == State::Running && !buf.is_empty() => Ok(None),
            r => Ok(r),
        }
    }

    /// The guest's clock in ns: its TSC (the host's plus the offset that hides the time
    /// spent outside the guest) over the host TSC's rate. Frozen while the VM is out for
    /// its client; running while it is halted here.
    fn guest_ns<H: Hw>(&self, hw: &mut H) -> u64 {
        let host = match self.tsc_end {
            Some(end) => end,
            None => hw.rdtsc(),
        };
        let tsc = if self.procbctls & PROCB_TSCOFFSET != 0 {
            host.wrapping_add(self.tscoffset)
        } else {
            host
        };
        let hz = u128::from(hw.tsc_hz().max(1));
        (u128::from(tsc) * 1_000_000_000 / hz) as u64
    }

    /// Running and not halted waiting for an in-kernel interrupt: the host should come
    /// back soon.
    pub fn busy(&self) -> bool {
        self.state == State::Running && !self.kdev.as_ref().is_some_and(|k| k.halted)
    }

    /// The status file's text.
    pub fn status_text(&self) -> String {
        match self.state {
            State::Dead => format!("dead {}\n", quote(&self.errstr, true)),
            s => format!("{}\n", s.name()),
        }
    }

    /// cmdgo (`step` is step): needs a ready VM; `regs` are `name=value;` records.
    pub fn go<H: Hw>(&mut self, hw: &mut H, step: bool, regs: Option<&str>) -> Result<(), Error> {
        if self.state != State::Ready {
            return Err("VM not ready".into());
        }
        if let Some(r) = regs {
            self.load(hw)?;
            // A last assignment without its `;` counts (the seed dropped it).
            regs::setregs(hw, &mut self.entry, r.as_bytes(), b';', &['='], Tail::Take)?;
        }
        if step {
            self.onentry |= STEP;
        }
        if let Some(k) = self.kdev.as_mut() {
            // A `go` runs the guest: one halted here resumes after its hlt.
            k.halted = false;
        }
        self.state = State::Running;
        Ok(())
    }

    pub fn stop(&mut self) -> Result<(), Error> {
        if self.state != State::Ready && self.state != State::Running {
            return Err("VM not ready or running".into());
        }
        self.state = State::Ready;
        Ok(())
    }

    /// cmdexcept. The seed made the writer wait while an exception was posted; a
    /// single-threaded server cannot, so that is an error.
    pub fn exc(&mut self, s: &str) -> Result<(), Error> {
        if self.onentry & POSTEX != 0 {
            return Err("exception already pending".into());
        }
        self.exc = eventparse(s)?;
        self.onentry |= POSTEX;
        Ok(())
    }

    /// cmdirq: posts an interrupt, or withdraws the posted one.
    pub fn irq(&mut self, s: Option<&str>) -> Result<(), Error> {
        match s {
            None => self.onentry &= !POSTIRQ,
            Some(s) => {
                self.irq = eventparse(s)?;
                self.onentry |= POSTIRQ;
            }
        }
        Ok(())
    }

    /// cmdextrap: the exception bitmap.
    pub fn extrap<H: Hw>(&mut self, hw: &mut H, s: &str) -> Result<(), Error> {
        let (v, n) = strtoul(s, 0);
        if n == 0 || n != s.len() {
            return Err(EBADARG.into());
        }
        self.load(hw)?;
        if let Some(t) = &mut self.tfstep {
            // A TF step is under way: the client's bitmap comes back when it ends.
            if v & 1 << VEC_DB == 0 {
                t.bitmap = Some(v as u64);
                return vmcs::write(hw, EXC_BITMAP, v as u64 | 1 << VEC_DB);
            }
            t.bitmap = None;
        }
        vmcs::write(hw, EXC_BITMAP, v as u64)
    }

    pub fn getregs<H: Hw>(&mut self, hw: &mut H) -> Result<String, Error> {
        self.load(hw)?;
        let ov = self.exit_override();
        regs::getregs(hw, &mut self.entry, ov)
    }

    /// The exit fields a TF step's #DB exit reads as: those of the MTF exit it stands
    /// for (reason 37, qualification 0, no event). The rest are the CPU's.
    fn exit_override(&self) -> &'static [(VmcsField, u64)] {
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

    pub fn setregs<H: Hw>(&mut self, hw: &mut H, data: &[u8]) -> Result<usize, Error> {
        self.load(hw)?;
        regs::setregs(hw, &mut self.entry, data, b'\n', &[' ', '\t'], Tail::Leave)
    }

    /// cmdsetfpregs, with the clamp fixed (the seed computed sizeof - n, not sizeof - off).
    pub fn setfpregs(&mut self, off: u64, data: &[u8]) -> usize {
        let fx = &mut self.entry.fx.0;
        let n = data.len().min(fx.len());
        let Ok(off) = usize::try_from(off) else {
            return 0;
        };
        if off >= fx.len() {
            return 0;
        }
        let n = n.min(fx.len() - off);
        fx[off..off + n].copy_from_slice(&data[..n]);
        n
    }

    /// The map changed: EPT must be flushed before the next entry.
    pub fn flush_ept(&mut self) {
        self.onentry |= FLUSHEPT;
    }

    /// cmdwait: the next report, or `None` while there is none.
    pub fn wait<H: Hw>(&mut self, hw: &mut H) -> Result<Option<String>, Error> {
        if self.got & GOTIRQACK != 0 {
            self.got &= !GOTIRQACK;
            let time = self.clock.then(|| self.guest_ns(hw));
            return Ok(Some(ackline(&self.irqack, time)));
        }
        if self.got & GOTEXIT == 0 {
            // The seed blocked for good on a dead VM: a remote client would hang.
            if self.state == State::Dead {
                return Err(self.errstr.clone().into());
            }
            return Ok(None);
        }
        self.got &= !GOTEXIT;
        self.load(hw)?;
        let ov = self.exit_override();
        let r = |hw: &mut H, f| match ov.iter().find(|(k, _)| *k == f) {
            Some(&(_, v)) => Ok(v),
            None => vmcs::read(hw, f),
        };
        let e = ExitInfo {
            reason: ExitReason(r(hw, VM_EXREASON)? as u32),
            qual: r(hw, VM_EXQUALIF)?,
            intr: IntrInfo(r(hw, VM_EXINTRINFO)? as u32),
            pc: r(hw, GUEST_RIP)?,
            sp: r(hw, GUEST_RSP)?,
            ilen: r(hw, VM_EXINSTRLEN)?,
            iinfo: r(hw, VM_EXINSTRINFO)?,
            excode: r(hw, VM_EXINTRCODE)?,
            va: r(hw, VM_GUESTVA)?,
            pa: r(hw, VM_GUESTPA)?,
            ax: self.entry.regs.ax,
            time: self.clock.then(|| self.guest_ns(hw)),
        };
        Ok(Some(waitline(&e)))
    }

    /// Is there something for a wait read?
    pub fn has_report(&self) -> bool {
        self.got & (GOTEXIT | GOTIRQACK) != 0
    }

    /// One entry of a running VM (vmxproc's loop body). An error kills the VM with it.
    /// With in-kernel devices, the guest is entered again at once (up to [`INSIDE_MAX`]
    /// times) while they answer its exits, and a halted guest waits here for its PIC.
    pub fn run<H: Hw>(&mut self, hw: &mut H) {
        for _ in 0..INSIDE_MAX {
            if self.state != State::Running || !self.wake(hw) {
                return;
            }
            match self.enter(hw) {
                Ok(true) => {}
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
            k.halted = false;
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
        if self.preempt {
            vmcs::write(hw, VMX_PREEMPT_TIMER, PREEMPT_QUANTUM)?;
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

    /// Answers an exit with the in-kernel devices where it can: port I/O to a chosen
    /// device, and a halt with interrupts on (the PIC will wake it). Anything else goes
    /// to the client as before.
    fn inside<H: Hw>(&mut self, hw: &mut H, reason: ExitReason) -> Result<bool, Error> {
        let now = self.guest_ns(hw);
        let Some(k) = self.kdev.as_mut() else {
            return Ok(false);
        };
        match reason {
            r if r.is(EXIT_IO) => {
                let q = vmcs::read(hw, VM_EXQUALIF)?;
                let port = (q >> 16) as u16;
                let size = (q & 7) as u8 + 1;
                let input = q & 8 != 0;
                // String and rep I/O go to the client (the tool reports them).
                if q & 16 != 0 || !matches!(size, 1 | 2 | 4) {
                    return Ok(false);
                }
                let Some(dev) = k.claims(port) else {
                    return Ok(false);
                };
                let ax = self.entry.regs.ax;
                let v = k.io(dev, port, size, input, ax as u32, now);
                if k.board.stop.take().is_some() {
                    // A reset through the i8042: the client's to see, as its io exit.
                    k.board.kbd.reset = false;
                    return Ok(false);
                }
                if input {
                    self.entry.regs.ax = pcdev::merge_in(ax, size, v);
                }
            }
            r if r.is(EXIT_CPUID) && k.has(kdev::CPU) => {
                let r = &mut self.entry.regs;
                let (leaf, sub) = (r.ax as u32, r.cx as u32);
                let v = pcdev::cpu::guest_cpuid(leaf, sub, &mut |l, s| hw.cpuid(l, s))
                    .unwrap_or([0; 4]);
                (r.ax, r.bx, r.cx, r.dx) = (v[0].into(), v[1].into(), v[2].into(), v[3].into());
                k.counts.cpu += 1;
            }
            r if r.is(EXIT_RDMSR) && k.has(kdev::CPU) => {
                // The MSRs that live in the VMCS, read as the regs file reads them; the
                // client keeps the rest (and takes every write).
                let v = match pcdev::cpu::msr(self.entry.regs.cx as u32) {
                    Some(pcdev::cpu::Msr::Reg(name)) => regs::getreg(hw, &mut self.entry, name)?,
                    Some(pcdev::cpu::Msr::Zero) => 0,
                    _ => return Ok(false),
                };
                self.entry.regs.ax = v & 0xffff_ffff;
                self.entry.regs.dx = v >> 32;
                k.counts.cpu += 1;
            }
            r if r.is(EXIT_HLT) && k.has(kdev::PIC) => {
                if vmcs::read(hw, GUEST_RFLAGS)? & RFLAGS_IF == 0 {
                    return Ok(false);
                }
                k.halted = true;
                k.counts.hlt += 1;
                // Time passes for a halted guest: its clock is not held back while it
                // waits here.
                self.tsc_end = None;
            }
            _ => return Ok(false),
        }
        let rip = vmcs::read(hw, GUEST_RIP)?;
        let ilen = vmcs::read(hw, VM_EXINSTRLEN)?;
        vmcs::write(hw, GUEST_RIP, rip.wrapping_add(ilen))?;
        Ok(true)
    }

    /// Arms a step by RFLAGS.TF (no MTF): the #DB trap after one instruction exits
    /// through the exception bitmap. Again on each entry of the step (an internal exit
    /// may come first, or the client may have written regs).
    fn arm_tf<H: Hw>(&mut self, hw: &mut H) -> Result<(), Error> {
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
    fn tf_exit<H: Hw>(&mut self, hw: &mut H, reason: ExitReason) -> Result<(), Error> {
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
