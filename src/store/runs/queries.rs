//! Read-only queries of runs and their history (the API's and the metrics' views); every
//! write, each one transaction, is in the parent module.
//!
//! Queries that return many small rows (a page of runs, counts per state) return them as one
//! row of JSON built by SQLite (`json_group_array`): sqlx hands each SQLite row from its
//! connection's worker thread to the caller one at a time, with a thread wake-up per row, and
//! that hand-off, not SQLite, was most of the cost of a listing page.

use super::super::{Error, Result, SqliteStore};
use super::{Event, Page, Run, RunFilter, Summary, event_from_row, run_from_row, state};
use crate::clock::{Timestamp, from_db, to_db};
use crate::model::{Kind, State};
use sqlx::Row;
use std::borrow::Cow;
use uuid::Uuid;

/// Every column of a listed run except the request and the context, as `json_array`
/// arguments in the order of [`Listed`]'s fields (an array, not an object: SQLite builds it
/// faster, and serde reads a struct from an array by position).
macro_rules! summary_fields {
    () => {
        "id, kind, state, resource_name, attempt, version, next_due_at, lease_owner, \
         lease_until, cancel_requested, last_error, submitted_by, created_at, updated_at, \
         degraded_since"
    };
}

/// The columns of a [`Summary`], in the order of [`ListedSummary`]'s fields.
macro_rules! listing_fields {
    () => {
        "id, kind, state, resource_name, attempt, cancel_requested, last_error, created_at, \
         updated_at, degraded_since"
    };
}

/// The columns read for [`listing_fields`]: a deployment or a teardown has no resource name of
/// its own (a name is taken by one run at a time, an endpoint by one change at a time), so the
/// endpoint it changes stands in for it.
macro_rules! listing_columns {
    () => {
        "id, kind, state, COALESCE(resource_name, iif(kind IN ('deployment', 'teardown'), \
         request ->> '$.endpoint_name', NULL)) AS resource_name, attempt, cancel_requested, \
         last_error, created_at, updated_at, degraded_since"
    };
}

/// Which columns a listing returns.
#[derive(Clone, Copy)]
enum Columns {
    /// Every column.
    Full,
    /// What the operator listing shows ([`Summary`]).
    Summary,
}

impl Columns {
    /// The columns read from `runs`, and the `json_array` arguments rendering them.
    fn sql(self) -> (&'static str, &'static str) {
        match self {
            Columns::Full => (
                run_columns!(),
                concat!(summary_fields!(), ", json(request), json(context)"),
            ),
            Columns::Summary => (listing_columns!(), listing_fields!()),
        }
    }
}

/// One run of a listing as `json_array` renders it: the fields in the order of
/// `summary_fields!`, then the request and the context when they were asked for.
/// (The fields only parsed are borrowed from the JSON text where they can be.)
#[derive(serde::Deserialize)]
struct Listed<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    state: Cow<'a, str>,
    resource_name: Option<String>,
    attempt: i64,
    version: i64,
    #[serde(borrow)]
    next_due_at: Option<Cow<'a, str>>,
    lease_owner: Option<String>,
    #[serde(borrow)]
    lease_until: Option<Cow<'a, str>>,
    cancel_requested: i64,
    last_error: Option<String>,
    submitted_by: Option<String>,
    #[serde(borrow)]
    created_at: Cow<'a, str>,
    #[serde(borrow)]
    updated_at: Cow<'a, str>,
    #[serde(borrow)]
    degraded_since: Option<Cow<'a, str>>,
    #[serde(default)]
    request: serde_json::Value,
    #[serde(default)]
    context: serde_json::Value,
}

/// One run of the operator listing as `json_array` renders it ([`listing_fields`]).
#[derive(serde::Deserialize)]
struct ListedSummary<'a> {
    id: String,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    state: Cow<'a, str>,
    resource_name: Option<String>,
    attempt: i64,
    cancel_requested: i64,
    last_error: Option<String>,
    created_at: String,
    updated_at: String,
    degraded_since: Option<String>,
}

