//! Tests of the PostgreSQL store against a real server: each test in a fresh database of its
//! own (`exec_<uuid>`, created through the `postgres` database and dropped with `WITH (FORCE)`
//! when the test ends, also when it fails). The server is `EXECUTOR_TEST_POSTGRES_URL`, by
//! default `postgres://postgres@127.0.0.1:5432/postgres` (the project's machines and CI run
//! one there).

use super::*;
use crate::clock::{Clock as _, SystemClock, Timestamp, add, from_db};
use crate::model::{ErrorClass, Kind, State};
use crate::store::{
    CancelOutcome, Claim, ClaimRequest, ClaimedRun, Instance, NewRun, OwnedKind, Released,
    RetryOutcome, Run, RunFilter, Summary, Transition, TransitionOutcome,
};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

fn admin_url() -> String {
    std::env::var("EXECUTOR_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh database, dropped (with whatever is still connected to it) when this is dropped.
pub(crate) struct TestDb {
    name: String,
    pub(crate) url: String,
}

impl TestDb {
    pub(crate) async fn new() -> TestDb {
        let name = format!("exec_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url()).await.unwrap();
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let mut url = url::Url::parse(&admin_url()).unwrap();
        url.set_path(&format!("/{name}"));
        TestDb {
            name,
            url: url.to_string(),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A runtime of its own: the test's may be gone (a panic) or busy in this drop.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut admin) = PgConnection::connect(&admin_url()).await {
                    let _ = sqlx::query(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                }
            })
        })
        .join();
    }
}

async fn store() -> (TestDb, PgStore) {
    let db = TestDb::new().await;
    let store = PgStore::open(&db.url).await.unwrap();
    (db, store)
}

fn at(s: &str) -> Timestamp {
    from_db(s).unwrap()
}

fn new_run(kind: Kind, state: State, submitted_by: Option<&str>) -> NewRun {
    let id = Uuid::now_v7();
    NewRun {
        id,
        kind,
        state,
        request: json!({}),
        context: json!({"polls": 0}),
        resource_name: Some(format!("job-{}", id.simple())),
        submitted_by: submitted_by.map(str::to_string),
        detail: "accepted".into(),
    }
}

fn deployment(endpoint: &str) -> NewRun {
    NewRun {
        request: json!({"endpoint_name": endpoint}),
        resource_name: None,
        ..new_run(Kind::Deployment, State::Submitted, None)
    }
}

fn poll(n: i64, now: Timestamp) -> Transition {
    Transition {
        to: State::Polling,
        context: json!({"polls": n}),
        attempt: 0,
        next_due_at: Some(add(now, Duration::from_secs(60))),
        record: true,
        detail: Some(format!("poll {n}")),
        error: None,
        spawn: Vec::new(),
        forget: Vec::new(),
        withdraw_cancel: false,
        degraded: false,
        collapse: false,
    }
}

fn to_state(to: State, now: Timestamp) -> Transition {
    Transition {
        to,
        next_due_at: (!to.is_terminal()).then(|| add(now, Duration::from_secs(5))),
        detail: Some(format!("to {to}")),
        ..poll(0, now)
    }
}

/// Claims exactly the run `id` (the only due one) for `owner`.
async fn claim_one(store: &PgStore, owner: &str, now: Timestamp) -> ClaimedRun {
    let mut claimed = store
        .claim_due(owner, now, add(now, Duration::from_secs(60)), 1)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "one due run");
    claimed.remove(0)
}

async fn insert(store: &PgStore, new: NewRun, now: Timestamp) -> Run {
    store.insert_run(new, now).await.unwrap()
}

/// The database's clock, on which leases and due times are.
async fn db_now(store: &PgStore) -> Timestamp {
    sqlx::query_scalar("SELECT statement_timestamp()")
        .fetch_one(&store.pool)
        .await
        .unwrap()
}

/// Asserts that `t` is `d` after a moment between `before` and `after` (database times taken
/// around the write that set it).
#[track_caller]
fn assert_after(t: Option<Timestamp>, before: Timestamp, after: Timestamp, d: Duration) {
    let t = t.expect("a time");
    assert!(
        add(before, d) <= t && t <= add(after, d),
        "{t} is not {d:?} after a moment in [{before}, {after}]"
    );
}

/// Ends a run's lease (an hour ago on the database's clock), as if its holder went silent.
async fn expire_lease(store: &PgStore, id: Uuid) {
    sqlx::query(
        "UPDATE runs SET lease_until = statement_timestamp() - interval '1 hour' WHERE id = $1",
    )
    .bind(id.to_string())
    .execute(&store.pool)
    .await
    .unwrap();
}

/// Makes a run due (a second ago on the database's clock), as if its wait ran out.
async fn make_due_by_hand(store: &PgStore, id: Uuid) {
    sqlx::query(
        "UPDATE runs SET next_due_at = statement_timestamp() - interval '1 second' WHERE id = $1",
    )
    .bind(id.to_string())
    .execute(&store.pool)
    .await
    .unwrap();
}

// Migrations.

#[tokio::test]
async fn the_lookup_tables_hold_the_kinds_and_states_of_the_code_and_refuse_others() {
    let (_db, store) = store().await;
    let mut kinds: Vec<String> = sqlx::query_scalar("SELECT name FROM run_kinds")
        .fetch_all(&store.pool)
        .await
        .unwrap();
    let mut want: Vec<String> = Kind::ALL.iter().map(|k| k.as_str().to_string()).collect();
    kinds.sort();
    want.sort();
    assert_eq!(kinds, want, "add a migration inserting the new kind");
    let states: Vec<(String, bool)> = sqlx::query_as("SELECT name, terminal FROM run_states")
        .fetch_all(&store.pool)
        .await
        .unwrap();
    assert_eq!(states.len(), State::ALL.len());
    for (name, terminal) in states {
        let s = State::parse(&name).expect("a state the code knows");
        assert_eq!(s.is_terminal(), terminal, "{name}");
    }
    let insert = |kind: &'static str, state: &'static str| {
        sqlx::query(
            "INSERT INTO runs (id, kind, state, request, next_due_at, created_at, updated_at)
             VALUES ('x', $1, $2, '{}', now(), now(), now())",
        )
        .bind(kind)
        .bind(state)
    };
    assert!(
        insert("mining", "Uploading")
            .execute(&store.pool)
            .await
            .is_err()
    );
    assert!(
        insert("training", "Sleeping")
            .execute(&store.pool)
            .await
            .is_err()
    );
    // A terminal state with a due time, and invalid JSON, are refused too.
    assert!(
        insert("training", "Done")
            .execute(&store.pool)
            .await
            .is_err()
    );
    assert!(
        sqlx::query(
            "INSERT INTO runs (id, kind, state, request, next_due_at, created_at, updated_at)
             VALUES ('y', 'training', 'Uploading', '{', now(), now(), now())"
        )
        .execute(&store.pool)
        .await
        .is_err()
    );
    assert!(
        insert("training", "Uploading")
            .execute(&store.pool)
            .await
            .is_ok()
    );
}

/// CRC-32 (ISO-HDLC), as sqlx derives its migration lock's key from the database's name.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test]
async fn migrations_wait_for_the_advisory_lock_and_replicas_starting_at_once_apply_them_once() {
    let db = TestDb::new().await;
    // sqlx's migrator holds pg_advisory_lock(key of the database's name) while it migrates:
    // held elsewhere, a start waits for it and has created nothing meanwhile.
    let key = 0x3d32_ad9e_i64 * i64::from(crc32(db.name.as_bytes()));
    let mut holder = PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(key)
        .execute(&mut holder)
        .await
        .unwrap();
    let url = db.url.clone();
    let waiting = tokio::spawn(async move { PgStore::open(&url).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "the start waits for the lock");
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_tables WHERE tablename IN ('runs', '_sqlx_migrations')",
    )
    .fetch_one(&mut holder)
    .await
    .unwrap();
    assert_eq!(tables, 0, "nothing is migrated before the lock is free");
    // Two more replicas start meanwhile; then the lock is released.
    let (a, b) = (db.url.clone(), db.url.clone());
    let others = tokio::spawn(async move { tokio::join!(PgStore::open(&a), PgStore::open(&b)) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(key)
        .execute(&mut holder)
        .await
        .unwrap();
    let first = waiting.await.unwrap().unwrap();
    let (second, third) = others.await.unwrap();
    let (second, third) = (second.unwrap(), third.unwrap());
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&first.pool)
        .await
        .unwrap();
    assert_eq!(applied, MIGRATOR.iter().count() as i64);
    // And no migration lock is left behind.
    let locks: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND database =
             (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&first.pool)
    .await
    .unwrap();
    assert_eq!(locks, 0);
    for s in [&first, &second, &third] {
        s.ping().await.unwrap();
    }
    // Once more, sequentially: nothing to apply.
    first.migrate().await.unwrap();
    for s in [first, second, third] {
        s.close().await;
    }
}

#[tokio::test]
async fn a_bad_url_is_refused_without_its_password() {
    let e = PgStore::open("postgres://u:hunter2@127.0.0.1:5432/x?sslmode=bogus")
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::BadUrl { .. }), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

// Runs: insert, read back, transitions.

#[tokio::test]
async fn an_inserted_run_reads_back_field_for_field_with_times_in_microseconds() {
    let (_db, store) = store().await;
    // Nanoseconds: kept to the microsecond, as the SQLite store's text form does.
    let now = at("2026-11-27T12:00:00.123456789Z");
    let request = json!({"s": "a\u{0}b \"q\" ünï", "n": [1, 2.5, -3e-7, null, 18446744073709551615u64],
                          "nested": {"b": 1, "a": {}}});
    let mut new = new_run(Kind::Script, State::Uploading, Some("alice"));
    new.request = request.clone();
    let run = store
        .insert_run_with_secret(new.clone(), b"sealed\0bytes".to_vec(), now)
        .await
        .unwrap();
    assert_eq!(run.created_at, at("2026-11-27T12:00:00.123456Z"));
    assert_eq!(run.request, request);
    let read = store.get_run(new.id).await.unwrap().unwrap();
    assert_eq!(format!("{read:?}"), format!("{run:?}"));
    assert_eq!(
        (read.kind, read.state, read.submitted_by.as_deref()),
        (Kind::Script, State::Uploading, Some("alice"))
    );
    assert_eq!(read.next_due_at, Some(read.created_at));
    assert_eq!(
        (read.version, read.attempt, read.cancel_requested),
        (0, 0, false)
    );
    let found = store
        .find_run(new.resource_name.as_deref().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, new.id);
    assert_eq!(
        store.run_secret(new.id).await.unwrap().as_deref(),
        Some(&b"sealed\0bytes"[..])
    );
    let events = store.events(new.id).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].seq, events[0].from_state, events[0].to_state),
        (1, None, State::Uploading)
    );
    assert_eq!(events[0].at, run.created_at);
    // The claim brings the sealed bytes and the lease, read back exactly.
    let claimed = claim_one(&store, "w#1", now).await;
    assert_eq!(claimed.sealed.as_deref(), Some(&b"sealed\0bytes"[..]));
    assert!(!claimed.took_over);
    let read = store.get_run(new.id).await.unwrap().unwrap();
    assert_eq!(format!("{read:?}"), format!("{:?}", claimed.run));
    assert_eq!(read.lease_owner.as_deref(), Some("w#1"));
    assert_eq!(read.version, 1);
}

