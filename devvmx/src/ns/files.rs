//! The tree's files: which attach a node came from, the VM directory's files (the seed's
//! vmxdir[]), qid paths, each file's stat and each directory's entries, and what a Twstat
//! may change.

use super::Namespace;
use crate::hw::Hw;
use crate::plan9::{ENONEXIST, EPERM};
use alloc::string::ToString;
use alloc::vec::Vec;
use ninep::{Error, Stat};
use protocol::{dm, qt, Dir, Qid};

/// Which attach a node was reached from: `..` stops at its top.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Top {
    Root,
    Vmx,
    Seg,
}

/// Files of a VM directory, numbered as the seed's Q* constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum VmF {
    Ctl = 1,
    Regs = 2,
    Status = 3,
    Map = 4,
    Wait = 5,
    Fpregs = 6,
    Cons = 7,
    Blk = 8,
    BlkDirty = 9,
    BlkQ = 10,
    Net = 11,
}

/// The seed's vmxdir[]: name, file, mode.
pub(super) const VMXDIR: [(&str, VmF, u32); 6] = [
    ("ctl", VmF::Ctl, 0o660),
    ("regs", VmF::Regs, 0o660),
    ("status", VmF::Status, 0o440),
    ("map", VmF::Map, 0o660),
    ("wait", VmF::Wait, 0o440),
    ("fpregs", VmF::Fpregs, 0o660),
];

/// The in-kernel UART's console (an extension): listed only in the directory of a VM
/// whose `devices` include `uart`.
pub(super) const CONS: (&str, VmF, u32) = ("cons", VmF::Cons, 0o660);

/// The in-kernel disks' files (extensions, kdev/blk.rs and kdev/blkq.rs): listed only
/// in the directory of a VM with a `pci blk` disk.
pub(super) const BLKFILES: [(&str, VmF, u32); 3] = [
    ("blk", VmF::Blk, 0o440),
    ("blkdirty", VmF::BlkDirty, 0o440),
    ("blkq", VmF::BlkQ, 0o660),
];

/// The in-kernel cards' file (an extension, kdev/net.rs): listed only in the directory
/// of a VM with a `pci net` card.
pub(super) const NETFILE: (&str, VmF, u32) = ("net", VmF::Net, 0o440);

fn vmxfile(f: VmF) -> &'static (&'static str, VmF, u32) {
    VMXDIR
        .iter()
        .chain(core::iter::once(&CONS))
        .chain(BLKFILES.iter())
        .chain(core::iter::once(&NETFILE))
        .find(|e| e.1 == f)
        .unwrap_or(&CONS)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
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
    /// `switch/`, its `clone`, and an opened clone: a client port's queue file.
    SwitchDir,
    SwitchClone,
    SwitchPort(u16),
}

/// A file of the tree, with what an open fid keeps: the text a read at offset 0 made
/// (the seed's c->aux) and whether a wait read is blocked on it.
#[derive(Clone, Debug)]
pub struct Node {
    pub(super) top: Top,
    pub(super) kind: Kind,
    pub(super) aux: Vec<u8>,
    pub(super) waiting: bool,
}

impl Node {
    pub(super) fn new(top: Top, kind: Kind) -> Self {
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
/// `switch/` (an extension): its own tag; clone 1, port N's queue file 2 + N.
const SWQ: u64 = 1 << 61;

fn qidpath(slot: usize, file: u64) -> u64 {
    ((slot as u64 + 1) << 8) | file
}

fn segpath(slot: usize, t: u64) -> u64 {
    SEGQ | (slot as u64) << 3 | t
}

impl<H: Hw> Namespace<H> {
    pub(super) fn stat_of(&self, node: &Node) -> Result<Stat, Error> {
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
            Kind::SwitchDir => mk(SWQ, true, "switch", 0, owner, 0o555, boot),
            Kind::SwitchClone => mk(SWQ | 1, false, "clone", 0, owner, 0o660, boot),
            Kind::SwitchPort(p) => {
                if !self.port_exists(p) {
                    return Err(ENONEXIST.into());
                }
                let name = p.to_string();
                mk(
                    SWQ | (2 + u64::from(p)),
                    false,
                    &name,
                    0,
                    owner,
                    0o660,
                    boot,
                )
            }
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

    pub(super) fn children(&self, dir: &Node) -> Vec<Node> {
        let n = |k| Node::new(dir.top, k);
        match dir.kind {
            // `switch` is walkable, not listed: a listing of the root stays the seed's.
            Kind::Root => [Kind::VmxDir, Kind::SegTop, Kind::Status]
                .into_iter()
                .map(n)
                .collect(),
            Kind::SwitchDir => alloc::vec![n(Kind::SwitchClone)],
            Kind::VmxDir => core::iter::once(n(Kind::Clone))
                .chain(self.vms.iter().map(|vm| n(Kind::VmDir(vm.index, vm.gen))))
                .collect(),
            Kind::VmDir(slot, gen) => {
                let cons = self.vm(slot, gen).is_ok_and(|p| p.uart());
                let disks = self.vm(slot, gen).is_ok_and(|p| p.disks());
                let nets = self.vm(slot, gen).is_ok_and(|p| p.nets());
                VMXDIR
                    .iter()
                    .chain(cons.then_some(&CONS))
                    .chain(BLKFILES.iter().filter(|_| disks))
                    .chain(nets.then_some(&NETFILE))
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
}

/// What a Twstat asks of a file, checked whole before anything changes (stat(5): all
/// of it happens or none). A field left "don't touch" or equal to the file's value asks
/// nothing; what no file here can do (a rename, a new owner or group, a length other
/// than 0 or the current one, a mode beyond the permission bits) is "permission
/// denied". atime is accepted and ignored: no access times are kept.
pub(super) struct Wstat {
    /// New permission bits.
    pub(super) perm: Option<u32>,
    pub(super) mtime: Option<u32>,
    /// Length 0: what OTRUNC does to the file.
    pub(super) truncate: bool,
}

impl Wstat {
    /// `chmod`: whether this file's permission bits may change.
    pub(super) fn check(st: &Stat, d: &Dir<'_>, chmod: bool) -> Result<Wstat, Error> {
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
