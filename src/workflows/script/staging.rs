//! Uploading: everything the processing job needs, staged under the run's deterministic prefix
//! `s3://{staging bucket}/essedum-executor/scripts/{run id}/`.
//!
//! The first step resolves `input_artifacts` into a list of files and commits it with the run:
//! a folder is every object (or file) under it with its relative name kept, as the Python
//! executor downloaded the backend's `{org}/remote/{pipeline}/{version}/Input` folder before
//! running the command in it (py-job-sagemaker-executer/Task.py); a single object or file keeps
//! its own name. The list is bounded (count and bytes, from the service settings) and refused
//! with a clear reason above that. Each later step copies one item to a key derived from the
//! run id and the item's name — `code/run.sh`, `code/{source}`, `input/{name}` — so a step
//! repeated after a crash rewrites the same object.

use super::request::{Artifact, ScriptRequest};
use super::{CODE_DIR, DATA_DIR, OUTPUT_DIR, ScriptContext, secrets};
use crate::aws::{AwsErrorKind, AwsPort};
use crate::failpoint;
use crate::model::State::{Cancelled, Submitted, Uploading};
use crate::store::Run;
use crate::workflows::{StepContext, StepError, StepOutput};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use uuid::Uuid;

/// The largest single input object copied from the request's object store.
const MAX_ARTIFACT_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// One input file to stage, with the name it has in the job's working directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputFile {
    /// A single file: [`Artifact::Local`] or [`Artifact::Store`] naming the object itself.
    pub source: Artifact,
    /// Relative to the job's input directory, `/`-separated.
    pub name: String,
    pub size: u64,
}

/// What one step of the plan stages.
enum Item<'a> {
    Script,
    Source(&'a Artifact),
    Input(&'a InputFile),
}

impl ScriptRequest {
    /// `essedum-executor/scripts/{run id}/`
    pub fn prefix(run_id: Uuid) -> String {
        format!("{}/{run_id}/", super::STAGING_ROOT)
    }

    pub fn log_key(run_id: Uuid) -> String {
        format!("{}logs/job.log", Self::prefix(run_id))
    }

    pub fn output_prefix(run_id: Uuid) -> String {
        format!("{}output/", Self::prefix(run_id))
    }

    /// `s3://` location of the job's log once collected.
    pub fn log_path(&self, run_id: Uuid) -> String {
        format!("s3://{}/{}", self.staging_bucket, Self::log_key(run_id))
    }

    /// `s3://` location the job's outputs are written to.
    pub fn output_dir(&self, run_id: Uuid) -> String {
        format!(
            "s3://{}/{}",
            self.staging_bucket,
            Self::output_prefix(run_id)
        )
    }

    /// What Uploading stages after resolving, in order, with each item's key.
    fn plan<'a>(&'a self, run_id: Uuid, inputs: &'a [InputFile]) -> Vec<(Item<'a>, String)> {
        let prefix = Self::prefix(run_id);
        let mut items = vec![(Item::Script, format!("{prefix}code/run.sh"))];
        if let Some(source) = &self.configs.source {
            items.push((
                Item::Source(source),
                format!("{prefix}code/{}", file_name(source)),
            ));
        }
        for f in inputs {
            items.push((Item::Input(f), format!("{prefix}input/{}", f.name)));
        }
        items
    }

    /// The shell script the job runs: the request's command, in the directory holding the
    /// input files (so `python <script>` finds the script and its data by their own names).
    pub(super) fn script(&self, run_id: Uuid) -> String {
        format!(
            "#!/bin/sh\n# {name} {version} (project {project}), run {run_id}: written by sagemaker-executor.\n\
             set -e\nmkdir -p {OUTPUT_DIR}\ncd {DATA_DIR} 2>/dev/null || cd {CODE_DIR}\n{command}\n",
            name = self.name.replace('\n', " "),
            version = self.version.replace('\n', " "),
            project = self.project_id.replace('\n', " "),
            command = self.command,
        )
    }
}