impl ListedSummary<'_> {
    fn into_summary(self) -> Result<Summary> {
        Ok(Summary {
            id: self.id,
            kind: Kind::parse(&self.kind)
                .ok_or_else(|| Error::Corrupt(format!("kind {:?}", self.kind)))?,
            state: state(&self.state)?,
            resource_name: self.resource_name,
            attempt: self.attempt,
            cancel_requested: self.cancel_requested != 0,
            last_error: self.last_error,
            degraded_since: self
                .degraded_since
                .map(|t| stored_time("degraded_since", t))
                .transpose()?,
            created_at: stored_time("created_at", self.created_at)?,
            updated_at: stored_time("updated_at", self.updated_at)?,
        })
    }
}

/// A stored time as the API shows it: the store writes every time in [`to_db`]'s form, which
/// is the API's, so text of that shape is passed on as it is; any other text (a row written
/// by hand, say) is parsed and written again, or refused.
fn stored_time(column: &str, text: String) -> Result<String> {
    let b = text.as_bytes();
    let canonical = b.len() == 27
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[26] == b'Z'
        && b.iter().all(|c| c.is_ascii_digit() || b"-T:.Z".contains(c));
    if canonical {
        return Ok(text);
    }
    from_db(&text)
        .map(to_db)
        .ok_or_else(|| Error::Corrupt(format!("{column}: bad timestamp {text:?}")))
}

impl Listed<'_> {
    fn into_run(self) -> Result<Run> {
        let ts = |col: &str, s: &str| {
            from_db(s).ok_or_else(|| Error::Corrupt(format!("{col}: bad timestamp {s:?}")))
        };
        let opt_ts = |col: &str, s: Option<&str>| s.map(|s| ts(col, s)).transpose();
        Ok(Run {
            id: Uuid::parse_str(&self.id).map_err(|e| Error::Corrupt(format!("id: {e}")))?,
            kind: Kind::parse(&self.kind)
                .ok_or_else(|| Error::Corrupt(format!("kind {:?}", self.kind)))?,
            state: state(&self.state)?,
            request: self.request,
            context: self.context,
            resource_name: self.resource_name,
            attempt: self.attempt,
            version: self.version,
            next_due_at: opt_ts("next_due_at", self.next_due_at.as_deref())?,
            lease_owner: self.lease_owner,
            lease_until: opt_ts("lease_until", self.lease_until.as_deref())?,
            cancel_requested: self.cancel_requested != 0,
            last_error: self.last_error,
            degraded_since: opt_ts("degraded_since", self.degraded_since.as_deref())?,
            submitted_by: self.submitted_by,
            created_at: ts("created_at", &self.created_at)?,
            updated_at: ts("updated_at", &self.updated_at)?,
        })
    }
}

/// The rows of a one-row JSON answer (`json_group_array`).
fn json_rows<'a, T: serde::Deserialize<'a>>(json: &'a str) -> Result<Vec<T>> {
    serde_json::from_str(json).map_err(|e| Error::Corrupt(format!("a JSON answer: {e}")))
}

const OLDEST_UNFINISHED: &str = "SELECT MIN(created_at) FROM runs WHERE next_due_at IS NOT NULL";

const COUNT_DEGRADED: &str = "SELECT json_group_array(json_array(kind, n)) FROM (
     SELECT kind, COUNT(*) AS n FROM runs INDEXED BY runs_degraded_newest
     WHERE degraded_since IS NOT NULL GROUP BY kind)";

