//! The one table of VT-x names: VMCS field encodings grouped by width, control bits, exit
//! reasons, interruption information, MSR numbers and the guest-state bits the device
//! tests, named as in the seed (devvmx.c) where the seed names them. The kernel's
//! architecture layer (hypervisor/src/arch/vmx) and the self-test use these names too;
//! nothing else declares an encoding.
//!
//! Fields and MSRs are distinct types, so [`Hw::vmread`] cannot be handed an MSR nor
//! [`Hw::rdmsr`] a field. Control bits are plain `u32` masks of the control they belong to
//! (`PINB_*` in `PINB_CTLS`, `PROCB_*` in `PROCB_CTLS` or `PROCB_CTLS2`, `VMEXIT_*`,
//! `VMENTRY_*`). Values the CPU reports or takes as a whole are types: [`ExitReason`],
//! [`IntrInfo`].
#![allow(missing_docs)]

use crate::hw::Hw;
use crate::plan9::hexw;
use alloc::format;
use ninep::Error;

/// A VMCS field encoding (SDM Vol. 3 Appendix B): what VMREAD and VMWRITE take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VmcsField(pub u32);

/// A VMCS field's width: encoding bits 14:13, the one place it is written down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    W16,
    W64,
    W32,
    /// Natural width: 64 bits on this (64-bit) host.
    Natural,
}

impl Width {
    /// Bytes the field holds.
    pub const fn bytes(self) -> usize {
        match self {
            Width::W16 => 2,
            Width::W32 => 4,
            Width::W64 | Width::Natural => 8,
        }
    }

    /// The bits a VMWRITE keeps.
    pub const fn mask(self) -> u64 {
        match self {
            Width::W16 => 0xffff,
            Width::W32 => 0xffff_ffff,
            Width::W64 | Width::Natural => u64::MAX,
        }
    }
}

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

    /// Its width, from its encoding.
    pub const fn width(self) -> Width {
        match self.0 >> 13 & 3 {
            0 => Width::W16,
            1 => Width::W64,
            2 => Width::W32,
            _ => Width::Natural,
        }
    }
}

/// A raw encoding (the `regs` file's table, tests).
impl From<u32> for VmcsField {
    fn from(v: u32) -> Self {
        VmcsField(v)
    }
}

