//! The ACPI power-management timer: a free-running 3.579545 MHz counter at the port the
//! FADT gives (acpi.rs finds it); the TSC's rate is measured against it where the CPU does
//! not state it and a board has no PIT.

use super::port::{claim_pm_timer, IoRange};

/// The ACPI power-management timer: a free-running 3.579545 MHz counter at an I/O port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmTimer {
    pub port: u16,
    /// The counter's width: 32 bits where the FADT says TMR_VAL_EXT, else 24.
    pub bits: u32,
}

impl PmTimer {
    pub const HZ: u64 = 3_579_545;
}

/// Polls of the counter before a timer that does not move is given up on (a dead port
/// reads all ones): far more than the 50 ms measured even at a microsecond a read.
const MAX_POLLS: u32 = 20_000_000;

/// TSC cycles per second measured over 50 ms of `pm`'s counter; None where it does not
/// count.
pub fn measure_tsc(pm: PmTimer) -> Option<u64> {
    let port: IoRange = claim_pm_timer(pm.port);
    let mask = if pm.bits == 32 {
        u32::MAX
    } else {
        (1 << 24) - 1
    };
    let span = (PmTimer::HZ / 20) as u32;
    let p0 = port.read32(0) & mask;
    let t0 = super::cpu::rdtsc();
    for _ in 0..MAX_POLLS {
        let dp = (port.read32(0) & mask).wrapping_sub(p0) & mask;
        if dp >= span {
            let dt = super::cpu::rdtsc().wrapping_sub(t0);
            return Some(dt * PmTimer::HZ / u64::from(dp));
        }
    }
    None
}
