//! The served tree: a root holding `vmx/` (the #X device), `segment/` (segment(3)) and a
//! `status` file, as a `ninep::Tree`.

use crate::hw::{Frame, Hw, PAGE};
use crate::place::{pick, Placed, RunList};
use crate::plan9::{
    lookupcmd, parsecmd, readstr, Cmdtab, EBADARG, EEXIST, EGREG, EISDIR, ENOMEM, ENONEXIST, EPERM,
};
use crate::segment::Segments;
use crate::vm::{State, Vm};
use crate::vmcs::*;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use ninep::error::EBADATTACH;
use ninep::{perm, Ctx, Error, Read, Stat, Tree};
use protocol::{dm, om, qt, Dir, Qid};

/// What the kernel tells the namespace.
#[derive(Clone, Debug)]
pub struct Config {
    /// The host owner (Plan 9's eve): owns every file, alone may make and drive VMs.
    pub owner: String,
    /// Shown in the status file.
    pub version: &'static str,
}

/// The seed's Equit.
pub const EQUIT: &str = "vmx: ending";

/// Which attach a node was reached from: `..` stops at its top.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Top {
    Root,
    Vmx,
    Seg,
}

/// Files of a VM directory, numbered as the seed's Q* constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VmF {
    Ctl = 1,
    Regs = 2,
    Status = 3,
    Map = 4,
    Wait = 5,
    Fpregs = 6,
    Cons = 7,
}

/// The seed's vmxdir[]: name, file, mode.
const VMXDIR: [(&str, VmF, u32); 6] = [
    ("ctl", VmF::Ctl, 0o660),
    ("regs", VmF::Regs, 0o660),
    ("status", VmF::Status, 0o440),
    ("map", VmF::Map, 0o660),
    ("wait", VmF::Wait, 0o440),
    ("fpregs", VmF::Fpregs, 0o660),
];

/// The in-kernel UART's console (an extension): listed only in the directory of a VM
/// whose `devices` include `uart`.
const CONS: (&str, VmF, u32) = ("cons", VmF::Cons, 0o660);

fn vmxfile(f: VmF) -> &'static (&'static str, VmF, u32) {
    VMXDIR
        .iter()
        .chain(core::iter::once(&CONS))
        .find(|e| e.1 == f)
        .unwrap_or(&CONS)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Root,
    Status,
    VmxDir,
    Clone,
    Cpuid,
    VmDir(usize, u64),
    VmFile(usize, u64, VmF),
    SegTop,
    SegDir(usize, u64),
    SegCtl(usize, u64),
    SegData(usize, u64),
}

/// A file of the tree, with what an open fid keeps: the text a read at offset 0 made
/// (the seed's c->aux) and whether a wait read is blocked on it.
#[derive(Clone, Debug)]
pub struct Node {
    top: Top,
    kind: Kind,
    aux: Vec<u8>,
    waiting: bool,
}

impl Node {
    fn new(top: Top, kind: Kind) -> Self {
        Node {
            top,
            kind,
            aux: Vec::new(),
            waiting: false,
        }
    }
}

// Qid paths: #X's own scheme for vmx/, devsegment's (tagged) for segment/, and a tag
// for the root's files, so that no two files share a path.
const ROOTQ: u64 = 1 << 63;
const SEGQ: u64 = 1 << 62;
const QCLONE: u64 = 1;
/// `vmx/cpuid` (an extension): below the first VM's qid paths, as clone.
const QCPUID: u64 = 2;

fn qidpath(slot: usize, file: u64) -> u64 {
    ((slot as u64 + 1) << 8) | file
}

fn segpath(slot: usize, t: u64) -> u64 {
    SEGQ | (slot as u64) << 3 | t
}

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
}

const VMXCTLMSG: [Cmdtab<Cm>; 12] = [
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
];

/// The #X device and segments over a [`Hw`].
pub struct Namespace<H: Hw> {
    hw: H,
    cfg: Config,
    /// Why VT-x cannot be used, if it cannot (the seed's vmxreset checks).
    vmx: Result<(), String>,
    vms: Vec<Option<Arc<Placed>>>,
    /// The CPUs that run VMs other than this (the boot) one, and each one's run list
    /// (indexed by CPU; the boot CPU's, 0, runs VMs when no other CPU can).
    vm_cpus: Vec<usize>,
    runs: Vec<Arc<RunList>>,
    next_gen: u64,
    vmxon: Option<Frame>,
    segs: Segments,
    sessions: usize,
    /// CPUs the machine runs (the status file).
    cpus: usize,
    /// When the namespace was made (the kernel's boot): the times of the root, `vmx/`,
    /// `segment/`, `status` and `clone`.
    booted: u32,
    /// What in-kernel devices answered for VMs that have ended.
    inside_ended: crate::kdev::Counts,
    /// Some VM asked for in-kernel devices since boot.
    inside_used: bool,
    /// Who may be the owner on network links.
    owners: crate::owner::Owners,
    /// Where network clients reach the host, for the status file.
    network: Option<String>,
}

