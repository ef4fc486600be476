//! The one table of VT-x names: VMCS field encodings, control bits and MSR numbers, named
//! as in the seed (devvmx.c) where the seed names them. The kernel's architecture layer
//! (hypervisor/src/arch/vmx) and the self-test use these names too; nothing else declares
//! an encoding.
//!
//! Fields and MSRs are distinct types, so [`Hw::vmread`] cannot be handed an MSR nor
//! [`Hw::rdmsr`] a field. Control bits are plain `u32` masks of the control they belong to
//! (`PINB_*` in `PINB_CTLS`, `PROCB_*` in `PROCB_CTLS` or `PROCB_CTLS2`, `VMEXIT_*`,
//! `VMENTRY_*`).
#![allow(missing_docs)]

/// A VMCS field encoding (SDM Vol. 3 Appendix B): what VMREAD and VMWRITE take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VmcsField(pub u32);

impl VmcsField {
    /// The field `i` places after this one in a run of same-kind fields (the guest
    /// segment registers ES, CS, SS, DS, FS, GS, LDTR, TR are 2 apart).
    pub const fn nth(self, i: u32) -> VmcsField {
        VmcsField(self.0 + 2 * i)
    }

    /// A host-state field (field type 3: bits 11:10): only the architecture layer writes
    /// those, from the running kernel.
    pub const fn is_host_state(self) -> bool {
        self.0 >> 10 & 3 == 3
    }
}

/// A raw encoding (the `regs` file's table, tests).
impl From<u32> for VmcsField {
    fn from(v: u32) -> Self {
        VmcsField(v)
    }
}

/// A model-specific register number: what RDMSR and WRMSR take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Msr(pub u32);

impl core::fmt::LowerHex for Msr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::LowerHex::fmt(&self.0, f)
    }
}

pub const VMX_BASIC_MSR: Msr = Msr(0x480);
pub const VMX_PINB_CTLS_MSR: Msr = Msr(0x481);
pub const VMX_PROCB_CTLS_MSR: Msr = Msr(0x482);
pub const VMX_VMEXIT_CTLS_MSR: Msr = Msr(0x483);
pub const VMX_VMENTRY_CTLS_MSR: Msr = Msr(0x484);
pub const VMX_MISC_MSR: Msr = Msr(0x485);
pub const VMX_CR0_FIXED0: Msr = Msr(0x486);
pub const VMX_CR0_FIXED1: Msr = Msr(0x487);
pub const VMX_CR4_FIXED0: Msr = Msr(0x488);
pub const VMX_CR4_FIXED1: Msr = Msr(0x489);
pub const VMX_VMCS_ENUM: Msr = Msr(0x48A);
pub const VMX_PROCB_CTLS2_MSR: Msr = Msr(0x48B);
/// Not named by the seed: the EPT and VPID capabilities.
pub const VMX_EPT_VPID_CAP_MSR: Msr = Msr(0x48C);
pub const VMX_TRUE_PINB_CTLS_MSR: Msr = Msr(0x48D);
pub const VMX_TRUE_PROCB_CTLS_MSR: Msr = Msr(0x48E);
pub const VMX_TRUE_EXIT_CTLS_MSR: Msr = Msr(0x48F);
pub const VMX_TRUE_ENTRY_CTLS_MSR: Msr = Msr(0x490);
pub const VMX_VMFUNC_MSR: Msr = Msr(0x491);
/// VMX_BASIC bit 55: the TRUE_* control capability MSRs exist.
pub const VMX_BASIC_TRUECTLS: u64 = 1 << 55;

pub const PINB_CTLS: VmcsField = VmcsField(0x4000);
pub const PINB_EXITIRQ: u32 = 1 << 0;
pub const PINB_EXITNMI: u32 = 1 << 3;
pub const PINB_PREEMPT: u32 = 1 << 6;
/// Reserved pin-based bits that are 1 by default (the seed's "currently reserved default1
/// bits").
pub const PINB_DEFAULT1: u32 = 1 << 1 | 1 << 2 | 1 << 4;

