//! SqliteStore tests on real SQLite files.

use super::*;
use crate::model::{Kind, State};

async fn temp_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .unwrap();
    (dir, store)
}

#[tokio::test]
async fn lookup_tables_hold_exactly_the_kinds_and_states_of_the_code() {
    let (_dir, store) = temp_store().await;
    let mut kinds: Vec<String> = sqlx::query_scalar("SELECT name FROM run_kinds ORDER BY name")
        .fetch_all(store.reader())
        .await
        .unwrap();
    let mut want: Vec<String> = Kind::ALL.iter().map(|k| k.as_str().to_string()).collect();
    kinds.sort();
    want.sort();
    assert_eq!(
        kinds, want,
        "add a migration inserting the new kind into run_kinds"
    );
    let states: Vec<(String, i64)> = sqlx::query_as("SELECT name, terminal FROM run_states")
        .fetch_all(store.reader())
        .await
        .unwrap();
    assert_eq!(states.len(), State::ALL.len());
    for (name, terminal) in states {
        let s = State::parse(&name).expect("a state the code knows");
        assert_eq!(s.is_terminal(), terminal == 1, "{name}");
    }
}

#[tokio::test]
async fn an_unknown_kind_or_state_is_refused_by_the_database() {
    let (_dir, store) = temp_store().await;
    let insert = |kind: &'static str, state: &'static str| {
        sqlx::query(
            "INSERT INTO runs (id, kind, state, request, next_due_at, created_at, updated_at)
             VALUES ('x', ?1, ?2, '{}', 't', 't', 't')",
        )
        .bind(kind)
        .bind(state)
    };
    assert!(
        insert("mining", "Uploading")
            .execute(&store.writer)
            .await
            .is_err()
    );
    assert!(
        insert("training", "Sleeping")
            .execute(&store.writer)
            .await
            .is_err()
    );
    assert!(
        insert("training", "Uploading")
            .execute(&store.writer)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn upgrading_to_lookup_tables_keeps_every_run_and_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    let store = SqliteStore::connect(&url).await.unwrap();
    MIGRATOR.run_to(2, &store.writer).await.unwrap();
    sqlx::query(
        "INSERT INTO runs (id, kind, state, request, context, resource_name, next_due_at,
                           submitted_by, created_at, updated_at)
         VALUES ('01a21d20-36af-714b-8906-7f99092cdecf', 'training', 'Polling', '{\"a\":1}', '{\"polls\":3}', 'job-1',
                 '2026-01-01T00:00:00.000000Z', 'essedum', '2026-01-01T00:00:00.000000Z',
                 '2026-01-01T00:00:00.000000Z')",
    )
    .execute(&store.writer)
    .await
    .unwrap();
    for (seq, from, to) in [(1, None, "Uploading"), (2, Some("Uploading"), "Polling")] {
        sqlx::query(
            "INSERT INTO run_events (run_id, seq, from_state, to_state, at, attempt)
             VALUES ('01a21d20-36af-714b-8906-7f99092cdecf', ?1, ?2, ?3, '2026-01-01T00:00:00.000000Z', 0)",
        )
        .bind(seq)
        .bind(from)
        .bind(to)
        .execute(&store.writer)
        .await
        .unwrap();
    }
    store.migrate().await.unwrap();

    let run = store
        .find_run("job-1")
        .await
        .unwrap()
        .expect("the run survived");
    assert_eq!((run.kind, run.state), (Kind::Training, State::Polling));
    assert_eq!(run.context["polls"], 3);
    assert_eq!(run.submitted_by.as_deref(), Some("essedum"));
    let events = store.events(run.id).await.unwrap();
    assert_eq!(events.len(), 2, "the history survived");
    // The history still belongs to the runs table: deleting a run removes its history.
    sqlx::query("DELETE FROM runs WHERE id = '01a21d20-36af-714b-8906-7f99092cdecf'")
        .execute(&store.writer)
        .await
        .unwrap();
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM run_events")
        .fetch_one(store.reader())
        .await
        .unwrap();
    assert_eq!(left, 0);
    let fk: Vec<(String,)> =
        sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_list('run_events')")
            .fetch_all(store.reader())
            .await
            .unwrap();
    assert!(fk.iter().any(|(t,)| t == "runs"), "{fk:?}");
}