#[tokio::test]
async fn a_taken_resource_name_or_endpoint_is_name_taken_and_stores_nothing() {
    let (_db, store) = store().await;
    let now = at("2026-01-01T00:00:00Z");
    let first = insert(&store, new_run(Kind::Training, State::Uploading, None), now).await;
    let mut again = new_run(Kind::Training, State::Uploading, None);
    again.resource_name = first.resource_name.clone();
    let e = store.insert_run(again.clone(), now).await.unwrap_err();
    assert!(matches!(e, Error::NameTaken(ref n) if Some(n) == first.resource_name.as_ref()));
    assert!(store.get_run(again.id).await.unwrap().is_none());
    insert(&store, deployment("ep"), now).await;
    let e = store.insert_run(deployment("ep"), now).await.unwrap_err();
    assert!(matches!(e, Error::NameTaken(_)), "{e}");
    insert(&store, deployment("other-ep"), now).await;
    assert_eq!(store.count_unfinished().await.unwrap(), 3);
}

#[tokio::test]
async fn a_commit_records_the_transition_and_a_stale_or_foreign_one_is_lost() {
    let (_db, store) = store().await;
    let now = at("2026-01-01T00:00:00Z");
    let run = insert(&store, new_run(Kind::Training, State::Uploading, None), now).await;
    let claimed = claim_one(&store, "w#1", now).await;
    let mut stale = claimed.clone();
    stale.run.version -= 1;
    assert_eq!(
        store
            .commit_transition(&stale, &poll(1, now), now)
            .await
            .unwrap(),
        TransitionOutcome::Lost
    );
    let mut foreign = claimed.clone();
    foreign.owner = "w#2".into();
    assert_eq!(
        store
            .commit_transition(&foreign, &poll(1, now), now)
            .await
            .unwrap(),
        TransitionOutcome::Lost
    );
    assert_eq!(
        store.events(run.id).await.unwrap().len(),
        1,
        "nothing written"
    );
    let later = add(now, Duration::from_secs(2));
    let mut t = poll(1, later);
    t.error = Some((ErrorClass::Retryable, "throttled".into()));
    let before = db_now(&store).await;
    let outcome = store.commit_transition(&claimed, &t, later).await.unwrap();
    let committed = db_now(&store).await;
    assert_eq!(
        outcome,
        TransitionOutcome::Committed {
            version: claimed.run.version + 1
        }
    );
    let after = store.get_run(run.id).await.unwrap().unwrap();
    assert_eq!(after.state, State::Polling);
    assert_eq!(after.context, json!({"polls": 1}));
    assert_eq!(after.lease_owner, None);
    assert_eq!(after.lease_until, None);
    // The poll's delay from the database's now; the display time is the caller's.
    assert_after(
        after.next_due_at,
        before,
        committed,
        Duration::from_secs(60),
    );
    assert_eq!(after.updated_at, later);
    assert_eq!(after.last_error.as_deref(), Some("throttled"));
    let events = store.events(run.id).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(
        (
            events[1].from_state,
            events[1].to_state,
            events[1].error_class
        ),
        (
            Some(State::Uploading),
            State::Polling,
            Some(ErrorClass::Retryable)
        )
    );
    // The same claim cannot commit twice.
    assert_eq!(
        store
            .commit_transition(&claimed, &poll(2, later), later)
            .await
            .unwrap(),
        TransitionOutcome::Lost
    );
}

#[tokio::test]
async fn repeated_failures_collapse_into_the_streaks_first_and_latest_rows() {
    let (_db, store) = store().await;
    let mut now = at("2026-01-01T00:00:00Z");
    let run = insert(&store, new_run(Kind::Training, State::Polling, None), now).await;
    for i in 1..=4 {
        let claimed = claim_one(&store, "w", now).await;
        let mut t = poll(0, now);
        t.next_due_at = Some(now);
        t.attempt = i;
        t.degraded = true;
        t.collapse = true;
        t.error = Some((ErrorClass::Retryable, format!("failure {i}")));
        store.commit_transition(&claimed, &t, now).await.unwrap();
        now = add(now, Duration::from_secs(1));
    }
    let events = store.events(run.id).await.unwrap();
    let rows: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.seq,
                e.attempt,
                e.repeats,
                e.error.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (1, 0, 1, String::new()),
            (2, 1, 1, "failure 1".into()),
            (3, 4, 3, "failure 4".into()),
        ]
    );
    let after = store.get_run(run.id).await.unwrap().unwrap();
    assert_eq!(after.degraded_since, Some(at("2026-01-01T00:00:00Z")));
    assert_eq!(
        store.count_degraded().await.unwrap(),
        vec![(Kind::Training, 1)]
    );
    // A healthy check clears the degradation and its error.
    let claimed = claim_one(&store, "w", now).await;
    store
        .commit_transition(&claimed, &poll(1, now), now)
        .await
        .unwrap();
    let after = store.get_run(run.id).await.unwrap().unwrap();
    assert_eq!((after.degraded_since, after.last_error), (None, None));
    assert!(store.count_degraded().await.unwrap().is_empty());
}

// Claims and leases.

#[tokio::test]
async fn concurrent_claimers_on_two_stores_never_get_the_same_run() {
    let (db, store) = store().await;
    let other = PgStore::open(&db.url).await.unwrap();
    let now = at("2026-01-01T00:00:00Z");
    let mut ids = BTreeSet::new();
    for i in 0..120 {
        let run = insert(
            &store,
            new_run(Kind::Training, State::Polling, None),
            add(now, Duration::from_millis(i)),
        )
        .await;
        ids.insert(run.id);
    }
    let claim_time = add(now, Duration::from_secs(1));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..8 {
        let s = if w % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        tasks.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = s
                    .claim_due(
                        &format!("w#{w}"),
                        claim_time,
                        add(claim_time, Duration::from_secs(60)),
                        3,
                    )
                    .await
                    .unwrap();
                if got.is_empty() {
                    return mine;
                }
                // Oldest due first within a claim.
                assert!(
                    got.windows(2)
                        .all(|p| p[0].run.next_due_at <= p[1].run.next_due_at)
                );
                mine.extend(got.into_iter().map(|c| (c.run.id, c.owner)));
            }
        });
    }
    let mut claimed = BTreeMap::new();
    while let Some(r) = tasks.join_next().await {
        for (id, owner) in r.unwrap() {
            if let Some(first) = claimed.insert(id, owner.clone()) {
                panic!("{id} claimed by {first} and {owner}");
            }
        }
    }
    assert_eq!(claimed.keys().copied().collect::<BTreeSet<_>>(), ids);
    for (id, owner) in claimed {
        let run = store.get_run(id).await.unwrap().unwrap();
        assert_eq!(run.lease_owner, Some(owner));
        assert_eq!(run.version, 1);
    }
    other.close().await;
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_fences_its_old_holder() {
    let (_db, store) = store().await;
    let now = at("2026-01-01T00:00:00Z");
    let run = insert(&store, new_run(Kind::Training, State::Polling, None), now).await;
    let before = db_now(&store).await;
    let first = claim_one(&store, "a#1", now).await;
    // The lease is the request's duration (60 s) from the database's now.
    assert_after(
        first.run.lease_until,
        before,
        db_now(&store).await,
        Duration::from_secs(60),
    );
    let during = add(now, Duration::from_secs(30));
    assert!(
        store
            .claim_due("b#1", during, add(during, Duration::from_secs(60)), 10)
            .await
            .unwrap()
            .is_empty(),
        "a live lease is never taken"
    );
    let before = db_now(&store).await;
    assert!(
        store
            .renew_lease(&first, add(SystemClock.now(), Duration::from_secs(120)))
            .await
            .unwrap()
    );
    // What was left of the 120 s on this host's clock (a little less than 120 s by the time it
    // was sent), from the database's now.
    let renewed = store.get_run(run.id).await.unwrap().unwrap().lease_until;
    let renewed = renewed.expect("leased");
    assert!(
        add(before, Duration::from_secs(119)) < renewed
            && renewed <= add(db_now(&store).await, Duration::from_secs(120)),
        "{renewed} from {before}"
    );
    // Its holder falls silent and the lease runs out.
    expire_lease(&store, run.id).await;
    let after = add(now, Duration::from_secs(61));
    let second = claim_one(&store, "b#1", after).await;
    assert!(second.took_over);
    assert_eq!(second.run.version, first.run.version + 1);
    assert!(
        !store
            .renew_lease(&first, add(SystemClock.now(), Duration::from_secs(60)))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .commit_transition(&first, &poll(1, after), after)
            .await
            .unwrap(),
        TransitionOutcome::Lost
    );
    assert!(matches!(
        store
            .commit_transition(&second, &poll(1, after), after)
            .await
            .unwrap(),
        TransitionOutcome::Committed { .. }
    ));
    assert_eq!(store.events(run.id).await.unwrap().len(), 2);
    // release_leases bumps the version of what it releases.
    make_due_by_hand(&store, run.id).await;
    let third = claim_one(&store, "c#1", add(after, Duration::from_secs(60))).await;
    assert_eq!(store.release_leases("c#1").await.unwrap(), 1);
    let released = store.get_run(run.id).await.unwrap().unwrap();
    assert_eq!(released.lease_owner, None);
    assert_eq!(released.version, third.run.version + 1);
}

