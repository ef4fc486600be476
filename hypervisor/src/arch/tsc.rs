//! The TSC's rate, found once at boot and shared by every CPU (the clock of in-kernel
//! guest devices and of the APIC timer's tick): what CPUID leaf 0x15 or 0x16 states where
//! the CPU says it, else measured against the ACPI PM timer, else against the PIT.

use super::PmTimer;
use core::arch::x86_64::__cpuid;
use spin::Once;

/// Where the rate came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// CPUID 0x15: the crystal clock times the TSC/crystal ratio.
    Cpuid15,
    /// CPUID 0x16: the processor's base frequency.
    Cpuid16,
    PmTimer,
    Pit,
    /// Nothing measured: a guess, so the kernel still runs (its times are then wrong).
    Assumed,
}

impl Source {
    /// How the boot log names it.
    pub fn name(self) -> &'static str {
        match self {
            Source::Cpuid15 => "cpuid 0x15",
            Source::Cpuid16 => "cpuid 0x16",
            Source::PmTimer => "acpi pm timer",
            Source::Pit => "pit channel 2",
            Source::Assumed => "nothing (assumed)",
        }
    }
}

/// The rate taken when nothing can measure it.
const ASSUMED_HZ: u64 = 1_000_000_000;

static TSC: Once<(u64, Source)> = Once::new();

/// The TSC's rate as CPUID states it: leaf 0x15's crystal times its ratio where all three
/// are given, else leaf 0x16's base frequency.
fn from_cpuid() -> Option<(u64, Source)> {
    let max = __cpuid(0).eax;
    if max >= 0x15 {
        let l = __cpuid(0x15);
        if l.eax != 0 && l.ebx != 0 && l.ecx != 0 {
            let hz = u64::from(l.ecx) * u64::from(l.ebx) / u64::from(l.eax);
            return Some((hz, Source::Cpuid15));
        }
    }
    if max >= 0x16 {
        let mhz = __cpuid(0x16).eax & 0xffff;
        if mhz != 0 {
            return Some((u64::from(mhz) * 1_000_000, Source::Cpuid16));
        }
    }
    None
}

/// Finds the rate once (later calls return the first answer): CPUID, else `pm`, else the
/// PIT, else an assumed 1 GHz.
pub fn calibrate(pm: Option<PmTimer>) -> (u64, Source) {
    *TSC.call_once(|| {
        from_cpuid()
            .or_else(|| Some((super::pmtimer::measure_tsc(pm?)?, Source::PmTimer)))
            .or_else(|| Some((super::pit::measure_tsc()?, Source::Pit)))
            .unwrap_or((ASSUMED_HZ, Source::Assumed))
    })
}

/// The TSC's rate in Hz (after `calibrate`; the assumed rate before it).
pub fn hz() -> u64 {
    TSC.get().map_or(ASSUMED_HZ, |&(hz, _)| hz)
}
