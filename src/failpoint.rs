//! Named crash points for the crash tests.
//!
//! `EXECUTOR_FAILPOINTS=name1,name2` arms points by name. A process that reaches an armed point
//! prints `FAILPOINT <name>` on stderr and then hangs, so the test that watches stderr can kill it
//! with SIGKILL at exactly that point. Unarmed points cost one read of a set built once.
//!
//! Besides the points the workflows name, the engine passes [`before_commit`] for every step of
//! every kind, after the step's effects and before its transition is committed.
//!
//! With `EXECUTOR_FAILPOINT_PAUSE_MS=n` an armed point pauses n ms and goes on instead (a slow
//! step at an exact place, for tests of what waits on it).

use std::collections::HashSet;
use std::sync::OnceLock;

fn armed() -> &'static HashSet<String> {
    static ARMED: OnceLock<HashSet<String>> = OnceLock::new();
    ARMED.get_or_init(|| {
        std::env::var("EXECUTOR_FAILPOINTS")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    })
}

/// Stops this task forever at `name` when that point is armed.
pub async fn hit(name: &str) {
    if armed().contains(name) {
        eprintln!("FAILPOINT {name}");
        if let Some(ms) = pause_ms() {
            tracing::warn!(failpoint = name, ms, "failpoint reached; pausing");
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            return;
        }
        tracing::warn!(failpoint = name, "failpoint reached; waiting to be killed");
        std::future::pending::<()>().await;
    }
}

/// The point the engine passes after a step of `kind` in `state` returned and before its
/// transition is committed, e.g. `teardown.submitted.before_commit`.
pub fn before_commit(kind: &str, state: &str) -> String {
    format!("{kind}.{}.before_commit", state.to_ascii_lowercase())
}

fn pause_ms() -> Option<u64> {
    static PAUSE: OnceLock<Option<u64>> = OnceLock::new();
    *PAUSE.get_or_init(|| {
        std::env::var("EXECUTOR_FAILPOINT_PAUSE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
    })
}