/// Replica B's clock runs an hour ahead of replica A's and of the database's: B neither takes
/// a lease A holds (live on the database's clock) nor claims a run before the database's clock
/// says it is due, and its own leases and due times are durations from the database's now,
/// not from its clock. A replica whose clock runs behind is not taken for dead either.
#[tokio::test]
async fn a_replica_whose_clock_runs_ahead_takes_no_live_lease_and_no_run_early() {
    let (db, a) = store().await;
    let b = PgStore::open(&db.url).await.unwrap();
    let hour = Duration::from_secs(3600);
    let lease = Duration::from_secs(60);
    let a_now = SystemClock.now();
    let b_now = add(a_now, hour);
    let run = insert(&a, new_run(Kind::Training, State::Polling, None), a_now).await;
    let held = a
        .claim_due("a#1", a_now, add(a_now, lease), 10)
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    // To B's clock, A's lease ended 59 minutes ago; on the database's it has a minute left.
    assert!(
        b.claim_due("b#1", b_now, add(b_now, lease), 10)
            .await
            .unwrap()
            .is_empty(),
        "B took a live lease"
    );
    assert!(
        b.release_dead_leases(&Instance::this_process("b", lease), b_now)
            .await
            .unwrap()
            .leases
            == 0,
        "B's start-up recovery released a live lease"
    );
    // A polls in a minute: to B's clock the run is an hour overdue, to the database's not due.
    assert!(matches!(
        a.commit_transition(&held[0], &poll(1, a_now), a_now)
            .await
            .unwrap(),
        TransitionOutcome::Committed { .. }
    ));
    assert!(
        b.claim_due("b#1", b_now, add(b_now, lease), 10)
            .await
            .unwrap()
            .is_empty(),
        "B claimed a run before it was due"
    );
    assert!(
        b.make_due(&[run.id], State::Polling, b_now)
            .await
            .unwrap()
            .len()
            == 1,
        "a nudge makes it due on the database's clock"
    );
    // B's claim leases for its duration from the database's now, not until B's clock + 60 s.
    let before = db_now(&b).await;
    let taken = b
        .claim_due("b#1", b_now, add(b_now, lease), 10)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    assert_after(taken[0].run.lease_until, before, db_now(&b).await, lease);
    // B's poll in a minute is a minute on the database's clock: A, an hour behind B, cannot
    // take it early either, and finds it due a minute from now on A's own clock.
    let before = db_now(&b).await;
    b.commit_transition(&taken[0], &poll(2, b_now), b_now)
        .await
        .unwrap();
    let due = b.get_run(run.id).await.unwrap().unwrap().next_due_at;
    assert_after(due, before, db_now(&b).await, lease);
    assert!(
        a.claim_due("a#1", a_now, add(a_now, lease), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let wait = a.next_due_at().await.unwrap().unwrap() - SystemClock.now();
    assert!(
        wait > chrono::Duration::seconds(55) && wait <= chrono::Duration::seconds(60),
        "the engine's sleep, on its own clock: {wait}"
    );
    // A run a replica with a clock ahead accepts is due at once, for every replica.
    let fresh = insert(&b, new_run(Kind::Training, State::Submitted, None), b_now).await;
    let claimed = a
        .claim_due("a#1", a_now, add(a_now, lease), 10)
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|c| c.run.id).collect::<Vec<_>>(),
        [fresh.id]
    );
    // An instance whose clock runs an hour behind beats its heart on the database's clock,
    // and is alive to a replica of its worker id on another host.
    let mut slow = Instance::this_process("shared", lease);
    slow.host = "another-host".into();
    a.register_instance(&slow, a_now - chrono::Duration::hours(1))
        .await
        .unwrap();
    assert!(
        a.heartbeat_instance(&slow, a_now - chrono::Duration::hours(1))
            .await
            .unwrap()
    );
    let recovered = b
        .release_dead_leases(&Instance::this_process("shared", lease), b_now)
        .await
        .unwrap();
    assert!(
        recovered.dead_instances.is_empty(),
        "a live instance taken for dead: {recovered:?}"
    );
    b.close().await;
}

#[tokio::test]
async fn a_commit_claims_the_next_due_run_in_the_same_transaction() {
    let (_db, store) = store().await;
    let now = at("2026-01-01T00:00:00Z");
    insert(&store, new_run(Kind::Training, State::Polling, None), now).await;
    let claimed = claim_one(&store, "w", now).await;
    let next_run = insert(&store, new_run(Kind::Training, State::Polling, None), now).await;
    let before = store.group_stats();
    let next = ClaimRequest {
        owner: "w".into(),
        now,
        lease_until: add(now, Duration::from_secs(60)),
        limit: 1,
    };
    let done = store
        .commit_and_claim(&claimed, &poll(1, now), now, next.clone())
        .await
        .unwrap();
    assert!(matches!(done.outcome, TransitionOutcome::Committed { .. }));
    assert_eq!(done.next.len(), 1);
    assert_eq!(done.next[0].run.id, next_run.id);
    assert_eq!(done.next[0].run.lease_owner.as_deref(), Some("w"));
    assert_eq!(store.group_stats().transactions - before.transactions, 1);
    // A lost commit still claims.
    let third = insert(&store, new_run(Kind::Training, State::Polling, None), now).await;
    let done = store
        .commit_and_claim(&claimed, &poll(2, now), now, next)
        .await
        .unwrap();
    assert_eq!(done.outcome, TransitionOutcome::Lost);
    assert_eq!(
        done.next.iter().map(|c| c.run.id).collect::<Vec<_>>(),
        [third.id]
    );
}

// Operator actions.

#[tokio::test]
async fn a_cancel_request_is_recorded_once_and_makes_the_run_due_now() {
    let (_db, store) = store().await;
    let now = at("2026-01-01T00:00:00Z");
    let run = insert(&store, new_run(Kind::Training, State::Polling, None), now).await;
    let claimed = claim_one(&store, "w", now).await;
    let asked = add(now, Duration::from_secs(1));
    let CancelOutcome::Requested(r) = store.request_cancel(run.id, asked, "cancel").await.unwrap()
    else {
        panic!("requested")
    };
    assert!(r.cancel_requested);
    assert_eq!(r.next_due_at, Some(now), "already due: stays");
    assert!(matches!(
        store.request_cancel(run.id, asked, "again").await.unwrap(),
        CancelOutcome::Requested(_)
    ));
    assert_eq!(
        store.events(run.id).await.unwrap().len(),
        2,
        "recorded once"
    );
    // The step that was running did not see it: its poll is not the answer, the run is due now.
    let done = add(now, Duration::from_secs(2));
    let before = db_now(&store).await;
    store
        .commit_transition(&claimed, &poll(1, done), done)
        .await
        .unwrap();
    let committed = db_now(&store).await;
    let after = store.get_run(run.id).await.unwrap().unwrap();
    assert_after(after.next_due_at, before, committed, Duration::ZERO);
    assert!(after.cancel_requested);
    // Finished and unknown runs.
    let claimed = claim_one(&store, "w", done).await;
    store
        .commit_transition(&claimed, &to_state(State::Cancelled, done), done)
        .await
        .unwrap();
    assert!(matches!(
        store.request_cancel(run.id, done, "x").await.unwrap(),
        CancelOutcome::AlreadyTerminal(State::Cancelled)
    ));
    assert!(matches!(
        store
            .request_cancel(Uuid::now_v7(), done, "x")
            .await
            .unwrap(),
        CancelOutcome::NotFound
    ));
}

/// A run that failed in `state` because the engine gave up there.
async fn failed_run(store: &PgStore, new: NewRun, now: Timestamp) -> Run {
    let state = new.state;
    let run = insert(store, new, now).await;
    let claimed = store
        .claim_due("failer", now, add(now, Duration::from_secs(60)), 100)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.run.id == run.id)
        .unwrap();
    let mut t = to_state(State::Failed, now);
    t.detail = Some(Transition::gave_up_detail(state));
    t.error = Some((ErrorClass::Terminal, "refused".into()));
    store.commit_transition(&claimed, &t, now).await.unwrap();
    // Whatever else was due is left unleased (its version bumped).
    store.release_leases("failer").await.unwrap();
    store.get_run(run.id).await.unwrap().unwrap()
}

