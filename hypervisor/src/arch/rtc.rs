//! The CMOS real-time clock (MC146818, index port 0x70, data port 0x71), read once at
//! boot for file times. Port I/O only: `devvmx::clock` decodes what is read.

use super::port::RTC;
use devvmx::clock::RtcRegs;

/// Offsets in the RTC's range.
const INDEX: u16 = 0;
const DATA: u16 = 1;

// Register indices.
const SEC: u8 = 0x00;
const MIN: u8 = 0x02;
const HOUR: u8 = 0x04;
const DAY: u8 = 0x07;
const MON: u8 = 0x08;
const YEAR: u8 = 0x09;
const STATUS_A: u8 = 0x0a;
const STATUS_B: u8 = 0x0b;
/// Status register A: an update of the date registers is in progress (or begins
/// within 244 µs).
const UIP: u8 = 0x80;

/// CMOS register `reg`: one of the RTC's registers above, with bit 7 clear (which keeps
/// NMIs enabled), never the status registers C and D (whose reads clear flags).
fn cmos(reg: u8) -> u8 {
    RTC.write8(INDEX, reg);
    RTC.read8(DATA)
}

fn snapshot() -> RtcRegs {
    // Wait out an update in progress (at most about 2 ms; bounded for a broken RTC).
    for _ in 0..100_000 {
        if cmos(STATUS_A) & UIP == 0 {
            break;
        }
    }
    RtcRegs {
        sec: cmos(SEC),
        min: cmos(MIN),
        hour: cmos(HOUR),
        day: cmos(DAY),
        mon: cmos(MON),
        year: cmos(YEAR),
        status_b: cmos(STATUS_B),
    }
}

/// The RTC's date registers as they are now: read until two reads in a row agree, so
/// an update that begins during a read is not mixed into it. Nothing else in the kernel
/// touches the CMOS ports.
pub fn read() -> RtcRegs {
    let mut last = snapshot();
    for _ in 0..8 {
        let r = snapshot();
        if r == last {
            break;
        }
        last = r;
    }
    last
}
