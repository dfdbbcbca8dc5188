#!/usr/bin/env python3
"""Local AWS emulator for sagemaker-executor tests.

Runs moto's server (every service moto knows, S3 included) on 127.0.0.1 and
patches moto's SageMaker backend so training jobs behave like real ones:
they start InProgress, advance one step per DescribeTrainingJob, and end in an
outcome the test picks through reserved hyperparameters.  StopTrainingJob and
duplicate-name rejection are added as well.  A small control API lives under
``/_emulator/`` on the same port.

Usage::

    python tests/emulator/launcher.py --port 0 [--exit-on-stdin-eof]

Once the server accepts connections exactly one line is written to stdout:
``EMULATOR_READY port=<port>``.  Everything else (rare) goes to stderr.

Layout of this file:
  * generic lifecycle machinery (``Vocabulary``, ``Plan``, ``Lifecycle``,
    ``Registry``) that knows nothing about any particular SageMaker resource;
  * ``TrainingJobPatch``: the per-resource glue for training jobs;
  * ``ControlPlane``: WSGI middleware serving ``/_emulator/*``;
  * server start-up / shutdown.

Adding another resource (transform, processing, AutoML V2 jobs, endpoints)
means writing one more ``*Patch`` class with its own ``Vocabulary`` and a way
to read knobs (hyperparameters for training jobs; tags or environment for
resources without hyperparameters), then listing it in ``PATCHES``.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

# stdout is reserved for the single READY line; anything moto or its
# dependencies print (moto uses bare print() in a few places) goes to stderr.
_READY_STREAM = sys.stdout
sys.stdout = sys.stderr

from werkzeug.serving import make_server  # noqa: E402

from moto.core.responses import EmptyResult  # noqa: E402
from moto.core.utils import utcnow  # noqa: E402
from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.sagemaker.exceptions import (  # noqa: E402
    ResourceInUseException,
    ValidationError,
)
from moto.sagemaker.models import FakeTrainingJob, SageMakerModelBackend  # noqa: E402
from moto.sagemaker.responses import SageMakerResponse  # noqa: E402

READY_PREFIX = "EMULATOR_READY"
KNOB_PREFIX = "_emulator_"
DEFAULT_POLLS = 2
DEFAULT_STOP_POLLS = 1
DEFAULT_FAILURE_REASON = "AlgorithmError: emulated failure"


# --------------------------------------------------------------------------
# Generic lifecycle machinery
# --------------------------------------------------------------------------


class KnobError(ValueError):
    """A ``_emulator_*`` knob has a value the emulator cannot use."""


class NotStoppable(Exception):
    def __init__(self, status: str):
        super().__init__(status)
        self.status = status


@dataclass(frozen=True)
class Vocabulary:
    """Status names a resource type uses (they differ between resources)."""

    running: str
    progress: tuple[str, ...]  # secondary statuses walked through while running
    succeeded: str
    failed: str
    stopping: str | None = None  # None: the resource cannot be stopped
    stopped: str | None = None


@dataclass(frozen=True)
class Plan:
    """What one resource instance will do, decided at create time."""

    succeed: bool
    polls: int
    stop_polls: int
    failure_reason: str

    @classmethod
    def from_knobs(cls, knobs: Mapping[str, str], vocab: Vocabulary) -> "Plan":
        outcome = knobs.get(KNOB_PREFIX + "outcome", vocab.succeeded)
        if outcome not in (vocab.succeeded, vocab.failed):
            raise KnobError(
                f"{KNOB_PREFIX}outcome must be {vocab.succeeded!r} or "
                f"{vocab.failed!r}, got {outcome!r}"
            )
        return cls(
            succeed=outcome == vocab.succeeded,
            polls=_count_knob(knobs, KNOB_PREFIX + "polls", DEFAULT_POLLS),
            stop_polls=_count_knob(knobs, KNOB_PREFIX + "stop_polls", DEFAULT_STOP_POLLS),
            # An empty reason is treated as "not given": a Failed resource
            # always carries a non-empty reason.
            failure_reason=knobs.get(KNOB_PREFIX + "failure_reason")
            or DEFAULT_FAILURE_REASON,
        )


def _count_knob(knobs: Mapping[str, str], key: str, default: int) -> int:
    raw = knobs.get(key)
    if raw is None:
        return default
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise KnobError(f"{key} must be a non-negative integer, got {raw!r}") from None
    if value < 0:
        raise KnobError(f"{key} must be a non-negative integer, got {raw!r}")
    return value


def knobs_from(mapping: Mapping[str, Any] | None) -> dict[str, str]:
    return {
        str(k): str(v)
        for k, v in (mapping or {}).items()
        if str(k).startswith(KNOB_PREFIX)
    }


class Lifecycle:
    """Describe-driven state machine plus counters for one resource.

    * while running, describe number k (1-based) with k <= polls keeps the
      resource running, secondary status = progress[min(k-1, last)];
      the next describe moves it to its planned outcome;
    * a stop moves a running resource to ``stopping``; it reaches
      ``stopped`` on the (stop_polls+1)-th describe after the stop.
    """

    RUNNING = "running"
    STOPPING = "stopping"
    DONE = "done"

    def __init__(self, vocab: Vocabulary, plan: Plan, creates: int = 1):
        self.vocab = vocab
        self.plan = plan
        self.phase = self.RUNNING
        self.status = vocab.running
        self.secondary = vocab.progress[0] if vocab.progress else vocab.running
        self.failure_reason: str | None = None
        self.creates = creates
        self.duplicate_creates = 0
        self.describes = 0
        self.stops = 0
        self.rejected_stops = 0
        self._describes_since_stop = 0

    @property
    def terminal(self) -> bool:
        return self.phase == self.DONE

    def observe(self) -> bool:
        """Account for one describe; returns True when the state changed."""
        before = (self.status, self.secondary)
        self.describes += 1
        if self.phase == self.RUNNING:
            if self.describes <= self.plan.polls:
                if self.vocab.progress:
                    step = min(self.describes - 1, len(self.vocab.progress) - 1)
                    self.secondary = self.vocab.progress[step]
            elif self.plan.succeed:
                self._finish(self.vocab.succeeded)
            else:
                self.failure_reason = self.plan.failure_reason
                self._finish(self.vocab.failed)
        elif self.phase == self.STOPPING:
            self._describes_since_stop += 1
            if self._describes_since_stop > self.plan.stop_polls:
                assert self.vocab.stopped is not None
                self._finish(self.vocab.stopped)
        return before != (self.status, self.secondary)

    def request_stop(self) -> bool:
        """Account for one stop; True when it changed the state.

        Stopping an already stopping resource is accepted and changes
        nothing; stopping a finished one raises ``NotStoppable``.
        """
        if self.vocab.stopping is None:
            raise NotStoppable(self.status)
        if self.phase == self.DONE:
            self.rejected_stops += 1
            raise NotStoppable(self.status)
        self.stops += 1
        if self.phase == self.STOPPING:
            return False
        self.phase = self.STOPPING
        self.status = self.secondary = self.vocab.stopping
        self._describes_since_stop = 0
        return True

    def _finish(self, status: str) -> None:
        self.phase = self.DONE
        self.status = self.secondary = status

    def stats(self) -> dict[str, Any]:
        return {
            "creates": self.creates,
            "duplicate_creates": self.duplicate_creates,
            "describes": self.describes,
            "stops": self.stops,
            "rejected_stops": self.rejected_stops,
            "status": self.status,
        }


Key = tuple[str, str, str]  # (account id, region, resource name)


class Registry:
    """All emulator bookkeeping, guarded by one lock.

    Patched backend methods hold ``lock`` for their whole body, so
    check-then-act sequences on moto's dictionaries are atomic as well.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._kinds: dict[str, dict[Key, Lifecycle]] = {}

    def add_kind(self, kind: str) -> None:
        with self.lock:
            self._kinds.setdefault(kind, {})

    def get(self, kind: str, key: Key) -> Lifecycle | None:
        with self.lock:
            return self._kinds[kind].get(key)

    def put(self, kind: str, key: Key, lifecycle: Lifecycle) -> None:
        with self.lock:
            self._kinds[kind][key] = lifecycle

    def clear(self) -> None:
        with self.lock:
            for records in self._kinds.values():
                records.clear()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            out: dict[str, dict[str, Any]] = {}
            for kind, records in self._kinds.items():
                by_name: dict[str, Any] = {}
                for (account, region, name), lifecycle in records.items():
                    # Plain name normally; qualified only if the same name
                    # exists in several accounts/regions.
                    label = name if name not in by_name else f"{account}:{region}:{name}"
                    by_name[label] = lifecycle.stats()
                out[kind] = by_name
            return out