#[tokio::test]
async fn retry_and_rearm_give_the_sqlite_outcomes() {
    let (_db, store) = store().await;
    let now = at("2026-01-01T00:00:00Z");
    let failed = failed_run(&store, new_run(Kind::Training, State::Submitted, None), now).await;
    assert_eq!(failed.last_error.as_deref(), Some("refused"));
    let later = add(now, Duration::from_secs(10));
    // Refused, with what the target saw.
    let mut seen = None;
    let refused = store
        .retry_run(failed.id, later, "retry", |k, s, f| {
            seen = Some((k, s, f));
            None
        })
        .await
        .unwrap();
    assert!(matches!(
        refused,
        RetryOutcome::Refused {
            state: State::Failed,
            failed_in: Some(State::Submitted)
        }
    ));
    assert_eq!(
        seen,
        Some((Kind::Training, State::Failed, Some(State::Submitted)))
    );
    let RetryOutcome::Rearmed(r) = store
        .retry_run(failed.id, later, "retry", |_, _, f| f)
        .await
        .unwrap()
    else {
        panic!("rearmed")
    };
    assert_eq!(
        (r.state, r.attempt, r.next_due_at),
        (State::Submitted, 0, Some(later))
    );
    assert_eq!((r.last_error, r.lease_owner), (None, None));
    assert_eq!(r.version, failed.version + 1);
    let events = store.events(failed.id).await.unwrap();
    assert_eq!(
        (
            events.last().unwrap().from_state,
            events.last().unwrap().to_state
        ),
        (Some(State::Failed), State::Submitted)
    );
    assert!(matches!(
        store
            .retry_run(Uuid::now_v7(), later, "retry", |_, _, f| f)
            .await
            .unwrap(),
        RetryOutcome::NotFound
    ));

    // A failed deployment whose endpoint another unfinished deployment holds: busy, unchanged.
    let old = failed_run(&store, deployment("ep"), now).await;
    let newer = insert(&store, deployment("ep"), later).await;
    let busy = store
        .retry_run(old.id, later, "retry", |_, _, _| Some(State::Submitted))
        .await
        .unwrap();
    assert!(
        matches!(busy, RetryOutcome::EndpointBusy { ref other } if *other == newer.id.to_string())
    );
    let unchanged = store.get_run(old.id).await.unwrap().unwrap();
    assert_eq!(format!("{unchanged:?}"), format!("{old:?}"));

    // Cancel of a run that failed because the engine gave up: re-armed in Cancelling.
    let gave_up = failed_run(&store, new_run(Kind::Training, State::Polling, None), now).await;
    let CancelOutcome::Requested(r) = store
        .rearm_to_cancel(gave_up.id, later, "cancel", |_, f| {
            assert_eq!(f, Some(State::Polling));
            Some(State::Cancelling)
        })
        .await
        .unwrap()
    else {
        panic!("re-armed")
    };
    assert_eq!((r.state, r.cancel_requested), (State::Cancelling, true));
    assert_eq!(r.version, gave_up.version + 1);
    assert!(matches!(
        store
            .rearm_to_cancel(newer.id, later, "cancel", |_, _| Some(State::Cancelling))
            .await
            .unwrap(),
        CancelOutcome::NotFound
    ));
    let done = failed_run(&store, new_run(Kind::Training, State::Polling, None), now).await;
    assert!(matches!(
        store
            .rearm_to_cancel(done.id, later, "cancel", |_, _| None)
            .await
            .unwrap(),
        CancelOutcome::AlreadyTerminal(State::Failed)
    ));
}

#[tokio::test]
async fn a_step_starts_linked_runs_and_forgets_resources_in_its_transaction() {
    let (_db, store) = store().await;
    let now = at("2026-01-01T00:00:00Z");
    insert(&store, new_run(Kind::Automl, State::Polling, None), now).await;
    let claimed = claim_one(&store, "w", now).await;
    store
        .record_owned(OwnedKind::Model, "m1", &json!({}), now)
        .await
        .unwrap();
    insert(&store, deployment("busy-ep"), now).await;
    let mut t = poll(1, now);
    let child = deployment("new-ep");
    t.spawn = vec![child.clone(), deployment("busy-ep")];
    t.forget = vec![(OwnedKind::Model, "m1".into())];
    store.commit_transition(&claimed, &t, now).await.unwrap();
    assert!(store.get_run(child.id).await.unwrap().is_some());
    assert!(!store.is_owned(OwnedKind::Model, "m1").await.unwrap());
    let events = store.events(claimed.run.id).await.unwrap();
    let detail = events.last().unwrap().detail.clone().unwrap();
    assert!(
        detail.contains(&format!("started deployment run {}", child.id)),
        "{detail}"
    );
    assert!(detail.contains("deployment run not started"), "{detail}");
}

// Listing and counts.

/// Which runs a listing filter keeps, written out in Rust.
type Keep = Box<dyn Fn(&Run) -> bool>;

#[tokio::test]
async fn listing_pages_filters_and_cursors_match_the_stored_runs() {
    let (_db, store) = store().await;
    let base = at("2026-11-01T00:00:00Z");
    let mut all = Vec::new();
    for i in 0..23u64 {
        let kind = [Kind::Training, Kind::Automl, Kind::Script][i as usize % 3];
        let who = [Some("alice"), Some("bob"), None][i as usize % 3 / 2 + i as usize % 2];
        // Pairs of runs created at the same time: the id breaks the tie.
        let created = add(base, Duration::from_secs(i / 2));
        let mut new = new_run(kind, State::Uploading, who);
        new.request = json!({"i": i});
        let run = insert(&store, new, created).await;
        all.push(run.id);
    }
    // Some runs move on (a state, an error, a degradation).
    let now = add(base, Duration::from_secs(100));
    for (n, claimed) in store
        .claim_due("w", now, add(now, Duration::from_secs(60)), 9)
        .await
        .unwrap()
        .into_iter()
        .enumerate()
    {
        let mut t = to_state([State::Polling, State::Done, State::Failed][n % 3], now);
        if n % 2 == 0 {
            t.error = Some((ErrorClass::Capacity, "no capacity".into()));
        }
        t.degraded = n == 4;
        store.commit_transition(&claimed, &t, now).await.unwrap();
    }
    let mut runs = Vec::new();
    for id in &all {
        runs.push(store.get_run(*id).await.unwrap().unwrap());
    }
    runs.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.id)));
    let filters: Vec<(RunFilter, Keep)> = vec![
        (RunFilter::default(), Box::new(|_| true)),
        (
            RunFilter {
                kind: Some(Kind::Automl),
                ..Default::default()
            },
            Box::new(|r| r.kind == Kind::Automl),
        ),
        (
            RunFilter {
                kinds: vec![Kind::Training, Kind::Script],
                submitted_by: Some("alice".into()),
                ..Default::default()
            },
            Box::new(|r| r.kind != Kind::Automl && r.submitted_by.as_deref() == Some("alice")),
        ),
        (
            RunFilter {
                state: Some(State::Uploading),
                ..Default::default()
            },
            Box::new(|r| r.state == State::Uploading),
        ),
        (
            RunFilter {
                has_error: Some(true),
                ..Default::default()
            },
            Box::new(|r| r.last_error.is_some()),
        ),
        (
            RunFilter {
                has_error: Some(false),
                degraded: Some(false),
                ..Default::default()
            },
            Box::new(|r| r.last_error.is_none() && r.degraded_since.is_none()),
        ),
        (
            RunFilter {
                degraded: Some(true),
                ..Default::default()
            },
            Box::new(|r| r.degraded_since.is_some()),
        ),
        (
            RunFilter {
                created_after: Some(add(base, Duration::from_secs(3))),
                created_before: Some(add(base, Duration::from_secs(9))),
                ..Default::default()
            },
            Box::new(move |r| {
                r.created_at >= add(base, Duration::from_secs(3))
                    && r.created_at < add(base, Duration::from_secs(9))
            }),
        ),
        (
            RunFilter {
                updated_after: Some(now),
                ..Default::default()
            },
            Box::new(move |r| r.updated_at >= now),
        ),
        (
            RunFilter {
                updated_before: Some(now),
                ..Default::default()
            },
            Box::new(move |r| r.updated_at < now),
        ),
        (
            RunFilter {
                stuck_since: Some(add(base, Duration::from_secs(50))),
                ..Default::default()
            },
            Box::new(move |r| {
                r.next_due_at.is_some() && r.updated_at < add(base, Duration::from_secs(50))
            }),
        ),
    ];
    for (i, (filter, keep)) in filters.iter().enumerate() {
        let want: Vec<&Run> = runs.iter().filter(|r| keep(r)).collect();
        for summaries in [false, true] {
            // How the listing showed each run.
            let mut listed: Vec<String> = Vec::new();
            let mut after = None;
            loop {
                let f = RunFilter {
                    limit: 4,
                    after,
                    ..filter.clone()
                };
                let before = listed.len();
                after = if summaries {
                    let (page, _) = store
                        .list_run_summaries_with_counts(&f, None, None)
                        .await
                        .unwrap()
                        .expect("the cursor is a listed run");
                    listed.extend(page.runs.iter().map(|s| format!("{s:?}")));
                    page.next_cursor
                } else {
                    let page = store.list_runs(&f).await.unwrap();
                    listed.extend(page.runs.iter().map(|r| format!("{r:?}")));
                    page.next_cursor
                };
                assert!(listed.len() - before <= 4);
                if after.is_none() {
                    break;
                }
            }
            assert_eq!(listed.len(), want.len(), "filter {i}");
            for (got, want) in listed.iter().zip(&want) {
                let want = if summaries {
                    format!("{:?}", Summary::from(*want))
                } else {
                    format!("{want:?}")
                };
                assert_eq!(got, &want, "filter {i}");
            }
        }
    }
    // The cursor check: an unknown run, or another submitter's run, is no cursor.
    let bobs = runs
        .iter()
        .find(|r| r.submitted_by.as_deref() == Some("bob"))
        .unwrap();
    let alices = RunFilter {
        submitted_by: Some("alice".into()),
        after: Some(bobs.id),
        limit: 5,
        ..Default::default()
    };
    assert!(
        store
            .list_run_summaries_with_counts(&alices, None, Some("alice"))
            .await
            .unwrap()
            .is_none()
    );
    let unknown = RunFilter {
        after: Some(Uuid::now_v7()),
        limit: 5,
        ..Default::default()
    };
    assert!(
        store
            .list_run_summaries_with_counts(&unknown, None, None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.list_runs(&unknown).await.unwrap().runs.is_empty());
    // The counts that come with the page are count_by_state's.
    for (kind, who) in [
        (None, None),
        (Some(Kind::Training), None),
        (None, Some("alice")),
        (Some(Kind::Script), Some("bob")),
    ] {
        let (_, counts) = store
            .list_run_summaries_with_counts(&RunFilter::default(), kind, who)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(counts, store.count_by_state(kind, who).await.unwrap());
        let direct = runs
            .iter()
            .filter(|r| kind.is_none_or(|k| r.kind == k))
            .filter(|r| who.is_none_or(|w| r.submitted_by.as_deref() == Some(w)))
            .fold(BTreeMap::<String, i64>::new(), |mut m, r| {
                *m.entry(r.state.to_string()).or_default() += 1;
                m
            });
        let got: BTreeMap<String, i64> = counts
            .into_iter()
            .map(|(s, n)| (s.to_string(), n))
            .collect();
        assert_eq!(got, direct);
    }
}

