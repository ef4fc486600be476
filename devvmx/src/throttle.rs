//! What a wrong secret costs: the policy that slows guessing of the owner's secret over the
//! network (see devvmx/DEVIATIONS.md, "The owner's secret over the network"). Pure
//! bookkeeping: the caller passes the time in (milliseconds on any clock that does not go
//! back), so the host tests drive it and the kernel supplies its clock.
//!
//! Every failure on a connection, and from a source address, counts; the reply to the
//! n-th failure waits `BASE_MS << (n - 1)`, at most `CAP_MS`, where n is the larger of the
//! connection's and the address's counts. Replies to one address go out one after another:
//! a failure's delay starts when the address's previous failure was answered, so guesses
//! on parallel connections wait in line. Each `QUIET_MS` without a failure takes one off
//! a count. A right secret adds nothing and clears its connection's count; it waits only
//! for replies already scheduled for its address (so it is answered no earlier than the
//! wrong guesses before it). Addresses live in a table of `SLOTS` entries; a new address
//! evicts the one whose last failure is oldest.

use alloc::vec::Vec;
use core::net::IpAddr;

/// The first failure's delay; each further one doubles it.
pub const BASE_MS: u64 = 16;
/// The longest delay (reached at the 9th failure).
pub const CAP_MS: u64 = 4096;
/// Quiet time that takes one failure off a count.
pub const QUIET_MS: u64 = 10_000;
/// Source addresses remembered.
pub const SLOTS: usize = 64;

/// The failures counted against one connection or one address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Strikes {
    failures: u32,
    /// When the last failure was counted (decay runs from here).
    last: u64,
    /// When the last reply scheduled for it goes out.
    until: u64,
}

impl Strikes {
    /// Takes off one failure per whole quiet period since the last.
    fn decay(&mut self, now: u64) {
        let periods = now.saturating_sub(self.last) / QUIET_MS;
        if periods > 0 {
            self.failures = self
                .failures
                .saturating_sub(u32::try_from(periods).unwrap_or(u32::MAX));
            self.last += periods * QUIET_MS;
        }
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// When an owner's attach may be answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The time its reply goes out (`now` or later).
    pub at: u64,
    /// For a failure, its number (the larger count); 0 for a right secret.
    pub failures: u32,
    /// For a failure, the delay it added.
    pub delay: u64,
}

impl Verdict {
    /// Is this failure worth a log line? The first 16, then every 64th: a guesser cannot
    /// flood the log.
    pub fn worth_logging(&self) -> bool {
        self.failures > 0 && (self.failures <= 16 || self.failures.is_multiple_of(64))
    }
}

/// The delay of the n-th failure.
pub fn delay(n: u32) -> u64 {
    match n {
        0 => 0,
        n => BASE_MS.checked_shl(n - 1).unwrap_or(CAP_MS).min(CAP_MS),
    }
}

/// The source addresses' counts: at most `SLOTS` of them.
#[derive(Default)]
pub struct Throttle {
    table: Vec<(IpAddr, Strikes)>,
}

impl Throttle {
    pub fn new() -> Self {
        Self::default()
    }

    /// Addresses remembered now.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The failures counted against `addr` at `now`.
    pub fn failures(&mut self, addr: IpAddr, now: u64) -> u32 {
        self.find(addr).map_or(0, |i| {
            let s = &mut self.table[i].1;
            s.decay(now);
            s.failures
        })
    }

    fn find(&self, addr: IpAddr) -> Option<usize> {
        self.table.iter().position(|(a, _)| *a == addr)
    }

    /// The entry for `addr`, made (evicting the oldest) if it has none.
    fn entry(&mut self, addr: IpAddr) -> &mut Strikes {
        let i = match self.find(addr) {
            Some(i) => i,
            None if self.table.len() < SLOTS => {
                self.table.push((addr, Strikes::default()));
                self.table.len() - 1
            }
            None => {
                let oldest = (0..self.table.len())
                    .min_by_key(|&i| self.table[i].1.last)
                    .unwrap_or(0);
                self.table[oldest] = (addr, Strikes::default());
                oldest
            }
        };
        &mut self.table[i].1
    }

    /// An owner's attach that presented a secret, right (`ok`) or wrong, on connection
    /// `conn` from `addr` (None: a link with no address) at `now`: when to answer it.
    pub fn verdict(
        &mut self,
        conn: &mut Strikes,
        addr: Option<IpAddr>,
        ok: bool,
        now: u64,
    ) -> Verdict {
        conn.decay(now);
        let mut src = match addr {
            Some(a) if !ok => Some(self.entry(a)),
            Some(a) => self.find(a).map(|i| &mut self.table[i].1),
            None => None,
        };
        if let Some(s) = src.as_deref_mut() {
            s.decay(now);
        }
        let after = now
            .max(conn.until)
            .max(src.as_deref().map_or(0, |s| s.until));
        if ok {
            conn.failures = 0;
            return Verdict {
                at: after,
                failures: 0,
                delay: 0,
            };
        }
        conn.failures = conn.failures.saturating_add(1);
        let mut n = conn.failures;
        if let Some(s) = src.as_deref_mut() {
            s.failures = s.failures.saturating_add(1);
            n = n.max(s.failures);
        }
        let delay = delay(n);
        let at = after + delay;
        for s in core::iter::once(conn).chain(src) {
            s.last = now;
            s.until = at;
        }
        Verdict {
            at,
            failures: n,
            delay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(10, 0, 2, n)))
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let d: Vec<u64> = (0..12).map(delay).collect();
        assert_eq!(
            d,
            [0, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 4096, 4096]
        );
        assert_eq!(delay(u32::MAX), CAP_MS);
    }

