//! The guest's clock, for the devices here. #X hides from the guest the time it is
//! stopped for its client (its TSC offset), so devices run on the host's clock would
//! disagree with the guest's TSC: a guest calibrating its TSC against the PIT would count
//! a few of its own instructions over what the PIT calls 50 ms. With the hypervisor's
//! `clock` extension (devvmx/DEVIATIONS.md) every exit line carries the guest's clock,
//! and the devices run on it, as the in-kernel devices do:
//!
//! - at an exit, exactly the time the line carries;
//! - while the guest runs, not past it: but a timer due by then (the latest the guest's
//!   clock can be is its time at the `go` plus the host time since, as it runs no faster
//!   than the host's) is raised at its deadline, so a guest that makes no exits still
//!   gets its timer interrupts;
//! - while it halts here, with the host's clock: a halted guest's time passes.
//!
//! Before the next `go` the hypervisor moves the guest's clock on (`advance NS`) by what
//! the devices ran ahead of it, so the guest's TSC and the devices agree again.
//! Pure: host time comes in as numbers.

/// The guest's clock as the exit lines tell it, between exits estimated from the host's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestClock {
    /// The guest's clock (ns) at its last exit, or as last moved on by `advance`.
    at: u64,
    /// Since when (host ns) the guest has run (false) or halted here (true); None while
    /// it is stopped for the tool.
    since: Option<(u64, bool)>,
}

impl GuestClock {
    /// An exit line said the guest's clock is `t`; the guest is stopped.
    pub fn exit(&mut self, t: u64) {
        self.at = self.at.max(t);
        self.since = None;
    }

    /// The guest runs from host time `host` (a `go`).
    pub fn run(&mut self, host: u64) {
        self.since = Some((host, false));
    }

    /// The guest halts here from host time `host`, waiting for an interrupt.
    pub fn halt(&mut self, host: u64) {
        self.since = Some((host, true));
    }

    /// The latest the guest's clock can be at host time `host`.
    pub fn bound(&self, host: u64) -> u64 {
        match self.since {
            Some((s, _)) => self.at.saturating_add(host.saturating_sub(s)),
            None => self.at,
        }
    }

    /// Where the devices' clock goes at host time `host`, given their next deadline:
    /// the guest's time when it is stopped, the bound while it halts, and while it runs
    /// the deadline once the bound has passed it (else no further than the last exit).
    pub fn target(&self, host: u64, deadline: Option<u64>) -> u64 {
        let bound = self.bound(host);
        match self.since {
            Some((_, true)) => bound,
            Some((_, false)) => match deadline {
                Some(d) if d <= bound => d,
                _ => self.at,
            },
            None => self.at,
        }
    }

    /// Host ns from `host` until the devices' `deadline` (guest time) may be due; None
    /// while the guest is stopped (its clock does not move).
    pub fn wait(&self, host: u64, deadline: u64) -> Option<u64> {
        self.since
            .map(|_| deadline.saturating_sub(self.bound(host)))
    }

    /// Before a `go`: how far the devices' clock `now` ran ahead of the guest's, which
    /// the hypervisor is to add to it (`advance NS`); the guest's clock is then `now`.
    pub fn catch_up(&mut self, now: u64) -> Option<u64> {
        let d = now.checked_sub(self.at).filter(|d| *d > 0)?;
        self.at = now;
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::Machine;
    use crate::layout::Layout;

    const MS: u64 = 1_000_000;

    #[test]
    fn exits_are_exact_and_the_run_only_bounds() {
        let mut c = GuestClock::default();
        c.exit(5 * MS);
        // Stopped: host time does not move it.
        assert_eq!(c.target(100 * MS, Some(6 * MS)), 5 * MS);
        assert_eq!(c.wait(100 * MS, 6 * MS), None);
        c.run(100 * MS);
        // Running: the bound grows with the host's clock, the devices stay put...
        assert_eq!(c.bound(100 * MS + 300_000), 5 * MS + 300_000);
        assert_eq!(c.target(100 * MS + 300_000, Some(6 * MS)), 5 * MS);
        assert_eq!(c.wait(100 * MS + 300_000, 6 * MS), Some(700_000));
        // ...until a deadline is due, which they reach and no further.
        assert_eq!(c.target(102 * MS, Some(6 * MS)), 6 * MS);
        assert_eq!(c.target(102 * MS, None), 5 * MS);
        // The next exit says less time passed: the devices ran 0.6 ms ahead, which
        // the guest's clock is given before it runs again.
        c.exit(5 * MS + 400_000);
        assert_eq!(c.catch_up(6 * MS), Some(600_000));
        assert_eq!(c.catch_up(6 * MS), None);
        // An exit never takes the clock back (the advance's rounding).
        c.exit(6 * MS - 1);
        assert_eq!(c.target(0, None), 6 * MS);
    }

    #[test]
    fn a_halted_guests_time_passes() {
        let mut c = GuestClock::default();
        c.exit(2 * MS);
        c.halt(50 * MS);
        assert_eq!(c.target(53 * MS, Some(10 * MS)), 5 * MS);
        assert_eq!(c.wait(53 * MS, 10 * MS), Some(5 * MS));
        assert_eq!(c.target(58 * MS, Some(10 * MS)), 10 * MS);
        assert_eq!(c.catch_up(10 * MS), Some(8 * MS));
    }

    /// memtest's calibration: PIT channel 2 counts 50 ms (mode 0, gate on through port
    /// 0x61) while the guest polls port 0x61 for the output. On the guest's clock the
    /// output rises after 50 ms of guest time, however long the polls took the host.
    #[test]
    fn the_pit_counts_guest_time() {
        let mut m = Machine::new(&Layout::new(16 << 20).unwrap());
        let mut c = GuestClock::default();
        let mut host = 0;
        let mut at = |m: &mut Machine, c: &mut GuestClock, guest: u64| {
            // Each poll is a round trip of 2 ms on the host.
            host += 2 * MS;
            c.exit(guest);
            m.advance(c.target(host, m.deadline()), 0);
            c.run(host);
        };
        at(&mut m, &mut c, 1000);
        m.io_out(0x61, 1, 1);
        m.io_out(0x43, 1, 0xb0);
        // 59,659 PIT ticks of 1/1.193182 MHz: 50 ms.
        m.io_out(0x42, 1, 0x0b);
        m.io_out(0x42, 1, 0xe9);
        let mut polls = 0;
        let mut guest = 1000;
        while m.io_in(0x61, 1) & 0x20 == 0 {
            polls += 1;
            guest += 25_000;
            at(&mut m, &mut c, guest);
        }
        // 50 ms of guest time in 25 us steps: 2,000 polls (4 s on the host).
        assert!((1999..=2001).contains(&polls), "{polls}");
        assert!((50 * MS..50 * MS + 30_000).contains(&m.now), "{}", m.now);
    }
}
