//! Script jobs through Essedum's remote-job API (`/execute`), end to end: the real binary, a
//! real SQLite file and the emulator's processing jobs, CloudWatch log and S3 outputs — driven
//! with the body the Essedum backend really builds.

mod support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::fault_proxy::{Fault, FaultPlan, FaultProxy};
use support::{Emulator, ROLE, Scratch, Service, client, reply, unique};

const IMAGE: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/python:3.11";

const STORAGE_SECRET: &str = "storage-secret-Zq81x";
const AWS_SECRET: &str = "aws-secret-Kp44w";
const ENV_SECRET: &str = "env-secret-Vb23n";

/// A valid `/execute` body whose input is `s3://{bucket}/in/train.csv` in the emulator.
fn body(emu: &Emulator, bucket: &str, env: Value) -> Value {
    json!({
        "bucket": bucket,
        "project_id": "proj-7",
        "name": "churn-script",
        "version": "3",
        "credentials": {"endpoint": emu.url(), "access_key": "test", "secret_key": STORAGE_SECRET},
        "input_artifacts": "in/train.csv",
        "command": "python3 train.py --epochs 2",
        "storage": "s3",
        "environment": env,
        "configs": {
            "bucket": "", "aws_access_key_id": "", "aws_secret_access_key": "",
            "region_name": "", "role": "arn:aws:iam::123456789012:role/SageMakerRole",
            "py_version": "3.11", "container": "123456789012.dkr.ecr.us-east-1.amazonaws.com/sklearn:1",
            "instance_count": "1", "instance_type": "ml.m5.large", "source": ""
        }
    })
}

/// The object-store folder the backend uploads a pipeline's script to and names as
/// `input_artifacts`: `{org}/remote/{pipeline}/{version}/Input`
/// (ICIPRemoteExecutorJob.java, generateArtifactsPath; the upload keeps the file name,
/// ICIPDataSourceServiceUtilS3.java uploadFile).
const INPUT_FOLDER: &str = "leo1311/remote/LEOCHURN42/3/Input";

/// The `/execute` body exactly as the backend builds it (RemoteBody.java serialised by org.json,
/// which leaves out null fields): no `configs` (its setter is commented out in
/// ICIPRemoteExecutorJob.java), `environment` only when the job has variables, `version` as a
/// string, `credentials` from the storage connection's url/accessKey/secretKey.
fn backend_body(emu: &Emulator, bucket: &str, env: Option<Value>) -> Value {
    let mut b = json!({
        "bucket": bucket,
        "project_id": "leo1311",
        "name": "LEOCHURN42",
        "version": "3",
        "credentials": {"endpoint": emu.url(), "access_key": "test", "secret_key": STORAGE_SECRET},
        "input_artifacts": INPUT_FOLDER,
        "command": "python train.py",
        "storage": "s3",
    });
    if let Some(env) = env {
        b["environment"] = env;
    }
    b
}

/// The input folder as the backend leaves it, with neighbours that are not part of it.
async fn backend_folder(emu: &Emulator, bucket: &str) {
    emu.create_bucket(bucket).await;
    for (key, body) in [
        ("train.py", "print('training')\n"),
        ("data/train.csv", "a,b,label\n1,2,0\n"),
        ("data/nested/extra.txt", "x"),
    ] {
        emu.put_object(bucket, &format!("{INPUT_FOLDER}/{key}"), body)
            .await;
    }
    // Beside the folder, not in it: a sibling with the same prefix and the job's old outputs.
    emu.put_object(bucket, "leo1311/remote/LEOCHURN42/3/Input2/other.py", "no")
        .await;
    emu.put_object(
        bucket,
        "leo1311/remote/LEOCHURN42/3/outputartifacts/logs/log.txt",
        "old",
    )
    .await;
}

/// Service settings that stand in for the `configs` the backend never sends.
fn with_settings(mut config: support::ServiceConfig) -> support::ServiceConfig {
    config.extra_env.extend([
        ("EXECUTOR_SCRIPT_ROLE_ARN".to_string(), ROLE.to_string()),
        ("EXECUTOR_SCRIPT_IMAGE".to_string(), IMAGE.to_string()),
    ]);
    config
}

/// POSTs `body` as the backend's OkHttp client does: `Content-Type: application/json;
/// charset=utf-8`, no `Authorization`, no `Accept`.
async fn backend_post(svc: &Service, path: &str, body: &Value) -> (u16, Value) {
    let r = client()
        .post(svc.url(path))
        .header("Content-Type", "application/json; charset=utf-8")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    reply(r).await
}

/// The backend's submit rules: 200 or 201, and `task_id` read as a string
/// (ICIPRemoteExecutorJob.java, executeScript).
fn backend_task_id(code: u16, reply: &Value) -> String {
    assert!(code == 200 || code == 201, "{code}: {reply}");
    reply["task_id"]
        .as_str()
        .unwrap_or_else(|| panic!("task_id is not a string: {reply}"))
        .to_string()
}

/// The staged input files of a task, relative to its input prefix.
async fn staged_inputs(emu: &Emulator, bucket: &str, id: &str) -> Vec<String> {
    let prefix = format!("essedum-executor/scripts/{id}/input/");
    let mut keys: Vec<String> = emu
        .list_keys(bucket, &prefix)
        .await
        .into_iter()
        .map(|k| k.strip_prefix(&prefix).unwrap().to_string())
        .collect();
    keys.sort();
    keys
}

