//! The VMCS field encodings this layer itself touches (host state, entry, the self-test).
//! The #X logic keeps its own table in devvmx.
#![allow(dead_code)] // an encoding table: not every entry is used by every build

pub const VPID: u32 = 0x0000;
pub const GUEST_ES_SEL: u32 = 0x0800;
pub const HOST_ES_SEL: u32 = 0x0C00;
pub const HOST_CS_SEL: u32 = 0x0C02;
pub const HOST_SS_SEL: u32 = 0x0C04;
pub const HOST_DS_SEL: u32 = 0x0C06;
pub const HOST_FS_SEL: u32 = 0x0C08;
pub const HOST_GS_SEL: u32 = 0x0C0A;
pub const HOST_TR_SEL: u32 = 0x0C0C;

pub const EPTP: u32 = 0x201A;
pub const GUEST_PHYS_ADDR: u32 = 0x2400;
pub const VMCS_LINK: u32 = 0x2800;
pub const GUEST_PAT: u32 = 0x2804;
pub const GUEST_EFER: u32 = 0x2806;
pub const HOST_PAT: u32 = 0x2C00;
pub const HOST_EFER: u32 = 0x2C02;

pub const PIN_CTLS: u32 = 0x4000;
pub const PROC_CTLS: u32 = 0x4002;
pub const EXC_BITMAP: u32 = 0x4004;
pub const CR3_TARGET_COUNT: u32 = 0x400A;
pub const EXIT_CTLS: u32 = 0x400C;
pub const ENTRY_CTLS: u32 = 0x4012;
pub const ENTRY_INTR_INFO: u32 = 0x4016;
pub const PROC_CTLS2: u32 = 0x401E;
pub const VM_INSTR_ERROR: u32 = 0x4400;
pub const EXIT_REASON: u32 = 0x4402;
pub const EXIT_INSTR_LEN: u32 = 0x440C;
/// Guest segment limits: ES, CS, SS, DS, FS, GS, LDTR, TR (step 2).
pub const GUEST_ES_LIMIT: u32 = 0x4800;
pub const GUEST_GDTR_LIMIT: u32 = 0x4810;
pub const GUEST_IDTR_LIMIT: u32 = 0x4812;
/// Guest access rights, same order.
pub const GUEST_ES_AR: u32 = 0x4814;
pub const GUEST_INTERRUPTIBILITY: u32 = 0x4824;
pub const GUEST_ACTIVITY: u32 = 0x4826;
pub const GUEST_SYSENTER_CS: u32 = 0x482A;
pub const PREEMPTION_TIMER: u32 = 0x482E;
pub const HOST_SYSENTER_CS: u32 = 0x4C00;

pub const CR0_MASK: u32 = 0x6000;
pub const CR4_MASK: u32 = 0x6002;
pub const CR0_SHADOW: u32 = 0x6004;
pub const CR4_SHADOW: u32 = 0x6006;
pub const EXIT_QUALIFICATION: u32 = 0x6400;
pub const GUEST_CR0: u32 = 0x6800;
pub const GUEST_CR3: u32 = 0x6802;
pub const GUEST_CR4: u32 = 0x6804;
/// Guest segment bases, same order as the limits.
pub const GUEST_ES_BASE: u32 = 0x6806;
pub const GUEST_GDTR_BASE: u32 = 0x6816;
pub const GUEST_IDTR_BASE: u32 = 0x6818;
pub const GUEST_DR7: u32 = 0x681A;
pub const GUEST_RSP: u32 = 0x681C;
pub const GUEST_RIP: u32 = 0x681E;
pub const GUEST_RFLAGS: u32 = 0x6820;
pub const GUEST_PENDING_DBG: u32 = 0x6822;
pub const GUEST_SYSENTER_ESP: u32 = 0x6824;
pub const GUEST_SYSENTER_EIP: u32 = 0x6826;
pub const HOST_CR0: u32 = 0x6C00;
pub const HOST_CR3: u32 = 0x6C02;
pub const HOST_CR4: u32 = 0x6C04;
pub const HOST_FS_BASE: u32 = 0x6C06;
pub const HOST_GS_BASE: u32 = 0x6C08;
pub const HOST_TR_BASE: u32 = 0x6C0A;
pub const HOST_GDTR_BASE: u32 = 0x6C0C;
pub const HOST_IDTR_BASE: u32 = 0x6C0E;
pub const HOST_SYSENTER_ESP: u32 = 0x6C10;
pub const HOST_SYSENTER_EIP: u32 = 0x6C12;
pub const HOST_RSP: u32 = 0x6C14;
pub const HOST_RIP: u32 = 0x6C16;
