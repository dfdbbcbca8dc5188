#!/usr/bin/env python3
"""Self-check for tests/emulator/launcher.py.

Starts the launcher on a free port (``--port 0 --exit-on-stdin-eof``), drives
it with boto3 and a hand-signed request, then checks that it shuts down when
its stdin closes and on SIGTERM.  Prints one line ``N passed, N failed`` at
the end and exits non-zero if anything failed.

    /work/main/.venv/bin/python tests/emulator/selftest.py
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

HERE = os.path.dirname(os.path.abspath(__file__))
LAUNCHER = os.path.join(HERE, "launcher.py")
REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/emulator-selftest"
READY_TIMEOUT = 60.0


# --------------------------------------------------------------------------
# tiny harness
# --------------------------------------------------------------------------

RESULTS: list[tuple[str, bool]] = []


def check(name: str, fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - report and keep going
        RESULTS.append((name, False))
        print(f"FAIL {name}", flush=True)
        traceback.print_exc(file=sys.stdout)
    else:
        RESULTS.append((name, True))
        print(f"ok   {name}", flush=True)


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(what)


def expect_eq(actual: Any, wanted: Any, what: str) -> None:
    if actual != wanted:
        raise AssertionError(f"{what}: expected {wanted!r}, got {actual!r}")


# --------------------------------------------------------------------------
# launcher process
# --------------------------------------------------------------------------


class Launcher:
    def __init__(self, *extra: str):
        self.proc = subprocess.Popen(
            [sys.executable, LAUNCHER, "--port", "0", *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # inherit: launcher problems show up in our output
        )
        self.lines: "queue.Queue[bytes | None]" = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        first = self.lines.get(timeout=READY_TIMEOUT)
        if first is None:
            raise RuntimeError(f"launcher exited before READY (rc={self.proc.wait()})")
        self.ready_line = first.decode().rstrip("\n")
        prefix = "EMULATOR_READY port="
        if not self.ready_line.startswith(prefix):
            raise RuntimeError(f"unexpected first stdout line: {self.ready_line!r}")
        self.port = int(self.ready_line[len(prefix):])
        self.url = f"http://127.0.0.1:{self.port}"

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def extra_stdout(self) -> list[bytes]:
        """Lines written to stdout after READY (needs the process finished)."""
        out = []
        while True:
            item = self.lines.get(timeout=5)
            if item is None:
                return out
            out.append(item)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def http(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def clients(url: str, region: str = REGION) -> tuple[Any, Any, Any, Any]:
    session = boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name=region
    )
    cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"})
    return (
        session.client("sagemaker", endpoint_url=url, config=cfg),
        session.client("s3", endpoint_url=url, config=cfg),
        session.client("sagemaker-runtime", endpoint_url=url, config=cfg),
        session.client("logs", endpoint_url=url, config=cfg),
    )


class RawCapture:
    """Keeps the last raw HTTP response a boto3 client received.

    errors_only: ignore successful responses (reading a streaming body here
    would leave nothing for the caller)."""

    def __init__(self, client: Any, errors_only: bool = False):
        self.status: int | None = None
        self.body: bytes = b""
        self.errors_only = errors_only
        client.meta.events.register("after-call", self._after_call)
        client.meta.events.register("after-call-error", self._after_call)

    def _after_call(self, http_response: Any = None, **_: Any) -> None:
        if http_response is not None and not (self.errors_only and http_response.status_code < 300):
            self.status = http_response.status_code
            self.body = http_response.content


def error_of(fn: Callable[[], Any]) -> dict[str, Any]:
    try:
        fn()
    except ClientError as err:
        return {
            "code": err.response["Error"]["Code"],
            "message": err.response["Error"]["Message"],
            "status": err.response["ResponseMetadata"]["HTTPStatusCode"],
        }
    raise AssertionError("call succeeded but an error was expected")


# --------------------------------------------------------------------------
# the checks
# --------------------------------------------------------------------------


def run_checks(emu: Launcher) -> None:
    sm, s3, rt, logs = clients(emu.url)
    raw = RawCapture(sm)
    rt_raw = RawCapture(rt, errors_only=True)

    def create(name: str, output: str = "s3://emulator-bucket/models/", **hp: str) -> str:
        return sm.create_training_job(
            TrainingJobName=name,
            RoleArn=ROLE,
            AlgorithmSpecification={"TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/algo:1", "TrainingInputMode": "File"},
            OutputDataConfig={"S3OutputPath": output},
            ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
            StoppingCondition={"MaxRuntimeInSeconds": 3600},
            HyperParameters=hp,
        )["TrainingJobArn"]

    def describe(name: str) -> dict[str, Any]:
        return sm.describe_training_job(TrainingJobName=name)

    def stats() -> dict[str, Any]:
        status, body = http(emu.url + "/_emulator/stats")
        expect_eq(status, 200, "stats HTTP status")
        return json.loads(body)["training_jobs"]

    def t_ready_line() -> None:
        expect(emu.port > 0, "READY line reports the real port, not 0")

    def t_s3_roundtrip() -> None:
        s3.create_bucket(Bucket="emulator-bucket")
        s3.put_object(Bucket="emulator-bucket", Key="data/train.csv", Body=b"a,b\n1,2\n")
        got = s3.get_object(Bucket="emulator-bucket", Key="data/train.csv")["Body"].read()
        expect_eq(got, b"a,b\n1,2\n", "object body")
        # path style really was used
        status, body = http(f"{emu.url}/emulator-bucket?list-type=2")
        expect_eq(status, 200, "unsigned path-style list")
        expect(b"data/train.csv" in body, "listing shows the key")

    def t_completed_lifecycle() -> None:
        arn = create("job-ok")
        expect(arn.endswith(":training-job/job-ok"), f"arn {arn}")
        seen = []
        for _ in range(2):
            d = describe("job-ok")
            seen.append((d["TrainingJobStatus"], d["SecondaryStatus"]))
            expect("TrainingEndTime" not in d, "no TrainingEndTime while running")
            expect("FailureReason" not in d, "no FailureReason while running")
            expect("ModelArtifacts" not in d, "no ModelArtifacts while running")
        expect_eq(seen, [("InProgress", "Starting"), ("InProgress", "Downloading")], "running states")
        d = describe("job-ok")
        expect_eq((d["TrainingJobStatus"], d["SecondaryStatus"]), ("Completed", "Completed"), "final state")
        expect_eq(
            d["ModelArtifacts"]["S3ModelArtifacts"],
            "s3://emulator-bucket/models/job-ok/output/model.tar.gz",
            "artifact path (trailing slash stripped)",
        )
        expect("TrainingEndTime" in d, "TrainingEndTime set")
        expect("FailureReason" not in d, "no FailureReason on Completed")
        expect_eq([t["Status"] for t in d["SecondaryStatusTransitions"]], ["Starting", "Downloading", "Completed"], "transitions")
        expect_eq(d["AlgorithmSpecification"].get("MetricDefinitions"), None, "AlgorithmSpecification echoed as sent")
        d = describe("job-ok")
        expect_eq(d["TrainingJobStatus"], "Completed", "terminal state is sticky")
        listed = {s["TrainingJobName"]: s["TrainingJobStatus"] for s in sm.list_training_jobs()["TrainingJobSummaries"]}
        expect_eq(listed.get("job-ok"), "Completed", "ListTrainingJobs status")

    def t_polls_knobs() -> None:
        create("job-fast", output="s3://emulator-bucket/out", _emulator_polls="0")
        d = describe("job-fast")
        expect_eq(d["TrainingJobStatus"], "Completed", "polls=0 terminal on first describe")
        expect_eq(d["ModelArtifacts"]["S3ModelArtifacts"], "s3://emulator-bucket/out/job-fast/output/model.tar.gz", "artifact path (no slash)")
        create("job-slow", _emulator_polls="4")
        seen = [describe("job-slow")["SecondaryStatus"] for _ in range(5)]
        expect_eq(seen, ["Starting", "Downloading", "Training", "Training", "Completed"], "polls=4 walk")

    def t_failed_lifecycle() -> None:
        create("job-bad", _emulator_outcome="Failed", _emulator_polls="1", _emulator_failure_reason="ClientError: bad input channel")
        d = describe("job-bad")
        expect_eq(d["TrainingJobStatus"], "InProgress", "first describe")
        d = describe("job-bad")
        expect_eq((d["TrainingJobStatus"], d["SecondaryStatus"]), ("Failed", "Failed"), "failed state")
        expect_eq(d["FailureReason"], "ClientError: bad input channel", "custom reason")
        expect("ModelArtifacts" not in d, "no artifacts on failure")
        expect("TrainingEndTime" in d, "TrainingEndTime on failure")
        create("job-bad-default", _emulator_outcome="Failed", _emulator_polls="0", _emulator_failure_reason="")
        d = describe("job-bad-default")
        expect_eq(d["FailureReason"], "AlgorithmError: emulated failure", "default reason (empty knob)")

    def t_invalid_knob() -> None:
        err = error_of(lambda: create("job-knob", _emulator_outcome="Exploded"))
        expect_eq((err["code"], err["status"]), ("ValidationException", 400), "bad outcome rejected")
        err = error_of(lambda: create("job-knob", _emulator_polls="-1"))
        expect_eq(err["code"], "ValidationException", "bad polls rejected")
        expect_eq(error_of(lambda: describe("job-knob"))["code"], "ValidationException", "rejected job not created")

    def t_stop_lifecycle() -> None:
        create("job-stop", _emulator_polls="5")
        expect_eq(describe("job-stop")["TrainingJobStatus"], "InProgress", "before stop")
        resp = sm.stop_training_job(TrainingJobName="job-stop")
        expect_eq(resp["ResponseMetadata"]["HTTPStatusCode"], 200, "stop status")
        expect_eq(json.loads(raw.body), {}, "stop body")
        d = describe("job-stop")
        expect_eq((d["TrainingJobStatus"], d["SecondaryStatus"]), ("Stopping", "Stopping"), "stopping")
        # stop while stopping is accepted and changes nothing
        sm.stop_training_job(TrainingJobName="job-stop")
        d = describe("job-stop")
        expect_eq((d["TrainingJobStatus"], d["SecondaryStatus"]), ("Stopped", "Stopped"), "stopped after stop_polls=1")
        expect("FailureReason" not in d, "no FailureReason when stopped")
        expect("TrainingEndTime" in d, "TrainingEndTime when stopped")
        expect_eq(describe("job-stop")["TrainingJobStatus"], "Stopped", "stopped is sticky")
        err = error_of(lambda: sm.stop_training_job(TrainingJobName="job-stop"))
        expect_eq((err["code"], err["status"]), ("ValidationException", 400), "stop on Stopped")
        expect(err["message"].endswith("in status Stopped."), err["message"])

        create("job-stop-now", _emulator_stop_polls="0")
        sm.stop_training_job(TrainingJobName="job-stop-now")  # before any describe
        expect_eq(describe("job-stop-now")["TrainingJobStatus"], "Stopped", "stop_polls=0")

        create("job-stop-slow", _emulator_stop_polls="3")
        sm.stop_training_job(TrainingJobName="job-stop-slow")
        seen = [describe("job-stop-slow")["TrainingJobStatus"] for _ in range(4)]
        expect_eq(seen, ["Stopping", "Stopping", "Stopping", "Stopped"], "stop_polls=3")

    def t_stop_rejections() -> None:
        err = error_of(lambda: sm.stop_training_job(TrainingJobName="job-ok"))
        expect_eq((err["code"], err["status"]), ("ValidationException", 400), "stop on Completed")
        expect_eq(err["message"], "The request was rejected because the training job is in status Completed.", "message")
        expect_eq(
            json.loads(raw.body),
            {"__type": "ValidationException", "message": "The request was rejected because the training job is in status Completed."},
            "raw error body",
        )
        err = error_of(lambda: sm.stop_training_job(TrainingJobName="job-bad"))
        expect(err["message"].endswith("in status Failed."), err["message"])
        err = error_of(lambda: sm.stop_training_job(TrainingJobName="no-such-job"))
        expect_eq((err["code"], err["status"]), ("ValidationException", 400), "stop unknown")
        expect(err["message"].startswith("Requested resource not found"), err["message"])

    def t_duplicate_create() -> None:
        create("job-dup", _emulator_polls="3")
        before = describe("job-dup")
        err = error_of(
            lambda: sm.create_training_job(
                TrainingJobName="job-dup",
                RoleArn="arn:aws:iam::123456789012:role/other-role",
                OutputDataConfig={"S3OutputPath": "s3://elsewhere/"},
                HyperParameters={"_emulator_outcome": "Failed"},
            )
        )
        expect_eq((err["code"], err["status"]), ("ResourceInUse", 400), "duplicate create")
        body = json.loads(raw.body)
        expect_eq(sorted(body), ["__type", "message"], "error body keys")
        expect_eq(body["__type"], "ResourceInUse", "__type")
        expect(body["message"], "non-empty message")
        after = describe("job-dup")
        expect_eq(after["RoleArn"], ROLE, "first job's role untouched")
        expect_eq(after["OutputDataConfig"], before["OutputDataConfig"], "first job's output untouched")
        expect_eq(after["HyperParameters"], {"_emulator_polls": "3"}, "first job's hyperparameters untouched")
        expect_eq(after["CreationTime"], before["CreationTime"], "creation time untouched")
        expect_eq(after["SecondaryStatus"], "Downloading", "lifecycle continues (2nd describe)")

    def t_describe_unknown() -> None:
        err = error_of(lambda: describe("never-created"))
        expect_eq((err["code"], err["status"]), ("ValidationException", 400), "describe unknown")
        expect(err["message"].startswith("Could not find training job"), err["message"])

    def t_signed_raw_request() -> None:
        # what a non-boto client (the Rust SDK) sends: awsJson1.1 + SigV4 for "sagemaker"
        payload = {
            "TrainingJobName": "job-raw",
            "RoleArn": ROLE,
            "AlgorithmSpecification": {"TrainingImage": "img:1", "TrainingInputMode": "File"},
            "OutputDataConfig": {"S3OutputPath": "s3://emulator-bucket/raw/"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
            "StoppingCondition": {"MaxRuntimeInSeconds": 60},
            "HyperParameters": {"_emulator_polls": "0"},
        }

        def send(target: str, body: dict) -> tuple[int, Any]:
            req = AWSRequest(
                method="POST",
                url=emu.url + "/",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"SageMaker.{target}"},
            )
            SigV4Auth(Credentials("test", "test"), "sagemaker", REGION).add_auth(req)
            status, raw_body = http(req.url, "POST", req.body, dict(req.headers.items()))
            return status, json.loads(raw_body)

        status, body = send("CreateTrainingJob", payload)
        expect_eq(status, 200, f"raw create: {body}")
        expect(body["TrainingJobArn"].endswith("/job-raw"), "raw create arn")
        status, body = send("CreateTrainingJob", payload)
        expect_eq((status, body.get("__type")), (400, "ResourceInUse"), "raw duplicate reached the patch")
        status, body = send("DescribeTrainingJob", {"TrainingJobName": "job-raw"})
        expect_eq((status, body["TrainingJobStatus"]), (200, "Completed"), "raw describe")
        expect_eq(body["ModelArtifacts"]["S3ModelArtifacts"], "s3://emulator-bucket/raw/job-raw/output/model.tar.gz", "raw artifacts")
        status, body = send("StopTrainingJob", {"TrainingJobName": "job-raw"})
        expect_eq((status, body.get("__type")), (400, "ValidationException"), "raw stop on Completed")

    def t_concurrent_describes() -> None:
        create("job-busy", _emulator_polls="1000")
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda _: describe("job-busy"), range(64)))
        expect_eq(stats()["job-busy"]["describes"], 64, "no lost describe under concurrency")

    def t_stats() -> None:
        s = stats()
        expect_eq(
            s["job-ok"],
            {"creates": 1, "duplicate_creates": 0, "describes": 4, "stops": 0, "rejected_stops": 1, "status": "Completed"},
            "job-ok stats",
        )
        expect_eq(s["job-dup"]["creates"], 1, "job-dup creates")
        expect_eq(s["job-dup"]["duplicate_creates"], 1, "job-dup duplicate_creates")
        expect_eq(s["job-dup"]["describes"], 2, "job-dup describes")
        expect_eq(s["job-dup"]["status"], "InProgress", "job-dup status")
        expect_eq((s["job-stop"]["stops"], s["job-stop"]["describes"], s["job-stop"]["status"]), (2, 4, "Stopped"), "job-stop stats")
        expect_eq(s["job-raw"]["duplicate_creates"], 1, "raw duplicate counted")
        expect_eq(s["job-bad"]["status"], "Failed", "job-bad status")
        expect("job-knob" not in s, "rejected create leaves no record")
        expect("never-created" not in s, "unknown describe leaves no record")

    def t_control_errors() -> None:
        expect_eq(http(emu.url + "/_emulator/nope")[0], 404, "unknown route")
        expect_eq(http(emu.url + "/_emulator/reset")[0], 405, "reset needs POST")
        expect_eq(http(emu.url + "/_emulator/health")[0], 200, "health")

    def t_reset() -> None:
        queue_answer("ep-1", "left over")
        expect(invocations("ep-1"), "invocations recorded before reset")
        status, body = http(emu.url + "/_emulator/reset", "POST", b"")
        expect_eq((status, json.loads(body)), (200, {"status": "ok"}), "reset response")
        expect_eq(stats(), {}, "stats cleared")
        after = all_stats()
        calls = after.pop("list_calls")
        expect_eq(set(map(len, after.values())), {0}, "stats of every kind cleared")
        expect_eq(set(calls.values()), {0}, "list calls cleared")
        expect_eq(invocations("ep-1"), [], "invocation record cleared")
        expect_eq(error_of(lambda: describe_endpoint("ep-1"))["code"], "ValidationException", "endpoint gone")
        expect_eq(error_of(lambda: sm.describe_model(ModelName="ep-model"))["code"], "ValidationException", "model gone")
        expect_eq(error_of(lambda: describe_automl("automl-ok"))["code"], "ResourceNotFound", "automl job gone")
        expect_eq(error_of(lambda: describe_transform("batch-ok"))["code"], "ValidationException", "transform job gone")
        expect_eq(error_of(lambda: describe_processing("proc-ok"))["code"], "ValidationException", "processing job gone")
        create_model("ep-model")
        create_config("ep-config-a")
        create_endpoint("ep-1", _emulator_polls="0")
        describe_endpoint("ep-1")
        expect_eq(json.loads(invoke("ep-1")[0]), {"predictions": [0]}, "answer queue cleared")
        expect_eq(error_of(lambda: describe("job-ok"))["code"], "ValidationException", "moto data cleared")
        expect_eq(s3.list_buckets()["Buckets"], [], "S3 cleared too")
        expect_eq(logs.describe_log_groups()["logGroups"], [], "CloudWatch Logs cleared too")
        create("job-ok")  # same name is free again, fresh lifecycle
        expect_eq(describe("job-ok")["SecondaryStatus"], "Starting", "fresh lifecycle after reset")
        expect_eq(stats()["job-ok"]["describes"], 1, "fresh counters after reset")
        # moto's own reset route also drops the emulator bookkeeping
        status, _ = http(emu.url + "/moto-api/reset", "POST", b"")
        expect_eq(status, 200, "moto-api reset")
        expect_eq(stats(), {}, "stats cleared by /moto-api/reset")

    # ------------------------------------------------------------------
    # helpers for the other resources
    # ------------------------------------------------------------------

    def all_stats() -> dict[str, Any]:
        status, body = http(emu.url + "/_emulator/stats")
        expect_eq(status, 200, "stats HTTP status")
        return json.loads(body)

    def tags(**knobs: str) -> list[dict[str, str]]:
        return [{"Key": k, "Value": v} for k, v in knobs.items()]

    def post_json(route: str, payload: Any) -> tuple[int, Any]:
        status, body = http(emu.url + route, "POST", json.dumps(payload).encode(), {"Content-Type": "application/json"})
        return status, json.loads(body)

    def queue_answer(endpoint: str, body: str = "", content_type: str = "application/json", model_error: Any = None) -> None:
        payload = {"endpoint": endpoint, "body": body, "content_type": content_type, "model_error": model_error}
        status, answer = post_json("/_emulator/invoke-results", payload)
        expect_eq((status, answer["status"]), (200, "ok"), f"queue answer: {answer}")

    def invocations(endpoint: str) -> list[dict[str, Any]]:
        status, body = http(f"{emu.url}/_emulator/invocations?endpoint={endpoint}")
        expect_eq(status, 200, "invocations HTTP status")
        return json.loads(body)

    def invoke(endpoint: str, body: bytes | str = b'{"x": 1}', content_type: str = "application/json") -> tuple[bytes, dict[str, Any]]:
        resp = rt.invoke_endpoint(EndpointName=endpoint, Body=body, ContentType=content_type)
        return resp["Body"].read(), resp

    automl_input = [
        {
            "ChannelType": "training",
            "ContentType": "text/csv;header=present",
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://emulator-bucket/automl/train/"}},
        }
    ]

    def create_automl(name: str, output: str = "s3://emulator-bucket/automl/", problem: dict | None = None, **knobs: str) -> str:
        return sm.create_auto_ml_job_v2(
            AutoMLJobName=name,
            AutoMLJobInputDataConfig=automl_input,
            OutputDataConfig={"S3OutputPath": output},
            # no CompletionCriteria, no ProblemType: optional for SageMaker, stock moto dies
            AutoMLProblemTypeConfig=problem or {"TabularJobConfig": {"TargetAttributeName": "label"}},
            RoleArn=ROLE,
            Tags=tags(**knobs),
        )["AutoMLJobArn"]

    def describe_automl(name: str) -> dict[str, Any]:
        return sm.describe_auto_ml_job_v2(AutoMLJobName=name)

    def create_transform(name: str, environment: dict | None = None, tag_knobs: dict | None = None, output: str = "s3://emulator-bucket/batch/out/") -> str:
        return sm.create_transform_job(
            TransformJobName=name,
            ModelName="batch-model",
            TransformInput={
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://emulator-bucket/batch/in/"}},
                "ContentType": "text/csv",
            },
            TransformOutput={"S3OutputPath": output},
            TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
            Environment=environment or {},
            Tags=tags(**(tag_knobs or {})),
        )["TransformJobArn"]

    def describe_transform(name: str) -> dict[str, Any]:
        return sm.describe_transform_job(TransformJobName=name)

    processing_resources = {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 10}}

    def create_processing(
        name: str,
        environment: dict | None = None,
        tag_knobs: dict | None = None,
        outputs: tuple[str, ...] = ("s3://emulator-bucket/proc/out/",),
        arguments: list[str] | None = None,
        client: Any = None,
    ) -> str:
        app: dict[str, Any] = {"ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/proc:1", "ContainerEntrypoint": ["python3", "run.py"]}
        if arguments is not None:
            app["ContainerArguments"] = arguments
        return (client or sm).create_processing_job(
            ProcessingJobName=name,
            RoleArn=ROLE,
            AppSpecification=app,
            ProcessingResources=processing_resources,
            ProcessingOutputConfig={
                "Outputs": [
                    {
                        "OutputName": f"out{i}",
                        "S3Output": {"S3Uri": uri, "LocalPath": f"/opt/ml/processing/output{i}", "S3UploadMode": "EndOfJob"},
                    }
                    for i, uri in enumerate(outputs)
                ]
            },
            Environment=environment or {},
            Tags=tags(**(tag_knobs or {})),
        )["ProcessingJobArn"]

    proc_group = "/aws/sagemaker/ProcessingJobs"

    def proc_stream(name: str, client: Any = None) -> str:
        streams = (client or logs).describe_log_streams(logGroupName=proc_group, logStreamNamePrefix=name + "/")["logStreams"]
        expect_eq(len(streams), 1, f"one log stream for {name}")
        return streams[0]["logStreamName"]

    def proc_events(name: str, client: Any = None) -> list[dict[str, Any]]:
        return (client or logs).get_log_events(logGroupName=proc_group, logStreamName=proc_stream(name, client), startFromHead=True)["events"]

    def proc_log(name: str, client: Any = None) -> list[str]:
        return [e["message"] for e in proc_events(name, client)]

    def s3_objects(bucket: str, prefix: str) -> dict[str, bytes]:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}

    def describe_processing(name: str) -> dict[str, Any]:
        return sm.describe_processing_job(ProcessingJobName=name)

    def create_model(name: str, image: str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serve:1", role: str = ROLE) -> str:
        return sm.create_model(ModelName=name, ExecutionRoleArn=role, PrimaryContainer={"Image": image})["ModelArn"]

    def create_config(name: str, model: str = "ep-model", variant: str = "blue") -> str:
        return sm.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[{"VariantName": variant, "ModelName": model, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}],
        )["EndpointConfigArn"]

    def create_endpoint(name: str, config: str = "ep-config-a", **knobs: str) -> str:
        return sm.create_endpoint(EndpointName=name, EndpointConfigName=config, Tags=tags(**knobs))["EndpointArn"]

    def describe_endpoint(name: str) -> dict[str, Any]:
        return sm.describe_endpoint(EndpointName=name)

    def endpoint_states(name: str, n: int) -> list[str]:
        return [describe_endpoint(name)["EndpointStatus"] for _ in range(n)]

    # ------------------------------------------------------------------
    # AutoML V2 jobs
    # ------------------------------------------------------------------

    def t_automl_completed() -> None:
        arn = create_automl("automl-ok", _emulator_polls="5")
        expect(arn.endswith(":automl-job/automl-ok"), f"arn {arn}")
        seen = []
        for _ in range(5):
            d = describe_automl("automl-ok")
            seen.append((d["AutoMLJobStatus"], d["AutoMLJobSecondaryStatus"]))
            for field in ("BestCandidate", "EndTime", "FailureReason", "AutoMLJobArtifacts"):
                expect(field not in d, f"no {field} while running")
        expect_eq(
            seen,
            [("InProgress", "Starting"), ("InProgress", "AnalyzingData"), ("InProgress", "FeatureEngineering"), ("InProgress", "ModelTuning"), ("InProgress", "ModelTuning")],
            "running states",
        )
        d = describe_automl("automl-ok")
        expect_eq((d["AutoMLJobStatus"], d["AutoMLJobSecondaryStatus"]), ("Completed", "Completed"), "final state")
        expect("EndTime" in d and "FailureReason" not in d, "EndTime, no FailureReason")
        best = d["BestCandidate"]
        expect_eq(best["CandidateStatus"], "Completed", "CandidateStatus")
        expect(best["CandidateName"], "CandidateName")
        expect(isinstance(best["FinalAutoMLJobObjectiveMetric"]["Value"], float), "objective value")
        expect(best["FinalAutoMLJobObjectiveMetric"]["MetricName"], "objective metric name")
        containers = best["InferenceContainers"]
        expect(len(containers) >= 1, "inference containers")
        for c in containers:
            expect(c["Image"] and isinstance(c["Environment"], dict), f"container {c}")
            expect(c["ModelDataUrl"].startswith("s3://emulator-bucket/automl/automl-ok/"), f"output path reflected: {c['ModelDataUrl']}")
        notebook = d["AutoMLJobArtifacts"]["DataExplorationNotebookLocation"]
        expect(notebook.startswith("s3://emulator-bucket/automl/automl-ok/"), notebook)
        expect_eq(d["AutoMLProblemTypeConfig"], {"TabularJobConfig": {"TargetAttributeName": "label"}}, "problem config echoed as sent")
        expect("ModelDeployConfig" not in d and "ModelDeployResult" not in d, "no invented deploy config")
        expect_eq(describe_automl("automl-ok")["AutoMLJobStatus"], "Completed", "terminal is sticky")
        listed = {j["AutoMLJobName"]: j["AutoMLJobStatus"] for j in sm.list_auto_ml_jobs()["AutoMLJobSummaries"]}
        expect_eq(listed.get("automl-ok"), "Completed", "ListAutoMLJobs status")

        create_automl(
            "automl-default",
            output="s3://emulator-bucket/automl",
            problem={"TabularJobConfig": {"TargetAttributeName": "y", "ProblemType": "Regression", "CompletionCriteria": {"MaxCandidates": 3}}},
        )
        seen = [describe_automl("automl-default")["AutoMLJobSecondaryStatus"] for _ in range(3)]
        expect_eq(seen, ["Starting", "AnalyzingData", "Completed"], "default polls=2")
        best = describe_automl("automl-default")["BestCandidate"]
        expect_eq(best["FinalAutoMLJobObjectiveMetric"]["MetricName"], "MSE", "objective follows the problem type")
        expect(best["InferenceContainers"][-1]["ModelDataUrl"].startswith("s3://emulator-bucket/automl/automl-default/"), "no double slash")

    def t_automl_failed() -> None:
        create_automl("automl-bad", _emulator_outcome="Failed", _emulator_polls="1", _emulator_failure_reason="ClientError: target column missing")
        expect_eq(describe_automl("automl-bad")["AutoMLJobStatus"], "InProgress", "first describe")
        d = describe_automl("automl-bad")
        expect_eq((d["AutoMLJobStatus"], d["AutoMLJobSecondaryStatus"]), ("Failed", "Failed"), "failed state")
        expect_eq(d["FailureReason"], "ClientError: target column missing", "custom reason")
        expect("BestCandidate" not in d and "EndTime" in d, "no candidate, EndTime set")
        create_automl("automl-bad-default", _emulator_outcome="Failed", _emulator_polls="0")
        expect_eq(describe_automl("automl-bad-default")["FailureReason"], "AlgorithmError: emulated failure", "default reason")

    def t_automl_stop() -> None:
        create_automl("automl-stop", _emulator_polls="5")
        describe_automl("automl-stop")
        sm.stop_auto_ml_job(AutoMLJobName="automl-stop")
        d = describe_automl("automl-stop")
        expect_eq((d["AutoMLJobStatus"], d["AutoMLJobSecondaryStatus"]), ("Stopping", "Stopping"), "stopping")
        d = describe_automl("automl-stop")
        expect_eq((d["AutoMLJobStatus"], d["AutoMLJobSecondaryStatus"]), ("Stopped", "Stopped"), "stopped")
        expect("BestCandidate" not in d, "no candidate when stopped")
        err = error_of(lambda: sm.stop_auto_ml_job(AutoMLJobName="automl-stop"))
        expect_eq(err["code"], "ValidationException", "stop on Stopped")
        expect(err["message"].endswith("in status Stopped."), err["message"])
        err = error_of(lambda: sm.stop_auto_ml_job(AutoMLJobName="automl-ok"))
        expect(err["message"].endswith("in status Completed."), err["message"])
        err = error_of(lambda: sm.stop_auto_ml_job(AutoMLJobName="no-such-automl"))
        expect_eq((err["code"], err["status"]), ("ResourceNotFound", 400), "stop unknown")

    def t_automl_duplicate() -> None:
        create_automl("automl-dup", _emulator_polls="3")
        describe_automl("automl-dup")
        err = error_of(lambda: create_automl("automl-dup", output="s3://elsewhere/", _emulator_outcome="Failed"))
        expect_eq((err["code"], err["status"]), ("ResourceInUse", 400), "duplicate create")
        d = describe_automl("automl-dup")
        expect_eq(d["OutputDataConfig"]["S3OutputPath"], "s3://emulator-bucket/automl/", "first job untouched")
        expect_eq(d["AutoMLJobSecondaryStatus"], "AnalyzingData", "lifecycle continues")
        err = error_of(lambda: create_automl("automl-knob", _emulator_polls="soon"))
        expect_eq(err["code"], "ValidationException", "bad knob rejected")
        expect_eq(error_of(lambda: describe_automl("automl-knob"))["code"], "ResourceNotFound", "rejected job not created")

    # ------------------------------------------------------------------
    # transform jobs
    # ------------------------------------------------------------------

    def t_transform_completed() -> None:
        arn = create_transform("batch-ok", environment={"_emulator_polls": "1", "MODEL_SERVER_WORKERS": "2"})
        expect(arn.endswith(":transform-job/batch-ok"), f"arn {arn}")
        d = describe_transform("batch-ok")
        expect_eq(d["TransformJobStatus"], "InProgress", "first describe")
        expect("TransformEndTime" not in d and "FailureReason" not in d, "no end time / reason while running")
        d = describe_transform("batch-ok")
        expect_eq(d["TransformJobStatus"], "Completed", "completed")
        expect_eq(d["TransformOutput"]["S3OutputPath"], "s3://emulator-bucket/batch/out/", "S3OutputPath echoed")
        expect("TransformEndTime" in d and "FailureReason" not in d, "end time, no reason")
        expect_eq(d["Environment"], {"_emulator_polls": "1", "MODEL_SERVER_WORKERS": "2"}, "Environment echoed")
        for field in ("LabelingJobArn", "AutoMLJobArn"):
            expect(field not in d, f"no empty {field}")

    def t_transform_failed_and_tags() -> None:
        create_transform("batch-bad", environment={"_emulator_outcome": "Failed", "_emulator_polls": "0", "_emulator_failure_reason": "ClientError: bad record"})
        d = describe_transform("batch-bad")
        expect_eq((d["TransformJobStatus"], d["FailureReason"]), ("Failed", "ClientError: bad record"), "failed")
        # knobs from tags; a tag wins over the same knob in Environment
        create_transform("batch-tags", environment={"_emulator_polls": "5"}, tag_knobs={"_emulator_polls": "0", "_emulator_outcome": "Failed"})
        d = describe_transform("batch-tags")
        expect_eq((d["TransformJobStatus"], d["FailureReason"]), ("Failed", "AlgorithmError: emulated failure"), "tags used")

    def t_transform_stop() -> None:
        create_transform("batch-stop", environment={"_emulator_polls": "5", "_emulator_stop_polls": "2"})
        resp = sm.stop_transform_job(TransformJobName="batch-stop")
        expect_eq(resp["ResponseMetadata"]["HTTPStatusCode"], 200, "stop accepted (stock moto: HTML 500)")
        seen = [describe_transform("batch-stop")["TransformJobStatus"] for _ in range(3)]
        expect_eq(seen, ["Stopping", "Stopping", "Stopped"], "stop_polls=2")
        err = error_of(lambda: sm.stop_transform_job(TransformJobName="batch-stop"))
        expect_eq(err["message"], "The request was rejected because the transform job is in status Stopped.", "stop on Stopped")
        err = error_of(lambda: sm.stop_transform_job(TransformJobName="batch-ok"))
        expect(err["message"].endswith("in status Completed."), err["message"])
        err = error_of(lambda: sm.stop_transform_job(TransformJobName="no-such-batch"))
        expect_eq((err["code"], err["message"]), ("ValidationException", "Requested resource not found."), "stop unknown")

    def t_transform_duplicate() -> None:
        create_transform("batch-dup", environment={"_emulator_polls": "3"})
        err = error_of(lambda: create_transform("batch-dup", environment={"_emulator_outcome": "Failed"}, output="s3://elsewhere/"))
        expect_eq((err["code"], err["status"]), ("ResourceInUse", 400), "duplicate create")
        d = describe_transform("batch-dup")
        expect_eq((d["Environment"], d["TransformOutput"]["S3OutputPath"]), ({"_emulator_polls": "3"}, "s3://emulator-bucket/batch/out/"), "first job untouched")
        err = error_of(lambda: create_transform("batch-knob", environment={"_emulator_outcome": "Done"}))
        expect_eq(err["code"], "ValidationException", "bad knob rejected")

    # ------------------------------------------------------------------
    # processing jobs
    # ------------------------------------------------------------------

    def t_processing_completed() -> None:
        arn = create_processing("proc-ok", environment={"STAGE": "prep"})
        expect(arn.endswith(":processing-job/proc-ok"), f"arn {arn}")
        seen = []
        for _ in range(2):
            d = describe_processing("proc-ok")
            seen.append(d["ProcessingJobStatus"])
            expect("ProcessingEndTime" not in d and "ExitMessage" not in d, "no end time / exit message while running")
        expect_eq(seen, ["InProgress", "InProgress"], "running")
        d = describe_processing("proc-ok")
        expect_eq(d["ProcessingJobStatus"], "Completed", "completed")
        expect("ProcessingEndTime" in d and "FailureReason" not in d and "ExitMessage" not in d, "end fields")
        expect_eq(d["Environment"], {"STAGE": "prep"}, "Environment echoed (stock moto drops it)")
        expect_eq(d["ProcessingResources"], processing_resources, "ProcessingResources echoed (stock moto drops it)")

    def t_processing_failed() -> None:
        create_processing("proc-bad", tag_knobs={"_emulator_outcome": "Failed", "_emulator_polls": "1", "_emulator_failure_reason": "AlgorithmError: exit code 2"})
        expect_eq(describe_processing("proc-bad")["ProcessingJobStatus"], "InProgress", "first describe")
        d = describe_processing("proc-bad")
        expect_eq((d["ProcessingJobStatus"], d["FailureReason"], d["ExitMessage"]), ("Failed", "AlgorithmError: exit code 2", "AlgorithmError: exit code 2"), "failed")

    def t_processing_stop() -> None:
        create_processing("proc-stop", environment={"_emulator_stop_polls": "0"})
        sm.stop_processing_job(ProcessingJobName="proc-stop")
        d = describe_processing("proc-stop")
        expect_eq(d["ProcessingJobStatus"], "Stopped", "stop_polls=0")
        expect("ProcessingEndTime" in d and "FailureReason" not in d, "end time, no reason")
        create_processing("proc-stop2")
        sm.stop_processing_job(ProcessingJobName="proc-stop2")
        expect_eq([describe_processing("proc-stop2")["ProcessingJobStatus"] for _ in range(2)], ["Stopping", "Stopped"], "default stop_polls=1")
        err = error_of(lambda: sm.stop_processing_job(ProcessingJobName="proc-ok"))
        expect_eq(err["message"], "The request was rejected because the processing job is in status Completed.", "stop on Completed (stock moto: Stopped)")
        expect_eq(describe_processing("proc-ok")["ProcessingJobStatus"], "Completed", "still Completed")
        err = error_of(lambda: sm.stop_processing_job(ProcessingJobName="no-such-proc"))
        expect_eq((err["code"], err["message"]), ("ValidationException", "Requested resource not found."), "stop unknown")

    def t_processing_duplicate() -> None:
        create_processing("proc-dup", environment={"_emulator_polls": "3"})
        err = error_of(lambda: create_processing("proc-dup", environment={"OTHER": "1"}))
        expect_eq((err["code"], err["status"]), ("ResourceInUse", 400), "duplicate create")
        expect_eq(describe_processing("proc-dup")["Environment"], {"_emulator_polls": "3"}, "first job untouched")

    def t_processing_log_progressive() -> None:
        create_processing("proc-log", environment={"_emulator_log": "line one\nline two\nline three\nline four", "_emulator_polls": "2"})
        stream = proc_stream("proc-log")
        expect_eq(proc_log("proc-log"), [], "stream exists, empty, before the first describe")
        first = logs.get_log_events(logGroupName=proc_group, logStreamName=stream, startFromHead=True)
        expect_eq(first["events"], [], "no events yet")
        token = first["nextForwardToken"]
        seen = []
        for _ in range(3):
            d = describe_processing("proc-log")
            page = logs.get_log_events(logGroupName=proc_group, logStreamName=stream, startFromHead=True, nextToken=token)
            seen.append((d["ProcessingJobStatus"], [e["message"] for e in page["events"]]))
            expect(page["nextForwardToken"] != token, "token moves when there are new events")
            token = page["nextForwardToken"]
        expect_eq(
            seen,
            [("InProgress", ["line one"]), ("InProgress", ["line two"]), ("Completed", ["line three", "line four"])],
            "one line per InProgress describe, the rest at the end (no extra line when the knob is given)",
        )
        created = int(d["CreationTime"].timestamp())
        prefix = "proc-log/algo-1-"
        expect(stream.startswith(prefix) and stream[len(prefix):].isdigit(), f"stream name {stream}")
        expect(abs(int(stream[len(prefix):]) - created) <= 1, f"stream name {stream} carries the creation time {created}")
        # paging terminates: nothing new -> same token back
        page = logs.get_log_events(logGroupName=proc_group, logStreamName=stream, startFromHead=True, nextToken=token)
        expect_eq((page["events"], page["nextForwardToken"]), ([], token), "nothing new: empty page, same forward token")
        describe_processing("proc-log")
        page = logs.get_log_events(logGroupName=proc_group, logStreamName=stream, startFromHead=True, nextToken=token)
        expect_eq((page["events"], page["nextForwardToken"]), ([], token), "describes after the end add nothing")
        events = proc_events("proc-log")
        expect_eq([e["message"] for e in events], ["line one", "line two", "line three", "line four"], "whole log from head")
        stamps = [e["timestamp"] for e in events]
        expect(all(a < b for a, b in zip(stamps, stamps[1:])) and stamps[0] > 10**12, f"ms timestamps, increasing: {stamps}")
        filtered = logs.filter_log_events(logGroupName=proc_group, logStreamNames=[stream])["events"]
        expect_eq([(e["logStreamName"], e["message"]) for e in filtered], [(stream, m) for m in ["line one", "line two", "line three", "line four"]], "FilterLogEvents")
        expect_eq(logs.describe_log_groups(logGroupNamePrefix=proc_group)["logGroups"][0]["logGroupName"], proc_group, "log group")

    def t_processing_log_failed() -> None:
        create_processing("proc-log-bad", environment={"_emulator_log": "a\nb\nc\n", "_emulator_outcome": "Failed", "_emulator_polls": "1"}, tag_knobs={"_emulator_failure_reason": "AlgorithmError: boom"})
        expect_eq(describe_processing("proc-log-bad")["ProcessingJobStatus"], "InProgress", "first describe")
        expect_eq(proc_log("proc-log-bad"), ["a"], "first line while InProgress")
        expect_eq(describe_processing("proc-log-bad")["ProcessingJobStatus"], "Failed", "failed")
        expect_eq(proc_log("proc-log-bad"), ["a", "b", "c", "ERROR: AlgorithmError: boom"], "rest plus ERROR line (trailing newline adds no line)")
        create_processing("proc-log-empty", environment={"_emulator_log": "", "_emulator_polls": "1"})
        expect_eq([describe_processing("proc-log-empty")["ProcessingJobStatus"] for _ in range(2)], ["InProgress", "Completed"], "empty log job")
        expect_eq(proc_log("proc-log-empty"), [], "empty _emulator_log: no lines")

    def t_processing_log_reads() -> None:
        create_processing("proc-log-reads", environment={"_emulator_log": "one\ntwo"})
        describe_processing("proc-log-reads")
        stream = proc_stream("proc-log-reads")
        first = logs.get_log_events(logGroupName=proc_group, logStreamName=stream, startFromHead=True)
        logs.get_log_events(logGroupName=proc_group, logStreamName=stream, nextToken=first["nextForwardToken"])
        status, reads = http(f"{emu.url}/_emulator/log-reads?stream_prefix=proc-log-reads/")
        expect_eq(status, 200, "log-reads HTTP status")
        expect_eq(
            json.loads(reads),
            [
                {"logStreamName": stream, "nextToken": None, "startFromHead": True},
                {"logStreamName": stream, "nextToken": first["nextForwardToken"], "startFromHead": None},
            ],
            "GetLogEvents requests recorded, oldest first",
        )
        expect_eq(json.loads(http(f"{emu.url}/_emulator/log-reads?stream_prefix=nothing/")[1]), [], "other prefix -> []")
        expect_eq(http(f"{emu.url}/_emulator/log-reads")[0], 400, "log-reads needs ?stream_prefix=")

    def t_processing_log_defaults() -> None:
        create_processing("proc-log-default", arguments=["--alpha", "1"])
        expect_eq([describe_processing("proc-log-default")["ProcessingJobStatus"] for _ in range(3)], ["InProgress", "InProgress", "Completed"], "default lifecycle")
        expect_eq(
            proc_log("proc-log-default"),
            ["emulated processing job proc-log-default started", "running: python3 run.py --alpha 1", "emulated processing job proc-log-default finished"],
            "default lines, Completed",
        )
        create_processing("proc-log-default-bad", environment={"_emulator_outcome": "Failed", "_emulator_polls": "0"})
        expect_eq(describe_processing("proc-log-default-bad")["ProcessingJobStatus"], "Failed", "failed at once")
        expect_eq(
            proc_log("proc-log-default-bad"),
            ["emulated processing job proc-log-default-bad started", "running: python3 run.py", "ERROR: AlgorithmError: emulated failure"],
            "default lines, Failed",
        )
        create_processing("proc-log-stop", environment={"_emulator_stop_polls": "1"})
        describe_processing("proc-log-stop")
        sm.stop_processing_job(ProcessingJobName="proc-log-stop")
        expect_eq(describe_processing("proc-log-stop")["ProcessingJobStatus"], "Stopping", "stopping")
        expect_eq(proc_log("proc-log-stop"), ["emulated processing job proc-log-stop started"], "nothing added while Stopping")
        expect_eq(describe_processing("proc-log-stop")["ProcessingJobStatus"], "Stopped", "stopped")
        expect_eq(
            proc_log("proc-log-stop"),
            ["emulated processing job proc-log-stop started", "running: python3 run.py", "stopped"],
            "default lines, Stopped",
        )
        # another region: group and stream live in that region's logs
        sm_eu, _, _, logs_eu = clients(emu.url, "eu-west-1")
        create_processing("proc-log-eu", environment={"_emulator_polls": "0"}, outputs=(), client=sm_eu)
        sm_eu.describe_processing_job(ProcessingJobName="proc-log-eu")
        expect_eq(proc_log("proc-log-eu", logs_eu)[-1], "emulated processing job proc-log-eu finished", "eu-west-1 log")
        streams = logs.describe_log_streams(logGroupName=proc_group, logStreamNamePrefix="proc-log-eu/")["logStreams"]
        expect_eq(streams, [], "not in us-east-1")

    def t_processing_outputs() -> None:
        uris = ("s3://emulator-bucket/proc/default-out/", "s3://emulator-bucket/proc/second", "s3://no-such-emulator-bucket/out/")
        create_processing("proc-out", environment={"_emulator_polls": "1"}, outputs=uris)
        describe_processing("proc-out")
        expect_eq(s3_objects("emulator-bucket", "proc/default-out/"), {}, "no outputs while InProgress")
        expect_eq(describe_processing("proc-out")["ProcessingJobStatus"], "Completed", "completed despite a missing bucket")
        want = {"result.json": b'{"job": "proc-out", "status": "ok"}', "metrics.txt": b"accuracy=0.93"}
        expect_eq(s3_objects("emulator-bucket", "proc/default-out/"), {f"proc/default-out/{k}": v for k, v in want.items()}, "default outputs (trailing slash)")
        expect_eq(s3_objects("emulator-bucket", "proc/second/"), {f"proc/second/{k}": v for k, v in want.items()}, "default outputs (no slash)")
        expect_eq(json.loads(want["result.json"]), {"job": "proc-out", "status": "ok"}, "result.json is JSON")
        expect("no-such-emulator-bucket" not in [b["Name"] for b in s3.list_buckets()["Buckets"]], "missing bucket not created")
        custom = {"report/summary.csv": "a,b\n1,2\n", "model.txt": "weights"}
        create_processing("proc-out-custom", environment={"_emulator_polls": "0", "_emulator_outputs": json.dumps(custom)}, outputs=("s3://emulator-bucket/proc/custom/",))
        describe_processing("proc-out-custom")
        expect_eq(
            s3_objects("emulator-bucket", "proc/custom/"),
            {"proc/custom/report/summary.csv": b"a,b\n1,2\n", "proc/custom/model.txt": b"weights"},
            "custom outputs",
        )
        create_processing("proc-out-tag", tag_knobs={"_emulator_polls": "0", "_emulator_outputs": "{}"}, outputs=("s3://emulator-bucket/proc/none/",))
        describe_processing("proc-out-tag")
        expect_eq(s3_objects("emulator-bucket", "proc/none/"), {}, "_emulator_outputs={} (from a tag) writes nothing")

    def t_processing_no_outputs() -> None:
        create_processing("proc-out-bad", environment={"_emulator_polls": "0", "_emulator_outcome": "Failed"}, outputs=("s3://emulator-bucket/proc/failed/",))
        expect_eq(describe_processing("proc-out-bad")["ProcessingJobStatus"], "Failed", "failed")
        create_processing("proc-out-stop", environment={"_emulator_stop_polls": "0"}, outputs=("s3://emulator-bucket/proc/stopped/",))
        sm.stop_processing_job(ProcessingJobName="proc-out-stop")
        expect_eq(describe_processing("proc-out-stop")["ProcessingJobStatus"], "Stopped", "stopped")
        expect_eq(s3_objects("emulator-bucket", "proc/failed/"), {}, "no outputs after Failed")
        expect_eq(s3_objects("emulator-bucket", "proc/stopped/"), {}, "no outputs after Stopped")

    def t_processing_invalid_outputs() -> None:
        for raw_value in ("not json", '["a"]', '{"a.txt": 3}', '{"": "x"}', '{"/abs.txt": "x"}'):
            err = error_of(lambda: create_processing("proc-out-knob", environment={"_emulator_outputs": raw_value}))
            expect_eq((err["code"], err["status"]), ("ValidationException", 400), f"rejected: {raw_value}")
            expect("_emulator_outputs" in err["message"], err["message"])
        err = error_of(lambda: create_processing("proc-out-knob", tag_knobs={"_emulator_outputs": "{"}))
        expect_eq(err["code"], "ValidationException", "rejected from a tag")
        expect_eq(error_of(lambda: describe_processing("proc-out-knob"))["code"], "ValidationException", "rejected job not created")
        streams = logs.describe_log_streams(logGroupName=proc_group, logStreamNamePrefix="proc-out-knob/")["logStreams"]
        expect_eq(streams, [], "no log stream for a rejected job")

    # ------------------------------------------------------------------
    # models and endpoint configs
    # ------------------------------------------------------------------

    def t_model_duplicate() -> None:
        arn = create_model("m-dup")
        err = error_of(lambda: create_model("m-dup", image="other:2", role="arn:aws:iam::123456789012:role/other"))
        expect_eq((err["code"], err["status"]), ("ValidationException", 400), "duplicate model")
        expect_eq(err["message"], f'Cannot create already existing model "{arn}".', "message")
        expect_eq(json.loads(raw.body)["__type"], "ValidationException", "raw __type")
        d = sm.describe_model(ModelName="m-dup")
        expect_eq((d["PrimaryContainer"]["Image"], d["ExecutionRoleArn"]), ("123456789012.dkr.ecr.us-east-1.amazonaws.com/serve:1", ROLE), "first model untouched")
        sm.delete_model(ModelName="m-dup")
        create_model("m-dup", image="other:2")  # the name is free again
        expect_eq(sm.describe_model(ModelName="m-dup")["PrimaryContainer"]["Image"], "other:2", "recreated")
        expect_eq(
            all_stats()["models"]["m-dup"],
            {"creates": 2, "duplicate_creates": 1, "describes": 2, "deletes": 1, "exists": True},
            "model stats",
        )

    def t_endpoint_config_duplicate() -> None:
        create_model("ep-model")
        arn = create_config("ep-config-a", variant="blue")
        create_config("ep-config-b", variant="green")
        err = error_of(lambda: create_config("ep-config-a", variant="red"))
        expect_eq((err["code"], err["status"]), ("ValidationException", 400), "duplicate config")
        expect_eq(err["message"], f'Cannot create already existing endpoint configuration "{arn}".', "message")
        variants = sm.describe_endpoint_config(EndpointConfigName="ep-config-a")["ProductionVariants"]
        expect_eq([v["VariantName"] for v in variants], ["blue"], "first config untouched")
        expect_eq(
            all_stats()["endpoint_configs"]["ep-config-a"],
            {"creates": 1, "duplicate_creates": 1, "describes": 1, "deletes": 0, "exists": True},
            "config stats",
        )

    # ------------------------------------------------------------------
    # endpoints
    # ------------------------------------------------------------------

    def t_endpoint_create() -> None:
        arn = create_endpoint("ep-1")
        expect(arn.endswith(":endpoint/ep-1"), f"arn {arn}")
        for _ in range(2):
            d = describe_endpoint("ep-1")
            expect_eq(d["EndpointStatus"], "Creating", "creating")
            expect("ProductionVariants" not in d and "FailureReason" not in d, "no variants / reason while creating")
            expect_eq(d["EndpointConfigName"], "ep-config-a", "config while creating")
        d = describe_endpoint("ep-1")
        expect_eq(d["EndpointStatus"], "InService", "in service after 2 creating describes")
        expect_eq((d["EndpointName"], d["EndpointArn"], d["EndpointConfigName"]), ("ep-1", arn, "ep-config-a"), "identity fields")
        expect_eq([v["VariantName"] for v in d["ProductionVariants"]], ["blue"], "ProductionVariants when InService")
        expect("FailureReason" not in d and "PendingDeploymentSummary" not in d, "clean InService")
        listed = {e["EndpointName"]: e["EndpointStatus"] for e in sm.list_endpoints()["Endpoints"]}
        expect_eq(listed.get("ep-1"), "InService", "ListEndpoints status")

    def t_endpoint_knobs() -> None:
        create_endpoint("ep-fast", _emulator_polls="0")
        expect_eq(describe_endpoint("ep-fast")["EndpointStatus"], "InService", "polls=0")
        create_endpoint("ep-bad", _emulator_outcome="Failed", _emulator_polls="1", _emulator_failure_reason="ping failed")
        expect_eq(describe_endpoint("ep-bad")["EndpointStatus"], "Creating", "creating")
        d = describe_endpoint("ep-bad")
        expect_eq((d["EndpointStatus"], d["FailureReason"]), ("Failed", "ping failed"), "failed")
        err = error_of(lambda: sm.update_endpoint(EndpointName="ep-bad", EndpointConfigName="ep-config-b"))
        expect_eq(err["code"], "ValidationException", "update of a Failed endpoint")
        err = error_of(lambda: create_endpoint("ep-knob", _emulator_outcome="Completed"))
        expect_eq(err["code"], "ValidationException", "bad knob rejected")
        expect_eq(error_of(lambda: describe_endpoint("ep-knob"))["code"], "ValidationException", "rejected endpoint not created")
        err = error_of(lambda: create_endpoint("ep-noconfig", config="no-such-config"))
        expect_eq(err["code"], "ValidationException", "unknown config")

    def t_endpoint_duplicate() -> None:
        err = error_of(lambda: create_endpoint("ep-1", config="ep-config-b", _emulator_outcome="Failed"))
        expect_eq((err["code"], err["status"]), ("ValidationException", 400), "duplicate endpoint")
        expect(err["message"].startswith('Cannot create already existing endpoint "arn:aws:sagemaker:'), err["message"])
        d = describe_endpoint("ep-1")
        expect_eq((d["EndpointStatus"], d["EndpointConfigName"]), ("InService", "ep-config-a"), "existing endpoint untouched")
        expect_eq(sm.list_tags(ResourceArn=d["EndpointArn"])["Tags"], [], "tags untouched")

    def t_endpoint_update() -> None:
        resp = sm.update_endpoint(EndpointName="ep-1", EndpointConfigName="ep-config-b")
        expect(resp["EndpointArn"].endswith(":endpoint/ep-1"), "update answer")
        err = error_of(lambda: sm.update_endpoint(EndpointName="ep-1", EndpointConfigName="ep-config-a"))
        expect_eq(err["code"], "ValidationException", "update while Updating")
        expect(err["message"].startswith("Cannot update in-progress endpoint"), err["message"])
        for _ in range(2):
            d = describe_endpoint("ep-1")
            expect_eq((d["EndpointStatus"], d["EndpointConfigName"]), ("Updating", "ep-config-a"), "updating on old config")
            expect_eq(d["PendingDeploymentSummary"]["EndpointConfigName"], "ep-config-b", "pending config")
            expect_eq([v["VariantName"] for v in d["ProductionVariants"]], ["blue"], "old variants while updating")
        d = describe_endpoint("ep-1")
        expect_eq((d["EndpointStatus"], d["EndpointConfigName"]), ("InService", "ep-config-b"), "new config live")
        expect_eq([v["VariantName"] for v in d["ProductionVariants"]], ["green"], "new variants")
        expect("PendingDeploymentSummary" not in d and "FailureReason" not in d, "clean after update")
        err = error_of(lambda: sm.update_endpoint(EndpointName="ep-1", EndpointConfigName="no-such-config"))
        expect_eq(err["code"], "ValidationException", "unknown config")
        err = error_of(lambda: sm.update_endpoint(EndpointName="no-such-endpoint", EndpointConfigName="ep-config-a"))
        expect_eq(err["code"], "ValidationException", "unknown endpoint")
        expect_eq(describe_endpoint("ep-1")["EndpointStatus"], "InService", "rejected updates change nothing")

    def t_endpoint_rollback() -> None:
        arn = describe_endpoint("ep-1")["EndpointArn"]
        sm.add_tags(ResourceArn=arn, Tags=tags(_emulator_update_outcome="RolledBack", _emulator_polls="1"))
        sm.update_endpoint(EndpointName="ep-1", EndpointConfigName="ep-config-a")
        expect_eq(describe_endpoint("ep-1")["EndpointStatus"], "Updating", "updating (polls=1 from AddTags)")
        d = describe_endpoint("ep-1")
        expect_eq((d["EndpointStatus"], d["EndpointConfigName"]), ("InService", "ep-config-b"), "rolled back to the old config")
        expect_eq([v["VariantName"] for v in d["ProductionVariants"]], ["green"], "old variants kept")
        expect("update failed" in d["FailureReason"].lower(), f"FailureReason: {d.get('FailureReason')}")
        sm.delete_tags(ResourceArn=arn, TagKeys=["_emulator_update_outcome"])
        sm.update_endpoint(EndpointName="ep-1", EndpointConfigName="ep-config-a")
        d = [describe_endpoint("ep-1") for _ in range(2)][-1]
        expect_eq((d["EndpointStatus"], d["EndpointConfigName"]), ("InService", "ep-config-a"), "next update succeeds")
        expect("FailureReason" not in d, "FailureReason cleared by a successful update")
        sm.add_tags(ResourceArn=arn, Tags=tags(_emulator_update_outcome="Maybe"))
        err = error_of(lambda: sm.update_endpoint(EndpointName="ep-1", EndpointConfigName="ep-config-b"))
        expect_eq(err["code"], "ValidationException", "bad update knob rejected")
        sm.delete_tags(ResourceArn=arn, TagKeys=["_emulator_update_outcome", "_emulator_polls"])

    def t_endpoint_delete() -> None:
        sm.delete_endpoint(EndpointName="ep-fast")
        d = describe_endpoint("ep-fast")
        expect_eq(d["EndpointStatus"], "Deleting", "deleting")
        listed = {e["EndpointName"]: e["EndpointStatus"] for e in sm.list_endpoints()["Endpoints"]}
        expect_eq(listed.get("ep-fast"), "Deleting", "ListEndpoints while deleting")
        err = error_of(lambda: create_endpoint("ep-fast"))
        expect(err["message"].startswith("Cannot create already existing endpoint"), "name still taken while deleting")
        err = error_of(lambda: describe_endpoint("ep-fast"))
        expect_eq((err["code"], err["status"]), ("ValidationException", 400), "gone after one Deleting describe")
        expect(err["message"].startswith("Could not find endpoint"), err["message"])
        expect("ep-fast" not in {e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]}, "not listed")
        err = error_of(lambda: sm.delete_endpoint(EndpointName="ep-fast"))
        expect_eq(err["code"], "ValidationException", "delete unknown")
        create_endpoint("ep-fast", _emulator_polls="0")
        expect_eq(describe_endpoint("ep-fast")["EndpointStatus"], "InService", "name reusable")
        s = all_stats()["endpoints"]["ep-fast"]
        expect_eq((s["creates"], s["duplicate_creates"], s["deletes"], s["status"]), (2, 1, 1, "InService"), "ep-fast stats")

    # ------------------------------------------------------------------
    # InvokeEndpoint
    # ------------------------------------------------------------------

    def t_invoke_default() -> None:
        body, resp = invoke("ep-1")
        expect_eq(json.loads(body), {"predictions": [0]}, "default answer")
        expect_eq(resp["ContentType"], "application/json", "default content type")
        expect_eq(resp["InvokedProductionVariant"], "blue", "variant of the live config")

    def t_invoke_queue() -> None:
        queue_answer("ep-1", '{"predictions": [0.25]}')
        queue_answer("ep-1", "0.75\n", content_type="text/csv")
        queue_answer("ep-fast", '{"other": true}')
        # identical requests: moto's fingerprint cache would repeat the first answer
        first, resp1 = invoke("ep-1", b"1,2,3", "text/csv")
        second, resp2 = invoke("ep-1", b"1,2,3", "text/csv")
        third, _ = invoke("ep-1", b"1,2,3", "text/csv")
        expect_eq((first, resp1["ContentType"]), (b'{"predictions": [0.25]}', "application/json"), "first queued answer")
        expect_eq((second, resp2["ContentType"]), (b"0.75\n", "text/csv"), "second queued answer (FIFO)")
        expect_eq(json.loads(third), {"predictions": [0]}, "queue drained -> default")
        expect_eq(invoke("ep-fast")[0], b'{"other": true}', "queues are per endpoint")

    def t_invoke_model_error() -> None:
        queue_answer("ep-1", model_error={"status": 400, "message": "unsupported content type"})
        try:
            invoke("ep-1", b"junk", "text/plain")
        except ClientError as err:
            r = err.response
            expect_eq((r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"]), ("ModelError", 424), "ModelError 424")
            expect_eq((r.get("OriginalStatusCode"), r.get("OriginalMessage")), (400, "unsupported content type"), "modeled fields")
            expect("unsupported content type" in r["Error"]["Message"], r["Error"]["Message"])
        else:
            raise AssertionError("ModelError expected")
        raw_body = json.loads(rt_raw.body)
        expect_eq(rt_raw.status, 424, "raw status")
        expect_eq(raw_body["__type"], "ModelError", "raw __type")
        expect({"message", "OriginalStatusCode", "OriginalMessage"} <= set(raw_body), f"raw keys {sorted(raw_body)}")
        queue_answer("ep-1", model_error={"status": 503, "message": "overloaded"})
        err2 = error_of(lambda: invoke("ep-1"))
        expect_eq((err2["code"], err2["status"]), ("ModelError", 424), "5xx from the model")
        expect("server error (503)" in err2["message"], err2["message"])
        expect_eq(json.loads(invoke("ep-1")[0]), {"predictions": [0]}, "errors are consumed from the queue")

    def t_invoke_rejections() -> None:
        err = error_of(lambda: invoke("no-such-endpoint"))
        expect_eq((err["code"], err["status"]), ("ValidationError", 400), "unknown endpoint")
        expect_eq(err["message"], "Endpoint no-such-endpoint of account 123456789012 not found.", "message")
        expect_eq(json.loads(rt_raw.body)["__type"], "ValidationError", "raw __type")
        create_endpoint("ep-slow", _emulator_polls="3")
        queue_answer("ep-slow", "queued")
        err = error_of(lambda: invoke("ep-slow"))
        expect_eq((err["code"], err["status"]), ("ValidationError", 400), "Creating endpoint")
        err = error_of(lambda: invoke("ep-bad"))
        expect_eq(err["code"], "ValidationError", "Failed endpoint")
        expect_eq(invocations("ep-slow"), [], "rejected calls not recorded")
        for _ in range(4):
            describe_endpoint("ep-slow")
        expect_eq(invoke("ep-slow")[0], b"queued", "queued answer kept until the endpoint serves")
        sm.update_endpoint(EndpointName="ep-slow", EndpointConfigName="ep-config-b")
        expect_eq(json.loads(invoke("ep-slow")[0]), {"predictions": [0]}, "Updating endpoint still serves")
        sm.delete_endpoint(EndpointName="ep-slow")
        err = error_of(lambda: invoke("ep-slow"))
        expect_eq(err["message"], "Endpoint ep-slow of account 123456789012 not found.", "Deleting endpoint")

    def t_invocations_record() -> None:
        create_endpoint("ep-rec", _emulator_polls="0")
        describe_endpoint("ep-rec")
        json_body = json.dumps({"instances": [{"features": [1.5, "é", None]}]})
        csv_body = "1,2,3\n4,5,6\n"
        invoke("ep-rec", json_body.encode(), "application/json")
        invoke("ep-rec", csv_body, "text/csv")
        invoke("ep-rec", b"a=1&b=2", "application/x-www-form-urlencoded")
        invoke("ep-rec", b"\xff\x00\xfe", "application/octet-stream")
        got = invocations("ep-rec")
        expect_eq(
            got[:3],
            [
                {"content_type": "application/json", "body": json_body},
                {"content_type": "text/csv", "body": csv_body},
                {"content_type": "application/x-www-form-urlencoded", "body": "a=1&b=2"},
            ],
            "JSON, CSV and form bodies intact",
        )
        expect_eq((got[3]["content_type"], got[3]["body_base64"]), ("application/octet-stream", "/wD+"), "binary body as base64")
        expect_eq(len(got), 4, "one entry per call")
        expect_eq(invocations("never-invoked"), [], "unknown endpoint -> []")
        expect_eq(all_stats()["endpoints"]["ep-rec"]["invocations"], 4, "invocation count in stats")

    def t_invoke_concurrent() -> None:
        create_endpoint("ep-busy", _emulator_polls="0")
        describe_endpoint("ep-busy")
        for i in range(32):
            queue_answer("ep-busy", str(i), content_type="text/plain")
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda i: invoke("ep-busy", str(i).encode(), "text/plain")[0], range(32)))
        expect_eq(sorted(int(a) for a in answers), list(range(32)), "every queued answer served exactly once")
        expect_eq(sorted(int(e["body"]) for e in invocations("ep-busy")), list(range(32)), "every request recorded")

    def t_invoke_control_errors() -> None:
        status, _ = http(emu.url + "/_emulator/invoke-results", "POST", b"{not json", {"Content-Type": "application/json"})
        expect_eq(status, 400, "bad JSON")
        for payload in (
            {"body": "x"},
            {"endpoint": "ep-1", "body": 3},
            {"endpoint": "ep-1", "model_error": {"status": 200}},
            {"endpoint": "ep-1", "model_error": "boom"},
        ):
            status, answer = post_json("/_emulator/invoke-results", payload)
            expect_eq(status, 400, f"rejected: {payload}")
            expect("error" in answer, "error message")
        expect_eq(http(emu.url + "/_emulator/invocations")[0], 400, "invocations needs ?endpoint=")
        expect_eq(http(emu.url + "/_emulator/invoke-results")[0], 405, "invoke-results needs POST")
        expect_eq(json.loads(invoke("ep-1")[0]), {"predictions": [0]}, "nothing was queued by bad requests")

    def t_list_models_pages() -> None:
        names = [f"m-page-{i:02d}" for i in range(5)]
        for n in names:
            create_model(n)
        seen: list[str] = []
        token = None
        pages = 0
        while True:
            kwargs: dict[str, Any] = {"MaxResults": 2, "SortBy": "Name", "SortOrder": "Ascending"}
            if token:
                kwargs["NextToken"] = token
            page = sm.list_models(**kwargs)
            pages += 1
            expect(len(page["Models"]) <= 2, "MaxResults honoured")
            expect(all(set(m) == {"ModelName", "ModelArn", "CreationTime"} for m in page["Models"]), "summaries only")
            seen += [m["ModelName"] for m in page["Models"]]
            token = page.get("NextToken")
            if not token:
                break
        expect_eq([n for n in seen if n.startswith("m-page-")], names, "every model once, in order")
        expect(pages >= 3, f"several pages ({pages})")
        err = error_of(lambda: sm.list_models(NextToken="bogus"))
        expect_eq(err["code"], "ValidationException", "bad token")
        newest = sm.list_models(MaxResults=1)["Models"][0]["ModelName"]
        expect_eq(newest, names[-1], "default order: newest first")

    def t_explainer_config() -> None:
        create_model("xai-model")
        explainer = {"ClarifyExplainerConfig": {"EnableExplanations": "`true`", "ShapConfig": {"ShapBaselineConfig": {"ShapBaseline": "1,2,3"}}}}
        sm.create_endpoint_config(
            EndpointConfigName="xai-config",
            ProductionVariants=[{"VariantName": "v", "ModelName": "xai-model", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}],
            ExplainerConfig=explainer,
        )
        expect_eq(sm.describe_endpoint_config(EndpointConfigName="xai-config")["ExplainerConfig"], explainer, "kept")
        create_config("plain-config", model="xai-model")
        expect("ExplainerConfig" not in sm.describe_endpoint_config(EndpointConfigName="plain-config"), "absent when not given")
        create_endpoint("ep-xai", config="xai-config", _emulator_polls="0")
        create_endpoint("ep-plain", config="plain-config", _emulator_polls="0")
        describe_endpoint("ep-xai")
        describe_endpoint("ep-plain")
        resp = rt.invoke_endpoint(EndpointName="ep-xai", Body=b"1,2,3", ContentType="text/csv", EnableExplanations="`true`")
        answer = json.loads(resp["Body"].read())
        expect(set(answer) >= {"predictions", "explanations"}, f"Clarify-shaped answer: {answer}")
        expect_eq(invocations("ep-xai")[-1], {"content_type": "text/csv", "body": "1,2,3", "enable_explanations": "`true`"}, "recorded with the expression")
        err = error_of(lambda: rt.invoke_endpoint(EndpointName="ep-plain", Body=b"1", ContentType="text/csv", EnableExplanations="`true`"))
        expect_eq((err["code"], err["status"]), ("ValidationError", 400), "no explainer")
        expect_eq(invocations("ep-plain"), [], "refused call not recorded")
        expect_eq(json.loads(invoke("ep-plain")[0]), {"predictions": [0]}, "plain invoke still works")

    def t_other_stats() -> None:
        s = all_stats()
        expect_eq(
            sorted(s),
            ["automl_jobs", "endpoint_configs", "endpoints", "list_calls", "models", "processing_jobs", "training_jobs", "transform_jobs"],
            "stats keys",
        )
        expect_eq(
            s["automl_jobs"]["automl-ok"],
            {"creates": 1, "duplicate_creates": 0, "describes": 7, "stops": 0, "rejected_stops": 1, "status": "Completed"},
            "automl-ok stats",
        )
        expect_eq(s["automl_jobs"]["automl-dup"]["duplicate_creates"], 1, "automl duplicate counted")
        expect_eq((s["transform_jobs"]["batch-stop"]["stops"], s["transform_jobs"]["batch-stop"]["status"]), (1, "Stopped"), "transform stats")
        expect_eq(s["processing_jobs"]["proc-ok"]["rejected_stops"], 1, "processing rejected stop counted")
        expect_eq(s["processing_jobs"]["proc-dup"]["duplicate_creates"], 1, "processing duplicate counted")
        ep = s["endpoints"]["ep-1"]
        expect_eq((ep["creates"], ep["duplicate_creates"], ep["updates"], ep["deletes"], ep["status"]), (1, 1, 3, 0, "InService"), "ep-1 stats")
        expect_eq(ep["invocations"], 8, "ep-1 invocations")
        # CreateEndpoint reads the config inside moto; only client describes count
        expect_eq(s["endpoint_configs"]["ep-config-a"]["describes"], 1, "config describes")
        expect_eq(s["endpoints"]["ep-slow"]["status"], "Deleting", "ep-slow status")
        expect("ep-knob" not in s["endpoints"] and "automl-knob" not in s["automl_jobs"], "rejected creates leave no record")

    check("ready line", t_ready_line)
    check("s3 path-style put/get", t_s3_roundtrip)
    check("training job -> Completed", t_completed_lifecycle)
    check("polls knob", t_polls_knobs)
    check("training job -> Failed", t_failed_lifecycle)
    check("invalid knobs rejected", t_invalid_knob)
    check("stop -> Stopping -> Stopped", t_stop_lifecycle)
    check("stop rejections", t_stop_rejections)
    check("duplicate create -> ResourceInUse", t_duplicate_create)
    check("describe unknown -> ValidationException", t_describe_unknown)
    check("hand-signed awsJson1.1 request", t_signed_raw_request)
    check("concurrent describes", t_concurrent_describes)
    check("stats", t_stats)
    check("automl job -> Completed with BestCandidate", t_automl_completed)
    check("automl job -> Failed", t_automl_failed)
    check("automl stop -> Stopping -> Stopped", t_automl_stop)
    check("automl duplicate -> ResourceInUse", t_automl_duplicate)
    check("transform job -> Completed", t_transform_completed)
    check("transform job -> Failed, knobs from tags", t_transform_failed_and_tags)
    check("transform stop -> Stopping -> Stopped", t_transform_stop)
    check("transform duplicate -> ResourceInUse", t_transform_duplicate)
    check("processing job -> Completed", t_processing_completed)
    check("processing job -> Failed", t_processing_failed)
    check("processing stop -> Stopping -> Stopped", t_processing_stop)
    check("processing duplicate -> ResourceInUse", t_processing_duplicate)
    check("processing logs: stream name, a line per InProgress describe, paging", t_processing_log_progressive)
    check("processing logs: Failed -> rest plus ERROR line", t_processing_log_failed)
    check("processing logs: default lines (Completed, Failed, Stopped, region)", t_processing_log_defaults)
    check("processing logs: GetLogEvents requests recorded", t_processing_log_reads)
    check("processing outputs after Completed (default, custom)", t_processing_outputs)
    check("processing: no outputs after Failed or Stopped", t_processing_no_outputs)
    check("processing: invalid _emulator_outputs rejected", t_processing_invalid_outputs)
    check("model duplicate -> ValidationException", t_model_duplicate)
    check("endpoint config duplicate -> ValidationException", t_endpoint_config_duplicate)
    check("endpoint Creating -> InService", t_endpoint_create)
    check("endpoint knobs: polls, Failed", t_endpoint_knobs)
    check("endpoint duplicate -> ValidationException", t_endpoint_duplicate)
    check("endpoint Updating -> InService on new config", t_endpoint_update)
    check("endpoint update rolled back", t_endpoint_rollback)
    check("endpoint Deleting -> gone", t_endpoint_delete)
    check("invoke: default answer", t_invoke_default)
    check("invoke: FIFO queue per endpoint", t_invoke_queue)
    check("invoke: ModelError", t_invoke_model_error)
    check("invoke: endpoint missing / not in service", t_invoke_rejections)
    check("invoke: request bodies recorded", t_invocations_record)
    check("invoke: concurrent calls", t_invoke_concurrent)
    check("invoke control route errors", t_invoke_control_errors)
    check("list models: pages", t_list_models_pages)
    check("endpoint config ExplainerConfig and EnableExplanations", t_explainer_config)
    check("stats of the other resources", t_other_stats)
    check("control route errors", t_control_errors)
    check("reset", t_reset)


# --------------------------------------------------------------------------
# time-driven jobs, knob defaults, List* filters and paging
# --------------------------------------------------------------------------


def wait_until(fn: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    """Poll ``fn`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def ms(when: Any) -> int:
    """Epoch ms of an aware datetime (what boto3 returns)."""
    return round(when.timestamp() * 1000)


def run_timed_and_list_checks(emu: Launcher) -> None:
    """Its own region, so the lists see only the jobs made here."""
    region = "eu-west-1"
    sm, s3, _, logs = clients(emu.url, region)
    bucket = "emulator-timed"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})

    def training(name: str, **hp: str) -> None:
        sm.create_training_job(
            TrainingJobName=name,
            RoleArn=ROLE,
            AlgorithmSpecification={"TrainingImage": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/algo:1", "TrainingInputMode": "File"},
            OutputDataConfig={"S3OutputPath": f"s3://{bucket}/models/"},
            ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
            StoppingCondition={"MaxRuntimeInSeconds": 3600},
            HyperParameters=hp,
        )

    def transform(name: str, **env: str) -> None:
        sm.create_transform_job(
            TransformJobName=name,
            ModelName="batch-model",
            TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/in/"}}},
            TransformOutput={"S3OutputPath": f"s3://{bucket}/batch/"},
            TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
            Environment=env,
        )

    def processing(name: str, **env: str) -> None:
        sm.create_processing_job(
            ProcessingJobName=name,
            RoleArn=ROLE,
            AppSpecification={"ImageUri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/proc:1", "ContainerEntrypoint": ["python3", "run.py"]},
            ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 10}},
            ProcessingOutputConfig={
                "Outputs": [{"OutputName": "out", "S3Output": {"S3Uri": f"s3://{bucket}/proc/{name}/", "LocalPath": "/opt/ml/processing/out", "S3UploadMode": "EndOfJob"}}]
            },
            Environment=env,
        )

    def automl(name: str, **knobs: str) -> None:
        sm.create_auto_ml_job_v2(
            AutoMLJobName=name,
            AutoMLJobInputDataConfig=[{"ChannelType": "training", "ContentType": "text/csv;header=present", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/automl-in/"}}}],
            OutputDataConfig={"S3OutputPath": f"s3://{bucket}/automl/"},
            AutoMLProblemTypeConfig={"TabularJobConfig": {"TargetAttributeName": "label"}},
            RoleArn=ROLE,
            Tags=[{"Key": k, "Value": v} for k, v in knobs.items()],
        )

    def job_stats(kind: str) -> dict[str, Any]:
        status, body = http(emu.url + "/_emulator/stats")
        expect_eq(status, 200, "stats HTTP status")
        return json.loads(body)[kind]

    def list_calls() -> dict[str, int]:
        return json.loads(http(emu.url + "/_emulator/stats")[1])["list_calls"]

    def trainings(**query: Any) -> list[dict[str, Any]]:
        return sm.list_training_jobs(**query)["TrainingJobSummaries"]

    def names(summaries: list[dict[str, Any]], field: str = "TrainingJobName") -> list[str]:
        return [s[field] for s in summaries]

    def post_defaults(payload: Any) -> tuple[int, Any]:
        status, body = http(emu.url + "/_emulator/defaults", "POST", json.dumps(payload).encode(), {"Content-Type": "application/json"})
        return status, json.loads(body)

    def raw_call(target: str, body: dict) -> tuple[int, Any]:
        req = AWSRequest(
            method="POST",
            url=emu.url + "/",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"SageMaker.{target}"},
        )
        SigV4Auth(Credentials("test", "test"), "sagemaker", region).add_auth(req)
        status, raw_body = http(req.url, "POST", req.body, dict(req.headers.items()))
        return status, json.loads(raw_body)

    def t_timed_training_ends_without_describe() -> None:
        training("timed-train", _emulator_seconds="0.6")
        first = trainings(NameContains="timed-train")
        expect_eq([(s["TrainingJobStatus"], s["SecondaryStatus"]) for s in first], [("InProgress", "Starting")], "InProgress at first")
        created = first[0]["CreationTime"]
        expect_eq(first[0]["LastModifiedTime"], created, "LastModifiedTime starts at CreationTime")
        expect_eq(trainings(StatusEquals="Completed", NameContains="timed-train"), [], "not Completed yet")
        # the sweep: only List calls, never a describe
        done = wait_until(
            lambda: trainings(StatusEquals="Completed", LastModifiedTimeAfter=created),
            "a List with StatusEquals=Completed + LastModifiedTimeAfter to see the job end",
        )
        expect_eq(names(done), ["timed-train"], "the ended job is listed")
        summary = done[0]
        expect_eq(ms(summary["LastModifiedTime"]) - ms(created), 600, "LastModifiedTime = CreationTime + seconds, not when someone looked")
        expect_eq(summary["TrainingEndTime"], summary["LastModifiedTime"], "TrainingEndTime in the summary")
        expect_eq(summary["SecondaryStatus"], "Completed", "secondary status in the summary")
        expect_eq(job_stats("training_jobs")["timed-train"]["describes"], 0, "no describe was needed")
        # "After" is strict
        expect_eq(trainings(StatusEquals="Completed", LastModifiedTimeAfter=summary["LastModifiedTime"]), [], "LastModifiedTimeAfter is strict")
        expect_eq(names(trainings(LastModifiedTimeBefore=summary["LastModifiedTime"], NameContains="timed-train")), [], "LastModifiedTimeBefore is strict")
        d = sm.describe_training_job(TrainingJobName="timed-train")
        expect_eq((d["TrainingJobStatus"], d["SecondaryStatus"]), ("Completed", "Completed"), "describe after the end")
        expect_eq(d["ModelArtifacts"]["S3ModelArtifacts"], f"s3://{bucket}/models/timed-train/output/model.tar.gz", "artifacts of a time-driven job")
        expect_eq((d["TrainingEndTime"], d["LastModifiedTime"]), (summary["TrainingEndTime"], summary["LastModifiedTime"]), "describe agrees with the list")
        transitions = [(t["Status"], ms(t["StartTime"]) - ms(created)) for t in d["SecondaryStatusTransitions"]]
        expect_eq(transitions, [("Starting", 0), ("Downloading", 200), ("Training", 400), ("Completed", 600)], "secondary statuses by time, in equal slices")
        expect_eq(ms(d["TrainingStartTime"]) - ms(created), 200, "TrainingStartTime when Starting ended")
        again = sm.describe_training_job(TrainingJobName="timed-train")
        expect_eq(again["LastModifiedTime"], d["LastModifiedTime"], "describes do not move a finished job")

    def t_timed_describe_does_not_advance() -> None:
        training("timed-slow", _emulator_seconds="30")
        for _ in range(5):
            d = sm.describe_training_job(TrainingJobName="timed-slow")
        expect_eq((d["TrainingJobStatus"], d["SecondaryStatus"]), ("InProgress", "Starting"), "describes do not advance a time-driven job")
        expect_eq(job_stats("training_jobs")["timed-slow"]["describes"], 5, "describes still counted")
        sm.stop_training_job(TrainingJobName="timed-slow")  # leave nothing running

    def t_list_leaves_describe_driven_alone() -> None:
        training("polled-1", _emulator_polls="1")
        for _ in range(3):
            expect_eq(trainings(NameContains="polled-1")[0]["TrainingJobStatus"], "InProgress", "a List shows the current status")
        expect_eq(sm.describe_training_job(TrainingJobName="polled-1")["TrainingJobStatus"], "InProgress", "first describe: still InProgress")
        before = trainings(NameContains="polled-1")[0]
        time.sleep(0.01)  # LastModifiedTime has millisecond resolution
        d = sm.describe_training_job(TrainingJobName="polled-1")
        expect_eq(d["TrainingJobStatus"], "Completed", "second describe ends it")
        after = trainings(NameContains="polled-1")[0]
        expect_eq(after["TrainingJobStatus"], "Completed", "the List sees what the describe did")
        expect(after["LastModifiedTime"] > before["LastModifiedTime"], "LastModifiedTime moved when the status changed")
        expect_eq(after["LastModifiedTime"], d["LastModifiedTime"], "LastModifiedTime in Describe and List")

    def t_timed_failed_transform() -> None:
        transform("timed-batch", _emulator_seconds="0.3", _emulator_outcome="Failed", _emulator_failure_reason="ClientError: bad input")
        failed = wait_until(
            lambda: sm.list_transform_jobs(StatusEquals="Failed")["TransformJobSummaries"],
            "the transform job to fail",
        )
        expect_eq([(s["TransformJobName"], s["FailureReason"]) for s in failed], [("timed-batch", "ClientError: bad input")], "failed transform summary")
        expect_eq(ms(failed[0]["TransformEndTime"]) - ms(failed[0]["CreationTime"]), 300, "TransformEndTime = CreationTime + seconds")
        d = sm.describe_transform_job(TransformJobName="timed-batch")
        expect_eq((d["TransformJobStatus"], d["FailureReason"]), ("Failed", "ClientError: bad input"), "describe of the failed job")

    def t_timed_processing_outputs_and_logs() -> None:
        processing("timed-proc", _emulator_seconds="0.4", _emulator_log="one\ntwo\nthree")
        # nobody calls SageMaker: the outputs and the log still appear once the time is up
        objects = wait_until(
            lambda: s3.list_objects_v2(Bucket=bucket, Prefix="proc/timed-proc/").get("Contents"),
            "the processing outputs in S3",
        )
        expect_eq(sorted(o["Key"] for o in objects), ["proc/timed-proc/metrics.txt", "proc/timed-proc/result.json"], "outputs written")
        expect_eq(job_stats("processing_jobs")["timed-proc"]["describes"], 0, "no describe was needed")
        stream = logs.describe_log_streams(logGroupName="/aws/sagemaker/ProcessingJobs", logStreamNamePrefix="timed-proc/")["logStreams"][0]["logStreamName"]
        events = logs.get_log_events(logGroupName="/aws/sagemaker/ProcessingJobs", logStreamName=stream, startFromHead=True)["events"]
        expect_eq([e["message"] for e in events], ["one", "two", "three"], "all lines by the end")
        d = sm.describe_processing_job(ProcessingJobName="timed-proc")
        created, ended = ms(d["CreationTime"]), ms(d["ProcessingEndTime"])
        expect_eq(ended - created, 400, "ProcessingEndTime = CreationTime + seconds")
        expect_eq([e["timestamp"] - created for e in events], [100, 200, 300], "lines spread over the running time")
        expect_eq(d["LastModifiedTime"], d["ProcessingEndTime"], "LastModifiedTime at the end")
        summary = sm.list_processing_jobs(NameContains="timed-proc")["ProcessingJobSummaries"]
        expect_eq([(s["ProcessingJobStatus"], s["LastModifiedTime"]) for s in summary], [("Completed", d["LastModifiedTime"])], "processing summary")

    def t_timed_processing_log_progresses() -> None:
        processing("timed-proc-log", _emulator_seconds="1.5", _emulator_log="a\nb")
        stream = logs.describe_log_streams(logGroupName="/aws/sagemaker/ProcessingJobs", logStreamNamePrefix="timed-proc-log/")["logStreams"][0]["logStreamName"]

        def messages() -> list[str]:
            return [e["message"] for e in logs.get_log_events(logGroupName="/aws/sagemaker/ProcessingJobs", logStreamName=stream, startFromHead=True)["events"]]

        expect_eq(messages(), [], "no line at the start")
        wait_until(lambda: messages() == ["a"], "the first line alone (due at a third of the time)")
        wait_until(lambda: messages() == ["a", "b"], "the second line (due at two thirds)")
        expect_eq(job_stats("processing_jobs")["timed-proc-log"]["describes"], 0, "no describe was needed")

    def t_timed_automl() -> None:
        automl("timed-automl", _emulator_seconds="0.4")
        wait_until(lambda: sm.list_auto_ml_jobs(StatusEquals="Completed")["AutoMLJobSummaries"], "the AutoML job to complete")
        summary = sm.list_auto_ml_jobs(NameContains="timed-automl")["AutoMLJobSummaries"][0]
        expect_eq((summary["AutoMLJobStatus"], summary["AutoMLJobSecondaryStatus"]), ("Completed", "Completed"), "AutoML summary")
        expect_eq(summary["EndTime"], summary["LastModifiedTime"], "EndTime = LastModifiedTime")
        d = sm.describe_auto_ml_job_v2(AutoMLJobName="timed-automl")
        expect_eq(d["BestCandidate"]["CandidateStatus"], "Completed", "BestCandidate of a time-driven AutoML job")
        expect_eq(d["BestCandidate"]["EndTime"], summary["EndTime"], "BestCandidate.EndTime at the job's end")

    def t_timed_stop() -> None:
        training("timed-stop", _emulator_seconds="30", _emulator_stop_seconds="0.3")
        created = trainings(NameContains="timed-stop")[0]["CreationTime"]
        sm.stop_training_job(TrainingJobName="timed-stop")
        stopping = trainings(NameContains="timed-stop")[0]
        expect_eq(stopping["TrainingJobStatus"], "Stopping", "Stopping after the stop")
        expect(stopping["LastModifiedTime"] >= created, "LastModifiedTime at the stop")
        sm.stop_training_job(TrainingJobName="timed-stop")  # a stop of a Stopping job is accepted
        stopped = wait_until(lambda: trainings(StatusEquals="Stopped", NameContains="timed-stop"), "the job to reach Stopped")
        expect_eq(ms(stopped[0]["LastModifiedTime"]) - ms(stopping["LastModifiedTime"]), 300, "Stopped _emulator_stop_seconds after the stop")
        d = sm.describe_training_job(TrainingJobName="timed-stop")
        expect_eq((d["TrainingJobStatus"], d.get("ModelArtifacts")), ("Stopped", None), "Stopped, no artifacts")
        err = error_of(lambda: sm.stop_training_job(TrainingJobName="timed-stop"))
        expect_eq(err["code"], "ValidationException", "stop of a Stopped job")
        s = job_stats("training_jobs")["timed-stop"]
        expect_eq((s["stops"], s["rejected_stops"], s["status"]), (2, 1, "Stopped"), "stop counters")
        # a job that has ended by the clock cannot be stopped, even if nobody looked
        training("timed-ended", _emulator_seconds="0.2")
        time.sleep(0.3)  # let the clock pass the end without any request in between
        err = error_of(lambda: sm.stop_training_job(TrainingJobName="timed-ended"))
        expect_eq(err["message"], "The request was rejected because the training job is in status Completed.", "stop after the end by the clock")
        # default stop time: 1 s
        processing("timed-proc-stop", _emulator_seconds="30", _emulator_log="x\ny\nz")
        sm.stop_processing_job(ProcessingJobName="timed-proc-stop")
        def stopped() -> dict[str, Any] | None:
            d = sm.describe_processing_job(ProcessingJobName="timed-proc-stop")
            return d if d["ProcessingJobStatus"] == "Stopped" else None

        d = wait_until(stopped, "processing job Stopped after the default 1 s")
        expect_eq(ms(d["ProcessingEndTime"]) - ms(d["CreationTime"]) >= 1000, True, "default _emulator_stop_seconds is 1")
        stream = logs.describe_log_streams(logGroupName="/aws/sagemaker/ProcessingJobs", logStreamNamePrefix="timed-proc-stop/")["logStreams"][0]["logStreamName"]
        events = logs.get_log_events(logGroupName="/aws/sagemaker/ProcessingJobs", logStreamName=stream, startFromHead=True)["events"]
        expect_eq([e["message"] for e in events], ["x", "y", "z", "stopped"], "rest of the log, then 'stopped'")
        expect_eq(s3.list_objects_v2(Bucket=bucket, Prefix="proc/timed-proc-stop/").get("KeyCount"), 0, "no outputs when stopped")

    def t_timed_knob_errors() -> None:
        for hp, what in (
            ({"_emulator_seconds": "0"}, "zero"),
            ({"_emulator_seconds": "-1"}, "negative"),
            ({"_emulator_seconds": "soon"}, "not a number"),
            ({"_emulator_seconds": "nan"}, "NaN"),
            ({"_emulator_seconds": "1", "_emulator_polls": "2"}, "both modes"),
            ({"_emulator_seconds": "1", "_emulator_stop_seconds": "-0.5"}, "negative stop time"),
        ):
            err = error_of(lambda hp=hp: training("timed-bad", **hp))
            expect_eq(err["code"], "ValidationException", f"{what} refused")
        expect("timed-bad" not in job_stats("training_jobs"), "refused creates leave no record")

    def t_list_paging() -> None:
        for i in range(5):
            transform(f"page-{i}", _emulator_polls="5")
            time.sleep(0.002)  # distinct CreationTimes (ms)
        seen, token, pages = [], None, 0
        while True:
            kwargs: dict[str, Any] = {"MaxResults": 2, "NameContains": "page-"}
            if token:
                kwargs["NextToken"] = token
            reply = sm.list_transform_jobs(**kwargs)
            pages += 1
            page = names(reply["TransformJobSummaries"], "TransformJobName")
            expect(len(page) <= 2, "at most MaxResults per page")
            seen += page
            token = reply.get("NextToken")
            if not token:
                break
            if pages == 1:
                transform("page-new", _emulator_polls="5")  # created between pages: newer than the token
        expect_eq(pages, 3, "5 jobs in pages of 2")
        expect_eq(seen, [f"page-{i}" for i in reversed(range(5))], "every job once, newest first (default CreationTime, Descending)")
        paginator = sm.get_paginator("list_transform_jobs")
        ascending = [s["TransformJobName"] for p in paginator.paginate(NameContains="page-", SortOrder="Ascending", PaginationConfig={"PageSize": 2}) for s in p["TransformJobSummaries"]]
        expect_eq(ascending, [f"page-{i}" for i in range(5)] + ["page-new"], "Ascending through boto3's paginator")
        by_name = [s["TransformJobName"] for p in paginator.paginate(NameContains="page-", SortBy="Name", PaginationConfig={"PageSize": 4}) for s in p["TransformJobSummaries"]]
        expect_eq(by_name, sorted([f"page-{i}" for i in range(5)] + ["page-new"], reverse=True), "SortBy Name, Descending")
        default_page = sm.list_transform_jobs()["TransformJobSummaries"]
        expect(len(default_page) <= 10, "default MaxResults is 10")
        sm.stop_transform_job(TransformJobName="page-2")
        by_status = names(sm.list_transform_jobs(NameContains="page-", SortBy="Status", SortOrder="Ascending")["TransformJobSummaries"], "TransformJobName")
        expect_eq(by_status, ["page-0", "page-1", "page-3", "page-4", "page-new", "page-2"], "SortBy Status: InProgress before Stopping, then by CreationTime")

    def t_list_filters() -> None:
        for name in ("filter-alpha", "filter-beta", "other-alpha"):
            training(name, _emulator_polls="0")
        got = names(trainings(NameContains="alpha", SortBy="Name", SortOrder="Ascending"))
        expect_eq(got, ["filter-alpha", "other-alpha"], "NameContains")
        expect_eq(names(trainings(NameContains="ALPHA")), [], "NameContains is case-sensitive")
        sm.describe_training_job(TrainingJobName="filter-beta")  # polls=0: ends on this describe
        expect_eq(names(trainings(StatusEquals="Completed", NameContains="filter-")), ["filter-beta"], "StatusEquals")
        jobs = {s["TrainingJobName"]: s for s in trainings(NameContains="alpha")}
        first, second = sorted(jobs.values(), key=lambda s: s["CreationTime"])
        expect_eq(names(trainings(CreationTimeAfter=first["CreationTime"], NameContains="alpha")), [second["TrainingJobName"]], "CreationTimeAfter is strict")
        expect_eq(names(trainings(CreationTimeBefore=second["CreationTime"], NameContains="alpha")), [first["TrainingJobName"]], "CreationTimeBefore is strict")
        # times as the SDKs send them (epoch seconds) and as ISO 8601 strings
        epoch = first["CreationTime"].timestamp()
        iso = first["CreationTime"].astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for value in (epoch, iso):
            status, body = raw_call("ListTrainingJobs", {"CreationTimeAfter": value, "NameContains": "alpha"})
            expect_eq((status, [s["TrainingJobName"] for s in body["TrainingJobSummaries"]]), (200, [second["TrainingJobName"]]), f"CreationTimeAfter as {value!r}")
        status, body = raw_call("ListTrainingJobs", {"CreationTimeAfter": "yesterday-ish"})
        expect_eq((status, body.get("__type")), (400, "SerializationException"), "unreadable timestamp")

    def t_list_errors() -> None:
        token = sm.list_transform_jobs(MaxResults=1, NameContains="page-")["NextToken"]
        forged = "ListTrainingJobs." + base64.urlsafe_b64encode(b'{"by":"CreationTime","desc":true,"after":["x",1]}').decode()
        for bad, what in ((token, "a ListTransformJobs token"), ("garbage", "garbage"), ("ListTrainingJobs.bm9wZQ==", "a broken token"), (forged, "a forged token")):
            err = error_of(lambda bad=bad: sm.list_training_jobs(NextToken=bad))
            expect_eq(err["code"], "ValidationException", f"ListTrainingJobs refuses {what}")
        err = error_of(lambda: sm.list_transform_jobs(NextToken=token, SortBy="Name"))
        expect_eq(err["code"], "ValidationException", "a token is bound to its sort")
        for query, what in (({"MaxResults": 101}, "MaxResults 101"), ({"StatusEquals": "Done"}, "unknown status"), ({"SortBy": "Size"}, "unknown SortBy")):
            status, body = raw_call("ListTrainingJobs", query)
            expect_eq((status, body.get("__type")), (400, "ValidationException"), what)

    def t_list_calls_counted() -> None:
        before = list_calls()
        expect(all(k in before for k in ("ListTrainingJobs", "ListTransformJobs", "ListProcessingJobs", "ListAutoMLJobs")), "the four job lists are always shown")
        sm.list_training_jobs()
        sm.list_training_jobs(StatusEquals="Failed")
        sm.list_auto_ml_jobs()
        after = list_calls()
        expect_eq(after["ListTrainingJobs"] - before["ListTrainingJobs"], 2, "ListTrainingJobs counted")
        expect_eq(after["ListAutoMLJobs"] - before["ListAutoMLJobs"], 1, "ListAutoMLJobs counted")
        expect_eq(after["ListProcessingJobs"], before["ListProcessingJobs"], "others unchanged")

    def t_defaults() -> None:
        expect_eq(json.loads(http(emu.url + "/_emulator/defaults")[1]), {}, "no defaults at first")
        for payload, what in (
            ([1], "not an object"),
            ({"_emulator_seconds": "soon"}, "bad value"),
            ({"_emulator_secs": "1"}, "unknown knob"),
            ({"_emulator_seconds": None}, "null value"),
            ({"_emulator_seconds": "1", "_emulator_polls": "1"}, "both modes"),
            ({"_emulator_outputs": "[]"}, "bad outputs"),
        ):
            status, body = post_defaults(payload)
            expect_eq(status, 400, f"defaults: {what} refused")
            expect("error" in body, f"defaults: {what} explained")
        status, _ = http(emu.url + "/_emulator/defaults", "POST", b"{not json", {"Content-Type": "application/json"})
        expect_eq(status, 400, "malformed JSON refused")
        status, body = post_defaults({"_emulator_seconds": "0.3", "_emulator_outcome": "Failed"})
        expect_eq((status, body["defaults"]), (200, {"_emulator_seconds": "0.3", "_emulator_outcome": "Failed"}), "defaults set")
        expect_eq(json.loads(http(emu.url + "/_emulator/defaults")[1]), {"_emulator_seconds": "0.3", "_emulator_outcome": "Failed"}, "GET shows them")
        training("dflt-timed")
        training("dflt-own", _emulator_outcome="Completed")
        training("dflt-polled", _emulator_polls="0")
        failed = wait_until(lambda: trainings(StatusEquals="Failed", NameContains="dflt-"), "the defaulted job to fail by time")
        expect_eq(names(failed), ["dflt-timed"], "default seconds and outcome applied")
        wait_until(lambda: trainings(StatusEquals="Completed", NameContains="dflt-own"), "the job's own outcome to win")
        expect_eq(trainings(NameContains="dflt-polled")[0]["TrainingJobStatus"], "InProgress", "a job's own polls keep it describe-driven")
        expect_eq(sm.describe_training_job(TrainingJobName="dflt-polled")["TrainingJobStatus"], "Failed", "... with the default outcome")
        status, body = post_defaults({})
        expect_eq((status, body["defaults"]), (200, {}), "{} clears the defaults")
        training("dflt-none")
        time.sleep(0.4)
        expect_eq(trainings(NameContains="dflt-none")[0]["TrainingJobStatus"], "InProgress", "jobs created after the clear are describe-driven again")

    check("time-driven job ends without describes; List StatusEquals + LastModifiedTimeAfter sees it", t_timed_training_ends_without_describe)
    check("time-driven job: describes do not advance it", t_timed_describe_does_not_advance)
    check("a List never advances a describe-driven job; LastModifiedTime moves on change", t_list_leaves_describe_driven_alone)
    check("time-driven transform job -> Failed", t_timed_failed_transform)
    check("time-driven processing job: outputs and logs without any SageMaker call", t_timed_processing_outputs_and_logs)
    check("time-driven processing job: log lines appear over time", t_timed_processing_log_progresses)
    check("time-driven AutoML job -> Completed with BestCandidate", t_timed_automl)
    check("time-driven stop: Stopping for _emulator_stop_seconds, then Stopped", t_timed_stop)
    check("time-driven knob errors", t_timed_knob_errors)
    check("List paging: MaxResults, NextToken, SortBy, SortOrder", t_list_paging)
    check("List filters: NameContains, StatusEquals, CreationTime After/Before", t_list_filters)
    check("List errors: foreign NextToken, bad MaxResults/StatusEquals/SortBy", t_list_errors)
    check("List calls counted in stats", t_list_calls_counted)
    check("knob defaults", t_defaults)

    def t_reset_clears_defaults() -> None:
        expect_eq(post_defaults({"_emulator_seconds": "5"})[0], 200, "defaults set")
        expect(sum(list_calls().values()) > 0, "list calls counted before the reset")
        expect_eq(http(emu.url + "/_emulator/reset", "POST", b"")[0], 200, "reset")
        expect_eq(json.loads(http(emu.url + "/_emulator/defaults")[1]), {}, "reset clears the defaults")
        expect_eq(set(list_calls().values()), {0}, "reset clears the list call counts")
        expect_eq(sm.list_training_jobs()["TrainingJobSummaries"], [], "no jobs after the reset")

    check("reset clears defaults and list call counts", t_reset_clears_defaults)


def main() -> int:
    emu: Launcher | None = None
    try:
        emu = Launcher("--exit-on-stdin-eof")
    except Exception:
        traceback.print_exc(file=sys.stdout)
        RESULTS.append(("launcher starts", False))
    if emu is not None:
        try:
            run_checks(emu)
            run_timed_and_list_checks(emu)

            def t_stdin_eof() -> None:
                assert emu is not None and emu.proc.stdin is not None
                emu.proc.stdin.close()
                rc = emu.proc.wait(timeout=15)
                expect_eq(rc, 0, "exit code after stdin EOF")
                expect_eq(emu.extra_stdout(), [], "nothing on stdout besides READY")

            check("exits on stdin EOF", t_stdin_eof)
        finally:
            emu.kill()

    def t_sigterm() -> None:
        other = Launcher()
        try:
            time.sleep(0.2)
            expect_eq(http(other.url + "/_emulator/health")[0], 200, "second launcher up")
            other.proc.send_signal(signal.SIGTERM)
            expect_eq(other.proc.wait(timeout=15), 0, "exit code after SIGTERM")
        finally:
            other.kill()

    check("exits on SIGTERM (without stdin flag)", t_sigterm)

    passed = sum(1 for _, ok in RESULTS if ok)
    failed = len(RESULTS) - passed
    print(f"{passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