async fn setup() -> (Scratch, Service, String) {
    let emu = Emulator::shared();
    let bucket = unique("exe");
    emu.create_bucket(&bucket).await;
    emu.put_object(&bucket, "in/train.csv", "a,b,label\n1,2,0\n")
        .await;
    let s = Scratch::new();
    let svc = Service::start(s.config(emu.url()));
    (s, svc, bucket)
}

async fn submit(svc: &Service, body: &Value) -> String {
    let (code, a) = svc.post("/execute", body).await;
    assert_eq!(code, 201, "{a}");
    assert_eq!(a["task_status"], "Submitted", "{a}");
    assert!(a["log_path"].as_str().unwrap().starts_with("s3://"), "{a}");
    a["task_id"].as_str().unwrap().to_string()
}

async fn status(svc: &Service, id: &str) -> Value {
    let (code, s) = svc.get(&format!("/execute/{id}/getStatus")).await;
    assert_eq!(code, 200, "{s}");
    s
}

async fn wait_status(svc: &Service, id: &str, pred: impl Fn(&str) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(svc, id).await;
        if pred(s["task_status"].as_str().unwrap_or("")) {
            return s;
        }
        assert!(Instant::now() < deadline, "task {id}: {s}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn finished(word: &str) -> bool {
    matches!(word, "COMPLETED" | "ERROR" | "CANCELLED")
}

/// Parses `yyyy-MM-dd HH:mm:ss.SSSSSSXXX` as the backend does; returns microseconds since the
/// epoch (UTC), or None when the text does not match the pattern exactly.
fn backend_time(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 27 || b[4] != b'-' || b[7] != b'-' || b[10] != b' ' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || b[19] != b'.' {
        return None;
    }
    let offset_secs = match &text[26..] {
        "Z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (digits(27..29)? * 3600 + digits(30..32)? * 60)
        }
        _ => return None,
    };
    let (y, mo, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (h, mi, s, us) = (
        digits(11..13)?,
        digits(14..16)?,
        digits(17..19)?,
        digits(20..26)?,
    );
    // Days from civil (proleptic Gregorian).
    let (y2, m2) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + mi * 60 + s - offset_secs) * 1_000_000) + us)
}

/// The backend's parsing rules, replayed on a real reply: every key present, the status word
/// one of its five (case-sensitive), times in its pattern, and finish = started + timestamp.
fn assert_backend_accepts(s: &Value) {
    for key in [
        "task_id",
        "pid",
        "task_status",
        "log_path",
        "output_dir",
        "submitted",
        "started",
        "finished",
        "timestamp",
    ] {
        assert!(s.get(key).is_some(), "{key} missing from {s}");
    }
    let word = s["task_status"].as_str().unwrap();
    assert!(
        ["WAITING", "RUNNING", "COMPLETED", "ERROR", "CANCELLED"].contains(&word),
        "{word}"
    );
    assert!(
        backend_time(s["submitted"].as_str().unwrap()).is_some(),
        "{s}"
    );
    if finished(word) {
        let started = backend_time(s["started"].as_str().expect("started")).expect("pattern");
        let finished = backend_time(s["finished"].as_str().expect("finished")).expect("pattern");
        let elapsed = s["timestamp"].as_f64().expect("timestamp is a number");
        assert!(elapsed >= 0.0, "{s}");
        let computed = started + (elapsed * 1e6).round() as i64;
        assert!((computed - finished).abs() <= 1, "{s}");
        assert!(s["output_dir"].as_str().unwrap().starts_with("s3://"));
    }
}

#[tokio::test]
async fn script_job_completes_with_its_log_and_output_artifacts() {
    let emu = Emulator::shared();
    let (_s, svc, bucket) = setup().await;
    let id = submit(&svc, &body(emu, &bucket, json!({"EPOCHS": "2"}))).await;
    let first = status(&svc, &id).await;
    assert_backend_accepts(&first);
    let s = wait_status(&svc, &id, finished).await;
    assert_eq!(s["task_status"], "COMPLETED", "{s}");
    assert_backend_accepts(&s);

    // The processing job ran the staged script on the staged input, with the environment.
    let job = s["pid"].as_str().unwrap();
    let d = emu
        .sagemaker("DescribeProcessingJob", json!({"ProcessingJobName": job}))
        .await;
    assert_eq!(d["ProcessingJobStatus"], "Completed", "{d}");
    assert_eq!(d["Environment"]["EPOCHS"], "2", "{d}");
    assert_eq!(d["Environment"]["ESSEDUM_PY_VERSION"], "3.11", "{d}");
    let prefix = format!("essedum-executor/scripts/{id}/");
    let script = emu
        .get_object(&bucket, &format!("{prefix}code/run.sh"))
        .await
        .unwrap();
    assert!(
        script.contains("\npython3 train.py --epochs 2\n"),
        "{script}"
    );
    assert_eq!(
        emu.get_object(&bucket, &format!("{prefix}input/train.csv"))
            .await
            .as_deref(),
        Some("a,b,label\n1,2,0\n")
    );
    assert_eq!(emu.job_stats("processing_jobs", job).await["creates"], 1);

    let (code, log) = svc.get(&format!("/execute/{id}/getLog")).await;
    assert_eq!(code, 200, "{log}");
    let content = log["logs"]["content"].as_str().unwrap();
    assert!(
        content.contains(&format!("emulated processing job {job} started")),
        "{content}"
    );
    assert!(
        content.contains(&format!("emulated processing job {job} finished")),
        "{content}"
    );
    // The collected copy is where log_path says.
    let kept = emu
        .get_object(&bucket, &format!("{prefix}logs/job.log"))
        .await
        .unwrap();
    assert_eq!(kept, content);

    let (code, arts) = svc.get(&format!("/execute/{id}/getOutputArtifacts")).await;
    assert_eq!(code, 200, "{arts}");
    assert_eq!(
        arts,
        json!({
            "result": {"content": {"job": job, "status": "ok"}},
            "metrics": {"content": "accuracy=0.93"}
        })
    );

    // A finished task cannot be cancelled any more.
    let (code, stop) = svc.get(&format!("/execute/{id}/stop")).await;
    assert_eq!((code, &stop), (200, &json!({"Task cancelled": false})));
    assert_eq!(status(&svc, &id).await["task_status"], "COMPLETED");

    let (code, list) = svc.get("/execute").await;
    assert_eq!(code, 200);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["task_id"], id.as_str());
}

