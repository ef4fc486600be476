//! A CPU's doorbell: the boot CPU posts requests by ticket and rings (a wake-up IPI); the
//! CPU that owns the mailbox serves every posted ticket when it wakes and says how far it
//! got. Neither side ever waits on the other: the poster checks `done` later, the server
//! halts when nothing is pending. Hardware-free, so the host tests it with threads.

use core::sync::atomic::{AtomicU64, Ordering};

pub struct Mailbox {
    /// The last ticket posted (tickets count from 1).
    posted: AtomicU64,
    /// The last ticket served.
    served: AtomicU64,
}

impl Mailbox {
    pub const fn new() -> Mailbox {
        Mailbox {
            posted: AtomicU64::new(0),
            served: AtomicU64::new(0),
        }
    }

    /// Posts a request: its ticket, for `done`. Requests posted before one is served are
    /// served together.
    pub fn post(&self) -> u64 {
        self.posted.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The owner's view: the newest ticket posted and not yet served.
    pub fn pending(&self) -> Option<u64> {
        let p = self.posted.load(Ordering::Acquire);
        (p != self.served.load(Ordering::Acquire)).then_some(p)
    }

    /// The owner has served every ticket up to `ticket` (from `pending`).
    pub fn serve(&self, ticket: u64) {
        self.served.fetch_max(ticket, Ordering::AcqRel);
    }

    /// Whether the request with `ticket` has been served.
    pub fn done(&self, ticket: u64) -> bool {
        self.served.load(Ordering::Acquire) >= ticket
    }
}

impl Default for Mailbox {
    fn default() -> Self {
        Self::new()
    }
}
