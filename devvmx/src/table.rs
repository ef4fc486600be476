//! The VM table: which VMs exist (slots, each with a generation so that a stale file is
//! told apart from a new VM in the same slot), their VPIDs, the CPU each runs on and that
//! CPU's run list, and the boot CPU's VMX root operation, on while it runs a VM. Making a
//! VM (the seed's vmxnew), ending one (cmdquit) and every command on one
//! (`VmTable::with_vm`) happen on the VM's own CPU through [`Hw::on_cpu`].

use crate::caps::Caps;
use crate::hw::Hw;
use crate::kdev::Counts;
use crate::place::{pick, Placed, RunList};
use crate::plan9::ENONEXIST;
use crate::segment::Segments;
use crate::vm::{State, Vm};
use crate::vtx::Vmxon;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use ninep::Error;

/// Every VM, and where each runs.
pub struct VmTable {
    /// What VT-x can do here, or why it cannot be used (vmxreset).
    vmx: Result<Caps, String>,
    vms: Vec<Option<Arc<Placed>>>,
    /// The CPUs that run VMs other than the boot one, and each one's run list
    /// (indexed by CPU; the boot CPU's, 0, runs VMs when no other CPU can).
    vm_cpus: Vec<usize>,
    runs: Vec<Arc<RunList>>,
    next_gen: u64,
    /// The boot CPU's VMXON, while it runs a VM.
    vmxon: Vmxon,
    /// What in-kernel devices answered for VMs that have ended.
    inside_ended: Counts,
    /// Some VM asked for in-kernel devices since boot.
    inside_used: bool,
}

impl VmTable {
    /// An empty table; `vmx` says whether VT-x can be used (vmxreset on the boot CPU).
    pub(crate) fn new(vmx: Result<Caps, String>) -> Self {
        VmTable {
            vmx,
            vms: Vec::new(),
            vm_cpus: Vec::new(),
            runs: alloc::vec![Arc::new(RunList::default())],
            next_gen: 0,
            vmxon: Vmxon::default(),
            inside_ended: Counts::default(),
            inside_used: false,
        }
    }

    /// The CPUs other than the boot one that run VMs (each already in VMX root operation):
    /// new VMs go to the one with the fewest; with none, the boot CPU runs them.
    pub fn set_cpus(&mut self, cpus: &[usize]) {
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
    pub fn cpu_of(&self, index: usize) -> Option<usize> {
        Some(self.vms.get(index)?.as_ref()?.cpu)
    }

    /// Why VMs cannot run here, if they cannot.
    pub(crate) fn unavailable(&self) -> Option<&str> {
        self.vmx.as_ref().err().map(String::as_str)
    }

    /// What VT-x can do here (the boot CPU's vmxreset), or why VMs cannot run: what the
    /// kernel logs at boot.
    pub fn vmx(&self) -> Result<&Caps, &str> {
        self.vmx.as_ref().map_err(String::as_str)
    }

    /// VMs in existence.
    pub(crate) fn count(&self) -> usize {
        self.vms.iter().flatten().count()
    }

    /// Every VM, by slot.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<Placed>> {
        self.vms.iter().flatten()
    }

    /// The VM in slot `index`, whatever its generation.
    pub(crate) fn at(&self, index: usize) -> Option<&Arc<Placed>> {
        self.vms.get(index)?.as_ref()
    }

    /// The VM in `slot` if it is still generation `gen`.
    pub(crate) fn get(&self, slot: usize, gen: u64) -> Result<&Arc<Placed>, Error> {
        match self.vms.get(slot) {
            Some(Some(p)) if p.gen == gen => Ok(p),
            _ => Err(ENONEXIST.into()),
        }
    }

    /// Whether CPUs other than the boot one run VMs.
    pub(crate) fn spread(&self) -> bool {
        !self.vm_cpus.is_empty()
    }

    /// Some VM asked for in-kernel devices.
    pub(crate) fn devices_used(&mut self) {
        self.inside_used = true;
    }

