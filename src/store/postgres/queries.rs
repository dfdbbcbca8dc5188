//! Read-only queries of runs and their history (the SQLite store's `runs/queries.rs`): the
//! API's and the metrics' views. Pages come back as rows (the SQLite store's one-row JSON
//! answers work around its per-row hand-off between threads, which PostgreSQL does not have).

use super::runs::{event_from_row, kind, run_from_row, state, uuid};
use super::{PgStore, micros};
use crate::clock::{Clock as _, SystemClock, Timestamp};
use crate::model::{Kind, State};
use crate::store::{Event, Page, Result, Run, RunFilter, Summary};
use sqlx::{Postgres, QueryBuilder, Row};
use uuid::Uuid;

/// Which columns a listing returns.
#[derive(Clone, Copy)]
pub(super) enum Columns {
    /// Every column.
    Full,
    /// All but the request and the context (`Value::Null` in the result).
    Summary,
}

impl PgStore {
    pub async fn get_run(&self, id: Uuid) -> Result<Option<Run>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    /// Finds a run by its id or by the name of its AWS resource (e.g. the training job name).
    pub async fn find_run(&self, id_or_name: &str) -> Result<Option<Run>> {
        if let Ok(id) = Uuid::parse_str(id_or_name)
            && let Some(run) = self.get_run(id).await?
        {
            return Ok(Some(run));
        }
        let row = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE resource_name = $1"
        ))
        .bind(id_or_name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    pub async fn events(&self, id: Uuid) -> Result<Vec<Event>> {
        let rows = sqlx::query(
            "SELECT seq, from_state, to_state, at, attempt, detail, error_class, error, repeats
             FROM run_events WHERE run_id = $1 ORDER BY seq",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Runs newest first (created_at DESC, id DESC), filtered, paged by a cursor (the last run
    /// of the previous page). The SQL names only the filters given, so that the planner can
    /// read the listing index of the filter in listing order.
    pub async fn list_runs(&self, f: &RunFilter) -> Result<Page> {
        let limit = f.limit.clamp(1, 1000);
        let mut q = QueryBuilder::new("");
        push_list(&mut q, Columns::Full, f, limit);
        let rows = q.build().fetch_all(&self.pool).await?;
        let runs = rows.iter().map(run_from_row).collect::<Result<Vec<_>>>()?;
        Ok(page_of(runs, limit))
    }

    /// A page of run summaries (as [`PgStore::list_runs`], but each run's `request` and
    /// `context` are `Value::Null`: they are not read) and the counts per state of the runs of
    /// `counts_kind` and `counts_submitter` (as [`PgStore::count_by_state`]), in one query (one
    /// snapshot): the operator API's listing.
    ///
    /// `None` when the filter has a cursor (`after`) that is not a stored run of
    /// `f.submitted_by` (when given): checked in the same query, not by reading the run.
    pub async fn list_run_summaries_with_counts(
        &self,
        f: &RunFilter,
        counts_kind: Option<Kind>,
        counts_submitter: Option<&str>,
    ) -> Result<Option<(Page<Summary>, Vec<(State, i64)>)>> {
        let limit = f.limit.clamp(1, 1000);
        // One row of the cursor check and the counts (as arrays), joined to the page's rows
        // (none: one row of NULLs).
        let mut q = QueryBuilder::new("WITH counts AS (");
        push_counts(&mut q, counts_kind, counts_submitter);
        q.push("), meta AS (SELECT ");
        match f.after {
            Some(after) => {
                q.push("EXISTS (SELECT 1 FROM runs WHERE id = ")
                    .push_bind(after.to_string());
                if let Some(who) = &f.submitted_by {
                    q.push(" AND submitted_by = ").push_bind(who.clone());
                }
                q.push(")")
            }
            None => q.push("true"),
        };
        q.push(
            " AS cursor_known,
             ARRAY(SELECT state FROM counts) AS count_states,
             ARRAY(SELECT total FROM counts) AS count_totals)
             SELECT meta.*, page.* FROM meta LEFT JOIN LATERAL (",
        );
        push_list(&mut q, Columns::Summary, f, limit);
        q.push(") page ON true ORDER BY page.created_at DESC, page.id DESC");
        let rows = q.build().fetch_all(&self.pool).await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        if !first.try_get::<bool, _>("cursor_known")? {
            return Ok(None);
        }
        let states: Vec<String> = first.try_get("count_states")?;
        let totals: Vec<i64> = first.try_get("count_totals")?;
        let counts = counts_of(states.into_iter().zip(totals).collect())?;
        let mut runs = Vec::with_capacity(rows.len());
        for row in &rows {
            if row.try_get::<Option<String>, _>("id")?.is_some() {
                runs.push(run_from_row(row)?);
            }
        }
        let page = page_of(runs, limit);
        let summaries = page.runs.iter().map(Summary::from).collect();
        Ok(Some((
            Page {
                runs: summaries,
                next_cursor: page.next_cursor,
            },
            counts,
        )))
    }

    /// How many runs are in each state (of one kind, or all; of one submitter, or all), from
    /// the counts the trigger keeps (never a scan of `runs`), in state order.
    pub async fn count_by_state(
        &self,
        kind: Option<Kind>,
        submitted_by: Option<&str>,
    ) -> Result<Vec<(State, i64)>> {
        let mut q = QueryBuilder::new("");
        push_counts(&mut q, kind, submitted_by);
        let rows: Vec<(String, i64)> = q.build_query_as().fetch_all(&self.pool).await?;
        counts_of(rows)
    }

    /// Every endpoint named by a deployment or teardown run, with its newest such run, newest
    /// first.
    pub async fn endpoints_with_latest_run(&self) -> Result<Vec<(String, Run)>> {
        let rows = sqlx::query(concat!(
            "SELECT request ->> 'endpoint_name' AS endpoint, ",
            run_columns!(),
            " FROM runs r WHERE kind IN ('deployment', 'teardown')
               AND created_at = (SELECT MAX(created_at) FROM runs r2
                                 WHERE r2.kind IN ('deployment', 'teardown')
                                   AND (r2.request ->> 'endpoint_name')
                                       = (r.request ->> 'endpoint_name'))
             ORDER BY created_at DESC LIMIT 1000"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get::<String, _>("endpoint")?, run_from_row(row)?)))
            .collect()
    }

    /// The newest run of `kind` for an endpoint (deployments and teardowns name it in their
    /// request).
    pub async fn latest_run_for_endpoint(
        &self,
        kind: Kind,
        endpoint: &str,
    ) -> Result<Option<Uuid>> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE kind = $1 AND (request ->> 'endpoint_name') = $2
             ORDER BY created_at DESC LIMIT 1",
        )
        .bind(kind.as_str())
        .bind(endpoint)
        .fetch_optional(&self.pool)
        .await?;
        id.as_deref().map(uuid).transpose()
    }

    /// How many runs there are of each kind in each state (metrics), from the kept counts.
    pub async fn count_by_kind_state(&self) -> Result<Vec<(Kind, State, i64)>> {
        let mut rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT kind, state, SUM(n)::bigint FROM run_counts GROUP BY kind, state
             HAVING SUM(n) > 0",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.sort_unstable();
        rows.into_iter()
            .map(|(k, s, n)| Ok((kind(&k)?, state(&s)?, n)))
            .collect()
    }

    /// When the oldest unfinished run was created (metrics).
    pub async fn oldest_unfinished(&self) -> Result<Option<Timestamp>> {
        Ok(
            sqlx::query_scalar("SELECT MIN(created_at) FROM runs WHERE next_due_at IS NOT NULL")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// When the next run falls due (or its lease expires), for the engine's sleep: on this
    /// host's clock ([`SystemClock`]), as the engine measures its sleep: the database's due
    /// time less the database's now, from this host's now.
    pub async fn next_due_at(&self) -> Result<Option<Timestamp>> {
        let wait: Option<f64> = sqlx::query_scalar(
            "SELECT EXTRACT(EPOCH FROM MIN(GREATEST(next_due_at, COALESCE(lease_until, next_due_at)))
                                      - statement_timestamp())::float8
             FROM runs WHERE next_due_at IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(wait.map(|secs| {
            let micros = (secs * 1e6).clamp(-1e15, 1e15) as i64;
            SystemClock.now() + chrono::Duration::microseconds(micros)
        }))
    }

    /// How many unfinished runs are degraded (their status checks failing), by kind (metrics).
    pub async fn count_degraded(&self) -> Result<Vec<(Kind, i64)>> {
        let mut rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT kind, COUNT(*) FROM runs WHERE degraded_since IS NOT NULL GROUP BY kind",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.sort_unstable();
        rows.into_iter().map(|(k, n)| Ok((kind(&k)?, n))).collect()
    }

    /// Counts of non-terminal runs (for start-up logging).
    pub async fn count_unfinished(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE next_due_at IS NOT NULL")
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

/// Appends the listing's query for `f`: one more row than `limit`, to tell whether a next page
/// exists, newest first.
pub(super) fn push_list(
    q: &mut QueryBuilder<Postgres>,
    columns: Columns,
    f: &RunFilter,
    limit: u32,
) {
    q.push("SELECT ")
        .push(match columns {
            Columns::Full => run_columns!(),
            Columns::Summary => summary_columns!(),
        })
        .push(" FROM runs WHERE true");
    if let Some(kind) = f.kind {
        q.push(" AND kind = ").push_bind(kind.as_str());
    }
    if !f.kinds.is_empty() {
        q.push(" AND kind IN (");
        let mut names = q.separated(", ");
        for kind in &f.kinds {
            names.push_bind(kind.as_str());
        }
        q.push(")");
    }
    if let Some(state) = f.state {
        q.push(" AND state = ").push_bind(state.as_str());
    }
    if let Some(after) = f.after {
        // An unknown cursor compares with NULL: an empty page.
        q.push(" AND (created_at, id) < (SELECT created_at, id FROM runs WHERE id = ")
            .push_bind(after.to_string())
            .push(")");
    }
    if let Some(t) = f.created_after {
        q.push(" AND created_at >= ").push_bind(micros(t));
    }
    if let Some(t) = f.created_before {
        q.push(" AND created_at < ").push_bind(micros(t));
    }
    if let Some(t) = f.updated_after {
        q.push(" AND updated_at >= ").push_bind(micros(t));
    }
    if let Some(t) = f.updated_before {
        q.push(" AND updated_at < ").push_bind(micros(t));
    }
    if let Some(t) = f.stuck_since {
        q.push(" AND next_due_at IS NOT NULL AND updated_at < ")
            .push_bind(micros(t));
    }
    match f.has_error {
        Some(true) => q.push(" AND last_error IS NOT NULL"),
        Some(false) => q.push(" AND last_error IS NULL"),
        None => q,
    };
    if let Some(who) = &f.submitted_by {
        q.push(" AND submitted_by = ").push_bind(who.clone());
    }
    match f.degraded {
        Some(true) => q.push(" AND degraded_since IS NOT NULL"),
        Some(false) => q.push(" AND degraded_since IS NULL"),
        None => q,
    };
    // The limit is written into the SQL: the planner then knows how few rows the page wants
    // (a generic plan for a bound LIMIT may prefer a sort). At most 1,001 distinct statements.
    q.push(format_args!(
        " ORDER BY created_at DESC, id DESC LIMIT {}",
        limit.clamp(1, 1000) + 1
    ));
}

/// Appends the query of the counts per state (of `kind` and `submitted_by` when given): rows
/// of (state, total), the slots of each key added up, keys of no run left out.
fn push_counts(q: &mut QueryBuilder<Postgres>, kind: Option<Kind>, submitted_by: Option<&str>) {
    q.push("SELECT state, SUM(n)::bigint AS total FROM run_counts WHERE true");
    if let Some(kind) = kind {
        q.push(" AND kind = ").push_bind(kind.as_str());
    }
    if let Some(who) = submitted_by {
        q.push(" AND submitted_by = ").push_bind(who.to_string());
    }
    q.push(" GROUP BY state HAVING SUM(n) > 0");
}

/// The page of a listing that read one run more than `limit`.
fn page_of(mut runs: Vec<Run>, limit: u32) -> Page {
    let next_cursor = if runs.len() > limit as usize {
        runs.truncate(limit as usize);
        runs.last().map(|r| r.id)
    } else {
        None
    };
    Page { runs, next_cursor }
}

/// The counts per state, in state order (as the SQLite store sorts them: by name).
fn counts_of(mut rows: Vec<(String, i64)>) -> Result<Vec<(State, i64)>> {
    rows.sort_unstable();
    rows.into_iter().map(|(s, n)| Ok((state(&s)?, n))).collect()
}
