//! The run counts that the listing and /metrics read (`run_counts`, kept by triggers since
//! migration 0014) stay equal to a `COUNT(*) ... GROUP BY` of the runs themselves through every
//! way a run is stored, changed or deleted: the upgrade that fills them, inserts, transitions
//! (also lost ones and ones that start a linked run), retry, cancel, history retention, the
//! deletion of a finished run, a rolled-back transaction and a raw change of a counted column.
//! On a real SQLite file, through the store's public API.

use sagemaker_executor::clock::{Timestamp, from_db};
use sagemaker_executor::model::{ErrorClass, Kind, State};
use sagemaker_executor::store::{
    ClaimedRun, MIGRATOR, NewRun, RetryOutcome, RunFilter, Store, Transition, TransitionOutcome,
};
use serde_json::json;
use sqlx::SqlitePool;
use std::collections::BTreeMap;
use uuid::Uuid;

type Key = (String, String, Option<String>);

struct Db {
    _dir: tempfile::TempDir,
    url: String,
    /// A second connection to the same file, for the direct counts and raw changes.
    raw: SqlitePool,
}

async fn db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
    let raw = SqlitePool::connect(&url).await.unwrap();
    Db {
        _dir: dir,
        url,
        raw,
    }
}

/// Counts computed from the runs, and the kept ones (rows that fell to 0 left out).
async fn direct_and_kept(raw: &SqlitePool) -> (BTreeMap<Key, i64>, BTreeMap<Key, i64>) {
    let direct: Vec<(String, String, Option<String>, i64)> = sqlx::query_as(
        "SELECT kind, state, submitted_by, COUNT(*) FROM runs GROUP BY kind, state, submitted_by",
    )
    .fetch_all(raw)
    .await
    .unwrap();
    let kept: Vec<(String, String, Option<String>, i64)> =
        sqlx::query_as("SELECT kind, state, submitted_by, n FROM run_counts WHERE n <> 0")
            .fetch_all(raw)
            .await
            .unwrap();
    let map = |rows: Vec<(String, String, Option<String>, i64)>| {
        rows.into_iter()
            .map(|(k, s, by, n)| ((k, s, by), n))
            .collect::<BTreeMap<_, _>>()
    };
    (map(direct), map(kept))
}

/// Asserts the kept counts, and what the store answers from them, equal the direct counts.
async fn assert_counts_right(store: &Store, raw: &SqlitePool, after: &str) {
    let (direct, kept) = direct_and_kept(raw).await;
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

    let kinds = [None, Some(Kind::Training), Some(Kind::Automl)];
    let submitters = [None, Some("alice"), Some("bob"), Some("nobody")];
    for kind in kinds {
        for by in submitters {
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
            let (_, with_page) = store
                .list_run_summaries_with_counts(
                    &RunFilter {
                        limit: 1,
                        ..RunFilter::default()
                    },
                    kind,
                    by,
                )
                .await
                .unwrap()
                .expect("no cursor");
            let with_page: BTreeMap<String, i64> = with_page
                .into_iter()
                .map(|(s, n)| (s.to_string(), n))
                .collect();
            assert_eq!(with_page, want, "the listing's counts after {after}");
        }
    }
}

fn t(s: &str) -> Timestamp {
    from_db(s).unwrap()
}

fn new_run(kind: Kind, by: Option<&str>) -> NewRun {
    let id = Uuid::now_v7();
    NewRun {
        id,
        kind,
        state: State::Uploading,
        request: json!({}),
        context: json!({}),
        resource_name: Some(format!("job-{}", id.simple())),
        submitted_by: by.map(str::to_string),
        detail: "accepted".into(),
    }
}

fn to(state: State, now: Timestamp) -> Transition {
    Transition {
        to: state,
        context: json!({"job_name": "job"}),
        attempt: 0,
        next_due_at: (!state.is_terminal()).then_some(now),
        record: true,
        detail: None,
        error: None,
        spawn: Vec::new(),
        forget: Vec::new(),
        withdraw_cancel: false,
        degraded: false,
        collapse: false,
    }
}

/// Claims every due run and commits `decide(run)` for each (None: leave it claimed).
async fn step_all(
    store: &Store,
    now: Timestamp,
    decide: impl Fn(&ClaimedRun) -> Option<Transition>,
) -> usize {
    let claimed = store
        .claim_due("counts-test", now, t("2030-01-01T00:00:00Z"), 1000)
        .await
        .unwrap();
    let mut committed = 0;
    for c in &claimed {
        if let Some(tr) = decide(c) {
            let outcome = store.commit_transition(c, &tr, now).await.unwrap();
            assert!(matches!(outcome, TransitionOutcome::Committed { .. }));
            committed += 1;
        }
    }
    committed
}

