#!/usr/bin/env python3
"""Drives the service through a client that openapi-python-client generated from
``openapi/openapi.json``: submit -> status -> list for training, ``/execute``, models and
endpoints. Every reply goes through the generated parsers (which raise on a missing required key
or a wrong type) and an undocumented status raises, so a pass means the document describes what
the service answers on these paths. The endpoint is also asked for an answer (infer).

Started by ``run.py`` with ``PYTHONPATH`` holding the generated package ``executor_client`` and
``CONFORMANCE_SERVICE_URL``, ``CONFORMANCE_EMULATOR_URL`` and ``CONFORMANCE_BUCKET`` (a bucket
holding ``in/train.csv``) set.

Operations are found by their generated module name (method + path) in any tag folder, and
request bodies are built with the body class the generated function declares, so the test does
not depend on the names of the document's schemas.
"""

from __future__ import annotations

import importlib
import io
import inspect
import os
import pkgutil
import sys
import time
import traceback
import typing
import uuid
from http import HTTPStatus
from typing import Any, Callable

import executor_client.api as api_pkg
from executor_client import Client
from executor_client.types import File

SERVICE = os.environ["CONFORMANCE_SERVICE_URL"]
EMULATOR = os.environ["CONFORMANCE_EMULATOR_URL"]
BUCKET = os.environ["CONFORMANCE_BUCKET"]
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/xgboost:1"
DEADLINE_SECS = 90

client = Client(base_url=SERVICE, raise_on_unexpected_status=True, timeout=30.0)


def operation(module_name: str):
    """The generated module of one operation, e.g. ``post_api_service_v1_models_register``."""
    for tag in pkgutil.iter_modules(api_pkg.__path__):
        try:
            return importlib.import_module(f"{api_pkg.__name__}.{tag.name}.{module_name}")
        except ModuleNotFoundError:
            continue
    raise AssertionError(f"the generated client has no operation {module_name}")


def call(module_name: str, *args: Any, body: dict | bytes | None = None, expect: int,
         **kwargs: Any) -> Any:
    """Calls an operation; returns its parsed reply as wire-named JSON (dicts and lists). A
    ``bytes`` body is sent as a file (the model routes take any bytes)."""
    op = operation(module_name)
    if isinstance(body, bytes):
        kwargs["body"] = File(payload=io.BytesIO(body), mime_type="application/octet-stream")
    elif body is not None:
        body_type = inspect.signature(op.sync_detailed).parameters["body"].annotation
        if isinstance(body_type, str):
            body_type = eval(body_type, vars(op))  # noqa: S307 (a generated annotation)
        kwargs["body"] = build(body_type, body)
    reply = op.sync_detailed(*args, client=client, **kwargs)
    assert reply.status_code == HTTPStatus(expect), (
        f"{module_name}: {reply.status_code} {reply.content[:500]!r}")
    return wire(reply.parsed)


def wire(parsed: Any) -> Any:
    if isinstance(parsed, list):
        return [wire(p) for p in parsed]
    return parsed.to_dict() if hasattr(parsed, "to_dict") else parsed


def build(body_type: Any, body: dict) -> Any:
    """The generated body object for ``body``. For a body that is one of several schemas (a
    union), the schema that knows every key of ``body`` (nothing left in
    ``additional_properties``)."""
    members = typing.get_args(body_type) or (body_type,)
    for member in members:
        if not hasattr(member, "from_dict"):
            continue
        try:
            candidate = member.from_dict(body)
        except (KeyError, TypeError, ValueError):
            continue
        if not getattr(candidate, "additional_properties", None):
            return candidate
    raise AssertionError(f"no body schema of {body_type} knows every key of {sorted(body)}")


def until(what: str, probe: Callable[[], Any], done: Callable[[Any], bool]) -> Any:
    deadline = time.monotonic() + DEADLINE_SECS
    while True:
        value = probe()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}; last: {value}"
        time.sleep(0.2)


def run_status(run_id: str) -> dict:
    return call("get_status_id", run_id, expect=200)


