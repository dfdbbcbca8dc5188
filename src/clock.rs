//! Time. Every timestamp is UTC with microsecond precision, and the engine asks a [`Clock`]
//! instead of calling `Utc::now()` so tests can move time.

use chrono::{DateTime, SubsecRound, Utc};
use std::sync::Mutex;

pub type Timestamp = DateTime<Utc>;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Utc::now().trunc_subsecs(6)
    }
}

/// A clock that only moves when told to (tests).
#[derive(Debug)]
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self(Mutex::new(start.trunc_subsecs(6)))
    }
    pub fn advance(&self, by: std::time::Duration) {
        let mut now = self.0.lock().expect("clock lock");
        *now += chrono::Duration::from_std(by).expect("duration in range");
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("clock lock")
    }
}

/// The one text form of a timestamp in the store: fixed width, so text order is time order.
pub fn to_db(t: Timestamp) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub fn from_db(s: &str) -> Option<Timestamp> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub fn add(t: Timestamp, d: std::time::Duration) -> Timestamp {
    t + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_text_round_trips_with_microseconds_and_sorts_as_time() {
        let a = SystemClock.now();
        let b = add(a, std::time::Duration::from_micros(1));
        assert_eq!(from_db(&to_db(a)), Some(a));
        assert!(to_db(a) < to_db(b));
        assert_eq!(to_db(a).len(), "2026-11-27T12:00:00.123456Z".len());
    }

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let c = ManualClock::new(SystemClock.now());
        let t0 = c.now();
        assert_eq!(c.now(), t0);
        c.advance(std::time::Duration::from_secs(5));
        assert_eq!((c.now() - t0).num_seconds(), 5);
    }
}
