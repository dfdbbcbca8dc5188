//! The operator console (`/ui`): its files are served open under a strict Content-Security-Policy,
//! `GET /api/v1/whoami` names the caller, and the whole page works in headless Chromium against
//! the real binary and the emulator (`tests/browser/console.test.mjs`, driven by playwright-core).

mod support;

use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use support::fault_proxy::{Fault, FaultPlan, FaultProxy};
use support::{Emulator, Scratch, Service, client, reply, training_body, unique};

const OPERATOR: &str = "console-operator-token-4Kq9xT";
const SUBMITTER: &str = "console-submitter-token-7Wz2vB";
/// The storage secret of the script job's body: its page must never show it.
const STORAGE_SECRET: &str = "console-storage-secret-Jx52";
const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn with_tokens(s: &Scratch, aws: String) -> support::ServiceConfig {
    let mut c = s.config(aws);
    c.extra_env.extend([
        ("EXECUTOR_OPERATOR_TOKEN".into(), OPERATOR.into()),
        ("EXECUTOR_SUBMITTER_TOKEN".into(), SUBMITTER.into()),
    ]);
    c
}

async fn get_as(svc: &Service, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut r = client().get(svc.url(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap()
}

async fn post_as(svc: &Service, path: &str, token: &str, body: &Value) -> (u16, Value) {
    let r = client()
        .post(svc.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    reply(r).await
}

/// A run's detail, as the operator sees it.
async fn view(svc: &Service, id: &str) -> Value {
    reply(get_as(svc, &format!("/api/v1/runs/{id}"), Some(OPERATOR)).await)
        .await
        .1
}

/// Waits until the run is in `state` (or fails the test after a minute).
async fn wait_state(svc: &Service, id: &str, state: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let run = view(svc, id).await;
        if run["state"] == state {
            return run;
        }
        assert!(std::time::Instant::now() < deadline, "not {state}: {run}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn the_console_is_served_without_a_token_under_its_policy_and_whoami_names_the_caller() {
    let s = Scratch::new();
    let svc = Service::start(with_tokens(&s, Emulator::shared().url()));

    for (path, kind) in [
        ("/ui", "text/html"),
        ("/ui/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/console.css", "text/css"),
    ] {
        let r = get_as(&svc, path, None).await;
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert!(
            h["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        assert_eq!(h["content-security-policy"], POLICY, "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
    }
    let page = get_as(&svc, "/ui", None).await.text().await.unwrap();
    assert!(page.contains(r#"<script type="module" src="/ui/app.js"></script>"#));

    // An unknown file is a JSON 404, a write a 405; neither opens anything else.
    let (code, body) = reply(get_as(&svc, "/ui/secrets.js", None).await).await;
    assert_eq!((code, body["error"].is_string()), (404, true), "{body}");
    let r = client().post(svc.url("/ui")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(get_as(&svc, "/uix", None).await.status(), 401);
    assert_eq!(get_as(&svc, "/api/v1/runs", None).await.status(), 401);

    // whoami: the token's name and role; none is a 401, an unknown one too.
    let (code, me) = reply(get_as(&svc, "/api/v1/whoami", Some(OPERATOR)).await).await;
    assert_eq!(
        (code, me),
        (200, json!({"name": "operator", "role": "operator"}))
    );
    let (code, me) = reply(get_as(&svc, "/api/v1/whoami", Some(SUBMITTER)).await).await;
    assert_eq!(
        (code, me),
        (200, json!({"name": "submitter", "role": "submitter"}))
    );
    let (code, err) = reply(get_as(&svc, "/api/v1/whoami", None).await).await;
    assert_eq!(code, 401, "{err}");
    let (code, _) = reply(get_as(&svc, "/api/v1/whoami", Some("not-a-token-of-ours")).await).await;
    assert_eq!(code, 401);
}

#[tokio::test]
async fn whoami_without_authentication_is_an_anonymous_operator() {
    let s = Scratch::new();
    let svc = Service::start(s.config(Emulator::shared().url()));
    let (code, me) = svc.get("/api/v1/whoami").await;
    assert_eq!(
        (code, me),
        (200, json!({"name": "anonymous", "role": "operator"}))
    );
}

/// What the browser test needs on this machine; missing, the test fails saying how to install it
/// (`scripts/test` installs both).
fn browser_tools(root: &Path) -> (String, std::path::PathBuf) {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: apt-get install chromium (scripts/test does)"
    );
    let browser = root.join("tests/browser");
    assert!(
        browser.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci` in tests/browser (scripts/test does)"
    );
    (chromium, browser)
}

#[tokio::test]
async fn operators_and_submitters_use_the_console_in_a_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (chromium, browser) = browser_tools(root);
    let emu = Emulator::shared();
    let bucket = unique("console");
    emu.create_bucket(&bucket).await;
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    let s = Scratch::new();
    let mut config = with_tokens(&s, proxy.url());
    config.extra_env.extend([
        ("EXECUTOR_RETRY_BASE_MS".into(), "5".into()),
        // Slow enough polls that the page sees a run before it ends (it refreshes every 2 s).
        ("EXECUTOR_POLL_MIN_MS".into(), "250".into()),
        ("EXECUTOR_POLL_MAX_MS".into(), "250".into()),
    ]);
    let svc = Service::start(config);

    // A run that failed on our side: every DescribeTrainingJob is throttled until it gives up
    // before its job was created, so a retry creates the job and ends Done.
    proxy.set_plan(
        FaultPlan::new(1, std::iter::repeat_n(Fault::Throttle, 1000).collect())
            .only(["DescribeTrainingJob"]),
    );
    let (code, failed) = post_as(
        &svc,
        "/api/service/v1/pipelines/training/train",
        OPERATOR,
        &training_body(&bucket, "Completed", 0),
    )
    .await;
    assert!(code < 300, "{failed}");
    let failed_id = failed["id"].as_str().unwrap().to_string();
    let ended = svc.wait_terminal_with_token(&failed_id, OPERATOR).await;
    assert_eq!(ended["state"], "Failed", "{ended}");
    proxy.clear_plan();

    // A deployment that put an endpoint into service (its page shows what the endpoint route says).
    let base = unique("console-dep");
    emu.sagemaker(
        "CreateModel",
        json!({"ModelName": base, "ExecutionRoleArn": support::ROLE,
               "PrimaryContainer": {"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1"}}),
    )
    .await;
    emu.sagemaker(
        "CreateEndpointConfig",
        json!({"EndpointConfigName": base, "ProductionVariants": [{"VariantName": "v1",
               "ModelName": base, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}]}),
    )
    .await;
    let (code, deployed) = post_as(
        &svc,
        &format!("/api/service/v1/endpoints/{base}-ep/deploy_model"),
        OPERATOR,
        &json!({"EndpointConfigName": base}),
    )
    .await;
    assert_eq!(code, 202, "{deployed}");
    let deploy_id = deployed["id"].as_str().unwrap().to_string();
    let ended = svc.wait_terminal_with_token(&deploy_id, OPERATOR).await;
    assert_eq!(ended["state"], "Done", "{ended}");

    // A script job that ended with a log and an output artifact (its page fetches both).
    emu.put_object(&bucket, "in/train.csv", "a,b,label\n1,2,0\n")
        .await;
    let (code, task) = post_as(
        &svc,
        "/execute",
        OPERATOR,
        &json!({
            "bucket": bucket, "project_id": "proj-7", "name": "churn-script", "version": "3",
            "credentials": {"endpoint": emu.url(), "access_key": "test", "secret_key": STORAGE_SECRET},
            "input_artifacts": "in/train.csv", "command": "python3 train.py", "storage": "s3",
            "environment": {
                "_emulator_log": "epoch 1\nepoch 2",
                "_emulator_outputs": json!({"metrics.json": "{\"accuracy\": 0.91}"}).to_string(),
            },
            "configs": {"role": support::ROLE, "instance_type": "ml.m5.large", "instance_count": "1",
                        "container": "123456789012.dkr.ecr.us-east-1.amazonaws.com/sklearn:1"}
        }),
    )
    .await;
    assert_eq!(code, 201, "{task}");
    let script_id = task["task_id"].as_str().unwrap().to_string();
    wait_state(&svc, &script_id, "Done").await;

    let screenshots = root.join("target/console-screenshots");
    let out = tokio::task::spawn_blocking({
        let url = svc.url("");
        let body = training_body(&bucket, "Completed", 0).to_string();
        let failed_id = failed_id.clone();
        let deploy_id = deploy_id.clone();
        let script_id = script_id.clone();
        let screenshots = screenshots.clone();
        move || {
            Command::new("node")
                .arg("console.test.mjs")
                .current_dir(&browser)
                .env("CONSOLE_URL", url)
                .env("OPERATOR_TOKEN", OPERATOR)
                .env("SUBMITTER_TOKEN", SUBMITTER)
                .env("TRAINING_BODY", body)
                .env("FAILED_RUN", failed_id)
                .env("DEPLOY_RUN", deploy_id)
                .env("SCRIPT_RUN", script_id)
                .env("STORAGE_SECRET", STORAGE_SECRET)
                .env("SCREENSHOTS", screenshots)
                .env("CHROMIUM", chromium)
                .output()
                .expect("run node (apt-get install nodejs npm)")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser test failed ({}):\n{stdout}\n{stderr}",
        out.status
    );

    // What the browser did, checked in the API: the retried run is Done and its history names
    // the operator and the reason; the cancelled one is Cancelled.
    let made: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|j| serde_json::from_str(j).unwrap())
        .unwrap_or_else(|| panic!("no RESULT line:\n{stdout}"));
    let retried = view(&svc, &failed_id).await;
    assert_eq!(retried["state"], "Done", "{retried}");
    assert!(
        support::history_details(&retried)
            .contains(&"retry requested by operator: the outage is over".to_string()),
        "{retried}"
    );
    let cancelled = view(&svc, made["cancelled"].as_str().unwrap()).await;
    assert_eq!(cancelled["state"], "Cancelled", "{cancelled}");
    assert!(
        support::history_details(&cancelled)
            .iter()
            .any(|d| d.starts_with("cancel requested by operator: wrong data set")),
        "{cancelled}"
    );
    assert_eq!(
        view(&svc, made["live"].as_str().unwrap()).await["state"],
        "Done"
    );
    // The submitter's run was cancelled by the operator while the submitter's tab was hidden; its
    // late cancel was refused (409) and recorded nothing.
    let theirs = view(&svc, made["submitters"].as_str().unwrap()).await;
    assert_eq!(theirs["state"], "Cancelled", "{theirs}");
    assert!(
        !support::history_details(&theirs)
            .iter()
            .any(|d| d.contains("by submitter")),
        "{theirs}"
    );
    for shot in [
        "sign-in",
        "runs-failed",
        "run-failed",
        "runs-submitter-phone",
    ] {
        assert!(screenshots.join(format!("{shot}.png")).exists(), "{shot}");
    }
}