fn instance(worker_id: &str, host: &str, pid: u32) -> Instance {
    let mut me = Instance::this_process(worker_id, std::time::Duration::from_secs(60));
    me.host = host.to_string();
    me.pid = pid;
    me.pid_start = None;
    me
}

/// A due run leased to `owner` until `until`; returns its version after the claim.
async fn leased_run(store: &SqliteStore, owner: &Instance, until: crate::clock::Timestamp) -> Run {
    let now = crate::clock::from_db("2026-01-01T00:00:00.000000Z").unwrap();
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
            now,
        )
        .await
        .unwrap();
    let claimed = store.claim_due(&owner.id, now, until, 1).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].run.id, run.id);
    claimed[0].run.clone()
}

fn at(s: &str) -> crate::clock::Timestamp {
    crate::clock::from_db(s).unwrap()
}

#[test]
fn instances_of_one_worker_id_get_distinct_lease_owners() {
    let a = Instance::this_process("local", std::time::Duration::from_secs(60));
    let b = Instance::this_process("local", std::time::Duration::from_secs(60));
    assert_ne!(a.id, b.id);
    assert!(a.id.starts_with("local#") && b.id.starts_with("local#"));
}

#[tokio::test]
async fn a_live_instances_lease_is_never_released_by_another_start() {
    let (_dir, store) = temp_store().await;
    let now = at("2026-01-01T00:00:10.000000Z");
    // The first instance is this very process: alive on this host, heartbeat fresh.
    let first = Instance::this_process("local", std::time::Duration::from_secs(60));
    store.register_instance(&first, now).await.unwrap();
    let run = leased_run(&store, &first, at("2026-01-01T00:01:00.000000Z")).await;

    let second = Instance::this_process("local", std::time::Duration::from_secs(60));
    store.register_instance(&second, now).await.unwrap();
    let released = store.release_dead_leases(&second, now).await.unwrap();
    assert_eq!(released, Released::default());
    let after = store.get_run(run.id).await.unwrap().unwrap();
    assert_eq!(after.lease_owner.as_deref(), Some(first.id.as_str()));
    assert_eq!(after.version, run.version, "the holder can still commit");
}

#[tokio::test]
async fn an_instance_whose_process_is_gone_from_this_host_is_dead_at_once() {
    let (_dir, store) = temp_store().await;
    let now = at("2026-01-01T00:00:10.000000Z");
    let me = Instance::this_process("local", std::time::Duration::from_secs(60));
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let gone_pid = child.id();
    child.wait().unwrap();
    let crashed = instance("local", &me.host, gone_pid);
    store.register_instance(&crashed, now).await.unwrap();
    let run = leased_run(&store, &crashed, at("2026-01-01T00:01:00.000000Z")).await;

    store.register_instance(&me, now).await.unwrap();
    let released = store.release_dead_leases(&me, now).await.unwrap();
    assert_eq!(released.leases, 1);
    assert_eq!(released.dead_instances, vec![crashed.id.clone()]);
    let after = store.get_run(run.id).await.unwrap().unwrap();
    assert_eq!(after.lease_owner, None);
    assert!(
        after.version > run.version,
        "the version fences the old holder"
    );
}

#[tokio::test]
async fn an_instance_elsewhere_is_dead_only_once_its_heartbeat_is_older_than_its_lease() {
    let (_dir, store) = temp_store().await;
    let me = Instance::this_process("local", std::time::Duration::from_secs(60));
    let remote = instance("local", "another-host", 1);
    store
        .register_instance(&remote, at("2026-01-01T00:00:00.000000Z"))
        .await
        .unwrap();
    let run = leased_run(&store, &remote, at("2026-01-01T00:10:00.000000Z")).await;
    // 59 s after its last heartbeat: alive.
    let released = store
        .release_dead_leases(&me, at("2026-01-01T00:00:59.000000Z"))
        .await
        .unwrap();
    assert_eq!(released, Released::default());
    // 60 s after: dead, even though the lease it wrote runs longer.
    let released = store
        .release_dead_leases(&me, at("2026-01-01T00:01:00.000000Z"))
        .await
        .unwrap();
    assert_eq!(released.leases, 1);
    let after = store.get_run(run.id).await.unwrap().unwrap();
    assert_eq!(after.lease_owner, None);
}