impl SqliteStore {
    pub async fn get_run(&self, id: Uuid) -> Result<Option<Run>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE id = ?1"
        ))
        .bind(id.to_string())
        .fetch_optional(self.reader())
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
            " FROM runs WHERE resource_name = ?1"
        ))
        .bind(id_or_name)
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    pub async fn events(&self, id: Uuid) -> Result<Vec<Event>> {
        let rows = sqlx::query(
            "SELECT seq, from_state, to_state, at, attempt, detail, error_class, error, repeats
             FROM run_events WHERE run_id = ?1 ORDER BY seq",
        )
        .bind(id.to_string())
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Runs newest first, filtered, paged by a cursor (the last run of the previous page).
    ///
    /// The SQL names only the filters given, so that SQLite can pick an index that yields the
    /// rows already in listing order (see migration 0014): a page reads about `limit` index
    /// entries whatever the number of stored runs, and a cursor page starts inside the index
    /// instead of walking to the cursor. Optional filters written as `(? IS NULL OR ...)` would
    /// hide that choice from the planner.
    pub async fn list_runs(&self, f: &RunFilter) -> Result<Page> {
        self.list(Columns::Full, f).await
    }

    /// A page of run summaries (as [`SqliteStore::list_runs`], but each run's `request` and
    /// `context` are `Value::Null`: they are neither read nor parsed) and the counts per state
    /// of the runs of `counts_kind` and `counts_submitter` (as [`SqliteStore::count_by_state`]), in
    /// one query: the operator API's listing.
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
        let mut q = sqlx::QueryBuilder::new("SELECT (");
        push_list(&mut q, Columns::Summary, f, limit);
        q.push("), (");
        push_counts(&mut q, counts_kind, counts_submitter);
        q.push("), ");
        match f.after {
            Some(after) => {
                q.push("EXISTS (SELECT 1 FROM runs WHERE id = ")
                    .push_bind(after.to_string());
                if let Some(who) = &f.submitted_by {
                    q.push(" AND submitted_by = ").push_bind(who.clone());
                }
                q.push(")")
            }
            None => q.push("1"),
        };
        let (page, counts, cursor_known): (String, String, bool) =
            q.build_query_as().fetch_one(self.reader()).await?;
        if !cursor_known {
            return Ok(None);
        }
        Ok(Some((summary_page_of(&page, limit)?, counts_of(&counts)?)))
    }

    async fn list(&self, columns: Columns, f: &RunFilter) -> Result<Page> {
        let limit = f.limit.clamp(1, 1000);
        let mut q = sqlx::QueryBuilder::new("");
        push_list(&mut q, columns, f, limit);
        let json: String = q.build_query_scalar().fetch_one(self.reader()).await?;
        page_of(&json, limit)
    }

    /// How many runs are in each state (of one kind, or all; of one submitter, or all), from
    /// the counts the triggers of migration 0014 keep (never a scan of `runs`).
    pub async fn count_by_state(
        &self,
        kind: Option<Kind>,
        submitted_by: Option<&str>,
    ) -> Result<Vec<(State, i64)>> {
        let mut q = sqlx::QueryBuilder::new("");
        push_counts(&mut q, kind, submitted_by);
        let json: String = q.build_query_scalar().fetch_one(self.reader()).await?;
        counts_of(&json)
    }

    /// Every endpoint named by a deployment or teardown run, with its newest such run, newest first.
    pub async fn endpoints_with_latest_run(&self) -> Result<Vec<(String, Run)>> {
        let rows = sqlx::query(concat!(
            "SELECT json_extract(request, '$.endpoint_name') AS endpoint, ",
            run_columns!(),
            " FROM runs r WHERE kind IN ('deployment', 'teardown')
               AND created_at = (SELECT MAX(created_at) FROM runs r2
                                 WHERE r2.kind IN ('deployment', 'teardown')
                                   AND json_extract(r2.request, '$.endpoint_name')
                                       = json_extract(r.request, '$.endpoint_name'))
             ORDER BY created_at DESC LIMIT 1000"
        ))
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get::<String, _>("endpoint")?, run_from_row(row)?)))
            .collect()
    }

    /// The newest run of `kind` for an endpoint (deployments and teardowns name it in their request).
    pub async fn latest_run_for_endpoint(
        &self,
        kind: Kind,
        endpoint: &str,
    ) -> Result<Option<Uuid>> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE kind = ?1 AND json_extract(request, '$.endpoint_name') = ?2
             ORDER BY created_at DESC LIMIT 1",
        )
        .bind(kind.as_str())
        .bind(endpoint)
        .fetch_optional(self.reader())
        .await?;
        id.map(|s| Uuid::parse_str(&s).map_err(|e| Error::Corrupt(format!("id: {e}"))))
            .transpose()
    }

    /// How many runs there are of each kind in each state (metrics), from the kept counts.
    pub async fn count_by_kind_state(&self) -> Result<Vec<(Kind, State, i64)>> {
        let json: String = sqlx::query_scalar(
            "SELECT json_group_array(json_array(kind, state, total)) FROM (
                 SELECT kind, state, SUM(n) AS total FROM run_counts GROUP BY kind, state
                 HAVING SUM(n) > 0)",
        )
        .fetch_one(self.reader())
        .await?;
        let mut rows: Vec<(String, String, i64)> = json_rows(&json)?;
        rows.sort_unstable();
        rows.into_iter()
            .map(|(k, s, n)| {
                let kind = Kind::parse(&k).ok_or_else(|| Error::Corrupt(format!("kind {k:?}")))?;
                Ok((kind, state(&s)?, n))
            })
            .collect()
    }

    /// When the oldest unfinished run was created (metrics): the last entry of the partial
    /// index of unfinished runs.
    pub async fn oldest_unfinished(&self) -> Result<Option<Timestamp>> {
        let s: Option<String> = sqlx::query_scalar(OLDEST_UNFINISHED)
            .fetch_one(self.reader())
            .await?;
        Ok(s.as_deref().and_then(from_db))
    }

    /// When the next run falls due (ignoring leases), for the engine's sleep.
    pub async fn next_due_at(&self) -> Result<Option<Timestamp>> {
        let s: Option<String> = sqlx::query_scalar(
            "SELECT MIN(MAX(next_due_at, COALESCE(lease_until, next_due_at))) FROM runs
             WHERE next_due_at IS NOT NULL",
        )
        .fetch_one(self.reader())
        .await?;
        Ok(s.as_deref().and_then(from_db))
    }

    /// How many unfinished runs are degraded (their status checks failing), by kind (metrics).
    /// Read from the partial index of degraded runs: left to itself, the planner would walk
    /// every run in kind order to avoid sorting the few groups.
    pub async fn count_degraded(&self) -> Result<Vec<(Kind, i64)>> {
        let json: String = sqlx::query_scalar(COUNT_DEGRADED)
            .fetch_one(self.reader())
            .await?;
        let mut rows: Vec<(String, i64)> = json_rows(&json)?;
        rows.sort_unstable();
        rows.into_iter()
            .map(|(k, n)| {
                let kind = Kind::parse(&k).ok_or_else(|| Error::Corrupt(format!("kind {k:?}")))?;
                Ok((kind, n))
            })
            .collect()
    }

    /// Counts of non-terminal runs (for start-up logging).
    pub async fn count_unfinished(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE next_due_at IS NOT NULL")
                .fetch_one(self.reader())
                .await?,
        )
    }
}

