//! Time. Every timestamp is UTC with microsecond precision, and the engine asks a [`Clock`]
//! instead of calling `Utc::now()` so tests can move time.
//!
//! ## Why [`SystemClock`] is not the raw wall clock
//!
//! Leases and due times are wall-clock timestamps in the store, compared with `now`. If `now`
//! followed the wall clock through a step (an NTP correction after boot, an operator's `date -s`,
//! a VM restored from a snapshot), a step forward of a few minutes would expire every live lease
//! at once (other instances take runs that are being worked on) and make every poll due, and a
//! step backward would stall every due run and every backoff for as long as the step.
//!
//! So the service's clock advances with the monotonic clock (`Instant`, which no one can step)
//! and only *slews* toward the wall clock: within each interval between two readings it moves
//! by the monotonic elapsed time, corrected toward the wall clock by at most 1% of that
//! interval ([`slew`]). In normal operation the two agree to well under a second and the clock
//! is the wall clock. After a step, the clock keeps its pace (within 1%), so a 60 s lease lasts
//! 59.4–60.6 s whatever the wall clock did, and it converges on the new wall time over a
//! hundred times the step. It never goes backward.

use chrono::{DateTime, SubsecRound, Utc};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub type Timestamp = DateTime<Utc>;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The process's clock: the wall clock at start, advanced by the monotonic clock and slewed
/// toward the wall clock (see the module documentation). One state per process, so every
/// `SystemClock` of a process agrees.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

/// The latest reading and when (monotonically) it was taken.
static READING: Mutex<Option<(Timestamp, Instant)>> = Mutex::new(None);

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let wall = Utc::now();
        let at = Instant::now();
        let mut reading = READING.lock().unwrap_or_else(|e| e.into_inner());
        let now = match *reading {
            None => wall,
            Some((last, then)) => slew(last, at.saturating_duration_since(then), wall),
        };
        *reading = Some((now, at));
        now.trunc_subsecs(6)
    }
}

/// The largest correction toward the wall clock, as a fraction of the elapsed time (1%).
const SLEW_DIVISOR: i32 = 100;

/// The clock after `elapsed` (monotonic) since the reading `last`, given the wall clock `wall`:
/// `last + elapsed`, moved toward `wall` by at most `elapsed / 100`.
pub fn slew(last: Timestamp, elapsed: Duration, wall: Timestamp) -> Timestamp {
    let elapsed = chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::MAX);
    let steady = last + elapsed;
    let limit = elapsed / SLEW_DIVISOR;
    steady + (wall - steady).clamp(-limit, limit)
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
/// (Written by hand: chrono's formatter was a tenth of a listing page's time; the test below
/// holds it to chrono's `%Y-%m-%dT%H:%M:%S%.6fZ`.)
pub fn to_db(t: Timestamp) -> String {
    use chrono::{Datelike, Timelike};
    use std::fmt::Write as _;
    let year = t.year();
    let nanos = t.nanosecond();
    // A leap second is second 59 with more than 10^9 nanoseconds; chrono writes it as 60.
    let (second, nanos) = if nanos >= 1_000_000_000 {
        (t.second() + 1, nanos - 1_000_000_000)
    } else {
        (t.second(), nanos)
    };
    let mut s = String::with_capacity(27);
    let _ = if (0..=9999).contains(&year) {
        write!(s, "{year:04}")
    } else {
        write!(s, "{year:+05}")
    };
    let _ = write!(
        s,
        "-{:02}-{:02}T{:02}:{:02}:{second:02}.{:06}Z",
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        nanos / 1_000
    );
    s
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
        let fixed = "2026-11-27T12:00:00.123456Z";
        assert_eq!(to_db(from_db(fixed).unwrap()), fixed);
        // Exactly chrono's format, whatever the time.
        let mut rng = fastrand::Rng::with_seed(7);
        let mut times: Vec<Timestamp> = (0..10_000)
            .map(|_| {
                DateTime::from_timestamp_micros(
                    rng.i64(-70_000_000_000_000_000..300_000_000_000_000_000),
                )
                .unwrap()
            })
            .collect();
        times.push(DateTime::from_timestamp(1_483_228_799, 1_500_000_000).unwrap());
        times.push(DateTime::from_timestamp(0, 0).unwrap());
        for t in times {
            assert_eq!(to_db(t), t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string());
        }
    }

    /// Advances a reading by `secs` of monotonic time while the wall clock (a manual clock) is
    /// wherever the test put it.
    fn tick(last: Timestamp, secs: u64, wall: &ManualClock) -> Timestamp {
        slew(last, Duration::from_secs(secs), wall.now())
    }

    #[test]
    fn without_a_step_the_clock_is_the_wall_clock() {
        let wall = ManualClock::new(SystemClock.now());
        let mut now = wall.now();
        for _ in 0..10 {
            wall.advance(Duration::from_secs(3));
            now = tick(now, 3, &wall);
            assert_eq!(now, wall.now());
        }
    }

    #[test]
    fn a_lease_lasts_its_length_when_the_wall_clock_steps_forward() {
        let wall = ManualClock::new(SystemClock.now());
        let start = wall.now();
        let lease_until = add(start, Duration::from_secs(60));
        // An hour's step forward one second into the lease.
        wall.advance(Duration::from_secs(1 + 3600));
        let mut now = tick(start, 1, &wall);
        let mut held = 1;
        while now < lease_until {
            wall.advance(Duration::from_secs(1));
            now = tick(now, 1, &wall);
            held += 1;
        }
        assert!(
            (59..=61).contains(&held),
            "the lease expired after {held}s of real time"
        );
    }

    #[test]
    fn a_due_run_stays_due_when_the_wall_clock_steps_backward() {
        let wall = ManualClock::new(SystemClock.now());
        let start = wall.now();
        let due = add(start, Duration::from_secs(5));
        // The wall clock goes back an hour.
        let back = ManualClock::new(start - chrono::Duration::hours(1));
        let mut now = start;
        let mut waited = 0;
        while now < due {
            back.advance(Duration::from_secs(1));
            now = tick(now, 1, &back);
            waited += 1;
            assert!(now > start, "the clock never goes backward");
        }
        assert!(waited <= 6, "the run became due after {waited}s, not 5s");
    }

    #[test]
    fn after_a_step_the_clock_converges_on_the_wall_clock() {
        let wall = ManualClock::new(SystemClock.now());
        let mut now = wall.now();
        wall.advance(Duration::from_secs(10));
        // 10 s ahead: caught up after 100 × 10 s of slewing at 1%.
        for _ in 0..1_100 {
            wall.advance(Duration::from_secs(1));
            now = tick(now, 1, &wall);
        }
        assert_eq!(now, wall.now());
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