#[tokio::test]
async fn another_worker_ids_instances_are_left_to_their_lease_expiry() {
    let (_dir, store) = temp_store().await;
    let me = Instance::this_process("local", std::time::Duration::from_secs(60));
    let other = instance("other", "another-host", 1);
    store
        .register_instance(&other, at("2026-01-01T00:00:00.000000Z"))
        .await
        .unwrap();
    let run = leased_run(&store, &other, at("2026-01-01T00:05:00.000000Z")).await;
    let released = store
        .release_dead_leases(&me, at("2026-01-01T00:02:00.000000Z"))
        .await
        .unwrap();
    assert_eq!(released, Released::default(), "not this id's instance");
    let released = store
        .release_dead_leases(&me, at("2026-01-01T00:05:00.000000Z"))
        .await
        .unwrap();
    assert_eq!(released.leases, 1, "an expired lease is anyone's");
    let after = store.get_run(run.id).await.unwrap().unwrap();
    assert!(after.lease_owner.is_none() && after.version > run.version);
}

// The group commit (group.rs).

/// Stores a training run in Polling, due at `now`.
async fn insert_polling(store: &SqliteStore, now: crate::clock::Timestamp) -> uuid::Uuid {
    let id = uuid::Uuid::now_v7();
    store
        .insert_run(
            NewRun {
                id,
                kind: Kind::Training,
                state: State::Polling,
                request: serde_json::json!({}),
                context: serde_json::json!({"polls": 0}),
                resource_name: Some(format!("job-{}", id.simple())),
                submitted_by: None,
                detail: "test".into(),
            },
            now,
        )
        .await
        .unwrap();
    id
}

/// `n` such runs, claimed by worker "w".
async fn polling_runs(store: &SqliteStore, n: usize) -> Vec<ClaimedRun> {
    let now = chrono::Utc::now();
    for _ in 0..n {
        insert_polling(store, now).await;
    }
    store
        .claim_due(
            "w",
            now,
            crate::clock::add(now, std::time::Duration::from_secs(60)),
            n as u32,
        )
        .await
        .unwrap()
}