    /// Exits in-kernel devices answered since boot, over every VM; None until some VM
    /// has asked for them.
    pub(crate) fn inside_counts(&self) -> Option<Counts> {
        let mut c = self.inside_ended;
        for p in self.iter() {
            c.add(&p.counts());
        }
        self.inside_used.then_some(c)
    }

    /// Enters each running VM of the boot CPU once; true while any VM there is still
    /// running.
    pub(crate) fn run_here<H: Hw>(&self, hw: &mut H) -> bool {
        self.runs[0].run(hw, &mut |_| {})
    }

    /// Runs `f` on VM `slot`'s CPU with that VM, the segments and that CPU's layer.
    pub(crate) fn with_vm<H: Hw, R>(
        &self,
        hw: &mut H,
        segs: &mut Segments,
        slot: usize,
        gen: u64,
        f: impl FnOnce(&mut H, &mut Segments, &mut Vm) -> R,
    ) -> Result<R, Error> {
        let p = self.get(slot, gen)?.clone();
        let mut f = Some(f);
        let mut r = None;
        hw.on_cpu(p.cpu, &mut |hw| {
            if let Some(f) = f.take() {
                let mut vm = p.vm.lock();
                r = Some(f(hw, segs, &mut vm));
                // The 9P side is waiting for this: no wake-up needed.
                let _ = p.publish(&vm);
            }
        });
        r.ok_or(Error::from("vm: its cpu did not answer"))
    }

    /// VMXOFF once no VM is left on the boot CPU.
    fn maybe_vmxoff<H: Hw>(&mut self, hw: &mut H) {
        if self.runs[0].is_empty() {
            self.vmxon.stop(hw);
        }
    }

    /// vmxnew: a ready VM in the first free slot; its slot and generation.
    pub(crate) fn create<H: Hw>(&mut self, hw: &mut H) -> Result<(usize, u64), Error> {
        let caps = match &self.vmx {
            Ok(caps) => *caps,
            Err(why) => return Err(format!("no vmx: {why}").into()),
        };
        let slot = self
            .vms
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.vms.len());
        // One VPID per VM (the seed gave every VM VPID 1).
        let vpid = (1..=u16::MAX)
            .find(|v| !self.iter().any(|vm| vm.vpid == *v))
            .ok_or(Error::from("too many VMs"))?;
        let counts: Vec<usize> = self.vm_cpus.iter().map(|&c| self.runs[c].len()).collect();
        let cpu = pick(&self.vm_cpus, &counts).unwrap_or(0);
        if cpu == 0 {
            if let Err(e) = self.vmxon.start(hw, &caps) {
                self.maybe_vmxoff(hw);
                return Err(e);
            }
        }
        self.next_gen += 1;
        let gen = self.next_gen;
        let made = hw.now();
        let list = self.runs[cpu].clone();
        let mut made_vm = None;
        hw.on_cpu(cpu, &mut |hw| {
            made_vm = Some(Vm::create(hw, &caps, slot, gen, vpid).map(|mut vm| {
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
                self.maybe_vmxoff(hw);
                Err(e)
            }
        }
    }

    /// cmdquit: the VM goes at once with every frame and segment reference it held.
    pub(crate) fn end<H: Hw>(&mut self, hw: &mut H, segs: &mut Segments, slot: usize) {
        let Some(p) = self.vms.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let list = self.runs[p.cpu].clone();
        let ended = &mut self.inside_ended;
        // On its CPU: off the run list, its VMCS cleared there, every frame back.
        hw.on_cpu(p.cpu, &mut |hw| {
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
            vm.release_devices(hw, segs);
            vm.vmclear(hw);
            vm.free_frames(hw);
            let _ = p.publish(&vm);
        });
        self.maybe_vmxoff(hw);
    }

    /// The guest-physical EPT leaf of VM `index` (0 where unmapped), for tests.
    #[cfg(any(test, feature = "testhw"))]
    pub(crate) fn ept_entry<H: Hw>(&self, hw: &mut H, index: usize, gpa: u64) -> Option<u64> {
        let p = self.at(index)?;
        let vm = p.vm.lock();
        Some(vm.ept.lookup(hw, gpa))
    }
}
