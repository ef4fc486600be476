//! Raw privileged instructions for [`super::KernelHw`], one function each, over raw
//! numbers (MSR indices, VMCS field encodings, register values).
//!
//! Control registers, MSRs, XCR0 and the descriptor-table registers go through the
//! `x86_64` crate, the kernel's one home for them. What it lacks is inline assembly here:
//! the VMX instructions (which need their CF/ZF result, VMfailInvalid/VMfailValid, read
//! in the same asm block), writes to CR2 and DR6, STR and FXSAVE/FXRSTOR.
#![allow(unsafe_code)]

use core::arch::asm;
use devvmx::hw::VmxFail;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, FS, GS, SS};
use x86_64::instructions::tables::{sgdt, sidt};
use x86_64::registers::control::{Cr0, Cr3, Cr4};
use x86_64::registers::model_specific::Msr;
use x86_64::registers::xcontrol::XCr0;

/// Whether interrupts are on (RFLAGS.IF).
pub use x86_64::instructions::interrupts::are_enabled as interrupts_enabled;

/// Turns the `setbe` result of a VMX instruction (CF=1 or ZF=1) into a `Result`.
fn check(failed: u8) -> Result<(), VmxFail> {
    if failed != 0 {
        Err(VmxFail)
    } else {
        Ok(())
    }
}

/// # Safety
/// `region` is a 4 KiB-aligned frame holding the VMCS revision id; CR0/CR4 fixed bits hold.
pub unsafe fn vmxon(region: u64) -> Result<(), VmxFail> {
    let failed: u8;
    // SAFETY: the caller upholds VMXON's requirements; the operand is a stack slot.
    unsafe {
        asm!("vmxon qword ptr [{0}]", "setbe {1}", in(reg) &region, out(reg_byte) failed,
             options(nostack));
    }
    check(failed)
}

/// # Safety
/// VMX operation is on.
pub unsafe fn vmxoff() {
    // SAFETY: the caller knows VMX operation is on; VMXOFF touches no memory.
    unsafe { asm!("vmxoff", options(nostack)) }
}

/// # Safety
/// `vmcs` is a 4 KiB-aligned frame reserved for a VMCS.
pub unsafe fn vmclear(vmcs: u64) -> Result<(), VmxFail> {
    let failed: u8;
    // SAFETY: the caller passes a VMCS frame; the operand is a stack slot.
    unsafe {
        asm!("vmclear qword ptr [{0}]", "setbe {1}", in(reg) &vmcs, out(reg_byte) failed,
             options(nostack));
    }
    check(failed)
}

/// # Safety
/// `vmcs` is a 4 KiB-aligned frame reserved for a VMCS.
pub unsafe fn vmptrld(vmcs: u64) -> Result<(), VmxFail> {
    let failed: u8;
    // SAFETY: the caller passes a VMCS frame; the operand is a stack slot.
    unsafe {
        asm!("vmptrld qword ptr [{0}]", "setbe {1}", in(reg) &vmcs, out(reg_byte) failed,
             options(nostack));
    }
    check(failed)
}

/// # Safety
/// VMX operation is on.
pub unsafe fn vmread(field: u32) -> Result<u64, VmxFail> {
    let value: u64;
    let failed: u8;
    // SAFETY: VMREAD only reads the current VMCS (or fails with flags set).
    unsafe {
        asm!("vmread {0}, {1}", "setbe {2}", out(reg) value, in(reg) field as u64,
             out(reg_byte) failed, options(nostack, nomem));
    }
    check(failed).map(|()| value)
}

/// # Safety
/// VMX operation is on; the field's new value must not let an exit break the host
/// (host-state fields are written only by `write_host_state`).
pub unsafe fn vmwrite(field: u32, value: u64) -> Result<(), VmxFail> {
    let failed: u8;
    // SAFETY: VMWRITE only writes the current VMCS (or fails with flags set).
    unsafe {
        asm!("vmwrite {0}, {1}", "setbe {2}", in(reg) field as u64, in(reg) value,
             out(reg_byte) failed, options(nostack, nomem));
    }
    check(failed)
}