fn poll(n: i64, now: crate::clock::Timestamp) -> Transition {
    Transition {
        to: State::Polling,
        context: serde_json::json!({"polls": n}),
        attempt: 0,
        next_due_at: Some(crate::clock::add(now, std::time::Duration::from_secs(60))),
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

/// Holds the database's write lock from another connection until dropped (rolled back).
async fn hold_write_lock(dir: &tempfile::TempDir) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    let mut conn =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", dir.path().join("s.db").display()))
            .await
            .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

/// Waits until `n` operations have reached the group commit since `before` (queued, or taken
/// into a transaction that waits for the lock).
async fn sent(store: &SqliteStore, before: GroupStats, n: u64) {
    while store.group.queued() + (store.group_stats().operations - before.operations) < n {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn concurrent_transitions_share_a_transaction_and_each_is_committed_when_answered() {
    let (dir, store) = temp_store().await;
    let claimed = polling_runs(&store, 32).await;
    let before = store.group_stats();
    // Another process holds the write lock: the first transition's transaction waits for it,
    // and the others queue up behind it meanwhile.
    let lock = hold_write_lock(&dir).await;
    let now = chrono::Utc::now();
    let mut set = tokio::task::JoinSet::new();
    for (i, c) in claimed.iter().cloned().enumerate() {
        let store = store.clone();
        set.spawn(async move {
            let outcome = store
                .commit_transition(&c, &poll(i as i64 + 1, now), now)
                .await;
            // Answered: a fresh read already sees the committed version.
            let seen = store.get_run(c.run.id).await.unwrap().unwrap();
            (outcome.unwrap(), seen.version, c.run.version)
        });
    }
    sent(&store, before, 32).await;
    drop(lock);
    while let Some(r) = set.join_next().await {
        let (outcome, seen, claimed_version) = r.unwrap();
        assert_eq!(
            outcome,
            TransitionOutcome::Committed {
                version: claimed_version + 1
            }
        );
        assert_eq!(seen, claimed_version + 1);
    }
    let after = store.group_stats();
    assert_eq!(after.operations - before.operations, 32);
    assert!(
        after.transactions - before.transactions <= 2,
        "32 queued transitions took {} transactions",
        after.transactions - before.transactions
    );
}

#[tokio::test]
async fn a_lost_lease_in_a_batch_is_answered_lost_and_the_others_commit() {
    let (dir, store) = temp_store().await;
    let claimed = polling_runs(&store, 3).await;
    let mut stale = claimed[1].clone();
    stale.run.version -= 1; // another worker claimed it since
    let before = store.group_stats();
    let lock = hold_write_lock(&dir).await;
    let now = chrono::Utc::now();
    let commits = [claimed[0].clone(), stale, claimed[2].clone()].map(|c| {
        let store = store.clone();
        tokio::spawn(async move { store.commit_transition(&c, &poll(1, now), now).await })
    });
    sent(&store, before, 3).await;
    drop(lock);
    let mut outcomes = Vec::new();
    for c in commits {
        outcomes.push(c.await.unwrap().unwrap());
    }
    assert!(matches!(outcomes[0], TransitionOutcome::Committed { .. }));
    assert_eq!(outcomes[1], TransitionOutcome::Lost);
    assert!(matches!(outcomes[2], TransitionOutcome::Committed { .. }));
    assert_eq!(
        store.events(claimed[1].run.id).await.unwrap().len(),
        1,
        "no row for the lost one"
    );
    assert_eq!(store.events(claimed[0].run.id).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_commit_claims_the_next_due_run_in_the_same_transaction() {
    let (_dir, store) = temp_store().await;
    let claimed = polling_runs(&store, 1).await;
    // A second due run, unclaimed.
    let now = chrono::Utc::now();
    let id = insert_polling(&store, now).await;
    let before = store.group_stats();
    let next = ClaimRequest {
        owner: "w".into(),
        now,
        lease_until: crate::clock::add(now, std::time::Duration::from_secs(60)),
        limit: 1,
    };
    let done = store
        .commit_and_claim(&claimed[0], &poll(1, now), now, next)
        .await
        .unwrap();
    assert!(matches!(done.outcome, TransitionOutcome::Committed { .. }));
    assert_eq!(done.next.len(), 1);
    assert_eq!(done.next[0].run.id, id);
    assert_eq!(done.next[0].run.lease_owner.as_deref(), Some("w"));
    assert_eq!(store.group_stats().transactions - before.transactions, 1);
}

#[tokio::test]
async fn a_batch_that_cannot_begin_answers_every_operation_with_the_error() {
    let (dir, store) = temp_store().await;
    let claimed = polling_runs(&store, 1).await;
    // Held past the busy timeout: the group's BEGIN IMMEDIATE is refused as busy.
    let _lock = hold_write_lock(&dir).await;
    let now = chrono::Utc::now();
    let e = store
        .commit_transition(&claimed[0], &poll(1, now), now)
        .await
        .unwrap_err();
    assert!(e.is_unavailable(), "{e}");
}

/// A commit assigns only the columns its transition changes (runs.rs `ChangedColumns`): the
/// error and degraded marks still follow their rules through every kind of step.
#[tokio::test]
async fn a_commit_keeps_clears_and_sets_the_error_and_degraded_marks() {
    use crate::model::ErrorClass;
    let (_dir, store) = temp_store().await;
    let t0 = at("2026-11-03T00:00:00Z");
    let id = insert_polling(&store, t0).await;
    let mut now = t0;
    // One step: claim the run (due now) and commit `t` at a later time; the run as stored.
    let mut step = async |t: Transition| {
        now = crate::clock::add(now, std::time::Duration::from_secs(1));
        let lease = crate::clock::add(now, std::time::Duration::from_secs(60));
        let claimed = store.claim_due("w", now, lease, 1).await.unwrap();
        assert_eq!(claimed.len(), 1, "the run is due");
        let t = Transition {
            next_due_at: t.next_due_at.map(|_| now),
            ..t
        };
        let outcome = store.commit_transition(&claimed[0], &t, now).await.unwrap();
        assert!(matches!(outcome, TransitionOutcome::Committed { .. }));
        (store.get_run(id).await.unwrap().unwrap(), now)
    };
    let error = |m: &str| Some((ErrorClass::Retryable, m.to_string()));
    let (run, _) = step(Transition {
        error: error("throttled"),
        ..poll(1, t0)
    })
    .await;
    assert_eq!(run.last_error.as_deref(), Some("throttled"));
    assert!(run.degraded_since.is_none());
    let (run, _) = step(poll(2, t0)).await;
    assert_eq!(
        run.last_error.as_deref(),
        Some("throttled"),
        "a plain poll in the same state keeps the error"
    );
    let (run, first) = step(Transition {
        error: error("describe failed"),
        degraded: true,
        ..poll(3, t0)
    })
    .await;
    assert_eq!(run.last_error.as_deref(), Some("describe failed"));
    assert_eq!(run.degraded_since, Some(first));
    let (run, _) = step(Transition {
        degraded: true,
        ..poll(4, t0)
    })
    .await;
    assert_eq!(
        run.degraded_since,
        Some(first),
        "degraded since the first failure"
    );
    assert_eq!(run.last_error.as_deref(), Some("describe failed"));
    let (run, _) = step(poll(5, t0)).await;
    assert!(run.degraded_since.is_none(), "seeing the job again ends it");
    assert!(run.last_error.is_none(), "and its error");
    let (run, _) = step(Transition {
        error: error("slow down"),
        ..poll(6, t0)
    })
    .await;
    assert_eq!(run.last_error.as_deref(), Some("slow down"));
    let (run, _) = step(Transition {
        to: State::Done,
        next_due_at: None,
        ..poll(7, t0)
    })
    .await;
    assert_eq!(run.state, State::Done);
    assert!(run.last_error.is_none(), "a new state clears the error");
    assert!(run.next_due_at.is_none());
    assert_eq!(run.context, serde_json::json!({"polls": 7}));
}

/// An operation that fails inside a batch (here a transition the schema refuses: a terminal
/// state that is still due) is answered with its error and leaves no trace; the batch's other
/// operations, applied before and after it, commit.
#[tokio::test]
async fn a_failing_operation_in_a_batch_is_answered_alone_and_the_others_commit() {
    let (dir, store) = temp_store().await;
    let claimed = polling_runs(&store, 3).await;
    let before = store.group_stats();
    let lock = hold_write_lock(&dir).await;
    let now = chrono::Utc::now();
    let refused = Transition {
        to: State::Done,
        ..poll(1, now)
    };
    let transitions = [poll(1, now), refused, poll(1, now)];
    let commits: Vec<_> = claimed
        .iter()
        .cloned()
        .zip(transitions)
        .map(|(c, t)| {
            let store = store.clone();
            tokio::spawn(async move { store.commit_transition(&c, &t, now).await })
        })
        .collect();
    sent(&store, before, 3).await;
    drop(lock);
    let mut outcomes = Vec::new();
    for c in commits {
        outcomes.push(c.await.unwrap());
    }
    assert!(matches!(
        outcomes[0],
        Ok(TransitionOutcome::Committed { .. })
    ));
    assert!(outcomes[1].is_err(), "{:?}", outcomes[1]);
    assert!(matches!(
        outcomes[2],
        Ok(TransitionOutcome::Committed { .. })
    ));
    let failed = store.get_run(claimed[1].run.id).await.unwrap().unwrap();
    assert_eq!(failed.state, State::Polling);
    assert_eq!(failed.version, claimed[1].run.version, "not updated");
    assert_eq!(store.events(claimed[1].run.id).await.unwrap().len(), 1);
    for i in [0, 2] {
        let run = store.get_run(claimed[i].run.id).await.unwrap().unwrap();
        assert_eq!(run.version, claimed[i].run.version + 1);
        assert_eq!(store.events(claimed[i].run.id).await.unwrap().len(), 2);
    }
    assert_eq!(store.group_stats().operations - before.operations, 3);
}

/// The claims of a batch's operations are taken as one and shared out: every slot gets its own
/// next run, none gets a run another got, and none gets a run that is not due yet.
#[tokio::test]
async fn the_claims_of_a_batch_are_shared_out_and_never_doubled() {
    let (dir, store) = temp_store().await;
    let claimed = polling_runs(&store, 4).await;
    let now = chrono::Utc::now();
    let mut waiting = std::collections::BTreeSet::new();
    for _ in 0..3 {
        waiting.insert(insert_polling(&store, now).await);
    }
    let later = insert_polling(
        &store,
        crate::clock::add(now, std::time::Duration::from_secs(30)),
    )
    .await;
    let before = store.group_stats();
    let lock = hold_write_lock(&dir).await;
    let next = ClaimRequest {
        owner: "w".into(),
        now,
        lease_until: crate::clock::add(now, std::time::Duration::from_secs(60)),
        limit: 1,
    };
    let commits: Vec<_> = claimed
        .iter()
        .cloned()
        .map(|c| {
            let (store, next) = (store.clone(), next.clone());
            // Each run's own next poll is a minute away: only the waiting runs are due.
            tokio::spawn(async move { store.commit_and_claim(&c, &poll(1, now), now, next).await })
        })
        .collect();
    sent(&store, before, 4).await;
    drop(lock);
    let mut got = Vec::new();
    for c in commits {
        let done = c.await.unwrap().unwrap();
        assert!(matches!(done.outcome, TransitionOutcome::Committed { .. }));
        assert!(done.next.len() <= 1, "each asked for one");
        got.extend(done.next.into_iter().map(|n| {
            assert_eq!(n.run.lease_owner.as_deref(), Some("w"));
            n.run.id
        }));
    }
    got.sort();
    assert_eq!(
        got,
        waiting.into_iter().collect::<Vec<_>>(),
        "the three due runs, each to one slot; not the run due later ({later})"
    );
}

/// The plain polls a batch commits together (`commit_many_in`) leave exactly what committing
/// each alone (`commit_in`) leaves: the same run rows, the same history, the same answers —
/// including a cancel requested while the step ran and a lease lost meanwhile.
#[tokio::test]
async fn plain_polls_committed_together_equal_each_committed_alone() {
    let (_dir, store) = temp_store().await;
    let t0 = at("2026-11-03T00:00:00Z");
    let t1 = crate::clock::add(t0, std::time::Duration::from_secs(5));
    // Two lanes of four runs each, stepped the same way.
    let mut lanes = Vec::new();
    for _ in 0..2 {
        let mut ids = Vec::new();
        for _ in 0..4 {
            ids.push(insert_polling(&store, t0).await);
        }
        lanes.push(ids);
    }
    let claimed = store
        .claim_due(
            "w",
            t0,
            crate::clock::add(t0, std::time::Duration::from_secs(60)),
            8,
        )
        .await
        .unwrap();
    let of = |id| claimed.iter().find(|c| c.run.id == id).unwrap().clone();
    let mut answers = Vec::new();
    for (lane, ids) in lanes.iter().enumerate() {
        // Run 2's cancel arrives while its step runs; run 3's lease is lost meanwhile.
        store.request_cancel(ids[2], t1, "stop it").await.unwrap();
        let mut stale = of(ids[3]);
        stale.run.version -= 1;
        let quiet = Transition {
            record: false,
            ..poll(2, t1)
        };
        let steps = [
            (of(ids[0]), poll(1, t1)),
            (of(ids[1]), quiet),
            (of(ids[2]), poll(3, t1)),
            (stale, poll(4, t1)),
        ];
        for (c, t) in &steps {
            assert!(runs::is_plain_poll(c, t));
        }
        let mut tx = store.begin_write().await.unwrap();
        let outcomes = if lane == 0 {
            let polls: Vec<_> = steps.iter().map(|(c, t)| (c, t, t1)).collect();
            runs::commit_many_in(&mut tx, &polls).await.unwrap()
        } else {
            let mut outcomes = Vec::new();
            for (c, t) in &steps {
                outcomes.push(runs::commit_in(&mut tx, c, t, t1).await.unwrap());
            }
            outcomes
        };
        tx.commit().await.unwrap();
        answers.push(outcomes);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0][3], TransitionOutcome::Lost);
    for i in 0..4 {
        let mut seen = Vec::new();
        for ids in &lanes {
            let mut run = store.get_run(ids[i]).await.unwrap().unwrap();
            run.id = uuid::Uuid::nil();
            run.resource_name = None;
            let events: Vec<String> = store
                .events(ids[i])
                .await
                .unwrap()
                .iter()
                .map(|e| format!("{e:?}"))
                .collect();
            seen.push((format!("{run:?}"), events));
        }
        assert_eq!(seen[0], seen[1], "run {i}");
    }
    let cancelled = store.get_run(lanes[0][2]).await.unwrap().unwrap();
    assert_eq!(
        cancelled.next_due_at,
        Some(t1),
        "a cancel that came meanwhile: due now"
    );
}

/// A claim reads its runs and leases them in separate statements: what it hands back must be
/// the stored row as the lease left it — the request's JSON as stored
/// (unicode, nesting, large numbers), the sealed credentials byte for byte, the new version
/// and lease — in the order the runs fell due, with a takeover told from a fresh claim.
#[tokio::test]
async fn a_claimed_run_is_the_stored_row_with_its_lease() {
    let (_dir, store) = temp_store().await;
    let t0 = at("2026-11-03T00:00:00Z");
    let request = serde_json::json!({
        "name": "réseau \"quoted\" \\ ✓",
        "nested": {"list": [1, 2.5, -3, null, true], "big": 9007199254740993u64},
    });
    let sealed: Vec<u8> = (0..=255u8).collect();
    // Inserted in one order, due in the other.
    let mut ids = Vec::new();
    for (i, secs) in [30u64, 20, 10].into_iter().enumerate() {
        let id = uuid::Uuid::now_v7();
        let new = NewRun {
            id,
            kind: Kind::Training,
            state: State::Polling,
            request: request.clone(),
            context: serde_json::json!({"n": i}),
            resource_name: Some(format!("job-{i}")),
            submitted_by: Some("alice".into()),
            detail: "test".into(),
        };
        let now = crate::clock::add(t0, std::time::Duration::from_secs(secs));
        if i == 0 {
            store
                .insert_run_with_secret(new, sealed.clone(), now)
                .await
                .unwrap();
        } else {
            store.insert_run(new, now).await.unwrap();
        }
        ids.push(id);
    }
    let later = crate::clock::add(t0, std::time::Duration::from_secs(60));
    let lease = |now| crate::clock::add(now, std::time::Duration::from_secs(5));
    let first = store.claim_due("w1", later, lease(later), 2).await.unwrap();
    assert_eq!(
        first.iter().map(|c| c.run.id).collect::<Vec<_>>(),
        vec![ids[2], ids[1]],
        "the two that fell due first, in that order"
    );
    for c in &first {
        let stored = store.get_run(c.run.id).await.unwrap().unwrap();
        assert_eq!(format!("{:?}", c.run), format!("{stored:?}"));
        assert_eq!(c.run.request, request);
        assert_eq!(c.run.lease_owner.as_deref(), Some("w1"));
        assert!(!c.took_over && c.sealed.is_none());
    }
    // w1's lease on those two lapses; the third was never leased.
    let much_later = crate::clock::add(later, std::time::Duration::from_secs(60));
    let second = store
        .claim_due("w2", much_later, lease(much_later), 10)
        .await
        .unwrap();
    assert_eq!(
        second.iter().map(|c| c.run.id).collect::<Vec<_>>(),
        vec![ids[2], ids[1], ids[0]]
    );
    for c in &second {
        let stored = store.get_run(c.run.id).await.unwrap().unwrap();
        assert_eq!(format!("{:?}", c.run), format!("{stored:?}"));
        assert_eq!(c.took_over, c.run.id != ids[0], "{}", c.run.id);
    }
    assert_eq!(second[2].sealed.as_deref(), Some(&sealed[..]));
    assert_eq!(second[0].run.version, first[0].run.version + 1);
}