#[tokio::test]
async fn kept_run_counts_equal_a_direct_count_through_every_change_of_the_runs() {
    let db = db().await;
    let raw = &db.raw;

    // Runs stored before migration 0014 are counted by it.
    MIGRATOR.run_to(13, raw).await.unwrap();
    let old: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    for (i, (kind, state, by)) in [
        ("training", "Done", Some("alice")),
        ("training", "Done", Some("alice")),
        ("training", "Failed", None),
        ("automl", "Cancelled", Some("bob")),
    ]
    .into_iter()
    .enumerate()
    {
        sqlx::query(
            "INSERT INTO runs (id, kind, state, request, submitted_by, created_at, updated_at)
             VALUES (?1, ?2, ?3, '{}', ?4, '2026-01-01T00:00:00.000000Z',
                     '2026-01-01T00:00:00.000000Z')",
        )
        .bind(old[i].to_string())
        .bind(kind)
        .bind(state)
        .bind(by)
        .execute(raw)
        .await
        .unwrap();
    }
    let store = Store::open(&db.url).await.unwrap();
    assert_counts_right(&store, raw, "the upgrade").await;

    // Inserts, of several kinds and submitters (and none).
    let now = t("2026-02-01T00:00:00Z");
    let mut ids = Vec::new();
    for i in 0..24 {
        let kind = [Kind::Training, Kind::Automl, Kind::Transform][i % 3];
        let by = [Some("alice"), Some("bob"), None][i / 3 % 3];
        ids.push(store.insert_run(new_run(kind, by), now).await.unwrap().id);
    }
    assert_counts_right(&store, raw, "inserts").await;

    // Transitions to another state; then same-state ones (a poll, a degraded check).
    let n = step_all(&store, now, |_| Some(to(State::Polling, now))).await;
    assert_eq!(n, 24);
    assert_counts_right(&store, raw, "Uploading -> Polling").await;
    step_all(&store, now, |c| {
        let mut tr = to(State::Polling, now);
        tr.degraded = c.run.attempt == 0;
        tr.error = Some((ErrorClass::Retryable, "slow".into()));
        Some(tr)
    })
    .await;
    assert_counts_right(&store, raw, "Polling -> Polling").await;

    // A transition that lost its run to a newer version changes nothing.
    let claimed = store
        .claim_due("counts-test", now, t("2030-01-01T00:00:00Z"), 1)
        .await
        .unwrap();
    let mut stale = claimed[0].clone();
    stale.run.version -= 1;
    let lost = store
        .commit_transition(&stale, &to(State::Done, now), now)
        .await
        .unwrap();
    assert_eq!(lost, TransitionOutcome::Lost);
    assert_counts_right(&store, raw, "a lost transition").await;
    store.release_leases("counts-test").await.unwrap();

    // Endings: Done (one of them starting a linked run), Failed, and the rest left Polling.
    let parent = ids[0];
    step_all(&store, now, |c| {
        let i = ids.iter().position(|id| *id == c.run.id).unwrap();
        match i % 4 {
            0 => {
                let mut tr = to(State::Done, now);
                if c.run.id == parent {
                    tr.spawn = vec![new_run(Kind::Deployment, Some("alice"))];
                }
                Some(tr)
            }
            1 => {
                let mut tr = to(State::Failed, now);
                tr.error = Some((ErrorClass::Terminal, "refused".into()));
                tr.detail = Some(Transition::gave_up_detail(State::Polling));
                Some(tr)
            }
            _ => Some(to(State::Polling, t("2030-01-01T00:00:00Z"))),
        }
    })
    .await;
    assert_counts_right(&store, raw, "Done, Failed and a linked run").await;

    // An operator's retry of a Failed run, and a cancel: requested (state unchanged), then
    // carried out.
    let failed = ids[1];
    let retried = store
        .retry_run(failed, now, "retry requested by op", |_, _, _| {
            Some(State::Polling)
        })
        .await
        .unwrap();
    assert!(matches!(retried, RetryOutcome::Rearmed(_)));
    assert_counts_right(&store, raw, "a retry").await;
    let waiting = ids[2];
    store
        .request_cancel(waiting, now, "cancel requested by op")
        .await
        .unwrap();
    assert_counts_right(&store, raw, "a cancel request").await;
    let later = t("2030-01-02T00:00:00Z");
    step_all(&store, later, |c| {
        Some(if c.run.id == waiting {
            to(State::Cancelled, later)
        } else {
            to(State::Polling, t("2031-01-01T00:00:00Z"))
        })
    })
    .await;
    assert_counts_right(&store, raw, "a cancel").await;

    // A cancel of a run Failed while following its job re-arms it to stop the job.
    let rearmed = store
        .rearm_to_cancel(ids[5], later, "cancel requested by op", |_, failed_in| {
            failed_in.map(|_| State::Cancelling)
        })
        .await
        .unwrap();
    assert!(matches!(
        rearmed,
        sagemaker_executor::store::CancelOutcome::Requested(_)
    ));
    assert_counts_right(&store, raw, "a Failed run re-armed to cancel").await;

    // History retention deletes history rows, never runs; then finished runs are deleted.
    store
        .prune_history(t("2031-01-01T00:00:00Z"))
        .await
        .unwrap();
    assert_counts_right(&store, raw, "history retention").await;
    assert!(store.delete_finished_run(ids[4]).await.unwrap());
    assert!(store.delete_finished_run(waiting).await.unwrap());
    assert!(
        !store.delete_finished_run(ids[3]).await.unwrap(),
        "unfinished"
    );
    assert_counts_right(&store, raw, "deletes of finished runs").await;

    // A transaction rolled back takes its count changes with it.
    let mut tx = raw.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO runs (id, kind, state, request, submitted_by, created_at, updated_at)
         VALUES ('0190a6b4-0000-7000-8000-000000000000', 'script', 'Done', '{}', 'carol', '2026-03-01T00:00:00.000000Z',
                 '2026-03-01T00:00:00.000000Z')",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("UPDATE runs SET state = 'Failed' WHERE id = ?1")
        .bind(old[0].to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_counts_right(&store, raw, "a rollback").await;

    // Any change of a counted column is followed, however it is made.
    sqlx::query("UPDATE runs SET submitted_by = NULL WHERE id = ?1")
        .bind(old[1].to_string())
        .execute(raw)
        .await
        .unwrap();
    sqlx::query("UPDATE runs SET kind = 'automl', submitted_by = 'bob' WHERE id = ?1")
        .bind(old[2].to_string())
        .execute(raw)
        .await
        .unwrap();
    sqlx::query("DELETE FROM runs WHERE kind = 'automl' AND next_due_at IS NULL")
        .execute(raw)
        .await
        .unwrap();
    assert_counts_right(&store, raw, "raw changes").await;
    store.close().await;
}
