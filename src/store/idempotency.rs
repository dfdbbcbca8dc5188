//! SQL for `Idempotency-Key`, and the per-request record that ties a submission to the run it
//! stores.
//!
//! A submit route's handler stores its run with [`SqliteStore::insert_run`] like any other; the API's
//! middleware (`api::idempotency`) runs the handler inside a [`Submission`] scope (a task-local),
//! and the run insert, in its own transaction, (1) marks the submission as storing, so that the
//! request timeout no longer abandons it (a run that is stored is always answered), and (2) when
//! the request carries a key, inserts the key's row beside the run. The row's primary key
//! (caller, key) makes two concurrent requests with one key store one run: the second insert
//! violates it, its whole transaction (run included) rolls back, and the middleware answers it
//! with the first request's reply.

use super::{Error, Result, SqliteStore};
use crate::clock::{Timestamp, from_db, to_db};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// The key a request carries, for the run it stores.
#[derive(Clone, Debug)]
pub struct Claim {
    /// The authenticated caller; keys of different callers never meet.
    pub principal: String,
    pub key: String,
    /// SHA-256 (hex) of the request: method, path and query, body bytes.
    pub request_hash: String,
    /// Rows created before this have expired (the retention).
    pub expired_before: Timestamp,
}

/// What the run insert of one request did; shared by the middleware and the insert.
#[derive(Debug, Default)]
pub struct Submission {
    claim: Mutex<Option<Claim>>,
    storing: AtomicBool,
    /// Another request with the same key stored its run first.
    lost_race: AtomicBool,
    run_id: Mutex<Option<String>>,
    /// A repeat whose first request stored its run but never recorded its reply (the process
    /// died in between): the handler runs again with this run's id, and the insert adopts the
    /// stored run instead of storing another, so the repeat gets the reply the first would have.
    adopt: Mutex<Option<uuid::Uuid>>,
}

tokio::task_local! {
    static SUBMISSION: std::sync::Arc<Submission>;
}

impl Submission {
    /// Runs `f` (a request's handler) with `self` as its submission.
    pub async fn scope<F: Future>(self: &std::sync::Arc<Self>, f: F) -> F::Output {
        SUBMISSION.scope(self.clone(), f).await
    }

    /// The submission of the request this task serves, if any.
    pub fn current() -> Option<std::sync::Arc<Submission>> {
        SUBMISSION.try_with(std::sync::Arc::clone).ok()
    }

    pub fn set_claim(&self, claim: Claim) {
        *self.claim.lock().expect("claim lock") = Some(claim);
    }

    /// A run insert has begun: from here the request must be answered, not abandoned.
    pub fn storing(&self) -> bool {
        self.storing.load(Ordering::SeqCst)
    }

    pub fn lost_race(&self) -> bool {
        self.lost_race.load(Ordering::SeqCst)
    }

    /// Runs the handler again for the stored run `run_id` (see `adopt`).
    pub fn set_adopt(&self, run_id: uuid::Uuid) {
        *self.adopt.lock().expect("adopt lock") = Some(run_id);
    }

    /// The run this request's key was recorded for.
    pub fn recorded_run(&self) -> Option<String> {
        self.run_id.lock().expect("run lock").clone()
    }

    /// Takes the key for the run insert that records it (only a request's first run carries
    /// it): the PostgreSQL store's `record_in`.
    pub(super) fn take_claim(&self) -> Option<Claim> {
        self.claim.lock().expect("claim lock").take()
    }

    /// The run insert recorded the key for `run_id`.
    pub(super) fn set_recorded(&self, run_id: &str) {
        *self.run_id.lock().expect("run lock") = Some(run_id.to_string());
    }

    /// Another request with the same key stored its run first.
    pub(super) fn set_lost_race(&self) {
        self.lost_race.store(true, Ordering::SeqCst);
    }
}

/// The id of a new run that a submit route stores: a fresh one, or, when the request repeats one
/// whose run is stored but whose reply was never recorded, that run's id, so the handler builds
/// the same run and reply again.
pub fn new_run_id() -> uuid::Uuid {
    Submission::current()
        .and_then(|s| *s.adopt.lock().expect("adopt lock"))
        .unwrap_or_else(uuid::Uuid::now_v7)
}

