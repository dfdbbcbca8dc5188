//! A token bucket per AWS operation, so that the service as a whole never asks AWS faster than
//! the account allows (SageMaker throttles Describe*, List*, Create* per account and operation).
//!
//! Every call of the SDK port takes a token of its operation's bucket before it is sent
//! ([`RateLimiter::acquire`]); every run's steps and the List* sweeper share the buckets of the
//! client set (AWS target) they call. A call that finds the bucket empty *waits* for its token —
//! nothing fails because of the limiter; the step's own timeout still bounds the wait.
//!
//! The buckets reserve: a caller that finds no token takes one on credit (the count goes
//! negative) and sleeps until it would have been refilled, so waiting callers are served in the
//! order they came, and at most `burst + rate × t` calls start in any span of `t` seconds.
//!
//! The rules (`EXECUTOR_AWS_RATE_LIMITS`) are `pattern=rate[:burst]` separated by commas: a
//! pattern is an operation name (`DescribeTrainingJob`), a prefix ending in `*` (`Describe*`),
//! or `*` (everything else); an exact name wins over a prefix, a longer prefix over a shorter
//! one. `rate` is calls per second (fractions allowed; 0 means no limit), `burst` defaults to
//! the rate rounded up (at least 1). Each operation has its own bucket with its rule's rate.
//! `off` (or an empty string) turns the limiter off.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The default rules: below SageMaker's default per-account rates for the control-plane
/// operations the workflows use; the S3 and CloudWatch Logs operations whose names share those
/// prefixes get the generous rate of everything else; InvokeEndpoint (the data plane, its own
/// much higher quota) is not limited.
pub const DEFAULT_RATE_LIMITS: &str = "Describe*=10,List*=2,Create*=2,Stop*=2,Update*=2,\
     Delete*=2,*=50,ListObjectsV2=50,ListMultipartUploads=50,CreateMultipartUpload=50,\
     DeleteObject=50,DescribeLogStreams=25,InvokeEndpoint=0";

#[derive(Clone, Debug, PartialEq)]
struct Rule {
    /// The name, or the prefix when `prefix`.
    pattern: String,
    prefix: bool,
    rate: f64,
    burst: f64,
}

/// Parsed `EXECUTOR_AWS_RATE_LIMITS` rules.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RateLimits {
    rules: Vec<Rule>,
}

impl RateLimits {
    /// No limits at all.
    pub fn unlimited() -> RateLimits {
        RateLimits::default()
    }

    /// Parses `pattern=rate[:burst],...` (see the module documentation).
    pub fn parse(text: &str) -> Result<RateLimits, String> {
        let text = text.trim();
        if text.is_empty() || text.eq_ignore_ascii_case("off") {
            return Ok(RateLimits::unlimited());
        }
        let mut rules = Vec::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (pattern, value) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?}: expected pattern=rate[:burst]"))?;
            let pattern = pattern.trim();
            let (name, prefix) = match pattern.strip_suffix('*') {
                Some(p) => (p, true),
                None => (pattern, false),
            };
            if (name.is_empty() && !prefix)
                || name.contains('*')
                || !name.chars().all(|c| c.is_ascii_alphanumeric())
            {
                return Err(format!(
                    "{pattern:?}: a pattern is an operation name, a prefix ending in '*', or '*'"
                ));
            }
            let (rate, burst) = match value.split_once(':') {
                Some((r, b)) => (r, Some(b)),
                None => (value, None),
            };
            let rate: f64 = rate
                .trim()
                .parse()
                .ok()
                .filter(|r: &f64| r.is_finite() && *r >= 0.0)
                .ok_or_else(|| {
                    format!("{item:?}: the rate must be a number of calls per second >= 0")
                })?;
            let burst = match burst {
                None => rate.ceil().max(1.0),
                Some(b) => b
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|b| *b >= 1)
                    .map(f64::from)
                    .ok_or_else(|| format!("{item:?}: the burst must be a whole number >= 1"))?,
            };
            if rules
                .iter()
                .any(|r: &Rule| r.pattern == name && r.prefix == prefix)
            {
                return Err(format!("{pattern:?} is given twice"));
            }
            rules.push(Rule {
                pattern: name.to_string(),
                prefix,
                rate,
                burst,
            });
        }
        Ok(RateLimits { rules })
    }

    /// The rate (calls per second) and burst for `operation`; None when it is not limited.
    pub fn rule_for(&self, operation: &str) -> Option<(f64, f64)> {
        let exact = self
            .rules
            .iter()
            .find(|r| !r.prefix && r.pattern == operation);
        let rule = exact.or_else(|| {
            self.rules
                .iter()
                .filter(|r| r.prefix && operation.starts_with(r.pattern.as_str()))
                .max_by_key(|r| r.pattern.len())
        })?;
        (rule.rate > 0.0).then_some((rule.rate, rule.burst))
    }

    pub fn is_unlimited(&self) -> bool {
        self.rules.iter().all(|r| r.rate <= 0.0)
    }
}

impl std::str::FromStr for RateLimits {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RateLimits::parse(s)
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new(RateLimits::unlimited())
    }
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    /// May be negative: tokens promised to callers that are still waiting.
    tokens: f64,
    at: Instant,
}

