//! A [`Hw`] double for host tests and fuzzing: frames are boxed pages, each VMCS is a map
//! of fields per region, capability MSRs are those of Bochs's corei7_haswell_4770 (the
//! values measured in shared/notes/emulators.md, the rest typical of that CPU), and VM
//! entries apply scripted exits.

use crate::hw::{EntryState, Frame, Hw, Phys, VmxFail, PAGE};
use crate::vmcs::*;
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

/// A scripted VM exit: what `enter` leaves in the VMCS.
#[derive(Clone, Debug, Default)]
pub struct Exit {
    pub reason: u32,
    pub qual: u64,
    pub intr_info: u32,
    pub intr_code: u32,
    pub ilen: u32,
    pub iinfo: u32,
    pub gva: u64,
    pub gpa: u64,
    /// Guest rax, rcx and rdx after the exit.
    pub ax: Option<u64>,
    pub cx: Option<u64>,
    pub dx: Option<u64>,
    /// Other fields the exit sets (e.g. GUEST_RIP).
    pub set: Vec<(VmcsField, u64)>,
    /// The entry instruction itself fails (VMfail): no exit happens.
    pub fail: bool,
    /// TSC ticks the guest runs before this exit.
    pub guest_ticks: u64,
}

impl Exit {
    pub fn new(reason: u32) -> Self {
        Exit {
            reason,
            ..Exit::default()
        }
    }

    /// An io exit's qualification: `size` bytes at `port`, an in when `input`.
    pub fn io_qual(port: u16, size: u8, input: bool) -> u64 {
        u64::from(port) << 16 | u64::from(input) << 3 | u64::from(size - 1)
    }

    /// An io exit of `size` bytes at `port` (an out of `val`, or an in).
    pub fn io(port: u16, size: u8, input: bool, val: u64) -> Self {
        Exit {
            qual: Self::io_qual(port, size, input),
            ilen: 1,
            ax: Some(val),
            ..Exit::new(EXIT_IO.into())
        }
    }
}

/// What one entry saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryLog {
    pub vmcs: Phys,
    pub launched: bool,
    pub procb: u64,
    pub intr_info: u64,
    pub intr_code: u64,
    pub intr_ilen: u64,
    pub tsc_offset: u64,
    pub rip: u64,
    pub rflags: u64,
    pub exc_bitmap: u64,
    /// Guest interruptibility state and pending debug exceptions.
    pub canintr: u64,
    pub pending_dbg: u64,
    /// Guest rax as the entry loads it (what an `in` emulated before it left), and rdx.
    pub ax: u64,
    pub dx: u64,
}

#[derive(Default)]
struct VmcsState {
    fields: BTreeMap<VmcsField, u64>,
    launched: bool,
}

pub struct TestHw {
    frames: BTreeMap<Phys, Box<[u8; PAGE]>>,
    freed: Vec<Phys>,
    next: Phys,
    total: usize,
    /// MSR values by number (raw, so tests can set any MSR).
    pub msrs: BTreeMap<u32, u64>,
    pub cpuid_vmx: bool,
    cr0: u64,
    cr4: u64,
    pub xcr0: u64,
    tsc: u64,
    /// Added to the TSC on every read: the time between reads.
    pub tsc_step: u64,
    /// What `tsc_hz` says (1 GHz: a TSC tick is a nanosecond).
    pub tsc_rate: u64,
    vmxon: Option<Phys>,
    vmcss: BTreeMap<Phys, VmcsState>,
    current: Option<Phys>,
    pub exits: VecDeque<Exit>,
    pub entries: Vec<EntryLog>,
    pub invept: Vec<u64>,
    pub invvpid: Vec<u16>,
    /// What `now` answers: wall-clock seconds since 1970, set by the tests.
    pub clock: u32,
    /// The CPU running now (0, the boot CPU, outside `on_cpu`).
    pub cpu: usize,
    /// The other CPUs' VMXON region and current VMCS while another CPU runs.
    others: BTreeMap<usize, (Option<Phys>, Option<Phys>)>,
    /// Every VMPTRLD, clear and entry with the CPU it ran on: (vmcs, cpu).
    pub touched: Vec<(Phys, usize)>,
    /// The CPUs `on_cpu` was asked for, in order.
    pub calls: Vec<usize>,
}

