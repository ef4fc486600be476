//! Interrupt pacing: keeps interrupts from starving the code they interrupt. Once the
//! guest ends an interrupt (its EOI), the next one waits as long again as that one took
//! from acceptance (`*ack`) to its end, at least a millisecond, unless the guest goes
//! idle (hlt) first.
//!
//! Over a slow link an interrupt handler takes longer than a timer period: posting the
//! next tick as soon as the handler ends its interrupt would inject it at the handler's
//! iret, again and again, and the interrupted code would never run. On the guest's clock
//! the hold is in host time: a handler costs round trips (its port accesses) that the
//! guest's time does not see, and with a tick every few ms of its own work the guest
//! would do little but take ticks over a slow link. The PIT's counts stay on the guest's
//! time; only the interrupt waits. Withdrawing a posted interrupt is never held.

/// A millisecond in ns: the shortest interrupt hold.
const MS: u64 = 1_000_000;

/// What the exit loop tells the pacing about an exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// The guest accepted an interrupt (`*ack`).
    Ack,
    /// The guest halted: nothing to protect.
    Halt,
    /// Any other exit.
    Other,
}

/// The hold on new interrupts, on the devices' clock and (with the guest's clock) on the
/// host's.
#[derive(Clone, Debug, Default)]
pub struct Pace {
    /// No new interrupt is posted before this time (ns, the devices' clock).
    until: u64,
    /// On the guest's clock: the host time the hold ends (0: none).
    host_until: u64,
    /// When the guest last accepted an interrupt: devices' and host time.
    acked: Option<(u64, u64)>,
}

impl Pace {
    /// Posts no new interrupt before `until` (ns, the devices' clock).
    pub fn hold(&mut self, until: u64) {
        self.until = until;
    }

    /// Lifts a hold (the guest is idle: nothing to protect).
    pub fn release(&mut self) {
        self.until = 0;
    }

    /// Whether a new interrupt must wait at `now` (the devices' clock).
    pub fn holds(&self, now: u64) -> bool {
        now < self.until
    }

    /// When the hold on the devices' clock ends.
    pub fn until(&self) -> u64 {
        self.until
    }

    /// On the guest's clock: the host time a hold ends, if one is on.
    pub fn host_hold(&self) -> Option<u64> {
        (self.host_until > 0).then_some(self.host_until)
    }

    /// Ends a host-time hold that is over at `host`; true when one ended.
    pub fn expire(&mut self, host: u64) -> bool {
        if self.host_until > 0 && host >= self.host_until {
            self.host_until = 0;
            self.release();
            return true;
        }
        false
    }

    /// After an exit at `now` (devices' clock) and `host` (host clock): `eoi` says the
    /// guest ended an interrupt since the last exit.
    pub fn exit(&mut self, seen: Seen, eoi: bool, now: u64, host: u64, on_guest_clock: bool) {
        match seen {
            Seen::Ack => self.acked = Some((now, host)),
            Seen::Halt => {
                self.release();
                self.host_until = 0;
            }
            Seen::Other => {}
        }
        if !eoi {
            return;
        }
        match (self.acked.take(), on_guest_clock) {
            (Some((a, _)), false) => self.hold(now + now.saturating_sub(a).max(MS)),
            (Some((_, ah)), true) => {
                self.host_until = host + host.saturating_sub(ah).max(MS);
                self.hold(u64::MAX);
            }
            (None, _) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupt_holds_the_next_as_long_as_it_took() {
        let mut p = Pace::default();
        p.exit(Seen::Ack, false, 10 * MS, 0, false);
        p.exit(Seen::Other, false, 12 * MS, 0, false);
        assert!(!p.holds(12 * MS));
        // Ended 3 ms after it was accepted: the next waits 3 ms.
        p.exit(Seen::Other, true, 13 * MS, 0, false);
        assert!(p.holds(15 * MS) && !p.holds(16 * MS));
        // An EOI with no acceptance since holds nothing new; at least a millisecond.
        p.release();
        p.exit(Seen::Other, true, 20 * MS, 0, false);
        assert!(!p.holds(20 * MS));
        p.exit(Seen::Ack, false, 20 * MS, 0, false);
        p.exit(Seen::Other, true, 20 * MS, 0, false);
        assert_eq!(p.until(), 21 * MS);
        // A halt lifts it.
        p.exit(Seen::Halt, false, 20 * MS, 0, false);
        assert!(!p.holds(20 * MS));
    }

    #[test]
    fn on_the_guests_clock_the_hold_is_in_host_time() {
        let mut p = Pace::default();
        p.exit(Seen::Ack, false, 5, 100 * MS, true);
        p.exit(Seen::Other, true, 6, 104 * MS, true);
        assert_eq!(p.host_hold(), Some(108 * MS));
        assert!(p.holds(u64::MAX - 1));
        assert!(!p.expire(107 * MS));
        assert!(p.expire(108 * MS));
        assert_eq!(p.host_hold(), None);
        assert!(!p.holds(6));
        p.exit(Seen::Ack, false, 7, 110 * MS, true);
        p.exit(Seen::Other, true, 8, 111 * MS, true);
        p.exit(Seen::Halt, false, 9, 112 * MS, true);
        assert_eq!(p.host_hold(), None);
        assert!(!p.holds(9));
    }
}
