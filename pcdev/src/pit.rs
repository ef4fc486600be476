//! The 8254 PIT (ports 0x40-0x43) and the port 0x61 bits it drives (channel 2 gate and
//! output, speaker). Counters are computed from elapsed time, not stepped: the exit loop
//! passes the current time in nanoseconds, asks [`Pit::deadline`] when channel 0 next
//! fires and calls [`Pit::advance`] to collect the IRQ 0 edges.

/// Input clock of the 8254, Hz.
pub const HZ: u64 = 1_193_182;
const NS: u64 = 1_000_000_000;

fn ticks_between(from: u64, to: u64) -> u64 {
    (u128::from(to.saturating_sub(from)) * u128::from(HZ) / u128::from(NS)) as u64
}

fn ns_for_ticks(t: u64) -> u64 {
    (u128::from(t) * u128::from(NS)).div_ceil(u128::from(HZ)) as u64
}

#[derive(Clone, Debug, Default)]
struct Channel {
    mode: u8,
    /// 1: LSB only, 2: MSB only, 3: LSB then MSB.
    access: u8,
    bcd: bool,
    /// Written count (0 means 65536).
    reload: u16,
    /// LSB already written, MSB next (access 3).
    write_hi: bool,
    read_hi: bool,
    latch: Option<u16>,
    latch_hi: bool,
    /// When counting began (count loaded and gate high); None while idle.
    start: Option<u64>,
    gate: bool,
    /// Periods (or the one terminal count) already turned into IRQ edges.
    fired: u64,
}

impl Channel {
    fn period(&self) -> u64 {
        if self.reload == 0 {
            65536
        } else {
            u64::from(self.reload)
        }
    }

    fn periodic(&self) -> bool {
        matches!(self.mode, 2 | 3)
    }

    /// Counter value at `now`.
    fn count(&self, now: u64) -> u16 {
        let Some(s) = self.start else {
            return self.reload;
        };
        let t = ticks_between(s, now);
        let p = self.period();
        match self.mode {
            2 => (p - t % p) as u16,
            // Square wave: counts down by two, twice per period.
            3 => ((p - (2 * t) % p) & !1) as u16,
            _ => (p.wrapping_sub(t) & 0xffff) as u16,
        }
    }

    /// Output pin at `now`.
    fn out(&self, now: u64) -> bool {
        let Some(s) = self.start else {
            // Mode 0 output is low after programming; other modes idle high.
            return self.mode != 0;
        };
        let t = ticks_between(s, now);
        let p = self.period();
        match self.mode {
            0 | 1 => t >= p,
            2 => t % p != p - 1,
            3 => t % p < p.div_ceil(2),
            _ => t != p,
        }
    }

    /// IRQ edges due by `now`: period boundaries for modes 2 and 3, the terminal count
    /// once for the one-shot modes.
    fn edges(&self, now: u64) -> u64 {
        let Some(s) = self.start else { return 0 };
        let t = ticks_between(s, now);
        if self.periodic() {
            t / self.period()
        } else {
            u64::from(t >= self.period())
        }
    }

    fn deadline(&self) -> Option<u64> {
        let s = self.start?;
        if !self.periodic() && self.fired >= 1 {
            return None;
        }
        Some(s + ns_for_ticks((self.fired + 1) * self.period()))
    }

    fn load(&mut self, now: u64) {
        self.fired = 0;
        self.start = if self.gate { Some(now) } else { None };
    }
}

#[derive(Clone, Debug)]
pub struct Pit {
    ch: [Channel; 3],
    /// Port 0x61 bits 0 (gate 2) and 1 (speaker data).
    port61: u8,
    refresh: bool,
}

impl Default for Pit {
    fn default() -> Pit {
        Pit::new()
    }
}

impl Pit {
    pub fn new() -> Pit {
        let mut ch: [Channel; 3] = Default::default();
        ch[0].gate = true;
        ch[1].gate = true;
        Pit {
            ch,
            port61: 0,
            refresh: false,
        }
    }

