//! Store tests on real SQLite files.

use super::*;
use crate::model::{Kind, State};

async fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("s.db").display()))
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
    let store = Store::connect(&url).await.unwrap();
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
