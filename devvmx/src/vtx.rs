//! VT-x on one CPU: can VMs run here (the seed's vmxreset checks, then what `caps` reads
//! and requires), this CPU made ready for VMX root operation (vmxstart's checks of CR0 and
//! CR4), and VMXON on a region of its own. The boot CPU's VMX root operation lasts while it runs a VM (`Vmxon`, kept by
//! the VM table); each other CPU that runs VMs does this once at start-up and stays in VMX
//! root operation (the kernel's `smp.rs`).

use crate::caps::{Caps, EBADCR0, EBADCR4};
use crate::hw::{Frame, Hw};
use crate::plan9::ENOMEM;
use crate::vmcs::*;
use alloc::string::String;
use ninep::Error;

/// vmxreset: can VMs run on this CPU? Sets the IA32_FEATURE_CONTROL lock and VMXON bits where
/// the firmware left the MSR unlocked, as the seed does; then reads what its VT-x can do
/// ([`Caps::read`]), refusing by name what this crate needs and the CPU lacks.
pub fn vmxreset<H: Hw>(hw: &mut H) -> Result<Caps, String> {
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
    // The seed also refused a CPU without VPID; VMs run without VPIDs there.
    if ctls2 & PROCB_UNRESTR as u64 == 0 {
        return Err("no unrestricted guest".into());
    }
    Caps::read(hw)
}

/// The seed's vmxstart on this CPU before VMXON: CR4.VMXE, CR0.NE and every other bit the
/// fixed-0 MSRs require set, then both registers checked against the fixed bits.
pub fn vmx_cpu_ready<H: Hw>(hw: &mut H, caps: &Caps) -> Result<(), Error> {
    let cr4 = hw.cr4();
    hw.set_cr4(cr4 | CR4VMXE | caps.cr4.fixed0);
    let cr0 = hw.cr0();
    hw.set_cr0(cr0 | CR0_NE | caps.cr0.fixed0);
    if caps.cr0.bad(hw.cr0()) != 0 {
        return Err(EBADCR0.into());
    }
    if caps.cr4.bad(hw.cr4()) != 0 {
        return Err(EBADCR4.into());
    }
    Ok(())
}

/// VMXON on this CPU (made ready by `vmx_cpu_ready`) with a fresh region carrying the VMCS
/// revision: the region, which stays in use until VMXOFF.
pub fn vmxon_region<H: Hw>(hw: &mut H, caps: &Caps) -> Result<Frame, Error> {
    let region = hw.alloc_frame().ok_or(Error::from(ENOMEM))?;
    hw.frame(&region)[0..4].copy_from_slice(&caps.basic.revision().to_le_bytes());
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
    pub(crate) fn start<H: Hw>(&mut self, hw: &mut H, caps: &Caps) -> Result<(), Error> {
        vmx_cpu_ready(hw, caps)?;
        if self.0.is_none() {
            self.0 = Some(vmxon_region(hw, caps)?);
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