    /// Guesses on one connection, each sent when the last was answered: the n-th waits
    /// `delay(n)`, so n of them take the sum of the delays.
    #[test]
    fn a_burst_on_one_connection_waits_the_sum() {
        let mut t = Throttle::new();
        let mut c = Strikes::default();
        let mut now = 1000;
        for n in 1..=10 {
            let v = t.verdict(&mut c, ip(2), false, now);
            assert_eq!(
                v,
                Verdict {
                    at: now + delay(n),
                    failures: n,
                    delay: delay(n)
                }
            );
            now = v.at;
        }
        assert_eq!(now - 1000, (1..=10).map(delay).sum::<u64>());
        // The right secret, once the last wrong one is answered: no delay, and the
        // connection's count is cleared (the address's stays, decaying).
        let v = t.verdict(&mut c, ip(2), true, now);
        assert_eq!(
            v,
            Verdict {
                at: now,
                failures: 0,
                delay: 0
            }
        );
        assert_eq!(c.failures(), 0);
        assert_eq!(t.failures(ip(2).unwrap(), now), 10);
    }

    /// Guesses on parallel connections from one address wait in line; the right secret
    /// sent meanwhile is answered once those before it are.
    #[test]
    fn parallel_connections_from_one_address_wait_in_line() {
        let mut t = Throttle::new();
        let mut conns = [Strikes::default(); 4];
        let mut at = 0;
        for (n, c) in (1..).zip(conns.iter_mut()) {
            let v = t.verdict(c, ip(2), false, 5);
            at += delay(n);
            assert_eq!(v.at, 5 + at, "failure {n}");
            assert_eq!(v.failures, n);
        }
        let mut fresh = Strikes::default();
        assert_eq!(t.verdict(&mut fresh, ip(2), true, 6).at, 5 + at);
        // Another address is not held up, and a right secret there is answered at once.
        assert_eq!(t.verdict(&mut fresh, ip(3), true, 6).at, 6);
        let mut other = Strikes::default();
        assert_eq!(t.verdict(&mut other, ip(3), false, 6).at, 6 + BASE_MS);
    }

    /// The connection's own count grows even when its address's entry was evicted, and a
    /// link with no address still counts per connection.
    #[test]
    fn the_connection_counts_too() {
        let mut t = Throttle::new();
        let mut c = Strikes::default();
        let mut now = 0;
        for n in 1..=3 {
            now = t.verdict(&mut c, None, false, now).at;
            assert_eq!(c.failures(), n);
        }
        assert!(t.is_empty(), "no address, no entry");
        let v = t.verdict(&mut c, ip(9), false, now);
        assert_eq!((v.failures, v.delay), (4, delay(4)));
    }

    #[test]
    fn quiet_time_takes_failures_off() {
        let mut t = Throttle::new();
        let mut c = Strikes::default();
        let mut now = 0;
        for _ in 0..5 {
            now = t.verdict(&mut c, ip(2), false, now).at;
        }
        let a = ip(2).unwrap();
        let last = now - delay(5);
        assert_eq!(t.failures(a, last + QUIET_MS - 1), 5);
        assert_eq!(t.failures(a, last + 2 * QUIET_MS), 3);
        // A new connection after the quiet: the next failure is the 4th.
        let mut c2 = Strikes::default();
        let v = t.verdict(&mut c2, ip(2), false, last + 2 * QUIET_MS);
        assert_eq!(v.failures, 4);
        assert_eq!(t.failures(a, last + 100 * QUIET_MS), 0);
    }

    /// The table holds `SLOTS` addresses; a new one evicts the one whose last failure is
    /// oldest. Right secrets take no slot.
    #[test]
    fn the_table_is_bounded() {
        let mut t = Throttle::new();
        for i in 0..SLOTS as u32 + 10 {
            let a = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            t.verdict(&mut Strikes::default(), Some(a), true, u64::from(i));
            t.verdict(&mut Strikes::default(), Some(a), false, u64::from(i));
            assert!(t.len() <= SLOTS);
        }
        assert_eq!(t.len(), SLOTS);
        let first = IpAddr::V4(Ipv4Addr::from(0x0a00_0000));
        let last = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + SLOTS as u32 + 9));
        assert_eq!(t.failures(first, 100), 0, "the oldest was evicted");
        assert_eq!(t.failures(last, 100), 1);
    }

    #[test]
    fn logging_is_bounded() {
        let v = |failures| Verdict {
            at: 0,
            failures,
            delay: 0,
        };
        assert!(!v(0).worth_logging());
        assert!((1..=16).all(|n| v(n).worth_logging()));
        assert!(!v(17).worth_logging());
        assert!(v(64).worth_logging());
        assert_eq!(
            (1..=6400).filter(|&n| v(n).worth_logging()).count(),
            16 + 100
        );
    }
}