pub const PROCB_CTLS: VmcsField = VmcsField(0x4002);
pub const PROCB_IRQWIN: u32 = 1 << 2;
pub const PROCB_TSCOFFSET: u32 = 1 << 3;
pub const PROCB_EXITHLT: u32 = 1 << 7;
pub const PROCB_EXITMWAIT: u32 = 1 << 10;
pub const PROCB_EXITMOVDR: u32 = 1 << 23;
pub const PROCB_EXITIO: u32 = 1 << 24;
pub const PROCB_MONTRAP: u32 = 1 << 27;
pub const PROCB_MSRBITMAP: u32 = 1 << 28;
pub const PROCB_EXITMONITOR: u32 = 1 << 29;
pub const PROCB_USECTLS2: u32 = 1 << 31;
/// Reserved primary processor-based bits that are 1 by default (as the seed's).
pub const PROCB_DEFAULT1: u32 = 1 << 1 | 7 << 4 | 1 << 8 | 1 << 13 | 1 << 14 | 1 << 26;

pub const PROCB_CTLS2: VmcsField = VmcsField(0x401E);
pub const PROCB_EPT: u32 = 1 << 1;
pub const PROCB_VPID: u32 = 1 << 5;
pub const PROCB_UNRESTR: u32 = 1 << 7;

pub const EXC_BITMAP: VmcsField = VmcsField(0x4004);
pub const PFAULT_MASK: VmcsField = VmcsField(0x4006);
pub const PFAULT_MATCH: VmcsField = VmcsField(0x4008);
pub const CR3_TARGCNT: VmcsField = VmcsField(0x400a);
pub const MSR_BITMAP: VmcsField = VmcsField(0x2004);

pub const VMEXIT_CTLS: VmcsField = VmcsField(0x400c);
pub const VMEXIT_ST_DEBUG: u32 = 1 << 2;
pub const VMEXIT_HOST64: u32 = 1 << 9;
pub const VMEXIT_LD_IA32_PAT: u32 = 1 << 19;
pub const VMEXIT_ST_IA32_EFER: u32 = 1 << 20;
pub const VMEXIT_LD_IA32_EFER: u32 = 1 << 21;

pub const VMEXIT_MSRSTCNT: VmcsField = VmcsField(0x400e);
pub const VMEXIT_MSRLDCNT: VmcsField = VmcsField(0x4010);
pub const VMEXIT_MSRSTADDR: VmcsField = VmcsField(0x2006);
pub const VMEXIT_MSRLDADDR: VmcsField = VmcsField(0x2008);
pub const VMENTRY_MSRLDADDR: VmcsField = VmcsField(0x200A);

pub const VMENTRY_CTLS: VmcsField = VmcsField(0x4012);
pub const VMENTRY_LD_DEBUG: u32 = 1 << 2;
pub const VMENTRY_GUEST64: u32 = 1 << 9;
pub const VMENTRY_LD_IA32_PAT: u32 = 1 << 14;
pub const VMENTRY_LD_IA32_EFER: u32 = 1 << 15;

pub const VMENTRY_MSRLDCNT: VmcsField = VmcsField(0x4014);
pub const VMENTRY_INTRINFO: VmcsField = VmcsField(0x4016);
pub const VMENTRY_INTRCODE: VmcsField = VmcsField(0x4018);
pub const VMENTRY_INTRILEN: VmcsField = VmcsField(0x401a);

pub const VMCS_TSC_OFFSET: VmcsField = VmcsField(0x2010);
pub const VMCS_LINK: VmcsField = VmcsField(0x2800);