/// The buckets of one AWS target, one per operation, created on first use.
#[derive(Debug)]
pub struct RateLimiter {
    limits: RateLimits,
    buckets: Mutex<HashMap<&'static str, Bucket>>,
}

impl RateLimiter {
    pub fn new(limits: RateLimits) -> RateLimiter {
        RateLimiter {
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token of `operation`'s bucket at `now` and returns how long the caller must wait
    /// before it sends (zero when a token was there).
    pub fn reserve(&self, operation: &'static str, now: Instant) -> Duration {
        let Some((rate, burst)) = self.limits.rule_for(operation) else {
            return Duration::ZERO;
        };
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        let b = buckets.entry(operation).or_insert(Bucket {
            rate,
            burst,
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * b.rate).min(b.burst);
        b.at = now.max(b.at);
        b.tokens -= 1.0;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.tokens / b.rate)
        }
    }

    /// Waits for a token of `operation`'s bucket.
    pub async fn acquire(&self, operation: &'static str) {
        let wait = self.reserve(operation, Instant::now());
        if !wait.is_zero() {
            if wait > Duration::from_secs(1) {
                tracing::debug!(
                    operation,
                    wait_ms = wait.as_millis() as u64,
                    "AWS rate limit: waiting for a token"
                );
            }
            tokio::time::sleep(wait).await;
            crate::metrics::global().rate_limit_wait(operation, wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_rule_applies() {
        let l = RateLimits::parse("Describe*=10, DescribeTrainingJob=3:5, D*=7, *=20").unwrap();
        assert_eq!(l.rule_for("DescribeTrainingJob"), Some((3.0, 5.0)));
        assert_eq!(l.rule_for("DescribeEndpoint"), Some((10.0, 10.0)));
        assert_eq!(l.rule_for("DeleteModel"), Some((7.0, 7.0)));
        assert_eq!(l.rule_for("PutObject"), Some((20.0, 20.0)));
        let none = RateLimits::parse("List*=0.5").unwrap();
        assert_eq!(none.rule_for("ListTrainingJobs"), Some((0.5, 1.0)));
        assert_eq!(none.rule_for("PutObject"), None);
        assert!(RateLimits::parse("off").unwrap().is_unlimited());
        assert!(RateLimits::parse("").unwrap().is_unlimited());
        let defaults = RateLimits::parse(super::DEFAULT_RATE_LIMITS).unwrap();
        assert_eq!(defaults.rule_for("DescribeTrainingJob"), Some((10.0, 10.0)));
        assert_eq!(defaults.rule_for("ListTrainingJobs"), Some((2.0, 2.0)));
        assert_eq!(defaults.rule_for("ListObjectsV2"), Some((50.0, 50.0)));
        assert_eq!(defaults.rule_for("InvokeEndpoint"), None);
    }

    #[test]
    fn malformed_rules_are_refused() {
        for bad in [
            "Describe*",
            "Describe*=x",
            "Describe*=-1",
            "Describe*=1:0",
            "De*scribe=1",
            "Describe-Job=1",
            "=1",
            "List*=1,List*=2",
        ] {
            assert!(RateLimits::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn a_bucket_lets_its_burst_through_then_one_call_per_interval() {
        let l = RateLimiter::new(RateLimits::parse("Describe*=2:3").unwrap());
        let t0 = Instant::now();
        let waits: Vec<Duration> = (0..7)
            .map(|_| l.reserve("DescribeTrainingJob", t0))
            .collect();
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, vec![0, 0, 0, 500, 1000, 1500, 2000]);
        // Another operation has its own bucket.
        assert_eq!(l.reserve("DescribeEndpoint", t0), Duration::ZERO);
        // After the promised tokens are paid back and a full second more, two more are free.
        let later = t0 + Duration::from_millis(2000 + 1000);
        assert_eq!(l.reserve("DescribeTrainingJob", later), Duration::ZERO);
        assert_eq!(l.reserve("DescribeTrainingJob", later), Duration::ZERO);
        assert_eq!(
            l.reserve("DescribeTrainingJob", later).as_millis(),
            500,
            "the bucket refilled only two tokens"
        );
        // An unlimited operation never waits.
        assert_eq!(l.reserve("PutObject", t0), Duration::ZERO);
    }

    #[test]
    fn no_more_than_burst_plus_rate_calls_start_in_any_second() {
        // 20 callers arrive at once and 10 more over the next seconds; each starts when its
        // wait is over (the clock is passed in, so no time passes in the test).
        let l = RateLimiter::new(RateLimits::parse("List*=4:2").unwrap());
        let t0 = Instant::now();
        let mut starts: Vec<Instant> = (0..20)
            .map(|_| t0 + l.reserve("ListTrainingJobs", t0))
            .collect();
        for i in 0..10u64 {
            let at = t0 + Duration::from_millis(300 * i);
            starts.push(at + l.reserve("ListTrainingJobs", at));
        }
        starts.sort();
        for (i, t) in starts.iter().enumerate() {
            let in_window = starts[i..]
                .iter()
                .take_while(|u| **u < *t + Duration::from_secs(1))
                .count();
            assert!(in_window <= 2 + 4, "{in_window} calls within a second");
        }
        // 30 calls: 2 at once, then 28 at 4 a second.
        assert_eq!(*starts.last().unwrap() - t0, Duration::from_millis(7000));
    }
}