/// Bochs corei7_haswell_4770's VMX capability MSRs and the host MSRs vmcsinit reads.
pub const HASWELL_MSRS: [(Msr, u64); 23] = [
    (IA32_FEATURE_CONTROL, 0x5),
    (VMX_BASIC_MSR, 0x00d8_1000_0000_002b),
    (VMX_PINB_CTLS_MSR, 0x0000_007f_0000_0016),
    (VMX_PROCB_CTLS_MSR, 0xfff9_fffe_0401_e172),
    (VMX_VMEXIT_CTLS_MSR, 0x003f_ffff_0003_6dff),
    (VMX_VMENTRY_CTLS_MSR, 0x0000_ffff_0000_11ff),
    (VMX_MISC_MSR, 0x0000_0000_2004_01e0),
    (VMX_CR0_FIXED0, 0x8000_0021),
    (VMX_CR0_FIXED1, 0xffff_ffff),
    (VMX_CR4_FIXED0, 0x2000),
    (VMX_CR4_FIXED1, 0x0037_27ff),
    (VMX_PROCB_CTLS2_MSR, 0x0004_7fff_0000_0000),
    (VMX_EPT_VPID_CAP_MSR, 0x0000_0f01_0633_4141),
    (VMX_TRUE_PINB_CTLS_MSR, 0x0000_007f_0000_0016),
    (VMX_TRUE_PROCB_CTLS_MSR, 0xfff9_fffe_0400_6172),
    (VMX_TRUE_EXIT_CTLS_MSR, 0x003f_ffff_0003_6dfb),
    (VMX_TRUE_ENTRY_CTLS_MSR, 0x0000_ffff_0000_11fb),
    (IA32_PAT, 0x0007_0406_0007_0406),
    (EFER, 0xd01),
    (STAR, 0x0023_0010_0000_0000),
    (LSTAR, 0xffff_8000_0010_0000),
    (SFMASK, 0x4700),
    (KERNEL_GSBASE, 0),
];

impl TestHw {
    /// The same CPU without the monitor trap flag (as Bochs 2.7's haswell really is:
    /// processor-based allowed-1 bit 27 clear).
    pub fn without_mtf(frames: usize) -> Self {
        let mut hw = TestHw::new(frames);
        hw.disallow(
            &[VMX_PROCB_CTLS_MSR, VMX_TRUE_PROCB_CTLS_MSR],
            PROCB_MONTRAP,
        );
        hw
    }

    /// The same CPU without the TRUE control MSRs (IA32_VMX_BASIC bit 55 clear).
    pub fn without_true_ctls(frames: usize) -> Self {
        let mut hw = TestHw::new(frames);
        for m in [
            VMX_TRUE_PINB_CTLS_MSR,
            VMX_TRUE_PROCB_CTLS_MSR,
            VMX_TRUE_EXIT_CTLS_MSR,
            VMX_TRUE_ENTRY_CTLS_MSR,
        ] {
            hw.msrs.remove(&m.0);
        }
        if let Some(v) = hw.msrs.get_mut(&VMX_BASIC_MSR.0) {
            *v &= !VMX_BASIC_TRUECTLS;
        }
        hw
    }

    /// Clears `bits` from the allowed-1 settings (high half) of the control capability
    /// MSRs `msrs`: a CPU that cannot set those controls.
    pub fn disallow(&mut self, msrs: &[Msr], bits: u32) {
        for msr in msrs {
            if let Some(v) = self.msrs.get_mut(&msr.0) {
                *v &= !(u64::from(bits) << 32);
            }
        }
    }