#[tokio::test]
async fn failing_script_ends_in_error_with_its_log() {
    let emu = Emulator::shared();
    let (_s, svc, bucket) = setup().await;
    let env = json!({
        "_emulator_outcome": "Failed",
        "_emulator_failure_reason": "AlgorithmError: division by zero",
        "_emulator_log": "loading data\ntraining"
    });
    let id = submit(&svc, &body(emu, &bucket, env)).await;
    let s = wait_status(&svc, &id, finished).await;
    assert_eq!(s["task_status"], "ERROR", "{s}");
    assert_backend_accepts(&s);
    assert!(
        s["error"].as_str().unwrap().contains("division by zero"),
        "{s}"
    );
    let (_, log) = svc.get(&format!("/execute/{id}/getLog")).await;
    let content = log["logs"]["content"].as_str().unwrap();
    assert_eq!(
        content,
        "loading data\ntraining\nERROR: AlgorithmError: division by zero\n"
    );
    let (_, arts) = svc.get(&format!("/execute/{id}/getOutputArtifacts")).await;
    assert_eq!(arts, json!({}));
}

#[tokio::test]
async fn stop_stops_the_processing_job_and_ends_cancelled_with_the_log_so_far() {
    let emu = Emulator::shared();
    let (_s, svc, bucket) = setup().await;
    let env = json!({"_emulator_polls": "1000", "_emulator_log": "epoch 1\nepoch 2\nepoch 3"});
    let id = submit(&svc, &body(emu, &bucket, env)).await;
    let running = wait_status(&svc, &id, |w| w == "RUNNING").await;
    assert_backend_accepts(&running);
    assert!(running["started"].is_string(), "{running}");
    // While it runs, the log grows and can be read.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, log) = svc.get(&format!("/execute/{id}/getLog")).await;
        if log["logs"]["content"]
            .as_str()
            .unwrap_or("")
            .starts_with("epoch 1\n")
        {
            break;
        }
        assert!(Instant::now() < deadline, "no log while running: {log}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (code, stop) = svc.get(&format!("/execute/{id}/stop")).await;
    assert_eq!((code, &stop), (200, &json!({"Task cancelled": true})));
    let s = wait_status(&svc, &id, finished).await;
    assert_eq!(s["task_status"], "CANCELLED", "{s}");
    assert_backend_accepts(&s);
    let d = emu
        .sagemaker(
            "DescribeProcessingJob",
            json!({"ProcessingJobName": s["pid"]}),
        )
        .await;
    assert_eq!(d["ProcessingJobStatus"], "Stopped", "{d}");
    let (_, log) = svc.get(&format!("/execute/{id}/getLog")).await;
    let content = log["logs"]["content"].as_str().unwrap();
    assert!(
        content.starts_with("epoch 1\n") && content.ends_with("stopped\n"),
        "{content}"
    );
    let (_, again) = svc.get(&format!("/execute/{id}/stop")).await;
    assert_eq!(again, json!({"Task cancelled": true}));
}

#[tokio::test]
async fn restart_in_the_middle_of_a_script_job_creates_exactly_one_processing_job() {
    let emu = Emulator::shared();
    let bucket = unique("exe");
    emu.create_bucket(&bucket).await;
    emu.put_object(&bucket, "in/train.csv", "a,b\n1,2\n").await;
    let s = Scratch::new();
    let mut config = s.config(emu.url());
    config.failpoints = vec!["script.after_create".into()];
    let svc = Service::start(config);
    let id = submit(&svc, &body(emu, &bucket, json!({"_emulator_polls": "3"}))).await;
    svc.stderr
        .wait_for("the failpoint", Duration::from_secs(30), |l| {
            l == "FAILPOINT script.after_create"
        });
    // Killed after CreateProcessingJob was accepted, before the result was committed.
    let svc = svc.kill_and_restart();
    let st = wait_status(&svc, &id, finished).await;
    assert_eq!(st["task_status"], "COMPLETED", "{st}");
    let job = st["pid"].as_str().unwrap();
    let stats = emu.job_stats("processing_jobs", job).await;
    assert_eq!(
        (
            stats["creates"].as_u64(),
            stats["duplicate_creates"].as_u64()
        ),
        (Some(1), Some(0)),
        "{stats}"
    );
    let (_, run) = svc.get(&format!("/api/v1/runs/{id}")).await;
    let history = run["history"].to_string();
    assert!(history.contains("adopted"), "{history}");
}

#[tokio::test]
async fn bad_values_are_refused_with_the_field_and_nothing_is_stored() {
    let emu = Emulator::shared();
    let (_s, svc, bucket) = setup().await;
    let good = body(emu, &bucket, json!({}));
    let mut cases: Vec<(Value, u16, &str)> = vec![];
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("command");
    cases.push((missing, 422, "command"));
    let mut empty = good.clone();
    empty["name"] = json!("");
    cases.push((empty, 422, "name"));
    let mut number = good.clone();
    number["version"] = json!(3);
    cases.push((number, 422, "version"));
    let mut storage = good.clone();
    storage["storage"] = json!("ftp");
    cases.push((storage, 422, "storage"));
    let mut env = good.clone();
    env["environment"] = json!({"EPOCHS": 2});
    cases.push((env, 422, "environment.EPOCHS"));
    let mut configs = good.clone();
    configs["configs"] = json!(["x"]);
    cases.push((configs, 422, "configs"));
    let mut role = good.clone();
    role["configs"]["role"] = json!("not-an-arn");
    cases.push((role, 422, "configs.role"));
    let mut half_keys = good.clone();
    half_keys["configs"]["aws_access_key_id"] = json!("AKIAONLYHALF");
    cases.push((half_keys, 422, "configs.aws_secret_access_key"));
    let mut minio = good.clone();
    minio["storage"] = json!("minio");
    minio["credentials"]["endpoint"] = json!("");
    cases.push((minio, 422, "credentials.endpoint"));
    let mut local = good.clone();
    local["storage"] = json!("local");
    local["input_artifacts"] = json!("../../etc/passwd");
    cases.push((local, 422, "input_artifacts"));
    for (b, want, field) in cases {
        let (code, e) = svc.post("/execute", &b).await;
        assert_eq!(code, want, "{field}: {e}");
        assert_eq!(e["field"], field, "{e}");
        assert!(e["error"].is_string(), "{e}");
    }
    let (code, e) = svc.post("/execute", &json!([1, 2])).await;
    assert_eq!(code, 400, "{e}");
    let (_, list) = svc.get("/execute").await;
    assert_eq!(list, json!([]));
    assert_eq!(svc.run_count().await, 0);
}

#[tokio::test]
async fn backend_execute_body_without_configs_or_environment_runs_with_the_input_folder_names_kept()
{
    let emu = Emulator::shared();
    let bucket = unique("exeb");
    backend_folder(emu, &bucket).await;
    let s = Scratch::new();
    // The settings come from the config file here (keys named like the flags).
    let file = s.dir.path().join("config.toml");
    std::fs::write(
        &file,
        format!("script_role_arn = \"{ROLE}\"\nscript_image = \"{IMAGE}\"\n"),
    )
    .unwrap();
    let mut config = s.config(emu.url());
    config
        .extra_env
        .push(("EXECUTOR_CONFIG".into(), file.display().to_string()));
    let svc = Service::start(config);

    let (code, a) = backend_post(&svc, "/execute", &backend_body(emu, &bucket, None)).await;
    let id = backend_task_id(code, &a);
    let st = wait_status(&svc, &id, finished).await;
    assert_eq!(st["task_status"], "COMPLETED", "{st}");
    assert_backend_accepts(&st);

    // Every object under the folder, with its name relative to the folder; nothing beside it.
    assert_eq!(
        staged_inputs(emu, &bucket, &id).await,
        ["data/nested/extra.txt", "data/train.csv", "train.py"]
    );
    let prefix = format!("essedum-executor/scripts/{id}/");
    assert_eq!(
        emu.get_object(&bucket, &format!("{prefix}input/train.py"))
            .await
            .as_deref(),
        Some("print('training')\n")
    );
    // The job mounts that prefix as its data directory and runs the command there, so
    // `python train.py` finds the script and `data/train.csv` by their own names.
    let d = emu
        .sagemaker(
            "DescribeProcessingJob",
            json!({"ProcessingJobName": st["pid"]}),
        )
        .await;
    assert_eq!(d["RoleArn"], ROLE, "{d}");
    assert_eq!(d["AppSpecification"]["ImageUri"], IMAGE, "{d}");
    assert_eq!(
        d["ProcessingResources"]["ClusterConfig"]["InstanceType"], "ml.t3.medium",
        "{d}"
    );
    let data = d["ProcessingInputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["InputName"] == "data")
        .unwrap_or_else(|| panic!("no data input: {d}"));
    assert_eq!(
        data["S3Input"]["S3Uri"],
        format!("s3://{bucket}/{prefix}input/"),
        "{d}"
    );
    assert_eq!(
        data["S3Input"]["LocalPath"],
        "/opt/ml/processing/input/data"
    );
    let script = emu
        .get_object(&bucket, &format!("{prefix}code/run.sh"))
        .await
        .unwrap();
    assert!(
        script.contains("\ncd /opt/ml/processing/input/data 2>/dev/null || cd /opt/ml/processing/input/code\npython train.py\n"),
        "{script}"
    );
}

#[tokio::test]
async fn backend_execute_body_with_environment_unknown_keys_and_blank_strings_is_accepted() {
    let emu = Emulator::shared();
    let bucket = unique("exeb");
    backend_folder(emu, &bucket).await;
    let s = Scratch::new();
    let svc = Service::start(with_settings(s.config(emu.url())));
    let mut b = backend_body(emu, &bucket, Some(json!({"EPOCHS": "2"})));
    // Keys this service does not read, and blanks where the backend has no value.
    b["isRemoteDS"] = json!(true);
    b["jobType"] = json!({"any": ["shape"]});
    b["credentials"]["comment"] = json!("ignored");
    b["configs"] = json!({"role": "", "container": "", "instance_count": "", "source": ""});
    let (code, a) = backend_post(
        &svc,
        "/api/service/v1/pipelines/training/custom_script?project=leo1311&adapter_instance=a&isCached=false&isRemoteDS=true",
        &b,
    )
    .await;
    let id = backend_task_id(code, &a);
    let st = wait_status(&svc, &id, finished).await;
    assert_eq!(st["task_status"], "COMPLETED", "{st}");
    let d = emu
        .sagemaker(
            "DescribeProcessingJob",
            json!({"ProcessingJobName": st["pid"]}),
        )
        .await;
    assert_eq!(d["Environment"]["EPOCHS"], "2", "{d}");
    assert_eq!(d["RoleArn"], ROLE, "{d}");
    assert_eq!(
        staged_inputs(emu, &bucket, &id).await,
        ["data/nested/extra.txt", "data/train.csv", "train.py"]
    );

    // Blank credentials on s3 storage: the input folder is read from the run's own S3.
    let mut b = backend_body(emu, &bucket, None);
    b["credentials"] = json!({"endpoint": "", "access_key": "", "secret_key": ""});
    let (code, a) = backend_post(&svc, "/execute", &b).await;
    let id = backend_task_id(code, &a);
    let st = wait_status(&svc, &id, finished).await;
    assert_eq!(st["task_status"], "COMPLETED", "{st}");
    assert_eq!(staged_inputs(emu, &bucket, &id).await.len(), 3);
}

#[tokio::test]
async fn a_missing_setting_is_422_naming_the_field_and_the_setting_and_nothing_is_stored() {
    let emu = Emulator::shared();
    let bucket = unique("exeb");
    backend_folder(emu, &bucket).await;
    let s = Scratch::new();
    let svc = Service::start(s.config(emu.url()));
    let (code, e) = backend_post(&svc, "/execute", &backend_body(emu, &bucket, None)).await;
    assert_eq!(code, 422, "{e}");
    assert_eq!(e["field"], "configs.role", "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("EXECUTOR_SCRIPT_ROLE_ARN"),
        "{e}"
    );
    let mut b = backend_body(emu, &bucket, None);
    b["configs"] = json!({"role": ROLE});
    let (code, e) = backend_post(&svc, "/execute", &b).await;
    assert_eq!(code, 422, "{e}");
    assert_eq!(e["field"], "configs.container", "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("EXECUTOR_SCRIPT_IMAGE"),
        "{e}"
    );
    let (code, runs) = svc.get("/api/v1/runs").await;
    assert_eq!(code, 200, "{runs}");
    assert_eq!(runs["runs"], json!([]), "{runs}");
    assert_eq!(svc.get("/execute").await.1, json!([]));
}

#[tokio::test]
async fn an_input_folder_above_the_file_limit_ends_in_error_before_any_job() {
    let emu = Emulator::shared();
    let bucket = unique("exeb");
    backend_folder(emu, &bucket).await;
    let s = Scratch::new();
    let mut config = with_settings(s.config(emu.url()));
    config
        .extra_env
        .push(("EXECUTOR_SCRIPT_MAX_INPUT_FILES".into(), "2".into()));
    let svc = Service::start(config);
    let (code, a) = backend_post(&svc, "/execute", &backend_body(emu, &bucket, None)).await;
    let id = backend_task_id(code, &a);
    let st = wait_status(&svc, &id, finished).await;
    assert_eq!(st["task_status"], "ERROR", "{st}");
    assert_backend_accepts(&st);
    let error = st["error"].as_str().unwrap();
    assert!(
        error.contains("more than 2 input files")
            && error.contains("EXECUTOR_SCRIPT_MAX_INPUT_FILES"),
        "{error}"
    );
    assert!(staged_inputs(emu, &bucket, &id).await.is_empty());
    let (code, d) = emu
        .sagemaker_in(
            "us-east-1",
            "DescribeProcessingJob",
            json!({"ProcessingJobName": st["pid"]}),
        )
        .await;
    assert_eq!(code, 400, "no processing job was created: {d}");
    // The log says why, so the backend's job log does too.
    let (code, log) = svc.get(&format!("/execute/{id}/getLog")).await;
    assert_eq!(code, 200, "{log}");
    assert!(
        log["logs"]["content"]
            .as_str()
            .unwrap()
            .contains("more than 2 input files"),
        "{log}"
    );
}

#[tokio::test]
async fn get_log_and_get_status_answer_200_from_the_store_when_aws_is_unreachable() {
    let emu = Emulator::shared();
    let bucket = unique("exeb");
    backend_folder(emu, &bucket).await;
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    let s = Scratch::new();
    let svc = Service::start(with_settings(s.config(proxy.url())));
    // One short log (kept whole in the service) and one longer than what it keeps.
    let long: String = (0..1200)
        .map(|i| format!("line {i:04} {}\n", "x".repeat(90)))
        .collect();
    let short_id = {
        let (code, a) = backend_post(
            &svc,
            "/execute",
            &backend_body(
                emu,
                &bucket,
                Some(json!({"_emulator_log": "epoch 1\nepoch 2"})),
            ),
        )
        .await;
        backend_task_id(code, &a)
    };
    let long_id = {
        let (code, a) = backend_post(
            &svc,
            "/execute",
            &backend_body(emu, &bucket, Some(json!({"_emulator_log": long}))),
        )
        .await;
        backend_task_id(code, &a)
    };
    let mut before = Vec::new();
    for id in [&short_id, &long_id] {
        let st = wait_status(&svc, id, finished).await;
        assert_eq!(st["task_status"], "COMPLETED", "{st}");
        let (code, log) = svc.get(&format!("/execute/{id}/getLog")).await;
        assert_eq!(code, 200, "{log}");
        before.push((st, log["logs"]["content"].as_str().unwrap().to_string()));
    }
    assert_eq!(before[0].1, "epoch 1\nepoch 2\n");
    assert_eq!(before[1].1, long, "the whole long log, read from S3");

    // AWS goes away: every connection is dropped, or hangs far beyond the backend's 10 s.
    for fault in [Fault::Drop, Fault::Delay(Duration::from_secs(60))] {
        proxy.set_plan(FaultPlan::always(fault.clone()));
        for (i, id) in [&short_id, &long_id].into_iter().enumerate() {
            let started = Instant::now();
            let (code, st) = svc.get(&format!("/execute/{id}/getStatus")).await;
            assert_eq!(code, 200, "{fault:?}: {st}");
            assert_eq!(st, before[i].0, "getStatus comes from the store alone");
            let (code, log) = svc.get(&format!("/execute/{id}/getLog")).await;
            assert_eq!(code, 200, "{fault:?}: {log}");
            assert!(
                started.elapsed() < Duration::from_secs(9),
                "{fault:?}: answered after {:?}",
                started.elapsed()
            );
            let content = log["logs"]["content"].as_str().unwrap();
            if i == 0 {
                assert_eq!(content, before[0].1, "the short log is kept whole");
            } else {
                let (note, rest) = content.split_once('\n').unwrap();
                assert!(
                    note.starts_with("[sagemaker-executor] the full log (s3://")
                        && note.contains("cannot be read now"),
                    "{note}"
                );
                assert!(
                    rest.len() <= 64 * 1024 && rest.len() > 60 * 1024,
                    "{}",
                    rest.len()
                );
                assert!(
                    long.ends_with(rest),
                    "the end of the log, from a line start"
                );
                assert!(rest.starts_with("line "), "{}", &rest[..20]);
            }
        }
    }
    proxy.clear_plan();
}

#[tokio::test]
async fn task_ids_are_checked_on_every_route() {
    let (_s, svc, _bucket) = setup().await;
    for route in ["getStatus", "stop", "getLog", "getOutputArtifacts"] {
        let (code, e) = svc.get(&format!("/execute/not-a-uuid/{route}")).await;
        assert_eq!((code, e["field"].as_str()), (400, Some("task_id")), "{e}");
        let (code, e) = svc
            .get(&format!(
                "/execute/0190a6a4-9d6c-7000-8000-000000000000/{route}"
            ))
            .await;
        assert_eq!(code, 404, "{route}: {e}");
    }
}

#[tokio::test]
async fn local_storage_stages_a_file_from_the_data_directory() {
    let emu = Emulator::shared();
    let (s, svc, bucket) = setup().await;
    std::fs::write(s.data_dir().join("local.csv"), "x,y\n3,4\n").unwrap();
    let mut b = body(emu, &bucket, json!(""));
    b["storage"] = json!("local");
    b["input_artifacts"] = json!("local.csv");
    let id = submit(&svc, &b).await;
    let st = wait_status(&svc, &id, finished).await;
    assert_eq!(st["task_status"], "COMPLETED", "{st}");
    assert_eq!(
        emu.get_object(
            &bucket,
            &format!("essedum-executor/scripts/{id}/input/local.csv")
        )
        .await
        .as_deref(),
        Some("x,y\n3,4\n")
    );
}

#[tokio::test]
async fn local_storage_stages_a_folder_of_the_data_directory_with_names_kept() {
    let emu = Emulator::shared();
    let bucket = unique("exeb");
    emu.create_bucket(&bucket).await;
    let s = Scratch::new();
    let folder = s.data_dir().join(INPUT_FOLDER);
    std::fs::create_dir_all(folder.join("data")).unwrap();
    std::fs::write(folder.join("train.py"), "print(1)\n").unwrap();
    std::fs::write(folder.join("data/train.csv"), "a\n1\n").unwrap();
    let svc = Service::start(with_settings(s.config(emu.url())));
    let mut b = backend_body(emu, &bucket, None);
    b["storage"] = json!("local");
    b["credentials"] = json!({"endpoint": "", "access_key": "", "secret_key": ""});
    let (code, a) = backend_post(&svc, "/execute", &b).await;
    let id = backend_task_id(code, &a);
    let st = wait_status(&svc, &id, finished).await;
    assert_eq!(st["task_status"], "COMPLETED", "{st}");
    assert_eq!(
        staged_inputs(emu, &bucket, &id).await,
        ["data/train.csv", "train.py"]
    );
}

#[tokio::test]
async fn restart_while_staging_an_input_folder_stages_each_file_once_under_its_name() {
    let emu = Emulator::shared();
    let bucket = unique("exeb");
    backend_folder(emu, &bucket).await;
    let s = Scratch::new();
    let mut config = with_settings(s.config(emu.url()));
    config.failpoints = vec!["script.after_input".into()];
    let svc = Service::start(config);
    let (code, a) = backend_post(&svc, "/execute", &backend_body(emu, &bucket, None)).await;
    let id = backend_task_id(code, &a);
    svc.stderr
        .wait_for("the failpoint", Duration::from_secs(30), |l| {
            l == "FAILPOINT script.after_input"
        });
    // Killed after the first input file was copied, before that was committed.
    let svc = svc.kill_and_restart();
    let st = wait_status(&svc, &id, finished).await;
    assert_eq!(st["task_status"], "COMPLETED", "{st}");
    assert_eq!(
        staged_inputs(emu, &bucket, &id).await,
        ["data/nested/extra.txt", "data/train.csv", "train.py"]
    );
    let stats = emu
        .job_stats("processing_jobs", st["pid"].as_str().unwrap())
        .await;
    assert_eq!(stats["creates"], 1, "{stats}");
}

#[tokio::test]
async fn custom_script_route_takes_the_same_body() {
    let emu = Emulator::shared();
    let (_s, svc, bucket) = setup().await;
    let (code, a) = svc
        .post(
            "/api/service/v1/pipelines/training/custom_script?project=p&adapter_instance=a&isCached=true",
            &body(emu, &bucket, json!({})),
        )
        .await;
    assert_eq!(code, 201, "{a}");
    let id = a["task_id"].as_str().unwrap();
    let st = wait_status(&svc, id, finished).await;
    assert_eq!(st["task_status"], "COMPLETED", "{st}");
}

#[tokio::test]
async fn no_secret_from_a_request_reaches_the_database_the_log_or_a_reply() {
    let emu = Emulator::shared();
    let (s, svc, bucket) = setup().await;
    let mut b = body(emu, &bucket, json!({"API_TOKEN": ENV_SECRET}));
    b["configs"]["aws_access_key_id"] = json!("AKIAREQUESTKEY");
    b["configs"]["aws_secret_access_key"] = json!(AWS_SECRET);
    let id = submit(&svc, &b).await;
    let st = wait_status(&svc, &id, finished).await;
    assert_eq!(st["task_status"], "COMPLETED", "{st}");
    // The job really got the sealed environment and ran with the request's credentials.
    let d = emu
        .sagemaker(
            "DescribeProcessingJob",
            json!({"ProcessingJobName": st["pid"]}),
        )
        .await;
    assert_eq!(d["Environment"]["API_TOKEN"], ENV_SECRET);

    let mut replies = vec![st.to_string()];
    for path in [
        "/execute".to_string(),
        format!("/execute/{id}/getLog"),
        format!("/execute/{id}/getOutputArtifacts"),
        format!("/api/v1/runs/{id}"),
        "/api/v1/runs".to_string(),
    ] {
        replies.push(svc.get(&path).await.1.to_string());
    }
    let mut svc = svc;
    svc.terminate();
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(s.dir.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            stored.extend(std::fs::read(&p).unwrap());
        }
    }
    let stored = String::from_utf8_lossy(&stored);
    let logs = svc.stderr.all().join("\n");
    for secret in [STORAGE_SECRET, AWS_SECRET, ENV_SECRET] {
        assert!(
            !stored.contains(secret),
            "{secret} is in the data directory"
        );
        assert!(!logs.contains(secret), "{secret} is in the service log");
        for r in &replies {
            assert!(!r.contains(secret), "{secret} is in a reply: {r}");
        }
    }
    // The key file sits beside the database, readable by its owner only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.dir.path().join("executor.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_bad_script_setting_stops_the_start_naming_it() {
    let s = Scratch::new();
    for (args, env, named) in [
        (
            vec!["--script-role-arn", "not-a-role"],
            None,
            "EXECUTOR_SCRIPT_ROLE_ARN",
        ),
        (
            vec![],
            Some(("EXECUTOR_SCRIPT_INSTANCE_TYPE", "large")),
            "EXECUTOR_SCRIPT_INSTANCE_TYPE",
        ),
    ] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sagemaker-executor"));
        cmd.env_clear()
            .arg("serve")
            .args(&args)
            .env("EXECUTOR_BIND", "127.0.0.1:0")
            .env(
                "EXECUTOR_DATABASE_URL",
                format!("sqlite://{}", s.db().display()),
            )
            .env("AWS_REGION", "us-east-1");
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{args:?} {env:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("error: {named}")), "{err}");
    }
}

