//! Wall-clock time for file times: the CMOS real-time clock's registers, as the kernel
//! reads them once at boot, decoded (BCD or binary, 12- or 24-hour) into seconds since
//! the Unix epoch. Pure and total, so it is tested on the host; the kernel's
//! `arch/rtc.rs` does only the port I/O, and [`crate::hw::Hw::now`] adds the time since.

/// The MC146818 registers a date is made of, raw as the RTC gives them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RtcRegs {
    pub sec: u8,
    pub min: u8,
    /// Bit 7 is PM in 12-hour mode.
    pub hour: u8,
    pub day: u8,
    pub mon: u8,
    /// Two digits: 70-99 are 19xx, 00-69 20xx (Plan 9's rule; the century register's
    /// place is the firmware's choice, so it is not read).
    pub year: u8,
    /// Status register B: bit 2 binary (else BCD), bit 1 24-hour (else 12-hour).
    pub status_b: u8,
}

/// Status register B: values are binary rather than BCD.
pub const RTC_BINARY: u8 = 1 << 2;
/// Status register B: hours run 0-23 rather than 1-12 with a PM bit.
pub const RTC_24H: u8 = 1 << 1;
const RTC_PM: u8 = 0x80;

/// A calendar date and time of day, UTC as far as the RTC knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime {
    pub year: u32,
    pub mon: u32,
    pub day: u32,
    pub hour: u32,
    pub min: u32,
    pub sec: u32,
}

impl DateTime {
    /// A day that exists and a time of day within it (no leap seconds).
    pub fn valid(&self) -> bool {
        (1..=12).contains(&self.mon)
            && (1..=days_in_month(self.year, self.mon)).contains(&self.day)
            && self.hour < 24
            && self.min < 60
            && self.sec < 60
    }
}

fn bcd(v: u8) -> Option<u32> {
    let (hi, lo) = (v >> 4, v & 0xf);
    (hi <= 9 && lo <= 9).then_some(hi as u32 * 10 + lo as u32)
}