/// # Safety
/// VMX operation is on.
pub unsafe fn invept(kind: u64, eptp: u64) -> Result<(), VmxFail> {
    let desc: [u64; 2] = [eptp, 0];
    let failed: u8;
    // SAFETY: the descriptor is a 16-byte stack array; INVEPT only drops TLB entries.
    unsafe {
        asm!("invept {0}, xmmword ptr [{1}]", "setbe {2}", in(reg) kind, in(reg) &desc,
             out(reg_byte) failed, options(nostack));
    }
    check(failed)
}

/// # Safety
/// VMX operation is on.
pub unsafe fn invvpid(kind: u64, vpid: u16) -> Result<(), VmxFail> {
    let desc: [u64; 2] = [vpid as u64, 0];
    let failed: u8;
    // SAFETY: the descriptor is a 16-byte stack array; INVVPID only drops TLB entries.
    unsafe {
        asm!("invvpid {0}, xmmword ptr [{1}]", "setbe {2}", in(reg) kind, in(reg) &desc,
             out(reg_byte) failed, options(nostack));
    }
    check(failed)
}

/// # Safety
/// The MSR exists (else #GP).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    // SAFETY: the caller checked the MSR exists.
    unsafe { Msr::new(msr).read() }
}

/// # Safety
/// The MSR exists and accepts the value, and the new value keeps the host sound.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller checked the MSR and value.
    unsafe { Msr::new(msr).write(value) }
}

pub fn cr0() -> u64 {
    Cr0::read_raw()
}

/// CR3 as the CPU holds it: the top-level table's address and the low flag bits.
pub fn cr3() -> u64 {
    let (table, flags) = Cr3::read_raw();
    table.start_address().as_u64() | u64::from(flags)
}

pub fn cr4() -> u64 {
    Cr4::read_raw()
}

/// # Safety
/// The new value keeps the host sound (and is architecturally valid).
pub unsafe fn set_cr0(v: u64) {
    // SAFETY: the caller vouches for the value.
    unsafe { Cr0::write_raw(v) }
}

/// # Safety
/// As for `set_cr0`.
pub unsafe fn set_cr4(v: u64) {
    // SAFETY: the caller vouches for the value.
    unsafe { Cr4::write_raw(v) }
}

/// # Safety
/// No one still needs the old value: only the page-fault handler reads CR2, and the
/// caller keeps interrupts off until the guest has run.
pub unsafe fn set_cr2(v: u64) {
    // SAFETY: the caller vouches that the old value is not needed.
    unsafe { asm!("mov cr2, {0}", in(reg) v, options(nostack, nomem)) }
}

/// # Safety
/// The upper half of `v` is zero (else #GP).
pub unsafe fn set_dr6(v: u64) {
    // SAFETY: the caller vouches for the value; the host uses no breakpoints.
    unsafe { asm!("mov dr6, {0}", in(reg) v, options(nostack, nomem)) }
}

/// # Safety
/// CR4.OSXSAVE is set and `value` is a valid XCR0 for this CPU.
pub unsafe fn set_xcr0(value: u64) {
    // SAFETY: the caller checked the value.
    unsafe { XCr0::write_raw(value) }
}

/// # Safety
/// `area` is a 16-byte aligned 512-byte buffer; CR0.EM and CR0.TS are clear.
pub unsafe fn fxsave(area: *mut [u8; 512]) {
    // SAFETY: the caller passes an aligned, writable 512-byte area.
    unsafe { asm!("fxsave64 [{0}]", in(reg) area, options(nostack)) }
}

/// # Safety
/// `area` is a 16-byte aligned 512-byte image whose MXCSR has no reserved bit set.
pub unsafe fn fxrstor(area: *const [u8; 512]) {
    // SAFETY: the caller passes an aligned image with a valid MXCSR.
    unsafe { asm!("fxrstor64 [{0}]", in(reg) area, options(nostack, readonly)) }
}

/// The live segment selectors: cs, ss, ds, es, fs, gs, tr.
pub fn selectors() -> [u16; 7] {
    let tr: u16;
    // SAFETY: STR only reads the task register's selector.
    unsafe { asm!("str {0:x}", out(reg) tr, options(nostack, nomem)) }
    [
        CS::get_reg().0,
        SS::get_reg().0,
        DS::get_reg().0,
        ES::get_reg().0,
        FS::get_reg().0,
        GS::get_reg().0,
        tr,
    ]
}

/// The live GDTR and IDTR bases.
pub fn descriptor_tables() -> (u64, u64) {
    (sgdt().base.as_u64(), sidt().base.as_u64())
}