/// Runs one short script job whose CloudWatch log calls are all answered with `fault`; returns
/// the service (to ask it), the task id and the run view.
async fn job_with_log_fault(fault: Fault) -> (Scratch, Service, FaultProxy, String, Value) {
    let emu = Emulator::shared();
    let bucket = unique("exel");
    backend_folder(emu, &bucket).await;
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    let s = Scratch::new();
    let svc = Service::start(with_settings(s.config(proxy.url())));
    proxy.set_plan(FaultPlan::always(fault).only(["DescribeLogStreams", "GetLogEvents"]));
    let (code, a) = backend_post(
        &svc,
        "/execute",
        &backend_body(emu, &bucket, Some(json!({"_emulator_log": "epoch 1"}))),
    )
    .await;
    let id = backend_task_id(code, &a);
    let st = wait_status(&svc, &id, finished).await;
    let (_, run) = svc.get(&format!("/api/v1/runs/{id}")).await;
    (s, svc, proxy, id, json!({"status": st, "run": run}))
}

#[tokio::test]
async fn a_completed_job_whose_log_read_is_refused_stays_completed_and_says_so() {
    let (_s, svc, proxy, id, seen) = job_with_log_fault(Fault::AccessDenied).await;
    assert_eq!(seen["status"]["task_status"], "COMPLETED", "{seen}");
    // A refusal is not retried: one DescribeLogStreams, by Collecting, before getLog.
    assert_eq!(proxy.fault_count("DescribeLogStreams"), 1, "{seen}");
    let copy = seen["run"]["context"]["log_copy"]
        .as_str()
        .unwrap_or_default();
    assert!(
        copy.starts_with("failed: ") && copy.contains("AccessDenied"),
        "{seen}"
    );
    let history = seen["run"]["history"].to_string();
    assert!(
        history.contains("log_copy: failed:") && history.contains("AccessDenied"),
        "{history}"
    );
    let (code, log) = svc.get(&format!("/execute/{id}/getLog")).await;
    assert_eq!(code, 200, "{log}");
    let content = log["logs"]["content"].as_str().unwrap();
    assert!(
        content.starts_with("[sagemaker-executor] the job's log could not be copied")
            && content.contains("AccessDenied"),
        "{content}"
    );
    // The outputs were still listed.
    let (code, arts) = svc.get(&format!("/execute/{id}/getOutputArtifacts")).await;
    assert_eq!(code, 200, "{arts}");
    assert!(arts.get("result").is_some(), "{arts}");
}