    /// Whether this CPU's VMCS has `field`: the VPID and the preemption timer's value
    /// exist only where their controls may be set (SDM Vol. 3 Appendix B), so VMREAD and
    /// VMWRITE of them fail elsewhere.
    fn has_field(&self, field: VmcsField) -> bool {
        let may = |m: Msr| self.msrs.get(&m.0).map_or(0, |v| (v >> 32) as u32);
        match field {
            VM_VPID => may(VMX_PROCB_CTLS2_MSR) & PROCB_VPID != 0,
            VMX_PREEMPT_TIMER => {
                (may(VMX_PINB_CTLS_MSR) | may(VMX_TRUE_PINB_CTLS_MSR)) & PINB_PREEMPT != 0
            }
            _ => true,
        }
    }

    /// CPU `cpu` in VMX root operation on a region of its own, as the kernel's APs are
    /// before any VM.
    pub fn ap_vmxon(&mut self, cpu: usize) {
        let region = self.alloc_frame().expect("a frame for VMXON");
        self.others.insert(cpu, (Some(region.pa()), None));
    }

    /// A machine with `frames` frames of memory and VT-x as Bochs's haswell has it.
    pub fn new(frames: usize) -> Self {
        TestHw {
            frames: BTreeMap::new(),
            freed: Vec::new(),
            next: 0x10_0000,
            total: frames,
            msrs: HASWELL_MSRS.into_iter().map(|(m, v)| (m.0, v)).collect(),
            cpuid_vmx: true,
            cr0: 0x8001_0033,
            cr4: 0x6a0,
            xcr0: 7,
            tsc: 1_000_000,
            tsc_step: 1000,
            tsc_rate: 1_000_000_000,
            vmxon: None,
            vmcss: BTreeMap::new(),
            current: None,
            exits: VecDeque::new(),
            entries: Vec::new(),
            invept: Vec::new(),
            invvpid: Vec::new(),
            clock: 0,
            cpu: 0,
            others: BTreeMap::new(),
            touched: Vec::new(),
            calls: Vec::new(),
        }
    }

    /// Moves the TSC on by `ticks` (time passing outside any read).
    pub fn advance_tsc(&mut self, ticks: u64) {
        self.tsc += ticks;
    }

    /// The TSC now, without a read's step.
    pub fn tsc(&self) -> u64 {
        self.tsc
    }

    /// Is VMX on?
    pub fn vmx_on(&self) -> bool {
        self.vmxon.is_some()
    }

    /// A field of the VMCS at `region`, as the CPU holds it.
    /// (Tests may name a field by its raw encoding.)
    pub fn field(&self, region: Phys, f: impl Into<VmcsField>) -> u64 {
        let f = f.into();
        self.vmcss
            .get(&region)
            .and_then(|v| v.fields.get(&f).copied())
            .unwrap_or(0)
    }

    /// The VMCS region current now.
    pub fn current(&self) -> Option<Phys> {
        self.current
    }

    /// The bytes at physical address `pa`, which must be in an allocated frame: the test
    /// double's memory as a test inspects it (the `Hw` trait's [`Hw::frame`] takes only
    /// a [`Frame`]; this inherent method is the tests' way in by address).
    pub fn frame(&mut self, pa: Phys) -> &mut [u8; PAGE] {
        self.frames
            .get_mut(&pa)
            .unwrap_or_else(|| panic!("frame {pa:#x} not allocated"))
    }

    /// Does `pa` name a frame that is allocated now?
    pub fn is_allocated(&self, pa: Phys) -> bool {
        self.frames.contains_key(&pa)
    }

    fn revision(&self) -> u32 {
        self.msrs.get(&VMX_BASIC_MSR.0).map_or(0, |v| *v as u32) & 0x7fff_ffff
    }

    fn region_ok(&self, pa: Phys) -> bool {
        self.frames.get(&pa).is_some_and(|f| {
            u32::from_le_bytes([f[0], f[1], f[2], f[3]]) & 0x7fff_ffff == self.revision()
        })
    }

    fn cur(&mut self) -> Result<&mut VmcsState, VmxFail> {
        let c = self.current.ok_or(VmxFail)?;
        self.vmcss.get_mut(&c).ok_or(VmxFail)
    }
}

