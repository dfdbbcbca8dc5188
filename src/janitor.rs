//! The janitor: what this service leaves in S3 is cleaned up even when nothing else does.
//!
//! At start and then every `EXECUTOR_JANITOR_INTERVAL_SECS` it
//! - aborts multipart uploads older than `EXECUTOR_STALE_UPLOAD_HOURS` under this service's own
//!   prefixes: each unfinished or recent run's `{S3Prefix}/{run id}/` (training, AutoML) or
//!   `essedum-executor/scripts/{run id}/` (script jobs), `datasets/` in the datasets bucket and
//!   `essedum-executor/scripts/` in the script bucket. An upload of this process that failed or
//!   was dropped is aborted at once (see `aws::sdk::objects`); these are the ones a crash left.
//! - deletes, once `EXECUTOR_STAGING_RETENTION_DAYS` have passed since a run finished, the
//!   inputs it staged (`{S3Prefix}/{run id}/input/`, a script job's `code/` and `input/`), and
//!   records that in `staging_purges` so that it is done once. Outputs, models and logs stay.
//!
//! Runs under an Essedum connection use that connection's AWS account; the janitor only uses the
//! service's own credentials, so it leaves their prefixes alone.
//!
//! One pass is [`Janitor::tick`]; the loop around it is [`Janitor::run`].

use crate::aws::{AwsErrorKind, AwsPort};
use crate::clock::{Clock, Timestamp};
use crate::model::Kind;
use crate::store::{StagedRun, Store};
use crate::workflows::script::STAGING_ROOT;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How far back (beyond the stale-upload age) finished runs' prefixes are still swept.
const LOOK_BACK: Duration = Duration::from_secs(7 * 24 * 3600);
/// Runs looked at per pass.
const BATCH: i64 = 500;

#[derive(Clone, Debug)]
pub struct JanitorSettings {
    /// Between passes; zero: no janitor.
    pub every: Duration,
    /// A multipart upload older than this is abandoned.
    pub stale_uploads_after: Duration,
    /// Staged inputs of finished runs are deleted this long after the run ended; None: kept.
    pub staging_retention: Option<Duration>,
    /// Configured buckets and the prefixes this service writes under in them.
    pub fixed_places: Vec<(String, String)>,
}

impl JanitorSettings {
    pub fn from_args(args: &crate::config::ServeArgs) -> JanitorSettings {
        let days = |d: f64| {
            let secs = d * 86_400.0;
            Duration::from_secs_f64(if secs.is_finite() {
                secs.clamp(0.0, 1e12)
            } else {
                0.0
            })
        };
        let mut fixed_places = Vec::new();
        if let Some(b) = &args.datasets_bucket {
            fixed_places.push((b.clone(), "datasets/".to_string()));
        }
        if let Some(b) = &args.script_bucket {
            fixed_places.push((b.clone(), format!("{STAGING_ROOT}/")));
        }
        JanitorSettings {
            every: Duration::from_secs(args.janitor_interval_secs),
            stale_uploads_after: days(args.stale_upload_hours / 24.0),
            staging_retention: (args.staging_retention_days > 0.0)
                .then(|| days(args.staging_retention_days)),
            fixed_places,
        }
    }
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub aborted_uploads: usize,
    pub purged_runs: usize,
    pub deleted_objects: usize,
}

pub struct Janitor {
    store: Store,
    aws: Arc<dyn AwsPort>,
    clock: Arc<dyn Clock>,
    settings: JanitorSettings,
}

/// Where a run stages data: its bucket, its own prefix, and the sub-prefixes that hold staged
/// inputs (deleted after the retention period).
fn staging_of(run: &StagedRun) -> Option<(String, String, Vec<String>)> {
    let r = &run.request;
    let text = |k: &str| r.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    match run.kind {
        Kind::Training | Kind::Automl => {
            let bucket = text("bucket")?;
            let base = match text("s3_prefix") {
                Some(p) => format!("{p}/{}/", run.id),
                None => format!("{}/", run.id),
            };
            let staged = r["input"]["source"].as_str().is_some_and(|s| s != "s3");
            let inputs = if staged {
                vec![format!("{base}input/")]
            } else {
                Vec::new()
            };
            Some((bucket.to_string(), base, inputs))
        }
        Kind::Script => {
            let bucket = text("staging_bucket")?;
            let base = format!("{STAGING_ROOT}/{}/", run.id);
            let inputs = vec![format!("{base}code/"), format!("{base}input/")];
            Some((bucket.to_string(), base, inputs))
        }
        _ => None,
    }
}

fn ago(now: Timestamp, d: Duration) -> Timestamp {
    now - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX / 2)
}

impl Janitor {
    pub fn new(
        store: Store,
        aws: Arc<dyn AwsPort>,
        clock: Arc<dyn Clock>,
        settings: JanitorSettings,
    ) -> Janitor {
        Janitor {
            store,
            aws,
            clock,
            settings,
        }
    }