#[tokio::test]
async fn a_completed_job_whose_log_read_stays_throttled_is_completed_after_bounded_tries() {
    let (_s, _svc, proxy, _id, seen) = job_with_log_fault(Fault::Throttle).await;
    assert_eq!(seen["status"]["task_status"], "COMPLETED", "{seen}");
    let history = seen["run"]["history"].to_string();
    assert!(
        history.contains("log_copy: failed:") && history.contains("Throttling"),
        "{history}"
    );
    // Tried a few times (the SDK's own tries within each of Collecting's), then given up.
    let tries = proxy.call_count("DescribeLogStreams");
    assert!((2..=9).contains(&tries), "{tries}");
}

#[tokio::test]
async fn a_log_read_throttled_a_few_times_is_copied_after_retries_without_an_error() {
    let emu = Emulator::shared();
    let bucket = unique("exel");
    backend_folder(emu, &bucket).await;
    let proxy = std::sync::Arc::new(FaultProxy::start(emu.addr).await.unwrap());
    let s = Scratch::new();
    let svc = Service::start(with_settings(s.config(proxy.url())));
    proxy.set_plan(FaultPlan::always(Fault::Throttle).only(["DescribeLogStreams"]));
    // More throttled answers than the SDK's own tries, then CloudWatch answers again.
    let lifter = {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            while proxy.fault_count("DescribeLogStreams") < 4 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            proxy.clear_plan();
        })
    };
    let (code, a) = backend_post(
        &svc,
        "/execute",
        &backend_body(emu, &bucket, Some(json!({"_emulator_log": "epoch 1"}))),
    )
    .await;
    let id = backend_task_id(code, &a);
    let st = wait_status(&svc, &id, finished).await;
    assert_eq!(st["task_status"], "COMPLETED", "{st}");
    lifter.await.unwrap();
    let (_, run) = svc.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(run["context"]["log_collected"], true, "{run}");
    assert!(run["context"].get("log_copy").is_none(), "{run}");
    // Retried inside Collecting: no failed attempt in the history.
    let errors: Vec<&Value> = run["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| !h["error"].is_null())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let (code, log) = svc.get(&format!("/execute/{id}/getLog")).await;
    assert_eq!(code, 200, "{log}");
    assert_eq!(log["logs"]["content"], "epoch 1\n", "{log}");
}