pub const GUEST_ES: VmcsField = VmcsField(0x800);
pub const GUEST_CS: VmcsField = VmcsField(0x802);
pub const GUEST_SS: VmcsField = VmcsField(0x804);
pub const GUEST_DS: VmcsField = VmcsField(0x806);
pub const GUEST_FS: VmcsField = VmcsField(0x808);
pub const GUEST_GS: VmcsField = VmcsField(0x80A);
pub const GUEST_LDTR: VmcsField = VmcsField(0x80C);
pub const GUEST_TR: VmcsField = VmcsField(0x80E);
pub const GUEST_CR0: VmcsField = VmcsField(0x6800);
pub const GUEST_CR3: VmcsField = VmcsField(0x6802);
pub const GUEST_CR4: VmcsField = VmcsField(0x6804);
pub const GUEST_ESLIMIT: VmcsField = VmcsField(0x4800);
pub const GUEST_CSLIMIT: VmcsField = VmcsField(0x4802);
pub const GUEST_SSLIMIT: VmcsField = VmcsField(0x4804);
pub const GUEST_DSLIMIT: VmcsField = VmcsField(0x4806);
pub const GUEST_FSLIMIT: VmcsField = VmcsField(0x4808);
pub const GUEST_GSLIMIT: VmcsField = VmcsField(0x480A);
pub const GUEST_LDTRLIMIT: VmcsField = VmcsField(0x480C);
pub const GUEST_TRLIMIT: VmcsField = VmcsField(0x480E);
pub const GUEST_GDTRLIMIT: VmcsField = VmcsField(0x4810);
pub const GUEST_IDTRLIMIT: VmcsField = VmcsField(0x4812);
pub const GUEST_ESPERM: VmcsField = VmcsField(0x4814);
pub const GUEST_CSPERM: VmcsField = VmcsField(0x4816);
pub const GUEST_SSPERM: VmcsField = VmcsField(0x4818);
pub const GUEST_DSPERM: VmcsField = VmcsField(0x481A);
pub const GUEST_FSPERM: VmcsField = VmcsField(0x481C);
pub const GUEST_GSPERM: VmcsField = VmcsField(0x481E);
pub const GUEST_LDTRPERM: VmcsField = VmcsField(0x4820);
pub const GUEST_TRPERM: VmcsField = VmcsField(0x4822);
pub const GUEST_CR0MASK: VmcsField = VmcsField(0x6000);
pub const GUEST_CR4MASK: VmcsField = VmcsField(0x6002);
pub const GUEST_CR0SHADOW: VmcsField = VmcsField(0x6004);
pub const GUEST_CR4SHADOW: VmcsField = VmcsField(0x6006);
pub const GUEST_ESBASE: VmcsField = VmcsField(0x6806);
pub const GUEST_CSBASE: VmcsField = VmcsField(0x6808);
pub const GUEST_SSBASE: VmcsField = VmcsField(0x680A);
pub const GUEST_DSBASE: VmcsField = VmcsField(0x680C);
pub const GUEST_FSBASE: VmcsField = VmcsField(0x680E);
pub const GUEST_GSBASE: VmcsField = VmcsField(0x6810);
pub const GUEST_LDTRBASE: VmcsField = VmcsField(0x6812);
pub const GUEST_TRBASE: VmcsField = VmcsField(0x6814);
pub const GUEST_GDTRBASE: VmcsField = VmcsField(0x6816);
pub const GUEST_IDTRBASE: VmcsField = VmcsField(0x6818);
pub const GUEST_DR7: VmcsField = VmcsField(0x681A);
pub const GUEST_RSP: VmcsField = VmcsField(0x681C);
pub const GUEST_RIP: VmcsField = VmcsField(0x681E);
pub const GUEST_RFLAGS: VmcsField = VmcsField(0x6820);
pub const GUEST_IA32_PAT: VmcsField = VmcsField(0x2804);
pub const GUEST_IA32_EFER: VmcsField = VmcsField(0x2806);

