//! Endpoint deployments as durable runs against the emulator: create, update, rollback, failure,
//! one deployment per endpoint at a time, and a kill right after CreateEndpoint.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::{Emulator, RECORD_KEYS, ROLE, Scratch, Service, history_details as details, unique};

const WAIT: Duration = Duration::from_secs(60);

/// A model and two endpoint configs for it; returns the config names.
async fn configs(emu: &Emulator, base: &str) -> (String, String) {
    emu.sagemaker(
        "CreateModel",
        json!({"ModelName": base, "ExecutionRoleArn": ROLE,
               "PrimaryContainer": {"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1"}}),
    )
    .await;
    let mut names = vec![];
    for suffix in ["a", "b"] {
        let name = format!("{base}-{suffix}");
        emu.sagemaker(
            "CreateEndpointConfig",
            json!({"EndpointConfigName": name, "ProductionVariants": [{"VariantName": "v1",
                   "ModelName": base, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}]}),
        )
        .await;
        names.push(name);
    }
    (names[0].clone(), names[1].clone())
}

async fn deploy(svc: &Service, endpoint: &str, body: Value) -> (u16, Value) {
    svc.post(
        &format!("/api/service/v1/endpoints/{endpoint}/deploy_model"),
        &body,
    )
    .await
}

#[tokio::test]
async fn deploy_creates_then_updates_the_endpoint_and_a_rollback_fails_the_run() {
    let emu = Emulator::shared();
    let base = unique("dep");
    let (a, b) = configs(emu, &base).await;
    let endpoint = format!("{base}-ep");
    let s = Scratch::new();
    let svc = Service::start(s.config(emu.url()));

    let (code, r) = deploy(
        &svc,
        &endpoint,
        json!({"EndpointConfigName": a, "Tags": {"_emulator_polls": "2"}}),
    )
    .await;
    assert_eq!(code, 202, "{r}");
    assert_eq!(
        (r["name"].as_str(), r["type"].as_str()),
        (Some(endpoint.as_str()), Some("sagemaker-deployment"))
    );
    let id = r["id"].as_str().unwrap();
    let st = svc.wait_terminal(id, WAIT).await;
    assert_eq!(
        (st["state"].as_str(), st["sagemaker_status"].as_str()),
        (Some("Done"), Some("InService")),
        "{st}"
    );
    let (_, run) = svc.get(&format!("/api/v1/runs/{id}")).await;
    assert!(
        details(&run)
            .iter()
            .any(|d| d == &format!("CreateEndpoint accepted with config {a}")),
        "{run}"
    );
    assert_eq!(run["context"]["endpoint_config_name"], a.as_str());

    // Deploying the same config again is Done at once; another config is an update.
    let (_, r) = deploy(&svc, &endpoint, json!({"EndpointConfigName": a})).await;
    assert_eq!(
        svc.wait_terminal(r["id"].as_str().unwrap(), WAIT).await["state"],
        "Done"
    );
    let (_, r) = deploy(&svc, &endpoint, json!({"EndpointConfigName": b})).await;
    let id = r["id"].as_str().unwrap();
    let st = svc.wait_terminal(id, WAIT).await;
    assert_eq!(st["state"], "Done", "{st}");
    let (_, run) = svc.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(run["context"]["endpoint_config_name"], b.as_str());
    assert!(
        details(&run)
            .iter()
            .any(|d| d.starts_with(&format!("UpdateEndpoint accepted from {a} to {b}"))),
        "{run}"
    );
    let stats = emu.job_stats("endpoints", &endpoint).await;
    assert_eq!(
        (stats["creates"].as_i64(), stats["updates"].as_i64()),
        (Some(1), Some(1)),
        "{stats}"
    );

    // An update SageMaker rolls back leaves the old config serving: the run is Failed.
    emu.sagemaker(
        "AddTags",
        json!({"ResourceArn": run["context"]["job_arn"], "Tags": [{"Key": "_emulator_update_outcome", "Value": "RolledBack"}]}),
    )
    .await;
    let (_, r) = deploy(&svc, &endpoint, json!({"EndpointConfigName": a})).await;
    let st = svc.wait_terminal(r["id"].as_str().unwrap(), WAIT).await;
    assert_eq!(st["state"], "Failed", "{st}");
    assert!(
        st["failure_reason"]
            .as_str()
            .unwrap()
            .contains("rolled back"),
        "{st}"
    );
}