def training_round_trips() -> None:
    accepted = call(
        "post_api_service_v1_pipelines_training",
        body={
            "RoleArn": ROLE, "Bucket": BUCKET, "S3Prefix": "conformance", "TrainingImage": IMAGE,
            "inline_csv": "label,x\n1,0.5\n0,0.1\n",
            "HyperParameters": {"_emulator_polls": "1", "max_depth": "5"},
        },
        project="p1", adapter_instance="a1", expect=202,
    )
    run_id = accepted["id"]
    done = until("the training run", lambda: run_status(run_id), lambda s: s["terminal"])
    assert done["state"] == "Done", done
    job = call("get_api_service_v1_pipelines_training_id_get", run_id, expect=200)
    assert job["status"] == "Completed", job
    jobs = call("get_api_service_v1_pipelines_training_list", project="p1", expect=200)
    # A job record's id is the run id or, as the backend's records have it, the job name (with
    # the run id beside it).
    assert any(run_id in (j.get("id"), j.get("runId")) for j in jobs), jobs


def execute_round_trips() -> None:
    accepted = call(
        "post_execute",
        body={
            "bucket": BUCKET, "project_id": "proj-7", "name": "conformance-script",
            "version": "1",
            "credentials": {"endpoint": EMULATOR, "access_key": "test", "secret_key": "test"},
            "input_artifacts": "in/train.csv", "command": "python3 train.py",
            "storage": "s3", "environment": {"EPOCHS": "2"},
            "configs": {
                "bucket": "", "aws_access_key_id": "", "aws_secret_access_key": "",
                "region_name": "", "role": ROLE, "py_version": "3.11",
                "container": "123456789012.dkr.ecr.us-east-1.amazonaws.com/sklearn:1",
                "instance_count": "1", "instance_type": "ml.m5.large", "source": "",
            },
        },
        expect=201,
    )
    task = accepted["task_id"]
    status = until(
        "the script job",
        lambda: call("get_execute_task_id_get_status", task, expect=200),
        lambda s: s["task_status"] not in ("WAITING", "RUNNING"),
    )
    assert status["task_status"] == "COMPLETED", status
    tasks = call("get_execute", expect=200)
    assert task in [t["task_id"] for t in tasks], tasks


def models_and_endpoints_round_trip() -> None:
    suffix = uuid.uuid4().hex[:8]
    model, config, endpoint = f"cm-{suffix}", f"cc-{suffix}", f"ce-{suffix}"
    call(
        "post_api_service_v1_models_register",
        body={"ModelName": model, "ExecutionRoleArn": ROLE, "Containers": [{
            "Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/model.tar.gz"}]},
        expect=201,
    )
    got = call("get_api_service_v1_models_id", model, expect=200)
    assert got["name"] == model, got
    models = call("get_api_service_v1_models_list", expect=200)
    assert model in [m.get("name") for m in models], models

    call(
        "post_api_service_v1_endpoints_register",
        body={"EndpointConfigName": config, "ModelName": model, "InitialInstanceCount": 1,
              "InstanceType": "ml.m5.large"},
        expect=201,
    )
    deploy = call(
        "post_api_service_v1_endpoints_id_deploy_model", endpoint,
        body={"EndpointConfigName": config, "Tags": {"_emulator_polls": "1"}},
        expect=202,
    )
    done = until("the deployment run", lambda: run_status(deploy["id"]), lambda s: s["terminal"])
    assert done["state"] == "Done", done
    view = call("get_api_service_v1_endpoints_id", endpoint, expect=200)
    assert view["status"] == "InService", view
    endpoints = call("get_api_service_v1_endpoints_list", expect=200)
    assert endpoint in [e.get("name") for e in endpoints], endpoints
    # The emulator's endpoint answers its default prediction.
    answer = call("post_api_service_v1_endpoints_id_infer", endpoint, body=b"1,2\n", expect=200)
    assert answer == {"predictions": [0]}, answer


def main() -> int:
    passed = failed = 0
    for test in (training_round_trips, execute_round_trips, models_and_endpoints_round_trip):
        try:
            test()
            print(f"client: {test.__name__} ok", flush=True)
            passed += 1
        except Exception:  # noqa: BLE001 (report every failing path, then fail)
            print(f"client: {test.__name__} FAILED", flush=True)
            traceback.print_exc()
            failed += 1
    print(f"client: {passed} of {passed + failed} round trips ok")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
