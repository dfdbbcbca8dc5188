#!/usr/bin/env python3
"""Self-check for tests/emulator/launcher.py.

Starts the launcher on a free port (``--port 0 --exit-on-stdin-eof``), drives
it with boto3 and a hand-signed request, then checks that it shuts down when
its stdin closes and on SIGTERM.  Prints one line ``N passed, N failed`` at
the end and exits non-zero if anything failed.

    /work/main/.venv/bin/python tests/emulator/selftest.py
"""

from __future__ import annotations

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


def clients(url: str) -> tuple[Any, Any]:
    session = boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name=REGION
    )
    cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"})
    return (
        session.client("sagemaker", endpoint_url=url, config=cfg),
        session.client("s3", endpoint_url=url, config=cfg),
    )


class RawCapture:
    """Keeps the last raw HTTP response a boto3 client received."""

    def __init__(self, client: Any):
        self.status: int | None = None
        self.body: bytes = b""
        client.meta.events.register("after-call", self._after_call)
        client.meta.events.register("after-call-error", self._after_call)

    def _after_call(self, http_response: Any = None, **_: Any) -> None:
        if http_response is not None:
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
    sm, s3 = clients(emu.url)
    raw = RawCapture(sm)

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
        status, body = http(emu.url + "/_emulator/reset", "POST", b"")
        expect_eq((status, json.loads(body)), (200, {"status": "ok"}), "reset response")
        expect_eq(stats(), {}, "stats cleared")
        expect_eq(error_of(lambda: describe("job-ok"))["code"], "ValidationException", "moto data cleared")
        expect_eq(s3.list_buckets()["Buckets"], [], "S3 cleared too")
        create("job-ok")  # same name is free again, fresh lifecycle
        expect_eq(describe("job-ok")["SecondaryStatus"], "Starting", "fresh lifecycle after reset")
        expect_eq(stats()["job-ok"]["describes"], 1, "fresh counters after reset")
        # moto's own reset route also drops the emulator bookkeeping
        status, _ = http(emu.url + "/moto-api/reset", "POST", b"")
        expect_eq(status, 200, "moto-api reset")
        expect_eq(stats(), {}, "stats cleared by /moto-api/reset")

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
    check("control route errors", t_control_errors)
    check("reset", t_reset)


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