#[tokio::test]
async fn a_failed_endpoint_fails_the_run_and_requests_are_checked() {
    let emu = Emulator::shared();
    let base = unique("depf");
    let (a, _) = configs(emu, &base).await;
    let s = Scratch::new();
    let svc = Service::start(s.config(emu.url()));
    let endpoint = format!("{base}-ep");
    let body = json!({"EndpointConfigName": a, "Tags": {"_emulator_outcome": "Failed", "_emulator_polls": "1",
                       "_emulator_failure_reason": "ping health check failed"}});
    let (_, r) = deploy(&svc, &endpoint, body).await;
    let st = svc.wait_terminal(r["id"].as_str().unwrap(), WAIT).await;
    assert_eq!(
        (st["state"].as_str(), st["failure_reason"].as_str()),
        (Some("Failed"), Some("ping health check failed"))
    );

    // A config that does not exist: SageMaker refuses the create; the run fails with its message.
    let (_, r) = deploy(
        &svc,
        &format!("{base}-other"),
        json!({"EndpointConfigName": format!("{base}-missing")}),
    )
    .await;
    let st = svc.wait_terminal(r["id"].as_str().unwrap(), WAIT).await;
    assert_eq!(st["state"], "Failed", "{st}");

    let runs = svc.run_count().await;
    for (endpoint, body, want, field) in [
        ("bad_name", json!({"EndpointConfigName": a}), 422, "id"),
        ("ok-name", json!({}), 422, "EndpointConfigName"),
        (
            "ok-name",
            json!({"EndpointConfigName": ""}),
            422,
            "EndpointConfigName",
        ),
        (
            "ok-name",
            json!({"EndpointConfigName": 3}),
            422,
            "EndpointConfigName",
        ),
        (
            "ok-name",
            json!({"EndpointConfigName": a, "EndpointName": "another-endpoint"}),
            422,
            "EndpointName",
        ),
    ] {
        let (code, err) = deploy(&svc, endpoint, body).await;
        assert_eq!((code, err["field"].as_str()), (want, Some(field)), "{err}");
    }
    assert_eq!(
        svc.run_count().await,
        runs,
        "nothing stored for a refused request"
    );
}

/// What the backend sends to deploy_model (ICIPModelAWSServiceSageMaker.deployModelFromRemoteVM):
/// `{EndpointConfigName, EndpointName}` with EndpointName also the path's endpoint (its
/// `endpoint_id` parameter), plus `isRemoteDS=true` and the other query parameters; only the
/// Referer and Content-Type headers. The reply must start with `{`.
#[tokio::test]
async fn backend_deploy_body_with_endpoint_name_equal_to_the_path_is_accepted() {
    let emu = Emulator::shared();
    let base = unique("depb");
    let (a, _) = configs(emu, &base).await;
    let s = Scratch::new();
    let svc = Service::start(s.config(emu.url()));
    let endpoint = format!("{base}-ep");
    let r = support::client()
        .post(svc.url(&format!(
            "/api/service/v1/endpoints/{endpoint}/deploy_model?adapter_instance=SM01&project=Demo&isCached=false&isRemoteDS=true&endpoint_id={endpoint}"
        )))
        .header("Referer", "https://essedum.example/")
        .header("Content-Type", "application/json")
        .body(json!({"EndpointConfigName": a, "EndpointName": endpoint, "Model Id": ""}).to_string())
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(code, 202, "{text}");
    assert!(text.starts_with('{'), "{text}");
    let accepted: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(accepted["status"], "SUCCESS");
    let st = svc
        .wait_terminal(accepted["id"].as_str().unwrap(), WAIT)
        .await;
    assert_eq!(st["state"], "Done", "{st}");
}