REGISTRY = Registry()


def _bind(original: Callable[..., Any], args: tuple, kwargs: dict) -> inspect.BoundArguments:
    bound = inspect.signature(original).bind(*args, **kwargs)
    bound.apply_defaults()
    return bound


# --------------------------------------------------------------------------
# Training jobs
# --------------------------------------------------------------------------


class TrainingJobPatch:
    KIND = "training_jobs"
    VOCAB = Vocabulary(
        running="InProgress",
        progress=("Starting", "Downloading", "Training"),
        succeeded="Completed",
        failed="Failed",
        stopping="Stopping",
        stopped="Stopped",
    )
    MESSAGES = {
        "Starting": "Launching requested ML instances",
        "Downloading": "Downloading input data",
        "Training": "Training image download completed. Training in progress.",
        "Completed": "Training job completed",
        "Failed": "Training job failed",
        "Stopping": "Stopping the training job",
        "Stopped": "Training job stopped",
    }

    _installed = False

    @classmethod
    def install(cls, registry: Registry) -> None:
        if cls._installed:
            return
        cls._installed = True
        registry.add_kind(cls.KIND)
        original_create = SageMakerModelBackend.create_training_job
        original_describe = SageMakerModelBackend.describe_training_job

        def create_training_job(*args: Any, **kwargs: Any) -> FakeTrainingJob:
            bound = _bind(original_create, args, kwargs)
            backend: SageMakerModelBackend = bound.arguments["self"]
            name = bound.arguments["training_job_name"]
            key = (backend.account_id, backend.region_name, name)
            with registry.lock:
                existing = backend.training_jobs.get(name)
                if existing is not None:
                    lifecycle = registry.get(cls.KIND, key)
                    if lifecycle is None:  # job predates the patch; keep stats honest
                        lifecycle = Lifecycle(cls.VOCAB, Plan.from_knobs({}, cls.VOCAB), creates=0)
                        registry.put(cls.KIND, key, lifecycle)
                    lifecycle.duplicate_creates += 1
                    raise ResourceInUseException(
                        "Training job names must be unique within an AWS account and "
                        f"region, and a training job with this name already exists "
                        f"({existing.arn})"
                    )
                try:
                    plan = Plan.from_knobs(knobs_from(bound.arguments["hyper_parameters"]), cls.VOCAB)
                except KnobError as err:
                    raise ValidationError(str(err)) from None
                output = bound.arguments["output_data_config"] or {}
                if not output.get("S3OutputPath"):
                    # stock moto dies with a KeyError (HTML 500) here
                    raise ValidationError("OutputDataConfig.S3OutputPath is required.")
                # stock moto crashes without AlgorithmSpecification and
                # overwrites its MetricDefinitions; give it a scratch copy and
                # echo back what the caller sent.
                sent_algorithm = bound.arguments["algorithm_specification"]
                bound.arguments["algorithm_specification"] = copy.deepcopy(sent_algorithm or {})
                job = original_create(*bound.args, **bound.kwargs)
                job.algorithm_specification = sent_algorithm
                lifecycle = Lifecycle(cls.VOCAB, plan)
                registry.put(cls.KIND, key, lifecycle)
                cls._reset_job(job, lifecycle)
                return job

        def describe_training_job(*args: Any, **kwargs: Any) -> dict[str, Any]:
            bound = _bind(original_describe, args, kwargs)
            backend: SageMakerModelBackend = bound.arguments["self"]
            name = bound.arguments["training_job_name"]
            with registry.lock:
                job = backend.training_jobs.get(name)
                if job is not None:
                    lifecycle = registry.get(cls.KIND, (backend.account_id, backend.region_name, name))
                    if lifecycle is not None and lifecycle.observe():
                        cls._apply(job, lifecycle)
                # unknown names: moto's own ValidationException "Could not find training job ..."
                return original_describe(*bound.args, **bound.kwargs)

        def stop_training_job(backend: SageMakerModelBackend, training_job_name: str) -> None:
            with registry.lock:
                job = backend.training_jobs.get(training_job_name)
                if job is None:
                    raise ValidationError("Requested resource not found.")
                key = (backend.account_id, backend.region_name, training_job_name)
                lifecycle = registry.get(cls.KIND, key)
                if lifecycle is None:
                    raise ValidationError(
                        "The request was rejected because the training job is in "
                        f"status {job.training_job_status}."
                    )
                try:
                    changed = lifecycle.request_stop()
                except NotStoppable as err:
                    raise ValidationError(
                        "The request was rejected because the training job is in "
                        f"status {err.status}."
                    ) from None
                if changed:
                    cls._apply(job, lifecycle)

        def stop_training_job_response(self: SageMakerResponse) -> EmptyResult:
            self.sagemaker_backend.stop_training_job(self._get_param("TrainingJobName"))
            return EmptyResult()

        SageMakerModelBackend.create_training_job = create_training_job  # type: ignore[method-assign]
        SageMakerModelBackend.describe_training_job = describe_training_job  # type: ignore[method-assign]
        SageMakerModelBackend.stop_training_job = stop_training_job  # type: ignore[attr-defined]
        # moto dispatches on method names found on the response class
        stop_training_job_response.__name__ = "stop_training_job"
        SageMakerResponse.stop_training_job = stop_training_job_response  # type: ignore[attr-defined]

    # moto renders DescribeTrainingJob from the FakeTrainingJob's attributes
    # (snake_case -> PascalCase, None values dropped), so the state is
    # written straight onto those attributes.

    @classmethod
    def _reset_job(cls, job: FakeTrainingJob, lifecycle: Lifecycle) -> None:
        now = utcnow()
        job.training_job_status = lifecycle.status
        job.secondary_status = lifecycle.secondary
        job.creation_time = job.last_modified_time = now
        job.training_start_time = None
        job.training_end_time = None
        job.model_artifacts = None
        job.final_metric_data_list = None
        job.failure_reason = None
        job.secondary_status_transitions = [
            {
                "Status": lifecycle.secondary,
                "StartTime": now,
                "StatusMessage": cls.MESSAGES[lifecycle.secondary],
            }
        ]

    @classmethod
    def _apply(cls, job: FakeTrainingJob, lifecycle: Lifecycle) -> None:
        now = utcnow()
        job.last_modified_time = now
        job.training_job_status = lifecycle.status
        if job.secondary_status != lifecycle.secondary:
            transitions = job.secondary_status_transitions
            if transitions and "EndTime" not in transitions[-1]:
                transitions[-1]["EndTime"] = now
            transitions.append(
                {
                    "Status": lifecycle.secondary,
                    "StartTime": now,
                    "StatusMessage": cls.MESSAGES.get(lifecycle.secondary, lifecycle.secondary),
                }
            )
            job.secondary_status = lifecycle.secondary
        if job.training_start_time is None and lifecycle.secondary != "Starting":
            job.training_start_time = now
        if lifecycle.terminal:
            job.training_end_time = now
            if job.secondary_status_transitions:
                job.secondary_status_transitions[-1].setdefault("EndTime", now)
            if lifecycle.status == cls.VOCAB.succeeded:
                prefix = job.output_data_config["S3OutputPath"].rstrip("/")
                job.model_artifacts = {
                    "S3ModelArtifacts": f"{prefix}/{job.training_job_name}/output/model.tar.gz"
                }
                job.final_metric_data_list = [
                    {"MetricName": "train:progress", "Value": 100.0, "Timestamp": now}
                ]
            elif lifecycle.status == cls.VOCAB.failed:
                job.failure_reason = lifecycle.failure_reason


