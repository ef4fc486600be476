//! The MC146818 CMOS RTC (ports 0x70, 0x71): time of day from the host's clock, status
//! registers A-D, and the CMOS bytes a PC BIOS leaves behind (memory sizes, equipment,
//! checksum; [`Rtc::set_ram`] for the sizes SeaBIOS reads, above 4 GiB included). No periodic or alarm interrupts: writes enabling them are kept and
//! reported back, but IRQ 8 never fires.

#[derive(Clone, Debug)]
pub struct Rtc {
    index: u8,
    cmos: [u8; 128],
    /// Seconds added to the host's clock by guest writes to the time registers.
    offset: i64,
}

/// Calendar fields of a Unix time (UTC): (year, month 1-12, day 1-31, weekday 1-7 with
/// Sunday 1, hour, minute, second).
pub fn civil(unix: i64) -> (i64, u8, u8, u8, u8, u8, u8) {
    let days = unix.div_euclid(86400);
    let secs = unix.rem_euclid(86400);
    // Howard Hinnant's days_from_civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let wday = (days + 4).rem_euclid(7) + 1; // 1970-01-01 was a Thursday
    (
        y,
        m as u8,
        d as u8,
        wday as u8,
        (secs / 3600) as u8,
        (secs / 60 % 60) as u8,
        (secs % 60) as u8,
    )
}

impl Rtc {
    /// A clock with the CMOS a BIOS leaves for a machine of `mem` bytes of RAM, `base_kb`
    /// KiB below 640 KiB and `ext_kb` KiB above 1 MiB (all 0: no sizes, for a machine
    /// whose guest learns its memory elsewhere, e.g. from e820).
    pub fn new(base_kb: u64, ext_kb: u64, mem: u64) -> Rtc {
        let mut c = [0u8; 128];
        c[0x0a] = 0x26; // 32.768 kHz time base, 1024 Hz rate
        c[0x0b] = 0x02; // 24-hour, BCD
        c[0x0d] = 0x80; // valid RAM and time
        c[0x10] = 0x00; // no floppies
        c[0x14] = 0x06; // math coprocessor, colour 80x25... no floppy
        let base = base_kb;
        c[0x15] = base as u8;
        c[0x16] = (base >> 8) as u8;
        let ext = ext_kb.min(0xffff);
        for r in [0x17, 0x30] {
            c[r] = ext as u8;
            c[r + 1] = (ext >> 8) as u8;
        }
        // Memory above 16 MiB in 64 KiB units.
        let above = (mem.saturating_sub(16 << 20) >> 16).min(0xffff);
        c[0x34] = above as u8;
        c[0x35] = (above >> 8) as u8;
        let mut r = Rtc {
            index: 0,
            cmos: c,
            offset: 0,
        };
        r.checksum();
        r
    }

    /// The standard checksum over 0x10-0x2d, at 0x2e (high) and 0x2f.
    fn checksum(&mut self) {
        let sum: u16 = self.cmos[0x10..0x2e].iter().map(|&b| u16::from(b)).sum();
        self.cmos[0x2e] = (sum >> 8) as u8;
        self.cmos[0x2f] = sum as u8;
    }

    /// Puts a little-endian value of `bytes` bytes at `reg`.
    fn put(&mut self, reg: usize, bytes: usize, v: u64) {
        for i in 0..bytes {
            self.cmos[reg + i] = (v >> (8 * i)) as u8;
        }
    }

    /// The memory sizes of a PC with `below_4g` bytes of RAM from address 0 and
    /// `above_4g` from 4 GiB, as QEMU's CMOS holds them and SeaBIOS reads them without
    /// fw_cfg: 640 KiB of base memory (0x15), KiB above 1 MiB up to 64 MiB (0x17 and
    /// 0x30), 64 KiB units above 16 MiB (0x34) and above 4 GiB (0x5b-0x5d, 24 bits).
    pub fn set_ram(&mut self, below_4g: u64, above_4g: u64) {
        const MIB: u64 = 1 << 20;
        self.put(0x15, 2, 640);
        let ext = (below_4g.saturating_sub(MIB) >> 10).min(0xffff);
        self.put(0x17, 2, ext);
        self.put(0x30, 2, ext);
        let above_16m = (below_4g.saturating_sub(16 * MIB) >> 16).min(0xffff);
        self.put(0x34, 2, above_16m);
        self.put(0x5b, 3, (above_4g >> 16).min(0xff_ffff));
        self.checksum();
    }