pub const GUEST_CANINTR: VmcsField = VmcsField(0x4824);
/// Not named by the seed (vmcsinit leaves them at 0): activity state and SYSENTER.
pub const GUEST_ACTIVITY: VmcsField = VmcsField(0x4826);
pub const GUEST_SYSENTER_CS: VmcsField = VmcsField(0x482A);
pub const GUEST_SYSENTER_ESP: VmcsField = VmcsField(0x6824);
pub const GUEST_SYSENTER_EIP: VmcsField = VmcsField(0x6826);
pub const GUEST_PENDING_DBG: VmcsField = VmcsField(0x6822);

pub const VM_INSTRERR: VmcsField = VmcsField(0x4400);
pub const VM_EXREASON: VmcsField = VmcsField(0x4402);
pub const VM_EXINTRINFO: VmcsField = VmcsField(0x4404);
pub const VM_EXINTRCODE: VmcsField = VmcsField(0x4406);
pub const VM_IDTVECINFO: VmcsField = VmcsField(0x4408);
pub const VM_IDTVECCODE: VmcsField = VmcsField(0x440A);
pub const VM_EXINSTRLEN: VmcsField = VmcsField(0x440C);
pub const VM_EXINSTRINFO: VmcsField = VmcsField(0x440E);
pub const VM_EXQUALIF: VmcsField = VmcsField(0x6400);
pub const VM_GUESTVA: VmcsField = VmcsField(0x640A);
pub const VM_GUESTPA: VmcsField = VmcsField(0x2400);

pub const VMX_PREEMPT_TIMER: VmcsField = VmcsField(0x482E);

pub const VM_VPID: VmcsField = VmcsField(0x000);
pub const VM_EPTP: VmcsField = VmcsField(0x201A);

// Host state: written only by the architecture layer (`Hw::write_host_state`).
pub const HOST_ES: VmcsField = VmcsField(0xC00);
pub const HOST_CS: VmcsField = VmcsField(0xC02);
pub const HOST_SS: VmcsField = VmcsField(0xC04);
pub const HOST_DS: VmcsField = VmcsField(0xC06);
pub const HOST_FS: VmcsField = VmcsField(0xC08);
pub const HOST_GS: VmcsField = VmcsField(0xC0A);
pub const HOST_TR: VmcsField = VmcsField(0xC0C);
pub const HOST_CR0: VmcsField = VmcsField(0x6C00);
pub const HOST_CR3: VmcsField = VmcsField(0x6C02);
pub const HOST_CR4: VmcsField = VmcsField(0x6C04);
pub const HOST_FSBASE: VmcsField = VmcsField(0x6C06);
pub const HOST_GSBASE: VmcsField = VmcsField(0x6C08);
pub const HOST_TRBASE: VmcsField = VmcsField(0x6C0A);
pub const HOST_GDTR: VmcsField = VmcsField(0x6C0C);
pub const HOST_IDTR: VmcsField = VmcsField(0x6C0E);
pub const HOST_RSP: VmcsField = VmcsField(0x6C14);
pub const HOST_RIP: VmcsField = VmcsField(0x6C16);
pub const HOST_IA32_PAT: VmcsField = VmcsField(0x2C00);
pub const HOST_IA32_EFER: VmcsField = VmcsField(0x2C02);
/// Not named by the seed (it left them at 0): the host's SYSENTER state.
pub const HOST_SYSENTER_CS: VmcsField = VmcsField(0x4C00);
pub const HOST_SYSENTER_ESP: VmcsField = VmcsField(0x6C10);
pub const HOST_SYSENTER_EIP: VmcsField = VmcsField(0x6C12);

// Exit reasons (SDM Vol. 3 Appendix C) this crate and the self-test act on.
pub const EXIT_EXTIRQ: u32 = 1;
pub const EXIT_CPUID: u32 = 10;
pub const EXIT_HLT: u32 = 12;
pub const EXIT_IO: u32 = 30;
pub const EXIT_RDMSR: u32 = 31;
pub const EXIT_MONTRAP: u32 = 37;
pub const EXIT_PREEMPT: u32 = 52;

