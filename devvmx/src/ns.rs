//! The served tree: a root holding `vmx/` (the #X device), `segment/` (segment(3)) and a
//! `status` file, as a `ninep::Tree`.

use crate::hw::Hw;
use crate::plan9::{
    lookupcmd, parsecmd, readstr, Cmdtab, EBADARG, EEXIST, EGREG, EISDIR, ENONEXIST, EPERM,
};
use crate::segment::Segments;
use crate::status::{self, Facts};
use crate::table::VmTable;
use crate::vm::Vm;
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
    vms: VmTable,
    segs: Segments,
    /// When the namespace was made (the kernel's boot): the times of the root, `vmx/`,
    /// `segment/`, `status` and `clone`.
    booted: u32,
    /// What the host last told.
    facts: Facts,
}

impl<H: Hw> Namespace<H> {
    pub fn new(mut hw: H, cfg: Config) -> Self {
        let vms = VmTable::new(crate::vtx::vmxreset(&mut hw));
        let booted = hw.now();
        Namespace {
            hw,
            cfg,
            vms,
            segs: Segments::new(),
            booted,
            facts: Facts::default(),
        }
    }

    pub fn hw(&self) -> &H {
        &self.hw
    }

    pub fn hw_mut(&mut self) -> &mut H {
        &mut self.hw
    }

    /// The VM table: where VMs run, and each CPU's run list.
    pub fn vms(&self) -> &VmTable {
        &self.vms
    }

    /// The VM table, to tell it which CPUs run VMs ([`VmTable::set_cpus`]).
    pub fn vms_mut(&mut self) -> &mut VmTable {
        &mut self.vms
    }

    /// What the host last told ([`Namespace::set_facts`]).
    pub fn facts(&self) -> &Facts {
        &self.facts
    }

    /// The host's facts, for the status file and the owner's attach on network links.
    pub fn set_facts(&mut self, facts: Facts) {
        self.facts = facts;
    }

    /// Why VMs cannot run here, if they cannot.
    pub fn vmx_unavailable(&self) -> Option<&str> {
        self.vms.unavailable()
    }

    /// VMs in existence.
    pub fn vm_count(&self) -> usize {
        self.vms.count()
    }

    /// The guest-physical EPT leaf of VM `index` (0 where unmapped), for tests.
    #[cfg(any(test, feature = "testhw"))]
    pub fn ept_entry(&mut self, index: usize, gpa: u64) -> Option<u64> {
        self.vms.ept_entry(&mut self.hw, index, gpa)
    }

    /// The VPID of VM `index`, for tests.
    #[cfg(any(test, feature = "testhw"))]
    pub fn vpid(&self, index: usize) -> Option<u16> {
        Some(self.vms.at(index)?.vpid)
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
        self.vms.run_here(&mut self.hw)
    }

    /// Runs `f` on VM `slot`'s CPU with that VM, the segments and that CPU's layer.
    fn with_vm<R>(
        &mut self,
        slot: usize,
        gen: u64,
        f: impl FnOnce(&mut H, &mut Segments, &mut Vm) -> R,
    ) -> Result<R, Error> {
        self.vms.with_vm(&mut self.hw, &mut self.segs, slot, gen, f)
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
        let shown = status::Shown {
            version: self.cfg.version,
            owner: &self.cfg.owner,
            frames: (self.hw.frames_free(), self.hw.frames_total()),
            segments: self.segs.count(),
        };
        status::text(&shown, &self.facts, &self.vms)
    }

    fn vm(&self, slot: usize, gen: u64) -> Result<&Arc<crate::place::Placed>, Error> {
        self.vms.get(slot, gen)
    }

    fn is_owner(&self, ctx: &Ctx) -> bool {
        ctx.uname == self.cfg.owner
    }

    /// cmdquit: the VM goes at once with every frame and segment reference it held.
    fn end_vm(&mut self, slot: usize) {
        self.vms.end(&mut self.hw, &mut self.segs, slot);
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
                .chain(self.vms.iter().map(|vm| n(Kind::VmDir(vm.index, vm.gen))))
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
            self.vms.devices_used();
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
            .facts
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
                    .and_then(|i| self.vms.at(i))
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
                let (slot, gen) = self.vms.create(&mut self.hw)?;
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