    /// The number of CPUs SeaBIOS starts (register 0x5f holds it less one).
    pub fn set_cpus(&mut self, n: u8) {
        self.cmos[0x5f] = n.saturating_sub(1);
    }

    fn encode(&self, v: u8) -> u8 {
        if self.cmos[0x0b] & 0x04 != 0 {
            v
        } else {
            ((v / 10) << 4) | (v % 10)
        }
    }

    fn decode(&self, v: u8) -> u8 {
        if self.cmos[0x0b] & 0x04 != 0 {
            v
        } else {
            (v >> 4) * 10 + (v & 0xf)
        }
    }

    /// `unix`: the host's time in seconds.
    pub fn read(&mut self, port: u16, unix: i64) -> u8 {
        if port == 0x70 {
            return self.index;
        }
        let (y, mo, d, wd, h, mi, s) = civil(unix + self.offset);
        match self.index {
            0x00 => self.encode(s),
            0x02 => self.encode(mi),
            0x04 => {
                if self.cmos[0x0b] & 0x02 != 0 {
                    self.encode(h)
                } else {
                    let h12 = if h % 12 == 0 { 12 } else { h % 12 };
                    self.encode(h12) | if h >= 12 { 0x80 } else { 0 }
                }
            }
            0x06 => self.encode(wd),
            0x07 => self.encode(d),
            0x08 => self.encode(mo),
            0x09 => self.encode(y.rem_euclid(100) as u8),
            0x32 => self.encode(y.div_euclid(100).clamp(0, 99) as u8),
            0x0a => self.cmos[0x0a] & 0x7f, // never "update in progress"
            0x0c => core::mem::take(&mut self.cmos[0x0c]),
            i => self.cmos[usize::from(i & 0x7f)],
        }
    }

    pub fn write(&mut self, port: u16, v: u8, unix: i64) {
        if port == 0x70 {
            // Bit 7 is the NMI mask on a PC: not part of the index.
            self.index = v & 0x7f;
            return;
        }
        let (y, mo, d, _, h, mi, s) = civil(unix + self.offset);
        let set = |rtc: &mut Rtc, y: i64, mo: u8, d: u8, h: u8, mi: u8, s: u8| {
            let target = days_from_civil(y, mo, d) * 86400
                + i64::from(h) * 3600
                + i64::from(mi) * 60
                + i64::from(s);
            rtc.offset = target - unix;
        };
        match self.index {
            0x00 => set(self, y, mo, d, h, mi, self.decode(v).min(59)),
            0x02 => set(self, y, mo, d, h, self.decode(v).min(59), s),
            0x04 => set(self, y, mo, d, self.decode(v & 0x7f).min(23), mi, s),
            0x07 => set(self, y, mo, self.decode(v).clamp(1, 31), h, mi, s),
            0x08 => set(self, y, self.decode(v).clamp(1, 12), d, h, mi, s),
            0x09 => set(
                self,
                y - y.rem_euclid(100) + i64::from(self.decode(v) % 100),
                mo,
                d,
                h,
                mi,
                s,
            ),
            0x0c | 0x0d => {}
            0x0b => self.cmos[0x0b] = v,
            i => self.cmos[usize::from(i & 0x7f)] = v,
        }
    }
}

