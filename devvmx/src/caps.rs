//! What this CPU's VT-x can do, read from the VMX capability MSRs as SDM Vol. 3 Appendix A
//! says, once (by `vtx::vmxreset`): the allowed settings of the pin-based, processor-based,
//! exit and entry controls (the TRUE MSRs where IA32_VMX_BASIC bit 55 says they exist),
//! the fixed bits of CR0 and CR4, the VMX-preemption timer's rate (IA32_VMX_MISC) and the
//! EPT and VPID capabilities. What this crate needs and a CPU lacks is refused here, each
//! by its name (`no NAME`); what it can run without (VPID, the preemption timer, the
//! monitor trap flag, TSC offsetting) is noted and done without.

use crate::hw::{Hw, PAGE};
use crate::vmcs::{self, *};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// vmxstart's errors, for the host's CR0 and CR4 before VMXON and here also for a guest's
/// written through `regs` (the seed's strings).
pub const EBADCR0: &str = "invalid CR0 value";
pub const EBADCR4: &str = "invalid CR4 value";

/// The allowed settings of one 32-bit control (SDM A.3-A.5): the bits that must be 1 (the
/// allowed-0 settings, low half of the MSR) and those that may be 1 (allowed-1, high half).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Allowed {
    pub must: u32,
    pub may: u32,
}

impl Allowed {
    /// From a capability MSR's value.
    pub const fn from_msr(v: u64) -> Allowed {
        Allowed {
            must: v as u32,
            may: (v >> 32) as u32,
        }
    }

    /// The control with the bits of `want` this CPU allows, and every bit it requires.
    pub const fn adjust(self, want: u32) -> u32 {
        (want | self.must) & self.may
    }

    /// Every bit of `bits` may be 1.
    pub const fn allows(self, bits: u32) -> bool {
        self.may & bits == bits
    }
}

/// The control fields, each with its allowed settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Controls {
    pub pin: Allowed,
    pub procb: Allowed,
    /// Secondary processor-based: no bit is ever required (A.3.3).
    pub procb2: Allowed,
    pub exit: Allowed,
    pub entry: Allowed,
}

/// Which control field a bit belongs to.
#[derive(Clone, Copy, Debug)]
enum Field {
    Pin,
    Procb,
    Procb2,
    Exit,
    Entry,
}

impl Controls {
    fn of(&self, f: Field) -> Allowed {
        match f {
            Field::Pin => self.pin,
            Field::Procb => self.procb,
            Field::Procb2 => self.procb2,
            Field::Exit => self.exit,
            Field::Entry => self.entry,
        }
    }
}

/// The controls this crate cannot run without, each with the name a refusal gives
/// (`no NAME`): those that keep the guest off the host's ports and interrupts, and those
/// whose VMCS fields it writes unconditionally (the MSR bitmap's address, the PAT and EFER
/// fields exist only where their controls do). Every other control it sets is optional:
/// `Allowed::adjust` leaves out what a CPU cannot do.
const NEEDED: &[(Field, u32, &str)] = &[
    (Field::Pin, PINB_EXITIRQ, "external-interrupt exiting"),
    (Field::Pin, PINB_EXITNMI, "NMI exiting"),
    (Field::Procb, PROCB_EXITIO, "unconditional I/O exiting"),
    (Field::Procb, PROCB_MSRBITMAP, "MSR bitmaps"),
    (
        Field::Procb,
        PROCB_USECTLS2,
        "secondary processor-based controls",
    ),
    (Field::Procb2, PROCB_EPT, "EPT"),
    (Field::Procb2, PROCB_UNRESTR, "unrestricted guest"),
    (Field::Exit, VMEXIT_HOST64, "64-bit host address space"),
    (Field::Exit, VMEXIT_LD_IA32_PAT, "PAT load on exit"),
    (Field::Exit, VMEXIT_LD_IA32_EFER, "EFER load on exit"),
    (Field::Exit, VMEXIT_ST_IA32_EFER, "EFER save on exit"),
    (Field::Entry, VMENTRY_LD_IA32_PAT, "PAT load on entry"),
    (Field::Entry, VMENTRY_LD_IA32_EFER, "EFER load on entry"),
    (Field::Entry, VMENTRY_GUEST64, "IA-32e mode guest"),
];

/// IA32_VMX_CR0_FIXED0/1 or IA32_VMX_CR4_FIXED0/1 (A.7, A.8): a bit set in `fixed0` must
/// be 1, a bit clear in `fixed1` must be 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fixed {
    pub fixed0: u64,
    pub fixed1: u64,
}

impl Fixed {
    /// The bits of `v` these fixed bits forbid (the seed's test in vmxstart).
    pub const fn bad(self, v: u64) -> u64 {
        v & !self.fixed0 & !self.fixed1 | !v & self.fixed0 & self.fixed1
    }

    /// The same without requiring `bits` to be 1.
    pub const fn relax(self, bits: u64) -> Fixed {
        Fixed {
            fixed0: self.fixed0 & !bits,
            fixed1: self.fixed1,
        }
    }
}