#[tokio::test]
async fn one_deployment_per_endpoint_and_a_kill_after_create_adopts_the_endpoint() {
    let emu = Emulator::shared();
    let base = unique("depc");
    let (a, b) = configs(emu, &base).await;
    let endpoint = format!("{base}-ep");
    let s = Scratch::new();
    let mut config = s.config(emu.url());
    config.failpoints = vec!["deployment.after_create".into()];
    let svc = Service::start(config);
    let (_, r) = deploy(
        &svc,
        &endpoint,
        json!({"EndpointConfigName": a, "Tags": {"_emulator_polls": "1"}}),
    )
    .await;
    let id = r["id"].as_str().unwrap().to_string();
    let (code, err) = deploy(&svc, &endpoint, json!({"EndpointConfigName": b})).await;
    assert_eq!(code, 409, "{err}");
    svc.stderr
        .wait_for("the failpoint", Duration::from_secs(30), |l| {
            l == "FAILPOINT deployment.after_create"
        });
    let svc = svc.kill_and_restart();
    let st = svc.wait_terminal(&id, WAIT).await;
    assert_eq!(st["state"], "Done", "{st}");
    let stats = emu.job_stats("endpoints", &endpoint).await;
    assert_eq!(
        (
            stats["creates"].as_i64(),
            stats["duplicate_creates"].as_i64()
        ),
        (Some(1), Some(0)),
        "{stats}"
    );
    // Once it ended, the endpoint takes a new deployment.
    let (code, _) = deploy(&svc, &endpoint, json!({"EndpointConfigName": b})).await;
    assert_eq!(code, 202);
}

