//! History retention: a finished run's history (`run_events`) is pruned once the run has been
//! finished for the retention period. The run row stays (its outcome, its context, its AWS
//! resource names), and so does its last history row (how it ended), so `GET /api/v1/runs/{id}`
//! still says what happened; only the step-by-step history goes. Deleting in batches keeps each
//! write transaction short, so pruning a large backlog never holds the write lock for long.

use super::{Result, SqliteStore};
use crate::clock::{Timestamp, to_db};

/// Rows deleted per write transaction.
const BATCH: i64 = 2_000;

impl SqliteStore {
    /// Deletes the history rows of runs finished before `cutoff`, except each run's last row, in
    /// one batch of at most `BATCH` rows; returns how many it deleted (0: nothing left to prune).
    pub async fn prune_history_batch(&self, cutoff: Timestamp) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "DELETE FROM run_events WHERE (run_id, seq) IN (
                 SELECT e.run_id, e.seq FROM run_events e JOIN runs r ON r.id = e.run_id
                 WHERE r.state IN (SELECT name FROM run_states WHERE terminal = 1)
                   AND r.updated_at < ?1
                   AND e.seq < (SELECT MAX(m.seq) FROM run_events m WHERE m.run_id = e.run_id)
                 LIMIT ?2)",
        )
        .bind(to_db(cutoff))
        .bind(BATCH)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Prunes every finished run's history older than `cutoff`, batch by batch.
    pub async fn prune_history(&self, cutoff: Timestamp) -> Result<u64> {
        let mut total = 0;
        loop {
            let n = self.prune_history_batch(cutoff).await?;
            total += n;
            if n < BATCH as u64 {
                return Ok(total);
            }
            // Let other writers in between batches.
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::from_db;

    async fn run_with_history(
        store: &SqliteStore,
        id: &str,
        state: &str,
        updated_at: &str,
        rows: i64,
    ) {
        let due = if state == "Polling" {
            Some(updated_at)
        } else {
            None
        };
        let mut tx = store.begin_write().await.unwrap();
        sqlx::query(
            "INSERT INTO runs (id, kind, state, request, next_due_at, created_at, updated_at)
             VALUES (?1, 'training', ?2, '{}', ?3, ?4, ?4)",
        )
        .bind(id)
        .bind(state)
        .bind(due)
        .bind(updated_at)
        .execute(&mut *tx)
        .await
        .unwrap();
        for seq in 1..=rows {
            sqlx::query(
                "INSERT INTO run_events (run_id, seq, from_state, to_state, at, attempt)
                 VALUES (?1, ?2, 'Polling', 'Polling', ?3, 0)",
            )
            .bind(id)
            .bind(seq)
            .bind(updated_at)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
    }

    async fn seqs(store: &SqliteStore, id: &str) -> Vec<i64> {
        sqlx::query_scalar("SELECT seq FROM run_events WHERE run_id = ?1 ORDER BY seq")
            .bind(id)
            .fetch_all(store.reader())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn finished_runs_lose_their_history_after_the_retention_but_keep_their_last_row() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("r.db").display());
        let store = SqliteStore::open(&url).await.unwrap();
        let old = "2026-01-01T00:00:00.000000Z";
        let recent = "2026-06-01T00:00:00.000000Z";
        run_with_history(&store, "old-done", "Done", old, 5).await;
        run_with_history(&store, "old-failed", "Failed", old, 3).await;
        run_with_history(&store, "recent-done", "Done", recent, 4).await;
        run_with_history(&store, "old-but-running", "Polling", old, 6).await;
        // A large backlog is pruned batch by batch.
        run_with_history(&store, "old-long", "Cancelled", old, BATCH * 2 + 7).await;

        let cutoff = from_db("2026-03-01T00:00:00Z").unwrap();
        let pruned = store.prune_history(cutoff).await.unwrap();

        assert_eq!(pruned, 4 + 2 + BATCH as u64 * 2 + 6);
        assert_eq!(seqs(&store, "old-done").await, vec![5]);
        assert_eq!(seqs(&store, "old-failed").await, vec![3]);
        assert_eq!(seqs(&store, "old-long").await, vec![BATCH * 2 + 7]);
        assert_eq!(seqs(&store, "recent-done").await, vec![1, 2, 3, 4]);
        assert_eq!(seqs(&store, "old-but-running").await.len(), 6);
        let runs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs")
            .fetch_one(store.reader())
            .await
            .unwrap();
        assert_eq!(runs, 5, "every run row stays");
        assert_eq!(store.prune_history(cutoff).await.unwrap(), 0);
    }
}
