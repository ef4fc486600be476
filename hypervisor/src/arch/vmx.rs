//! The thin VT-x architecture layer: [`KernelHw`] implements [`devvmx::hw::Hw`], one
//! privileged operation per method; the #X logic above decides everything.
//!
//! Host state for the VMCS is read from the live CPU (selectors, SGDT/SIDT, the TSS
//! descriptor TR selects), so it always matches what the kernel really runs with.
//!
//! MSRs: RDMSR/WRMSR of an MSR that does not exist faults (#GP). Rather than a fault
//! fixup in the IDT, [`KernelHw`] answers only for MSRs it knows exist from CPUID and the
//! VMX capability MSRs (see `msr_exists`); any other MSR reads as `None` / writes `false`.
//! The #X logic only asks for architectural and VMX MSRs, all in that table.
//!
//! FPU: the kernel is soft-float (x86_64-unknown-none) and never touches x87/SSE state,
//! so the registers simply hold the last guest's state between entries; `enter` FXRSTORs
//! and FXSAVEs the guest's area around each entry. Host XCR0 is limited to x87|SSE
//! (what FXSAVE covers), so no guest state escapes the FXSAVE area.
#![allow(unsafe_code)]

mod entry;
mod insn;
use super::cpu::rdtsc;
pub mod selftest;

use devvmx::hw::{EntryState, Frame, Hw, Msr, Phys, VmcsField, VmxFail, PAGE};
use devvmx::vmcs::*;
use x86_64::registers::debug::{DebugAddressRegister, Dr0, Dr1, Dr2, Dr3};

const CR0_MP: u64 = 1 << 1;
const CR0_EM: u64 = 1 << 2;
const CR0_TS: u64 = 1 << 3;
const CR0_NE: u64 = 1 << 5;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const CR4_OSXSAVE: u64 = 1 << 18;
/// XCR0 bits the host allows guests: x87 and SSE, the state FXSAVE switches.
const XCR0_FX: u64 = 0b11;

/// DR7 bits that enable breakpoints or detection (the seed's `~0xd400` test).
const DR7_ACTIVE: u64 = !0xd400;

/// INVEPT/INVVPID type 1: single context.
const INV_SINGLE: u64 = 1;

/// The one architecture layer of this CPU. Create exactly one: it tracks the current VMCS.
pub struct KernelHw {
    /// The VMCS loaded with VMPTRLD, so redundant loads are skipped.
    current: Option<Phys>,
    host_xcr0: u64,
    /// FXRSTOR faults on reserved MXCSR bits: guest images are masked with this first.
    mxcsr_mask: u32,
    /// CPUID facts for `msr_exists`.
    feat: Features,
    /// Wall-clock seconds at boot (the RTC) and the timer's tick count then.
    wall: (u32, u64),
    /// The TSC's rate, calibrated against the PIT at boot.
    tsc_hz: u64,
    /// The CPU this layer belongs to (0, the boot CPU, unless `on`).
    cpu: usize,
    /// How a closure reaches another CPU's layer (`on_cpu`): the kernel's CPU table
    /// hands it in (`with_router`), so this layer does not reach up to it.
    route: Router,
}

/// Runs a closure on CPU `cpu` with that CPU's layer, returning once it has run.
pub type Router = fn(cpu: usize, f: &mut dyn FnMut(&mut KernelHw));

/// The router of a layer given none: no other CPU is reachable.
fn unrouted(cpu: usize, _f: &mut dyn FnMut(&mut KernelHw)) {
    log::error!("vmx: a call for cpu {cpu}, and no way to other CPUs");
}

#[derive(Clone, Copy, Default)]
struct Features {
    /// CPUID.1:EDX and ECX.
    edx1: u32,
    ecx1: u32,
    /// CPUID.80000001h:EDX.
    edx81: u32,
}

impl Features {
    fn has(word: u32, bit: u32) -> bool {
        word & (1 << bit) != 0
    }
    fn vmx(&self) -> bool {
        self.ecx1 & CPUID1_ECX_VMX != 0
    }
}