/// vmxreset: can VMs run on this CPU? Sets the IA32_FEATURE_CONTROL lock and VMXON bits where
/// the firmware left the MSR unlocked, as the seed does.
pub fn vmxreset<H: Hw>(hw: &mut H) -> Result<(), String> {
    if hw.cpuid(1, 0)[2] & CPUID1_ECX_VMX == 0 {
        return Err("cpuid says no VMX".into());
    }
    let mut msr = hw
        .rdmsr(IA32_FEATURE_CONTROL)
        .ok_or("IA32_FEATURE_CONTROL unreadable")?;
    const ON: u64 = FEATURE_CONTROL_LOCK | FEATURE_CONTROL_VMXON;
    if msr & ON != ON {
        if msr & FEATURE_CONTROL_LOCK == 0 {
            hw.wrmsr(IA32_FEATURE_CONTROL, msr | ON);
            msr = hw
                .rdmsr(IA32_FEATURE_CONTROL)
                .ok_or("IA32_FEATURE_CONTROL unreadable")?;
        }
        if msr & ON != ON {
            return Err("VMXON disabled by firmware (IA32_FEATURE_CONTROL)".into());
        }
    }
    let procb = hw
        .rdmsr(VMX_PROCB_CTLS_MSR)
        .ok_or("IA32_VMX_PROCBASED_CTLS unreadable")?;
    if (procb as i64) >= 0 {
        return Err("no secondary processor-based controls".into());
    }
    let ctls2 = hw
        .rdmsr(VMX_PROCB_CTLS2_MSR)
        .ok_or("IA32_VMX_PROCBASED_CTLS2 unreadable")?
        >> 32;
    if ctls2 & PROCB_EPT as u64 == 0 {
        return Err("no EPT".into());
    }
    if ctls2 & PROCB_VPID as u64 == 0 {
        return Err("no VPID".into());
    }
    if ctls2 & PROCB_UNRESTR as u64 == 0 {
        return Err("no unrestricted guest".into());
    }
    Ok(())
}

/// The seed's vmxstart on this CPU before VMXON: CR4.VMXE, CR0.NE, and the fixed bits of
/// both checked against the VMX capability MSRs.
pub fn vmx_cpu_ready<H: Hw>(hw: &mut H) -> Result<(), Error> {
    let cr4 = hw.cr4();
    hw.set_cr4(cr4 | CR4VMXE);
    let cr0 = hw.cr0();
    hw.set_cr0(cr0 | CR0_NE);
    let fixed = |hw: &mut H, cr: u64, f0: Msr, f1: Msr, what: &'static str| {
        let a = hw.rdmsr(f0).ok_or(Error::from(what))?;
        let b = hw.rdmsr(f1).ok_or(Error::from(what))?;
        if cr & !a & !b | !cr & a & b != 0 {
            return Err(Error::from(what));
        }
        Ok(())
    };
    let cr0 = hw.cr0();
    fixed(hw, cr0, VMX_CR0_FIXED0, VMX_CR0_FIXED1, "invalid CR0 value")?;
    let cr4 = hw.cr4();
    fixed(hw, cr4, VMX_CR4_FIXED0, VMX_CR4_FIXED1, "invalid CR4 value")
}

/// VMXON on this CPU (made ready by `vmx_cpu_ready`) with a fresh region carrying the VMCS
/// revision: the region, which stays in use until VMXOFF.
pub fn vmxon_region<H: Hw>(hw: &mut H) -> Result<Frame, Error> {
    let basic = hw.rdmsr(VMX_BASIC_MSR).unwrap_or(0);
    let region = hw.alloc_frame().ok_or(Error::from(ENOMEM))?;
    hw.frame(&region)[0..4].copy_from_slice(&(basic as u32).to_le_bytes());
    if hw.vmxon(&region).is_err() {
        hw.free_frame(region);
        return Err("vmxon failed".into());
    }
    Ok(region)
}

impl<H: Hw> Namespace<H> {
    pub fn new(mut hw: H, cfg: Config) -> Self {
        let vmx = vmxreset(&mut hw);
        let booted = hw.now();
        Namespace {
            hw,
            cfg,
            vmx,
            vms: Vec::new(),
            vm_cpus: Vec::new(),
            runs: alloc::vec![Arc::new(RunList::default())],
            next_gen: 0,
            vmxon: None,
            segs: Segments::new(),
            sessions: 0,
            cpus: 1,
            booted,
            inside_ended: Default::default(),
            inside_used: false,
            owners: Default::default(),
            network: None,
        }
    }