    /// Passes until `stop` turns true: one at once, then one every `every`.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        if self.settings.every.is_zero() {
            return;
        }
        loop {
            let swept = self.tick(self.clock.now()).await;
            tracing::info!(
                aborted_uploads = swept.aborted_uploads,
                purged_runs = swept.purged_runs,
                deleted_objects = swept.deleted_objects,
                "janitor pass done"
            );
            tokio::select! {
                _ = tokio::time::sleep(self.settings.every) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// One pass: stale multipart uploads, then staged inputs past the retention period. Errors
    /// are logged and left for the next pass.
    pub async fn tick(&self, now: Timestamp) -> Swept {
        let mut swept = Swept::default();
        self.abort_stale_uploads(now, &mut swept).await;
        if let Some(retention) = self.settings.staging_retention {
            self.purge_staging(ago(now, retention), now, &mut swept)
                .await;
        }
        swept
    }

    async fn abort_stale_uploads(&self, now: Timestamp, swept: &mut Swept) {
        let stale_before = ago(now, self.settings.stale_uploads_after);
        let since = ago(now, self.settings.stale_uploads_after + LOOK_BACK);
        let mut places: BTreeSet<(String, String)> =
            self.settings.fixed_places.iter().cloned().collect();
        match self.store.recent_staging_runs(since, BATCH).await {
            Ok(runs) => places.extend(
                runs.iter()
                    .filter_map(staging_of)
                    .map(|(bucket, base, _)| (bucket, base)),
            ),
            Err(e) => tracing::warn!(error = %e, "janitor: could not read the runs"),
        }
        for (bucket, prefix) in places {
            let uploads = match self.aws.list_multipart_uploads(&bucket, &prefix).await {
                Ok(u) => u,
                Err(e) => {
                    if e.kind != AwsErrorKind::NotFound {
                        tracing::warn!(bucket, prefix, error = %e, "janitor: could not list uploads");
                    }
                    continue;
                }
            };
            for u in uploads {
                if u.initiated.is_none_or(|at| at >= stale_before) {
                    continue;
                }
                match self
                    .aws
                    .abort_multipart_upload(&bucket, &u.key, &u.upload_id)
                    .await
                {
                    Ok(()) => {
                        tracing::info!(
                            bucket,
                            key = u.key,
                            "janitor: aborted a stale multipart upload"
                        );
                        swept.aborted_uploads += 1;
                    }
                    Err(e) => {
                        tracing::warn!(bucket, key = u.key, error = %e, "janitor: abort failed")
                    }
                }
            }
        }
    }

    async fn purge_staging(&self, cutoff: Timestamp, now: Timestamp, swept: &mut Swept) {
        let runs = match self.store.runs_past_retention(cutoff, BATCH).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "janitor: could not read the finished runs");
                return;
            }
        };
        'runs: for run in runs {
            let Some((bucket, _, prefixes)) = staging_of(&run) else {
                continue;
            };
            let mut deleted = 0usize;
            for prefix in &prefixes {
                match self.delete_under(&bucket, prefix).await {
                    Ok(n) => deleted += n,
                    Err(e) if e.kind == AwsErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(run_id = run.id, bucket, prefix, error = %e, "janitor: could not delete staged inputs; next pass");
                        continue 'runs;
                    }
                }
            }
            let detail = format!(
                "deleted {deleted} staged object(s) under {}",
                prefixes
                    .iter()
                    .map(|p| format!("s3://{bucket}/{p}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            match self.store.record_staging_purge(&run.id, &detail, now).await {
                Ok(()) => {
                    tracing::info!(
                        run_id = run.id,
                        deleted,
                        "janitor: staged inputs past retention deleted"
                    );
                    swept.purged_runs += 1;
                    swept.deleted_objects += deleted;
                }
                Err(e) => {
                    tracing::warn!(run_id = run.id, error = %e, "janitor: could not record a purge")
                }
            }
        }
    }

    /// Deletes every object under `prefix`; returns how many.
    async fn delete_under(&self, bucket: &str, prefix: &str) -> crate::aws::AwsResult<usize> {
        let mut n = 0;
        loop {
            // Always the first page: what was deleted is gone from the next listing.
            let page = self.aws.list_objects(bucket, prefix, None, 1000).await?;
            if page.objects.is_empty() {
                return Ok(n);
            }
            for o in &page.objects {
                self.aws.delete_object(bucket, &o.key).await?;
                n += 1;
            }
            if page.next.is_none() {
                return Ok(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(kind: Kind, request: Value) -> StagedRun {
        StagedRun {
            id: "r1".into(),
            kind,
            request,
        }
    }

    #[test]
    fn a_run_stages_under_its_own_prefix_and_only_staged_inputs_are_purged() {
        let staged =
            json!({"bucket": "b", "s3_prefix": "exp/1", "input": {"source": "inline_csv"}});
        assert_eq!(
            staging_of(&run(Kind::Training, staged)),
            Some((
                "b".into(),
                "exp/1/r1/".into(),
                vec!["exp/1/r1/input/".into()]
            ))
        );
        let in_s3 = json!({"bucket": "b", "s3_prefix": "", "input": {"source": "s3"}});
        assert_eq!(
            staging_of(&run(Kind::Automl, in_s3)),
            Some(("b".into(), "r1/".into(), vec![]))
        );
        let script = json!({"staging_bucket": "s"});
        assert_eq!(
            staging_of(&run(Kind::Script, script)),
            Some((
                "s".into(),
                "essedum-executor/scripts/r1/".into(),
                vec![
                    "essedum-executor/scripts/r1/code/".into(),
                    "essedum-executor/scripts/r1/input/".into()
                ]
            ))
        );
        assert_eq!(staging_of(&run(Kind::Transform, json!({}))), None);
    }
}
