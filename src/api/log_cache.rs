//! What `getLog` has read of running script jobs' CloudWatch logs, so that each call fetches only
//! the events that came since the last one (ESSEDUM-CONTRACT.md: the backend polls `getLog`
//! while a job runs, and re-reading an 8 MiB log from its start on every poll costs AWS calls
//! and time). Per run: the text so far and the CloudWatch cursor after it.
//!
//! In memory only, bounded by entries and bytes, least recently used first out: a restart, or an
//! evicted run, simply reads from the start again. Several processes on one database each keep
//! their own.

use crate::aws::LogCursor;
use std::collections::HashMap;
use std::sync::Mutex;
use uuid::Uuid;

/// Most runs kept.
const MAX_ENTRIES: usize = 128;
/// Most text kept, over all runs.
const MAX_BYTES: usize = 64 * 1024 * 1024;

/// A run's log as read so far.
#[derive(Clone, Debug, Default)]
pub struct LogSoFar {
    pub text: String,
    /// The log reached the size limit; nothing more is read.
    pub truncated: bool,
    pub cursor: LogCursor,
}

#[derive(Default)]
pub struct LogCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Uuid, (LogSoFar, u64)>,
    bytes: usize,
    tick: u64,
}

impl LogCache {
    /// The run's log so far (empty: read from the start).
    pub fn get(&self, run: Uuid) -> LogSoFar {
        let mut inner = self.inner.lock().expect("log cache lock");
        inner.tick += 1;
        let tick = inner.tick;
        match inner.entries.get_mut(&run) {
            Some((log, used)) => {
                *used = tick;
                log.clone()
            }
            None => LogSoFar::default(),
        }
    }

    /// Keeps `log` as the run's log so far, evicting the least recently used runs beyond the
    /// bounds. A reader that started from an older state cannot replace a longer one.
    pub fn put(&self, run: Uuid, log: LogSoFar) {
        let mut inner = self.inner.lock().expect("log cache lock");
        if inner
            .entries
            .get(&run)
            .is_some_and(|(old, _)| old.text.len() > log.text.len())
        {
            return;
        }
        inner.tick += 1;
        let tick = inner.tick;
        let added = log.text.len();
        if let Some((old, _)) = inner.entries.insert(run, (log, tick)) {
            inner.bytes -= old.text.len();
        }
        inner.bytes += added;
        while inner.entries.len() > MAX_ENTRIES || inner.bytes > MAX_BYTES {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(id, _)| *id)
            else {
                break;
            };
            if let Some((gone, _)) = inner.entries.remove(&oldest) {
                inner.bytes -= gone.text.len();
            }
        }
    }

    /// Forgets a run (its log was collected; it is read from the copy now).
    pub fn forget(&self, run: Uuid) {
        let mut inner = self.inner.lock().expect("log cache lock");
        if let Some((gone, _)) = inner.entries.remove(&run) {
            inner.bytes -= gone.text.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(text: &str) -> LogSoFar {
        LogSoFar {
            text: text.into(),
            ..LogSoFar::default()
        }
    }

    #[test]
    fn keeps_the_longest_log_and_evicts_the_least_recently_used() {
        let cache = LogCache::default();
        let first = Uuid::now_v7();
        cache.put(first, log("a\nb\n"));
        cache.put(first, log("a\n"));
        assert_eq!(
            cache.get(first).text,
            "a\nb\n",
            "an older reader does not shrink it"
        );
        for _ in 0..MAX_ENTRIES {
            cache.put(Uuid::now_v7(), log("x\n"));
            cache.get(first);
        }
        assert_eq!(cache.get(first).text, "a\nb\n", "recently used, so kept");
        assert_eq!(cache.inner.lock().unwrap().entries.len(), MAX_ENTRIES);
        cache.forget(first);
        assert_eq!(cache.get(first).text, "");
        assert_eq!(cache.inner.lock().unwrap().bytes, 2 * (MAX_ENTRIES - 1));
    }
}