impl KernelHw {
    /// Prepares the CPU for guests' FPU state (CR0.EM/TS clear, CR4.OSFXSR, and
    /// CR4.OSXSAVE with XCR0 = x87|SSE where XSAVE exists) and reads the CPUID facts.
    pub fn new() -> KernelHw {
        let feat = Features {
            edx1: cpuid(1, 0)[3],
            ecx1: cpuid(1, 0)[2],
            edx81: if cpuid(0x8000_0000, 0)[0] >= 0x8000_0001 {
                cpuid(0x8000_0001, 0)[3]
            } else {
                0
            },
        };
        let cr0 = (insn::cr0() | CR0_MP | CR0_NE) & !(CR0_EM | CR0_TS);
        // SAFETY: FPU on, no emulation, no lazy switching: the soft-float kernel never
        // executes FPU/SSE code itself, so this only enables FXSAVE/FXRSTOR for guests.
        unsafe { insn::set_cr0(cr0) };
        let mut cr4 = insn::cr4() | CR4_OSFXSR | CR4_OSXMMEXCPT;
        let xsave = Features::has(feat.ecx1, 26);
        if xsave {
            cr4 |= CR4_OSXSAVE;
        }
        // SAFETY: OSFXSR/OSXMMEXCPT are supported on every x86_64 CPU; OSXSAVE only where
        // CPUID.1:ECX.XSAVE says so.
        unsafe { insn::set_cr4(cr4) };
        let host_xcr0 = if xsave {
            // SAFETY: OSXSAVE is now set and x87|SSE is always a valid XCR0.
            unsafe { insn::set_xcr0(XCR0_FX) };
            XCR0_FX
        } else {
            1
        };
        let mut probe = devvmx::hw::FxArea::default();
        // SAFETY: FxArea is 16-byte aligned and 512 bytes; CR0.EM/TS are clear.
        unsafe { insn::fxsave(&mut probe.0) };
        let mask = u32::from_le_bytes([probe.0[28], probe.0[29], probe.0[30], probe.0[31]]);
        KernelHw {
            current: None,
            host_xcr0,
            mxcsr_mask: if mask == 0 { 0xffbf } else { mask },
            feat,
            wall: (0, super::timer::ticks()),
            tsc_hz: super::timer::tsc_hz(),
            cpu: 0,
            route: unrouted,
        }
    }

    /// The layer of CPU `cpu` (an AP's, made on it).
    pub fn on(mut self, cpu: usize) -> KernelHw {
        self.cpu = cpu;
        self
    }

    /// Reaches other CPUs through `route` (the kernel's `smp::call`).
    pub fn with_router(mut self, route: Router) -> KernelHw {
        self.route = route;
        self
    }

    /// Sets the wall clock: `secs` since 1970 when the timer had ticked `ticks` times.
    pub fn with_wall_clock(mut self, secs: u32, ticks: u64) -> KernelHw {
        self.wall = (secs, ticks);
        self
    }