fn leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, mon: u32) -> u32 {
    const DAYS: [u32; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    DAYS[(mon - 1) as usize] + (mon == 2 && leap(year)) as u32
}

impl RtcRegs {
    /// The date the registers hold; `None` when a field is no valid BCD or out of range
    /// (an RTC that lost its battery, or a read torn by an update).
    pub fn decode(&self) -> Option<DateTime> {
        let num = |v: u8| {
            if self.status_b & RTC_BINARY != 0 {
                Some(v as u32)
            } else {
                bcd(v)
            }
        };
        let hour = if self.status_b & RTC_24H != 0 {
            num(self.hour)?
        } else {
            let h = num(self.hour & !RTC_PM)?;
            if !(1..=12).contains(&h) {
                return None;
            }
            // 12 AM is 0, 12 PM is 12.
            h % 12 + if self.hour & RTC_PM != 0 { 12 } else { 0 }
        };
        let yy = num(self.year)?;
        let d = DateTime {
            year: if yy < 70 { 2000 + yy } else { 1900 + yy },
            mon: num(self.mon)?,
            day: num(self.day)?,
            hour,
            min: num(self.min)?,
            sec: num(self.sec)?,
        };
        (yy <= 99 && d.valid()).then_some(d)
    }

    /// Seconds since 1970-01-01 00:00:00 for the registers' date.
    pub fn unix_seconds(&self) -> Option<u32> {
        unix_seconds(&self.decode()?)
    }
}

/// Seconds since 1970-01-01 00:00:00 (Plan 9 file times are 32 bits unsigned: dates
/// from 1970 to 2106); `None` outside that range or for an impossible date.
pub fn unix_seconds(d: &DateTime) -> Option<u32> {
    if !d.valid() {
        return None;
    }
    // Days from the civil date, with years starting in March so that the leap day is
    // the last day of its year.
    let y = d.year as i64 - (d.mon <= 2) as i64;
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (d.mon as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d.day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + d.hour as i64 * 3600 + d.min as i64 * 60 + d.sec as i64;
    u32::try_from(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(year: u32, mon: u32, day: u32, hour: u32, min: u32, sec: u32) -> DateTime {
        DateTime {
            year,
            mon,
            day,
            hour,
            min,
            sec,
        }
    }

    #[test]
    fn dates_to_unix_seconds() {
        // Values from Python's calendar.timegm.
        for (d, s) in [
            (dt(1970, 1, 1, 0, 0, 0), 0),
            (dt(1999, 12, 31, 23, 59, 59), 946_684_799),
            (dt(2000, 1, 1, 0, 0, 0), 946_684_800),
            (dt(2024, 2, 29, 12, 34, 56), 1_709_210_096),
            (dt(2026, 12, 1, 0, 9, 58), 1_796_083_798),
            (dt(2069, 12, 31, 23, 59, 59), 3_155_759_999),
            (dt(2100, 3, 1, 0, 0, 0), 4_107_542_400),
        ] {
            assert_eq!(unix_seconds(&d), Some(s), "{d:?}");
        }
        assert_eq!(unix_seconds(&dt(1969, 12, 31, 23, 59, 59)), None);
        assert_eq!(unix_seconds(&dt(2106, 12, 31, 0, 0, 0)), None);
        assert_eq!(unix_seconds(&dt(2023, 2, 29, 0, 0, 0)), None);
        assert_eq!(unix_seconds(&dt(2100, 2, 29, 0, 0, 0)), None);
        assert_eq!(unix_seconds(&dt(2023, 13, 1, 0, 0, 0)), None);
        assert_eq!(unix_seconds(&dt(2023, 0, 1, 0, 0, 0)), None);
        assert_eq!(unix_seconds(&dt(2023, 1, 1, 24, 0, 0)), None);
        assert_eq!(unix_seconds(&dt(2023, 1, 1, 0, 60, 0)), None);
        assert_eq!(unix_seconds(&dt(2023, 1, 1, 0, 0, 60)), None);
    }

    fn regs(v: [u8; 6], status_b: u8) -> RtcRegs {
        RtcRegs {
            year: v[0],
            mon: v[1],
            day: v[2],
            hour: v[3],
            min: v[4],
            sec: v[5],
            status_b,
        }
    }

    #[test]
    fn bcd_and_binary_24_hour() {
        // The PC default: BCD, 24-hour (QEMU and Bochs).
        let r = regs([0x24, 0x02, 0x29, 0x12, 0x34, 0x56], RTC_24H);
        assert_eq!(r.decode(), Some(dt(2024, 2, 29, 12, 34, 56)));
        assert_eq!(r.unix_seconds(), Some(1_709_210_096));
        let r = regs([24, 2, 29, 12, 34, 56], RTC_24H | RTC_BINARY);
        assert_eq!(r.unix_seconds(), Some(1_709_210_096));
        // Years 70-99 are the 1900s.
        let r = regs([0x99, 0x12, 0x31, 0x23, 0x59, 0x59], RTC_24H);
        assert_eq!(r.unix_seconds(), Some(946_684_799));
    }

    #[test]
    fn twelve_hour_clock() {
        let at = |hour, b| {
            regs([0x26, 0x12, 0x01, hour, 0, 0], b)
                .decode()
                .map(|d| d.hour)
        };
        assert_eq!(at(0x12, 0), Some(0), "12 AM");
        assert_eq!(at(0x01, 0), Some(1));
        assert_eq!(at(0x11, 0), Some(11));
        assert_eq!(at(0x80 | 0x12, 0), Some(12), "12 PM");
        assert_eq!(at(0x80 | 0x01, 0), Some(13));
        assert_eq!(at(0x80 | 0x11, 0), Some(23));
        let binary = regs([26, 12, 1, 0x80 | 11, 0, 0], RTC_BINARY).decode();
        assert_eq!(binary.map(|d| d.hour), Some(23));
        assert_eq!(at(0x00, 0), None, "no hour 0 on a 12-hour clock");
        assert_eq!(at(0x13, 0), None);
        // In 24-hour mode bit 7 is no PM flag: 0x92 is no valid hour.
        assert_eq!(at(0x92, RTC_24H), None);
    }

    #[test]
    fn garbage_is_no_date() {
        // A battery-less CMOS reads all ones; a torn read may leave a nibble past 9.
        assert_eq!(regs([0xff; 6], RTC_24H).decode(), None);
        assert_eq!(regs([0; 6], RTC_24H).decode(), None, "month 0");
        assert_eq!(regs([0x24, 0x1a, 1, 0, 0, 0], RTC_24H).decode(), None);
        assert_eq!(regs([0x24, 0x02, 0x30, 0, 0, 0], RTC_24H).decode(), None);
        assert_eq!(regs([0x24, 0x01, 0x01, 0x24, 0, 0], RTC_24H).decode(), None);
        assert_eq!(regs([0x24, 0x01, 0x01, 0, 0x60, 0], RTC_24H).decode(), None);
        assert_eq!(regs([0x24, 0x01, 0x01, 0, 0, 0x60], RTC_24H).decode(), None);
        assert_eq!(
            regs([100, 1, 1, 0, 0, 0], RTC_24H | RTC_BINARY).decode(),
            None
        );
        // Every register value decodes to a date or to None, never a panic.
        for v in 0..=255u8 {
            for b in 0..8 {
                let _ = regs([v; 6], b << 1).unix_seconds();
            }
        }
    }
}
