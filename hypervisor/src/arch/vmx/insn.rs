//! Raw privileged instructions, one `unsafe fn` each, written as inline assembly.
//!
//! Inline assembly rather than the `x86` crate: the VMX instructions need their CF/ZF
//! result (VMfailInvalid/VMfailValid) read in the same asm block, the set is small, and
//! it keeps the kernel free of a dependency whose wrappers we would re-check anyway.

use core::arch::asm;
use devvmx::hw::VmxFail;

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
    let (lo, hi): (u32, u32);
    // SAFETY: the caller checked the MSR exists.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nostack, nomem));
    }
    (hi as u64) << 32 | lo as u64
}

/// # Safety
/// The MSR exists and accepts the value, and the new value keeps the host sound.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller checked the MSR and value.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, nomem));
    }
}

macro_rules! read_reg {
    ($get:ident, $reg:literal) => {
        pub fn $get() -> u64 {
            let v: u64;
            // SAFETY: reading a control register has no side effect at CPL 0.
            unsafe { asm!(concat!("mov {0}, ", $reg), out(reg) v, options(nostack, nomem)) }
            v
        }
    };
}

macro_rules! write_reg {
    ($set:ident, $reg:literal) => {
        /// # Safety
        /// The new value keeps the host sound (and is architecturally valid).
        pub unsafe fn $set(v: u64) {
            // SAFETY: the caller vouches for the value.
            unsafe { asm!(concat!("mov ", $reg, ", {0}"), in(reg) v, options(nostack, nomem)) }
        }
    };
}

read_reg!(cr0, "cr0");
read_reg!(cr2, "cr2");
read_reg!(cr3, "cr3");
read_reg!(cr4, "cr4");
write_reg!(set_cr0, "cr0");
write_reg!(set_cr2, "cr2");
write_reg!(set_cr4, "cr4");
write_reg!(set_dr0, "dr0");
write_reg!(set_dr1, "dr1");
write_reg!(set_dr2, "dr2");
write_reg!(set_dr3, "dr3");
write_reg!(set_dr6, "dr6");

/// # Safety
/// CR4.OSXSAVE is set and `value` is a valid XCR0 for this CPU.
pub unsafe fn xsetbv(index: u32, value: u64) {
    // SAFETY: the caller checked the value.
    unsafe {
        asm!("xsetbv", in("ecx") index, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, nomem));
    }
}

pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC reads a counter (CR4.TSD is clear in this kernel).
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nostack, nomem)) }
    (hi as u64) << 32 | lo as u64
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

/// Disables interrupts and returns the previous RFLAGS.
pub fn save_cli() -> u64 {
    let flags: u64;
    // SAFETY: pushfq/pop/cli only change IF, which `restore_flags` puts back.
    unsafe { asm!("pushfq", "pop {0}", "cli", out(reg) flags, options(nomem)) }
    flags
}

pub fn interrupts_enabled() -> bool {
    let flags: u64;
    // SAFETY: pushfq/pop only read RFLAGS.
    unsafe { asm!("pushfq", "pop {0}", out(reg) flags, options(nomem)) }
    flags & (1 << 9) != 0
}

/// Re-enables interrupts if they were on in `flags` (from `save_cli`).
pub fn restore_if(flags: u64) {
    if flags & (1 << 9) != 0 {
        // SAFETY: interrupts were on before `save_cli`; the kernel's IDT handles them.
        unsafe { asm!("sti", options(nostack, nomem)) }
    }
}

/// The live segment selectors: cs, ss, ds, es, fs, gs, tr.
pub fn selectors() -> [u16; 7] {
    let (cs, ss, ds, es, fs, gs, tr): (u16, u16, u16, u16, u16, u16, u16);
    // SAFETY: reading selectors has no side effect.
    unsafe {
        asm!("mov {0:x}, cs", "mov {1:x}, ss", "mov {2:x}, ds", "mov {3:x}, es",
             "mov {4:x}, fs", "mov {5:x}, gs", "str {6:x}",
             out(reg) cs, out(reg) ss, out(reg) ds, out(reg) es, out(reg) fs, out(reg) gs,
             out(reg) tr, options(nostack, nomem));
    }
    [cs, ss, ds, es, fs, gs, tr]
}

/// The live GDTR and IDTR bases.
pub fn descriptor_tables() -> (u64, u64) {
    let mut gdtr = [0u8; 10];
    let mut idtr = [0u8; 10];
    // SAFETY: SGDT/SIDT store 10 bytes each into the local buffers.
    unsafe {
        asm!("sgdt [{0}]", "sidt [{1}]", in(reg) gdtr.as_mut_ptr(), in(reg) idtr.as_mut_ptr(),
             options(nostack));
    }
    let base = |b: &[u8; 10]| u64::from_le_bytes([b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9]]);
    (base(&gdtr), base(&idtr))
}