/// The last path segment of a single-file artifact.
fn file_name(a: &Artifact) -> String {
    let name = match a {
        Artifact::Local { path } | Artifact::LocalDir { path } => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        Artifact::Store { key, .. } => key
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string(),
    };
    if name.is_empty() || name == "." || name == ".." {
        "artifact".into()
    } else {
        name
    }
}

/// A name relative to a folder, safe as a path under the job's input directory.
fn relative_name(rel: &str, whole: &str) -> Result<String, StepError> {
    let ok = !rel.is_empty()
        && rel.len() <= 512
        && !rel.chars().any(char::is_control)
        && rel
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
    if ok {
        Ok(rel.to_string())
    } else {
        Err(StepError::terminal(format!(
            "input_artifacts: {whole:?} cannot be staged under its own name (empty, '.' or '..' path segments)"
        )))
    }
}

/// Collects the files of a plan while keeping count and size within the run's bounds.
struct Collector<'a> {
    request: &'a ScriptRequest,
    files: Vec<InputFile>,
    names: BTreeSet<String>,
    bytes: u64,
}

impl Collector<'_> {
    fn push(&mut self, source: Artifact, name: String, size: u64) -> Result<(), StepError> {
        let bounds = self.request.input_bounds;
        if size > MAX_ARTIFACT_BYTES {
            return Err(StepError::terminal(format!(
                "input_artifacts: {} is {size} bytes; a single input may be at most {MAX_ARTIFACT_BYTES} bytes",
                source.describe()
            )));
        }
        if !self.names.insert(name.clone()) {
            return Err(StepError::terminal(format!(
                "input_artifacts: two inputs would both be staged as {name:?}; give each file its own name"
            )));
        }
        self.bytes += size;
        self.files.push(InputFile { source, name, size });
        if self.files.len() > bounds.max_files {
            return Err(StepError::terminal(format!(
                "input_artifacts: more than {} input files (the limit EXECUTOR_SCRIPT_MAX_INPUT_FILES)",
                bounds.max_files
            )));
        }
        if self.bytes > bounds.max_bytes {
            return Err(StepError::terminal(format!(
                "input_artifacts: more than {} bytes of input (the limit EXECUTOR_SCRIPT_MAX_INPUT_BYTES)",
                bounds.max_bytes
            )));
        }
        Ok(())
    }
}

/// The port of the request's object store: its own target, else the run's AWS.
async fn store_port(cx: &StepContext) -> Result<Arc<dyn AwsPort>, StepError> {
    Ok(match secrets(cx)?.storage {
        Some(target) => cx.provider.port(&target).await,
        None => cx.aws.clone(),
    })
}

/// Every object under `prefix` (ending in `/`), names relative to it, within the bounds.
async fn list_folder(
    store: &dyn AwsPort,
    bucket: &str,
    prefix: &str,
    out: &mut Collector<'_>,
) -> Result<usize, StepError> {
    let mut found = 0;
    let mut next: Option<String> = None;
    loop {
        let page = store
            .list_objects(bucket, prefix, next.as_deref(), 1000)
            .await?;
        for o in &page.objects {
            let Some(rel) = o.key.strip_prefix(prefix) else {
                continue;
            };
            // Folder markers (`dir/`) are not files.
            if rel.is_empty() || rel.ends_with('/') {
                continue;
            }
            let name = relative_name(rel, &o.key)?;
            out.push(
                Artifact::Store {
                    bucket: bucket.to_string(),
                    key: o.key.clone(),
                },
                name,
                o.size,
            )?;
            found += 1;
        }
        match page.next {
            Some(n) if !page.objects.is_empty() => next = Some(n),
            _ => return Ok(found),
        }
    }
}