    /// Whether `msr` exists on this CPU, from CPUID and the VMX capability MSRs.
    fn msr_exists(&self, msr: Msr) -> bool {
        let f = &self.feat;
        let vmx_ctls2 = || {
            // SAFETY: 0x480-0x48b exist whenever CPUID.1:ECX.VMX is set (checked first).
            f.vmx() && unsafe { insn::rdmsr(VMX_PROCB_CTLS2_MSR.0) } >> 32 != 0
        };
        let within = |first: Msr, last: Msr| (first.0..=last.0).contains(&msr.0);
        match msr {
            TSC_MSR => Features::has(f.edx1, 4),
            APIC_BASE => Features::has(f.edx1, 9),
            IA32_FEATURE_CONTROL => f.vmx() || Features::has(f.ecx1, 6), // VMX or SMX
            MTRR_CAP | MTRR_DEF_TYPE => Features::has(f.edx1, 12),
            SYSENTER_CS | SYSENTER_ESP | SYSENTER_EIP => Features::has(f.edx1, 11),
            IA32_PAT => Features::has(f.edx1, 16),
            _ if within(VMX_BASIC_MSR, VMX_VMCS_ENUM) => f.vmx(),
            VMX_PROCB_CTLS2_MSR => {
                // SAFETY: PROCBASED_CTLS exists with VMX; bit 63 says CTLS2 exists.
                f.vmx() && unsafe { insn::rdmsr(VMX_PROCB_CTLS_MSR.0) } >> 63 != 0
            }
            VMX_EPT_VPID_CAP_MSR => {
                // EPT_VPID_CAP exists when EPT or VPID can be enabled.
                (vmx_ctls2)() && {
                    // SAFETY: guarded by vmx_ctls2 (CTLS2 exists).
                    let a1 = unsafe { insn::rdmsr(VMX_PROCB_CTLS2_MSR.0) } >> 32;
                    a1 & (PROCB_EPT | PROCB_VPID) as u64 != 0
                }
            }
            _ if within(VMX_TRUE_PINB_CTLS_MSR, VMX_TRUE_ENTRY_CTLS_MSR) => {
                // SAFETY: VMX_BASIC exists with VMX; bit 55 says the TRUE controls exist.
                f.vmx() && unsafe { insn::rdmsr(VMX_BASIC_MSR.0) } & VMX_BASIC_TRUECTLS != 0
            }
            VMX_VMFUNC_MSR => {
                // VMFUNC exists when "enable VM functions" can be set.
                // SAFETY: guarded by vmx_ctls2 (CTLS2 exists).
                (vmx_ctls2)() && unsafe { insn::rdmsr(VMX_PROCB_CTLS2_MSR.0) } >> 45 & 1 != 0
            }
            EFER | STAR | LSTAR | SFMASK => true, // every x86_64 CPU
            CSTAR | FSBASE | GSBASE | KERNEL_GSBASE => Features::has(f.edx81, 29),
            TSC_AUX => Features::has(f.edx81, 27),
            _ => false,
        }
    }

    fn host_msr(&self, msr: Msr) -> u64 {
        self.rdmsr_known(msr).unwrap_or(0)
    }

    fn rdmsr_known(&self, msr: Msr) -> Option<u64> {
        if !self.msr_exists(msr) {
            return None;
        }
        // SAFETY: msr_exists vouched for the MSR.
        Some(unsafe { insn::rdmsr(msr.0) })
    }

    /// The base of the TSS that TR selects, read from its 16-byte GDT descriptor.
    fn tr_base(gdt: u64, tr: u16) -> u64 {
        let desc = gdt + (tr & !7) as u64;
        // SAFETY: the GDT is identity-mapped kernel memory and TR selects a valid 64-bit
        // TSS descriptor (16 bytes) in it, or LTR would have faulted.
        let (lo, hi) = unsafe {
            (
                core::ptr::read_unaligned(desc as *const u64),
                core::ptr::read_unaligned((desc + 8) as *const u64),
            )
        };
        (lo >> 16 & 0xff_ffff) | (lo >> 56 & 0xff) << 24 | (hi & 0xffff_ffff) << 32
    }
}

impl Default for KernelHw {
    fn default() -> Self {
        Self::new()
    }
}

fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    [r.eax, r.ebx, r.ecx, r.edx]
}

impl Hw for KernelHw {
    fn alloc_frame(&mut self) -> Option<Frame> {
        super::frame_source::alloc()
    }

    fn free_frame(&mut self, f: Frame) {
        super::frame_source::free(f)
    }

    fn frame(&mut self, f: &Frame) -> &mut [u8; PAGE] {
        // SAFETY: physical memory is identity-mapped and `f` is a 4 KiB frame from the
        // allocator (only it makes Frames), not yet given back since the caller holds it;
        // the borrows of self and of `f` keep the reference local.
        unsafe { &mut *(f.pa() as *mut [u8; PAGE]) }
    }

    fn frames_free(&self) -> usize {
        super::frame_source::free_count()
    }

    fn frames_total(&self) -> usize {
        super::frame_source::total()
    }

    fn now(&self) -> u32 {
        let (secs, at) = self.wall;
        let since = super::timer::ticks().saturating_sub(at) / super::timer::HZ as u64;
        secs.saturating_add(since.try_into().unwrap_or(u32::MAX))
    }

    fn cpuid(&mut self, leaf: u32, subleaf: u32) -> [u32; 4] {
        cpuid(leaf, subleaf)
    }

    fn rdmsr(&mut self, msr: Msr) -> Option<u64> {
        self.rdmsr_known(msr)
    }

