//! One crash harness for every workflow kind: submit runs as the Essedum backend would, wait
//! until each is parked at the armed failpoint, SIGKILL the process, restart it on the same
//! database without failpoints, wait until every run is terminal, then check the end state in
//! the store and, in the emulator, exactly one AWS effect per run.

use crate::support::{
    Emulator, ROLE, Scratch, Service, history_details as details, training_body, unique,
};
use sagemaker_executor::model::Kind;
use serde_json::{Value, json};
use std::time::Duration;

/// Runs per case: two runs crossing the same point at once still prove "exactly one each".
const RUNS: usize = 2;
const WAIT: Duration = Duration::from_secs(90);

/// What the runs are set up to do, and so how they must end.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Plan {
    /// The job completes (an endpoint goes InService, a teardown deletes it): Done.
    Completes,
    /// The job fails in SageMaker: Failed with the emulator's reason.
    Fails,
    /// The job keeps running until an operator cancels it: Cancelled after exactly one stop.
    Cancelled,
    /// Deployment to an endpoint InService on another config: Done after exactly one update.
    Updates,
    /// AutoML that deploys its best candidate: the linked deployment run creates one model, one
    /// endpoint config and one endpoint.
    Deploys,
    /// Teardown of an endpoint serving an AutoML deployment's config: the endpoint, its config
    /// and its model are each deleted exactly once.
    DeletesConfig,
}

impl Plan {
    fn end_state(self) -> &'static str {
        match self {
            Plan::Completes | Plan::Updates | Plan::Deploys | Plan::DeletesConfig => "Done",
            Plan::Fails => "Failed",
            Plan::Cancelled => "Cancelled",
        }
    }

    /// The emulator's outcome knob and the number of describes the resource stays running.
    fn knobs(self) -> (&'static str, u32) {
        match self {
            Plan::Fails => ("Failed", 2),
            Plan::Cancelled => ("Completed", 100_000),
            Plan::Completes | Plan::Updates | Plan::Deploys | Plan::DeletesConfig => {
                ("Completed", 2)
            }
        }
    }
}

/// The AWS effect each run must have had exactly once: the emulator's stats kind and counter.
fn effect(kind: Kind, plan: Plan) -> (&'static str, &'static str) {
    let resource = match kind {
        Kind::Training => "training_jobs",
        Kind::Automl => "automl_jobs",
        Kind::Transform => "transform_jobs",
        Kind::Script => "processing_jobs",
        Kind::Deployment | Kind::Teardown => "endpoints",
    };
    let counter = match (kind, plan) {
        (Kind::Teardown, _) => "deletes",
        (_, Plan::Updates) => "updates",
        _ => "creates",
    };
    (resource, counter)
}

/// One submitted run.
struct Submitted {
    id: String,
    bucket: String,
}

