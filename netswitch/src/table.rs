//! The learned half of the forwarding table: source addresses seen on ports that learn,
//! each with the port and the time it was last seen. Bounded: when full, the entry seen
//! longest ago makes room; an entry older than the ageing time is never used.

use crate::frame::Mac;
use crate::PortId;
use alloc::vec::Vec;

#[derive(Clone, Copy, Debug)]
struct Entry {
    mac: Mac,
    port: PortId,
    seen: u64,
}

/// At most `capacity` entries, looked up by address. The table is small (hundreds), so a
/// linear scan is cheaper than a map and its memory is fixed when made.
#[derive(Debug)]
pub struct Table {
    entries: Vec<Entry>,
    capacity: usize,
    age: u64,
    /// Entries dropped to make room for a new address.
    pub evicted: u64,
}

impl Table {
    /// A table of at most `capacity` entries (at least one), each good for `age` time
    /// units (the caller's clock, e.g. milliseconds) after it was last seen.
    pub fn new(capacity: usize, age: u64) -> Table {
        let capacity = capacity.max(1);
        Table {
            entries: Vec::with_capacity(capacity),
            capacity,
            age,
            evicted: 0,
        }
    }

    fn fresh(&self, e: &Entry, now: u64) -> bool {
        now.saturating_sub(e.seen) <= self.age
    }

    /// The port `mac` was last seen on, if that was at most the ageing time ago.
    pub fn lookup(&self, mac: Mac, now: u64) -> Option<PortId> {
        self.entries
            .iter()
            .find(|e| e.mac == mac && self.fresh(e, now))
            .map(|e| e.port)
    }

    /// `mac` was seen on `port` at `now`.
    pub fn learn(&mut self, mac: Mac, port: PortId, now: u64) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.mac == mac) {
            e.port = port;
            e.seen = now;
            return;
        }
        self.expire(now);
        if self.entries.len() == self.capacity {
            let oldest = (0..self.entries.len()).min_by_key(|&i| self.entries[i].seen);
            if let Some(i) = oldest {
                self.entries.swap_remove(i);
                self.evicted += 1;
            }
        }
        self.entries.push(Entry {
            mac,
            port,
            seen: now,
        });
    }

    /// Drops the entries older than the ageing time.
    pub fn expire(&mut self, now: u64) {
        let age = self.age;
        self.entries.retain(|e| now.saturating_sub(e.seen) <= age);
    }

    /// Drops every entry that points at `port` (it left, or its address is now static).
    pub fn forget_port(&mut self, port: PortId) {
        self.entries.retain(|e| e.port != port);
    }

    /// Drops the entry for `mac`, if any.
    pub fn forget(&mut self, mac: Mac) {
        self.entries.retain(|e| e.mac != mac);
    }

    /// Entries held (fresh or not yet expired).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> Mac {
        Mac([2, 0, 0, 0, 0, n])
    }

    #[test]
    fn learns_moves_and_ages() {
        let mut t = Table::new(4, 100);
        t.learn(mac(1), PortId(0), 10);
        assert_eq!(t.lookup(mac(1), 110), Some(PortId(0)));
        assert_eq!(t.lookup(mac(1), 111), None, "aged out");
        t.learn(mac(1), PortId(2), 111);
        assert_eq!(t.lookup(mac(1), 150), Some(PortId(2)), "moved");
        assert_eq!(t.len(), 1);
        t.expire(1000);
        assert!(t.is_empty());
    }

    #[test]
    fn full_table_drops_the_oldest() {
        let mut t = Table::new(3, 1000);
        for n in 1..=3 {
            t.learn(mac(n), PortId(0), u64::from(n));
        }
        t.learn(mac(1), PortId(0), 10); // seen again: now the newest
        t.learn(mac(4), PortId(1), 11);
        assert_eq!(t.len(), 3);
        assert_eq!(t.evicted, 1);
        assert_eq!(t.lookup(mac(2), 11), None, "the oldest went");
        for n in [1, 3, 4] {
            assert!(t.lookup(mac(n), 11).is_some());
        }
        // Expired entries make room before anything fresh is evicted.
        let mut t = Table::new(2, 5);
        t.learn(mac(1), PortId(0), 0);
        t.learn(mac(2), PortId(0), 10);
        t.learn(mac(3), PortId(0), 11);
        assert_eq!(t.evicted, 0);
        assert_eq!(t.lookup(mac(2), 11), Some(PortId(0)));
    }

    #[test]
    fn forgetting_a_port() {
        let mut t = Table::new(8, 1000);
        t.learn(mac(1), PortId(0), 0);
        t.learn(mac(2), PortId(1), 0);
        t.forget_port(PortId(0));
        assert_eq!(t.lookup(mac(1), 0), None);
        assert_eq!(t.lookup(mac(2), 0), Some(PortId(1)));
        t.forget(mac(2));
        assert!(t.is_empty());
    }
}