    pub fn hw(&self) -> &H {
        &self.hw
    }

    pub fn hw_mut(&mut self) -> &mut H {
        &mut self.hw
    }

    /// CPUs the machine runs, for the status file (1 unless the host says more).
    pub fn set_cpus(&mut self, n: usize) {
        self.cpus = n;
    }

    /// The CPUs other than this one that run VMs (each already in VMX root operation):
    /// new VMs go to the one with the fewest; with none, this CPU runs them.
    pub fn set_vm_cpus(&mut self, cpus: &[usize]) {
        self.vm_cpus = cpus.to_vec();
        let n = cpus.iter().max().map_or(1, |m| m + 1);
        while self.runs.len() < n {
            self.runs.push(Arc::new(RunList::default()));
        }
    }

    /// The VMs CPU `cpu` runs (its loop calls [`RunList::run`]).
    pub fn run_list(&self, cpu: usize) -> Option<Arc<RunList>> {
        self.runs.get(cpu).cloned()
    }

    /// The CPU VM `index` runs on.
    pub fn vm_cpu(&self, index: usize) -> Option<usize> {
        Some(self.vms.get(index)?.as_ref()?.cpu)
    }

    /// Sessions served, for the status file.
    pub fn set_sessions(&mut self, n: usize) {
        self.sessions = n;
    }

    /// The secret a network client presents to attach as the owner (`owner.rs`).
    pub fn set_secret(&mut self, secret: Option<String>) {
        self.owners.set_secret(secret);
    }

    /// Session `id` serves a network link (a claimed uname is not proof) or not.
    pub fn set_network_session(&mut self, id: u32, network: bool) {
        self.owners.set_network(id, network);
    }

    /// Where network clients reach the host ("tcp!10.0.2.15!564"), for `status`.
    pub fn set_network(&mut self, address: Option<&str>) {
        self.network = address.map(String::from);
    }

    /// Why VMs cannot run here, if they cannot.
    pub fn vmx_unavailable(&self) -> Option<&str> {
        self.vmx.as_ref().err().map(String::as_str)
    }

    /// VMs in existence.
    pub fn vm_count(&self) -> usize {
        self.vms.iter().flatten().count()
    }

    /// The guest-physical EPT leaf of VM `index` (0 where unmapped), for tests.
    #[cfg(any(test, feature = "testhw"))]
    pub fn ept_entry(&mut self, index: usize, gpa: u64) -> Option<u64> {
        let p = self.vms.get(index)?.clone()?;
        let vm = p.vm.lock();
        Some(vm.ept.lookup(&mut self.hw, gpa))
    }

    /// The VPID of VM `index`, for tests.
    #[cfg(any(test, feature = "testhw"))]
    pub fn vpid(&self, index: usize) -> Option<u16> {
        Some(self.vms.get(index)?.as_ref()?.vpid)
    }

    /// References held on the memory of segment `name` (0 when unsized or gone).
    #[cfg(any(test, feature = "testhw"))]
    pub fn segment_refs(&self, name: &str) -> usize {
        self.segs
            .globals
            .iter()
            .flatten()
            .find(|g| g.name == name)
            .and_then(|g| g.seg)
            .map_or(0, |id| self.segs.refs(id))
    }

    /// Enters each running VM of this CPU once; true while any VM here is still
    /// running (the host must then come back soon rather than halt). VMs on other CPUs
    /// do not keep it up: their CPU wakes it when they have news (`RunList::take_news`).
    pub fn run_guests(&mut self) -> bool {
        self.runs[0].run(&mut self.hw, &mut |_| {})
    }

    /// Runs `f` on VM `slot`'s CPU with that VM, the segments and that CPU's layer.
    fn with_vm<R>(
        &mut self,
        slot: usize,
        gen: u64,
        f: impl FnOnce(&mut H, &mut Segments, &mut Vm) -> R,
    ) -> Result<R, Error> {
        let p = match self.vms.get(slot) {
            Some(Some(p)) if p.gen == gen => p.clone(),
            _ => return Err(ENONEXIST.into()),
        };
        let segs = &mut self.segs;
        let mut f = Some(f);
        let mut r = None;
        self.hw.on_cpu(p.cpu, &mut |hw| {
            if let Some(f) = f.take() {
                let mut vm = p.vm.lock();
                r = Some(f(hw, segs, &mut vm));
                // The 9P side is waiting for this: no wake-up needed.
                let _ = p.publish(&vm);
            }
        });
        r.ok_or(Error::from("vm: its cpu did not answer"))
    }