    fn wrmsr(&mut self, msr: Msr, value: u64) -> bool {
        if !self.msr_exists(msr) {
            return false;
        }
        // A locked IA32_FEATURE_CONTROL faults on any write.
        if msr == IA32_FEATURE_CONTROL && self.host_msr(msr) & FEATURE_CONTROL_LOCK != 0 {
            return false;
        }
        // SAFETY: the MSR exists; the #X logic writes only IA32_FEATURE_CONTROL (unlocked,
        // checked above) to enable VMXON.
        unsafe { insn::wrmsr(msr.0, value) };
        true
    }

    fn cr0(&self) -> u64 {
        insn::cr0()
    }

    fn cr4(&self) -> u64 {
        insn::cr4()
    }

    fn set_cr0(&mut self, v: u64) {
        // SAFETY: the #X logic only sets NE (VMXON's fixed bits); paging and protection
        // bits come from the current value.
        unsafe { insn::set_cr0(v) }
    }

    fn set_cr4(&mut self, v: u64) {
        // SAFETY: the #X logic only sets VMXE on the current value.
        unsafe { insn::set_cr4(v) }
    }

    fn host_xcr0(&self) -> u64 {
        self.host_xcr0
    }

    fn rdtsc(&mut self) -> u64 {
        rdtsc()
    }

    fn tsc_hz(&self) -> u64 {
        self.tsc_hz
    }

    fn vmxon(&mut self, region: &Frame) -> Result<(), VmxFail> {
        // SAFETY: a failed VMXON sets flags (or faults only on CR0/CR4/feature-control
        // violations, which the #X logic checks before, as vmxstart does).
        unsafe { insn::vmxon(region.pa()) }
    }

    fn vmxoff(&mut self) {
        self.current = None;
        // SAFETY: VMXOFF in VMX root operation; outside it would #UD, and the #X logic
        // calls it only after a successful VMXON.
        unsafe { insn::vmxoff() }
    }

    fn vmclear(&mut self, vmcs: &Frame) -> Result<(), VmxFail> {
        let vmcs = vmcs.pa();
        if self.current == Some(vmcs) {
            self.current = None;
        }
        // SAFETY: `vmcs` is a frame the #X logic reserved for a VMCS.
        unsafe { insn::vmclear(vmcs) }
    }

    fn vmptrld(&mut self, vmcs: &Frame) -> Result<(), VmxFail> {
        let vmcs = vmcs.pa();
        if self.current == Some(vmcs) {
            return Ok(());
        }
        // SAFETY: `vmcs` is a frame the #X logic reserved and VMCLEARed.
        let r = unsafe { insn::vmptrld(vmcs) };
        self.current = r.ok().map(|()| vmcs);
        r
    }

    fn vmread(&mut self, field: VmcsField) -> Result<u64, VmxFail> {
        // SAFETY: VMREAD has no effect beyond its result.
        unsafe { insn::vmread(field.0) }
    }

    fn vmwrite(&mut self, field: VmcsField, value: u64) -> Result<(), VmxFail> {
        // A guest cannot reach host-state fields through here: the #X logic writes
        // guest and control fields; host state comes only from write_host_state.
        if field.is_host_state() {
            return Err(VmxFail);
        }
        // SAFETY: guest/control fields only (checked above): the VM-entry checks reject
        // bad guest state without harming the host.
        unsafe { insn::vmwrite(field.0, value) }
    }

    fn invept(&mut self, eptp: u64) -> Result<(), VmxFail> {
        // SAFETY: INVEPT only invalidates cached translations.
        unsafe { insn::invept(INV_SINGLE, eptp) }
    }

    fn invvpid(&mut self, vpid: u16) -> Result<(), VmxFail> {
        // SAFETY: INVVPID only invalidates cached translations.
        unsafe { insn::invvpid(INV_SINGLE, vpid) }
    }

