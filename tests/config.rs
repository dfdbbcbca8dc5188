//! Configuration: the TOML config file, its precedence, the packaged examples, JSON logs, and
//! start-up checks that fail fast with a clear message.

mod support;

use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{Emulator, Lines, Scratch, training_body, unique};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sagemaker-executor"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    c
}

#[test]
fn config_file_fills_in_settings_and_the_environment_overrides_it() {
    let s = Scratch::new();
    let file = s.dir.path().join("config.toml");
    let db = s.dir.path().join("from-file.db");
    std::fs::write(
        &file,
        format!(
            "bind = \"127.0.0.1:0\"\ndatabase_url = \"sqlite://{}\"\npoll_min_ms = 70\n",
            db.display()
        ),
    )
    .unwrap();
    let mut child = bin()
        .args(["serve", "--config"])
        .arg(&file)
        .env("AWS_REGION", "us-east-1")
        .env("EXECUTOR_POLL_MIN_MS", "80")
        .env("EXECUTOR_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::default();
    lines.clone().follow_public(child.stderr.take().unwrap());
    lines.wait_for("LISTENING", Duration::from_secs(30), |l| {
        l.starts_with("LISTENING ") || l.starts_with("error")
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        lines
            .all()
            .iter()
            .any(|l| l.starts_with("LISTENING 127.0.0.1:")),
        "{:?}",
        lines.all()
    );
    assert!(db.exists(), "the database named in the file was created");

    std::fs::write(&file, "bind = \"127.0.0.1:0\"\nno_such_setting = 1\n").unwrap();
    let out = bin()
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown setting \"no_such_setting\""), "{err}");
}

#[test]
fn packaged_examples_use_only_known_settings_and_the_unit_outlasts_the_drain() {
    let root = env!("CARGO_MANIFEST_DIR");
    let example = std::fs::read_to_string(format!("{root}/packaging/config.example.toml")).unwrap();
    let table: toml::Table = example.parse().unwrap();
    let help = bin().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let mut drain = 30;
    for (key, value) in &table {
        assert!(
            help.contains(&format!("--{}", key.replace('_', "-"))),
            "{key} is not a serve flag"
        );
        if key == "drain_secs" {
            drain = value.as_integer().unwrap();
        }
    }
    let unit =
        std::fs::read_to_string(format!("{root}/packaging/sagemaker-executor.service")).unwrap();
    let stop: i64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .unwrap()
        .trim_end_matches('s')
        .parse()
        .unwrap();
    assert!(
        stop > drain,
        "TimeoutStopSec={stop} must exceed drain_secs={drain}"
    );
    let tokens: toml::Table =
        std::fs::read_to_string(format!("{root}/packaging/tokens.example.toml"))
            .unwrap()
            .parse()
            .unwrap();
    assert_eq!(tokens["tokens"].as_array().unwrap().len(), 2);
}

#[test]
fn start_up_fails_fast_with_a_clear_message() {
    let s = Scratch::new();
    let not_a_dir = s.dir.path().join("file");
    std::fs::write(&not_a_dir, "x").unwrap();
    let out = bin()
        .args(["serve"])
        .env(
            "EXECUTOR_DATABASE_URL",
            format!("sqlite://{}/executor.db", not_a_dir.display()),
        )
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error: opening the store"), "{err}");

    let out = bin()
        .args(["serve"])
        .env(
            "EXECUTOR_DATABASE_URL",
            format!("sqlite://{}", s.db().display()),
        )
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no AWS region is configured"), "{err}");

    // Replicas on PostgreSQL must share a key: none given is refused before anything starts,
    // and the refusal does not echo the URL's password.
    let out = bin()
        .args(["serve"])
        .env(
            "EXECUTOR_DATABASE_URL",
            "postgres://executor:hunter2-password@127.0.0.1:5432/executor",
        )
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("EXECUTOR_SECRET_KEY") && err.contains("same secret key"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

#[tokio::test]
async fn json_logs_carry_the_runs_span_fields() {
    let emu = Emulator::shared();
    let bucket = unique("logs");
    emu.create_bucket(&bucket).await;
    let s = Scratch::new();
    let mut c = s.config(emu.url());
    c.extra_env
        .push(("EXECUTOR_LOG_FORMAT".into(), "json".into()));
    let svc = support::Service::start(c);
    let (_, a) = svc
        .post(
            "/api/service/v1/pipelines/training/train",
            &training_body(&bucket, "Completed", 0),
        )
        .await;
    let id = a["id"].as_str().unwrap();
    svc.wait_terminal(id, Duration::from_secs(60)).await;
    let line = svc
        .stderr
        .wait_for("a transition log line", Duration::from_secs(10), |l| {
            l.contains("\"transition\"")
        });
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["span"]["run_id"], id, "{v}");
    assert_eq!(v["span"]["kind"], "training");
    assert!(v["fields"]["to"].is_string());
    assert!(
        v["fields"]["detail"]
            .as_str()
            .unwrap()
            .starts_with("staged input at s3://"),
        "{v}"
    );
    assert!(
        v["span"]["aws_request_id"].is_string(),
        "the step's AWS request id is on its span: {v}"
    );
}
