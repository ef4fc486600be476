//! The served tree: a root holding `vmx/` (the #X device), `segment/` (segment(3)) and a
//! `status` file, as a `ninep::Tree`. This file maps each kind of file to the layer that
//! answers it: the files themselves (names, qids, stats, listings) are `files`, a VM's
//! files `vmfile`, the VMs [`crate::table`], segments [`crate::segment`], the root status
//! [`crate::status`].

use crate::hw::Hw;
use crate::plan9::{readstr, EBADARG, EEXIST, EGREG, EISDIR, ENONEXIST, EPERM};
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
use protocol::{dm, om, Dir, Qid};

mod files;
mod switch;
mod vmfile;

pub use files::Node;
use files::{Kind, Top, VmF, Wstat, BLKFILES, CONS, NETFILE, VMXDIR};
pub use switch::{HostSwitch, SharedSwitch};

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
    /// The host's switch, when it runs one (`switch/`).
    switch: Option<HostSwitch>,
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
            switch: None,
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

    /// Only a segment's creator or the host owner may remove it (devsegment let anyone)
    /// or change its files' metadata.
    fn seg_owner(&self, ctx: &Ctx, slot: usize, gen: u64) -> Result<(), Error> {
        let g = self.segs.global(slot, gen)?;
        if g.uid != ctx.uname && !self.is_owner(ctx) {
            return Err(EPERM.into());
        }
        Ok(())
    }
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

    fn gated(&self, ctx: &Ctx, _aname: &str) -> bool {
        self.facts
            .owners
            .checks(&self.cfg.owner, ctx.uname, ctx.session)
    }

    fn walk(&mut self, _ctx: &Ctx, dir: &Node, name: &str) -> Result<Node, Error> {
        let top = dir.top;
        let n = |k| Ok(Node::new(top, k));
        if name == ".." {
            return match dir.kind {
                Kind::VmxDir if top == Top::Root => n(Kind::Root),
                Kind::SegTop if top == Top::Root => n(Kind::Root),
                Kind::SwitchDir => n(Kind::Root),
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
                "switch" if self.switch.is_some() => n(Kind::SwitchDir),
                _ => Err(ENONEXIST.into()),
            },
            Kind::SwitchDir => match name {
                "clone" => n(Kind::SwitchClone),
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
                .chain(BLKFILES.iter())
                .chain(core::iter::once(&NETFILE))
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

    fn clunk(&mut self, _ctx: &Ctx, node: Node, _opened: bool) {
        if let Kind::SwitchPort(p) = node.kind {
            self.close_port(p);
        }
    }

    fn stat(&mut self, _ctx: &Ctx, node: &Node) -> Result<Stat, Error> {
        self.stat_of(node)
    }

    fn may_open(&mut self, ctx: &Ctx, node: &Node, st: &Stat, need: u32) -> bool {
        match node.kind {
            // Opening clone opens the new VM's ctl (0660): vmxopen checks the ctl's mode.
            Kind::Clone => self.is_owner(ctx) && need & perm::EXEC == 0,
            Kind::SwitchClone => self.is_owner(ctx) && perm::allowed(st, ctx.uname, need),
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
            Kind::SwitchClone => {
                if !self.is_owner(ctx) {
                    return Err(EPERM.into());
                }
                node.kind = Kind::SwitchPort(self.open_port()?);
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
                self.segs.allocated(slot, gen)?;
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
            Kind::VmFile(slot, gen, f) => self.read_vm(node, slot, gen, f, off, buf),
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
            Kind::SwitchPort(p) => self.read_port(p, buf),
            Kind::Clone | Kind::SwitchClone => Err(EGREG.into()),
            _ => Err(EISDIR.into()),
        }
    }

    fn write(&mut self, ctx: &Ctx, node: &mut Node, off: u64, data: &[u8]) -> Result<usize, Error> {
        match node.kind {
            Kind::VmFile(slot, gen, VmF::Ctl) => self.ctl(slot, gen, data, ctx.uname),
            Kind::VmFile(slot, gen, f) => self.write_vm(ctx, slot, gen, f, off, data),
            Kind::SegCtl(slot, gen) => {
                self.segs.ctl(&mut self.hw, slot, gen, data)?;
                Ok(data.len())
            }
            Kind::SegData(slot, gen) => {
                let mut none = [0u8; 0];
                self.segs
                    .io(&mut self.hw, slot, gen, off, &mut none, Some(data))
            }
            Kind::SwitchPort(p) => self.write_port(p, data),
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
