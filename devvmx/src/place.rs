//! VMs on several CPUs: where each VM runs, and what its CPU publishes for the 9P side.
//!
//! The seed's vmxnew put a VM on the CPU with the fewest VMs and wired its process there.
//! Here the boot CPU serves 9P and, when other CPUs can run VMs, places each new VM on
//! one of them ([`pick`]); that CPU runs its [`RunList`] between the commands the boot
//! CPU hands it ([`crate::hw::Hw::on_cpu`]), so a VM's VMCS, EPT and state are only ever
//! touched there. With no other CPU, the boot CPU runs every VM as before.

use crate::hw::Hw;
use crate::kdev::Counts;
use crate::vm::{State, Vm};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use spin::Mutex;

/// The CPU for a new VM: the one with the fewest VMs (the first of those), as vmxnew.
/// `counts[i]` is how many VMs CPU `cpus[i]` runs; `None` when there is no CPU.
pub fn pick(cpus: &[usize], counts: &[usize]) -> Option<usize> {
    cpus.iter()
        .zip(counts)
        .min_by_key(|(_, n)| **n)
        .map(|(c, _)| *c)
}

/// One VM and what never changes about it, shared between the 9P side and its CPU.
pub struct Placed {
    pub index: usize,
    pub gen: u64,
    pub vpid: u16,
    pub made: u32,
    /// The CPU it runs on.
    pub cpu: usize,
    /// Only ever locked on `cpu` (in its run list or a command handed to it).
    pub(crate) vm: Mutex<Vm>,
    /// Published by its CPU after each run and command, for the 9P side to read without
    /// asking that CPU.
    busy: AtomicBool,
    /// Running, halted or not (a halted guest waits for its in-kernel devices' time).
    running: AtomicBool,
    /// Running with nothing for a wait read: a pending wait need not ask the CPU.
    quiet: AtomicBool,
    uart: AtomicBool,
    /// Has in-kernel disks (the `blk` files).
    disks: AtomicBool,
    /// A `blkq` read would find requests.
    blkq_ready: AtomicBool,
    /// Has in-kernel cards (the `net` file).
    nets: AtomicBool,
    /// Running, not halted, with no console output queued: a pending `cons` read need
    /// not ask the CPU (kdev's `cons_take` would answer nothing).
    cons_quiet: AtomicBool,
    /// Stopped for its client (not dead): a `cons` read that waited goes on waiting.
    cons_held: AtomicBool,
    counts: Mutex<Counts>,
}

impl Placed {
    pub(crate) fn new(vm: Vm, cpu: usize) -> Placed {
        let p = Placed {
            index: vm.index,
            gen: vm.gen,
            vpid: vm.vpid,
            made: vm.made,
            cpu,
            vm: Mutex::new(vm),
            busy: AtomicBool::new(false),
            running: AtomicBool::new(false),
            quiet: AtomicBool::new(false),
            uart: AtomicBool::new(false),
            disks: AtomicBool::new(false),
            blkq_ready: AtomicBool::new(false),
            nets: AtomicBool::new(false),
            cons_quiet: AtomicBool::new(false),
            cons_held: AtomicBool::new(false),
            counts: Mutex::new(Counts::default()),
        };
        p.publish(&p.vm.lock());
        p
    }