impl Hw for TestHw {
    fn alloc_frame(&mut self) -> Option<Frame> {
        if self.frames.len() >= self.total {
            return None;
        }
        let pa = self.freed.pop().unwrap_or_else(|| {
            let pa = self.next;
            self.next += PAGE as u64;
            pa
        });
        self.frames.insert(pa, Box::new([0; PAGE]));
        Some(Frame::new(pa))
    }

    fn free_frame(&mut self, f: Frame) {
        let pa = f.pa();
        assert!(
            self.frames.remove(&pa).is_some(),
            "free of frame {pa:#x} not allocated"
        );
        self.freed.push(pa);
    }

    fn frame(&mut self, f: &Frame) -> &mut [u8; PAGE] {
        TestHw::frame(self, f.pa())
    }

    fn frames_free(&self) -> usize {
        self.total - self.frames.len()
    }

    fn frames_total(&self) -> usize {
        self.total
    }

    fn now(&self) -> u32 {
        self.clock
    }

    fn cpuid(&mut self, leaf: u32, _subleaf: u32) -> [u32; 4] {
        match leaf {
            // "GenuineIntel", leaves up to 0xd.
            0 => [0xd, 0x756e_6547, 0x6c65_746e, 0x4965_6e69],
            1 => [
                0x306c3,
                0,
                if self.cpuid_vmx { CPUID1_ECX_VMX } else { 0 },
                0,
            ],
            _ => [0; 4],
        }
    }

    fn rdmsr(&mut self, msr: Msr) -> Option<u64> {
        self.msrs.get(&msr.0).copied()
    }

    fn wrmsr(&mut self, msr: Msr, value: u64) -> bool {
        let locked = |v: &u64| v & FEATURE_CONTROL_LOCK != 0;
        if msr == IA32_FEATURE_CONTROL && self.msrs.get(&msr.0).is_some_and(locked) {
            return false;
        }
        self.msrs.insert(msr.0, value);
        true
    }

    fn cr0(&self) -> u64 {
        self.cr0
    }

    fn cr4(&self) -> u64 {
        self.cr4
    }

    fn set_cr0(&mut self, v: u64) {
        self.cr0 = v;
    }

    fn set_cr4(&mut self, v: u64) {
        self.cr4 = v;
    }

    fn host_xcr0(&self) -> u64 {
        self.xcr0
    }

    fn rdtsc(&mut self) -> u64 {
        self.tsc += self.tsc_step;
        self.tsc
    }

    fn tsc_hz(&self) -> u64 {
        self.tsc_rate
    }

    fn vmxon(&mut self, region: &Frame) -> Result<(), VmxFail> {
        let region = region.pa();
        if self.vmxon.is_some() || self.cr4 & CR4VMXE == 0 || !self.region_ok(region) {
            return Err(VmxFail);
        }
        self.vmxon = Some(region);
        Ok(())
    }

    fn vmxoff(&mut self) {
        self.vmxon = None;
        self.current = None;
    }

    fn vmclear(&mut self, vmcs: &Frame) -> Result<(), VmxFail> {
        let vmcs = vmcs.pa();
        self.touched.push((vmcs, self.cpu));
        if self.vmxon.is_none() || !self.region_ok(vmcs) {
            return Err(VmxFail);
        }
        self.vmcss.entry(vmcs).or_default().launched = false;
        if self.current == Some(vmcs) {
            self.current = None;
        }
        Ok(())
    }

    fn vmptrld(&mut self, vmcs: &Frame) -> Result<(), VmxFail> {
        let vmcs = vmcs.pa();
        self.touched.push((vmcs, self.cpu));
        if self.vmxon.is_none() || !self.region_ok(vmcs) || !self.vmcss.contains_key(&vmcs) {
            return Err(VmxFail);
        }
        self.current = Some(vmcs);
        Ok(())
    }

    fn vmread(&mut self, field: VmcsField) -> Result<u64, VmxFail> {
        if !self.has_field(field) {
            return Err(VmxFail);
        }
        Ok(self.cur()?.fields.get(&field).copied().unwrap_or(0))
    }

    fn vmwrite(&mut self, field: VmcsField, value: u64) -> Result<(), VmxFail> {
        if !self.has_field(field) {
            return Err(VmxFail);
        }
        self.cur()?
            .fields
            .insert(field, value & field.width().mask());
        Ok(())
    }