    pub fn read(&mut self, port: u16, now: u64) -> u8 {
        match port {
            0x40..=0x42 => {
                let c = &mut self.ch[usize::from(port - 0x40)];
                if let Some(l) = c.latch {
                    let v = if c.latch_hi { (l >> 8) as u8 } else { l as u8 };
                    if c.access != 3 || c.latch_hi {
                        c.latch = None;
                        c.latch_hi = false;
                    } else {
                        c.latch_hi = true;
                    }
                    return v;
                }
                let n = c.count(now);
                match c.access {
                    1 => n as u8,
                    2 => (n >> 8) as u8,
                    _ => {
                        c.read_hi = !c.read_hi;
                        if c.read_hi {
                            n as u8
                        } else {
                            (n >> 8) as u8
                        }
                    }
                }
            }
            0x61 => {
                // Bit 4 toggles like the DRAM refresh request, bit 5 is channel 2's output.
                self.refresh = !self.refresh;
                self.port61 & 3 | u8::from(self.refresh) << 4 | u8::from(self.ch[2].out(now)) << 5
            }
            _ => 0xff,
        }
    }

    pub fn write(&mut self, port: u16, v: u8, now: u64) {
        match port {
            0x40..=0x42 => {
                let c = &mut self.ch[usize::from(port - 0x40)];
                match c.access {
                    1 => c.reload = v.into(),
                    2 => c.reload = u16::from(v) << 8,
                    _ => {
                        if c.write_hi {
                            c.reload = c.reload & 0xff | u16::from(v) << 8;
                        } else {
                            c.reload = c.reload & 0xff00 | u16::from(v);
                        }
                        c.write_hi = !c.write_hi;
                        if c.write_hi {
                            // Mode 0 stops counting between the two bytes.
                            if c.mode == 0 {
                                c.start = None;
                            }
                            return;
                        }
                    }
                }
                if c.bcd {
                    c.reload = from_bcd(c.reload);
                }
                c.load(now);
            }
            0x43 => {
                let sel = usize::from(v >> 6);
                if sel == 3 {
                    // Read-back command: latch the counts of the selected channels.
                    if v & 0x20 == 0 {
                        for i in 0..3 {
                            if v & (2 << i) != 0 {
                                let n = self.ch[i].count(now);
                                self.ch[i].latch.get_or_insert(n);
                            }
                        }
                    }
                    return;
                }
                let c = &mut self.ch[sel];
                let access = v >> 4 & 3;
                if access == 0 {
                    let n = c.count(now);
                    c.latch.get_or_insert(n);
                    c.latch_hi = false;
                    return;
                }
                let mode = v >> 1 & 7;
                *c = Channel {
                    mode: if mode >= 6 { mode - 4 } else { mode },
                    access,
                    bcd: v & 1 != 0,
                    gate: c.gate,
                    ..Channel::default()
                };
            }
            0x61 => {
                let gate = v & 1 != 0;
                let c = &mut self.ch[2];
                if gate && !c.gate {
                    // A rising gate (re)starts a programmed count.
                    c.gate = true;
                    if c.access != 0 {
                        c.load(now);
                    }
                } else if !gate {
                    c.gate = false;
                    c.start = None;
                }
                self.port61 = v & 3;
            }
            _ => {}
        }
    }

    /// When channel 0 next raises IRQ 0, if it will.
    pub fn deadline(&self) -> Option<u64> {
        self.ch[0].deadline()
    }

    /// Whether IRQ 0 got an edge since the last call (several missed periods coalesce,
    /// as they do on a real PIC).
    pub fn advance(&mut self, now: u64) -> bool {
        let c = &mut self.ch[0];
        let e = c.edges(now);
        if e > c.fired {
            c.fired = e;
            true
        } else {
            false
        }
    }
}

