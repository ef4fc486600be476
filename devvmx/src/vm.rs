//! One virtual machine: its VMCS and the frames around it (vmxstart), the ctl commands,
//! and the wait and status texts. The seed ran commands on a kernel process per VM; here
//! they run when the request arrives and the guest runs only inside
//! `Namespace::run_guests`.
//!
//! Its parts: [`init`] sets a fresh VMCS up (vmcsinit, the MSR areas), [`entry`] makes
//! one VM entry (injection, the in-kernel devices' interrupts and wake-ups, the exit),
//! [`step`] single-steps by RFLAGS.TF where the CPU has no monitor trap flag. The
//! in-kernel devices' answers to exits are in `kdev`.

mod disk;
mod entry;
mod init;
mod net;
mod step;

use crate::caps::{Caps, PreemptRate};
use crate::ept::Ept;
use crate::event::{ackline, eventparse, waitline, ExitInfo, VmIntr};
use crate::hw::{alloc_array, EntryState, Frame, Hw, VmxFail};
use crate::kdev::{self, KDev};
use crate::mem::MemMap;
use crate::plan9::{quote, strtoul, strtoull_whole, Tail, EBADARG, EGREG, ENOMEM};
use crate::regs;
use crate::segment::Segments;
use crate::vmcs::{self, *};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use ninep::Error;
use step::TfStep;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Init,
    Ready,
    Running,
    Dead,
    Ending,
}

impl State {
    pub(crate) fn name(self) -> &'static str {
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

pub(crate) struct Vm {
    pub(crate) index: usize,
    pub(crate) gen: u64,
    pub(crate) state: State,
    pub(crate) errstr: String,
    /// Its own frames besides the EPT's; `None` once given back (at quit).
    frames: Option<VmFrames>,
    /// The EPT, which owns its tables' frames.
    pub(crate) ept: Ept,
    pub(crate) entry: EntryState,
    pub(crate) vpid: u16,
    pub(crate) mem: MemMap,
    /// When the VM was made ([`Hw::now`]): its directory's and files' times.
    pub(crate) made: u32,
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
    /// The host's TSC at the last exit (the in-kernel devices' answers are timed from it).
    exit_tsc: u64,
    /// The CPU's VT-x (vmxreset's), which vmcsinit and `regs` follow.
    caps: Caps,
    /// The VMX-preemption timer is on (pin-based control 6 allowed), at this rate.
    preempt: Option<PreemptRate>,
    /// The CPU has the monitor trap flag (Bochs 2.7's haswell has not): else `step`
    /// single-steps with RFLAGS.TF.
    mtf: bool,
    /// A TF step is armed in the VMCS.
    tfstep: Option<TfStep>,
    /// The last exit was a TF step's #DB, reported as the MTF exit it stands for.
    synthetic: bool,
    /// In-kernel devices, after a `devices` message.
    pub(crate) kdev: Option<Box<KDev>>,
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

impl Vm {
    /// vmxstart after VMXON plus vmcsinit: a ready VM, or an error with every frame it
    /// took given back.
    pub(crate) fn create<H: Hw>(
        hw: &mut H,
        caps: &Caps,
        index: usize,
        gen: u64,
        vpid: u16,
    ) -> Result<Vm, Error> {
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
            exit_tsc: 0,
            caps: *caps,
            preempt: None,
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
        let vmcs = &self.frames()?.vmcs;
        hw.frame(vmcs)[0..4].copy_from_slice(&self.caps.basic.revision().to_le_bytes());
        hw.vmclear(vmcs)
            .map_err(|_| Error::from("vmclear failed"))?;
        self.load(hw)?;
        self.vmcsinit(hw)
    }

    /// Makes this VM's VMCS the current one.
    pub(crate) fn load<H: Hw>(&self, hw: &mut H) -> Result<(), Error> {
        let vmcs = self.frames.as_ref().map(|f| &f.vmcs);
        vmcs.map_or(Err(VmxFail), |f| hw.vmptrld(f))
            .map_err(|_| Error::from("vmptrld failed"))
    }

    /// Does it still hold its frames (it has not quit)?
    pub(crate) fn has_frames(&self) -> bool {
        self.frames.is_some()
    }

    /// VMCLEAR of its VMCS (a failure is ignored: there is nothing left to undo).
    pub(crate) fn vmclear<H: Hw>(&self, hw: &mut H) {
        if let Some(f) = &self.frames {
            let _ = hw.vmclear(&f.vmcs);
        }
    }