// Control register bits the host keeps (the seed's CR0KERNEL/CR4KERNEL).
pub const CR0RSVD: u64 = 0x1ffaffc0;
pub const CR4RSVD: u64 = 0xff889000;
pub const CR4MCE: u64 = 1 << 6;
pub const CR4VMXE: u64 = 1 << 13;
pub const CR4SMXE: u64 = 1 << 14;
pub const CR4PKE: u64 = 1 << 22;
pub const CR0KERNEL: u64 = CR0RSVD | 0x30 | 0xFFFF_FFFF_0000_0000;
pub const CR4KERNEL: u64 = CR4RSVD | CR4VMXE | CR4SMXE | CR4MCE | CR4PKE | 0xFFFF_FFFF_0000_0000;

/// CPUID leaf 1, ECX: VT-x (the seed tests `ecx & (1<<5)`).
pub const CPUID1_ECX_VMX: u32 = 1 << 5;

// MSRs (the seed writes 0x3a bare; the others after pc64's names).
pub const IA32_FEATURE_CONTROL: Msr = Msr(0x3a);
/// IA32_FEATURE_CONTROL: lock, and VMXON outside SMX.
pub const FEATURE_CONTROL_LOCK: u64 = 1 << 0;
pub const FEATURE_CONTROL_VMXON: u64 = 1 << 2;
pub const TSC_MSR: Msr = Msr(0x10);
pub const APIC_BASE: Msr = Msr(0x1b);
pub const MTRR_CAP: Msr = Msr(0xfe);
pub const SYSENTER_CS: Msr = Msr(0x174);
pub const SYSENTER_ESP: Msr = Msr(0x175);
pub const SYSENTER_EIP: Msr = Msr(0x176);
pub const IA32_PAT: Msr = Msr(0x277);
pub const MTRR_DEF_TYPE: Msr = Msr(0x2ff);
pub const EFER: Msr = Msr(0xc000_0080);
pub const STAR: Msr = Msr(0xc000_0081);
pub const LSTAR: Msr = Msr(0xc000_0082);
pub const CSTAR: Msr = Msr(0xc000_0083);
pub const SFMASK: Msr = Msr(0xc000_0084);
pub const FSBASE: Msr = Msr(0xc000_0100);
pub const GSBASE: Msr = Msr(0xc000_0101);
pub const KERNEL_GSBASE: Msr = Msr(0xc000_0102);
pub const TSC_AUX: Msr = Msr(0xc000_0103);

// Segment descriptor bits (pc64/mem.h), for the initial access rights.
pub const SEGDATA: u32 = 0x10 << 8;
pub const SEGEXEC: u32 = 0x18 << 8;
pub const SEGTSS: u32 = 0x9 << 8;
pub const SEGP: u32 = 1 << 15;
pub const SEGB: u32 = 1 << 22;
pub const SEGD: u32 = 1 << 22;
pub const SEGW: u32 = 1 << 9;
pub const SEGR: u32 = 1 << 9;
pub const SEGG: u32 = 1 << 23;

use crate::hw::Hw;
use crate::plan9::hexw;
use alloc::format;
use ninep::Error;

/// vmcsread: a field of the current VMCS, or the seed's error.
pub fn read<H: Hw>(hw: &mut H, field: VmcsField) -> Result<u64, Error> {
    hw.vmread(field)
        .map_err(|_| format!("vmcsread failed ({})", hexw(field.0 as u64, 4)).into())
}

/// vmcswrite: sets a field of the current VMCS, or the seed's error.
pub fn write<H: Hw>(hw: &mut H, field: VmcsField, v: u64) -> Result<(), Error> {
    hw.vmwrite(field, v).map_err(|_| {
        format!(
            "vmcswrite failed ({} = {})",
            hexw(field.0 as u64, 4),
            hexw(v, 16)
        )
        .into()
    })
}