/// Declares the fields of one width, one row a line; each encoding is checked at compile
/// time to be of the width its group says.
macro_rules! fields {
    ($width:ident { $($(#[$m:meta])* $name:ident = $enc:expr;)* }) => {
        $(
            $(#[$m])*
            pub const $name: VmcsField = VmcsField($enc);
            const _: () = assert!(matches!($name.width(), Width::$width));
        )*
    };
}

fields!(W16 {
    VM_VPID = 0x000;
    GUEST_ES = 0x800;
    GUEST_CS = 0x802;
    GUEST_SS = 0x804;
    GUEST_DS = 0x806;
    GUEST_FS = 0x808;
    GUEST_GS = 0x80A;
    GUEST_LDTR = 0x80C;
    GUEST_TR = 0x80E;
    // Host state: written only by the architecture layer (`Hw::write_host_state`).
    HOST_ES = 0xC00;
    HOST_CS = 0xC02;
    HOST_SS = 0xC04;
    HOST_DS = 0xC06;
    HOST_FS = 0xC08;
    HOST_GS = 0xC0A;
    HOST_TR = 0xC0C;
});

fields!(W64 {
    MSR_BITMAP = 0x2004;
    VMEXIT_MSRSTADDR = 0x2006;
    VMEXIT_MSRLDADDR = 0x2008;
    VMENTRY_MSRLDADDR = 0x200A;
    VMCS_TSC_OFFSET = 0x2010;
    VM_EPTP = 0x201A;
    VM_GUESTPA = 0x2400;
    VMCS_LINK = 0x2800;
    GUEST_IA32_PAT = 0x2804;
    GUEST_IA32_EFER = 0x2806;
    HOST_IA32_PAT = 0x2C00;
    HOST_IA32_EFER = 0x2C02;
});

fields!(W32 {
    PINB_CTLS = 0x4000;
    PROCB_CTLS = 0x4002;
    EXC_BITMAP = 0x4004;
    PFAULT_MASK = 0x4006;
    PFAULT_MATCH = 0x4008;
    CR3_TARGCNT = 0x400A;
    VMEXIT_CTLS = 0x400C;
    VMEXIT_MSRSTCNT = 0x400E;
    VMEXIT_MSRLDCNT = 0x4010;
    VMENTRY_CTLS = 0x4012;
    VMENTRY_MSRLDCNT = 0x4014;
    VMENTRY_INTRINFO = 0x4016;
    VMENTRY_INTRCODE = 0x4018;
    VMENTRY_INTRILEN = 0x401A;
    PROCB_CTLS2 = 0x401E;
    VM_INSTRERR = 0x4400;
    VM_EXREASON = 0x4402;
    VM_EXINTRINFO = 0x4404;
    VM_EXINTRCODE = 0x4406;
    VM_IDTVECINFO = 0x4408;
    VM_IDTVECCODE = 0x440A;
    VM_EXINSTRLEN = 0x440C;
    VM_EXINSTRINFO = 0x440E;
    GUEST_ESLIMIT = 0x4800;
    GUEST_CSLIMIT = 0x4802;
    GUEST_SSLIMIT = 0x4804;
    GUEST_DSLIMIT = 0x4806;
    GUEST_FSLIMIT = 0x4808;
    GUEST_GSLIMIT = 0x480A;
    GUEST_LDTRLIMIT = 0x480C;
    GUEST_TRLIMIT = 0x480E;
    GUEST_GDTRLIMIT = 0x4810;
    GUEST_IDTRLIMIT = 0x4812;
    GUEST_ESPERM = 0x4814;
    GUEST_CSPERM = 0x4816;
    GUEST_SSPERM = 0x4818;
    GUEST_DSPERM = 0x481A;
    GUEST_FSPERM = 0x481C;
    GUEST_GSPERM = 0x481E;
    GUEST_LDTRPERM = 0x4820;
    GUEST_TRPERM = 0x4822;
    GUEST_CANINTR = 0x4824;
    /// Not named by the seed (vmcsinit leaves them at 0): activity state and SYSENTER.
    GUEST_ACTIVITY = 0x4826;
    GUEST_SYSENTER_CS = 0x482A;
    VMX_PREEMPT_TIMER = 0x482E;
    /// Not named by the seed (it left them at 0): the host's SYSENTER state.
    HOST_SYSENTER_CS = 0x4C00;
});

fields!(Natural {
    GUEST_CR0MASK = 0x6000;
    GUEST_CR4MASK = 0x6002;
    GUEST_CR0SHADOW = 0x6004;
    GUEST_CR4SHADOW = 0x6006;
    VM_EXQUALIF = 0x6400;
    VM_GUESTVA = 0x640A;
    GUEST_CR0 = 0x6800;
    GUEST_CR3 = 0x6802;
    GUEST_CR4 = 0x6804;
    GUEST_ESBASE = 0x6806;
    GUEST_CSBASE = 0x6808;
    GUEST_SSBASE = 0x680A;
    GUEST_DSBASE = 0x680C;
    GUEST_FSBASE = 0x680E;
    GUEST_GSBASE = 0x6810;
    GUEST_LDTRBASE = 0x6812;
    GUEST_TRBASE = 0x6814;
    GUEST_GDTRBASE = 0x6816;
    GUEST_IDTRBASE = 0x6818;
    GUEST_DR7 = 0x681A;
    GUEST_RSP = 0x681C;
    GUEST_RIP = 0x681E;
    GUEST_RFLAGS = 0x6820;
    GUEST_PENDING_DBG = 0x6822;
    GUEST_SYSENTER_ESP = 0x6824;
    GUEST_SYSENTER_EIP = 0x6826;
    HOST_CR0 = 0x6C00;
    HOST_CR3 = 0x6C02;
    HOST_CR4 = 0x6C04;
    HOST_FSBASE = 0x6C06;
    HOST_GSBASE = 0x6C08;
    HOST_TRBASE = 0x6C0A;
    HOST_GDTR = 0x6C0C;
    HOST_IDTR = 0x6C0E;
    HOST_SYSENTER_ESP = 0x6C10;
    HOST_SYSENTER_EIP = 0x6C12;
    HOST_RSP = 0x6C14;
    HOST_RIP = 0x6C16;
});

// Control bits, by the control field they belong to.
pub const PINB_EXITIRQ: u32 = 1 << 0;
pub const PINB_EXITNMI: u32 = 1 << 3;
pub const PINB_PREEMPT: u32 = 1 << 6;
/// Reserved pin-based bits that are 1 by default (the seed's "currently reserved default1
/// bits").
pub const PINB_DEFAULT1: u32 = 1 << 1 | 1 << 2 | 1 << 4;

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

pub const PROCB_EPT: u32 = 1 << 1;
pub const PROCB_VPID: u32 = 1 << 5;
pub const PROCB_UNRESTR: u32 = 1 << 7;

pub const VMEXIT_ST_DEBUG: u32 = 1 << 2;
pub const VMEXIT_HOST64: u32 = 1 << 9;
pub const VMEXIT_LD_IA32_PAT: u32 = 1 << 19;
pub const VMEXIT_ST_IA32_EFER: u32 = 1 << 20;
pub const VMEXIT_LD_IA32_EFER: u32 = 1 << 21;

pub const VMENTRY_LD_DEBUG: u32 = 1 << 2;
pub const VMENTRY_GUEST64: u32 = 1 << 9;
pub const VMENTRY_LD_IA32_PAT: u32 = 1 << 14;
pub const VMENTRY_LD_IA32_EFER: u32 = 1 << 15;

/// EPTP: a 4-level walk (bits 5:3 hold the walk length less one), write-back off.
pub const EPTP_WALK4: u64 = 3 << 3;

/// A VM exit's reason (VM_EXREASON, SDM Vol. 3 24.9.1): the basic reason in bits 15:0,
/// bit 31 set when the entry itself failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitReason(pub u32);

impl ExitReason {
    /// The basic exit reason ([`EXIT_CPUID`] and the rest).
    pub const fn basic(self) -> u16 {
        self.0 as u16
    }

    /// The VM entry failed (the VMCS stays unlaunched).
    pub const fn entry_failed(self) -> bool {
        self.0 & 1 << 31 != 0
    }

    /// Exactly basic reason `basic`, from a successful entry, with no other bit set.
    pub const fn is(self, basic: u16) -> bool {
        self.0 == basic as u32
    }
}

// Basic exit reasons (SDM Vol. 3 Appendix C) this crate and the self-test act on.
pub const EXIT_EXC: u16 = 0;
pub const EXIT_EXTIRQ: u16 = 1;
pub const EXIT_INITSIG: u16 = 3;
pub const EXIT_SIPI: u16 = 4;
pub const EXIT_SMIIO: u16 = 5;
pub const EXIT_SMIOTHER: u16 = 6;
pub const EXIT_IRQWIN: u16 = 7;
pub const EXIT_NMIWIN: u16 = 8;
pub const EXIT_CPUID: u16 = 10;
pub const EXIT_HLT: u16 = 12;
pub const EXIT_IO: u16 = 30;
pub const EXIT_MOVDR: u16 = 29;
pub const EXIT_RDMSR: u16 = 31;
pub const EXIT_WRMSR: u16 = 32;
pub const EXIT_MONTRAP: u16 = 37;
pub const EXIT_EPTFAULT: u16 = 48;
pub const EXIT_EPTINVAL: u16 = 49;
pub const EXIT_PREEMPT: u16 = 52;

/// An EPT violation's qualification: the guest linear address field is valid.
pub const EPTQUAL_VA: u64 = 1 << 7;
/// An I/O exit's qualification: access size less one (bits 2:0), an IN, a string
/// instruction; the port is in bits 31:16.
pub const IOQUAL_SIZE: u64 = 7;
pub const IOQUAL_IN: u64 = 1 << 3;
pub const IOQUAL_STRING: u64 = 1 << 4;

/// A MOV DR exit's qualification (SDM Vol. 3 27.2.1, Table 27-4): the debug register in
/// bits 2:0, bit 4 set for a MOV from it, the general-purpose register in bits 11:8 (in
/// the instructions' encoding: 0 rax, 1 rcx, 2 rdx, 3 rbx, 4 rsp, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MovDrQual(pub u64);

impl MovDrQual {
    /// Which debug register, 0-7.
    pub const fn dr(self) -> usize {
        (self.0 & 7) as usize
    }

    /// A MOV from the debug register (a read); else a MOV to it.
    pub const fn from_dr(self) -> bool {
        self.0 & 1 << 4 != 0
    }

    /// The general-purpose register, 0-15.
    pub const fn gpr(self) -> usize {
        (self.0 >> 8 & 15) as usize
    }
}

/// The kind of an event (interruption information bits 10:8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntrKind {
    External = 0,
    Nmi = 2,
    HwException = 3,
    SwInterrupt = 4,
    PrivSwException = 5,
    SwException = 6,
}

/// Interruption information (SDM Vol. 3 24.8.3, 24.9.2, 24.9.3): what VM entry injects
/// (VMENTRY_INTRINFO) and what an exit reports (VM_EXINTRINFO, VM_IDTVECINFO). Vector in
/// bits 7:0, kind in 10:8, an error code in bit 11, valid in bit 31.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntrInfo(pub u32);

impl IntrInfo {
    const VALID: u32 = 1 << 31;
    const CODE: u32 = 1 << 11;

    /// A valid event of `kind` with `vector`, without an error code.
    pub const fn new(kind: IntrKind, vector: u8) -> IntrInfo {
        IntrInfo(Self::VALID | (kind as u32) << 8 | vector as u32)
    }

    /// The same with its error code valid.
    pub const fn with_code(self) -> IntrInfo {
        IntrInfo(self.0 | Self::CODE)
    }

    /// The same, no longer valid (as every exit leaves the entry field).
    pub const fn invalidated(self) -> IntrInfo {
        IntrInfo(self.0 & !Self::VALID)
    }

    pub const fn valid(self) -> bool {
        self.0 & Self::VALID != 0
    }

    pub const fn has_code(self) -> bool {
        self.0 & Self::CODE != 0
    }

    pub const fn vector(self) -> u8 {
        self.0 as u8
    }

    /// Valid bit, kind and vector only: the event itself, whatever else an exit reports
    /// with it (its error code bit, NMI unblocking).
    pub const fn event(self) -> IntrInfo {
        IntrInfo(self.0 & (Self::VALID | 0x7ff))
    }
}

// Exception vectors the device and the step act on.
pub const VEC_DB: u8 = 1;
pub const VEC_BP: u8 = 3;
pub const VEC_OF: u8 = 4;
pub const VEC_MC: u8 = 18;

// Guest state bits.
pub const RFLAGS_TF: u64 = 1 << 8;
pub const RFLAGS_IF: u64 = 1 << 9;
/// RFLAGS bit 1, reserved, always set.
pub const RFLAGS_RSVD1: u64 = 1 << 1;
/// Guest interruptibility: blocking by STI and by MOV SS.
pub const CANINTR_STI: u64 = 1 << 0;
pub const CANINTR_MOVSS: u64 = 1 << 1;
/// Blocking by STI or MOV SS: the guest cannot take an interrupt now.
pub const CANINTR_BLOCKED: u64 = CANINTR_STI | CANINTR_MOVSS;
/// Pending debug exceptions (and a #DB exit's qualification, as DR6): the breakpoint
/// conditions B0-B3 and single-step (BS).
pub const DBG_B0_3: u64 = 0xf;
pub const DBG_BS: u64 = 1 << 14;

// Control register bits.
pub const CR0_PE: u64 = 1 << 0;
pub const CR0_ET: u64 = 1 << 4;
pub const CR0_NE: u64 = 1 << 5;
pub const CR0_PG: u64 = 1 << 31;
pub const CR4MCE: u64 = 1 << 6;
pub const CR4VMXE: u64 = 1 << 13;
pub const CR4SMXE: u64 = 1 << 14;
pub const CR4PKE: u64 = 1 << 22;
// Control register bits the host keeps (the seed's CR0KERNEL/CR4KERNEL).
pub const CR0RSVD: u64 = 0x1ffaffc0;
pub const CR4RSVD: u64 = 0xff889000;
pub const CR0KERNEL: u64 = CR0RSVD | CR0_ET | CR0_NE | 0xFFFF_FFFF_0000_0000;
pub const CR4KERNEL: u64 = CR4RSVD | CR4VMXE | CR4SMXE | CR4MCE | CR4PKE | 0xFFFF_FFFF_0000_0000;
/// EFER.LMA, which follows LME (bit 8) and CR0.PG.
pub const EFER_LMA: u64 = 1 << 10;

/// CPUID leaf 1, ECX: VT-x (the seed tests `ecx & (1<<5)`).
pub const CPUID1_ECX_VMX: u32 = 1 << 5;

/// A model-specific register number: what RDMSR and WRMSR take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Msr(pub u32);

impl core::fmt::LowerHex for Msr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::LowerHex::fmt(&self.0, f)
    }
}

/// Declares the named MSRs, one row a line, and the table of their names.
macro_rules! msrs {
    ($($(#[$m:meta])* $name:ident = $n:expr;)*) => {
        $( $(#[$m])* pub const $name: Msr = Msr($n); )*
        /// Every named MSR with its name.
        const MSR_NAMES: &[(Msr, &str)] = &[$(($name, stringify!($name))),*];
    };
}

msrs! {
    VMX_BASIC_MSR = 0x480;
    VMX_PINB_CTLS_MSR = 0x481;
    VMX_PROCB_CTLS_MSR = 0x482;
    VMX_VMEXIT_CTLS_MSR = 0x483;
    VMX_VMENTRY_CTLS_MSR = 0x484;
    VMX_MISC_MSR = 0x485;
    VMX_CR0_FIXED0 = 0x486;
    VMX_CR0_FIXED1 = 0x487;
    VMX_CR4_FIXED0 = 0x488;
    VMX_CR4_FIXED1 = 0x489;
    VMX_VMCS_ENUM = 0x48A;
    VMX_PROCB_CTLS2_MSR = 0x48B;
    /// Not named by the seed: the EPT and VPID capabilities.
    VMX_EPT_VPID_CAP_MSR = 0x48C;
    VMX_TRUE_PINB_CTLS_MSR = 0x48D;
    VMX_TRUE_PROCB_CTLS_MSR = 0x48E;
    VMX_TRUE_EXIT_CTLS_MSR = 0x48F;
    VMX_TRUE_ENTRY_CTLS_MSR = 0x490;
    VMX_VMFUNC_MSR = 0x491;
    // Host MSRs (the seed writes 0x3a bare; the others after pc64's names).
    IA32_FEATURE_CONTROL = 0x3a;
    TSC_MSR = 0x10;
    APIC_BASE = 0x1b;
    MTRR_CAP = 0xfe;
    SYSENTER_CS = 0x174;
    SYSENTER_ESP = 0x175;
    SYSENTER_EIP = 0x176;
    IA32_PAT = 0x277;
    MTRR_DEF_TYPE = 0x2ff;
    EFER = 0xc000_0080;
    STAR = 0xc000_0081;
    LSTAR = 0xc000_0082;
    CSTAR = 0xc000_0083;
    SFMASK = 0xc000_0084;
    FSBASE = 0xc000_0100;
    GSBASE = 0xc000_0101;
    KERNEL_GSBASE = 0xc000_0102;
    TSC_AUX = 0xc000_0103;
}

impl Msr {
    /// Its name in this table, if it has one.
    pub fn name(self) -> Option<&'static str> {
        MSR_NAMES.iter().find(|(m, _)| *m == self).map(|&(_, n)| n)
    }
}

/// VMX_BASIC bit 55: the TRUE_* control capability MSRs exist.
pub const VMX_BASIC_TRUECTLS: u64 = 1 << 55;
/// IA32_FEATURE_CONTROL: lock, and VMXON outside SMX.
pub const FEATURE_CONTROL_LOCK: u64 = 1 << 0;
pub const FEATURE_CONTROL_VMXON: u64 = 1 << 2;

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
/// VMCS access rights: the segment is unusable.
pub const SEGUNUSABLE: u32 = 1 << 16;

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

/// A named MSR, or the seed's error, `rdmsr(NAME) failed`, with the MSR's name.
pub fn rdmsr<H: Hw>(hw: &mut H, msr: Msr) -> Result<u64, Error> {
    hw.rdmsr(msr).ok_or_else(|| {
        let name = msr.name().map_or_else(|| format!("{msr:#x}"), Into::into);
        format!("rdmsr({name}) failed").into()
    })
}