    /// Exits in-kernel devices answered since boot, over every VM.
    pub fn inside_counts(&self) -> crate::kdev::Counts {
        let mut c = self.inside_ended;
        for p in self.vms.iter().flatten() {
            c.add(&p.counts());
        }
        c
    }

    /// `vmx/cpuid`: the leaves a guest with the `cpu` device is told about, one a line:
    /// leaf, eax, ebx, ecx, edx in hex (subleaf 0).
    fn cpuid_text(&mut self) -> String {
        let hw = &mut self.hw;
        pcdev::cpu::guest_leaves(&mut |l, s| hw.cpuid(l, s))
            .map(|(l, r)| {
                format!(
                    "{l:08x} {:08x} {:08x} {:08x} {:08x}\n",
                    r[0], r[1], r[2], r[3]
                )
            })
            .collect()
    }

    fn status_text(&self) -> String {
        let pg = PAGE as u64;
        let mut s = format!(
            "version {}\nowner {}\nmemfree {}\nmemtotal {}\ncpus {}\nvms {}\nsegments {}\nsessions {}\n{}{}\n",
            self.cfg.version,
            self.cfg.owner,
            self.hw.frames_free() as u64 * pg,
            self.hw.frames_total() as u64 * pg,
            self.cpus,
            self.vm_count(),
            self.segs.count(),
            self.sessions,
            match &self.network {
                Some(a) => format!("net {a}\n"),
                None => String::new(),
            },
            match &self.vmx {
                Ok(()) => String::from("vmx ok"),
                Err(why) => format!("vmx unavailable: {why}"),
            }
        );
        // Where each VM runs, once other CPUs run them (with one CPU, as before).
        if !self.vm_cpus.is_empty() {
            for p in self.vms.iter().flatten() {
                s.push_str(&format!("vm {} cpu {}\n", p.index, p.cpu));
            }
        }
        // Once any VM has asked for in-kernel devices: what they answered.
        let c = self.inside_counts();
        if self.inside_used {
            s.push_str(&format!(
                "inkernel io {} hlt {} irq {} cpu {}\n",
                c.io, c.hlt, c.irq, c.cpu
            ));
        }
        s
    }

    fn vm(&self, slot: usize, gen: u64) -> Result<&Arc<Placed>, Error> {
        match self.vms.get(slot) {
            Some(Some(p)) if p.gen == gen => Ok(p),
            _ => Err(ENONEXIST.into()),
        }
    }

    fn is_owner(&self, ctx: &Ctx) -> bool {
        ctx.uname == self.cfg.owner
    }

    /// vmxstart's part before the VMCS: this CPU made ready (`vmx_cpu_ready`), and VMXON
    /// for the first VM.
    fn vmxstart(&mut self) -> Result<(), Error> {
        vmx_cpu_ready(&mut self.hw)?;
        if self.vmxon.is_none() {
            self.vmxon = Some(vmxon_region(&mut self.hw)?);
        }
        Ok(())
    }

    /// VMXOFF once no VM is left on this CPU.
    fn maybe_vmxoff(&mut self) {
        if self.runs[0].is_empty() {
            if let Some(region) = self.vmxon.take() {
                self.hw.vmxoff();
                self.hw.free_frame(region);
            }
        }
    }