/// Called by the run insert before it writes: whether the run `id` is the stored run a repeated
/// request adopts (then nothing is inserted: the stored run is the answer).
pub(super) fn adopting(id: uuid::Uuid) -> bool {
    let Some(s) = Submission::current() else {
        return false;
    };
    let adopt = s.adopt.lock().expect("adopt lock");
    if *adopt == Some(id) {
        *s.run_id.lock().expect("run lock") = Some(id.to_string());
        true
    } else {
        false
    }
}

/// Called by the run insert before it writes: the request is now storing a run.
pub(super) fn storing() {
    if let Some(s) = Submission::current() {
        s.storing.store(true, Ordering::SeqCst);
    }
}

/// Called by the run insert inside its transaction, after the run row: records the request's
/// key (if any) for `run_id`. Only a request's first run carries the key.
pub(super) async fn record_in(
    tx: &mut sqlx::SqliteConnection,
    run_id: &str,
    at: &str,
) -> Result<()> {
    let Some(sub) = Submission::current() else {
        return Ok(());
    };
    let Some(claim) = sub.claim.lock().expect("claim lock").take() else {
        return Ok(());
    };
    sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?1")
        .bind(to_db(claim.expired_before))
        .execute(&mut *tx)
        .await?;
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (principal, key, request_hash, run_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(&claim.principal)
    .bind(&claim.key)
    .bind(&claim.request_hash)
    .bind(run_id)
    .bind(at)
    .execute(&mut *tx)
    .await;
    match inserted {
        Ok(_) => {
            *sub.run_id.lock().expect("run lock") = Some(run_id.to_string());
            Ok(())
        }
        Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
            // The transaction (run included) rolls back; the middleware answers this request
            // with the first one's reply, whatever the handler makes of this error.
            sub.lost_race.store(true, Ordering::SeqCst);
            Err(Error::NameTaken("Idempotency-Key".into()))
        }
        Err(e) => Err(e.into()),
    }
}

/// A row of `idempotency_keys`: request hash, run id, status, content type, body, created at.
type KeyRow = (
    String,
    String,
    Option<i64>,
    Option<String>,
    Option<Vec<u8>>,
    String,
);

/// A stored key.
#[derive(Clone, Debug)]
pub struct KeyRecord {
    pub request_hash: String,
    pub run_id: String,
    /// The first reply: status, content type, body (None until it was sent).
    pub reply: Option<(u16, String, Vec<u8>)>,
    pub created_at: Timestamp,
}

impl SqliteStore {
    /// The caller's unexpired record of `key`.
    pub async fn idempotency_key(
        &self,
        principal: &str,
        key: &str,
        expired_before: Timestamp,
    ) -> Result<Option<KeyRecord>> {
        let row: Option<KeyRow> = sqlx::query_as(
            "SELECT request_hash, run_id, status, content_type, body, created_at
                 FROM idempotency_keys WHERE principal = ?1 AND key = ?2 AND created_at >= ?3",
        )
        .bind(principal)
        .bind(key)
        .bind(to_db(expired_before))
        .fetch_optional(self.reader())
        .await?;
        row.map(
            |(request_hash, run_id, status, content_type, body, created_at)| {
                Ok(KeyRecord {
                    request_hash,
                    run_id,
                    reply: match (status, content_type, body) {
                        (Some(s), Some(t), Some(b)) => {
                            Some((u16::try_from(s).unwrap_or(500), t, b))
                        }
                        _ => None,
                    },
                    created_at: from_db(&created_at).ok_or_else(|| {
                        Error::Corrupt(format!("idempotency created_at {created_at:?}"))
                    })?,
                })
            },
        )
        .transpose()
    }

    /// Records the first reply to the request that stored `run_id` under the caller's key.
    pub async fn save_idempotent_reply(
        &self,
        principal: &str,
        key: &str,
        run_id: &str,
        reply: (u16, &str, &[u8]),
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE idempotency_keys SET status = ?4, content_type = ?5, body = ?6
             WHERE principal = ?1 AND key = ?2 AND run_id = ?3",
        )
        .bind(principal)
        .bind(key)
        .bind(run_id)
        .bind(i64::from(reply.0))
        .bind(reply.1)
        .bind(reply.2)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
