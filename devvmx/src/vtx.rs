//! VT-x on one CPU: can VMs run here (the seed's vmxreset checks), this CPU made ready
//! for VMX root operation (vmxstart's checks of CR0 and CR4), and VMXON on a region of
//! its own. The boot CPU's VMX root operation lasts while it runs a VM (`Vmxon`, kept by
//! the VM table); each other CPU that runs VMs does this once at start-up and stays in VMX
//! root operation (the kernel's `smp.rs`).

use crate::hw::{Frame, Hw};
use crate::plan9::ENOMEM;
use crate::vmcs::*;
use alloc::string::String;
use ninep::Error;

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

/// This CPU's VMX root operation, on from the first VM until the last ends (the seed's
/// vmxstart before the VMCS, and vmxstop).
#[derive(Default)]
pub(crate) struct Vmxon(Option<Frame>);

impl Vmxon {
    /// vmxstart's part before the VMCS: this CPU made ready (`vmx_cpu_ready`), and VMXON
    /// unless already on.
    pub(crate) fn start<H: Hw>(&mut self, hw: &mut H) -> Result<(), Error> {
        vmx_cpu_ready(hw)?;
        if self.0.is_none() {
            self.0 = Some(vmxon_region(hw)?);
        }
        Ok(())
    }

    /// VMXOFF, and the region back, if on.
    pub(crate) fn stop<H: Hw>(&mut self, hw: &mut H) {
        if let Some(region) = self.0.take() {
            hw.vmxoff();
            hw.free_frame(region);
        }
    }
}
