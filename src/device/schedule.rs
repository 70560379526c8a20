//! When each polled stream (a Modbus register map, a Dynamixel joint state) is next due.
//! A poll that overran its slot is counted as missed and skipped, never queued: catching
//! up would flood the bus with stale reads.

use crate::diagnostics::DeviceDiag;
use std::time::Duration;
use tokio::time::{sleep_until, Instant};

/// One stream's slot.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    next: Instant,
    interval: Duration,
}

impl Slot {
    /// Due at once, then every `interval`.
    pub fn new(interval: Duration) -> Slot {
        Slot {
            next: Instant::now(),
            interval,
        }
    }

    /// Due at once again (the port was reopened).
    pub fn restart(&mut self, now: Instant) {
        self.next = now;
    }

    pub fn is_due(&self, now: Instant) -> bool {
        self.next <= now
    }

    /// The poll finished at `done`: the next slot after it, each slot passed meanwhile
    /// counted in `diag` as a missed poll.
    pub fn done(&mut self, done: Instant, diag: &DeviceDiag) {
        self.next += self.interval;
        while self.next <= done {
            self.next += self.interval;
            diag.missed();
        }
    }
}

/// Sleeps until the first of `slots` is due, or forever when there is none. Only a sleep,
/// so dropping it (a write came first) loses nothing.
pub async fn first_due(slots: impl Iterator<Item = Slot>) {
    match slots.map(|s| s.next).min() {
        Some(t) => sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_overrun_poll_skips_its_missed_slots_and_counts_them() {
        let diag = DeviceDiag::polled("bus");
        let start = Instant::now();
        let mut s = Slot::new(Duration::from_millis(100));
        assert!(s.is_due(start));
        // Finished within its slot: next at +100 ms, nothing missed.
        s.done(start + Duration::from_millis(10), &diag);
        assert!(!s.is_due(start + Duration::from_millis(99)));
        assert!(s.is_due(start + Duration::from_millis(100)));
        assert_eq!(diag.missed_polls(), Some(0));
        // A poll that took 250 ms: the slots at +200 and +300 are skipped and counted.
        s.done(start + Duration::from_millis(350), &diag);
        assert_eq!(diag.missed_polls(), Some(2));
        assert!(s.is_due(start + Duration::from_millis(400)));
        assert!(!s.is_due(start + Duration::from_millis(399)));
    }
}