/// The VMX-preemption timer's rate (IA32_VMX_MISC bits 4:0): it counts down by one each
/// time bit `rate` of the TSC changes, a tick every 2^rate TSC ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreemptRate(pub u8);

impl PreemptRate {
    /// From IA32_VMX_MISC.
    pub const fn from_misc(misc: u64) -> PreemptRate {
        PreemptRate((misc & 0x1f) as u8)
    }

    /// The timer value that runs out after about `tsc` TSC ticks: at least 1 (a 0 exits
    /// before the guest's first instruction), at most what the 32-bit field holds.
    pub const fn ticks(self, tsc: u128) -> u32 {
        let t = tsc >> self.0;
        if t == 0 {
            1
        } else if t > u32::MAX as u128 {
            u32::MAX
        } else {
            t as u32
        }
    }

    /// The timer value that runs out after about `ns` nanoseconds of a TSC that ticks at
    /// `tsc_hz` (`Hw::tsc_hz`).
    pub const fn ticks_in_ns(self, ns: u64, tsc_hz: u64) -> u32 {
        self.ticks(ns as u128 * tsc_hz as u128 / 1_000_000_000)
    }
}

/// IA32_VMX_EPT_VPID_CAP (A.10), the bits this crate reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EptVpidCap(pub u64);

impl EptVpidCap {
    /// Execute-only EPT translations (a `map` line `--x`).
    pub const EXEC_ONLY: u64 = 1 << 0;
    /// A 4-level EPT page walk (the only one `ept` builds).
    pub const WALK4: u64 = 1 << 6;
    /// Write-back EPT paging structures (the EPTP's memory type here).
    pub const WB: u64 = 1 << 14;
    pub const INVEPT: u64 = 1 << 20;
    pub const INVEPT_SINGLE: u64 = 1 << 25;
    pub const INVVPID: u64 = 1 << 32;
    pub const INVVPID_SINGLE: u64 = 1 << 41;

    /// Every bit of `bits` set.
    pub const fn has(self, bits: u64) -> bool {
        self.0 & bits == bits
    }
}

/// The EPT capabilities this crate cannot run without (it builds 4-level tables of 4 KiB
/// pages, write-back, and flushes one EPTP at a time), each with its refusal's name.
const EPT_NEEDED: &[(u64, &str)] = &[
    (EptVpidCap::WALK4, "EPT 4-level page walk"),
    (EptVpidCap::WB, "write-back EPT paging structures"),
    (EptVpidCap::INVEPT, "INVEPT"),
    (EptVpidCap::INVEPT_SINGLE, "single-context INVEPT"),
];

/// IA32_VMX_BASIC (A.1), the fields this crate reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Basic(pub u64);

impl Basic {
    /// The VMCS revision identifier a VMXON region and a VMCS begin with.
    pub const fn revision(self) -> u32 {
        self.0 as u32 & 0x7fff_ffff
    }

    /// Bytes a VMXON region or VMCS needs (bits 44:32).
    pub const fn region_size(self) -> u64 {
        self.0 >> 32 & 0x1fff
    }

    /// Bit 48: VMXON region, VMCS and the areas they point to must lie below 4 GiB.
    pub const fn below_4g(self) -> bool {
        self.0 & 1 << 48 != 0
    }

    /// Bits 53:50: the memory type the CPU uses for the VMCS (6, write-back, on every CPU
    /// so far).
    pub const fn memory_type(self) -> u64 {
        self.0 >> 50 & 0xf
    }

    /// Bit 55: the TRUE control capability MSRs exist.
    pub const fn true_ctls(self) -> bool {
        self.0 & VMX_BASIC_TRUECTLS != 0
    }
}

/// Write-back, as a memory type in IA32_VMX_BASIC and EPTP.
const MEMTYPE_WB: u64 = 6;

/// This CPU's VT-x, as this crate uses it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    pub basic: Basic,
    pub ctls: Controls,
    pub cr0: Fixed,
    pub cr4: Fixed,
    /// The preemption timer's rate; `None` where pin-based control 6 cannot be set.
    pub preempt: Option<PreemptRate>,
    pub ept: EptVpidCap,
    /// VMs get VPIDs: the control may be set and single-context INVVPID exists. Else they
    /// run without (every entry and exit flushes the guest's TLB entries).
    pub vpid: bool,
}