/// Appends the listing's query for `f` (one more row than `limit`, to tell whether a next page
/// exists), as one JSON array of objects.
fn push_list(
    q: &mut sqlx::QueryBuilder<sqlx::Sqlite>,
    columns: Columns,
    f: &RunFilter,
    limit: u32,
) {
    let (columns, fields) = columns.sql();
    q.push("SELECT json_group_array(json_array(")
        .push(fields)
        .push(")) FROM (SELECT ")
        .push(columns)
        .push(" FROM runs WHERE 1");
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
        q.push(" AND created_at >= ").push_bind(to_db(t));
    }
    if let Some(t) = f.created_before {
        q.push(" AND created_at < ").push_bind(to_db(t));
    }
    if let Some(t) = f.updated_after {
        q.push(" AND updated_at >= ").push_bind(to_db(t));
    }
    if let Some(t) = f.updated_before {
        q.push(" AND updated_at < ").push_bind(to_db(t));
    }
    if let Some(t) = f.stuck_since {
        q.push(" AND next_due_at IS NOT NULL AND updated_at < ")
            .push_bind(to_db(t));
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
    // The limit is written into the SQL, not bound: SQLite looks at a bound LIMIT while
    // planning, and then prepares the statement again every time the value is bound, which
    // was about a fifth of a page's cost. (At most 1,001 distinct statements.)
    q.push(format_args!(
        " ORDER BY created_at DESC, id DESC LIMIT {})",
        limit.clamp(1, 1000) + 1
    ));
}

