//! The 8254: channel 0 as the tick on IRQ 0 where the CPU has no local APIC (timer.rs),
//! and channel 2, gated through port 0x61 and polled, as a clock to measure the TSC
//! against (as Linux calibrates) where neither the CPU nor ACPI gives one.

use super::port::{PIT, PORT_B};

/// Register offsets in the PIT's range.
const CH0: u16 = 0;
const CH2: u16 = 2;
const MODE: u16 = 3;
/// Port B (0x61) bits: channel 2's gate, the speaker's enable, channel 2's output.
const GATE2: u8 = 0x01;
const SPEAKER: u8 = 0x02;
const OUT2: u8 = 0x20;
/// The 8254's input clock, Hz.
const PIT_HZ: u64 = 1_193_182;
/// Polls of port 0x61 before a channel 2 that never ends its count (a board with the PIT
/// gated off) is given up on: far more than its 55 ms even at a microsecond a poll.
const MAX_POLLS: u32 = 20_000_000;

/// Channel 0 as a rate generator at `hz`, its interrupt on IRQ 0 calling `tick`.
pub fn start_tick(hz: u32, tick: fn()) {
    let divisor = (PIT_HZ / u64::from(hz)) as u16;
    PIT.write8(MODE, 0x34); // channel 0, lo/hi byte, mode 2 (rate generator)
    PIT.write8(CH0, divisor as u8);
    PIT.write8(CH0, (divisor >> 8) as u8);
    super::pic::register(0, tick);
}

/// TSC cycles per second measured over channel 2's count of 0xffff (about 55 ms); None
/// where its output never goes high.
pub fn measure_tsc() -> Option<u64> {
    const COUNT: u64 = 0xffff;
    let p61 = PORT_B.read8(0);
    PORT_B.write8(0, (p61 & !SPEAKER) | GATE2); // gate 2 on, speaker off
    PIT.write8(MODE, 0xb0); // channel 2, lo/hi byte, mode 0 (interrupt on terminal count)
    PIT.write8(CH2, COUNT as u8);
    PIT.write8(CH2, (COUNT >> 8) as u8);
    let t0 = super::cpu::rdtsc();
    let done = (0..MAX_POLLS).any(|_| PORT_B.read8(0) & OUT2 != 0);
    let t1 = super::cpu::rdtsc();
    PORT_B.write8(0, p61);
    done.then(|| t1.wrapping_sub(t0).max(1) * PIT_HZ / COUNT)
}