class SageMakerErrorBodyPatch:
    """Spell the error message key like SageMaker does.

    moto's JSON serializer writes ``{"__type": ..., "Message": ...}``; the
    real service answers ``{"__type": ..., "message": ...}``.  SDKs accept
    both, but tests that look at raw bodies should see the real spelling.
    Applies to every SageMaker error, moto's own included.
    """

    _installed = False

    @classmethod
    def install(cls, registry: Registry) -> None:
        if cls._installed:
            return
        cls._installed = True
        original = SageMakerResponse.serialized

        def serialized(self: SageMakerResponse, action_result: Any) -> Any:
            status, headers, body = original(self, action_result)
            if isinstance(getattr(action_result, "result", None), Exception):
                try:
                    payload = json.loads(body)
                except (TypeError, ValueError):
                    return status, headers, body
                if isinstance(payload, dict) and "Message" in payload and "message" not in payload:
                    payload["message"] = payload.pop("Message")
                    body = json.dumps(payload)
            return status, headers, body

        SageMakerResponse.serialized = serialized  # type: ignore[method-assign]


PATCHES = [SageMakerErrorBodyPatch, TrainingJobPatch]


def install_patches(registry: Registry = REGISTRY) -> None:
    for patch in PATCHES:
        patch.install(registry)