    /// vmxnew: a ready VM in the first free slot.
    fn vmxnew(&mut self) -> Result<(usize, u64), Error> {
        if let Err(why) = &self.vmx {
            return Err(format!("no vmx: {why}").into());
        }
        let slot = self
            .vms
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.vms.len());
        // One VPID per VM (the seed gave every VM VPID 1).
        let vpid = (1..=u16::MAX)
            .find(|v| !self.vms.iter().flatten().any(|vm| vm.vpid == *v))
            .ok_or(Error::from("too many VMs"))?;
        let counts: Vec<usize> = self.vm_cpus.iter().map(|&c| self.runs[c].len()).collect();
        let cpu = pick(&self.vm_cpus, &counts).unwrap_or(0);
        if cpu == 0 {
            if let Err(e) = self.vmxstart() {
                self.maybe_vmxoff();
                return Err(e);
            }
        }
        self.next_gen += 1;
        let gen = self.next_gen;
        let made = self.hw.now();
        let list = self.runs[cpu].clone();
        let mut made_vm = None;
        self.hw.on_cpu(cpu, &mut |hw| {
            made_vm = Some(Vm::create(hw, slot, gen, vpid).map(|mut vm| {
                vm.made = made;
                let p = Arc::new(Placed::new(vm, cpu));
                list.add(p.clone());
                p
            }));
        });
        match made_vm.unwrap_or(Err(Error::from("vm: its cpu did not answer"))) {
            Ok(p) => {
                if slot == self.vms.len() {
                    self.vms.push(Some(p));
                } else {
                    self.vms[slot] = Some(p);
                }
                Ok((slot, gen))
            }
            Err(e) => {
                self.maybe_vmxoff();
                Err(e)
            }
        }
    }

    /// cmdquit: the VM goes at once with every frame and segment reference it held.
    fn end_vm(&mut self, slot: usize) {
        let Some(p) = self.vms.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let list = self.runs[p.cpu].clone();
        let (segs, ended) = (&mut self.segs, &mut self.inside_ended);
        // On its CPU: off the run list, its VMCS cleared there, every frame back.
        self.hw.on_cpu(p.cpu, &mut |hw| {
            list.remove(slot);
            let mut vm = p.vm.lock();
            if !vm.has_frames() {
                return;
            }
            vm.state = State::Ending;
            if let Some(k) = &vm.kdev {
                ended.add(&k.counts);
            }
            vm.clear_map(hw, segs);
            vm.vmclear(hw);
            vm.free_frames(hw);
            let _ = p.publish(&vm);
        });
        self.maybe_vmxoff();
    }

    fn stat_of(&self, node: &Node) -> Result<Stat, Error> {
        let owner = &self.cfg.owner;
        // No access times are kept: atime is mtime.
        let mk = |path: u64, dir: bool, name: &str, len: u64, uid: &str, mode: u32, time| Stat {
            qid: Qid {
                ty: if dir { qt::DIR } else { qt::FILE },
                version: 0,
                path,
            },
            mode: if dir { dm::DIR | mode } else { mode },
            atime: time,
            mtime: time,
            length: len,
            name: name.to_string(),
            uid: uid.to_string(),
            gid: uid.to_string(),
            muid: uid.to_string(),
        };
        let vm = |slot: usize, gen: u64| self.vm(slot, gen);
        let boot = self.booted;
        Ok(match node.kind {
            Kind::Root => mk(ROOTQ, true, "/", 0, owner, 0o555, boot),
            Kind::Status => mk(ROOTQ | 1, false, "status", 0, owner, 0o444, boot),
            Kind::VmxDir => mk(0, true, "vmx", 0, owner, 0o555, boot),
            Kind::Clone => mk(QCLONE, false, "clone", 0, owner, 0o444, boot),
            Kind::Cpuid => mk(QCPUID, false, "cpuid", 0, owner, 0o444, boot),
            Kind::VmDir(slot, gen) => {
                let made = vm(slot, gen)?.made;
                let name = slot.to_string();
                mk(qidpath(slot, 0), true, &name, 0, owner, 0o555, made)
            }
            Kind::VmFile(slot, gen, f) => {
                let made = vm(slot, gen)?.made;
                let (name, _, mode) = *vmxfile(f);
                mk(qidpath(slot, f as u64), false, name, 0, owner, mode, made)
            }
            Kind::SegTop => mk(SEGQ, true, "segment", 0, owner, 0o777, boot),
            Kind::SegDir(slot, gen) => {
                let g = self.segs.global(slot, gen)?;
                mk(segpath(slot, 1), true, &g.name, 0, &g.uid, 0o777, g.made)
            }
            Kind::SegCtl(slot, gen) => {
                let g = self.segs.global(slot, gen)?;
                mk(segpath(slot, 2), false, "ctl", 0, &g.uid, g.perm, g.made)
            }
            Kind::SegData(slot, gen) => {
                let g = self.segs.global(slot, gen)?;
                let len = g
                    .seg
                    .and_then(|id| self.segs.mem(id))
                    .map_or(0, |m| m.size());
                mk(
                    segpath(slot, 3),
                    false,
                    "data",
                    len,
                    &g.uid,
                    g.perm,
                    g.written,
                )
            }
        })
    }

    fn children(&self, dir: &Node) -> Vec<Node> {
        let n = |k| Node::new(dir.top, k);
        match dir.kind {
            Kind::Root => [Kind::VmxDir, Kind::SegTop, Kind::Status]
                .into_iter()
                .map(n)
                .collect(),
            Kind::VmxDir => core::iter::once(n(Kind::Clone))
                .chain(
                    self.vms
                        .iter()
                        .flatten()
                        .map(|vm| n(Kind::VmDir(vm.index, vm.gen))),
                )
                .collect(),
            Kind::VmDir(slot, gen) => {
                let cons = self.vm(slot, gen).is_ok_and(|p| p.uart());
                VMXDIR
                    .iter()
                    .chain(cons.then_some(&CONS))
                    .map(|(_, f, _)| n(Kind::VmFile(slot, gen, *f)))
                    .collect()
            }
            Kind::SegTop => self
                .segs
                .globals
                .iter()
                .enumerate()
                .filter_map(|(i, g)| g.as_ref().map(|g| n(Kind::SegDir(i, g.gen))))
                .collect(),
            Kind::SegDir(slot, gen) => [Kind::SegCtl(slot, gen), Kind::SegData(slot, gen)]
                .into_iter()
                .map(n)
                .collect(),
            _ => Vec::new(),
        }
    }

    fn ctl(&mut self, slot: usize, gen: u64, data: &[u8]) -> Result<usize, Error> {
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
        self.with_vm(slot, gen, |hw, _, vm| match cm {
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
        })??;
        if cm == Cm::Devices {
            self.inside_used = true;
        }
        Ok(data.len())
    }

    /// Only a segment's creator or the host owner may remove it (devsegment let anyone)
    /// or change its files' metadata.
    fn seg_owner(&self, ctx: &Ctx, slot: usize, gen: u64) -> Result<(), Error> {
        let g = self.segs.global(slot, gen)?;
        if g.uid != ctx.uname && !self.is_owner(ctx) {
            return Err(EPERM.into());
        }
        Ok(())
    }

    /// What OTRUNC (or a length-0 wstat) does to a VM file: `map` loses every mapping
    /// (cmdclearmeminfo); the other files are unchanged.
    fn truncate(&mut self, slot: usize, gen: u64, f: VmF) -> Result<(), Error> {
        self.vm(slot, gen)?;
        if f == VmF::Map {
            self.with_vm(slot, gen, |hw, segs, vm| {
                vm.clear_map(hw, segs);
                vm.flush_ept();
            })?;
        }
        Ok(())
    }
}

