//! VMCS field encodings, control bits and MSR numbers, named as in the seed.
#![allow(missing_docs)]

pub const VMX_BASIC_MSR: u32 = 0x480;
pub const VMX_PINB_CTLS_MSR: u32 = 0x481;
pub const VMX_PROCB_CTLS_MSR: u32 = 0x482;
pub const VMX_VMEXIT_CTLS_MSR: u32 = 0x483;
pub const VMX_VMENTRY_CTLS_MSR: u32 = 0x484;
pub const VMX_CR0_FIXED0: u32 = 0x486;
pub const VMX_CR0_FIXED1: u32 = 0x487;
pub const VMX_CR4_FIXED0: u32 = 0x488;
pub const VMX_CR4_FIXED1: u32 = 0x489;
pub const VMX_PROCB_CTLS2_MSR: u32 = 0x48B;
pub const VMX_TRUE_PINB_CTLS_MSR: u32 = 0x48D;
pub const VMX_TRUE_PROCB_CTLS_MSR: u32 = 0x48E;

pub const PINB_CTLS: u32 = 0x4000;
pub const PINB_EXITIRQ: u32 = 1 << 0;
pub const PINB_EXITNMI: u32 = 1 << 3;
pub const PINB_PREEMPT: u32 = 1 << 6;

pub const PROCB_CTLS: u32 = 0x4002;
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

pub const PROCB_CTLS2: u32 = 0x401E;
pub const PROCB_EPT: u32 = 1 << 1;
pub const PROCB_VPID: u32 = 1 << 5;
pub const PROCB_UNRESTR: u32 = 1 << 7;

pub const EXC_BITMAP: u32 = 0x4004;
pub const PFAULT_MASK: u32 = 0x4006;
pub const PFAULT_MATCH: u32 = 0x4008;
pub const CR3_TARGCNT: u32 = 0x400a;
pub const MSR_BITMAP: u32 = 0x2004;

pub const VMEXIT_CTLS: u32 = 0x400c;
pub const VMEXIT_ST_DEBUG: u32 = 1 << 2;
pub const VMEXIT_HOST64: u32 = 1 << 9;
pub const VMEXIT_LD_IA32_PAT: u32 = 1 << 19;
pub const VMEXIT_ST_IA32_EFER: u32 = 1 << 20;
pub const VMEXIT_LD_IA32_EFER: u32 = 1 << 21;

pub const VMEXIT_MSRSTCNT: u32 = 0x400e;
pub const VMEXIT_MSRLDCNT: u32 = 0x4010;
pub const VMEXIT_MSRSTADDR: u32 = 0x2006;
pub const VMEXIT_MSRLDADDR: u32 = 0x2008;
pub const VMENTRY_MSRLDADDR: u32 = 0x200A;

pub const VMENTRY_CTLS: u32 = 0x4012;
pub const VMENTRY_LD_DEBUG: u32 = 1 << 2;
pub const VMENTRY_GUEST64: u32 = 1 << 9;
pub const VMENTRY_LD_IA32_PAT: u32 = 1 << 14;
pub const VMENTRY_LD_IA32_EFER: u32 = 1 << 15;

pub const VMENTRY_MSRLDCNT: u32 = 0x4014;
pub const VMENTRY_INTRINFO: u32 = 0x4016;
pub const VMENTRY_INTRCODE: u32 = 0x4018;
pub const VMENTRY_INTRILEN: u32 = 0x401a;

pub const VMCS_TSC_OFFSET: u32 = 0x2010;
pub const VMCS_LINK: u32 = 0x2800;