# --------------------------------------------------------------------------
# Control API (/_emulator/*)
# --------------------------------------------------------------------------


def reset_everything(registry: Registry = REGISTRY) -> None:
    """moto's own POST /moto-api/reset mechanism plus the emulator state."""
    from moto.moto_api._internal.models import moto_api_backend

    with registry.lock:
        moto_api_backend.reset()
        registry.clear()


class ControlPlane:
    """WSGI middleware: ``/_emulator/*`` here, everything else to moto."""

    PREFIX = "/_emulator"

    def __init__(self, app: Callable[..., Iterable[bytes]], registry: Registry):
        self.app = app
        self.registry = registry

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or ""
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if path == self.PREFIX or path.startswith(self.PREFIX + "/"):
            return self._control(path[len(self.PREFIX):].strip("/"), method, start_response)
        if method == "POST" and path.rstrip("/") == "/moto-api/reset":
            # someone used moto's reset directly: drop our bookkeeping too
            with self.registry.lock:
                body = list(self.app(environ, start_response))
                self.registry.clear()
            return body
        return self.app(environ, start_response)

    def _control(self, route: str, method: str, start_response: Callable[..., Any]) -> Iterable[bytes]:
        routes: dict[str, tuple[str, Callable[[], Any]]] = {
            "stats": ("GET", self.registry.snapshot),
            "reset": ("POST", self._reset),
            "health": ("GET", lambda: {"status": "ok"}),
        }
        if route not in routes:
            return self._json(start_response, 404, {"error": f"unknown emulator route {route!r}", "routes": sorted(routes)})
        wanted, handler = routes[route]
        if method != wanted:
            return self._json(start_response, 405, {"error": f"use {wanted} for /_emulator/{route}"}, [("Allow", wanted)])
        return self._json(start_response, 200, handler())

    def _reset(self) -> dict[str, str]:
        reset_everything(self.registry)
        return {"status": "ok"}

    @staticmethod
    def _json(start_response: Callable[..., Any], status: int, payload: Any, extra: list[tuple[str, str]] | None = None) -> Iterable[bytes]:
        reasons = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}
        body = json.dumps(payload, sort_keys=True).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        start_response(f"{status} {reasons[status]}", headers + (extra or []))
        return [body]


# --------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------


class QuietRequestHandler(MotoRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def build_app(registry: Registry = REGISTRY) -> ControlPlane:
    install_patches(registry)
    return ControlPlane(DomainDispatcherApplication(create_backend_app), registry)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind, 0 = any free port (default 0)")
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="shut down when stdin reaches EOF (parent closed the pipe or died)",
    )
    args = parser.parse_args(argv)

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server(args.host, args.port, build_app(), threaded=True, request_handler=QuietRequestHandler)
    port = server.server_port
    # moto builds some self-referencing URLs from MOTO_PORT
    os.environ["MOTO_PORT"] = str(port)

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    if args.exit_on_stdin_eof:

        def watch_stdin() -> None:
            stream = sys.stdin.buffer if sys.stdin is not None else None
            try:
                while stream is not None and stream.read1(65536):
                    pass
            except (OSError, ValueError):
                pass
            stop.set()

        threading.Thread(target=watch_stdin, name="stdin-eof", daemon=True).start()

    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="server", daemon=True).start()
    # The socket is already listening (bound in make_server), so requests are
    # accepted from here on.
    _READY_STREAM.write(f"{READY_PREFIX} port={port}\n")
    _READY_STREAM.flush()

    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
