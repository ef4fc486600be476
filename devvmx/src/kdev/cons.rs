//! When a `cons` read that waits on a running guest is answered. Every read is a round
//! trip and a guest prints a byte at a time, so while the guest is busy its output is
//! handed over in batches; once it goes idle (halts: a shell waiting for its input) what
//! it printed is handed over, so a typed command's echo comes back promptly. A stop for
//! the client changes nothing here (see `Vm::cons_read`).

/// Most bytes COM1 queues each way (guest output nobody read, client input the guest
/// has not read): beyond it the transmitter reads busy and `cons` writes are short.
pub const CONS_LIMIT: usize = 64 * 1024;

/// A waiting read is answered once this many bytes are queued (or the read's count)...
pub const CONS_BATCH: usize = 4096;

/// ... or once the guest has spent this long halted (guest ns, in total) since it
/// queued its newest byte: it waits for something, maybe for whoever reads its output...
pub const CONS_IDLE: u64 = 20_000_000;

/// ... or once the oldest queued byte is this old (guest ns): for a guest that prints
/// without halting.
pub const CONS_DELAY: u64 = 1_000_000_000;

/// The guest times the rule looks at.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Batch {
    /// When the oldest queued byte was queued.
    oldest: Option<u64>,
    /// Guest ns spent halted since the newest byte, before the current halt.
    idle: u64,
    /// When the current halt began.
    halt_at: Option<u64>,
}

impl Batch {
    /// The guest queued output at `now`.
    pub(crate) fn queued(&mut self, now: u64) {
        self.oldest.get_or_insert(now);
        self.idle = 0;
    }

    /// The guest halted at `now`.
    pub(crate) fn halt(&mut self, now: u64) {
        self.halt_at.get_or_insert(now);
    }

    /// The guest runs again at `now`.
    pub(crate) fn wake(&mut self, now: u64) {
        if let Some(t) = self.halt_at.take() {
            self.idle = self.idle.saturating_add(now.saturating_sub(t));
        }
    }

    /// Whether `queued` bytes are due for a read of `count` bytes at `now`.
    pub(crate) fn due(&self, queued: usize, count: usize, now: u64) -> bool {
        if queued >= CONS_BATCH.min(count) {
            return true;
        }
        let halted = self.halt_at.map_or(0, |t| now.saturating_sub(t));
        let aged = self
            .oldest
            .is_some_and(|t| now.saturating_sub(t) >= CONS_DELAY);
        queued > 0 && (aged || self.idle.saturating_add(halted) >= CONS_IDLE)
    }

    /// A read took output at `now`, leaving `left` bytes queued (now the oldest).
    pub(crate) fn taken(&mut self, left: usize, now: u64) {
        self.oldest = (left > 0).then_some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_or_the_read_count_is_due_at_once() {
        let b = Batch::default();
        assert!(!b.due(CONS_BATCH - 1, 8192, 0));
        assert!(b.due(CONS_BATCH, 8192, 0));
        assert!(b.due(10, 10, 0));
        assert!(b.due(0, 0, 0));
        assert!(!b.due(0, 8192, u64::MAX));
    }

    #[test]
    fn halted_time_since_the_newest_byte_adds_up() {
        let mut b = Batch::default();
        b.queued(0);
        b.halt(100);
        b.wake(100 + CONS_IDLE / 2);
        assert!(!b.due(1, 8192, CONS_IDLE));
        b.halt(CONS_IDLE);
        assert!(!b.due(1, 8192, CONS_IDLE + CONS_IDLE / 2 - 1));
        assert!(b.due(1, 8192, CONS_IDLE + CONS_IDLE / 2));
        // A new byte starts the count again.
        b.wake(CONS_IDLE * 2);
        b.queued(CONS_IDLE * 2);
        assert!(!b.due(2, 8192, CONS_IDLE * 2 + 1));
        // Age alone makes it due too.
        assert!(b.due(2, 8192, CONS_DELAY));
        b.taken(0, CONS_DELAY);
        assert!(!b.due(0, 8192, u64::MAX));
    }
}
