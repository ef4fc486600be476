//! The 8254 timer on IRQ 0: a tick count, and a periodic wake-up for the idle loop.

use super::port::{PIT, PORT_B};
use core::sync::atomic::{AtomicU64, Ordering};

pub const HZ: u32 = 100;
/// Register offsets in the PIT's range.
const CH0: u16 = 0;
const CH2: u16 = 2;
const MODE: u16 = 3;
/// Port B (0x61) bits: channel 2's gate, the speaker's enable, channel 2's output.
const GATE2: u8 = 0x01;
const SPEAKER: u8 = 0x02;
const OUT2: u8 = 0x20;
static TICKS: AtomicU64 = AtomicU64::new(0);

pub fn init() {
    let divisor = 1_193_182 / HZ;
    PIT.write8(MODE, 0x34); // channel 0, lo/hi byte, mode 2 (rate generator)
    PIT.write8(CH0, divisor as u8);
    PIT.write8(CH0, (divisor >> 8) as u8);
    super::pic::register(0, tick);
}

fn tick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
}

/// Timer ticks since boot (HZ per second).
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Busy-waits until `until` holds or `n` timer ticks (interrupts must be on) pass;
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

/// The 8254's input clock, Hz.
const PIT_HZ: u64 = 1_193_182;

/// The TSC's rate in Hz, measured once (by the first CPU to ask) and shared by every
/// CPU: the clock of in-kernel guest devices.
pub fn tsc_hz() -> u64 {
    static TSC_HZ: spin::Once<u64> = spin::Once::new();
    *TSC_HZ.call_once(|| {
        let hz = calibrate_tsc();
        log::info!("tsc {} kHz", hz / 1000);
        hz
    })
}

/// The TSC's rate in Hz, measured against channel 2 of the PIT (gated through port 0x61
/// and polled, as Linux calibrates). Needs the 100 Hz tick running only as a bound: a PIT
/// whose channel 2 never ends its count is measured against the ticks instead.
fn calibrate_tsc() -> u64 {
    const COUNT: u64 = 0xffff; // about 55 ms
    let p61 = PORT_B.read8(0);
    PORT_B.write8(0, (p61 & !SPEAKER) | GATE2); // gate 2 on, speaker off
    PIT.write8(MODE, 0xb0); // channel 2, lo/hi byte, mode 0 (interrupt on terminal count)
    PIT.write8(CH2, COUNT as u8);
    PIT.write8(CH2, (COUNT >> 8) as u8);
    let (t0, k0) = (super::cpu::rdtsc(), ticks());
    let mut done = false;
    while ticks() - k0 < 20 {
        if PORT_B.read8(0) & OUT2 != 0 {
            done = true;
            break;
        }
    }
    let (t1, k1) = (super::cpu::rdtsc(), ticks());
    PORT_B.write8(0, p61);
    let dt = t1.wrapping_sub(t0).max(1);
    if done {
        dt * PIT_HZ / COUNT
    } else {
        dt * u64::from(HZ) / (k1 - k0).max(1)
    }
}