    fn invept(&mut self, eptp: u64) -> Result<(), VmxFail> {
        self.invept.push(eptp);
        Ok(())
    }

    fn invvpid(&mut self, vpid: u16) -> Result<(), VmxFail> {
        if vpid == 0 {
            return Err(VmxFail);
        }
        self.invvpid.push(vpid);
        Ok(())
    }

    fn write_host_state(&mut self) -> Result<(), VmxFail> {
        let v = self.cur()?;
        v.fields.insert(HOST_CS, 0x08);
        v.fields.insert(HOST_SS, 0x10);
        v.fields.insert(HOST_TR, 0x18);
        Ok(())
    }

    fn on_cpu(&mut self, cpu: usize, f: &mut dyn FnMut(&mut Self)) {
        self.calls.push(cpu);
        if cpu == self.cpu {
            return f(self);
        }
        let prev = (self.cpu, self.vmxon, self.current);
        let (v, c) = self.others.remove(&cpu).unwrap_or((None, None));
        (self.cpu, self.vmxon, self.current) = (cpu, v, c);
        f(self);
        self.others.insert(cpu, (self.vmxon, self.current));
        (self.cpu, self.vmxon, self.current) = prev;
    }

    fn enter(&mut self, launched: bool, state: &mut EntryState) -> Result<(), VmxFail> {
        let vmcs = self.current.ok_or(VmxFail)?;
        self.touched.push((vmcs, self.cpu));
        let v = self.cur()?;
        if v.launched != launched {
            return Err(VmxFail);
        }
        let f = |v: &VmcsState, k: VmcsField| v.fields.get(&k).copied().unwrap_or(0);
        let log = EntryLog {
            vmcs,
            launched,
            procb: f(v, PROCB_CTLS),
            intr_info: f(v, VMENTRY_INTRINFO),
            intr_code: f(v, VMENTRY_INTRCODE),
            intr_ilen: f(v, VMENTRY_INTRILEN),
            tsc_offset: f(v, VMCS_TSC_OFFSET),
            rip: f(v, GUEST_RIP),
            rflags: f(v, GUEST_RFLAGS),
            exc_bitmap: f(v, EXC_BITMAP),
            canintr: f(v, GUEST_CANINTR),
            pending_dbg: f(v, GUEST_PENDING_DBG),
            ax: state.regs.ax,
            dx: state.regs.dx,
        };
        let e = self.exits.pop_front().unwrap_or_else(|| Exit::new(1));
        self.entries.push(log);
        self.tsc += e.guest_ticks;
        if e.fail {
            return Err(VmxFail);
        }
        let v = self.cur()?;
        for (k, x) in [
            (VM_EXREASON, e.reason as u64),
            (VM_EXQUALIF, e.qual),
            (VM_EXINTRINFO, e.intr_info as u64),
            (VM_EXINTRCODE, e.intr_code as u64),
            (VM_EXINSTRLEN, e.ilen as u64),
            (VM_EXINSTRINFO, e.iinfo as u64),
            (VM_GUESTVA, e.gva),
            (VM_GUESTPA, e.gpa),
            // Every exit writes the IDT-vectoring information (an exit during event
            // delivery sets it through `set`).
            (VM_IDTVECINFO, 0),
        ] {
            v.fields.insert(k, x);
        }
        for (k, x) in &e.set {
            v.fields.insert(*k, *x & k.width().mask());
        }
        // Every exit clears the valid bit of the entry interruption information.
        let info = IntrInfo(v.fields.get(&VMENTRY_INTRINFO).copied().unwrap_or(0) as u32);
        v.fields
            .insert(VMENTRY_INTRINFO, info.invalidated().0.into());
        if !ExitReason(e.reason).entry_failed() {
            v.launched = true;
        }
        if let Some(ax) = e.ax {
            state.regs.ax = ax;
        }
        if let Some(cx) = e.cx {
            state.regs.cx = cx;
        }
        if let Some(dx) = e.dx {
            state.regs.dx = dx;
        }
        Ok(())
    }
}
