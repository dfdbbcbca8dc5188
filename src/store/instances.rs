//! Process instances: who may hold leases, and which holders are dead.
//!
//! Every start of the service is a new instance, with its own lease owner id: the configured
//! worker id plus a per-start nonce (`local#3f9a1c2e`). Two processes configured with the same
//! worker id on one database therefore never share leases. An instance records itself here with
//! its host, process id and a heartbeat. At start-up a process releases the leases of its worker
//! id's *dead* instances only:
//! - an instance on this host whose process is gone (or is another process with a reused pid) is
//!   dead at once, so a crash and restart costs no lease-expiry wait;
//! - any instance whose heartbeat is older than its own lease time is dead.
//!
//! A live instance's lease is never taken; it is released by its holder, or claimed by another
//! worker only after it expires (`claim_due`). Releasing bumps the run's version, so a step of the
//! old holder can no longer commit (DESIGN.md invariant 3).
//!
//! A worker id that never starts again (a replica scaled away, a host renamed) leaves its last
//! instance's row behind. Every heartbeat of a live instance therefore also forgets the rows
//! of instances silent for [`FORGET_AFTER_LEASES`] of their own leases that hold no lease any
//! more (one still named as a run's lease owner stays until that lease is taken or released).

use super::{Error, Result, SqliteStore};
use crate::clock::{Timestamp, add, from_db, to_db};
use std::time::Duration;

/// An instance whose heartbeat is older than this many of its own leases, and that holds no
/// lease, is forgotten by the next heartbeat of any live instance. (Dead after one lease; ten
/// leave the row a while for an operator looking at who held what.)
pub const FORGET_AFTER_LEASES: u32 = 10;

/// This process's identity as a lease holder.
#[derive(Clone, Debug)]
pub struct Instance {
    /// The lease owner id: `<worker_id>#<nonce>`.
    pub id: String,
    pub worker_id: String,
    pub host: String,
    pub pid: u32,
    pub pid_start: Option<u64>,
    pub lease: Duration,
}

/// What start-up recovery released.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Dead instances of this worker id that were forgotten.
    pub dead_instances: Vec<String>,
    /// Leases released (of dead instances, or expired).
    pub leases: u64,
}

impl Instance {
    /// A new identity for this process under `worker_id`.
    pub fn this_process(worker_id: &str, lease: Duration) -> Instance {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let pid = std::process::id();
        Instance {
            id: format!("{worker_id}#{}", &nonce[..8]),
            worker_id: worker_id.to_string(),
            host: host_name(),
            pid,
            pid_start: process_start(pid).map(|(_, start)| start),
            lease,
        }
    }
}

/// This machine's name (the kernel's), or "unknown".
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