fn days_from_civil(y: i64, m: u8, d: u8) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-25 04:33:09 UTC, a Wednesday.
    const T: i64 = 1_795_581_189;

    fn get(r: &mut Rtc, i: u8) -> u8 {
        r.write(0x70, i, T);
        r.read(0x71, T)
    }

    #[test]
    fn calendar() {
        assert_eq!(civil(0), (1970, 1, 1, 5, 0, 0, 0));
        assert_eq!(civil(T), (2026, 11, 25, 4, 4, 33, 9));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 3, 0, 0, 0));
        assert_eq!(days_from_civil(2026, 11, 25), T.div_euclid(86400));
    }

    #[test]
    fn time_in_bcd_and_binary() {
        let mut r = Rtc::new(640, 63 * 1024, 64 << 20);
        assert_eq!(get(&mut r, 0x04), 0x04);
        assert_eq!(get(&mut r, 0x02), 0x33);
        assert_eq!(get(&mut r, 0x00), 0x09);
        assert_eq!(get(&mut r, 0x07), 0x25);
        assert_eq!(get(&mut r, 0x08), 0x11);
        assert_eq!(get(&mut r, 0x09), 0x26);
        assert_eq!(get(&mut r, 0x32), 0x20);
        assert_eq!(get(&mut r, 0x06), 0x04);
        assert_eq!(get(&mut r, 0x0d), 0x80);
        assert_eq!(get(&mut r, 0x0a) & 0x80, 0);
        r.write(0x70, 0x0b, T);
        r.write(0x71, 0x06, T); // binary, 24h
        assert_eq!(get(&mut r, 0x02), 33);
        assert_eq!(get(&mut r, 0x09), 26);
        // NMI-disable bit is not part of the index.
        assert_eq!(get(&mut r, 0x80 | 0x02), 33);
    }

    #[test]
    fn guest_sets_the_clock() {
        let mut r = Rtc::new(640, 63 * 1024, 64 << 20);
        r.write(0x70, 0x04, T);
        r.write(0x71, 0x17, T); // 17:00 BCD
        assert_eq!(get(&mut r, 0x04), 0x17);
        assert_eq!(get(&mut r, 0x02), 0x33);
        assert_eq!(get(&mut r, 0x07), 0x25);
    }

    #[test]
    fn memory_sizes() {
        let mut r = Rtc::new(640, 63 * 1024, 64 << 20);
        assert_eq!(
            u16::from(get(&mut r, 0x16)) << 8 | u16::from(get(&mut r, 0x15)),
            640
        );
        assert_eq!(
            u16::from(get(&mut r, 0x18)) << 8 | u16::from(get(&mut r, 0x17)),
            63 * 1024
        );
        assert_eq!(
            u16::from(get(&mut r, 0x35)) << 8 | u16::from(get(&mut r, 0x34)),
            768
        );
        // Status C reads clear.
        r.write(0x70, 0x0c, T);
        assert_eq!(r.read(0x71, T), 0);
    }

    /// The sizes SeaBIOS's qemu_preinit and qemu_cfg_e820 compute from CMOS.
    fn seabios_sizes(r: &mut Rtc) -> (u64, u64) {
        let mut g = |i| u64::from(get(r, i));
        let rs = (g(0x34) << 16) | (g(0x35) << 24);
        let below = if rs != 0 {
            rs + (16 << 20)
        } else {
            ((g(0x30) << 10) | (g(0x31) << 18)) + (1 << 20)
        };
        let high = (g(0x5b) << 16) | (g(0x5c) << 24) | (g(0x5d) << 32);
        (below, high)
    }

    #[test]
    fn ram_sizes_as_seabios_reads_them() {
        const MIB: u64 = 1 << 20;
        for (below, above) in [
            (8 * MIB, 0),
            (16 * MIB, 0),
            (64 * MIB, 0),
            (256 * MIB, 0),
            (3 * 1024 * MIB, 0),
            (3 * 1024 * MIB, 5 * 1024 * MIB),
            (2 * 1024 * MIB, 1 << 39),
        ] {
            let mut r = Rtc::new(0, 0, 0);
            r.set_ram(below, above);
            assert_eq!(
                seabios_sizes(&mut r),
                (below, above),
                "{below:#x} {above:#x}"
            );
            let sum: u16 = (0x10..0x2e).map(|i| u16::from(get(&mut r, i))).sum();
            assert_eq!(
                u16::from(get(&mut r, 0x2e)) << 8 | u16::from(get(&mut r, 0x2f)),
                sum
            );
        }
        // Sizes too large for the registers saturate instead of wrapping.
        let mut r = Rtc::new(0, 0, 0);
        r.set_ram(u64::MAX, u64::MAX);
        assert_eq!(get(&mut r, 0x35), 0xff);
        assert_eq!(get(&mut r, 0x5d), 0xff);
        r.set_cpus(4);
        assert_eq!(get(&mut r, 0x5f), 3);
        r.set_cpus(0);
        assert_eq!(get(&mut r, 0x5f), 0);
    }
}