/// Appends the query of the counts per state (of `kind` and `submitted_by` when given), as one
/// JSON array of `[state, count]`.
fn push_counts(
    q: &mut sqlx::QueryBuilder<sqlx::Sqlite>,
    kind: Option<Kind>,
    submitted_by: Option<&str>,
) {
    q.push(
        "SELECT json_group_array(json_array(state, total)) FROM (
             SELECT state, SUM(n) AS total FROM run_counts WHERE 1",
    );
    if let Some(kind) = kind {
        q.push(" AND kind = ").push_bind(kind.as_str());
    }
    if let Some(who) = submitted_by {
        q.push(" AND submitted_by = ").push_bind(who.to_string());
    }
    q.push(" GROUP BY state HAVING SUM(n) > 0)");
}

/// The page a listing's JSON answer holds.
fn page_of(json: &str, limit: u32) -> Result<Page> {
    let mut listed: Vec<Listed> = json_rows(json)?;
    // The order of a JSON aggregate is not promised: put the rows back in listing order.
    listed.sort_unstable_by(|a, b| (&b.created_at, &b.id).cmp(&(&a.created_at, &a.id)));
    let mut runs = listed
        .into_iter()
        .map(Listed::into_run)
        .collect::<Result<Vec<_>>>()?;
    let next_cursor = if runs.len() > limit as usize {
        runs.truncate(limit as usize);
        runs.last().map(|r| r.id)
    } else {
        None
    };
    Ok(Page { runs, next_cursor })
}

/// The page of summaries a listing's JSON answer holds.
fn summary_page_of(json: &str, limit: u32) -> Result<Page<Summary>> {
    let mut listed: Vec<ListedSummary> = json_rows(json)?;
    // In listing order, as [`page_of`].
    listed.sort_unstable_by(|a, b| (&b.created_at, &b.id).cmp(&(&a.created_at, &a.id)));
    let more = listed.len() > limit as usize;
    listed.truncate(limit as usize);
    let runs = listed
        .into_iter()
        .map(ListedSummary::into_summary)
        .collect::<Result<Vec<_>>>()?;
    let next_cursor = match runs.last() {
        Some(last) if more => {
            Some(Uuid::parse_str(&last.id).map_err(|e| Error::Corrupt(format!("id: {e}")))?)
        }
        _ => None,
    };
    Ok(Page { runs, next_cursor })
}