    /// Returns the VM's own frames (the map must have been cleared first).
    pub(crate) fn free_frames<H: Hw>(&mut self, hw: &mut H) {
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
    pub(crate) fn clear_map<H: Hw>(&mut self, hw: &mut H, segs: &mut Segments) {
        self.mem.clear(hw, segs, &mut self.ept);
    }

    /// cmdsetmeminfo on this VM's map and EPT.
    pub(crate) fn set_map<H: Hw>(
        &mut self,
        hw: &mut H,
        segs: &mut Segments,
        data: &[u8],
        uname: &str,
    ) -> Result<usize, Error> {
        self.mem.set(hw, segs, &mut self.ept, data, uname)
    }

    pub(crate) fn eptp(&self) -> u64 {
        Caps::eptp(self.ept.pml4())
    }

    /// The `devices` message: the kernel answers the named devices from now on. Once
    /// per VM, and not while it runs.
    pub(crate) fn devices(&mut self, args: &[String]) -> Result<(), Error> {
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

    /// The `pci add ...` message: a client's function on the in-kernel PCI bus (see
    /// `kdev::pci`); `pci blk ...`, a disk the kernel serves (`kdev::blk`); `pci net
    /// ...`, a virtio-net card the kernel serves on the host's switch `sw` (`kdev::net`).
    /// Not while the VM runs.
    pub(crate) fn pci(
        &mut self,
        segs: &mut Segments,
        sw: Option<&crate::ns::HostSwitch>,
        args: &[String],
        uname: &str,
    ) -> Result<(), Error> {
        if self.state == State::Running {
            return Err("VM running".into());
        }
        let k = self.kdev.as_mut().ok_or(Error::from(kdev::ENOPCI))?;
        match args.split_first() {
            Some((add, rest)) if add == "add" => k.pci_add(rest),
            Some((net, rest)) if net == "net" => k.pci_net(sw, rest),
            Some((blk, rest)) if blk == "blk" => k.pci_blk(segs, rest, uname),
            _ => Err(EBADARG.into()),
        }
    }

    /// The `firmware MEM` message: the in-kernel devices make a firmware machine (see
    /// `kdev::firmware`). Not while the VM runs.
    pub(crate) fn firmware(&mut self, args: &[String]) -> Result<(), Error> {
        if self.state == State::Running {
            return Err("VM running".into());
        }
        let k = self.kdev.as_mut().ok_or(Error::from("no in-kernel rtc"))?;
        k.firmware(args)
    }

    /// The VM ends: what its in-kernel devices hold of the segments goes back.
    pub(crate) fn release_devices<H: Hw>(&mut self, hw: &mut H, segs: &mut Segments) {
        if let Some(k) = self.kdev.as_mut() {
            k.release_disks(hw, segs);
        }
    }

    /// The `line IRQ LEVEL` message: a client's device drives an in-kernel PIC input.
    pub(crate) fn line(&mut self, irq: &str, level: &str) -> Result<(), Error> {
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
    pub(crate) fn clock(&mut self) {
        self.clock = true;
    }

    /// The `advance NS` message: the guest's clock (its TSC) moves on by NS ns, the time
    /// its client's devices ran ahead of it (while it halted at the client, or to a timer
    /// raised while it ran). Not while it runs. With no TSC offsetting the guest's clock
    /// is the host's, which ran anyway.
    pub(crate) fn advance<H: Hw>(&mut self, hw: &mut H, ns: &str) -> Result<(), Error> {
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
    pub(crate) fn alarm(&mut self, ns: Option<&str>) -> Result<(), Error> {
        self.alarm = match ns {
            None => None,
            Some(s) => Some(strtoull_whole(s).ok_or(Error::from(EBADARG))?),
        };
        Ok(())
    }

    /// The in-kernel UART, if there is one (for `cons`).
    pub(crate) fn cons(&mut self) -> Option<&mut KDev> {
        self.kdev.as_deref_mut().filter(|k| k.has(kdev::UART))
    }

    /// A read of `cons` (`waiting`: one that already waited): Ok(None) to wait. While the
    /// guest runs, output is answered when it is due (kdev's `cons` rule). While the VM
    /// is stopped for its client a new read answers at once, with 0 bytes when nothing is
    /// queued (so the client knows it has all the output up to the stop), and one that
    /// waited goes on waiting: a stop does not cost a round trip (on a firmware machine
    /// it answers too, so a shell's `cat` ends at the stop). A dead VM's read fails
    /// with its error once nothing is queued.
    pub(crate) fn cons_read<H: Hw>(
        &mut self,
        hw: &mut H,
        buf: &mut [u8],
        waiting: bool,
    ) -> Result<Option<usize>, Error> {
        let now = self.guest_ns(hw);
        let state = self.state;
        let k = self.cons().ok_or(Error::from(kdev::ENOCONS))?;
        let r = match state {
            State::Running => k.cons_take(buf, true, now),
            State::Dead => k.cons_take(buf, false, now),
            // A firmware machine's client is a shell: a stop ends its waiting read too.
            _ if waiting && !k.is_firmware() => None,
            _ => k.cons_take(buf, false, now),
        };
        match r {
            Some(0) if state == State::Dead => Err(self.errstr.clone().into()),
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

    /// Running and not halted waiting for an in-kernel interrupt, or halted with work a
    /// virtio budget left: the host should come back soon.
    pub(crate) fn busy(&self) -> bool {
        self.state == State::Running
            && self
                .kdev
                .as_ref()
                .is_none_or(|k| !k.halted || k.blk_pending() || k.net_pending())
    }

    /// The status file's text.
    pub(crate) fn status_text(&self) -> String {
        match self.state {
            State::Dead => format!("dead {}\n", quote(&self.errstr, true)),
            s => format!("{}\n", s.name()),
        }
    }

    /// cmdgo (`step` is step): needs a ready VM; `regs` are `name=value;` records.
    pub(crate) fn go<H: Hw>(
        &mut self,
        hw: &mut H,
        step: bool,
        regs: Option<&str>,
    ) -> Result<(), Error> {
        if self.state != State::Ready {
            return Err("VM not ready".into());
        }
        if let Some(r) = regs {
            self.load(hw)?;
            // A last assignment without its `;` counts (the seed dropped it).
            regs::setregs(
                hw,
                &mut self.entry,
                &self.caps,
                r.as_bytes(),
                b';',
                &['='],
                Tail::Take,
            )?;
        }
        if step {
            self.onentry |= STEP;
        }
        let now = self.guest_ns(hw);
        if let Some(k) = self.kdev.as_mut() {
            // A `go` runs the guest: one halted here resumes after its hlt.
            k.wake(now);
        }
        self.state = State::Running;
        Ok(())
    }

    pub(crate) fn stop(&mut self) -> Result<(), Error> {
        if self.state != State::Ready && self.state != State::Running {
            return Err("VM not ready or running".into());
        }
        self.state = State::Ready;
        Ok(())
    }

    /// cmdexcept. The seed made the writer wait while an exception was posted; a
    /// single-threaded server cannot, so that is an error.
    pub(crate) fn exc(&mut self, s: &str) -> Result<(), Error> {
        if self.onentry & POSTEX != 0 {
            return Err("exception already pending".into());
        }
        self.exc = eventparse(s)?;
        self.onentry |= POSTEX;
        Ok(())
    }

    /// cmdirq: posts an interrupt, or withdraws the posted one.
    pub(crate) fn irq(&mut self, s: Option<&str>) -> Result<(), Error> {
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
    pub(crate) fn extrap<H: Hw>(&mut self, hw: &mut H, s: &str) -> Result<(), Error> {
        let (v, n) = strtoul(s, 0);
        if n == 0 || n != s.len() {
            return Err(EBADARG.into());
        }
        self.load(hw)?;
        let bm = self.step_bitmap(v as u64);
        vmcs::write(hw, EXC_BITMAP, bm)
    }

    pub(crate) fn getregs<H: Hw>(&mut self, hw: &mut H) -> Result<String, Error> {
        self.load(hw)?;
        let ov = self.exit_override();
        regs::getregs(hw, &mut self.entry, ov)
    }

    pub(crate) fn setregs<H: Hw>(&mut self, hw: &mut H, data: &[u8]) -> Result<usize, Error> {
        self.load(hw)?;
        regs::setregs(
            hw,
            &mut self.entry,
            &self.caps,
            data,
            b'\n',
            &[' ', '\t'],
            Tail::Leave,
        )
    }

    /// cmdsetfpregs, with the clamp fixed (the seed computed sizeof - n, not sizeof - off).
    pub(crate) fn setfpregs(&mut self, off: u64, data: &[u8]) -> usize {
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
    pub(crate) fn flush_ept(&mut self) {
        self.onentry |= FLUSHEPT;
    }

    /// cmdwait: the next report, or `None` while there is none.
    pub(crate) fn wait<H: Hw>(&mut self, hw: &mut H) -> Result<Option<String>, Error> {
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
            qual: match self.kdev.as_ref().and_then(|k| k.qual) {
                Some(q) => q,
                None => r(hw, VM_EXQUALIF)?,
            },
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
    pub(crate) fn has_report(&self) -> bool {
        self.got & (GOTEXIT | GOTIRQACK) != 0
    }
}