/// Creates what one run needs in the emulator and submits it through the API.
async fn submit(kind: Kind, plan: Plan, svc: &Service, emu: &Emulator) -> Submitted {
    let (outcome, polls) = plan.knobs();
    let bucket = unique("crash");
    emu.create_bucket(&bucket).await;
    let (route, body, accepted) = match kind {
        Kind::Training => (
            "/api/service/v1/pipelines/training/train".to_string(),
            training_body(&bucket, outcome, polls),
            202,
        ),
        Kind::Automl => {
            let mut body = json!({
                "type": "automl", "RoleArn": ROLE, "Bucket": bucket, "S3Prefix": "automl/e1",
                "inline_csv": "label,age\n1,30\n0,40\n", "target_attribute_name": "label",
                "problem_type": "BinaryClassification", "objective_metric": "F1",
                "Tags": {"_emulator_outcome": outcome, "_emulator_polls": polls.to_string()},
            });
            if plan == Plan::Deploys {
                body["deploy"] = json!({"endpoint_name": unique("crash-aml-ep"),
                                        "instance_type": "ml.m5.large", "instance_count": 1});
            }
            ("/api/service/v1/pipelines/training".to_string(), body, 202)
        }
        Kind::Transform => (
            "/api/service/v1/pipelines/inference".to_string(),
            json!({
                "ModelName": "churn-model",
                "TransformInput": {
                    "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": format!("s3://{bucket}/batch/in/")}},
                    "ContentType": "text/csv", "SplitType": "Line"
                },
                "TransformOutput": {"S3OutputPath": format!("s3://{bucket}/batch/out/"), "AssembleWith": "Line"},
                "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
                "Environment": {"_emulator_outcome": outcome, "_emulator_polls": polls.to_string()},
            }),
            202,
        ),
        Kind::Script => {
            // The backend's body (RemoteBody.java): no `configs` (the service's settings stand
            // in), the pipeline's input folder, knobs in `environment`.
            let folder = "leo1311/remote/CRASH/1/Input";
            for (file, text) in [("train.py", "print(1)\n"), ("data/train.csv", "a,b\n1,2\n")] {
                emu.put_object(&bucket, &format!("{folder}/{file}"), text)
                    .await;
            }
            (
                "/execute".to_string(),
                json!({
                    "bucket": bucket, "project_id": "leo1311", "name": "CRASH", "version": "1",
                    "credentials": {"endpoint": emu.url(), "access_key": "test", "secret_key": "test"},
                    "input_artifacts": folder, "command": "python train.py", "storage": "s3",
                    "environment": {"_emulator_outcome": outcome, "_emulator_polls": polls.to_string()},
                }),
                201,
            )
        }
        Kind::Deployment => {
            let endpoint = unique("crash-ep");
            let config = if plan == Plan::Updates {
                // InService on its own config; the run moves it to another one.
                emu.endpoint(&endpoint, 0).await;
                endpoint_config(emu, &format!("{endpoint}-b"), &endpoint).await
            } else {
                let model = unique("crash-model");
                model_of(emu, &model).await;
                endpoint_config(emu, &format!("{model}-a"), &model).await
            };
            (
                format!("/api/service/v1/endpoints/{endpoint}/deploy_model"),
                json!({"EndpointConfigName": config, "Tags": {"_emulator_polls": polls.to_string()}}),
                202,
            )
        }
        Kind::Teardown => {
            let endpoint = unique("crash-ep");
            if plan == Plan::DeletesConfig {
                // What an AutoML deployment leaves: its model and config, named by its run.
                let run = unique("run").replace('-', "");
                let model = format!("essedum-aml-model-{run}");
                model_of(emu, &model).await;
                let config = endpoint_config(emu, &format!("essedum-aml-cfg-{run}"), &model).await;
                emu.sagemaker(
                    "CreateEndpoint",
                    json!({"EndpointName": endpoint, "EndpointConfigName": config}),
                )
                .await;
            } else {
                emu.endpoint(&endpoint, 0).await;
            }
            (
                format!("/api/service/v1/endpoints/{endpoint}/undeploy_models"),
                json!({}),
                202,
            )
        }
    };
    let (code, reply) = svc.post(&route, &body).await;
    assert_eq!(code, accepted, "{kind:?} submit: {reply}");
    let id = reply["id"]
        .as_str()
        .or(reply["task_id"].as_str())
        .unwrap_or_else(|| panic!("no run id in {reply}"));
    Submitted {
        id: id.to_string(),
        bucket,
    }
}

async fn model_of(emu: &Emulator, model: &str) {
    emu.sagemaker(
        "CreateModel",
        json!({"ModelName": model, "ExecutionRoleArn": ROLE,
               "PrimaryContainer": {"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1"}}),
    )
    .await;
}

async fn endpoint_config(emu: &Emulator, name: &str, model: &str) -> String {
    emu.sagemaker(
        "CreateEndpointConfig",
        json!({"EndpointConfigName": name, "ProductionVariants": [{"VariantName": "v1",
               "ModelName": model, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}]}),
    )
    .await;
    name.to_string()
}

/// Kills a service of `kind` runs parked at `failpoint`, restarts it and checks every run: its
/// end state, exactly one AWS effect in the emulator, and no run lost or invented. Returns the
/// runs as the restarted service shows them.
pub async fn crash(kind: Kind, failpoint: &str, plan: Plan) -> Vec<Value> {
    crash_after(kind, failpoint, plan, RUNS).await
}