    fn write_host_state(&mut self) -> Result<(), VmxFail> {
        let [cs, ss, ds, es, fs, gs, tr] = insn::selectors();
        let (gdt, idt) = insn::descriptor_tables();
        // Host selector fields need RPL 0 and TI 0.
        let sel = |s: u16| (s & !7) as u64;
        let host = [
            (HOST_CS, sel(cs)),
            (HOST_SS, sel(ss)),
            (HOST_DS, sel(ds)),
            (HOST_ES, sel(es)),
            (HOST_FS, sel(fs)),
            (HOST_GS, sel(gs)),
            (HOST_TR, sel(tr)),
            (HOST_CR0, insn::cr0()),
            (HOST_CR3, insn::cr3()),
            (HOST_CR4, insn::cr4()),
            (HOST_FSBASE, self.host_msr(FSBASE)),
            (HOST_GSBASE, self.host_msr(GSBASE)),
            (HOST_TRBASE, Self::tr_base(gdt, tr)),
            (HOST_GDTR, gdt),
            (HOST_IDTR, idt),
            (HOST_IA32_PAT, self.host_msr(IA32_PAT)),
            (HOST_IA32_EFER, self.host_msr(EFER)),
            (HOST_SYSENTER_CS, 0),
            (HOST_SYSENTER_ESP, 0),
            (HOST_SYSENTER_EIP, 0),
            (HOST_RSP, 0), // the trampoline writes the real one before each entry
            (HOST_RIP, entry::hv_vmx_exit as *const () as u64),
        ];
        for (field, value) in host {
            // SAFETY: these are the running kernel's own values, and HOST_RIP is the
            // trampoline's exit landing, so a VM exit resumes this kernel intact.
            unsafe { insn::vmwrite(field.0, value)? };
        }
        Ok(())
    }

    fn on_cpu(&mut self, cpu: usize, f: &mut dyn FnMut(&mut Self)) {
        if cpu == self.cpu {
            f(self)
        } else {
            (self.route)(cpu, f)
        }
    }

    fn enter(&mut self, launched: bool, state: &mut EntryState) -> Result<(), VmxFail> {
        let dr7 = self.vmread(GUEST_DR7)?;
        // FXRSTOR faults on reserved MXCSR bits: mask what the client wrote.
        let mx = &mut state.fx.0[24..28];
        let mxcsr = u32::from_le_bytes([mx[0], mx[1], mx[2], mx[3]]) & self.mxcsr_mask;
        mx.copy_from_slice(&mxcsr.to_le_bytes());
        // Only x87|SSE bits the host enabled, x87 always: both values are valid XCR0s.
        let xcr0 = (state.xcr0 | 1) & self.host_xcr0;

        let rc = super::cpu::without_interrupts(|| {
            if dr7 & DR7_ACTIVE != 0 {
                // DR0-3 take any address. The host uses no breakpoints and a VM exit sets
                // DR7 to 0x400.
                Dr0::write(state.dr[0]);
                Dr1::write(state.dr[1]);
                Dr2::write(state.dr[2]);
                Dr3::write(state.dr[3]);
                // SAFETY: DR6's upper half is cleared, as it must be.
                unsafe { insn::set_dr6(state.dr[6] & 0xffff_ffff) };
            }
            // SAFETY: the area is aligned (FxArea) with a masked MXCSR; the kernel uses no
            // FPU state of its own.
            unsafe { insn::fxrstor(&state.fx.0) };
            if xcr0 != self.host_xcr0 {
                // SAFETY: OSXSAVE is set whenever host_xcr0 != 1, and xcr0 is 1 or 3.
                unsafe { insn::set_xcr0(xcr0) };
            }
            if state.cr2 != super::cpu::cr2() {
                // SAFETY: CR2 is only read by the page-fault handler, and interrupts are off.
                unsafe { insn::set_cr2(state.cr2) };
            }
            // SAFETY: interrupts are off; the current VMCS has this kernel's host state
            // (write_host_state) and HOST_RIP at the trampoline's landing, which returns
            // here with the callee-saved registers restored.
            let rc = unsafe { entry::hv_vmx_run(&mut state.regs, launched as u64) };
            state.cr2 = super::cpu::cr2();
            if xcr0 != self.host_xcr0 {
                // SAFETY: back to the host's own valid XCR0.
                unsafe { insn::set_xcr0(self.host_xcr0) };
            }
            // SAFETY: the area is aligned and writable; CR0.EM/TS are clear.
            unsafe { insn::fxsave(&mut state.fx.0) };
            rc
        });
        if rc != 0 {
            Err(VmxFail)
        } else {
            Ok(())
        }
    }
}