type Key = (String, String, Option<String>);

/// The counts computed from the runs, and the kept ones (all slots added up, 0 left out).
async fn direct_and_kept(pool: &PgPool) -> (BTreeMap<Key, i64>, BTreeMap<Key, i64>) {
    let direct: Vec<(String, String, Option<String>, i64)> = sqlx::query_as(
        "SELECT kind, state, submitted_by, COUNT(*) FROM runs GROUP BY kind, state, submitted_by",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let kept: Vec<(String, String, Option<String>, i64)> = sqlx::query_as(
        "SELECT kind, state, submitted_by, SUM(n)::bigint FROM run_counts
         GROUP BY kind, state, submitted_by HAVING SUM(n) <> 0",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let map = |rows: Vec<(String, String, Option<String>, i64)>| {
        rows.into_iter()
            .map(|(k, s, by, n)| ((k, s, by), n))
            .collect::<BTreeMap<_, _>>()
    };
    (map(direct), map(kept))
}

async fn assert_counts_right(store: &PgStore, after: &str) {
    let (direct, kept) = direct_and_kept(&store.pool).await;
    assert_eq!(kept, direct, "kept counts differ after {after}");
    let mut by_kind_state: BTreeMap<(String, String), i64> = BTreeMap::new();
    for ((k, s, _), n) in &direct {
        *by_kind_state.entry((k.clone(), s.clone())).or_default() += n;
    }
    let answered: BTreeMap<(String, String), i64> = store
        .count_by_kind_state()
        .await
        .unwrap()
        .into_iter()
        .map(|(k, s, n)| ((k.to_string(), s.to_string()), n))
        .collect();
    assert_eq!(answered, by_kind_state, "count_by_kind_state after {after}");
    for kind in [None, Some(Kind::Training), Some(Kind::Automl)] {
        for by in [None, Some("alice"), Some("bob"), Some("nobody")] {
            let mut want: BTreeMap<String, i64> = BTreeMap::new();
            for ((k, s, b), n) in &direct {
                if kind.is_none_or(|kind| kind.as_str() == k)
                    && by.is_none_or(|by| b.as_deref() == Some(by))
                {
                    *want.entry(s.clone()).or_default() += n;
                }
            }
            let got: BTreeMap<String, i64> = store
                .count_by_state(kind, by)
                .await
                .unwrap()
                .into_iter()
                .map(|(s, n)| (s.to_string(), n))
                .collect();
            assert_eq!(got, want, "count_by_state({kind:?}, {by:?}) after {after}");
        }
    }
}

#[tokio::test]
async fn kept_counts_equal_a_count_through_every_change() {
    let (_db, store) = store().await;
    let now = at("2026-01-01T00:00:00Z");
    // Inserts from concurrent tasks (several connections: several slots).
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..30 {
        let s = store.clone();
        tasks.spawn(async move {
            let kind = [Kind::Training, Kind::Automl][i % 2];
            let who = [Some("alice"), Some("bob"), None][i % 3];
            s.insert_run(new_run(kind, State::Uploading, who), now)
                .await
                .unwrap()
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    assert_counts_right(&store, "inserts").await;
    // Transitions, concurrently, some lost.
    let claimed = store
        .claim_due("w", now, add(now, Duration::from_secs(60)), 20)
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, c) in claimed.iter().cloned().enumerate() {
        let s = store.clone();
        tasks.spawn(async move {
            let mut c = c;
            if i % 5 == 0 {
                c.run.version -= 1;
            }
            let to = [State::Polling, State::Done, State::Failed, State::Submitted][i % 4];
            s.commit_transition(&c, &to_state(to, now), now)
                .await
                .unwrap()
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    assert_counts_right(&store, "transitions").await;
    // Retry, cancel, delete.
    let finished: Vec<(String,)> =
        sqlx::query_as("SELECT id FROM runs WHERE next_due_at IS NULL ORDER BY id")
            .fetch_all(&store.pool)
            .await
            .unwrap();
    let first = Uuid::parse_str(&finished[0].0).unwrap();
    let second = Uuid::parse_str(&finished[1].0).unwrap();
    store
        .retry_run(first, now, "retry", |_, _, _| Some(State::Polling))
        .await
        .unwrap();
    assert_counts_right(&store, "retry").await;
    assert!(store.delete_finished_run(second).await.unwrap());
    assert_counts_right(&store, "delete").await;
    let claimed = claim_one_of(&store, now).await;
    store
        .request_cancel(claimed.run.id, now, "cancel")
        .await
        .unwrap();
    store
        .commit_transition(&claimed, &to_state(State::Cancelled, now), now)
        .await
        .unwrap();
    assert_counts_right(&store, "cancel").await;
    // A rolled-back insert, and raw changes of the counted columns.
    let mut tx = store.begin().await.unwrap();
    insert_in_for_test(&mut tx, now).await;
    drop(tx);
    assert_counts_right(&store, "a rollback").await;
    sqlx::query("UPDATE runs SET submitted_by = 'carol' WHERE submitted_by IS NULL")
        .execute(&store.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE runs SET kind = 'script', state = 'Collecting' WHERE state = 'Polling'")
        .execute(&store.pool)
        .await
        .unwrap();
    assert_counts_right(&store, "raw updates").await;
    sqlx::query("DELETE FROM runs WHERE submitted_by = 'bob'")
        .execute(&store.pool)
        .await
        .unwrap();
    assert_counts_right(&store, "a raw delete").await;
}

async fn claim_one_of(store: &PgStore, now: Timestamp) -> ClaimedRun {
    store
        .claim_due("w2", now, add(now, Duration::from_secs(60)), 1)
        .await
        .unwrap()
        .remove(0)
}

async fn insert_in_for_test(tx: &mut PgConnection, now: Timestamp) {
    sqlx::query(
        "INSERT INTO runs (id, kind, state, request, next_due_at, created_at, updated_at)
         VALUES ('rolled-back', 'training', 'Uploading', '{}', $1, $1, $1)",
    )
    .bind(now)
    .execute(&mut *tx)
    .await
    .unwrap();
}

#[tokio::test]
async fn metrics_and_endpoint_queries() {
    let (_db, store) = store().await;
    let t0 = at("2026-01-01T00:00:00Z");
    assert_eq!(store.next_due_at().await.unwrap(), None);
    assert_eq!(store.oldest_unfinished().await.unwrap(), None);
    let first = insert(&store, deployment("ep-a"), t0).await;
    let t1 = add(t0, Duration::from_secs(10));
    let teardown = NewRun {
        kind: Kind::Teardown,
        ..deployment("ep-b")
    };
    let second = insert(&store, teardown, t1).await;
    let t2 = add(t0, Duration::from_secs(20));
    let later_a = failed_run(&store, deployment("ep-c"), t2).await;
    assert_eq!(store.oldest_unfinished().await.unwrap(), Some(t0));
    assert_eq!(store.count_unfinished().await.unwrap(), 2);
    // A leased run is due when its lease ends.
    let claimed = claim_one(&store, "w", t0).await;
    assert_eq!(claimed.run.id, first.id);
    // (On this host's clock, which is the database's here, give or take the query's time.)
    let next = store.next_due_at().await.unwrap().unwrap();
    assert!((next - t1).abs() < chrono::Duration::seconds(1), "{next}");
    let endpoints = store.endpoints_with_latest_run().await.unwrap();
    let names: Vec<(String, Uuid)> = endpoints.into_iter().map(|(e, r)| (e, r.id)).collect();
    assert_eq!(
        names,
        vec![
            ("ep-c".to_string(), later_a.id),
            ("ep-b".to_string(), second.id),
            ("ep-a".to_string(), first.id)
        ]
    );
    assert_eq!(
        store
            .latest_run_for_endpoint(Kind::Teardown, "ep-b")
            .await
            .unwrap(),
        Some(second.id)
    );
    assert_eq!(
        store
            .latest_run_for_endpoint(Kind::Deployment, "ep-b")
            .await
            .unwrap(),
        None
    );
}

// Idempotency keys, instances, owned resources, retention, staging, sweeps, health.

#[tokio::test]
async fn idempotency_keys_are_recorded_once_replayed_and_expire() {
    let (_db, store) = store().await;
    let now = at("2026-01-01T00:00:00Z");
    let run = insert(&store, new_run(Kind::Training, State::Uploading, None), now).await;
    let claim = Claim {
        principal: "alice".into(),
        key: "k1".into(),
        request_hash: "h1".into(),
        expired_before: at("2025-12-01T00:00:00Z"),
    };
    let mut tx = store.begin().await.unwrap();
    misc::record_key_in(&mut tx, &claim, &run.id.to_string(), now)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // A second request with the same key loses, and its transaction stays usable.
    let mut tx = store.begin().await.unwrap();
    let e = misc::record_key_in(&mut tx, &claim, &run.id.to_string(), now)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NameTaken(ref n) if n == "Idempotency-Key"));
    sqlx::query("SELECT 1").execute(&mut *tx).await.unwrap();
    drop(tx);
    let record = store
        .idempotency_key("alice", "k1", claim.expired_before)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            record.request_hash.as_str(),
            record.run_id.clone(),
            record.reply,
            record.created_at
        ),
        ("h1", run.id.to_string(), None, now)
    );
    assert!(
        store
            .idempotency_key("bob", "k1", claim.expired_before)
            .await
            .unwrap()
            .is_none()
    );
    store
        .save_idempotent_reply(
            "alice",
            "k1",
            &run.id.to_string(),
            (201, "application/json", &b"{}"[..]),
        )
        .await
        .unwrap();
    let record = store
        .idempotency_key("alice", "k1", claim.expired_before)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        record.reply,
        Some((201, "application/json".to_string(), b"{}".to_vec()))
    );
    assert!(
        store
            .idempotency_key("alice", "k1", add(now, Duration::from_secs(1)))
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    // Expired keys go when the next key is recorded.
    let other = insert(&store, new_run(Kind::Training, State::Uploading, None), now).await;
    let mut tx = store.begin().await.unwrap();
    let later = Claim {
        key: "k2".into(),
        expired_before: add(now, Duration::from_secs(1)),
        ..claim.clone()
    };
    misc::record_key_in(&mut tx, &later, &other.id.to_string(), now)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM idempotency_keys")
        .fetch_all(&store.pool)
        .await
        .unwrap();
    assert_eq!(keys, ["k2"]);
}

#[tokio::test]
async fn a_submissions_key_is_recorded_with_its_run_and_a_second_request_with_it_loses() {
    let (_db, store) = store().await;
    let now = at("2026-01-01T00:00:00Z");
    let claim = Claim {
        principal: "alice".into(),
        key: "k".into(),
        request_hash: "h".into(),
        expired_before: at("2025-12-01T00:00:00Z"),
    };
    let submit = |new: NewRun| {
        let store = store.clone();
        let sub = std::sync::Arc::new(crate::store::Submission::default());
        sub.set_claim(claim.clone());
        async move {
            let r = sub.scope(store.insert_run(new, now)).await;
            (r, sub)
        }
    };
    let first = new_run(Kind::Training, State::Uploading, None);
    let (r, sub) = submit(first.clone()).await;
    r.unwrap();
    assert!(sub.storing() && !sub.lost_race());
    assert_eq!(sub.recorded_run(), Some(first.id.to_string()));
    let second = new_run(Kind::Training, State::Uploading, None);
    let (r, sub) = submit(second.clone()).await;
    assert!(matches!(r, Err(Error::NameTaken(_))));
    assert!(sub.lost_race());
    assert!(
        store.get_run(second.id).await.unwrap().is_none(),
        "rolled back"
    );
    let record = store
        .idempotency_key("alice", "k", claim.expired_before)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.run_id, first.id.to_string());
}

fn instance(worker_id: &str, host: &str, pid: u32) -> Instance {
    let mut me = Instance::this_process(worker_id, Duration::from_secs(60));
    me.host = host.to_string();
    me.pid = pid;
    me.pid_start = None;
    me
}

/// Sets `who`'s heartbeat `ago` (an interval) before the database's now.
async fn heartbeat_ago(store: &PgStore, who: &Instance, ago: &str) {
    sqlx::query(
        "UPDATE instances SET heartbeat_at = statement_timestamp() - $1::interval WHERE id = $2",
    )
    .bind(ago)
    .bind(&who.id)
    .execute(&store.pool)
    .await
    .unwrap();
}

/// A due run leased to `owner` for `until` less 2026-01-01 00:00 (from the database's now).
async fn leased_run(store: &PgStore, owner: &Instance, until: Timestamp) -> Run {
    let now = at("2026-01-01T00:00:00Z");
    let run = insert(store, new_run(Kind::Training, State::Uploading, None), now).await;
    let claimed = store.claim_due(&owner.id, now, until, 1).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].run.id, run.id);
    claimed[0].run.clone()
}