/// [`crash`], killing once `parks` tasks have stopped at the failpoint (1 for a point that every
/// run's task passes through together, such as the store's group commit).
pub async fn crash_after(kind: Kind, failpoint: &str, plan: Plan, parks: usize) -> Vec<Value> {
    let emu = Emulator::shared();
    let scratch = Scratch::new();
    let mut config = scratch.config(emu.url());
    config.failpoints = vec![failpoint.to_string()];
    // What the backend's script body leaves out (it sends no `configs`).
    config.extra_env.extend([
        ("EXECUTOR_SCRIPT_ROLE_ARN".to_string(), ROLE.to_string()),
        (
            "EXECUTOR_SCRIPT_IMAGE".to_string(),
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/python:3.11".to_string(),
        ),
    ]);
    let svc = Service::start(config);

    let mut runs = Vec::new();
    for _ in 0..RUNS {
        runs.push(submit(kind, plan, &svc, emu).await);
    }
    if plan == Plan::Cancelled {
        for run in &runs {
            svc.wait_run(&run.id, "Polling", |r| r["state"] == "Polling")
                .await;
            let (code, reply) = svc
                .post(&format!("/api/v1/runs/{}/cancel", run.id), &json!({}))
                .await;
            assert_eq!(code, 202, "cancel: {reply}");
        }
    }
    let marker = format!("FAILPOINT {failpoint}");
    // Every run parks at the failpoint before the kill (unless the point is shared), so each
    // of them crosses it.
    svc.stderr
        .wait_for_count(&marker, parks, WAIT, |l| l == marker);

    let svc = svc.kill_and_restart();
    let (resource, counter) = effect(kind, plan);
    let mut finals = Vec::new();
    for run in &runs {
        let st = svc.wait_terminal(&run.id, WAIT).await;
        assert_eq!(st["state"], plan.end_state(), "{failpoint}: {st}");
        let (_, detail) = svc.get(&format!("/api/v1/runs/{}", run.id)).await;
        let name = detail["context"]["job_name"].as_str().unwrap();
        let stats = emu.job_stats(resource, name).await;
        assert_eq!(
            stats[counter], 1,
            "{failpoint}: exactly one {counter} of {resource} {name}: {stats}"
        );
        if counter == "creates" {
            assert_eq!(
                stats["duplicate_creates"], 0,
                "{failpoint}: describe before create, never a second create: {stats}"
            );
        }
        if plan == Plan::Cancelled && kind == Kind::Deployment {
            // SageMaker cannot stop an endpoint operation: the cancel deletes the endpoint the
            // run created, once.
            assert_eq!(stats["deletes"], 1, "{failpoint}: one delete: {stats}");
        } else if plan == Plan::Cancelled {
            assert_eq!(stats["stops"], 1, "{failpoint}: one stop: {stats}");
        }
        if plan == Plan::DeletesConfig {
            let config = detail["context"]["endpoint_config_name"].as_str().unwrap();
            let model = config.replace("essedum-aml-cfg-", "essedum-aml-model-");
            for (resource, name) in [("endpoint_configs", config), ("models", &model)] {
                let stats = emu.job_stats(resource, name).await;
                assert_eq!(
                    stats["deletes"], 1,
                    "{failpoint}: exactly one delete of {resource} {name}: {stats}"
                );
            }
        }
        if plan == Plan::Fails {
            assert!(
                detail["last_error"].as_str().is_some_and(|e| !e.is_empty()),
                "{failpoint}: the run carries AWS's reason: {detail}"
            );
        }
        if failpoint.ends_with(".after_create") && resource.ends_with("_jobs") {
            // AWS accepted the create but the run never committed it: found by name, adopted.
            let d = details(&detail);
            assert!(
                d.iter().any(|d| d.starts_with("adopted")),
                "{failpoint}: {d:?}"
            );
            assert!(
                !d.iter().any(|d| d.starts_with("create accepted")),
                "{failpoint}: the create before the kill was never committed: {d:?}"
            );
        }
        if kind == Kind::Script {
            // Each input file staged once, under its name in the folder, whatever the kill.
            let prefix = format!("essedum-executor/scripts/{}/input/", run.id);
            let mut staged = emu.list_keys(&run.bucket, &prefix).await;
            staged.sort();
            assert_eq!(
                staged,
                [
                    format!("{prefix}data/train.csv"),
                    format!("{prefix}train.py")
                ],
                "{failpoint}"
            );
        }
        if plan == Plan::Deploys {
            deployed_once(&svc, emu, &detail, failpoint).await;
        }
        finals.push(detail);
    }
    let linked = if plan == Plan::Deploys { RUNS } else { 0 };
    assert_eq!(
        svc.run_count().await,
        RUNS + linked,
        "{failpoint}: no run lost, none invented"
    );
    finals
}

/// The deployment run an AutoML run started: Done, with exactly one model, endpoint config and
/// endpoint created.
async fn deployed_once(svc: &Service, emu: &Emulator, parent: &Value, failpoint: &str) {
    let started = details(parent)
        .into_iter()
        .find_map(|d| {
            d.rsplit_once("started deployment run ")
                .map(|(_, id)| id.to_string())
        })
        .unwrap_or_else(|| panic!("{failpoint}: no deployment run started: {parent}"));
    let st = svc.wait_terminal(&started, WAIT).await;
    assert_eq!(st["state"], "Done", "{failpoint}: {st}");
    let (_, child) = svc.get(&format!("/api/v1/runs/{started}")).await;
    let request = &child["request"];
    for (resource, name) in [
        ("models", &request["model"]["ModelName"]),
        ("endpoint_configs", &request["config"]["EndpointConfigName"]),
        ("endpoints", &request["endpoint_name"]),
    ] {
        let stats = emu.job_stats(resource, name.as_str().unwrap()).await;
        assert_eq!(
            (
                stats["creates"].as_u64(),
                stats["duplicate_creates"].as_u64()
            ),
            (Some(1), Some(0)),
            "{failpoint}: exactly one of {resource} {name}: {stats}"
        );
    }
}