/// What a Twstat asks of a file, checked whole before anything changes (stat(5): all
/// of it happens or none). A field left "don't touch" or equal to the file's value asks
/// nothing; what no file here can do (a rename, a new owner or group, a length other
/// than 0 or the current one, a mode beyond the permission bits) is "permission
/// denied". atime is accepted and ignored: no access times are kept.
struct Wstat {
    /// New permission bits.
    perm: Option<u32>,
    mtime: Option<u32>,
    /// Length 0: what OTRUNC does to the file.
    truncate: bool,
}

impl Wstat {
    /// `chmod`: whether this file's permission bits may change.
    fn check(st: &Stat, d: &Dir<'_>, chmod: bool) -> Result<Wstat, Error> {
        let keeps = |new: &str, cur: &str| new.is_empty() || new == cur;
        if !keeps(d.name, &st.name) || !keeps(d.uid, &st.uid) || !keeps(d.gid, &st.gid) {
            return Err(EPERM.into());
        }
        let perm = match d.mode {
            m if m == !0 || m == st.mode => None,
            m if chmod && m & !0o777 == st.mode & !0o777 => Some(m & 0o777),
            _ => return Err(EPERM.into()),
        };
        let truncate = match d.length {
            l if l == !0 || l == st.length && l != 0 => false,
            0 => true,
            _ => return Err(EPERM.into()),
        };
        Ok(Wstat {
            perm,
            mtime: (d.mtime != !0).then_some(d.mtime),
            truncate,
        })
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

impl<H: Hw> Tree for Namespace<H> {
    type Node = Node;

    fn attach(&mut self, ctx: &Ctx, aname: &str) -> Result<Node, Error> {
        let aname = self
            .owners
            .attach(&self.cfg.owner, ctx.uname, ctx.session, aname)?;
        match aname {
            "" | "/" => Ok(Node::new(Top::Root, Kind::Root)),
            "vmx" => Ok(Node::new(Top::Vmx, Kind::VmxDir)),
            "segment" => Ok(Node::new(Top::Seg, Kind::SegTop)),
            _ => Err(EBADATTACH.into()),
        }
    }

    fn walk(&mut self, _ctx: &Ctx, dir: &Node, name: &str) -> Result<Node, Error> {
        let top = dir.top;
        let n = |k| Ok(Node::new(top, k));
        if name == ".." {
            return match dir.kind {
                Kind::VmxDir if top == Top::Root => n(Kind::Root),
                Kind::SegTop if top == Top::Root => n(Kind::Root),
                Kind::VmDir(..) => n(Kind::VmxDir),
                Kind::SegDir(..) => n(Kind::SegTop),
                k => n(k),
            };
        }
        self.stat_of(dir)?;
        match dir.kind {
            Kind::Root => match name {
                "vmx" => n(Kind::VmxDir),
                "segment" => n(Kind::SegTop),
                "status" => n(Kind::Status),
                _ => Err(ENONEXIST.into()),
            },
            Kind::VmxDir => {
                if name == "clone" {
                    return n(Kind::Clone);
                }
                // Walkable, not listed: a listing of vmx/ stays the seed's.
                if name == "cpuid" {
                    return n(Kind::Cpuid);
                }
                let vm = name
                    .parse::<usize>()
                    .ok()
                    .filter(|i| i.to_string() == name)
                    .and_then(|i| self.vms.get(i))
                    .and_then(Option::as_ref)
                    .ok_or(Error::from(ENONEXIST))?;
                n(Kind::VmDir(vm.index, vm.gen))
            }
            Kind::VmDir(slot, gen) => VMXDIR
                .iter()
                .chain(core::iter::once(&CONS))
                .find(|(f, _, _)| *f == name)
                .map(|(_, f, _)| Node::new(top, Kind::VmFile(slot, gen, *f)))
                .ok_or(Error::from(ENONEXIST)),
            Kind::SegTop => self
                .segs
                .globals
                .iter()
                .enumerate()
                .find_map(|(i, g)| {
                    g.as_ref()
                        .filter(|g| g.name == name)
                        .map(|g| Node::new(top, Kind::SegDir(i, g.gen)))
                })
                .ok_or(Error::from(ENONEXIST)),
            Kind::SegDir(slot, gen) => match name {
                "ctl" => n(Kind::SegCtl(slot, gen)),
                "data" => n(Kind::SegData(slot, gen)),
                _ => Err(ENONEXIST.into()),
            },
            _ => Err(ENONEXIST.into()),
        }
    }

    fn stat(&mut self, _ctx: &Ctx, node: &Node) -> Result<Stat, Error> {
        self.stat_of(node)
    }

    fn may_open(&mut self, ctx: &Ctx, node: &Node, st: &Stat, need: u32) -> bool {
        match node.kind {
            // Opening clone opens the new VM's ctl (0660): vmxopen checks the ctl's mode.
            Kind::Clone => self.is_owner(ctx) && need & perm::EXEC == 0,
            _ => perm::allowed(st, ctx.uname, need),
        }
    }

    fn open(&mut self, ctx: &Ctx, node: &mut Node, mode: u8) -> Result<Qid, Error> {
        match node.kind {
            Kind::Clone => {
                if !self.is_owner(ctx) {
                    return Err(EPERM.into());
                }
                let (slot, gen) = self.vmxnew()?;
                node.kind = Kind::VmFile(slot, gen, VmF::Ctl);
            }
            Kind::VmFile(slot, gen, f) => {
                self.vm(slot, gen)?;
                if !self.is_owner(ctx) {
                    return Err(EPERM.into());
                }
                if mode & om::TRUNC != 0 {
                    self.truncate(slot, gen, f)?;
                }
            }
            Kind::SegData(slot, gen) => {
                let g = self.segs.global(slot, gen)?;
                if g.seg.is_none() {
                    return Err("segment not yet allocated".into());
                }
            }
            // ORCLOSE on ctl removes the segment at clunk: only one who may remove it
            // may ask (refused here rather than failing silently at the clunk).
            Kind::SegCtl(slot, gen) if mode & om::RCLOSE != 0 => {
                self.seg_owner(ctx, slot, gen)?;
            }
            _ => {}
        }
        Ok(self.stat_of(node)?.qid)
    }

    fn create(
        &mut self,
        ctx: &Ctx,
        dir: &mut Node,
        name: &str,
        perm_bits: u32,
        _mode: u8,
    ) -> Result<Qid, Error> {
        if dir.kind != Kind::SegTop {
            return Err(EPERM.into());
        }
        if self.segs.globals.iter().flatten().any(|g| g.name == name) {
            return Err(EEXIST.into());
        }
        if perm_bits & dm::DIR == 0 {
            return Err(EBADARG.into());
        }
        let now = self.hw.now();
        let (slot, gen) = self.segs.create(name, ctx.uname, now)?;
        dir.kind = Kind::SegDir(slot, gen);
        Ok(self.stat_of(dir)?.qid)
    }

    fn readdir(&mut self, _ctx: &Ctx, dir: &Node) -> Result<Vec<Stat>, Error> {
        self.stat_of(dir)?;
        Ok(self
            .children(dir)
            .iter()
            .filter_map(|n| self.stat_of(n).ok())
            .collect())
    }

    fn read(
        &mut self,
        _ctx: &Ctx,
        node: &mut Node,
        off: u64,
        buf: &mut [u8],
    ) -> Result<Read, Error> {
        let done = |n| Ok(Read::Done(n));
        match node.kind {
            Kind::Status => {
                if off == 0 {
                    node.aux = self.status_text().into_bytes();
                }
                done(readstr(off, buf, &node.aux))
            }
            Kind::VmFile(slot, gen, f) => {
                let p = match self.vm(slot, gen) {
                    Ok(p) => p,
                    // A wait that was blocked when its VM ended gets Equit, as the
                    // seed's killcmds gave it.
                    Err(_) if node.waiting => {
                        node.waiting = false;
                        return Err(EQUIT.into());
                    }
                    Err(e) => return Err(e),
                };
                // A pending wait (or cons read) on a VM running elsewhere with
                // nothing to report (or no output) stays pending without asking.
                let quiet = match f {
                    VmF::Wait => p.quiet(),
                    VmF::Cons => p.cons_quiet(),
                    _ => false,
                };
                if quiet && p.cpu != 0 && !buf.is_empty() {
                    node.waiting = true;
                    return Ok(Read::Pending);
                }
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
                        VmF::Cons => vm.cons_read(hw, buf)?,
                    })
                })?;
                match f {
                    VmF::Wait | VmF::Cons => blocking(node, r),
                    _ => r.map(|n| Read::Done(n.unwrap_or(0))),
                }
            }
            Kind::SegCtl(slot, gen) => {
                let text = self.segs.ctl_text(slot, gen)?;
                done(readstr(off, buf, text.as_bytes()))
            }
            Kind::SegData(slot, gen) => {
                let n = self.segs.io(&mut self.hw, slot, gen, off, buf, None)?;
                done(n)
            }
            Kind::Cpuid => {
                if off == 0 {
                    node.aux = self.cpuid_text().into_bytes();
                }
                done(readstr(off, buf, &node.aux))
            }
            Kind::Clone => Err(EGREG.into()),
            _ => Err(EISDIR.into()),
        }
    }

    fn write(&mut self, ctx: &Ctx, node: &mut Node, off: u64, data: &[u8]) -> Result<usize, Error> {
        match node.kind {
            Kind::VmFile(slot, gen, VmF::Ctl) => self.ctl(slot, gen, data),
            Kind::VmFile(slot, gen, f) => self.with_vm(slot, gen, |hw, segs, vm| match f {
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
                VmF::Status | VmF::Wait => Err(EGREG.into()),
            })?,
            Kind::SegCtl(slot, gen) => {
                self.segs.ctl(&mut self.hw, slot, gen, data)?;
                Ok(data.len())
            }
            Kind::SegData(slot, gen) => {
                let mut none = [0u8; 0];
                self.segs
                    .io(&mut self.hw, slot, gen, off, &mut none, Some(data))
            }
            _ => Err(EPERM.into()),
        }
    }

    fn remove(&mut self, ctx: &Ctx, node: &Node) -> Result<(), Error> {
        match node.kind {
            Kind::VmFile(slot, gen, VmF::Ctl) => {
                self.vm(slot, gen)?;
                // The seed let anyone who could walk to ctl remove it.
                if !self.is_owner(ctx) {
                    return Err(EPERM.into());
                }
                // The seed only marked the VM moribund and ended it at the next remove.
                self.end_vm(slot);
                Ok(())
            }
            // Removing a segment's ctl removes the segment, as removing a VM's ctl ends
            // the VM: opened with ORCLOSE, the segment lives as long as that fid.
            Kind::SegDir(slot, gen) | Kind::SegCtl(slot, gen) => {
                self.seg_owner(ctx, slot, gen)?;
                self.segs.remove(&mut self.hw, slot);
                Ok(())
            }
            _ => Err(EPERM.into()),
        }
    }

    fn wstat(&mut self, ctx: &Ctx, node: &Node, d: &Dir<'_>) -> Result<(), Error> {
        let st = self.stat_of(node)?;
        match node.kind {
            Kind::SegCtl(slot, gen) | Kind::SegData(slot, gen) => {
                self.seg_owner(ctx, slot, gen)?;
                let w = Wstat::check(&st, d, true)?;
                let g = self.segs.global_mut(slot, gen)?;
                // A truncation does what OTRUNC does to a segment: nothing
                // (segmentopen ignores it).
                if let Some(m) = w.perm {
                    g.perm = m;
                }
                if let (Kind::SegData(..), Some(t)) = (node.kind, w.mtime) {
                    g.written = t;
                }
                Ok(())
            }
            // The seed refused every wstat; clients truncate before a write with a
            // length-0 wstat (9pfuse with mtime "don't touch", Linux v9fs with mtime
            // now), so the writable files take it as OTRUNC.
            Kind::VmFile(slot, gen, f)
                if matches!(f, VmF::Map | VmF::Regs | VmF::Ctl | VmF::Fpregs) =>
            {
                if !self.is_owner(ctx) {
                    return Err(EPERM.into());
                }
                // A VM's files keep the time the VM was made: an mtime is ignored.
                if Wstat::check(&st, d, false)?.truncate {
                    self.truncate(slot, gen, f)?;
                }
                Ok(())
            }
            _ => Err(EPERM.into()),
        }
    }
}