fn from_bcd(v: u16) -> u16 {
    (v >> 12 & 0xf) * 1000 + (v >> 8 & 0xf) * 100 + (v >> 4 & 0xf) * 10 + (v & 0xf)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn rate_generator_on_channel_0() {
        let mut p = Pit::new();
        p.write(0x43, 0x34, 0); // ch0, lsb+msb, mode 2
        p.write(0x40, (11932 & 0xff) as u8, 0);
        assert_eq!(p.deadline(), None); // not counting until the MSB
        p.write(0x40, (11932 >> 8) as u8, 0);
        let d = p.deadline().unwrap();
        assert!((9_999_000..10_001_000).contains(&d), "{d}");
        assert!(!p.advance(5 * MS));
        assert!(p.advance(10 * MS + 1000));
        assert!(!p.advance(10 * MS + 2000));
        // Missed periods coalesce into one edge.
        assert!(p.advance(55 * MS));
        assert!(!p.advance(56 * MS));
        let d2 = p.deadline().unwrap();
        assert!((59_990_000..60_010_000).contains(&d2), "{d2}");
    }

    #[test]
    fn latch_and_read_counts() {
        let mut p = Pit::new();
        p.write(0x43, 0x34, 0);
        p.write(0x40, 0x00, 0);
        // Count 4096; 1 ms later 1193 ticks have gone: 4096 - 1193 = 2903.
        p.write(0x40, 0x10, 0);
        p.write(0x43, 0x00, MS); // latch ch0
        let lo = p.read(0x40, 2 * MS);
        let hi = p.read(0x40, 3 * MS);
        assert_eq!(u16::from(hi) << 8 | u16::from(lo), 4096 - 1193);
        // Unlatched reads follow time.
        let lo = p.read(0x40, 2 * MS);
        let hi = p.read(0x40, 2 * MS);
        assert_eq!(u16::from(hi) << 8 | u16::from(lo), 4096 - 2386);
    }

    #[test]
    fn one_shot_on_channel_0() {
        let mut p = Pit::new();
        p.write(0x43, 0x30, 0); // mode 0
        p.write(0x40, 0xe8, 0);
        p.write(0x40, 0x03, 0); // 1000 ticks, ~838 us
        assert!(!p.advance(800_000));
        assert!(p.advance(900_000));
        assert_eq!(p.deadline(), None);
        assert!(!p.advance(100 * MS));
    }

    #[test]
    fn channel_2_gate_and_output_on_port_61() {
        // Linux's PIT calibration: gate on, mode 0 on channel 2, poll bit 5 of 0x61.
        let mut p = Pit::new();
        p.write(0x61, 0x01, 0);
        p.write(0x43, 0xb0, 0);
        p.write(0x42, 0xff, 0);
        p.write(0x42, 0xff, 0);
        assert_eq!(p.read(0x61, MS) & 0x20, 0);
        assert_eq!(p.read(0x61, 60 * MS) & 0x20, 0x20);
        assert_eq!(p.read(0x61, 60 * MS) & 0x03, 0x01);
        // Refresh bit toggles on each read.
        let a = p.read(0x61, 0) & 0x10;
        let b = p.read(0x61, 0) & 0x10;
        assert_ne!(a, b);
        // Gate off: channel 2 stops; not channel 0's business.
        p.write(0x61, 0x00, 61 * MS);
        assert_eq!(p.deadline(), None);
    }

    #[test]
    fn readback_and_bcd() {
        let mut p = Pit::new();
        p.write(0x43, 0x31, 0); // mode 0, BCD
        p.write(0x40, 0x00, 0);
        p.write(0x40, 0x10, 0); // BCD 1000
        p.write(0x43, 0xc2, 0); // read-back: latch count of ch0
        assert_eq!(p.read(0x40, 5 * MS), 1000u16 as u8);
        assert_eq!(p.read(0x40, 5 * MS), (1000u16 >> 8) as u8);
    }
}
