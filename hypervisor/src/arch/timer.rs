//! The boot CPU's tick: a count at [`HZ`] that the logger, the 9P server's timeouts, the
//! network stack and the short waits of CPU start-up read. It comes from the local APIC
//! timer (TSC-deadline mode where the CPU offers it, else periodic mode with its rate
//! measured against the TSC), or from the PIT's channel 0 where there is no local APIC.
//! `init` also finds the TSC's rate (tsc.rs) and logs which clocks it chose.
//!
//! The count itself is read off the TSC (whole periods since `init`), not counted in the
//! interrupt: an emulator on a loaded host (QEMU TCG's periodic APIC timer) delivers
//! fewer interrupts than periods passed, coalescing the ones its vCPU was not run for,
//! and a tick so counted ran at a quarter to a half of the host's time there. The
//! interrupt only ends the idle loop's `hlt` once a tick.

use super::lapic::{self, TimerMode};
use super::PmTimer;
use core::sync::atomic::{AtomicU64, Ordering};

pub const HZ: u32 = 100;

/// The TSC at `init`: tick 0.
static START: AtomicU64 = AtomicU64::new(0);
/// TSC-deadline mode: the TSC value the timer fires at next, and the TSC cycles per tick.
static DEADLINE: AtomicU64 = AtomicU64::new(0);
static PERIOD: AtomicU64 = AtomicU64::new(0);

/// What drives the tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tick {
    ApicTscDeadline,
    ApicPeriodic,
    Pit,
}

impl Tick {
    fn name(self) -> &'static str {
        match self {
            Tick::ApicTscDeadline => "local apic timer (tsc-deadline)",
            Tick::ApicPeriodic => "local apic timer (periodic)",
            Tick::Pit => "pit channel 0",
        }
    }
}

/// Finds the TSC's rate (`pm`: the FADT's PM timer, if any) and starts the tick on this,
/// the boot CPU. Interrupts stay off until the caller enables them.
pub fn init(pm: Option<PmTimer>) -> Tick {
    let (hz, src) = super::tsc::calibrate(pm);
    let period = (hz / u64::from(HZ)).max(1);
    PERIOD.store(period, Ordering::Relaxed);
    START.store(super::cpu::rdtsc(), Ordering::Relaxed);
    let tick = match lapic::init() {
        Some(_) => {
            lapic::enable();
            lapic::virtual_wire();
            if lapic::has_tsc_deadline() {
                lapic::timer(TimerMode::TscDeadline, 0, false);
                let first = super::cpu::rdtsc() + period;
                DEADLINE.store(first, Ordering::Relaxed);
                lapic::set_deadline(first);
                Tick::ApicTscDeadline
            } else {
                lapic::timer(TimerMode::Periodic, apic_count_per_tick(period), false);
                Tick::ApicPeriodic
            }
        }
        None => {
            super::pit::start_tick(HZ, || {});
            Tick::Pit
        }
    };
    log::info!(
        "clock: tsc {} MHz from {}; tick {HZ} Hz from {}",
        hz / 1_000_000,
        src.name(),
        tick.name()
    );
    tick
}

/// The APIC timer's count over one tick: its one-shot count down (masked) over `period`
/// TSC cycles, the least of three tries. An emulator's vCPU descheduled between reading
/// the count and the TSC makes a try too long (QEMU TCG's APIC timer runs on the host's
/// clock); the tick's interrupt at such a rate would come seconds apart. Too short a
/// try only wakes the idle loop more often.
fn apic_count_per_tick(period: u64) -> u32 {
    (0..3)
        .map(|_| {
            lapic::timer(TimerMode::OneShot, u32::MAX, true);
            let c0 = lapic::timer_current();
            let t0 = super::cpu::rdtsc();
            while super::cpu::rdtsc().wrapping_sub(t0) < period {
                core::hint::spin_loop();
            }
            c0.saturating_sub(lapic::timer_current())
        })
        .min()
        .unwrap_or(0)
        .max(1)
}

/// The APIC timer's interrupt (lapic.rs): in TSC-deadline mode the next deadline (one
/// period on, or one period from now where the interrupt came late).
pub(super) fn apic_tick() {
    let period = PERIOD.load(Ordering::Relaxed);
    let last = DEADLINE.load(Ordering::Relaxed);
    if last != 0 {
        let now = super::cpu::rdtsc();
        let next = if last + period > now {
            last + period
        } else {
            now + period
        };
        DEADLINE.store(next, Ordering::Relaxed);
        lapic::set_deadline(next);
    }
}

/// Timer ticks since `init` (HZ per second): whole periods of the TSC, so none is lost to
/// a late or coalesced interrupt (0 before `init`).
pub fn ticks() -> u64 {
    let period = PERIOD.load(Ordering::Relaxed);
    if period == 0 {
        return 0;
    }
    super::cpu::rdtsc().wrapping_sub(START.load(Ordering::Relaxed)) / period
}

/// Milliseconds since boot, at the ticks' resolution.
pub fn millis() -> u64 {
    ticks() * u64::from(1000 / HZ)
}

/// Busy-waits until `until` holds or `n` timer ticks pass;
/// whether it held.
pub fn wait(n: u64, until: impl Fn() -> bool) -> bool {
    let end = ticks() + n;
    while ticks() < end {
        if until() {
            return true;
        }
        core::hint::spin_loop();
    }
    until()
}

/// The TSC's rate in Hz, the same on every CPU (`KernelHw::tsc_hz`: the clock of in-kernel
/// guest devices).
pub fn tsc_hz() -> u64 {
    super::tsc::hz()
}