#[tokio::test]
async fn teardown_deletes_the_endpoint_and_a_missing_one_is_reported_not_an_error() {
    let emu = Emulator::shared();
    let base = unique("tear");
    let (a, _) = configs(emu, &base).await;
    let endpoint = format!("{base}-ep");
    let s = Scratch::new();
    let svc = Service::start(s.config(emu.url()));
    let (_, r) = deploy(
        &svc,
        &endpoint,
        json!({"EndpointConfigName": a, "Tags": {"_emulator_polls": "0"}}),
    )
    .await;
    let deployment = r["id"].as_str().unwrap().to_string();
    assert_eq!(svc.wait_terminal(&deployment, WAIT).await["state"], "Done");

    let (code, view) = svc
        .get(&format!("/api/service/v1/endpoints/{endpoint}"))
        .await;
    assert_eq!(code, 200, "{view}");
    assert_eq!(
        (
            view["status"].as_str(),
            view["endpointConfigName"].as_str(),
            view["deploymentRunId"].as_str()
        ),
        (
            Some("InService"),
            Some(a.as_str()),
            Some(deployment.as_str())
        )
    );

    let (code, t) = svc
        .post(
            &format!("/api/service/v1/endpoints/{endpoint}/undeploy_models"),
            &json!({}),
        )
        .await;
    assert_eq!(
        (code, t["type"].as_str()),
        (202, Some("sagemaker-teardown")),
        "{t}"
    );
    let st = svc.wait_terminal(t["id"].as_str().unwrap(), WAIT).await;
    assert_eq!(st["state"], "Done", "{st}");
    let (_, run) = svc
        .get(&format!("/api/v1/runs/{}", t["id"].as_str().unwrap()))
        .await;
    let d = details(&run);
    assert!(
        d.iter()
            .any(|x| x == &format!("DeleteEndpoint accepted (it served {a})")),
        "{d:?}"
    );
    assert!(
        d.iter()
            .any(|x| x == &format!("endpoint {endpoint} is deleted")),
        "{d:?}"
    );
    assert_eq!(
        svc.get(&format!("/api/service/v1/endpoints/{endpoint}"))
            .await
            .0,
        404
    );
    assert_eq!(emu.job_stats("endpoints", &endpoint).await["deletes"], 1);

    // The run listing names a deployment and a teardown by the endpoint they change (they
    // have no job name of their own).
    for (kind, id) in [
        ("deployment", deployment.as_str()),
        ("teardown", t["id"].as_str().unwrap()),
    ] {
        let (code, page) = svc
            .get(&format!("/api/v1/runs?kind={kind}&limit=200"))
            .await;
        assert_eq!(code, 200, "{page}");
        let listed = page["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("{kind} {id} not listed: {page}"));
        assert_eq!(listed["name"].as_str(), Some(endpoint.as_str()), "{listed}");
    }

    // Deleting what does not exist is reported, not a failure.
    let r = support::client()
        .delete(svc.url(&format!("/api/service/v1/endpoints/{base}-never/delete")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let t: Value = r.json().await.unwrap();
    let st = svc.wait_terminal(t["id"].as_str().unwrap(), WAIT).await;
    assert_eq!(st["state"], "Done");
    let (_, run) = svc
        .get(&format!("/api/v1/runs/{}", t["id"].as_str().unwrap()))
        .await;
    assert!(
        details(&run)
            .iter()
            .any(|x| x.ends_with("does not exist; nothing to delete")),
        "{run}"
    );

    // No teardown while a deployment of the same endpoint is running.
    let (_, r) = deploy(
        &svc,
        &endpoint,
        json!({"EndpointConfigName": a, "Tags": {"_emulator_polls": "100000"}}),
    )
    .await;
    svc.wait_run(r["id"].as_str().unwrap(), "Polling", |r| {
        r["state"] == "Polling"
    })
    .await;
    let (code, err) = svc
        .post(
            &format!("/api/service/v1/endpoints/{endpoint}/undeploy_models"),
            &json!({}),
        )
        .await;
    assert_eq!(code, 409, "{err}");
}

/// The endpoint list: every endpoint of the account and region (as the Python executor's
/// projects_endpoints_list_list did), those this service deployed or took down with their newest
/// run (a deleted one stays listed as Deleted), each a full record the backend's endpoint parser
/// reads (ICIPModelAWSServiceSageMaker.parseFedEndpoint: name, status, artifacts, createdOn and
/// syncDate as yyyy-MM-dd HH-mm-ss).
#[tokio::test]
async fn the_endpoint_list_shows_every_endpoint_with_our_newest_change() {
    let emu = Emulator::shared();
    let base = unique("list");
    let (a, _) = configs(emu, &base).await;
    let s = Scratch::new();
    let svc = Service::start(s.config(emu.url()));
    let up = format!("{base}-up");
    let gone = format!("{base}-gone");
    for e in [&up, &gone] {
        let (_, r) = deploy(
            &svc,
            e,
            json!({"EndpointConfigName": a, "Tags": {"_emulator_polls": "0"}}),
        )
        .await;
        svc.wait_terminal(r["id"].as_str().unwrap(), WAIT).await;
    }
    let (_, t) = svc
        .post(
            &format!("/api/service/v1/endpoints/{gone}/undeploy_models"),
            &json!({}),
        )
        .await;
    svc.wait_terminal(t["id"].as_str().unwrap(), WAIT).await;
    // One made without the service.
    let outside = format!("{base}-outside");
    emu.endpoint(&outside, 0).await;

    let (code, list) = svc
        .get("/api/service/v1/endpoints/list?adapter_instance=SM01&project=Demo&isCached=false&isRemoteDS=true")
        .await;
    assert_eq!(code, 200);
    let list = list.as_array().unwrap();
    for r in list {
        for key in RECORD_KEYS {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
        for date in ["createdOn", "syncDate"] {
            let d = r[date].as_str().unwrap();
            assert!(
                chrono::NaiveDateTime::parse_from_str(d, "%Y-%m-%d %H-%M-%S").is_ok(),
                "{d}"
            );
        }
        assert_eq!(r["project"], "Demo");
    }
    let find = |n: &str| {
        list.iter()
            .position(|r| r["name"] == n)
            .unwrap_or_else(|| panic!("{n} not listed: {list:?}"))
    };
    let (g, u, o) = (find(&gone), find(&up), find(&outside));
    assert!(g < u, "newest change first");
    assert_eq!(
        (list[g]["lastRunKind"].as_str(), list[g]["status"].as_str()),
        (Some("teardown"), Some("Deleted"))
    );
    assert_eq!(
        (
            list[u]["lastRunKind"].as_str(),
            list[u]["status"].as_str(),
            list[u]["endpointConfigName"].as_str()
        ),
        (Some("deployment"), Some("InService"), Some(a.as_str()))
    );
    assert!(
        list[u]["artifacts"]
            .as_str()
            .unwrap()
            .contains(":endpoint/"),
        "the ARN, as the backend's parser reads it"
    );
    assert_eq!(
        (list[o]["status"].as_str(), list[o]["lastRunId"].is_null()),
        (Some("InService"), true)
    );

    let (code, one) = svc.get(&format!("/api/service/v1/endpoints/{up}")).await;
    assert_eq!(
        (
            code,
            one["status"].as_str(),
            one["endpointConfigName"].as_str()
        ),
        (200, Some("InService"), Some(a.as_str()))
    );
    assert!(one["deploymentRunId"].is_string(), "{one}");
    let raw: Value = serde_json::from_str(one["rawPayload"].as_str().unwrap()).unwrap();
    assert_eq!(raw["EndpointName"], up.as_str());
}

/// ListEndpoints is read page after page (SageMaker answers at most 100 per page).
#[tokio::test]
async fn the_endpoint_list_reads_every_page() {
    use futures_util::StreamExt;
    use support::fault_proxy::FaultProxy;
    // An emulator of its own, so that the number of endpoints is this test's.
    let emu = Emulator::start();
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    let s = Scratch::new();
    let svc = Service::start(s.config(proxy.url()));
    emu.sagemaker(
        "CreateModel",
        json!({"ModelName": "m", "ExecutionRoleArn": ROLE,
               "PrimaryContainer": {"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1"}}),
    )
    .await;
    emu.sagemaker(
        "CreateEndpointConfig",
        json!({"EndpointConfigName": "c", "ProductionVariants": [{"VariantName": "v1",
               "ModelName": "m", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}]}),
    )
    .await;
    let names: Vec<String> = (0..103).map(|i| format!("ep-{i:03}")).collect();
    let emu_ref = &emu;
    futures_util::stream::iter(names.iter().map(|n| async move {
        emu_ref
            .sagemaker(
                "CreateEndpoint",
                json!({"EndpointName": n, "EndpointConfigName": "c"}),
            )
            .await
    }))
    .buffer_unordered(8)
    .collect::<Vec<_>>()
    .await;
    let (code, list) = svc.get("/api/service/v1/endpoints/list").await;
    assert_eq!(code, 200);
    let listed: std::collections::BTreeSet<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 103, "every endpoint once");
    assert!(names.iter().all(|n| listed.contains(n.as_str())));
    assert!(
        proxy.call_count("ListEndpoints") >= 2,
        "paged: {:?}",
        proxy.calls()
    );
}

#[tokio::test]
async fn a_cancelled_deployment_leaves_an_endpoint_it_did_not_create_and_a_teardown_survives_a_kill_before_its_delete()
 {
    let emu = Emulator::shared();
    let base = unique("depx");
    let (a, _) = configs(emu, &base).await;
    let endpoint = format!("{base}-ep");
    // Someone else's endpoint, still Creating.
    emu.sagemaker(
        "CreateEndpoint",
        json!({"EndpointName": endpoint, "EndpointConfigName": a,
               "Tags": [{"Key": "_emulator_polls", "Value": "100000"}]}),
    )
    .await;
    let s = Scratch::new();
    let mut config = s.config(emu.url());
    config.failpoints = vec!["teardown.before_delete".into()];
    let svc = Service::start(config);

    let (_, r) = deploy(&svc, &endpoint, json!({"EndpointConfigName": a})).await;
    let id = r["id"].as_str().unwrap();
    svc.wait_run(id, "Polling", |r| r["state"] == "Polling")
        .await;
    let (code, _) = svc
        .post(
            &format!("/api/v1/runs/{id}/cancel"),
            &json!({"reason": "wrong config"}),
        )
        .await;
    assert_eq!(code, 202);
    let st = svc.wait_terminal(id, WAIT).await;
    assert_eq!(st["state"], "Cancelled", "{st}");
    let (_, run) = svc.get(&format!("/api/v1/runs/{id}")).await;
    assert!(
        details(&run)
            .iter()
            .any(|d| d.contains("not created by this run, so it is left as it is")),
        "{run}"
    );
    assert_eq!(emu.job_stats("endpoints", &endpoint).await["deletes"], 0);

    let (_, t) = svc
        .post(
            &format!("/api/service/v1/endpoints/{endpoint}/undeploy_models"),
            &json!({}),
        )
        .await;
    svc.stderr
        .wait_for("the failpoint", Duration::from_secs(30), |l| {
            l == "FAILPOINT teardown.before_delete"
        });
    let svc = svc.kill_and_restart();
    let st = svc.wait_terminal(t["id"].as_str().unwrap(), WAIT).await;
    assert_eq!(st["state"], "Done", "{st}");
    assert_eq!(emu.job_stats("endpoints", &endpoint).await["deletes"], 1);
}

#[tokio::test]
async fn a_teardown_cancelled_before_its_delete_leaves_the_endpoint_and_bad_names_are_refused() {
    let emu = Emulator::shared();
    let base = unique("tearx");
    let (a, _) = configs(emu, &base).await;
    let endpoint = format!("{base}-ep");
    let s = Scratch::new();
    let mut config = s.config(emu.url());
    config.failpoints = vec!["teardown.before_delete".into()];
    let svc = Service::start(config);
    let (_, r) = deploy(
        &svc,
        &endpoint,
        json!({"EndpointConfigName": a, "Tags": {"_emulator_polls": "0"}}),
    )
    .await;
    assert_eq!(
        svc.wait_terminal(r["id"].as_str().unwrap(), WAIT).await["state"],
        "Done"
    );

    let (code, err) = svc
        .post(
            "/api/service/v1/endpoints/not_a_name!/undeploy_models",
            &json!({}),
        )
        .await;
    assert_eq!((code, err["field"].as_str()), (422, Some("id")), "{err}");

    // The step is parked before DeleteEndpoint; the cancel is recorded, the process killed, and
    // the restarted service ends the run Cancelled without deleting anything.
    let (_, t) = svc
        .post(
            &format!("/api/service/v1/endpoints/{endpoint}/undeploy_models"),
            &json!({}),
        )
        .await;
    let id = t["id"].as_str().unwrap();
    svc.stderr
        .wait_for("the failpoint", Duration::from_secs(30), |l| {
            l == "FAILPOINT teardown.before_delete"
        });
    let (code, _) = svc
        .post(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(code, 202);
    let svc = svc.kill_and_restart();
    let st = svc.wait_terminal(id, WAIT).await;
    assert_eq!(st["state"], "Cancelled", "{st}");
    assert_eq!(emu.job_stats("endpoints", &endpoint).await["deletes"], 0);
    assert_eq!(
        svc.get(&format!("/api/service/v1/endpoints/{endpoint}"))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn a_teardown_that_sagemaker_keeps_refusing_fails_with_the_reason() {
    use support::fault_proxy::{Fault, FaultPlan, FaultProxy};
    let emu = Emulator::shared();
    let base = unique("tearf");
    let (a, _) = configs(emu, &base).await;
    let endpoint = format!("{base}-ep");
    let proxy = FaultProxy::start(emu.addr).await.unwrap();
    let s = Scratch::new();
    let mut config = s.config(proxy.url());
    config
        .extra_env
        .push(("EXECUTOR_RETRY_BASE_MS".into(), "5".into()));
    let svc = Service::start(config);
    let (_, r) = deploy(
        &svc,
        &endpoint,
        json!({"EndpointConfigName": a, "Tags": {"_emulator_polls": "0"}}),
    )
    .await;
    assert_eq!(
        svc.wait_terminal(r["id"].as_str().unwrap(), WAIT).await["state"],
        "Done"
    );

    proxy.set_plan(FaultPlan::always(Fault::Throttle).only(["DeleteEndpoint"]));
    let (_, t) = svc
        .post(
            &format!("/api/service/v1/endpoints/{endpoint}/undeploy_models"),
            &json!({}),
        )
        .await;
    let st = svc.wait_terminal(t["id"].as_str().unwrap(), WAIT).await;
    assert_eq!(st["state"], "Failed", "{st}");
    let reason = st["failure_reason"].as_str().unwrap();
    assert!(
        reason.starts_with("gave up after") && reason.contains("ThrottlingException"),
        "{reason}"
    );
    assert_eq!(emu.job_stats("endpoints", &endpoint).await["deletes"], 0);
}

/// Deploys config `b` over an endpoint serving `a`, killing the service at `failpoint` and
/// restarting it; `knobs` are emulator tags for the update; with `land`, the update ends
/// (describes from the test) while the service is down. Returns the run's end and the
/// endpoint's counters.
async fn update_killed_at(failpoint: &str, knobs: Value, land: bool) -> (Value, Value) {
    let emu = Emulator::shared();
    let base = unique("depu");
    let (a, b) = configs(emu, &base).await;
    let endpoint = format!("{base}-ep");
    let s = Scratch::new();
    let mut config = s.config(emu.url());
    config.failpoints = vec![failpoint.to_string()];
    let svc = Service::start(config);
    let (_, r) = deploy(&svc, &endpoint, json!({"EndpointConfigName": a})).await;
    let st = svc.wait_terminal(r["id"].as_str().unwrap(), WAIT).await;
    assert_eq!(st["state"], "Done", "{st}");
    let arn = emu
        .sagemaker("DescribeEndpoint", json!({"EndpointName": endpoint}))
        .await["EndpointArn"]
        .clone();
    let tags: Vec<Value> = knobs
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect();
    emu.sagemaker("AddTags", json!({"ResourceArn": arn, "Tags": tags}))
        .await;

    let (_, r) = deploy(&svc, &endpoint, json!({"EndpointConfigName": b})).await;
    let id = r["id"].as_str().unwrap().to_string();
    svc.stderr
        .wait_for("the failpoint", Duration::from_secs(30), |l| {
            l == format!("FAILPOINT {failpoint}")
        });
    let mut svc = svc;
    svc.kill();
    // Each describe moves the emulator's update on; it lands InService (or rolled back).
    while land
        && emu
            .sagemaker("DescribeEndpoint", json!({"EndpointName": endpoint}))
            .await["EndpointStatus"]
            != "InService"
    {}
    let svc = svc.kill_and_restart();
    let st = svc.wait_terminal(&id, WAIT).await;
    (st, emu.job_stats("endpoints", &endpoint).await)
}

#[tokio::test]
async fn a_kill_after_the_update_intent_sends_the_update_once() {
    let (st, stats) = update_killed_at(
        "deployment.after_update_intent",
        json!({"_emulator_polls": "1"}),
        false,
    )
    .await;
    assert_eq!(st["state"], "Done", "{st}");
    assert_eq!(stats["updates"], 1, "{stats}");
}

#[tokio::test]
async fn a_kill_right_after_update_endpoint_follows_the_update_instead_of_sending_it_again() {
    let (st, stats) = update_killed_at(
        "deployment.after_update",
        json!({"_emulator_polls": "3"}),
        false,
    )
    .await;
    assert_eq!(st["state"], "Done", "{st}");
    assert_eq!(stats["updates"], 1, "{stats}");
}

#[tokio::test]
async fn a_kill_after_an_update_that_was_then_rolled_back_fails_rather_than_update_twice() {
    let (st, stats) = update_killed_at(
        "deployment.after_update",
        json!({"_emulator_polls": "0", "_emulator_update_outcome": "RolledBack"}),
        true,
    )
    .await;
    assert_eq!(st["state"], "Failed", "{st}");
    assert!(
        st["failure_reason"]
            .as_str()
            .unwrap()
            .contains("not updated a second time"),
        "{st}"
    );
    assert_eq!(stats["updates"], 1, "exactly one UpdateEndpoint: {stats}");
}

#[tokio::test]
async fn cancelling_a_deployment_that_created_its_endpoint_deletes_the_endpoint() {
    let emu = Emulator::shared();
    let base = unique("depd");
    let (a, _) = configs(emu, &base).await;
    let endpoint = format!("{base}-ep");
    let s = Scratch::new();
    let svc = Service::start(s.config(emu.url()));
    let (_, r) = deploy(
        &svc,
        &endpoint,
        json!({"EndpointConfigName": a, "Tags": {"_emulator_polls": "5"}}),
    )
    .await;
    let id = r["id"].as_str().unwrap();
    svc.wait_run(id, "Polling", |r| r["state"] == "Polling")
        .await;
    let (code, _) = svc
        .post(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(code, 202);
    let st = svc.wait_terminal(id, WAIT).await;
    assert_eq!(st["state"], "Cancelled", "{st}");
    let (_, run) = svc.get(&format!("/api/v1/runs/{id}")).await;
    let said = details(&run);
    assert!(
        said.iter().any(|d| d
            == &format!("cancel requested; deleting endpoint {endpoint}, which this run created")),
        "{run}"
    );
    assert!(
        said.iter()
            .any(|d| d.starts_with(&format!("cancelled; endpoint {endpoint} deleted"))),
        "{run}"
    );
    let stats = emu.job_stats("endpoints", &endpoint).await;
    assert_eq!(
        (stats["creates"].as_i64(), stats["deletes"].as_i64()),
        (Some(1), Some(1)),
        "{stats}"
    );
    assert_eq!(
        svc.get(&format!("/api/service/v1/endpoints/{endpoint}"))
            .await
            .0,
        404,
        "the endpoint is gone"
    );
    // The endpoint config was not brought along by the deployment: it stays.
    assert_eq!(
        emu.job_stats("endpoint_configs", &a).await["deletes"]
            .as_i64()
            .unwrap_or(0),
        0
    );
}

#[tokio::test]
async fn a_cancel_killed_before_its_delete_still_deletes_the_endpoint_once_after_a_restart() {
    let emu = Emulator::shared();
    let base = unique("depk");
    let (a, _) = configs(emu, &base).await;
    let endpoint = format!("{base}-ep");
    let s = Scratch::new();
    let mut config = s.config(emu.url());
    config.failpoints = vec!["deployment.before_delete".into()];
    let svc = Service::start(config);
    let (_, r) = deploy(
        &svc,
        &endpoint,
        json!({"EndpointConfigName": a, "Tags": {"_emulator_polls": "5"}}),
    )
    .await;
    let id = r["id"].as_str().unwrap().to_string();
    svc.wait_run(&id, "Polling", |r| r["state"] == "Polling")
        .await;
    let (code, _) = svc
        .post(&format!("/api/v1/runs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(code, 202);
    svc.stderr
        .wait_for("the failpoint", Duration::from_secs(30), |l| {
            l == "FAILPOINT deployment.before_delete"
        });
    let svc = svc.kill_and_restart();
    let st = svc.wait_terminal(&id, WAIT).await;
    assert_eq!(st["state"], "Cancelled", "{st}");
    let stats = emu.job_stats("endpoints", &endpoint).await;
    assert_eq!(
        (stats["creates"].as_i64(), stats["deletes"].as_i64()),
        (Some(1), Some(1)),
        "{stats}"
    );
}
