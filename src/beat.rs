//! The engine loop's heartbeat, which `/readyz` reads: a loop that stopped going round (wedged on
//! a lock, a bug, a task that never returns) makes the service not-ready even while SQLite still
//! answers queries.

use crate::clock::Timestamp;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// The time of the loop's latest iteration, shared between the engine and the API.
#[derive(Clone, Debug, Default)]
pub struct Beat(Arc<AtomicI64>);

/// No iteration yet.
const NEVER: i64 = 0;

impl Beat {
    /// Records an iteration at `now`.
    pub fn beat(&self, now: Timestamp) {
        self.0
            .store(now.timestamp_micros().max(NEVER + 1), Ordering::Release);
    }

    /// The latest iteration, if any.
    pub fn last(&self) -> Option<Timestamp> {
        match self.0.load(Ordering::Acquire) {
            NEVER => None,
            us => chrono::DateTime::from_timestamp_micros(us),
        }
    }

    /// Why the loop counts as stalled at `now`, if it does: no iteration for longer than
    /// `bound` (an iteration that has not happened yet counts from `started`).
    pub fn stalled(&self, now: Timestamp, started: Timestamp, bound: Duration) -> Option<String> {
        let last = self.last().unwrap_or(started);
        let silent = (now - last).to_std().unwrap_or_default();
        (silent > bound).then(|| {
            format!(
                "the engine loop has made no progress for {}s (bound {}s)",
                silent.as_secs(),
                bound.as_secs()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock, SystemClock};

    #[test]
    fn a_loop_is_stalled_only_once_it_has_been_silent_longer_than_the_bound() {
        let clock = ManualClock::new(SystemClock.now());
        let started = clock.now();
        let beat = Beat::default();
        let bound = Duration::from_secs(10);
        assert_eq!(beat.stalled(clock.now(), started, bound), None);
        clock.advance(Duration::from_secs(11));
        assert!(beat.stalled(clock.now(), started, bound).is_some());
        beat.beat(clock.now());
        assert_eq!(beat.last(), Some(clock.now()));
        clock.advance(Duration::from_secs(10));
        assert_eq!(beat.stalled(clock.now(), started, bound), None);
        clock.advance(Duration::from_secs(1));
        let why = beat.stalled(clock.now(), started, bound).unwrap();
        assert!(why.contains("no progress for 11s"), "{why}");
    }
}