impl Caps {
    /// Reads the capability MSRs and refuses (`no NAME`, or the seed's
    /// `rdmsr(NAME) failed`) a CPU that lacks what this crate needs. For a CPU that passed
    /// vmxreset's seed checks (VMX, IA32_FEATURE_CONTROL, secondary controls).
    pub fn read<H: Hw>(hw: &mut H) -> Result<Caps, String> {
        let rd = |hw: &mut H, m: Msr| vmcs::rdmsr(hw, m).map_err(|e| String::from(e.as_str()));
        let basic = Basic(rd(hw, VMX_BASIC_MSR)?);
        if basic.region_size() > PAGE as u64 {
            return Err("VMCS region larger than a page".into());
        }
        if basic.memory_type() != MEMTYPE_WB {
            return Err("VMCS memory type not write-back".into());
        }
        if basic.below_4g() {
            return Err("VMX addresses limited to 32 bits".into());
        }
        let [pin, procb, exit, entry] = if basic.true_ctls() {
            [
                VMX_TRUE_PINB_CTLS_MSR,
                VMX_TRUE_PROCB_CTLS_MSR,
                VMX_TRUE_EXIT_CTLS_MSR,
                VMX_TRUE_ENTRY_CTLS_MSR,
            ]
        } else {
            [
                VMX_PINB_CTLS_MSR,
                VMX_PROCB_CTLS_MSR,
                VMX_VMEXIT_CTLS_MSR,
                VMX_VMENTRY_CTLS_MSR,
            ]
        };
        let mut ctls = Controls {
            pin: Allowed::from_msr(rd(hw, pin)?),
            procb: Allowed::from_msr(rd(hw, procb)?),
            procb2: Allowed::default(),
            exit: Allowed::from_msr(rd(hw, exit)?),
            entry: Allowed::from_msr(rd(hw, entry)?),
        };
        if ctls.procb.allows(PROCB_USECTLS2) {
            // The secondary controls' allowed-0 settings are all 0 (A.3.3).
            ctls.procb2.may = (rd(hw, VMX_PROCB_CTLS2_MSR)? >> 32) as u32;
        }
        if let Some((_, _, name)) = NEEDED
            .iter()
            .find(|(f, bits, _)| !ctls.of(*f).allows(*bits))
        {
            return Err(format!("no {name}"));
        }
        let ept = EptVpidCap(rd(hw, VMX_EPT_VPID_CAP_MSR)?);
        if let Some((_, name)) = EPT_NEEDED.iter().find(|(bits, _)| !ept.has(*bits)) {
            return Err(format!("no {name}"));
        }
        let preempt = if ctls.pin.allows(PINB_PREEMPT) {
            Some(PreemptRate::from_misc(rd(hw, VMX_MISC_MSR)?))
        } else {
            None
        };
        let fixed = |hw: &mut H, f0: Msr, f1: Msr| -> Result<Fixed, String> {
            Ok(Fixed {
                fixed0: rd(hw, f0)?,
                fixed1: rd(hw, f1)?,
            })
        };
        let cr0 = fixed(hw, VMX_CR0_FIXED0, VMX_CR0_FIXED1)?;
        let cr4 = fixed(hw, VMX_CR4_FIXED0, VMX_CR4_FIXED1)?;
        let vpid = ctls.procb2.allows(PROCB_VPID)
            && ept.has(EptVpidCap::INVVPID | EptVpidCap::INVVPID_SINGLE);
        Ok(Caps {
            basic,
            ctls,
            cr0,
            cr4,
            preempt,
            ept,
            vpid,
        })
    }

    /// The monitor trap flag can be set (else `step` uses RFLAGS.TF).
    pub const fn mtf(&self) -> bool {
        self.ctls.procb.allows(PROCB_MONTRAP)
    }

    /// The EPTP of the tables whose PML4 is at `pml4`: a 4-level walk, write-back.
    pub const fn eptp(pml4: u64) -> u64 {
        pml4 | EPTP_WALK4 | MEMTYPE_WB
    }

    /// Whether `cr0` may be a guest's CR0 at VM entry (SDM 26.3.1.1): the fixed bits,
    /// less PE and PG, which unrestricted guest (always on here) leaves to the guest, and
    /// PG only with PE.
    pub const fn guest_cr0_ok(&self, cr0: u64) -> bool {
        self.cr0.relax(CR0_PE | CR0_PG).bad(cr0) == 0 && (cr0 & CR0_PG == 0 || cr0 & CR0_PE != 0)
    }

    /// Whether `cr4` may be a guest's CR4 at VM entry: its fixed bits.
    pub const fn guest_cr4_ok(&self, cr4: u64) -> bool {
        self.cr4.bad(cr4) == 0
    }

    /// What a log line says of this CPU: the optional features, on or done without.
    pub fn describe(&self) -> String {
        let mut s: Vec<String> = Vec::new();
        let onoff = |on: bool, what: &str| {
            if on {
                String::from(what)
            } else {
                format!("no {what}")
            }
        };
        s.push(onoff(self.basic.true_ctls(), "true controls"));
        s.push(match self.preempt {
            Some(PreemptRate(r)) => format!("preemption timer (TSC/2^{r})"),
            None => String::from("no preemption timer"),
        });
        s.push(onoff(
            self.vpid,
            if self.vpid {
                "VPID"
            } else {
                "VPID (TLB flushed on each entry and exit)"
            },
        ));
        s.push(onoff(self.mtf(), "monitor trap flag"));
        s.push(onoff(
            self.ctls.procb.allows(PROCB_TSCOFFSET),
            "TSC offsetting",
        ));
        s.push(onoff(
            self.ept.has(EptVpidCap::EXEC_ONLY),
            "execute-only EPT",
        ));
        s.join(", ")
    }
}
