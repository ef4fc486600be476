//! The run's statistics: 9P round trips and events by exit reason, for --stats.

use crate::vmfs::Vmfs;
use std::collections::BTreeMap;

/// The reasons of console reads: those that brought output, and those that came back
/// empty (the VM stopped with all its output read).
pub const CONS: &str = "(cons)";
pub const CONS_EMPTY: &str = "(cons/empty)";

/// 9P round trips and exits, by exit reason.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Reason -> (events, round trips, latency-bound round trips). Round trips count the
    /// `wait` read that brought the exit and every request made while handling it, up to
    /// and including the `go`; latency-bound ones are those the loop waited for (the
    /// wait read and every request but pipelined ctl writes, which travel with it).
    pub by_reason: BTreeMap<String, (u64, u64, u64)>,
    /// Wall time of the run.
    pub elapsed: std::time::Duration,
    /// Bytes the virtio disks moved between image and guest.
    pub disk_bytes: u64,
}

impl Stats {
    pub fn total(&self) -> (u64, u64, u64) {
        self.by_reason
            .values()
            .fold((0, 0, 0), |a, v| (a.0 + v.0, a.1 + v.1, a.2 + v.2))
    }

    /// Round trips of console reads (with output and empty).
    pub fn console_trips(&self) -> u64 {
        [CONS, CONS_EMPTY]
            .iter()
            .filter_map(|k| self.by_reason.get(*k))
            .map(|r| r.1)
            .sum()
    }

    /// A table for --stats.
    pub fn report(&self) -> String {
        let mut s = format!(
            "{:<14} {:>10} {:>12} {:>9} {:>14} {:>9}\n",
            "exit", "count", "round trips", "per exit", "latency-bound", "per exit"
        );
        let per = |t: u64, n: u64| if n == 0 { 0.0 } else { t as f64 / n as f64 };
        let mut rows: Vec<_> = self.by_reason.iter().collect();
        rows.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then(a.0.cmp(b.0)));
        for (name, (n, t, l)) in rows {
            s.push_str(&format!(
                "{name:<14} {n:>10} {t:>12} {:>9.2} {l:>14} {:>9.2}\n",
                per(*t, *n),
                per(*l, *n)
            ));
        }
        let (n, t, l) = self.total();
        s.push_str(&format!(
            "{:<14} {n:>10} {t:>12} {:>9} {l:>14}\n",
            "total", ""
        ));
        if self.disk_bytes > 0 {
            let mb = self.disk_bytes as f64 / (1 << 20) as f64;
            let trips: u64 = ["io/virtio", crate::kdisk::QUEUE]
                .iter()
                .filter_map(|k| self.by_reason.get(*k))
                .map(|r| r.1)
                .sum();
            s.push_str(&format!(
                "virtio-blk: {mb:.2} MiB moved, {:.0} round trips per MiB (io/virtio exits, queue and buffer transfers; the kernel's queue disks' blkq reads and writes)\n",
                trips as f64 / mb
            ));
        }
        if !self.elapsed.is_zero() {
            s.push_str(&format!(
                "wall time {:.2} s, {:.2} ms per latency-bound round trip\n",
                self.elapsed.as_secs_f64(),
                self.elapsed.as_secs_f64() * 1e3 / l.max(1) as f64
            ));
        }
        s
    }
}

/// The VM handle's round-trip counters at the last accounting: what came since is the
/// next event's.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Marks {
    all: u64,
    blocking: u64,
}

impl Marks {
    pub(super) fn new(vm: &impl Vmfs) -> Marks {
        Marks {
            all: vm.round_trips(),
            blocking: vm.blocking_trips(),
        }
    }

    /// Counts `events` of `reason` and the round trips since the last call, with `extra`
    /// more that the VM handle does not see (a wait or cons read).
    pub(super) fn account(
        &mut self,
        stats: &mut Stats,
        vm: &impl Vmfs,
        reason: &str,
        events: u64,
        extra: u64,
    ) {
        let now = Marks::new(vm);
        let e = stats.by_reason.entry(reason.to_string()).or_default();
        e.0 += events;
        e.1 += now.all - self.all + extra;
        e.2 += now.blocking - self.blocking + extra;
        *self = now;
    }
}