/// Every regular file under a local directory, names relative to it (symlinks must stay inside).
fn walk_dir(root: &Path, out: &mut Collector<'_>) -> Result<(), StepError> {
    let io = |p: &Path, e: std::io::Error| {
        StepError::terminal(format!("input_artifacts: reading {}: {e}", p.display()))
    };
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    let mut found: Vec<(PathBuf, u64)> = Vec::new();
    'walk: while let Some(dir) = stack.pop() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| io(&dir, e))?
            .map(|e| e.map(|e| e.path()).map_err(|e| io(&dir, e)))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for p in entries {
            let real = p.canonicalize().map_err(|e| io(&p, e))?;
            if !real.starts_with(root) {
                return Err(StepError::terminal(format!(
                    "input_artifacts: {} links outside the folder",
                    p.display()
                )));
            }
            if real.is_dir() {
                if real != p {
                    // A link to a directory inside the folder would be staged twice.
                    continue;
                }
                stack.push(p);
            } else if real.is_file() {
                let size = real.metadata().map_err(|e| io(&p, e))?.len();
                found.push((p, size));
                if found.len() > out.request.input_bounds.max_files {
                    break 'walk;
                }
            }
        }
    }
    found.sort();
    for (p, size) in found {
        let rel = p
            .strip_prefix(root)
            .map(|r| {
                r.components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_default();
        let name = relative_name(&rel, &p.display().to_string())?;
        out.push(Artifact::Local { path: p }, name, size)?;
    }
    Ok(())
}

/// The first Uploading step: `input_artifacts` as a bounded list of files with their names.
async fn resolve(request: &ScriptRequest, cx: &StepContext) -> Result<Vec<InputFile>, StepError> {
    let mut out = Collector {
        request,
        files: Vec::new(),
        names: BTreeSet::new(),
        bytes: 0,
    };
    let mut store: Option<Arc<dyn AwsPort>> = None;
    for a in &request.input_artifacts {
        match a {
            Artifact::Local { path } => {
                let size = tokio::fs::metadata(path)
                    .await
                    .map_err(|e| {
                        StepError::terminal(format!(
                            "input_artifacts: {} cannot be read: {e}",
                            path.display()
                        ))
                    })?
                    .len();
                out.push(a.clone(), file_name(a), size)?;
            }
            Artifact::LocalDir { path } => {
                let before = out.files.len();
                walk_dir(path, &mut out)?;
                if out.files.len() == before {
                    return Err(StepError::terminal(format!(
                        "input_artifacts: the folder {} holds no files",
                        path.display()
                    )));
                }
            }
            Artifact::Store { bucket, key } => {
                let store = match &store {
                    Some(s) => s.clone(),
                    None => store.insert(store_port(cx).await?).clone(),
                };
                let folder = format!("{}/", key.trim_end_matches('/'));
                if list_folder(store.as_ref(), bucket, &folder, &mut out).await? > 0 {
                    continue;
                }
                let missing = || {
                    StepError::terminal(format!(
                        "input_artifacts: {bucket}/{key} does not exist in {} (neither an object nor a folder holding objects)",
                        where_(request)
                    ))
                };
                if key.ends_with('/') {
                    return Err(missing());
                }
                let Some(head) = store.head_object(bucket, key).await? else {
                    return Err(missing());
                };
                out.push(a.clone(), file_name(a), head.size)?;
            }
        }
    }
    Ok(out.files)
}

fn where_(request: &ScriptRequest) -> String {
    if request.storage_endpoint.is_empty() {
        "the run's S3".into()
    } else {
        request.storage_endpoint.clone()
    }
}

/// Uploading: resolves the inputs once, then stages the next item of the plan per step;
/// Submitted once everything is in S3.
pub(super) async fn upload(
    run: &Run,
    request: &ScriptRequest,
    mut ctx: ScriptContext,
    cx: &StepContext,
) -> Result<StepOutput, StepError> {
    if run.cancel_requested {
        return Ok(StepOutput::to(Cancelled, ctx.to_value())
            .detail("cancelled before any processing job was created"));
    }
    let Some(inputs) = &ctx.inputs else {
        let files = resolve(request, cx).await?;
        let (count, bytes) = (files.len(), files.iter().map(|f| f.size).sum::<u64>());
        ctx.inputs = Some(files);
        // A run accepted before inputs were resolved restarts its plan (same keys: harmless).
        ctx.staged = 0;
        return Ok(StepOutput::to(Uploading, ctx.to_value()).detail(format!(
            "{count} input file(s), {bytes} bytes, to stage under s3://{}/{}input/",
            request.staging_bucket,
            ScriptRequest::prefix(run.id)
        )));
    };
    let plan = request.plan(run.id, inputs);
    let bucket = &request.staging_bucket;
    let Some((item, key)) = plan.get(ctx.staged) else {
        return Ok(StepOutput::to(Submitted, ctx.to_value()).detail(format!(
            "everything is staged; processing job name {}",
            ctx.job.job_name
        )));
    };
    let what = match item {
        Item::Script => {
            cx.aws
                .put_object(
                    bucket,
                    key,
                    request.script(run.id).into_bytes(),
                    "text/x-shellscript",
                )
                .await?;
            "the script".to_string()
        }
        Item::Source(a) => {
            copy(run, request, cx, a, key, ctx.staged).await?;
            a.describe()
        }
        Item::Input(f) => {
            copy(run, request, cx, &f.source, key, ctx.staged).await?;
            f.source.describe()
        }
    };
    failpoint::hit("script.after_upload").await;
    if matches!(item, Item::Input(_)) {
        failpoint::hit("script.after_input").await;
    }
    ctx.staged += 1;
    let to = if ctx.staged < plan.len() {
        Uploading
    } else {
        Submitted
    };
    Ok(StepOutput::to(to, ctx.to_value()).detail(format!("staged {what} at s3://{bucket}/{key}")))
}

/// Copies one file to `key` in the staging bucket: a local file is uploaded; an object of the
/// run's own S3 is copied in place; an object of another store goes through a temporary file.
async fn copy(
    run: &Run,
    request: &ScriptRequest,
    cx: &StepContext,
    source: &Artifact,
    key: &str,
    index: usize,
) -> Result<(), StepError> {
    let bucket = &request.staging_bucket;
    match source {
        Artifact::Local { path } => Ok(cx
            .aws
            .upload_file(bucket, key, path, "application/octet-stream")
            .await?),
        Artifact::LocalDir { path } => Err(StepError::terminal(format!(
            "{} is a folder, not a file",
            path.display()
        ))),
        Artifact::Store {
            bucket: from_bucket,
            key: from_key,
        } => {
            let secrets = secrets(cx)?;
            let copied = match secrets.storage {
                None => cx.aws.copy_object(from_bucket, from_key, bucket, key).await,
                Some(target) => {
                    let store = cx.provider.port(&target).await;
                    let tmp =
                        std::env::temp_dir().join(format!("sagemaker-executor-{}-{index}", run.id));
                    let copied = async {
                        store
                            .download_to_file(from_bucket, from_key, &tmp, MAX_ARTIFACT_BYTES)
                            .await?;
                        cx.aws
                            .upload_file(bucket, key, &tmp, "application/octet-stream")
                            .await
                    }
                    .await;
                    let _ = tokio::fs::remove_file(&tmp).await;
                    copied
                }
            };
            match copied {
                Ok(()) => Ok(()),
                Err(e) if e.kind == AwsErrorKind::NotFound => Err(StepError::terminal(format!(
                    "input artifact {from_bucket}/{from_key} does not exist in {}",
                    where_(request)
                ))),
                Err(e) => Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_names_refuse_dot_segments_and_empty_parts() {
        assert_eq!(relative_name("a/b.csv", "x").unwrap(), "a/b.csv");
        for bad in ["", "../x", "a//b", "a/./b", "a/.."] {
            assert!(relative_name(bad, "x").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn file_names_are_the_last_segment() {
        let a = Artifact::Store {
            bucket: "b".into(),
            key: "org/remote/p/1/Input/train.py".into(),
        };
        assert_eq!(file_name(&a), "train.py");
        let a = Artifact::Store {
            bucket: "b".into(),
            key: "x/".into(),
        };
        assert_eq!(file_name(&a), "x");
    }
}