/// The state letter and start time (clock ticks since boot) of a process, from /proc.
fn process_start(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces; fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 22 of the whole line is the start time; `rest` starts at field 3.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// True when the process that registered as (`pid`, `pid_start`) on this host is certainly
/// gone. False when it may be alive, or when this system cannot tell (no /proc).
fn process_gone(pid: u32, pid_start: Option<u64>) -> bool {
    if process_start(std::process::id()).is_none() {
        return false;
    }
    match process_start(pid) {
        None => true,
        Some(('Z' | 'X', _)) => true,
        Some((_, start)) => pid_start.is_some_and(|s| s != start),
    }
}

impl SqliteStore {
    /// Records this process as a live instance.
    pub async fn register_instance(&self, me: &Instance, now: Timestamp) -> Result<()> {
        let at = to_db(now);
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO instances (id, worker_id, host, pid, pid_start, lease_ms, started_at, heartbeat_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        )
        .bind(&me.id)
        .bind(&me.worker_id)
        .bind(&me.host)
        .bind(i64::from(me.pid))
        .bind(me.pid_start.map(|s| s as i64))
        .bind(me.lease.as_millis() as i64)
        .bind(&at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Beats this instance's heart; false when its row is gone (another process found it dead
    /// and released its leases: the caller registers again). In the same transaction, forgets
    /// the instances silent for [`FORGET_AFTER_LEASES`] of their leases that hold no lease.
    pub async fn heartbeat_instance(&self, me: &Instance, now: Timestamp) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("UPDATE instances SET heartbeat_at = ?1 WHERE id = ?2")
            .bind(to_db(now))
            .bind(&me.id)
            .execute(&mut *tx)
            .await?;
        let others: Vec<(String, i64, String)> =
            sqlx::query_as("SELECT id, lease_ms, heartbeat_at FROM instances WHERE id <> ?1")
                .bind(&me.id)
                .fetch_all(&mut *tx)
                .await?;
        for (id, lease_ms, heartbeat_at) in others {
            let heartbeat = from_db(&heartbeat_at).ok_or_else(|| {
                Error::Corrupt(format!("instances.heartbeat_at {heartbeat_at:?}"))
            })?;
            let bound = Duration::from_millis(lease_ms.max(0) as u64) * FORGET_AFTER_LEASES;
            if add(heartbeat, bound) > now {
                continue;
            }
            let gone = sqlx::query(
                "DELETE FROM instances WHERE id = ?1
                   AND NOT EXISTS (SELECT 1 FROM runs WHERE lease_owner = ?1)",
            )
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            if gone.rows_affected() == 1 {
                tracing::info!(instance = %id, heartbeat = %heartbeat_at, "forgot an instance long silent that holds no lease");
            }
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Forgets this instance at a graceful stop (after its leases were released).
    pub async fn remove_instance(&self, me: &Instance) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM instances WHERE id = ?1")
            .bind(&me.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// An instance that may still be serving this database at `now` (its heartbeat within its
    /// lease, and not a process of this host known to be gone), for tools that must not run
    /// beside a service.
    pub(super) async fn live_instance(&self, now: Timestamp) -> Result<Option<String>> {
        let all: Vec<(String, String, i64, Option<i64>, i64, String)> = sqlx::query_as(
            "SELECT id, host, pid, pid_start, lease_ms, heartbeat_at FROM instances ORDER BY id",
        )
        .fetch_all(self.reader())
        .await?;
        let here = host_name();
        for (id, host, pid, pid_start, lease_ms, heartbeat_at) in all {
            let heartbeat = from_db(&heartbeat_at).ok_or_else(|| {
                Error::Corrupt(format!("instances.heartbeat_at {heartbeat_at:?}"))
            })?;
            let silent = add(heartbeat, Duration::from_millis(lease_ms.max(0) as u64)) <= now;
            let gone = host == here
                && u32::try_from(pid)
                    .is_ok_and(|pid| process_gone(pid, pid_start.map(|s| s as u64)));
            if !(silent || gone) {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// Start-up recovery for `me`: releases the leases of `me.worker_id`'s dead instances and
    /// every expired lease, bumping versions, in one transaction. A live lease is never touched.
    pub async fn release_dead_leases(&self, me: &Instance, now: Timestamp) -> Result<Released> {
        let now_s = to_db(now);
        let mut tx = self.begin_write().await?;
        let others: Vec<(String, String, i64, Option<i64>, i64, String)> = sqlx::query_as(
            "SELECT id, host, pid, pid_start, lease_ms, heartbeat_at FROM instances
             WHERE worker_id = ?1 AND id <> ?2",
        )
        .bind(&me.worker_id)
        .bind(&me.id)
        .fetch_all(&mut *tx)
        .await?;
        let mut released = Released::default();
        for (id, host, pid, pid_start, lease_ms, heartbeat_at) in others {
            let heartbeat = from_db(&heartbeat_at).ok_or_else(|| {
                Error::Corrupt(format!("instances.heartbeat_at {heartbeat_at:?}"))
            })?;
            let silent = add(heartbeat, Duration::from_millis(lease_ms.max(0) as u64)) <= now;
            let gone = host == me.host
                && u32::try_from(pid)
                    .is_ok_and(|pid| process_gone(pid, pid_start.map(|s| s as u64)));
            if !(silent || gone) {
                continue;
            }
            let done = sqlx::query(
                "UPDATE runs SET lease_owner = NULL, lease_until = NULL, version = version + 1
                 WHERE lease_owner = ?1",
            )
            .bind(&id)
            .execute(&mut *tx)
            .await?;
            released.leases += done.rows_affected();
            sqlx::query("DELETE FROM instances WHERE id = ?1")
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            released.dead_instances.push(id);
        }
        let expired = sqlx::query(
            "UPDATE runs SET lease_owner = NULL, lease_until = NULL, version = version + 1
             WHERE lease_owner IS NOT NULL AND lease_until <= ?1",
        )
        .bind(&now_s)
        .execute(&mut *tx)
        .await?;
        released.leases += expired.rows_affected();
        tx.commit().await?;
        Ok(released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, State};
    use crate::store::NewRun;

    fn at(s: &str) -> Timestamp {
        from_db(s).unwrap()
    }

    fn remote(worker_id: &str) -> Instance {
        let mut me = Instance::this_process(worker_id, Duration::from_secs(60));
        me.host = "another-host".into();
        me.pid = 1;
        me.pid_start = None;
        me
    }

    async fn ids(store: &SqliteStore) -> Vec<String> {
        let mut ids: Vec<String> = sqlx::query_scalar("SELECT id FROM instances")
            .fetch_all(store.reader())
            .await
            .unwrap();
        ids.sort();
        ids
    }

    #[tokio::test]
    async fn a_heartbeat_forgets_instances_long_silent_that_hold_no_lease() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = SqliteStore::open(&url).await.unwrap();
        let t0 = at("2026-01-01T00:00:00.000000Z");
        // Leases of 60 s: forgotten once silent for ten minutes.
        let (gone, holder, recent) = (remote("gone"), remote("holder"), remote("recent"));
        for i in [&gone, &holder] {
            store.register_instance(i, t0).await.unwrap();
        }
        store
            .register_instance(&recent, add(t0, Duration::from_secs(2)))
            .await
            .unwrap();
        let run = store
            .insert_run(
                NewRun {
                    id: uuid::Uuid::now_v7(),
                    kind: Kind::Training,
                    state: State::Uploading,
                    request: serde_json::json!({}),
                    context: serde_json::json!({}),
                    resource_name: None,
                    submitted_by: None,
                    detail: "accepted".into(),
                },
                t0,
            )
            .await
            .unwrap();
        let held = store
            .claim_due(&holder.id, t0, add(t0, Duration::from_secs(60)), 1)
            .await
            .unwrap();
        assert_eq!(held.len(), 1);
        let me = remote("me");
        store.register_instance(&me, t0).await.unwrap();
        let all = ids(&store).await;
        // Silent for less than ten leases: kept.
        let almost = add(t0, Duration::from_secs(599));
        assert!(store.heartbeat_instance(&me, almost).await.unwrap());
        assert_eq!(ids(&store).await, all);
        // Ten leases: the one without a lease goes; the holder stays while its run names it.
        let ten = add(t0, Duration::from_secs(600));
        assert!(store.heartbeat_instance(&me, ten).await.unwrap());
        let mut want = vec![holder.id.clone(), me.id.clone(), recent.id.clone()];
        want.sort();
        assert_eq!(ids(&store).await, want);
        // Its lease released (taken over), the holder goes too; `recent` two seconds later.
        store.release_leases(&holder.id).await.unwrap();
        assert!(store.heartbeat_instance(&me, ten).await.unwrap());
        let mut want = vec![me.id.clone(), recent.id.clone()];
        want.sort();
        assert_eq!(ids(&store).await, want);
        assert!(
            store
                .heartbeat_instance(&me, add(ten, Duration::from_secs(2)))
                .await
                .unwrap()
        );
        assert_eq!(ids(&store).await, vec![me.id.clone()]);
        assert_eq!(
            store.get_run(run.id).await.unwrap().unwrap().lease_owner,
            None
        );
        store.close().await;
    }
}