pub const GUEST_ES: u32 = 0x800;
pub const GUEST_CS: u32 = 0x802;
pub const GUEST_SS: u32 = 0x804;
pub const GUEST_DS: u32 = 0x806;
pub const GUEST_FS: u32 = 0x808;
pub const GUEST_GS: u32 = 0x80A;
pub const GUEST_LDTR: u32 = 0x80C;
pub const GUEST_TR: u32 = 0x80E;
pub const GUEST_CR0: u32 = 0x6800;
pub const GUEST_CR3: u32 = 0x6802;
pub const GUEST_CR4: u32 = 0x6804;
pub const GUEST_ESLIMIT: u32 = 0x4800;
pub const GUEST_CSLIMIT: u32 = 0x4802;
pub const GUEST_SSLIMIT: u32 = 0x4804;
pub const GUEST_DSLIMIT: u32 = 0x4806;
pub const GUEST_FSLIMIT: u32 = 0x4808;
pub const GUEST_GSLIMIT: u32 = 0x480A;
pub const GUEST_LDTRLIMIT: u32 = 0x480C;
pub const GUEST_TRLIMIT: u32 = 0x480E;
pub const GUEST_GDTRLIMIT: u32 = 0x4810;
pub const GUEST_IDTRLIMIT: u32 = 0x4812;
pub const GUEST_ESPERM: u32 = 0x4814;
pub const GUEST_CSPERM: u32 = 0x4816;
pub const GUEST_SSPERM: u32 = 0x4818;
pub const GUEST_DSPERM: u32 = 0x481A;
pub const GUEST_FSPERM: u32 = 0x481C;
pub const GUEST_GSPERM: u32 = 0x481E;
pub const GUEST_LDTRPERM: u32 = 0x4820;
pub const GUEST_TRPERM: u32 = 0x4822;
pub const GUEST_CR0MASK: u32 = 0x6000;
pub const GUEST_CR4MASK: u32 = 0x6002;
pub const GUEST_CR0SHADOW: u32 = 0x6004;
pub const GUEST_CR4SHADOW: u32 = 0x6006;
pub const GUEST_ESBASE: u32 = 0x6806;
pub const GUEST_CSBASE: u32 = 0x6808;
pub const GUEST_SSBASE: u32 = 0x680A;
pub const GUEST_DSBASE: u32 = 0x680C;
pub const GUEST_FSBASE: u32 = 0x680E;
pub const GUEST_GSBASE: u32 = 0x6810;
pub const GUEST_LDTRBASE: u32 = 0x6812;
pub const GUEST_TRBASE: u32 = 0x6814;
pub const GUEST_GDTRBASE: u32 = 0x6816;
pub const GUEST_IDTRBASE: u32 = 0x6818;
pub const GUEST_DR7: u32 = 0x681A;
pub const GUEST_RSP: u32 = 0x681C;
pub const GUEST_RIP: u32 = 0x681E;
pub const GUEST_RFLAGS: u32 = 0x6820;
pub const GUEST_IA32_PAT: u32 = 0x2804;
pub const GUEST_IA32_EFER: u32 = 0x2806;

pub const GUEST_CANINTR: u32 = 0x4824;
pub const GUEST_PENDING_DBG: u32 = 0x6822;

pub const VM_INSTRERR: u32 = 0x4400;
pub const VM_EXREASON: u32 = 0x4402;
pub const VM_EXINTRINFO: u32 = 0x4404;
pub const VM_EXINTRCODE: u32 = 0x4406;
pub const VM_IDTVECINFO: u32 = 0x4408;
pub const VM_IDTVECCODE: u32 = 0x440A;
pub const VM_EXINSTRLEN: u32 = 0x440C;
pub const VM_EXINSTRINFO: u32 = 0x440E;
pub const VM_EXQUALIF: u32 = 0x6400;
pub const VM_GUESTVA: u32 = 0x640A;
pub const VM_GUESTPA: u32 = 0x2400;

pub const VMX_PREEMPT_TIMER: u32 = 0x482E;

pub const VM_VPID: u32 = 0x000;
pub const VM_EPTP: u32 = 0x201A;

// Control register bits the host keeps (the seed's CR0KERNEL/CR4KERNEL).
pub const CR0RSVD: u64 = 0x1ffaffc0;
pub const CR4RSVD: u64 = 0xff889000;
pub const CR4MCE: u64 = 1 << 6;
pub const CR4VMXE: u64 = 1 << 13;
pub const CR4SMXE: u64 = 1 << 14;
pub const CR4PKE: u64 = 1 << 22;
pub const CR0KERNEL: u64 = CR0RSVD | 0x30 | 0xFFFF_FFFF_0000_0000;
pub const CR4KERNEL: u64 = CR4RSVD | CR4VMXE | CR4SMXE | CR4MCE | CR4PKE | 0xFFFF_FFFF_0000_0000;

// MSRs.
pub const IA32_FEATURE_CONTROL: u32 = 0x3a;
pub const IA32_PAT: u32 = 0x277;
pub const EFER: u32 = 0xc000_0080;
pub const STAR: u32 = 0xc000_0081;
pub const LSTAR: u32 = 0xc000_0082;
pub const CSTAR: u32 = 0xc000_0083;
pub const SFMASK: u32 = 0xc000_0084;
pub const FSBASE: u32 = 0xc000_0100;
pub const GSBASE: u32 = 0xc000_0101;
pub const KERNEL_GSBASE: u32 = 0xc000_0102;

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
pub fn read<H: Hw>(hw: &mut H, field: u32) -> Result<u64, Error> {
    hw.vmread(field)
        .map_err(|_| format!("vmcsread failed ({})", hexw(field as u64, 4)).into())
}

/// vmcswrite: sets a field of the current VMCS, or the seed's error.
pub fn write<H: Hw>(hw: &mut H, field: u32, v: u64) -> Result<(), Error> {
    hw.vmwrite(field, v).map_err(|_| {
        format!(
            "vmcswrite failed ({} = {})",
            hexw(field as u64, 4),
            hexw(v, 16)
        )
        .into()
    })
}