#[tokio::test]
async fn a_live_instances_lease_is_never_released_by_another_start() {
    let (_db, store) = store().await;
    let now = at("2026-01-01T00:00:10Z");
    let first = Instance::this_process("local", Duration::from_secs(60));
    store.register_instance(&first, now).await.unwrap();
    let run = leased_run(&store, &first, at("2026-01-01T00:01:00Z")).await;
    let second = Instance::this_process("local", Duration::from_secs(60));
    store.register_instance(&second, now).await.unwrap();
    assert_eq!(
        store.release_dead_leases(&second, now).await.unwrap(),
        Released::default()
    );
    let after = store.get_run(run.id).await.unwrap().unwrap();
    assert_eq!(after.lease_owner.as_deref(), Some(first.id.as_str()));
    assert_eq!(after.version, run.version);
    assert!(store.heartbeat_instance(&first, now).await.unwrap());
    store.release_leases(&first.id).await.unwrap();
    store.remove_instance(&first).await.unwrap();
    assert!(!store.heartbeat_instance(&first, now).await.unwrap());
}

#[tokio::test]
async fn an_instance_whose_process_is_gone_from_this_host_is_dead_at_once() {
    let (_db, store) = store().await;
    let now = at("2026-01-01T00:00:10Z");
    let second = Instance::this_process("local", Duration::from_secs(60));
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let gone_pid = child.id();
    child.wait().unwrap();
    let crashed = instance("local", &second.host, gone_pid);
    store.register_instance(&crashed, now).await.unwrap();
    let run = leased_run(&store, &crashed, at("2026-01-01T00:01:00Z")).await;
    let released = store.release_dead_leases(&second, now).await.unwrap();
    assert_eq!(released.leases, 1);
    assert_eq!(released.dead_instances, vec![crashed.id.clone()]);
    let after = store.get_run(run.id).await.unwrap().unwrap();
    assert_eq!(after.lease_owner, None);
    assert!(after.version > run.version);
}

