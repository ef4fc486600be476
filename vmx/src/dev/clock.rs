//! The guest's clock, for the devices here. #X hides from the guest the time it is
//! stopped for its client (its TSC offset), so devices run on the host's clock would
//! disagree with the guest's TSC: a guest calibrating its TSC against the PIT would count
//! a few of its own instructions over what the PIT calls 50 ms. With the hypervisor's
//! `clock` extension (devvmx/DEVIATIONS.md) every exit line carries the guest's clock,
//! and the devices run on it, as the in-kernel devices do:
//!
//! - at an exit or an `*ack`, exactly the time the line carries;
//! - while the guest runs, not past it: the host's clock says nothing of the guest's (a
//!   round trip is mostly time hidden from the guest; an emulator's guest time runs at
//!   its own rate). The hypervisor's `alarm` stops the guest for the tool at the
//!   devices' next deadline instead, so a guest that makes no exits still gets its
//!   timer interrupts, on time;
//! - while it halts here, on with the host's clock: a halted guest's time passes. The
//!   hypervisor moves the guest's clock on by that time before the next `go`
//!   (`advance NS`), so the guest's TSC and the devices agree again.
//!
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

    /// A notification (`*ack`) said the guest's clock is `t` at host time `host`; the
    /// guest did not stop, and the bound grows from there.
    pub fn seen(&mut self, t: u64, host: u64) {
        self.at = self.at.max(t);
        if let Some((_, halted)) = self.since {
            self.since = Some((host, halted));
        }
    }

    /// The guest runs from host time `host` (a `go`).
    pub fn run(&mut self, host: u64) {
        self.since = Some((host, false));
    }

    /// The guest halts here from host time `host`, waiting for an interrupt.
    pub fn halt(&mut self, host: u64) {
        self.since = Some((host, true));
    }

    /// The guest's clock at host time `host`: its last known time plus the host time
    /// since it resumed (while it halts here, that is the time it is given).
    pub fn bound(&self, host: u64) -> u64 {
        match self.since {
            Some((s, _)) => self.at.saturating_add(host.saturating_sub(s)),
            None => self.at,
        }
    }

    /// Where the devices' clock goes at host time `host`: while the guest halts here,
    /// on with the host's clock; else the guest's time at its last exit or notification
    /// (while it runs, the hypervisor's alarm stops it at the devices' next deadline).
    pub fn target(&self, host: u64) -> u64 {
        match self.since {
            Some((_, true)) => self.bound(host),
            _ => self.at,
        }
    }

    /// Host ns from `host` until the devices' `deadline` (guest time) is due while the
    /// guest halts here; None otherwise (stopped its clock does not move, running the
    /// hypervisor's alarm tells).
    pub fn wait(&self, host: u64, deadline: u64) -> Option<u64> {
        match self.since {
            Some((_, true)) => Some(deadline.saturating_sub(self.bound(host))),
            _ => None,
        }
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
    fn the_lines_set_the_clock_and_host_time_does_not() {
        let mut c = GuestClock::default();
        c.exit(5 * MS);
        // Stopped: host time does not move it.
        assert_eq!(c.target(100 * MS), 5 * MS);
        assert_eq!(c.wait(100 * MS, 6 * MS), None);
        // Running: nor does it (the round trip is mostly time the guest is stopped);
        // the hypervisor's alarm is what stops it at a deadline.
        c.run(100 * MS);
        assert_eq!(c.target(900 * MS), 5 * MS);
        assert_eq!(c.wait(900 * MS, 6 * MS), None);
        assert_eq!(c.catch_up(5 * MS), None);
        // A notification while it runs gives its time then.
        c.seen(7 * MS, 901 * MS);
        assert_eq!(c.target(950 * MS), 7 * MS);
        // An exit never takes the clock back (the advance's rounding).
        c.exit(7 * MS - 1);
        assert_eq!(c.target(0), 7 * MS);
        // A notification after a stop does not start it again.
        c.seen(9 * MS, 300 * MS);
        assert_eq!(c.target(400 * MS), 9 * MS);
    }

    #[test]
    fn a_halted_guests_time_passes() {
        let mut c = GuestClock::default();
        c.exit(2 * MS);
        c.halt(50 * MS);
        assert_eq!(c.target(53 * MS), 5 * MS);
        assert_eq!(c.wait(53 * MS, 10 * MS), Some(5 * MS));
        assert_eq!(c.target(58 * MS), 10 * MS);
        // The devices went to 10 ms: the guest is given the 8 ms before it runs.
        assert_eq!(c.catch_up(10 * MS), Some(8 * MS));
        assert_eq!(c.catch_up(10 * MS), None);
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
            m.advance(c.target(host), 0);
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