/// The counts per state a JSON answer holds, in state order.
fn counts_of(json: &str) -> Result<Vec<(State, i64)>> {
    let mut rows: Vec<(String, i64)> = json_rows(json)?;
    rows.sort_unstable();
    rows.into_iter().map(|(s, n)| Ok((state(&s)?, n))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::from_db;

    /// A listed run (decoded from SQLite's JSON) is the run `get_run` reads, field for field,
    /// and the listing is newest first, ties broken by id.
    #[tokio::test]
    async fn a_listed_run_is_the_stored_run_field_for_field() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&format!("sqlite://{}", dir.path().join("l.db").display()))
            .await
            .unwrap();
        let mut ids = Vec::new();
        for (i, at) in [
            "2026-11-01T00:00:00.000001Z",
            "2026-11-02T00:00:00Z",
            "2026-11-02T00:00:00Z",
        ]
        .into_iter()
        .enumerate()
        {
            let id = Uuid::now_v7();
            let run = super::super::NewRun {
                id,
                kind: [Kind::Training, Kind::Automl, Kind::Script][i],
                state: State::Uploading,
                request: serde_json::json!({"n": i, "nested": {"s": "x\"y", "list": [1, 2.5, null]}}),
                context: serde_json::json!({"job_name": format!("job-{i}")}),
                resource_name: (i != 1).then(|| format!("job-{i}")),
                submitted_by: (i != 2).then(|| "alice".to_string()),
                detail: "accepted".into(),
            };
            store.insert_run(run, from_db(at).unwrap()).await.unwrap();
            ids.push(id);
        }
        sqlx::query(
            "UPDATE runs SET lease_owner = 'w#1', lease_until = '2026-11-03T00:00:00.5Z',
                 last_error = 'boom', degraded_since = '2026-11-02T01:00:00Z',
                 cancel_requested = 1, attempt = 3, version = 7 WHERE id = ?1",
        )
        .bind(ids[1].to_string())
        .execute(&store.writer)
        .await
        .unwrap();
        ids.reverse();
        for summaries in [false, true] {
            // Each listed run's id and how the listing showed it.
            let mut listed: Vec<(Uuid, String)> = Vec::new();
            let mut after = None;
            loop {
                let f = RunFilter {
                    limit: 2,
                    after,
                    ..Default::default()
                };
                after = if summaries {
                    let (page, _) = store
                        .list_run_summaries_with_counts(&f, None, None)
                        .await
                        .unwrap()
                        .expect("the cursor is a listed run");
                    listed.extend(
                        page.runs
                            .iter()
                            .map(|s| (s.id.parse().unwrap(), format!("{s:?}"))),
                    );
                    page.next_cursor
                } else {
                    let page = store.list_runs(&f).await.unwrap();
                    listed.extend(page.runs.iter().map(|r| (r.id, format!("{r:?}"))));
                    page.next_cursor
                };
                if after.is_none() {
                    break;
                }
            }
            assert_eq!(listed.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids);
            for (id, shown) in listed {
                let stored = store.get_run(id).await.unwrap().unwrap();
                let want = if summaries {
                    format!("{:?}", Summary::from(&stored))
                } else {
                    format!("{stored:?}")
                };
                assert_eq!(shown, want);
            }
        }
    }

    /// The listing passes the store's own time text on; other text is written in that form
    /// again, and text that is no time is refused as a corrupt row.
    #[test]
    fn a_listed_time_is_the_stored_text_in_the_apis_form() {
        let t = from_db("2026-11-03T10:20:30.123456Z").unwrap();
        let stored = to_db(t);
        assert_eq!(stored_time("created_at", stored.clone()).unwrap(), stored);
        for other in [
            "2026-11-03T10:20:30.123456+00:00",
            "2026-11-03T11:20:30.123456+01:00",
        ] {
            assert_eq!(stored_time("created_at", other.into()).unwrap(), stored);
        }
        assert!(matches!(
            stored_time("created_at", "yesterday".into()),
            Err(Error::Corrupt(m)) if m.contains("created_at")
        ));
    }

    /// SQLite's plan for `sql`, one line per step.
    async fn plan_of(store: &SqliteStore, q: &mut sqlx::QueryBuilder<sqlx::Sqlite>) -> Vec<String> {
        q.build()
            .fetch_all(store.reader())
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<String, _>("detail"))
            .collect()
    }

    fn uses(plan: &[String], index: &str) -> bool {
        let first = plan.iter().find(|l| l.contains(" runs "));
        first.is_some_and(|l| {
            (l.starts_with("SEARCH runs USING") || l.starts_with("SCAN runs USING"))
                && l.contains(&format!("INDEX {index}"))
        }) && !plan.iter().any(|l| l.contains("TEMP B-TREE"))
    }

    /// The listing's main shapes read an index that yields their rows in listing order: no
    /// scan of every run, no sort. (Plans, not timings: without ANALYZE statistics SQLite plans
    /// the same on an empty store as on a full one.)
    #[tokio::test]
    async fn each_main_listing_shape_reads_an_index_in_listing_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&format!("sqlite://{}", dir.path().join("p.db").display()))
            .await
            .unwrap();
        let t = from_db("2026-11-01T00:00:00Z").unwrap();
        let cursor = Some(Uuid::now_v7());
        let shapes: Vec<(&str, RunFilter, &str)> = vec![
            ("all", RunFilter::default(), "runs_newest"),
            (
                "a deep cursor page",
                RunFilter {
                    after: cursor,
                    ..Default::default()
                },
                "runs_newest",
            ),
            (
                "created in a range",
                RunFilter {
                    created_after: Some(t),
                    created_before: Some(t),
                    ..Default::default()
                },
                "runs_newest",
            ),
            (
                "one state",
                RunFilter {
                    state: Some(State::Failed),
                    ..Default::default()
                },
                "runs_state_newest",
            ),
            (
                "one state, a cursor page",
                RunFilter {
                    state: Some(State::Failed),
                    after: cursor,
                    ..Default::default()
                },
                "runs_state_newest",
            ),
            (
                "one kind",
                RunFilter {
                    kind: Some(Kind::Automl),
                    ..Default::default()
                },
                "runs_kind_newest",
            ),
            (
                "one kind in one state",
                RunFilter {
                    kind: Some(Kind::Automl),
                    state: Some(State::Done),
                    ..Default::default()
                },
                "runs_kind_state_newest",
            ),
            (
                "one submitter",
                RunFilter {
                    submitted_by: Some("essedum".into()),
                    ..Default::default()
                },
                "runs_submitter_newest",
            ),
            (
                "one submitter, a cursor page",
                RunFilter {
                    submitted_by: Some("essedum".into()),
                    after: cursor,
                    ..Default::default()
                },
                "runs_submitter_newest",
            ),
            (
                "one submitter's runs of some kinds (Essedum lists)",
                RunFilter {
                    submitted_by: Some("essedum".into()),
                    kinds: vec![Kind::Training, Kind::Automl],
                    ..Default::default()
                },
                "runs_submitter_newest",
            ),
            (
                "with an error",
                RunFilter {
                    has_error: Some(true),
                    ..Default::default()
                },
                "runs_errored_newest",
            ),
            (
                "without an error",
                RunFilter {
                    has_error: Some(false),
                    ..Default::default()
                },
                "runs_newest",
            ),
            (
                "degraded",
                RunFilter {
                    degraded: Some(true),
                    ..Default::default()
                },
                "runs_degraded_newest",
            ),
            (
                "stuck",
                RunFilter {
                    stuck_since: Some(t),
                    ..Default::default()
                },
                "runs_unfinished_newest",
            ),
        ];
        let mut wrong = Vec::new();
        for ((name, filter, index), columns) in shapes
            .iter()
            .flat_map(|s| [(s, Columns::Full), (s, Columns::Summary)])
        {
            let mut q = sqlx::QueryBuilder::new("EXPLAIN QUERY PLAN ");
            push_list(&mut q, columns, filter, 50);
            let plan = plan_of(&store, &mut q).await;
            if !uses(&plan, index) {
                wrong.push(format!(
                    "{name}: wanted {index} in listing order, got {plan:?}"
                ));
            }
        }
        for (name, sql, index) in [
            (
                "oldest unfinished",
                OLDEST_UNFINISHED,
                "runs_unfinished_newest",
            ),
            ("degraded by kind", COUNT_DEGRADED, "runs_degraded_newest"),
        ] {
            let mut q = sqlx::QueryBuilder::new("EXPLAIN QUERY PLAN ");
            q.push(sql);
            let plan = plan_of(&store, &mut q).await;
            let first = plan.iter().find(|l| l.contains(" runs "));
            if !first.is_some_and(|l| l.contains(&format!("INDEX {index}"))) {
                wrong.push(format!("{name}: wanted {index}, got {plan:?}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}