/// The GetLogEvents requests the emulator received for the processing job `job`.
async fn log_reads(emu: &Emulator, job: &str) -> Vec<Value> {
    client()
        .get(format!(
            "{}/_emulator/log-reads?stream_prefix={job}/",
            emu.url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn log_content(svc: &Service, id: &str) -> String {
    let (code, log) = svc.get(&format!("/execute/{id}/getLog")).await;
    assert_eq!(code, 200, "{log}");
    log["logs"]["content"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn get_log_of_a_running_job_asks_cloudwatch_only_for_what_came_since_the_last_call() {
    let emu = Emulator::shared();
    let (_s, svc, bucket) = setup().await;
    let lines = "epoch 1\nepoch 2\nepoch 3\nepoch 4\n";
    let env = json!({"_emulator_polls": "1000", "_emulator_log": lines});
    let id = submit(&svc, &body(emu, &bucket, env)).await;
    let running = wait_status(&svc, &id, |w| w == "RUNNING").await;
    let job = running["pid"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut first = log_content(&svc, &id).await;
    while !first.starts_with("epoch 1\n") {
        assert!(Instant::now() < deadline, "no log while running: {first}");
        tokio::time::sleep(Duration::from_millis(25)).await;
        first = log_content(&svc, &id).await;
    }
    // From here on, every read goes on from the token the previous getLog saved.
    let before = log_reads(emu, &job).await.len();
    let mut content = log_content(&svc, &id).await;
    while !content.contains("epoch 3\n") {
        assert!(
            Instant::now() < deadline,
            "the log stopped growing: {content}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
        content = log_content(&svc, &id).await;
    }
    let reads = log_reads(emu, &job).await;
    assert!(reads.len() > before, "getLog read nothing: {reads:?}");
    for read in &reads[before..] {
        assert!(
            read["nextToken"].is_string() && read["startFromHead"].is_null(),
            "a later getLog read from the start again: {read}"
        );
    }
    // What was read before is kept, and nothing is read twice.
    assert!(content.starts_with(&first), "{first:?} then {content:?}");
    assert!(lines.starts_with(&content), "{content:?}");
}