    /// Tells the 9P side what changed (on the VM's CPU, the VM locked); true when a
    /// pending read may now be answered (a flag the 9P side reads changed).
    pub(crate) fn publish(&self, vm: &Vm) -> bool {
        let mut news = self.busy.swap(vm.busy(), Ordering::AcqRel) != vm.busy();
        let running = vm.state == State::Running;
        news |= self.running.swap(running, Ordering::AcqRel) != running;
        let quiet = running && !vm.has_report();
        news |= self.quiet.swap(quiet, Ordering::AcqRel) != quiet;
        let k = vm.kdev.as_ref();
        self.uart.store(
            k.is_some_and(|k| k.has(crate::kdev::UART)),
            Ordering::Release,
        );
        self.disks
            .store(k.is_some_and(|k| !k.disks.is_empty()), Ordering::Release);
        self.nets
            .store(k.is_some_and(|k| k.has_nets()), Ordering::Release);
        let ready = k.is_some_and(|k| k.blkq.ready(&k.disks));
        news |= self.blkq_ready.swap(ready, Ordering::AcqRel) != ready;
        let cons_quiet = running && k.is_some_and(|k| !k.halted && k.board.com[0].tx.is_empty());
        news |= self.cons_quiet.swap(cons_quiet, Ordering::AcqRel) != cons_quiet;
        // A firmware machine answers a waiting read at a stop (`Vm::cons_read`).
        let held = !running && vm.state != State::Dead && !k.is_some_and(|k| k.is_firmware());
        news |= self.cons_held.swap(held, Ordering::AcqRel) != held;
        if let Some(k) = k {
            *self.counts.lock() = k.counts;
        }
        news
    }

    /// Running and not halted, as last published.
    pub fn busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// Running with no report, as last published.
    pub fn quiet(&self) -> bool {
        self.quiet.load(Ordering::Acquire)
    }

    /// A `cons` read (`waiting`: one that already waited) would wait, as last
    /// published: the guest runs with no output, or the VM is stopped and it waited.
    pub fn cons_quiet(&self, waiting: bool) -> bool {
        self.cons_quiet.load(Ordering::Acquire) || waiting && self.cons_held.load(Ordering::Acquire)
    }

    /// Has the in-kernel UART (a `cons` file).
    pub fn uart(&self) -> bool {
        self.uart.load(Ordering::Acquire)
    }

    /// Has in-kernel disks, as last published.
    pub fn disks(&self) -> bool {
        self.disks.load(Ordering::Acquire)
    }

    /// Has in-kernel cards, as last published.
    pub fn nets(&self) -> bool {
        self.nets.load(Ordering::Acquire)
    }

    /// A `blkq` read would find requests, as last published.
    pub fn blkq_ready(&self) -> bool {
        self.blkq_ready.load(Ordering::Acquire)
    }

    /// What its in-kernel devices answered, as last published.
    pub fn counts(&self) -> Counts {
        *self.counts.lock()
    }
}

/// The VMs one CPU runs.
#[derive(Default)]
pub struct RunList {
    vms: Mutex<Vec<Arc<Placed>>>,
    /// A run published news since `take_news`.
    news: AtomicBool,
}

impl RunList {
    /// Enters each running VM of this list once (on its CPU); true while any is busy.
    /// `between` runs before each VM's turn: the CPU takes posted calls there, so the
    /// boot CPU waits for one VM's run at most, not the whole list's.
    pub fn run<H: Hw>(&self, hw: &mut H, between: &mut dyn FnMut(&mut H)) -> bool {
        let vms = self.vms.lock().clone();
        let mut any = false;
        for p in &vms {
            between(hw);
            // A command on the VM holds it: the next round runs it.
            let Some(mut vm) = p.vm.try_lock() else {
                any = true;
                continue;
            };
            vm.run(hw);
            if p.publish(&vm) {
                self.news.store(true, Ordering::Release);
            }
            any |= vm.busy();
        }
        any
    }

    /// Whether a run changed what a pending read on this list's VMs would answer since
    /// the last call: the CPU then wakes the 9P side rather than let it poll.
    pub fn take_news(&self) -> bool {
        self.news.swap(false, Ordering::AcqRel)
    }

    pub(crate) fn add(&self, p: Arc<Placed>) {
        self.vms.lock().push(p);
    }

    pub(crate) fn remove(&self, index: usize) {
        self.vms.lock().retain(|p| p.index != index);
    }

    /// Some VM of this list runs, maybe halted for its in-kernel devices: a CPU with
    /// no timer of its own comes back for it rather than halt.
    pub fn running(&self) -> bool {
        self.vms
            .lock()
            .iter()
            .any(|p| p.running.load(Ordering::Acquire))
    }

    /// VMs on this list.
    pub fn len(&self) -> usize {
        self.vms.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