#[tokio::test]
async fn an_instance_elsewhere_is_dead_once_its_heartbeat_is_older_than_its_lease() {
    let (_db, store) = store().await;
    let second = Instance::this_process("local", Duration::from_secs(60));
    let remote = instance("local", "another-host", 1);
    store
        .register_instance(&remote, at("2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    let run = leased_run(&store, &remote, at("2026-01-01T00:10:00Z")).await;
    // (The callers' `now` plays no part: heartbeats and silence are on the database's clock.)
    assert_eq!(
        store
            .release_dead_leases(&second, at("2026-01-01T00:05:00Z"))
            .await
            .unwrap(),
        Released::default()
    );
    heartbeat_ago(&store, &remote, "59 seconds").await;
    assert_eq!(
        store
            .release_dead_leases(&second, at("2026-01-01T00:05:00Z"))
            .await
            .unwrap(),
        Released::default()
    );
    heartbeat_ago(&store, &remote, "60 seconds").await;
    let released = store
        .release_dead_leases(&second, at("2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!((released.leases, released.dead_instances.len()), (1, 1));
    assert_eq!(
        store.get_run(run.id).await.unwrap().unwrap().lease_owner,
        None
    );
}

#[tokio::test]
async fn another_worker_ids_instances_are_left_to_their_lease_expiry() {
    let (_db, store) = store().await;
    let second = Instance::this_process("local", Duration::from_secs(60));
    let other = instance("other", "another-host", 1);
    store
        .register_instance(&other, at("2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    let run = leased_run(&store, &other, at("2026-01-01T00:05:00Z")).await;
    heartbeat_ago(&store, &other, "2 minutes").await;
    assert_eq!(
        store
            .release_dead_leases(&second, at("2026-01-01T00:02:00Z"))
            .await
            .unwrap(),
        Released::default()
    );
    expire_lease(&store, run.id).await;
    let released = store
        .release_dead_leases(&second, at("2026-01-01T00:05:00Z"))
        .await
        .unwrap();
    assert_eq!(released.leases, 1, "an expired lease is anyone's");
    let after = store.get_run(run.id).await.unwrap().unwrap();
    assert!(after.lease_owner.is_none() && after.version > run.version);
}

async fn instance_ids(store: &PgStore) -> Vec<String> {
    let mut ids: Vec<String> = sqlx::query_scalar("SELECT id FROM instances")
        .fetch_all(&store.pool)
        .await
        .unwrap();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_heartbeat_forgets_instances_long_silent_that_hold_no_lease() {
    let (_db, store) = store().await;
    let now = SystemClock.now();
    // Leases of 60 s: forgotten once silent for ten minutes (on the database's clock).
    let (gone, holder, recent) = (
        instance("gone", "another-host", 1),
        instance("holder", "another-host", 1),
        instance("recent", "another-host", 1),
    );
    let me = instance("me", "another-host", 1);
    for i in [&gone, &holder, &recent, &me] {
        store.register_instance(i, now).await.unwrap();
    }
    let run = leased_run(&store, &holder, at("2026-01-01T00:01:00Z")).await;
    heartbeat_ago(&store, &gone, "10 minutes").await;
    heartbeat_ago(&store, &holder, "10 minutes").await;
    heartbeat_ago(&store, &recent, "9 minutes 50 seconds").await;
    let all = instance_ids(&store).await;
    assert_eq!(all.len(), 4);
    assert!(store.heartbeat_instance(&me, now).await.unwrap());
    let mut want = vec![holder.id.clone(), me.id.clone(), recent.id.clone()];
    want.sort();
    assert_eq!(
        instance_ids(&store).await,
        want,
        "only the silent one without a lease goes"
    );
    // Its lease released, the holder goes too; `recent` once its ten minutes are up.
    store.release_leases(&holder.id).await.unwrap();
    heartbeat_ago(&store, &recent, "10 minutes").await;
    assert!(store.heartbeat_instance(&me, now).await.unwrap());
    assert_eq!(instance_ids(&store).await, vec![me.id.clone()]);
    assert_eq!(
        store.get_run(run.id).await.unwrap().unwrap().lease_owner,
        None
    );
}

#[tokio::test]
async fn owned_resources_are_recorded_refreshed_listed_and_forgotten() {
    let (_db, store) = store().await;
    let t0 = at("2026-01-01T00:00:00Z");
    let t1 = add(t0, Duration::from_secs(1));
    store
        .record_owned(OwnedKind::Model, "m1", &json!({"v": 1}), t0)
        .await
        .unwrap();
    store
        .record_owned(OwnedKind::Model, "m2", &json!({}), t1)
        .await
        .unwrap();
    store
        .record_owned(OwnedKind::Model, "m1", &json!({"v": 2}), t1)
        .await
        .unwrap();
    let config = |models: &[&str]| json!({"ProductionVariants": models.iter().map(|m| json!({"ModelName": m})).collect::<Vec<_>>()});
    for (name, spec) in [
        ("c-b", config(&["m1", "m2"])),
        ("c-a", config(&["m1"])),
        ("c-odd", json!({"ProductionVariants": {"ModelName": "m1"}})),
        ("c-none", json!({})),
    ] {
        store
            .record_owned(OwnedKind::EndpointConfig, name, &spec, t0)
            .await
            .unwrap();
    }
    let models = store.list_owned(OwnedKind::Model).await.unwrap();
    let listed: Vec<_> = models
        .iter()
        .map(|o| (o.name.as_str(), o.spec.clone(), o.created_at))
        .collect();
    assert_eq!(
        listed,
        vec![("m2", json!({}), t1), ("m1", json!({"v": 2}), t0)],
        "refreshed spec, first created_at, newest first"
    );
    assert_eq!(
        store.configs_using_model("m1").await.unwrap(),
        ["c-a", "c-b"]
    );
    assert_eq!(store.configs_using_model("m2").await.unwrap(), ["c-b"]);
    assert!(store.is_owned(OwnedKind::Model, "m1").await.unwrap());
    assert!(
        !store
            .is_owned(OwnedKind::EndpointConfig, "m1")
            .await
            .unwrap()
    );
    store.forget_owned(OwnedKind::Model, "m1").await.unwrap();
    assert!(!store.is_owned(OwnedKind::Model, "m1").await.unwrap());
}

async fn run_with_history(store: &PgStore, state: State, updated_at: &str, rows: i64) -> String {
    let id = Uuid::now_v7().to_string();
    let due = (!state.is_terminal()).then(|| at(updated_at));
    let mut tx = store.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO runs (id, kind, state, request, next_due_at, created_at, updated_at)
         VALUES ($1, 'training', $2, '{}', $3, $4, $4)",
    )
    .bind(&id)
    .bind(state.as_str())
    .bind(due)
    .bind(at(updated_at))
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO run_events (run_id, seq, from_state, to_state, at, attempt)
         SELECT $1, seq, 'Polling', 'Polling', $2, 0 FROM generate_series(1, $3::bigint) seq",
    )
    .bind(&id)
    .bind(at(updated_at))
    .bind(rows)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    id
}

async fn seqs(store: &PgStore, id: &str) -> Vec<i64> {
    sqlx::query_scalar("SELECT seq FROM run_events WHERE run_id = $1 ORDER BY seq")
        .bind(id)
        .fetch_all(&store.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn finished_runs_lose_their_history_after_the_retention_but_keep_their_last_row() {
    let (_db, store) = store().await;
    let old = "2026-01-01T00:00:00Z";
    let recent = "2026-06-01T00:00:00Z";
    let old_done = run_with_history(&store, State::Done, old, 5).await;
    let old_failed = run_with_history(&store, State::Failed, old, 3).await;
    let recent_done = run_with_history(&store, State::Done, recent, 4).await;
    let running = run_with_history(&store, State::Polling, old, 6).await;
    let long = run_with_history(&store, State::Cancelled, old, misc::BATCH * 2 + 7).await;
    let cutoff = at("2026-03-01T00:00:00Z");
    let pruned = store.prune_history(cutoff).await.unwrap();
    assert_eq!(pruned, 4 + 2 + misc::BATCH as u64 * 2 + 6);
    assert_eq!(seqs(&store, &old_done).await, vec![5]);
    assert_eq!(seqs(&store, &old_failed).await, vec![3]);
    assert_eq!(seqs(&store, &long).await, vec![misc::BATCH * 2 + 7]);
    assert_eq!(seqs(&store, &recent_done).await, vec![1, 2, 3, 4]);
    assert_eq!(seqs(&store, &running).await.len(), 6);
    assert_eq!(store.count_unfinished().await.unwrap(), 1);
    assert_eq!(store.prune_history(cutoff).await.unwrap(), 0);
}

#[tokio::test]
async fn staging_runs_and_purges() {
    let (_db, store) = store().await;
    let t0 = at("2026-01-01T00:00:00Z");
    let mut own = new_run(Kind::Training, State::Uploading, None);
    own.request = json!({"connection": null});
    let own = insert(&store, own, t0).await;
    let mut theirs = new_run(Kind::Script, State::Uploading, None);
    theirs.request = json!({"connection": {"name": "c"}});
    insert(&store, theirs, t0).await;
    insert(&store, deployment("ep"), t0).await;
    let finished = failed_run(&store, new_run(Kind::Automl, State::Polling, None), t0).await;
    let recent = store.recent_staging_runs(t0, 10).await.unwrap();
    let mut ids: Vec<String> = recent.iter().map(|r| r.id.clone()).collect();
    ids.sort();
    let mut want = vec![own.id.to_string(), finished.id.to_string()];
    want.sort();
    assert_eq!(ids, want);
    let later = add(t0, Duration::from_secs(1));
    assert_eq!(
        store
            .recent_staging_runs(later, 10)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id.clone())
            .collect::<Vec<_>>(),
        [own.id.to_string()]
    );
    let past = store.runs_past_retention(later, 10).await.unwrap();
    assert_eq!(past.len(), 1);
    assert_eq!(
        (past[0].id.clone(), past[0].kind),
        (finished.id.to_string(), Kind::Automl)
    );
    let id = finished.id.to_string();
    store
        .record_staging_purge(&id, "3 objects", later)
        .await
        .unwrap();
    store
        .record_staging_purge(&id, "again", add(later, Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(
        store.staging_purge(&id).await.unwrap(),
        Some((
            "2026-01-01T00:00:01.000000Z".to_string(),
            "3 objects".to_string()
        ))
    );
    assert!(
        store
            .runs_past_retention(later, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.staging_purge("nope").await.unwrap(), None);
}

#[tokio::test]
async fn sweeps_read_followed_runs_and_make_them_due() {
    let (_db, store) = store().await;
    let t0 = at("2026-01-01T00:00:00Z");
    let mut with_job = new_run(Kind::Training, State::Polling, None);
    with_job.context = json!({"job_name": "j1", "sagemaker_status": "InProgress"});
    with_job.request = json!({"connection": {"name": "c"}});
    let with_job = store
        .insert_run_with_secret(with_job, b"s".to_vec(), t0)
        .await
        .unwrap();
    let by_name = insert(&store, new_run(Kind::Training, State::Polling, None), t0).await;
    let mut nameless = new_run(Kind::Training, State::Polling, None);
    nameless.resource_name = None;
    insert(&store, nameless, t0).await;
    insert(&store, new_run(Kind::Automl, State::Polling, None), t0).await;
    let mut followed = store
        .followed_runs(&[Kind::Training, Kind::Transform], State::Polling)
        .await
        .unwrap();
    followed.sort_by_key(|f| f.id != with_job.id);
    assert_eq!(followed.len(), 2);
    assert_eq!(followed[0].id, with_job.id);
    assert_eq!(followed[0].job_name, "j1");
    assert_eq!(followed[0].status.as_deref(), Some("InProgress"));
    assert_eq!(followed[0].connection, Some(json!({"name": "c"})));
    assert_eq!(followed[0].sealed.as_deref(), Some(&b"s"[..]));
    assert_eq!(followed[0].updated_at, t0);
    assert_eq!(followed[1].id, by_name.id);
    assert_eq!(Some(followed[1].job_name.clone()), by_name.resource_name);
    assert_eq!(
        (followed[1].status.clone(), followed[1].connection.clone()),
        (None, None)
    );

    // Everything is due at t0 now; move them later (on the database's clock, which the store
    // judges due times and leases by), one of them leased.
    sqlx::query("UPDATE runs SET next_due_at = statement_timestamp() + interval '5 minutes'")
        .execute(&store.pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE runs SET lease_owner = 'w', lease_until = statement_timestamp() + interval '5 minutes'
         WHERE id = $1",
    )
    .bind(by_name.id.to_string())
        .execute(&store.pool)
        .await
        .unwrap();
    let now = add(t0, Duration::from_secs(10));
    let made = store
        .make_due(&[with_job.id, by_name.id], State::Polling, now)
        .await
        .unwrap();
    assert_eq!(made, [with_job.id], "not the leased one");
    assert!(
        store
            .make_due(&[], State::Polling, now)
            .await
            .unwrap()
            .is_empty()
    );
    // Two training runs due later and unleased: the nameless one and... none else.
    let n = store
        .make_due_after(&[Kind::Training], State::Polling, now, now)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        store
            .make_due_after(&[Kind::Automl], State::Submitted, now, now)
            .await
            .unwrap(),
        0
    );
}

/// Moves every sweep's last success and hold `by` (an interval) into the past.
async fn age_sweeps(store: &PgStore, by: &str) {
    sqlx::query(
        "UPDATE sweeps SET last_success = last_success - $1::interval,
                           held_until = held_until - $1::interval",
    )
    .bind(by)
    .execute(&store.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn sweeps_are_taken_in_turns_on_the_databases_clock() {
    let (db, store) = store().await;
    let other = PgStore::open(&db.url).await.unwrap();
    let minute = Duration::from_secs(60);
    // Callers' clocks play no part: one of them runs a day ahead.
    let now = SystemClock.now();
    let ahead = now + chrono::Duration::days(1);
    let before = db_now(&store).await;
    let first = store
        .take_sweep(Kind::Training, "t1", "a", now, minute, minute)
        .await
        .unwrap()
        .expect("never swept: taken");
    assert_eq!(first.previous, None);
    assert!(before <= first.started && first.started <= db_now(&store).await);
    for (holder, at) in [("b", ahead), ("a", now)] {
        assert_eq!(
            other
                .take_sweep(Kind::Training, "t1", holder, at, minute, minute)
                .await
                .unwrap(),
            None,
            "held"
        );
    }
    store
        .finish_sweep(Kind::Training, "t1", "a", Some(first.started))
        .await
        .unwrap();
    // Swept just now: nobody's turn, not even for a clock a day ahead; another kind is.
    assert_eq!(
        other
            .take_sweep(Kind::Training, "t1", "b", ahead, minute, minute)
            .await
            .unwrap(),
        None
    );
    assert!(
        other
            .take_sweep(Kind::Automl, "t1", "b", ahead, minute, minute)
            .await
            .unwrap()
            .is_some()
    );
    let ages = other.sweep_ages(ahead).await.unwrap();
    assert_eq!(ages.len(), 1);
    assert!(ages[0].2 < Duration::from_secs(5), "{ages:?}");
    // A minute later it is b's turn, looking back to a's start.
    age_sweeps(&store, "1 minute").await;
    let second = other
        .take_sweep(Kind::Training, "t1", "b", ahead, minute, minute)
        .await
        .unwrap()
        .expect("b's turn");
    assert_eq!(second.previous.map(|p| add(p, minute)), Some(first.started));
    // b holds it until its hold ends, then c takes it; b's late finish changes nothing.
    assert!(
        store
            .take_sweep(Kind::Training, "t1", "c", now, minute, minute)
            .await
            .unwrap()
            .is_none()
    );
    age_sweeps(&store, "1 minute").await;
    let third = store
        .take_sweep(Kind::Training, "t1", "c", now, minute, minute)
        .await
        .unwrap()
        .expect("b's hold ended");
    other
        .finish_sweep(Kind::Training, "t1", "b", Some(second.started))
        .await
        .unwrap();
    let training = |ages: Vec<(Kind, String, Duration)>| {
        ages.into_iter()
            .find(|(k, t, _)| *k == Kind::Training && t == "t1")
            .map(|(_, _, age)| age)
            .unwrap()
    };
    assert!(training(store.sweep_ages(now).await.unwrap()) >= Duration::from_secs(120));
    store
        .finish_sweep(Kind::Training, "t1", "c", Some(third.started))
        .await
        .unwrap();
    assert!(training(store.sweep_ages(now).await.unwrap()) < Duration::from_secs(5));
    other.close().await;
}

#[tokio::test]
async fn the_probe_write_proves_the_store_writes() {
    let (_db, store) = store().await;
    let now = at("2026-01-01T00:00:00Z");
    store.probe_write(now).await.unwrap();
    store
        .probe_write(add(now, Duration::from_secs(1)))
        .await
        .unwrap();
    let at_: Timestamp = sqlx::query_scalar("SELECT at FROM store_probe WHERE id = 1")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(at_, add(now, Duration::from_secs(1)));
    assert_eq!(store.write_failure(now).await, None);
    store.ping().await.unwrap();
    // A read-only database is refused at start-up.
    sqlx::query("SELECT 1").execute(&store.pool).await.unwrap();
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "ALTER DATABASE \"{name}\" SET default_transaction_read_only = on"
    )))
    .execute(&store.pool)
    .await
    .unwrap();
    let url = {
        let mut u = url::Url::parse(&admin_url()).unwrap();
        u.set_path(&format!("/{name}"));
        u.to_string()
    };
    let e = PgStore::open(&url).await.unwrap_err();
    assert!(matches!(e, Error::ReadOnly(_)), "{e}");
}

#[test]
fn postgres_errors_are_classified_by_sqlstate() {
    for code in [
        "08006", "53100", "57P01", "25006", "40001", "40P01", "57014",
    ] {
        assert!(unavailable_sqlstate(code), "{code}");
    }
    for code in [
        "23505", "23503", "22P02", "42P01", "21000", "22021", "42501",
    ] {
        assert!(!unavailable_sqlstate(code), "{code}");
    }
    assert!(is_unavailable(&Error::Stalled(Duration::from_secs(1))));
    assert!(is_unavailable(&Error::Database(sqlx::Error::PoolTimedOut)));
    assert!(!is_unavailable(&Error::Corrupt("x".into())));
}

/// The listing's main shapes read an index in listing order at 20,000 runs (analyzed): no scan
/// of every run, no sort. (Plans, not timings; PostgreSQL plans by cost, so the test asks for
/// no sequential scan and no sort rather than for one index by name.)
#[tokio::test]
async fn each_main_listing_shape_reads_an_index_in_listing_order() {
    let (_db, store) = store().await;
    sqlx::query(
        "INSERT INTO runs (id, kind, state, request, next_due_at, created_at, updated_at,
                           submitted_by, last_error, degraded_since)
         SELECT gen_random_uuid()::text,
                (ARRAY['training', 'automl', 'script', 'transform'])[1 + i % 4],
                (ARRAY['Done', 'Failed', 'Polling', 'Cancelled', 'Done', 'Done'])[1 + i % 6],
                '{}', CASE WHEN i % 6 = 2 THEN now() END,
                now() - make_interval(secs => i), now() - make_interval(secs => i),
                'user' || (i % 20), CASE WHEN i % 50 = 0 THEN 'boom' END,
                CASE WHEN i % 500 = 2 THEN now() END
         FROM generate_series(1, 20000) i",
    )
    .execute(&store.pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE runs")
        .execute(&store.pool)
        .await
        .unwrap();
    let cursor: String =
        sqlx::query_scalar("SELECT id FROM runs ORDER BY created_at DESC OFFSET 9000 LIMIT 1")
            .fetch_one(&store.pool)
            .await
            .unwrap();
    let cursor = Some(Uuid::parse_str(&cursor).unwrap());
    let t = chrono::Utc::now() - chrono::Duration::hours(1);
    let shapes: Vec<(&str, RunFilter)> = vec![
        ("all", RunFilter::default()),
        (
            "a deep cursor page",
            RunFilter {
                after: cursor,
                ..Default::default()
            },
        ),
        (
            "created in a range",
            RunFilter {
                created_after: Some(t - chrono::Duration::hours(1)),
                created_before: Some(t),
                ..Default::default()
            },
        ),
        (
            "one state",
            RunFilter {
                state: Some(State::Failed),
                ..Default::default()
            },
        ),
        (
            "one state, a cursor page",
            RunFilter {
                state: Some(State::Failed),
                after: cursor,
                ..Default::default()
            },
        ),
        (
            "one kind in one state",
            RunFilter {
                kind: Some(Kind::Automl),
                state: Some(State::Done),
                ..Default::default()
            },
        ),
        (
            "one submitter's runs of some kinds, a cursor page",
            RunFilter {
                submitted_by: Some("user3".into()),
                kinds: vec![Kind::Training, Kind::Automl],
                after: cursor,
                ..Default::default()
            },
        ),
        (
            "with an error",
            RunFilter {
                has_error: Some(true),
                ..Default::default()
            },
        ),
        (
            "degraded",
            RunFilter {
                degraded: Some(true),
                ..Default::default()
            },
        ),
        (
            "stuck",
            RunFilter {
                stuck_since: Some(t),
                ..Default::default()
            },
        ),
    ];
    let mut wrong = Vec::new();
    for (name, filter) in shapes {
        for columns in [queries::Columns::Full, queries::Columns::Summary] {
            let mut q = sqlx::QueryBuilder::new("EXPLAIN ");
            queries::push_list(&mut q, columns, &filter, 50);
            let plan: Vec<String> = q.build_query_scalar().fetch_all(&store.pool).await.unwrap();
            let plan = plan.join("\n");
            if plan.contains("Seq Scan") || plan.contains("Sort") || !plan.contains("Index") {
                wrong.push(format!("{name}:\n{plan}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

/// A cancel request and a step's commit on the same run at the same moment (two replicas)
/// both append to its history: the row lock orders them, so neither fails on a taken sequence
/// number and the history stays 1, 2, 3.
#[tokio::test]
async fn concurrent_writes_to_one_run_keep_its_history_in_sequence() {
    let (db, store) = store().await;
    let other = PgStore::open(&db.url).await.unwrap();
    let now = at("2026-01-01T00:00:00Z");
    for _ in 0..20 {
        insert(&store, new_run(Kind::Training, State::Polling, None), now).await;
    }
    let claimed = store
        .claim_due("w", now, add(now, Duration::from_secs(60)), 20)
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for c in claimed.iter().cloned() {
        let (a, b) = (store.clone(), other.clone());
        tasks.spawn(async move {
            let t = poll(1, now);
            let (committed, cancelled) = tokio::join!(
                a.commit_transition(&c, &t, now),
                b.request_cancel(c.run.id, now, "cancel")
            );
            assert!(matches!(
                committed.unwrap(),
                TransitionOutcome::Committed { .. }
            ));
            assert!(matches!(cancelled.unwrap(), CancelOutcome::Requested(_)));
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    for c in claimed {
        let seqs: Vec<i64> = store
            .events(c.run.id)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert!(
            store
                .get_run(c.run.id)
                .await
                .unwrap()
                .unwrap()
                .cancel_requested
        );
    }
    other.close().await;
}

/// Waits for the next wake-up of `wake`, failing the test after a generous bound.
async fn woken(wake: &tokio::sync::Notify, what: &str) {
    tokio::time::timeout(Duration::from_secs(10), wake.notified())
        .await
        .unwrap_or_else(|_| panic!("no wake-up for {what}"));
}

#[tokio::test]
async fn another_replicas_new_run_cancel_and_retry_wake_this_replicas_engine() {
    let (db, ours) = store().await;
    let theirs = PgStore::open(&db.url).await.unwrap();
    let wake = Arc::new(tokio::sync::Notify::new());
    let listener = ours.forward_wakeups(wake.clone());
    // The listener wakes once when it starts listening (it may have missed something).
    woken(&wake, "the start of listening").await;
    let now = at("2026-01-01T00:00:00Z");

    let run = insert(&theirs, new_run(Kind::Training, State::Polling, None), now).await;
    woken(&wake, "a new run").await;

    let claimed = claim_one(&theirs, "them", now).await;
    theirs
        .commit_transition(&claimed, &poll(1, now), now)
        .await
        .unwrap();
    let cancel = theirs
        .request_cancel(run.id, add(now, Duration::from_secs(1)), "cancel requested")
        .await
        .unwrap();
    assert!(matches!(cancel, CancelOutcome::Requested(_)));
    woken(&wake, "a cancel request").await;

    let failed = failed_run(
        &theirs,
        new_run(Kind::Training, State::Submitted, None),
        now,
    )
    .await;
    woken(&wake, "the failed run's insert").await;
    let retried = theirs
        .retry_run(
            failed.id,
            add(now, Duration::from_secs(2)),
            "retry",
            |_, _, f| f,
        )
        .await
        .unwrap();
    assert!(matches!(retried, RetryOutcome::Rearmed(_)));
    woken(&wake, "a retry").await;
    listener.abort();
}
