#!/usr/bin/env python3
"""Local AWS emulator for sagemaker-executor tests.

Runs moto's server (every service moto knows, S3 included) on 127.0.0.1 and
patches moto's SageMaker backend so that SageMaker resources behave like real
ones:

* training, transform, processing and AutoML V2 jobs start InProgress,
  advance one step per Describe call (or, with ``_emulator_seconds``, by the
  clock: every read agrees with it, Describe and List alike), and end in an
  outcome the test picks through reserved ``_emulator_*`` knobs (defaults
  for them: ``POST /_emulator/defaults``); Stop calls and duplicate-name
  rejection work as in SageMaker;
* their List calls filter (status, name, creation and last-modified times),
  sort and page (stable tokens) as SageMaker does;
* processing jobs write their log to CloudWatch Logs
  (``/aws/sagemaker/ProcessingJobs``), a line per describe (or over time),
  and on success upload output objects to S3, through moto's own logs and S3
  backends;
* models and endpoint configs reject duplicate names instead of overwriting;
  ListModels pages; endpoint configs keep their ``ExplainerConfig``;
* endpoints go Creating -> InService (or Failed), Updating -> InService (or
  rolled back), Deleting -> gone, one step per DescribeEndpoint;
* InvokeEndpoint answers from a per-endpoint queue the test fills, and
  records what it received; ``EnableExplanations`` works only on endpoints
  whose config has an ``ExplainerConfig``.

A small control API lives under ``/_emulator/`` on the same port.

Usage::

    python tests/emulator/launcher.py --port 0 [--exit-on-stdin-eof]

Once the server accepts connections exactly one line is written to stdout:
``EMULATOR_READY port=<port>``.  Everything else (rare) goes to stderr.

Layout of this file:
  * generic machinery that knows nothing about any particular SageMaker
    resource: ``Vocabulary``, ``Plan``, ``Lifecycle``, ``Registry``, plus
    ``JobPatch`` (glue shared by all job types) and ``DefinitionPatch``
    (glue shared by resources without a status);
  * one ``*Patch`` class per resource: training, transform, processing and
    AutoML V2 jobs, models, endpoint configs, endpoints, InvokeEndpoint;
  * ``ControlPlane``: WSGI middleware serving ``/_emulator/*``;
  * server start-up / shutdown.
"""

from __future__ import annotations

import argparse
import base64
import calendar
import copy
import datetime as dt
import inspect
import io
import json
import logging
import math
import os
import signal
import sys
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import unquote

# stdout is reserved for the single READY line; anything moto or its
# dependencies print (moto uses bare print() in a few places) goes to stderr.
_READY_STREAM = sys.stdout
sys.stdout = sys.stderr

from werkzeug.serving import make_server  # noqa: E402
from werkzeug.wrappers import Request  # noqa: E402

from moto.core.common_types import TYPE_RESPONSE  # noqa: E402
from moto.core.responses import ActionResult, EmptyResult  # noqa: E402
from moto.core.utils import unix_time, unix_time_millis, utcnow  # noqa: E402
from moto.logs.models import logs_backends  # noqa: E402
from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.sagemaker.exceptions import (  # noqa: E402
    ResourceInUseException,
    ResourceNotFound,
    ValidationError,
)
from moto.sagemaker.models import (  # noqa: E402
    FakeEndpoint,
    FakeEndpointConfig,
    SageMakerModelBackend,
    sagemaker_backends,
)
from moto.sagemaker.responses import SageMakerResponse  # noqa: E402
from moto.s3.exceptions import MissingBucket  # noqa: E402
from moto.s3.models import s3_backends  # noqa: E402
from moto.sagemakerruntime.responses import SageMakerRuntimeResponse  # noqa: E402
from moto.utilities.utils import get_partition  # noqa: E402

READY_PREFIX = "EMULATOR_READY"
KNOB_PREFIX = "_emulator_"
DEFAULT_POLLS = 2
DEFAULT_STOP_POLLS = 1
DEFAULT_STOP_SECONDS = 1.0
DEFAULT_FAILURE_REASON = "AlgorithmError: emulated failure"
_EPOCH = dt.datetime(1970, 1, 1)


# --------------------------------------------------------------------------
# Time: every time the emulator shows is a whole millisecond (what moto's
# serializer writes anyway), so a time a client read and sends back compares
# equal to the stored one.  Naive UTC datetimes, like moto's own.
# --------------------------------------------------------------------------


def ms_of(when: dt.datetime) -> int:
    """Epoch milliseconds of a naive UTC (or aware) datetime."""
    return calendar.timegm(when.utctimetuple()) * 1000 + when.microsecond // 1000


def dt_of(ms: int) -> dt.datetime:
    """Naive UTC datetime of epoch milliseconds."""
    return _EPOCH + dt.timedelta(milliseconds=ms)


def now_ms() -> int:
    return ms_of(utcnow())


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
    """What one resource instance will do, decided when the operation starts.

    ``seconds`` set: the resource is *time-driven* (it ends ``seconds`` after
    it started, whoever looks); None: it is *describe-driven* (``polls``).
    """

    succeed: bool
    polls: int
    stop_polls: int
    failure_reason: str
    seconds: float | None = None
    stop_seconds: float = DEFAULT_STOP_SECONDS

    @property
    def timed(self) -> bool:
        return self.seconds is not None

    @classmethod
    def from_knobs(
        cls,
        knobs: Mapping[str, str],
        vocab: Vocabulary,
        *,
        outcome_key: str = "outcome",
        default_reason: str = DEFAULT_FAILURE_REASON,
        defaults: Mapping[str, str] | None = None,
        timed: bool = True,
    ) -> "Plan":
        """``knobs``: the resource's own; ``defaults``: the ones set with
        ``POST /_emulator/defaults`` (a knob of the resource wins).
        ``timed=False``: the resource has no time-driven mode (endpoints)."""
        own = knobs
        knobs = {**(defaults or {}), **own}
        key = KNOB_PREFIX + outcome_key
        outcome = knobs.get(key, vocab.succeeded)
        if outcome not in (vocab.succeeded, vocab.failed):
            raise KnobError(f"{key} must be {vocab.succeeded!r} or {vocab.failed!r}, got {outcome!r}")
        seconds_key, polls_key = SECONDS_KNOB, KNOB_PREFIX + "polls"
        if timed and seconds_key in own and polls_key in own:
            raise KnobError(f"set {seconds_key} (time-driven) or {polls_key} (describe-driven), not both")
        # The resource's own choice of mode wins over a default of the other mode.
        time_driven = timed and (seconds_key in own or (polls_key not in own and seconds_key in knobs))
        return cls(
            succeed=outcome == vocab.succeeded,
            polls=_count_knob(knobs, polls_key, DEFAULT_POLLS),
            stop_polls=_count_knob(knobs, KNOB_PREFIX + "stop_polls", DEFAULT_STOP_POLLS),
            # An empty reason is treated as "not given": a failure always
            # carries a non-empty reason.
            failure_reason=knobs.get(KNOB_PREFIX + "failure_reason") or default_reason,
            seconds=_seconds_knob(knobs, seconds_key, None, allow_zero=False) if time_driven else None,
            stop_seconds=_seconds_knob(knobs, KNOB_PREFIX + "stop_seconds", DEFAULT_STOP_SECONDS, allow_zero=True),
        )


SECONDS_KNOB = KNOB_PREFIX + "seconds"


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


def _seconds_knob(knobs: Mapping[str, str], key: str, default: Any, *, allow_zero: bool) -> Any:
    raw = knobs.get(key)
    if raw is None:
        return default
    what = "a number of seconds >= 0" if allow_zero else "a number of seconds > 0"
    try:
        value = float(str(raw).strip())
    except ValueError:
        raise KnobError(f"{key} must be {what}, got {raw!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise KnobError(f"{key} must be {what}, got {raw!r}")
    return value


def knobs_from(mapping: Mapping[str, Any] | None) -> dict[str, str]:
    """The ``_emulator_*`` entries of a string map (HyperParameters, Environment)."""
    return {
        str(k): str(v)
        for k, v in (mapping or {}).items()
        if str(k).startswith(KNOB_PREFIX)
    }


def knobs_from_tags(tags: Iterable[Mapping[str, Any]] | None) -> dict[str, str]:
    """The ``_emulator_*`` entries of a SageMaker tag list; a later tag wins."""
    return knobs_from({tag.get("Key"): tag.get("Value", "") for tag in tags or [] if isinstance(tag, Mapping)})


class Lifecycle:
    """State machine plus counters for one resource.

    Describe-driven (``plan.timed`` False):

    * while running, describe number k (1-based) with k <= polls keeps the
      resource running, secondary status = progress[min(k-1, last)];
      the next describe moves it to its planned outcome;
    * a stop moves a running resource to ``stopping``; it reaches
      ``stopped`` on the (stop_polls+1)-th describe after the stop.

    Time-driven (``plan.timed``): describes change nothing.  The resource is
    running from ``start_ms`` until ``start_ms + seconds``, walking through
    ``progress`` in equal slices of that time, then shows its outcome; a stop
    at ``t`` shows ``stopping`` until ``t + stop_seconds``, then ``stopped``.
    The owner moves it along with ``next_due`` / ``step`` (each transition at
    its own time, in order).
    """

    RUNNING = "running"
    STOPPING = "stopping"
    DONE = "done"

    def __init__(self, vocab: Vocabulary, plan: Plan, creates: int = 1, knobs: Mapping[str, str] | None = None):
        self.vocab = vocab
        self.plan = plan
        self.knobs = dict(knobs or {})  # effective knobs (defaults included)
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
        self.start_ms = 0  # time-driven: when it started running (set by the owner)
        self.stop_ms: int | None = None  # time-driven: when the stop was accepted
        self._progress_step = 0

    @property
    def terminal(self) -> bool:
        return self.phase == self.DONE

    @property
    def timed(self) -> bool:
        return self.plan.timed

    def observe(self) -> bool:
        """Account for one describe; returns True when the state changed."""
        before = (self.status, self.secondary)
        self.describes += 1
        if self.timed:
            return False
        if self.phase == self.RUNNING:
            if self.describes <= self.plan.polls:
                if self.vocab.progress:
                    step = min(self.describes - 1, len(self.vocab.progress) - 1)
                    self.secondary = self.vocab.progress[step]
            else:
                self._outcome()
        elif self.phase == self.STOPPING:
            self._describes_since_stop += 1
            if self._describes_since_stop > self.plan.stop_polls:
                assert self.vocab.stopped is not None
                self._finish(self.vocab.stopped)
        return before != (self.status, self.secondary)

    def next_due(self) -> int | None:
        """Time-driven: epoch ms of the next transition (None: no more)."""
        if not self.timed or self.phase == self.DONE:
            return None
        if self.phase == self.STOPPING:
            assert self.stop_ms is not None
            return self.stop_ms + round(self.plan.stop_seconds * 1000)
        progress_at = self._progress_at()
        return progress_at if progress_at is not None else self._end_ms()

    def step(self) -> None:
        """Time-driven: make the transition ``next_due`` announced."""
        if self.phase == self.STOPPING:
            assert self.vocab.stopped is not None
            self._finish(self.vocab.stopped)
        elif self._progress_at() is not None:
            self._progress_step += 1
            self.secondary = self.vocab.progress[self._progress_step]
        else:
            self._outcome()

    def _end_ms(self) -> int:
        assert self.plan.seconds is not None
        return self.start_ms + round(self.plan.seconds * 1000)

    def _progress_at(self) -> int | None:
        """When the next secondary status starts: ``progress`` shares the
        running time in equal slices (None: no secondary status left)."""
        steps = len(self.vocab.progress)
        if self._progress_step + 1 >= steps:
            return None
        span = self._end_ms() - self.start_ms
        at = self.start_ms + span * (self._progress_step + 1) // steps
        return at if at < self._end_ms() else None

    def request_stop(self, at_ms: int = 0) -> bool:
        """Account for one stop (``at_ms``: when, for a time-driven resource);
        True when it changed the state.

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
        self.stop_ms = at_ms
        return True

    def _outcome(self) -> None:
        if self.plan.succeed:
            self._finish(self.vocab.succeeded)
        else:
            self.failure_reason = self.plan.failure_reason
            self._finish(self.vocab.failed)

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

    * per-resource records (anything with ``stats()``), by kind and ``Key``;
    * "books": other state a patch keeps (anything with ``clear()``).

    Patched backend methods hold ``lock`` for their whole body, so
    check-then-act sequences on moto's dictionaries are atomic as well.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._kinds: dict[str, dict[Key, Any]] = {}
        self._books: dict[str, Any] = {}

    def add_kind(self, kind: str) -> None:
        with self.lock:
            self._kinds.setdefault(kind, {})

    def get(self, kind: str, key: Key) -> Any:
        with self.lock:
            return self._kinds[kind].get(key)

    def put(self, kind: str, key: Key, record: Any) -> Any:
        with self.lock:
            self._kinds[kind][key] = record
            return record

    def book(self, name: str, factory: Callable[[], Any]) -> Any:
        with self.lock:
            if name not in self._books:
                self._books[name] = factory()
            return self._books[name]

    def clear(self) -> None:
        with self.lock:
            for records in self._kinds.values():
                records.clear()
            for book in self._books.values():
                book.clear()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            out: dict[str, dict[str, Any]] = {}
            for kind, records in self._kinds.items():
                by_name: dict[str, Any] = {}
                for (account, region, name), record in records.items():
                    # Plain name normally; qualified only if the same name
                    # exists in several accounts/regions.
                    label = name if name not in by_name else f"{account}:{region}:{name}"
                    by_name[label] = record.stats()
                out[kind] = by_name
            return out


REGISTRY = Registry()


def _bind(original: Callable[..., Any], args: tuple, kwargs: dict) -> inspect.BoundArguments:
    bound = inspect.signature(original).bind(*args, **kwargs)
    bound.apply_defaults()
    return bound


def _key(backend: SageMakerModelBackend, name: str) -> Key:
    return (backend.account_id, backend.region_name, name)


def _wrap_backend(method: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Replace ``SageMakerModelBackend.<method>`` with ``make(original)``."""
    setattr(SageMakerModelBackend, method, make(getattr(SageMakerModelBackend, method, None)))


def _add_response_action(action: str, handler: Callable[[SageMakerResponse], Any]) -> None:
    """Serve a SageMaker action (snake_case name) from ``handler``.

    moto dispatches on method names found on the response class.
    """
    handler.__name__ = action
    setattr(SageMakerResponse, action, handler)


TIMED_BOOK = "timed_jobs"  # (patch, account, region, name) of time-driven jobs not yet terminal
DEFAULTS_BOOK = "knob_defaults"  # knob -> value, set with POST /_emulator/defaults
LIST_CALLS_BOOK = "list_calls"  # SageMaker List* operation -> requests received


def knob_defaults(registry: Registry) -> dict[str, str]:
    return registry.book(DEFAULTS_BOOK, dict)


def advance_timed_jobs(registry: Registry, now: int | None = None) -> None:
    """Bring every time-driven job up to ``now`` (epoch ms; default: the
    clock): each transition due by then is made, at its own time, with all
    its side effects (end times, artifacts, logs, outputs).  Run before every
    request the emulator serves, so whatever a client reads (Describe, List,
    logs, S3, stats) agrees with the clock.  Only jobs with something due
    are touched (the book keeps each job's next due time)."""
    with registry.lock:
        timed: dict[tuple[Any, str, str, str], int] = registry.book(TIMED_BOOK, dict)
        if not timed:
            return
        at = now_ms() if now is None else now
        for patch, account, region, name in [entry for entry, due in timed.items() if due <= at]:
            patch.catch_up((account, region, name), at)


class JobPatch:
    """Glue between one SageMaker job type and ``Lifecycle``.

    A subclass names moto's pieces (the backend dict holding the jobs, the
    create/describe method names, the attributes holding status and end
    time) and fills in the hooks; ``install`` then

    * wraps create: a duplicate name raises ``ResourceInUse`` and leaves the
      existing job untouched; knobs (the job's own over the defaults) become
      a ``Plan`` (a bad knob, also one ``check_knobs`` refuses, raises
      ``ValidationException``); the job starts in ``VOCAB.running``;
    * wraps describe: each call advances a describe-driven job by one step
      (a time-driven one is brought up to the clock), then runs
      ``on_describe``;
    * installs Stop (backend method and response handler);
    * replaces List (SageMaker's filters, sorting and stable paging).

    moto renders Describe from the job object's attributes (snake_case ->
    PascalCase, None values dropped), so the state is written straight onto
    those attributes.
    """

    KIND: str  # key under /_emulator/stats
    LABEL: str  # "training job", used in error messages
    VOCAB: Vocabulary
    STORE: str  # backend attribute: dict of jobs by name
    NAME_ARG: str  # job name parameter of moto's backend methods
    CREATE: str  # moto backend method names
    DESCRIBE: str
    STOP: str  # backend method and response action installed for Stop
    STOP_PARAM: str  # request field naming the job in the Stop call
    STATUS_ATTR: str  # job object attribute holding the status
    END_TIME_ATTR: str  # ... and the end time
    NAME_ATTR: str  # ... and the name
    LIST: str  # response action replaced by the List call ("list_training_jobs")
    LIST_OP: str  # ... and its operation name ("ListTrainingJobs")
    LIST_RESULT: str  # list field of the List answer ("TrainingJobSummaries")
    # summary field -> job object attribute (None values are left out)
    SUMMARY: tuple[tuple[str, str], ...]
    # StatusEquals values the service model allows besides the vocabulary's
    EXTRA_STATUSES: tuple[str, ...] = ()
    # create arguments moto's backend method does not take; they are set on
    # the job object as attributes (so Describe echoes them)
    EXTRA_CREATE_ARGS: tuple[str, ...] = ()

    _installed = False
    _registry: Registry

    # ---- hooks -----------------------------------------------------------

    @classmethod
    def knobs(cls, args: Mapping[str, Any]) -> dict[str, str]:
        """The knobs found in the create arguments."""
        raise NotImplementedError

    @classmethod
    def check_knobs(cls, knobs: Mapping[str, str]) -> None:
        """Validate resource-specific knobs; raise ``KnobError`` (the create
        then fails with ``ValidationException``)."""

    @classmethod
    def prepare(cls, args: dict[str, Any]) -> Callable[[Any], None] | None:
        """Validate or adjust the create arguments before moto sees them.

        May return a function that is run on the new job object (to undo
        what moto changed)."""
        return None

    @classmethod
    def on_create(cls, job: Any, lifecycle: Lifecycle, now: Any) -> None:
        """Resource-specific fields of a freshly created job."""

    @classmethod
    def on_change(cls, job: Any, lifecycle: Lifecycle, now: Any) -> None:
        """Resource-specific fields after any state change."""

    @classmethod
    def on_describe(cls, job: Any, lifecycle: Lifecycle, now: Any) -> None:
        """Side effects of every describe, after the job has advanced (also
        when its status did not change)."""

    @classmethod
    def on_time(cls, job: Any, lifecycle: Lifecycle, until_ms: int) -> None:
        """Time-driven jobs: side effects due by ``until_ms`` in the current
        state (called before each transition, at its time, and at the end of
        every catch-up)."""

    @classmethod
    def next_effect(cls, job: Any, lifecycle: Lifecycle) -> int | None:
        """Time-driven jobs: when ``on_time`` next has something to do (epoch
        ms), None: nothing before the next transition."""
        return None

    @classmethod
    def on_finish(cls, job: Any, lifecycle: Lifecycle, now: Any) -> None:
        """Resource-specific fields once the job is terminal."""

    @classmethod
    def not_found(cls, backend: SageMakerModelBackend, name: str) -> Exception:
        """Error for Stop on an unknown name."""
        return ValidationError("Requested resource not found.")

    @classmethod
    def describe_result(cls, result: Any) -> Any:
        """Adjust what moto's describe returned."""
        return result

    # ---- machinery -------------------------------------------------------

    @classmethod
    def install(cls, registry: Registry) -> None:
        if cls._installed:
            return
        cls._installed = True
        cls._registry = registry
        registry.add_kind(cls.KIND)

        def wrap_create(original: Callable[..., Any]) -> Callable[..., Any]:
            def create(*args: Any, **kwargs: Any) -> Any:
                extras = {k: kwargs.pop(k) for k in cls.EXTRA_CREATE_ARGS if k in kwargs}
                bound = _bind(original, args, kwargs)
                backend: SageMakerModelBackend = bound.arguments["self"]
                name = bound.arguments[cls.NAME_ARG]
                key = _key(backend, name)
                jobs = getattr(backend, cls.STORE)
                with registry.lock:
                    existing = jobs.get(name)
                    if existing is not None:
                        lifecycle = registry.get(cls.KIND, key)
                        if lifecycle is None:  # job predates the patch; keep stats honest
                            lifecycle = registry.put(cls.KIND, key, Lifecycle(cls.VOCAB, Plan.from_knobs({}, cls.VOCAB), creates=0))
                        lifecycle.duplicate_creates += 1
                        label = cls.LABEL[0].upper() + cls.LABEL[1:]
                        article = "an" if cls.LABEL[0] in "aeiouAEIOU" else "a"
                        raise ResourceInUseException(
                            f"{label} names must be unique within an AWS account and region, "
                            f"and {article} {cls.LABEL} with this name already exists ({existing.arn})"
                        )
                    defaults = knob_defaults(registry)
                    try:
                        own = cls.knobs({**bound.arguments, **extras})
                        plan = Plan.from_knobs(own, cls.VOCAB, defaults=defaults)
                        knobs = {**defaults, **own}
                        cls.check_knobs(knobs)
                    except KnobError as err:
                        raise ValidationError(str(err)) from None
                    fix_up = cls.prepare(bound.arguments)
                    result = original(*bound.args, **bound.kwargs)
                    job = jobs[name]
                    for attr, value in extras.items():
                        setattr(job, attr, value)
                    if fix_up is not None:
                        fix_up(job)
                    lifecycle = registry.put(cls.KIND, key, Lifecycle(cls.VOCAB, plan, knobs=knobs))
                    cls._reset(job, lifecycle)
                    if plan.timed:
                        cls._track(key, job, lifecycle)
                    return result

            return create

        def wrap_describe(original: Callable[..., Any]) -> Callable[..., Any]:
            def describe(*args: Any, **kwargs: Any) -> Any:
                bound = _bind(original, args, kwargs)
                backend: SageMakerModelBackend = bound.arguments["self"]
                name = bound.arguments[cls.NAME_ARG]
                with registry.lock:
                    job = getattr(backend, cls.STORE).get(name)
                    if job is not None:
                        key = _key(backend, name)
                        lifecycle = registry.get(cls.KIND, key)
                        if lifecycle is not None:
                            if lifecycle.timed:
                                cls.catch_up(key, now_ms())
                            if lifecycle.observe():
                                cls._apply(job, lifecycle, _now())
                            cls.on_describe(job, lifecycle, _now())
                    # unknown names: moto's own error
                    return cls.describe_result(original(*bound.args, **bound.kwargs))

            return describe

        def stop(backend: SageMakerModelBackend, name: str) -> None:
            with registry.lock:
                job = getattr(backend, cls.STORE).get(name)
                if job is None:
                    raise cls.not_found(backend, name)
                key = _key(backend, name)
                lifecycle = registry.get(cls.KIND, key)
                if lifecycle is None:
                    raise ValidationError(cls._rejected(getattr(job, cls.STATUS_ATTR)))
                at = now_ms()
                if lifecycle.timed:
                    cls.catch_up(key, at)  # a job that has ended by now is not stoppable
                try:
                    changed = lifecycle.request_stop(at)
                except NotStoppable as err:
                    raise ValidationError(cls._rejected(err.status)) from None
                if changed:
                    cls._apply(job, lifecycle, dt_of(at))
                    if lifecycle.timed:
                        cls._track(key, job, lifecycle)

        def stop_response(self: SageMakerResponse) -> EmptyResult:
            getattr(self.sagemaker_backend, cls.STOP)(self._get_param(cls.STOP_PARAM))
            return EmptyResult()

        def list_response(self: SageMakerResponse) -> ActionResult:
            return ActionResult(cls._list(self, registry))

        _wrap_backend(cls.CREATE, wrap_create)
        _wrap_backend(cls.DESCRIBE, wrap_describe)
        setattr(SageMakerModelBackend, cls.STOP, stop)
        _add_response_action(cls.STOP, stop_response)
        _add_response_action(cls.LIST, list_response)

    @classmethod
    def catch_up(cls, key: Key, until_ms: int) -> None:
        """Make every transition of a time-driven job due by ``until_ms``,
        each at its own time (and the side effects due in between, see
        ``on_time``).  Caller holds the lock."""
        account, region, name = key
        job = getattr(sagemaker_backends[account][region], cls.STORE).get(name)
        lifecycle = cls._registry.get(cls.KIND, key)
        if job is None or lifecycle is None or not lifecycle.timed:
            cls._registry.book(TIMED_BOOK, dict).pop((cls, *key), None)
            return
        while (at := lifecycle.next_due()) is not None and at <= until_ms:
            cls.on_time(job, lifecycle, at)
            lifecycle.step()
            cls._apply(job, lifecycle, dt_of(at))
        if not lifecycle.terminal:
            cls.on_time(job, lifecycle, until_ms)
        cls._track(key, job, lifecycle)

    @classmethod
    def _track(cls, key: Key, job: Any, lifecycle: Lifecycle) -> None:
        """Note when a time-driven job next has something due (or forget it)."""
        timed = cls._registry.book(TIMED_BOOK, dict)
        due = [t for t in (lifecycle.next_due(), cls.next_effect(job, lifecycle)) if t is not None]
        if due:
            timed[(cls, *key)] = min(due)
        else:
            timed.pop((cls, *key), None)

    @classmethod
    def _rejected(cls, status: str) -> str:
        return f"The request was rejected because the {cls.LABEL} is in status {status}."

    @classmethod
    def _reset(cls, job: Any, lifecycle: Lifecycle) -> None:
        now = _now()
        job.creation_time = job.last_modified_time = now
        lifecycle.start_ms = ms_of(now)
        setattr(job, cls.STATUS_ATTR, lifecycle.status)
        setattr(job, cls.END_TIME_ATTR, None)
        job.failure_reason = None
        cls.on_create(job, lifecycle, now)

    @classmethod
    def _apply(cls, job: Any, lifecycle: Lifecycle, now: dt.datetime) -> None:
        """Show the lifecycle's state on the job; ``now``: when it changed."""
        job.last_modified_time = now
        setattr(job, cls.STATUS_ATTR, lifecycle.status)
        cls.on_change(job, lifecycle, now)
        if lifecycle.terminal:
            setattr(job, cls.END_TIME_ATTR, now)
            if lifecycle.status == cls.VOCAB.failed:
                job.failure_reason = lifecycle.failure_reason
            cls.on_finish(job, lifecycle, now)

    # ---- List ------------------------------------------------------------

    SORT_BY = ("Name", "CreationTime", "Status")

    @classmethod
    def _statuses(cls) -> tuple[str, ...]:
        vocab = cls.VOCAB
        names = (vocab.running, vocab.succeeded, vocab.failed, vocab.stopping, vocab.stopped, *cls.EXTRA_STATUSES)
        return tuple(n for n in names if n)

    @classmethod
    def _list(cls, response: SageMakerResponse, registry: Registry) -> dict[str, Any]:
        """One page of the List call, as SageMaker answers it (see ``ListQuery``)."""
        query = ListQuery.parse(response, cls.LIST_OP, cls._statuses(), cls.SORT_BY)
        backend = response.sagemaker_backend
        with registry.lock:
            advance_timed_jobs(registry)  # statuses as of the clock
            jobs = list(getattr(backend, cls.STORE).values())
            rows = []
            for job in jobs:
                row = ListRow(
                    name=getattr(job, cls.NAME_ATTR),
                    status=str(getattr(job, cls.STATUS_ATTR)),
                    created=ms_of(job.creation_time),
                    modified=ms_of(job.last_modified_time),
                )
                if query.matches(row):
                    rows.append((row, job))
            page, token = query.page(rows)
            summaries = [cls._summary(job) for job in page]
        result: dict[str, Any] = {cls.LIST_RESULT: summaries}
        if token is not None:
            result["NextToken"] = token
        return result

    @classmethod
    def _summary(cls, job: Any) -> dict[str, Any]:
        summary = {field: getattr(job, attr, None) for field, attr in cls.SUMMARY}
        return {k: v for k, v in summary.items() if v is not None and v != ""}


def _now() -> dt.datetime:
    """The clock, to the millisecond."""
    return dt_of(now_ms())


@dataclass(frozen=True)
class ListRow:
    """What the List filters and sorting look at, for one job."""

    name: str
    status: str
    created: int  # epoch ms
    modified: int  # epoch ms

    def sort_key(self, sort_by: str) -> tuple[Any, ...]:
        # names are unique within a list (one account and region), so every
        # key is unique and paging by "after this key" is exact
        if sort_by == "Name":
            return (self.name,)
        if sort_by == "Status":
            return (self.status, self.created, self.name)
        return (self.created, self.name)


class ListQuery:
    """The request of a SageMaker List call: filters, sort order and page.

    ``NextToken`` is ``<operation>.<base64 JSON>`` holding the sort and the
    key of the last item returned; the next page starts strictly after that
    key.  So paging is stable: items created, changed or deleted between
    pages never make another item show twice or go missing (an item whose
    own sort key changes, e.g. its status when sorted by status, may).
    """

    def __init__(self, op: str, max_results: int, sort_by: str, descending: bool, after: tuple[Any, ...] | None, filters: dict[str, Any]):
        self.op = op
        self.max_results = max_results
        self.sort_by = sort_by
        self.descending = descending
        self.after = after
        self.filters = filters

    @classmethod
    def parse(cls, response: SageMakerResponse, op: str, statuses: tuple[str, ...], sort_by_values: tuple[str, ...], default_page: int = 10) -> ListQuery:
        get = response._get_param
        max_results = get("MaxResults")
        if max_results is None:
            max_results = default_page
        if isinstance(max_results, bool) or not isinstance(max_results, int) or not 1 <= max_results <= 100:
            raise ValidationError(
                f"1 validation error detected: Value '{max_results}' at 'maxResults' failed to satisfy constraint: "
                "Member must have value between 1 and 100"
            )
        sort_by = get("SortBy") or "CreationTime"
        _enum(sort_by, "sortBy", sort_by_values)
        sort_order = get("SortOrder") or "Descending"
        _enum(sort_order, "sortOrder", ("Ascending", "Descending"))
        status = get("StatusEquals")
        if status is not None:
            _enum(status, "statusEquals", statuses)
        name_contains = get("NameContains")
        if name_contains is not None and not isinstance(name_contains, str):
            raise ValidationError("NameContains must be a string")
        filters = {
            "status": status,
            "name_contains": name_contains or None,
            **{
                field: _time_param(get(param), param)
                for field, param in (
                    ("created_after", "CreationTimeAfter"),
                    ("created_before", "CreationTimeBefore"),
                    ("modified_after", "LastModifiedTimeAfter"),
                    ("modified_before", "LastModifiedTimeBefore"),
                )
            },
        }
        after = cls._decode_token(get("NextToken"), op, sort_by, sort_order)
        return cls(op, max_results, sort_by, sort_order == "Descending", after, filters)

    def matches(self, row: ListRow) -> bool:
        f = self.filters
        return (
            (f["status"] is None or row.status == f["status"])
            and (f["name_contains"] is None or f["name_contains"] in row.name)
            and (f["created_after"] is None or row.created > f["created_after"])
            and (f["created_before"] is None or row.created < f["created_before"])
            and (f["modified_after"] is None or row.modified > f["modified_after"])
            and (f["modified_before"] is None or row.modified < f["modified_before"])
        )

    def page(self, rows: list[tuple[ListRow, Any]]) -> tuple[list[Any], str | None]:
        """(items of this page, NextToken or None) from the matching rows."""
        keyed = sorted(((row.sort_key(self.sort_by), item) for row, item in rows), key=lambda r: r[0], reverse=self.descending)
        if self.after is not None:
            after = self.after
            keyed = [(k, item) for k, item in keyed if (k < after if self.descending else k > after)]
        page = keyed[: self.max_results]
        token = None
        if len(keyed) > self.max_results:
            token = self._encode_token(page[-1][0])
        return [item for _, item in page], token

    def _encode_token(self, key: tuple[Any, ...]) -> str:
        payload = json.dumps({"by": self.sort_by, "desc": self.descending, "after": list(key)}, separators=(",", ":"))
        return f"{self.op}.{base64.urlsafe_b64encode(payload.encode()).decode()}"

    @staticmethod
    def _decode_token(token: Any, op: str, sort_by: str, sort_order: str) -> tuple[Any, ...] | None:
        if token is None or token == "":
            return None
        invalid = ValidationError(f"Invalid pagination token: {token}")
        if not isinstance(token, str) or not token.startswith(op + "."):
            raise invalid
        try:
            payload = json.loads(base64.urlsafe_b64decode(token[len(op) + 1:].encode()))
            after = tuple(payload["after"])
            same_sort = payload["by"] == sort_by and payload["desc"] == (sort_order == "Descending")
        except (ValueError, KeyError, TypeError):
            raise invalid from None
        shape = [type(part) for part in ListRow("", "", 0, 0).sort_key(sort_by)]
        if not same_sort or [type(part) for part in after] != shape:
            raise invalid
        return after


def _enum(value: Any, field: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValidationError(
            f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: "
            f"Member must satisfy enum value set: [{', '.join(allowed)}]"
        )


def _time_param(value: Any, field: str) -> int | None:
    """A request timestamp as epoch ms: epoch seconds (number or numeric
    string, as the AWS SDKs send them), an ISO 8601 string, or a datetime
    (moto's request parser may have converted it already)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return ms_of(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isfinite(value):
            return round(value * 1000)
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            try:
                parsed = dt.datetime.fromisoformat(text)
            except ValueError:
                pass
            else:
                return _time_param(parsed, field)  # naive: UTC
        else:
            if math.isfinite(number):
                return round(number * 1000)
    raise ValidationError(f"{field} must be a timestamp (epoch seconds or ISO 8601), got {value!r}")


class DefinitionRecord:
    """Counters for a resource that has no status of its own."""

    def __init__(self) -> None:
        self.creates = 0
        self.duplicate_creates = 0
        self.describes = 0
        self.deletes = 0
        self.exists = False

    def stats(self) -> dict[str, Any]:
        return {
            "creates": self.creates,
            "duplicate_creates": self.duplicate_creates,
            "describes": self.describes,
            "deletes": self.deletes,
            "exists": self.exists,
        }


class DefinitionPatch:
    """Glue for resources without a lifecycle (models, endpoint configs).

    moto silently overwrites on a reused name; SageMaker answers
    ``ValidationException`` "Cannot create already existing <label> ..." and
    keeps the existing resource.  Creates, describes and deletes are counted.
    """

    KIND: str
    LABEL: str  # "model", used in error messages
    STORE: str  # backend attribute: dict of resources by name
    NAME_ARG: str  # name parameter of moto's backend methods
    NAME_PARAM: str  # ... and of the requests
    CREATE: str  # moto backend (and response) method names
    DESCRIBE: str
    DELETE: str
    ARN_ATTR = "arn"

    _installed = False

    @classmethod
    def install(cls, registry: Registry) -> None:
        if cls._installed:
            return
        cls._installed = True
        registry.add_kind(cls.KIND)

        def record_for(key: Key) -> DefinitionRecord:
            return registry.get(cls.KIND, key) or registry.put(cls.KIND, key, DefinitionRecord())

        def wrap_create(original: Callable[..., Any]) -> Callable[..., Any]:
            def create(*args: Any, **kwargs: Any) -> Any:
                bound = _bind(original, args, kwargs)
                backend = bound.arguments["self"]
                name = bound.arguments[cls.NAME_ARG]
                with registry.lock:
                    existing = getattr(backend, cls.STORE).get(name)
                    if existing is not None:
                        record_for(_key(backend, name)).duplicate_creates += 1
                        arn = getattr(existing, cls.ARN_ATTR)
                        raise ValidationError(f'Cannot create already existing {cls.LABEL} "{arn}".')
                    result = original(*bound.args, **bound.kwargs)
                    record = record_for(_key(backend, name))
                    record.creates += 1
                    record.exists = True
                    return result

            return create

        # Describes are counted where the request arrives: moto's own
        # CreateEndpoint calls the backend's describe_endpoint_config.
        original_describe = getattr(SageMakerResponse, cls.DESCRIBE)

        def describe_response(self: SageMakerResponse) -> Any:
            backend = self.sagemaker_backend
            name = self._get_param(cls.NAME_PARAM)
            with registry.lock:
                record = registry.get(cls.KIND, _key(backend, name))
                if record is not None and name in getattr(backend, cls.STORE):
                    record.describes += 1
            return original_describe(self)

        def wrap_delete(original: Callable[..., Any]) -> Callable[..., Any]:
            def delete(*args: Any, **kwargs: Any) -> Any:
                bound = _bind(original, args, kwargs)
                backend = bound.arguments["self"]
                name = bound.arguments[cls.NAME_ARG]
                with registry.lock:
                    result = original(*bound.args, **bound.kwargs)  # unknown name: moto's error
                    record = record_for(_key(backend, name))
                    record.deletes += 1
                    record.exists = False
                    return result

            return delete

        _wrap_backend(cls.CREATE, wrap_create)
        _add_response_action(cls.DESCRIBE, describe_response)
        _wrap_backend(cls.DELETE, wrap_delete)


# --------------------------------------------------------------------------
# Training jobs
# --------------------------------------------------------------------------


class TrainingJobPatch(JobPatch):
    """Knobs: HyperParameters.  Stock moto is Completed at once, has no
    StopTrainingJob, overwrites duplicates, requires AlgorithmSpecification
    and injects fake MetricDefinitions into it."""

    KIND = "training_jobs"
    LABEL = "training job"
    VOCAB = Vocabulary(
        running="InProgress",
        progress=("Starting", "Downloading", "Training"),
        succeeded="Completed",
        failed="Failed",
        stopping="Stopping",
        stopped="Stopped",
    )
    STORE = "training_jobs"
    NAME_ARG = "training_job_name"
    CREATE = "create_training_job"
    DESCRIBE = "describe_training_job"
    STOP = "stop_training_job"
    STOP_PARAM = "TrainingJobName"
    STATUS_ATTR = "training_job_status"
    END_TIME_ATTR = "training_end_time"
    NAME_ATTR = "training_job_name"
    LIST = "list_training_jobs"
    LIST_OP = "ListTrainingJobs"
    LIST_RESULT = "TrainingJobSummaries"
    SUMMARY = (
        ("TrainingJobName", "training_job_name"),
        ("TrainingJobArn", "arn"),
        ("CreationTime", "creation_time"),
        ("TrainingEndTime", "training_end_time"),
        ("LastModifiedTime", "last_modified_time"),
        ("TrainingJobStatus", "training_job_status"),
        ("SecondaryStatus", "secondary_status"),
    )
    EXTRA_STATUSES = ("Deleting",)  # in the service model; never reached here
    MESSAGES = {
        "Starting": "Launching requested ML instances",
        "Downloading": "Downloading input data",
        "Training": "Training image download completed. Training in progress.",
        "Completed": "Training job completed",
        "Failed": "Training job failed",
        "Stopping": "Stopping the training job",
        "Stopped": "Training job stopped",
    }

    @classmethod
    def knobs(cls, args: Mapping[str, Any]) -> dict[str, str]:
        return knobs_from(args["hyper_parameters"])

    @classmethod
    def prepare(cls, args: dict[str, Any]) -> Callable[[Any], None]:
        output = args["output_data_config"] or {}
        if not output.get("S3OutputPath"):
            # stock moto dies with a KeyError (HTML 500) here
            raise ValidationError("OutputDataConfig.S3OutputPath is required.")
        # stock moto crashes without AlgorithmSpecification and overwrites
        # its MetricDefinitions; give it a scratch copy and echo back what
        # the caller sent.
        sent_algorithm = args["algorithm_specification"]
        args["algorithm_specification"] = copy.deepcopy(sent_algorithm or {})

        def echo_algorithm(job: Any) -> None:
            job.algorithm_specification = sent_algorithm

        return echo_algorithm

    @classmethod
    def on_create(cls, job: Any, lifecycle: Lifecycle, now: Any) -> None:
        job.secondary_status = lifecycle.secondary
        job.training_start_time = None
        job.model_artifacts = None
        job.final_metric_data_list = None
        job.secondary_status_transitions = [
            {"Status": lifecycle.secondary, "StartTime": now, "StatusMessage": cls.MESSAGES[lifecycle.secondary]}
        ]

    @classmethod
    def on_change(cls, job: Any, lifecycle: Lifecycle, now: Any) -> None:
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

    @classmethod
    def on_finish(cls, job: Any, lifecycle: Lifecycle, now: Any) -> None:
        if job.secondary_status_transitions:
            job.secondary_status_transitions[-1].setdefault("EndTime", now)
        if lifecycle.status == cls.VOCAB.succeeded:
            prefix = job.output_data_config["S3OutputPath"].rstrip("/")
            job.model_artifacts = {"S3ModelArtifacts": f"{prefix}/{job.training_job_name}/output/model.tar.gz"}
            job.final_metric_data_list = [{"MetricName": "train:progress", "Value": 100.0, "Timestamp": now}]


# --------------------------------------------------------------------------
# Transform jobs
# --------------------------------------------------------------------------


class TransformJobPatch(JobPatch):
    """Knobs: Environment, then Tags (a tag wins).  Stock moto is Completed
    at once, has no StopTransformJob and overwrites duplicates."""

    KIND = "transform_jobs"
    LABEL = "transform job"
    VOCAB = Vocabulary(
        running="InProgress",
        progress=(),
        succeeded="Completed",
        failed="Failed",
        stopping="Stopping",
        stopped="Stopped",
    )
    STORE = "transform_jobs"
    NAME_ARG = "transform_job_name"
    CREATE = "create_transform_job"
    DESCRIBE = "describe_transform_job"
    STOP = "stop_transform_job"
    STOP_PARAM = "TransformJobName"
    STATUS_ATTR = "transform_job_status"
    END_TIME_ATTR = "transform_end_time"
    NAME_ATTR = "transform_job_name"
    LIST = "list_transform_jobs"
    LIST_OP = "ListTransformJobs"
    LIST_RESULT = "TransformJobSummaries"
    SUMMARY = (
        ("TransformJobName", "transform_job_name"),
        ("TransformJobArn", "arn"),
        ("CreationTime", "creation_time"),
        ("TransformEndTime", "transform_end_time"),
        ("LastModifiedTime", "last_modified_time"),
        ("TransformJobStatus", "transform_job_status"),
        ("FailureReason", "failure_reason"),
    )

    @classmethod
    def knobs(cls, args: Mapping[str, Any]) -> dict[str, str]:
        return {**knobs_from(args["environment"]), **knobs_from_tags(args["tags"])}

    @classmethod
    def on_create(cls, job: Any, lifecycle: Lifecycle, now: Any) -> None:
        job.transform_start_time = now
        # moto fills these with "" (SageMaker leaves them out)
        job.labeling_job_arn = None
        job.auto_ml_job_arn = None


# --------------------------------------------------------------------------
# Processing jobs
# --------------------------------------------------------------------------


class ProcessingRun:
    """What one processing job's container produces: its CloudWatch Logs
    stream and, on success, its S3 outputs.

    Real SageMaker writes a processing job's container output to log group
    ``/aws/sagemaker/ProcessingJobs``, stream
    ``<job>/algo-1-<epoch seconds of creation>``.  Here the stream is created
    with the job, and ``pending`` lines are appended as the job advances
    (``ProcessingJobPatch``).  Everything goes through moto's own logs and S3
    backends, so it is visible through the regular APIs.  Callers hold the
    registry lock.
    """

    GROUP = "/aws/sagemaker/ProcessingJobs"

    def __init__(self, account: str, region: str, stream: str, lines: Iterable[str], default_log: bool, outputs: Mapping[str, str]):
        self.account = account
        self.region = region
        self.stream = stream
        self.pending: deque[str] = deque(lines)
        # time-driven jobs: when each pending line is due (epoch ms)
        self.due: deque[int] = deque()
        self.default_log = default_log
        self.outputs = dict(outputs)
        self._last_timestamp = 0

    def schedule(self, start_ms: int, end_ms: int) -> None:
        """Spread the pending lines evenly over [start, end): line k of n is
        due at start + (end - start) * k / (n + 1)."""
        n = len(self.pending)
        self.due = deque(start_ms + (end_ms - start_ms) * k // (n + 1) for k in range(1, n + 1))

    def emit_due(self, until_ms: int) -> None:
        """Append the scheduled lines due by ``until_ms``, each at its due time."""
        while self.due and self.pending and self.due[0] <= until_ms:
            self.emit([self.pending.popleft()], dt_of(self.due.popleft()))

    def open(self) -> None:
        logs = logs_backends[self.account][self.region]
        logs.ensure_log_group(self.GROUP)
        logs.ensure_log_stream(self.GROUP, self.stream)

    def emit(self, messages: Iterable[str], now: Any) -> None:
        """Append log events, timestamps in ms and strictly increasing."""
        now_ms = int(unix_time_millis(now))
        events = []
        for message in messages:
            self._last_timestamp = max(now_ms, self._last_timestamp + 1)
            events.append({"timestamp": self._last_timestamp, "message": message})
        if events:
            self.open()  # the test may have deleted the group or stream
            logs_backends[self.account][self.region].put_log_events(self.GROUP, self.stream, events)

    def emit_next(self, now: Any) -> None:
        if self.pending:
            self.emit([self.pending.popleft()], now)

    def emit_rest(self, tail: Iterable[str], now: Any) -> None:
        lines = list(self.pending) + list(tail)
        self.pending.clear()
        self.due.clear()
        self.emit(lines, now)

    def upload(self, output_config: Mapping[str, Any] | None) -> None:
        """Write ``outputs`` under every ``S3Output.S3Uri`` whose bucket exists."""
        s3 = s3_backends[self.account][get_partition(self.region)]
        for output in (output_config or {}).get("Outputs") or []:
            uri = ((output or {}).get("S3Output") or {}).get("S3Uri") or ""
            if not uri.startswith("s3://"):
                continue  # e.g. a FeatureStoreOutput
            bucket, _, prefix = uri[len("s3://"):].partition("/")
            try:
                s3.get_bucket(bucket)
            except MissingBucket:
                continue  # real SageMaker would fail the job; the emulator skips silently
            prefix = prefix.rstrip("/")
            for relative, content in self.outputs.items():
                key = f"{prefix}/{relative}" if prefix else relative
                s3.put_object(bucket, key, content.encode("utf-8"))


class ProcessingJobPatch(JobPatch):
    """Knobs: Environment, then Tags (a tag wins).  Stock moto is Completed
    at once, overwrites duplicates, drops Environment and
    ProcessingResources, and its StopProcessingJob jumps straight to Stopped
    (even for a finished job).

    Each job also gets a CloudWatch Logs stream that grows as the job
    advances, and a Completed job writes objects under its S3 outputs (see
    ``ProcessingRun``):

    * ``_emulator_log``: the container's log lines, separated by newlines.
      Default: "emulated processing job <name> started", "running:
      <ContainerEntrypoint + ContainerArguments>", and finally
      "emulated processing job <name> finished" when Completed.  Each
      describe that still shows InProgress appends the next line; the
      describe that shows a terminal status appends the rest, plus
      "ERROR: <FailureReason>" when Failed or "stopped" when Stopped.
    * ``_emulator_outputs``: a JSON object ``{"relative/key": "content"}``
      written under each ``S3Output.S3Uri`` once Completed.
    """

    KIND = "processing_jobs"
    LABEL = "processing job"
    VOCAB = TransformJobPatch.VOCAB
    STORE = "processing_jobs"
    NAME_ARG = "processing_job_name"
    CREATE = "create_processing_job"
    DESCRIBE = "describe_processing_job"
    STOP = "stop_processing_job"
    STOP_PARAM = "ProcessingJobName"
    STATUS_ATTR = "processing_job_status"
    END_TIME_ATTR = "processing_end_time"
    NAME_ATTR = "processing_job_name"
    LIST = "list_processing_jobs"
    LIST_OP = "ListProcessingJobs"
    LIST_RESULT = "ProcessingJobSummaries"
    SUMMARY = (
        ("ProcessingJobName", "processing_job_name"),
        ("ProcessingJobArn", "arn"),
        ("CreationTime", "creation_time"),
        ("ProcessingEndTime", "processing_end_time"),
        ("LastModifiedTime", "last_modified_time"),
        ("ProcessingJobStatus", "processing_job_status"),
        ("FailureReason", "failure_reason"),
        ("ExitMessage", "exit_message"),
    )
    EXTRA_CREATE_ARGS = ("environment", "processing_resources")
    BOOK = "processing_runs"
    LOG_KNOB = KNOB_PREFIX + "log"
    OUTPUTS_KNOB = KNOB_PREFIX + "outputs"

    _runs: dict[Key, ProcessingRun] = {}

    @classmethod
    def install(cls, registry: Registry) -> None:
        if cls._installed:
            return
        super().install(registry)
        # a registry book: cleared (in place) by every reset
        cls._runs = registry.book(cls.BOOK, dict)

        # moto's handler does not pass Environment and ProcessingResources on
        def create_processing_job(self: SageMakerResponse) -> ActionResult:
            job = self.sagemaker_backend.create_processing_job(
                app_specification=self._get_param("AppSpecification"),
                experiment_config=self._get_param("ExperimentConfig"),
                network_config=self._get_param("NetworkConfig"),
                processing_inputs=self._get_param("ProcessingInputs"),
                processing_job_name=self._get_param("ProcessingJobName"),
                processing_output_config=self._get_param("ProcessingOutputConfig"),
                role_arn=self._get_param("RoleArn"),
                stopping_condition=self._get_param("StoppingCondition"),
                tags=self._get_param("Tags"),
                environment=self._get_param("Environment"),
                processing_resources=self._get_param("ProcessingResources"),
            )
            return ActionResult({"ProcessingJobArn": job.arn})

        _add_response_action("create_processing_job", create_processing_job)

    @classmethod
    def knobs(cls, args: Mapping[str, Any]) -> dict[str, str]:
        return {**knobs_from(args.get("environment")), **knobs_from_tags(args["tags"])}

    @classmethod
    def check_knobs(cls, knobs: Mapping[str, str]) -> None:
        cls._outputs(knobs, "")

    @classmethod
    def _log_lines(cls, knobs: Mapping[str, str]) -> list[str] | None:
        """The ``_emulator_log`` lines; None when the knob is absent."""
        raw = knobs.get(cls.LOG_KNOB)
        if raw is None:
            return None
        lines = raw.split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # "a\nb\n" is two lines, "" is none
        return lines

    @classmethod
    def _outputs(cls, knobs: Mapping[str, str], name: str) -> dict[str, str]:
        raw = knobs.get(cls.OUTPUTS_KNOB)
        if raw is None:
            return {"result.json": json.dumps({"job": name, "status": "ok"}), "metrics.txt": "accuracy=0.93"}
        try:
            outputs = json.loads(raw)
        except ValueError:
            outputs = None
        if not isinstance(outputs, dict) or not all(
            isinstance(k, str) and k and not k.startswith("/") and isinstance(v, str) for k, v in outputs.items()
        ):
            raise KnobError(
                f"{cls.OUTPUTS_KNOB} must be a JSON object mapping relative keys to string contents, got {raw!r}"
            )
        return outputs

    @staticmethod
    def _where(job: Any) -> tuple[str, str]:
        """(account id, region) of a job, from its ARN
        (arn:<partition>:sagemaker:<region>:<account>:processing-job/<name>)."""
        parts = job.arn.split(":")
        return parts[4], parts[3]

    @classmethod
    def _run(cls, job: Any) -> ProcessingRun | None:
        account, region = cls._where(job)
        return cls._runs.get((account, region, job.processing_job_name))

    @classmethod
    def on_create(cls, job: Any, lifecycle: Lifecycle, now: Any) -> None:
        job.processing_start_time = now
        job.exit_message = None
        name = job.processing_job_name
        knobs = lifecycle.knobs
        lines = cls._log_lines(knobs)
        if lines is None:
            app = job.app_specification or {}
            command = [*(app.get("ContainerEntrypoint") or []), *(app.get("ContainerArguments") or [])]
            shown = " ".join(str(part) for part in command) or str(app.get("ImageUri", ""))
            lines = [f"emulated processing job {name} started", f"running: {shown}"]
        account, region = cls._where(job)
        run = ProcessingRun(
            account,
            region,
            stream=f"{name}/algo-1-{int(unix_time(job.creation_time))}",
            lines=lines,
            default_log=cls.LOG_KNOB not in knobs,
            outputs=cls._outputs(knobs, name),
        )
        if lifecycle.plan.seconds is not None:
            run.schedule(lifecycle.start_ms, lifecycle.start_ms + round(lifecycle.plan.seconds * 1000))
        cls._runs[(account, region, name)] = run
        run.open()

    @classmethod
    def on_describe(cls, job: Any, lifecycle: Lifecycle, now: Any) -> None:
        run = cls._run(job)
        if run is not None and lifecycle.status == cls.VOCAB.running and not lifecycle.timed:
            run.emit_next(now)

    @classmethod
    def on_time(cls, job: Any, lifecycle: Lifecycle, until_ms: int) -> None:
        run = cls._run(job)
        if run is not None and lifecycle.status == cls.VOCAB.running:
            run.emit_due(until_ms)

    @classmethod
    def next_effect(cls, job: Any, lifecycle: Lifecycle) -> int | None:
        run = cls._run(job)
        if run is not None and lifecycle.status == cls.VOCAB.running and run.due:
            return run.due[0]
        return None

    @classmethod
    def on_finish(cls, job: Any, lifecycle: Lifecycle, now: Any) -> None:
        if lifecycle.status == cls.VOCAB.failed:
            job.exit_message = lifecycle.failure_reason
        run = cls._run(job)
        if run is None:
            return
        tail: list[str] = []
        if lifecycle.status == cls.VOCAB.succeeded:
            if run.default_log:
                tail.append(f"emulated processing job {job.processing_job_name} finished")
        elif lifecycle.status == cls.VOCAB.failed:
            tail.append(f"ERROR: {lifecycle.failure_reason}")
        else:
            tail.append("stopped")
        run.emit_rest(tail, now)
        if lifecycle.status == cls.VOCAB.succeeded:
            run.upload(job.processing_output_config)


# --------------------------------------------------------------------------
# AutoML V2 jobs
# --------------------------------------------------------------------------


class AutoMLJobPatch(JobPatch):
    """Knobs: Tags.  Stock moto stays InProgress forever with a canned
    BestCandidate, stops at once, dies (HTML 500) when CompletionCriteria or
    a tabular ProblemType is left out, and invents a ModelDeployConfig."""

    KIND = "automl_jobs"
    LABEL = "AutoML job"
    VOCAB = Vocabulary(
        running="InProgress",
        progress=("Starting", "AnalyzingData", "FeatureEngineering", "ModelTuning"),
        succeeded="Completed",
        failed="Failed",
        stopping="Stopping",
        stopped="Stopped",
    )
    STORE = "auto_ml_jobs"
    NAME_ARG = "auto_ml_job_name"
    CREATE = "create_auto_ml_job_v2"
    DESCRIBE = "describe_auto_ml_job_v2"
    STOP = "stop_auto_ml_job"
    STOP_PARAM = "AutoMLJobName"
    STATUS_ATTR = "auto_ml_job_status"
    END_TIME_ATTR = "end_time"
    NAME_ATTR = "auto_ml_job_name"
    LIST = "list_auto_ml_jobs"
    LIST_OP = "ListAutoMLJobs"
    LIST_RESULT = "AutoMLJobSummaries"
    SUMMARY = (
        ("AutoMLJobName", "auto_ml_job_name"),
        ("AutoMLJobArn", "arn"),
        ("AutoMLJobStatus", "auto_ml_job_status"),
        ("AutoMLJobSecondaryStatus", "auto_ml_job_secondary_status"),
        ("CreationTime", "creation_time"),
        ("EndTime", "end_time"),
        ("LastModifiedTime", "last_modified_time"),
        ("FailureReason", "failure_reason"),
    )
    PROBLEM_TYPES = (
        "TabularJobConfig",
        "TimeSeriesForecastingJobConfig",
        "ImageClassificationJobConfig",
        "TextClassificationJobConfig",
        "TextGenerationJobConfig",
    )
    MINIMIZED_METRICS = {"MSE", "RMSE", "MAE", "LogLoss", "AverageWeightedQuantileLoss", "MAPE", "MASE", "WAPE"}

    @classmethod
    def knobs(cls, args: Mapping[str, Any]) -> dict[str, str]:
        return knobs_from_tags(args["tags"])

    @classmethod
    def prepare(cls, args: dict[str, Any]) -> Callable[[Any], None]:
        sent_problem = args["auto_ml_problem_type_config"] or {}
        kinds = [kind for kind in sent_problem if kind in cls.PROBLEM_TYPES]
        if len(kinds) != 1:
            raise ValidationError(f"AutoMLProblemTypeConfig must contain exactly one of {', '.join(cls.PROBLEM_TYPES)}.")
        if not (args["output_data_config"] or {}).get("S3OutputPath"):
            raise ValidationError("OutputDataConfig.S3OutputPath is required.")
        # moto needs fields SageMaker treats as optional; give it a scratch
        # copy that has them and echo back what the caller sent.
        scratch = copy.deepcopy(sent_problem)
        config = scratch[kinds[0]]
        config.setdefault("CompletionCriteria", {})
        if kinds[0] == "TabularJobConfig":
            config.setdefault("ProblemType", None)  # SageMaker infers it
        args["auto_ml_problem_type_config"] = scratch
        sent_deploy = args["model_deploy_config"]

        def echo_config(job: Any) -> None:
            job.auto_ml_problem_type_config = sent_problem
            job.model_deploy_config = sent_deploy
            job.model_deploy_result = None  # no endpoint gets deployed

        return echo_config

    @classmethod
    def not_found(cls, backend: SageMakerModelBackend, name: str) -> Exception:
        return ResourceNotFound(f"Could not find AutoML job with name {name}.")  # moto's wording

    @classmethod
    def describe_result(cls, result: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in result.items() if v is not None}

    @classmethod
    def on_create(cls, job: Any, lifecycle: Lifecycle, now: Any) -> None:
        job.auto_ml_job_secondary_status = lifecycle.secondary
        job.best_candidate = None
        job.auto_ml_job_artifacts = None
        job.partial_failure_reasons = None

    @classmethod
    def on_change(cls, job: Any, lifecycle: Lifecycle, now: Any) -> None:
        job.auto_ml_job_secondary_status = lifecycle.secondary

    @classmethod
    def on_finish(cls, job: Any, lifecycle: Lifecycle, now: Any) -> None:
        if lifecycle.status != cls.VOCAB.succeeded:
            return
        name = job.auto_ml_job_name
        prefix = f"{job.output_data_config['S3OutputPath'].rstrip('/')}/{name}"
        candidate = f"{name}-trial-1-emulated"
        registry_host = f"{job.account_id}.dkr.ecr.{job.region_name}.amazonaws.com"
        metric = (job.auto_ml_job_objective or {}).get("MetricName") or "Accuracy"
        minimize = metric in cls.MINIMIZED_METRICS
        job.best_candidate = {
            "CandidateName": candidate,
            "FinalAutoMLJobObjectiveMetric": {
                "Type": "Minimize" if minimize else "Maximize",
                "MetricName": metric,
                "Value": 0.1 if minimize else 0.9,
            },
            "ObjectiveStatus": "Succeeded",
            "CandidateSteps": [
                {
                    "CandidateStepType": "AWS::SageMaker::TrainingJob",
                    "CandidateStepArn": f"arn:aws:sagemaker:{job.region_name}:{job.account_id}:training-job/{candidate}",
                    "CandidateStepName": candidate,
                }
            ],
            "CandidateStatus": "Completed",
            "InferenceContainers": [
                {
                    "Image": f"{registry_host}/emulated-automl-preprocessing:1",
                    "ModelDataUrl": f"{prefix}/data-processor-models/{name}-dpp0/output/model.tar.gz",
                    "Environment": {"AUTOML_TRANSFORM_MODE": "feature-transform"},
                },
                {
                    "Image": f"{registry_host}/emulated-automl-algorithm:1",
                    "ModelDataUrl": f"{prefix}/tuning/{candidate}/output/model.tar.gz",
                    "Environment": {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"},
                },
            ],
            "CreationTime": job.creation_time,
            "EndTime": now,
            "LastModifiedTime": now,
        }
        notebooks = f"{prefix}/sagemaker-automl-candidates/notebooks"
        job.auto_ml_job_artifacts = {
            "CandidateDefinitionNotebookLocation": f"{notebooks}/SageMakerAutopilotCandidateDefinitionNotebook.ipynb",
            "DataExplorationNotebookLocation": f"{notebooks}/SageMakerAutopilotDataExplorationNotebook.ipynb",
        }


# --------------------------------------------------------------------------
# Models and endpoint configs
# --------------------------------------------------------------------------


class ModelPatch(DefinitionPatch):
    KIND = "models"
    LABEL = "model"
    STORE = "_models"
    NAME_ARG = "model_name"
    NAME_PARAM = "ModelName"
    CREATE = "create_model"
    DESCRIBE = "describe_model"
    DELETE = "delete_model"


class EndpointConfigPatch(DefinitionPatch):
    KIND = "endpoint_configs"
    LABEL = "endpoint configuration"
    STORE = "endpoint_configs"
    NAME_ARG = "endpoint_config_name"
    NAME_PARAM = "EndpointConfigName"
    CREATE = "create_endpoint_config"
    DESCRIBE = "describe_endpoint_config"
    DELETE = "delete_endpoint_config"
    ARN_ATTR = "endpoint_config_arn"


class ExplainerConfigPatch:
    """moto drops an endpoint config's ``ExplainerConfig``; SageMaker keeps it
    and DescribeEndpointConfig shows it.  Kept here as given (not validated)."""

    _installed = False

    @classmethod
    def install(cls, registry: Registry) -> None:
        if cls._installed:
            return
        cls._installed = True
        original = SageMakerResponse.create_endpoint_config

        def create_endpoint_config(self: SageMakerResponse) -> Any:
            result = original(self)
            explainer = self._get_param("ExplainerConfig")
            if explainer:
                with registry.lock:
                    config = self.sagemaker_backend.endpoint_configs.get(self._get_param("EndpointConfigName"))
                    if config is not None:
                        # moto's describe shows every attribute, CamelCased: ExplainerConfig.
                        config.explainer_config = copy.deepcopy(explainer)
            return result

        _add_response_action("create_endpoint_config", create_endpoint_config)

    @staticmethod
    def of_endpoint(backend: SageMakerModelBackend, endpoint: Any) -> Any:
        """The explainer config of the config an endpoint serves, or None."""
        config = backend.endpoint_configs.get(getattr(endpoint, "endpoint_config_name", None))
        return getattr(config, "explainer_config", None) if config is not None else None


class ListModelsPatch:
    """moto's ListModels returns every model at once and ignores ``MaxResults``
    and ``NextToken``; SageMaker pages (at most 100 per page, newest first by
    default).  Here: ``MaxResults`` (default 10, as SageMaker), ``NextToken``
    from the previous page, ``SortBy`` Name or CreationTime, ``SortOrder``."""

    DEFAULT_PAGE = 10
    _installed = False

    @classmethod
    def install(cls, registry: Registry) -> None:
        if cls._installed:
            return
        cls._installed = True

        def list_models(self: SageMakerResponse) -> ActionResult:
            max_results = self._get_param("MaxResults") or cls.DEFAULT_PAGE
            if not isinstance(max_results, int) or not 1 <= max_results <= 100:
                raise ValidationError("1 validation error detected: Value at 'maxResults' failed to satisfy constraint: Member must have value between 1 and 100")
            token = self._get_param("NextToken") or ""
            try:
                start = int(token[len("models-page-"):]) if token else 0
            except ValueError:
                raise ValidationError(f"Invalid pagination token: {token}") from None
            if token and not token.startswith("models-page-"):
                raise ValidationError(f"Invalid pagination token: {token}")
            descending = (self._get_param("SortOrder") or "Descending") == "Descending"
            with registry.lock:
                models = list(self.sagemaker_backend.list_models())
            if self._get_param("SortBy") == "Name":
                models.sort(key=lambda m: m.model_name, reverse=descending)
            else:
                models.sort(key=lambda m: (m.creation_time, m.model_name), reverse=descending)
            page = models[start:start + max_results]
            summaries = [
                {"ModelName": m.model_name, "ModelArn": m.arn, "CreationTime": m.creation_time}
                for m in page
            ]
            result: dict[str, Any] = {"Models": summaries}
            if start + max_results < len(models):
                result["NextToken"] = f"models-page-{start + max_results}"
            return ActionResult(result)

        _add_response_action("list_models", list_models)


# --------------------------------------------------------------------------
# Endpoints
# --------------------------------------------------------------------------


class EndpointRecord:
    """Counters for one endpoint plus the operation in flight.

    CreateEndpoint, UpdateEndpoint and DeleteEndpoint each start an
    *operation*: a ``Lifecycle`` whose running status (Creating, Updating,
    Deleting) shows for ``polls`` describes.  The describe after that *lands*
    it: ``land`` shapes the endpoint and returns the status it now shows.
    """

    def __init__(self) -> None:
        self.creates = 0
        self.duplicate_creates = 0
        self.describes = 0
        self.updates = 0
        self.deletes = 0
        self.invocations = 0
        self.status = ""
        self.operation: Lifecycle | None = None
        self._land: Callable[[Lifecycle], str] | None = None

    def begin(self, operation: Lifecycle, land: Callable[[Lifecycle], str]) -> None:
        self.operation, self._land = operation, land
        self.status = operation.status

    def observe(self) -> None:
        self.describes += 1
        operation = self.operation
        if operation is None or operation.terminal:
            return
        if operation.observe() and operation.terminal:
            assert self._land is not None
            self.status = self._land(operation)

    def stats(self) -> dict[str, Any]:
        return {
            "creates": self.creates,
            "duplicate_creates": self.duplicate_creates,
            "describes": self.describes,
            "updates": self.updates,
            "deletes": self.deletes,
            "invocations": self.invocations,
            "status": self.status,
        }


class EndpointPatch:
    """Knobs: the endpoint's tags, read when an operation starts (Tags on
    CreateEndpoint, or AddTags before UpdateEndpoint).  Stock moto is
    InService at once, deletes at once, overwrites duplicates and has no
    UpdateEndpoint."""

    KIND = "endpoints"
    CREATE_VOCAB = Vocabulary(running="Creating", progress=(), succeeded="InService", failed="Failed")
    # "RolledBack" is only a knob value: a rolled back endpoint is InService
    # again, on its old endpoint config, with a FailureReason.
    UPDATE_VOCAB = Vocabulary(running="Updating", progress=(), succeeded="InService", failed="RolledBack")
    DELETE_VOCAB = Vocabulary(running="Deleting", progress=(), succeeded="Deleted", failed="Deleted")
    DELETE_PLAN = Plan(succeed=True, polls=1, stop_polls=0, failure_reason="")
    CREATE_FAILURE = "The primary container did not pass the ping health check (emulated failure)."
    UPDATE_FAILURE = (
        "Endpoint update failed (emulated failure); the endpoint was rolled back "
        "to its previous endpoint configuration."
    )
    IN_PROGRESS = ("Creating", "Updating", "Deleting")

    _installed = False

    @classmethod
    def install(cls, registry: Registry) -> None:
        if cls._installed:
            return
        cls._installed = True
        registry.add_kind(cls.KIND)

        def wrap_create(original: Callable[..., Any]) -> Callable[..., Any]:
            def create_endpoint(*args: Any, **kwargs: Any) -> FakeEndpoint:
                bound = _bind(original, args, kwargs)
                backend: SageMakerModelBackend = bound.arguments["self"]
                name = bound.arguments["endpoint_name"]
                key = _key(backend, name)
                with registry.lock:
                    record = registry.get(cls.KIND, key)
                    existing = backend.endpoints.get(name)
                    if existing is not None:
                        if record is None:  # endpoint predates the patch
                            record = registry.put(cls.KIND, key, EndpointRecord())
                            record.status = existing.endpoint_status
                        record.duplicate_creates += 1
                        raise ValidationError(f'Cannot create already existing endpoint "{existing.arn}".')
                    try:
                        knobs = knobs_from_tags(bound.arguments["tags"])
                        plan = Plan.from_knobs(knobs, cls.CREATE_VOCAB, default_reason=cls.CREATE_FAILURE, timed=False)
                    except KnobError as err:
                        raise ValidationError(str(err)) from None
                    endpoint = original(*bound.args, **bound.kwargs)  # unknown config: moto's error
                    record = record or registry.put(cls.KIND, key, EndpointRecord())
                    record.creates += 1
                    variants = endpoint.production_variants
                    endpoint.production_variants = None  # shown once InService
                    endpoint.data_capture_config = endpoint.data_capture_config or None
                    endpoint.failure_reason = None
                    endpoint.pending_deployment_summary = None
                    cls._show(endpoint, "Creating")
                    record.begin(
                        Lifecycle(cls.CREATE_VOCAB, plan),
                        lambda operation: cls._land_create(endpoint, operation, variants),
                    )
                    return endpoint

            return create_endpoint

        def wrap_describe(original: Callable[..., Any]) -> Callable[..., Any]:
            def describe_endpoint(*args: Any, **kwargs: Any) -> dict[str, Any]:
                bound = _bind(original, args, kwargs)
                backend: SageMakerModelBackend = bound.arguments["self"]
                name = bound.arguments["endpoint_name"]
                with registry.lock:
                    record = registry.get(cls.KIND, _key(backend, name))
                    if record is not None and name in backend.endpoints:
                        record.observe()
                    # unknown (or now deleted): moto's "Could not find endpoint ..."
                    return original(*bound.args, **bound.kwargs)

            return describe_endpoint

        def update_endpoint(backend: SageMakerModelBackend, endpoint_name: str, endpoint_config_name: str) -> FakeEndpoint:
            with registry.lock:
                endpoint = backend.endpoints.get(endpoint_name)
                if endpoint is None:
                    arn = FakeEndpoint.arn_formatter(endpoint_name, backend.account_id, backend.region_name)
                    raise ValidationError(f"Could not find endpoint '{arn}'.")
                status = endpoint.endpoint_status
                if status != "InService":
                    state = "in-progress" if status in cls.IN_PROGRESS else status.lower()
                    raise ValidationError(f'Cannot update {state} endpoint "{endpoint.arn}".')
                config = backend.endpoint_configs.get(endpoint_config_name)
                if config is None:
                    arn = FakeEndpointConfig.arn_formatter(endpoint_config_name, backend.account_id, backend.region_name)
                    raise ValidationError(f"Could not find endpoint configuration '{arn}'.")
                try:
                    plan = Plan.from_knobs(
                        knobs_from_tags(endpoint.tags),
                        cls.UPDATE_VOCAB,
                        outcome_key="update_outcome",
                        default_reason=cls.UPDATE_FAILURE,
                        timed=False,
                    )
                except KnobError as err:
                    raise ValidationError(str(err)) from None
                key = _key(backend, endpoint_name)
                record = registry.get(cls.KIND, key) or registry.put(cls.KIND, key, EndpointRecord())
                record.updates += 1
                new_variants = endpoint._process_production_variants(config.production_variants)
                endpoint.pending_deployment_summary = {
                    "EndpointConfigName": endpoint_config_name,
                    "ProductionVariants": [cls._pending_variant(v) for v in config.production_variants],
                    "StartTime": utcnow(),
                }
                cls._show(endpoint, "Updating")
                record.begin(
                    Lifecycle(cls.UPDATE_VOCAB, plan),
                    lambda operation: cls._land_update(endpoint, operation, endpoint_config_name, new_variants),
                )
                return endpoint

        def update_endpoint_response(self: SageMakerResponse) -> ActionResult:
            endpoint = self.sagemaker_backend.update_endpoint(
                self._get_param("EndpointName"), self._get_param("EndpointConfigName")
            )
            return ActionResult({"EndpointArn": endpoint.arn})

        def wrap_delete(original: Callable[..., Any]) -> Callable[..., Any]:
            def delete_endpoint(*args: Any, **kwargs: Any) -> None:
                bound = _bind(original, args, kwargs)
                backend: SageMakerModelBackend = bound.arguments["self"]
                name = bound.arguments["endpoint_name"]
                with registry.lock:
                    endpoint = backend.endpoints.get(name)
                    record = registry.get(cls.KIND, _key(backend, name))
                    if endpoint is None or record is None:
                        # unknown: moto's error; predates the patch: gone at once
                        return original(*bound.args, **bound.kwargs)
                    record.deletes += 1
                    if endpoint.endpoint_status == "Deleting":
                        return None  # already on its way out
                    endpoint.pending_deployment_summary = None
                    cls._show(endpoint, "Deleting")
                    record.begin(
                        Lifecycle(cls.DELETE_VOCAB, cls.DELETE_PLAN),
                        lambda operation: cls._land_delete(backend, name),
                    )
                    return None

            return delete_endpoint

        _wrap_backend("create_endpoint", wrap_create)
        _wrap_backend("describe_endpoint", wrap_describe)
        _wrap_backend("delete_endpoint", wrap_delete)
        SageMakerModelBackend.update_endpoint = update_endpoint  # type: ignore[attr-defined]
        _add_response_action("update_endpoint", update_endpoint_response)

    @staticmethod
    def _show(endpoint: FakeEndpoint, status: str) -> None:
        endpoint.endpoint_status = status
        endpoint.last_modified_time = utcnow()

    @staticmethod
    def _pending_variant(variant: Mapping[str, Any]) -> dict[str, Any]:
        fields = {"InstanceType": "InstanceType", "InitialInstanceCount": "DesiredInstanceCount", "InitialVariantWeight": "DesiredWeight"}
        summary = {"VariantName": variant["VariantName"]}
        summary.update({out: variant[src] for src, out in fields.items() if variant.get(src) is not None})
        return summary

    @classmethod
    def _land_create(cls, endpoint: FakeEndpoint, operation: Lifecycle, variants: list[dict[str, Any]]) -> str:
        if operation.status == "InService":
            endpoint.production_variants = variants
        else:
            endpoint.failure_reason = operation.failure_reason
        cls._show(endpoint, operation.status)
        return operation.status

    @classmethod
    def _land_update(cls, endpoint: FakeEndpoint, operation: Lifecycle, config_name: str, variants: list[dict[str, Any]]) -> str:
        endpoint.pending_deployment_summary = None
        if operation.status == "InService":
            endpoint.endpoint_config_name = config_name
            endpoint.production_variants = variants
            endpoint.failure_reason = None
        else:  # rolled back: old config stays live
            endpoint.failure_reason = operation.failure_reason
        cls._show(endpoint, "InService")
        return "InService"

    @staticmethod
    def _land_delete(backend: SageMakerModelBackend, name: str) -> str:
        backend.endpoints.pop(name, None)
        return "Deleted"


# --------------------------------------------------------------------------
# InvokeEndpoint (sagemaker-runtime)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One queued InvokeEndpoint answer."""

    body: str
    content_type: str
    error_status: int | None = None  # set: fail with ModelError instead
    error_message: str = ""

    @classmethod
    def parse(cls, payload: Any) -> tuple[str, "Answer"]:
        """(endpoint name, answer) from a POST /_emulator/invoke-results body."""
        if not isinstance(payload, dict):
            raise ValueError("body must be a JSON object")
        endpoint = payload.get("endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            raise ValueError("'endpoint' must be a non-empty string")
        body = payload.get("body", "")
        content_type = payload.get("content_type", "application/json")
        if not isinstance(body, str) or not isinstance(content_type, str):
            raise ValueError("'body' and 'content_type' must be strings")
        model_error = payload.get("model_error")
        if model_error is None:
            return endpoint, cls(body, content_type)
        if not isinstance(model_error, dict):
            raise ValueError("'model_error' must be null or an object")
        status = model_error.get("status", 500)
        message = model_error.get("message", "")
        if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
            raise ValueError("'model_error.status' must be an integer from 400 to 599")
        if not isinstance(message, str):
            raise ValueError("'model_error.message' must be a string")
        return endpoint, cls(body, content_type, status, message)


class InvocationBook:
    """Queued answers and received requests, per endpoint name.

    Keyed by endpoint name only (any account/region).  Callers hold the
    registry lock.
    """

    KEEP = 100  # received requests kept per endpoint

    def __init__(self) -> None:
        self._answers: dict[str, deque[Answer]] = {}
        self._received: dict[str, deque[dict[str, Any]]] = {}

    def queue(self, endpoint: str, answer: Answer) -> int:
        answers = self._answers.setdefault(endpoint, deque())
        answers.append(answer)
        return len(answers)

    def next_answer(self, endpoint: str) -> Answer | None:
        answers = self._answers.get(endpoint)
        return answers.popleft() if answers else None

    def record(self, endpoint: str, content_type: str | None, body: bytes, enable_explanations: str | None = None) -> None:
        entry: dict[str, Any] = {"content_type": content_type}
        if enable_explanations is not None:
            entry["enable_explanations"] = enable_explanations
        try:
            entry["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            entry["body"] = body.decode("utf-8", errors="replace")
            entry["body_base64"] = base64.b64encode(body).decode("ascii")
        self._received.setdefault(endpoint, deque(maxlen=self.KEEP)).append(entry)

    def received(self, endpoint: str) -> list[dict[str, Any]]:
        return list(self._received.get(endpoint, ()))

    def clear(self) -> None:
        self._answers.clear()
        self._received.clear()


class InvokeEndpointPatch:
    """Replaces moto's InvokeEndpoint.

    Stock moto answers canned values without checking the endpoint, and
    caches each answer under a fingerprint of headers and body (so two
    identical requests can never get different answers).  Here the answer
    comes from the endpoint's queue (``POST /_emulator/invoke-results``),
    else a default JSON body; every accepted request is recorded
    (``GET /_emulator/invocations``).  moto's
    ``/moto-api/static/sagemaker/endpoint-results`` queue is not used.
    """

    BOOK = "invocations"
    DEFAULT_ANSWER = Answer(body=json.dumps({"predictions": [0]}), content_type="application/json")
    # What SageMaker Clarify answers when explanations are enabled (shape of the real reply).
    DEFAULT_EXPLANATION = Answer(
        body=json.dumps({
            "version": "1.0",
            "predictions": {"content_type": "application/json", "data": json.dumps({"predictions": [0]})},
            "explanations": {"kernel_shap": [[{"attributions": [{"attribution": [0.0]}]}]]},
        }),
        content_type="application/json",
    )
    EXPLAIN_HEADER = "X-Amzn-SageMaker-Enable-Explanations"
    INVOCABLE = ("InService", "Updating")  # an updating endpoint keeps serving its old config

    _installed = False

    @classmethod
    def install(cls, registry: Registry) -> None:
        if cls._installed:
            return
        cls._installed = True
        registry.book(cls.BOOK, InvocationBook)

        # Keep the request body as bytes (moto would decode it as UTF-8).
        SageMakerRuntimeResponse.use_raw_body = True
        original_setup = SageMakerRuntimeResponse.setup_class

        def setup_class(self: SageMakerRuntimeResponse, request: Any, *args: Any, **kwargs: Any) -> None:
            # Buffer the raw body first: otherwise werkzeug parses a
            # form-encoded body into request.form and the bytes are gone.
            request.get_data()
            original_setup(self, request, *args, **kwargs)

        original_get_action = SageMakerRuntimeResponse._get_action

        def get_action(self: SageMakerRuntimeResponse) -> str:
            # The path names the operation.  moto's router looks at the
            # content type too and finds nothing for a form-encoded body.
            if self.path.rstrip("/").endswith("/invocations"):
                return "InvokeEndpoint"
            return original_get_action(self)

        def invoke_endpoint(self: SageMakerRuntimeResponse) -> TYPE_RESPONSE:
            return cls._invoke(self, registry)

        SageMakerRuntimeResponse.setup_class = setup_class  # type: ignore[method-assign]
        SageMakerRuntimeResponse._get_action = get_action  # type: ignore[method-assign]
        SageMakerRuntimeResponse.invoke_endpoint = invoke_endpoint  # type: ignore[method-assign]

    @classmethod
    def _invoke(cls, response: SageMakerRuntimeResponse, registry: Registry) -> TYPE_RESPONSE:
        name = unquote(response.path.rstrip("/").split("/")[-2])  # /endpoints/<name>/invocations
        account, region = response.current_account, response.region
        body = response.raw_body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        with registry.lock:
            endpoint = sagemaker_backends[account][region].endpoints.get(name)
            status = endpoint.endpoint_status if endpoint is not None else "Deleting"
            if status == "Deleting":
                return cls._error(400, "ValidationError", f"Endpoint {name} of account {account} not found.")
            if status not in cls.INVOCABLE:
                return cls._error(400, "ValidationError", f"Endpoint {name} of account {account} is not in service (status: {status}).")
            explain = response.headers.get(cls.EXPLAIN_HEADER)
            if explain is not None and ExplainerConfigPatch.of_endpoint(sagemaker_backends[account][region], endpoint) is None:
                return cls._error(
                    400,
                    "ValidationError",
                    f"Endpoint {name} of account {account} does not support explanations: its endpoint config has no ExplainerConfig.",
                )
            book: InvocationBook = registry.book(cls.BOOK, InvocationBook)
            book.record(name, response.headers.get("Content-Type"), body, explain)
            record = registry.get(EndpointPatch.KIND, (account, region, name))
            if record is not None:
                record.invocations += 1
            answer = book.next_answer(name) or (cls.DEFAULT_EXPLANATION if explain is not None else cls.DEFAULT_ANSWER)
            variant = (endpoint.production_variants or [{}])[0].get("VariantName", "AllTraffic")
        if answer.error_status is not None:
            return cls._model_error(answer, name, variant, account, region)
        headers = {"status": 200, "Content-Type": answer.content_type, "x-Amzn-Invoked-Production-Variant": variant}
        return 200, headers, answer.body.encode("utf-8")

    @classmethod
    def _model_error(cls, answer: Answer, name: str, variant: str, account: str, region: str) -> TYPE_RESPONSE:
        status = answer.error_status
        assert status is not None
        side = "client" if status < 500 else "server"
        group = f"/aws/sagemaker/Endpoints/{name}"
        message = (
            f'Received {side} error ({status}) from {variant} with message "{answer.error_message}". '
            f"See https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
            f"#logEventViewer:group={group} in account {account} for more information."
        )
        return cls._error(
            424,
            "ModelError",
            message,
            OriginalStatusCode=status,
            OriginalMessage=answer.error_message,
            LogStreamArn=f"arn:aws:logs:{region}:{account}:log-group:{group}",
        )

    @staticmethod
    def _error(status: int, code: str, message: str, **fields: Any) -> TYPE_RESPONSE:
        body = json.dumps({"__type": code, "message": message, **fields})
        headers = {"status": status, "Content-Type": "application/json", "x-amzn-ErrorType": code}
        return status, headers, body


# --------------------------------------------------------------------------
# Error body spelling
# --------------------------------------------------------------------------


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


class RequestParsePatch:
    """A SageMaker request moto's parser cannot read (e.g. a timestamp that is
    neither epoch seconds nor ISO 8601) gets HTTP 400
    ``SerializationException``, like the real service, instead of moto's
    HTML 500."""

    _installed = False

    @classmethod
    def install(cls, registry: Registry) -> None:
        if cls._installed:
            return
        cls._installed = True
        original_parse = SageMakerResponse.parse_parameters
        original_call = SageMakerResponse.call_action

        def parse_parameters(self: SageMakerResponse, request: Any) -> None:
            try:
                original_parse(self, request)
            except ValueError as err:
                self.params = {}
                self._emulator_parse_error = str(err)

        def call_action(self: SageMakerResponse) -> Any:
            problem = getattr(self, "_emulator_parse_error", None)
            if problem is not None:
                body = json.dumps({"__type": "SerializationException", "message": problem})
                return 400, {"status": 400, "Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": "SerializationException"}, body
            return original_call(self)

        SageMakerResponse.parse_parameters = parse_parameters  # type: ignore[method-assign]
        SageMakerResponse.call_action = call_action  # type: ignore[method-assign]


PATCHES = [
    SageMakerErrorBodyPatch,
    RequestParsePatch,
    TrainingJobPatch,
    TransformJobPatch,
    ProcessingJobPatch,
    AutoMLJobPatch,
    ModelPatch,
    ListModelsPatch,
    EndpointConfigPatch,
    ExplainerConfigPatch,
    EndpointPatch,
    InvokeEndpointPatch,
]


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


class ControlError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ControlPlane:
    """WSGI middleware: ``/_emulator/*`` here, everything else to moto."""

    PREFIX = "/_emulator"

    def __init__(self, app: Callable[..., Iterable[bytes]], registry: Registry):
        self.app = app
        self.registry = registry
        self.routes: dict[str, dict[str, Callable[[Request], Any]]] = {
            "stats": {"GET": self._stats},
            "reset": {"POST": self._reset},
            "health": {"GET": lambda request: {"status": "ok"}},
            "invoke-results": {"POST": self._queue_answer},
            "invocations": {"GET": self._invocations},
            "log-reads": {"GET": self._log_reads},
            "defaults": {"GET": self._get_defaults, "POST": self._set_defaults},
        }

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or ""
        method = environ.get("REQUEST_METHOD", "GET").upper()
        # time-driven jobs first: whatever this request reads agrees with the clock
        advance_timed_jobs(self.registry)
        if path == self.PREFIX or path.startswith(self.PREFIX + "/"):
            return self._control(path[len(self.PREFIX):].strip("/"), method, environ, start_response)
        target = environ.get("HTTP_X_AMZ_TARGET") or ""
        if target.endswith(".GetLogEvents"):
            self._record_log_read(environ)
        service, _, operation = target.partition(".")
        if service == "SageMaker" and operation.startswith("List"):
            with self.registry.lock:
                calls = self.registry.book(LIST_CALLS_BOOK, dict)
                calls[operation] = calls.get(operation, 0) + 1
        if method == "POST" and path.rstrip("/") == "/moto-api/reset":
            # someone used moto's reset directly: drop our bookkeeping too
            with self.registry.lock:
                body = list(self.app(environ, start_response))
                self.registry.clear()
            return body
        return self.app(environ, start_response)

    def _control(self, route: str, method: str, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if route not in self.routes:
            return self._json(start_response, 404, {"error": f"unknown emulator route {route!r}", "routes": sorted(self.routes)})
        handlers = self.routes[route]
        if method not in handlers:
            allowed = ", ".join(sorted(handlers))
            return self._json(start_response, 405, {"error": f"use {allowed} for /_emulator/{route}"}, [("Allow", allowed)])
        try:
            return self._json(start_response, 200, handlers[method](Request(environ)))
        except ControlError as err:
            return self._json(start_response, err.status, {"error": str(err)})

    # the List calls always shown under "list_calls" (others once called)
    JOB_LISTS = ("ListTrainingJobs", "ListTransformJobs", "ListProcessingJobs", "ListAutoMLJobs")

    def _stats(self, request: Request) -> dict[str, Any]:
        with self.registry.lock:
            out: dict[str, Any] = self.registry.snapshot()
            calls = self.registry.book(LIST_CALLS_BOOK, dict)
            out["list_calls"] = {**{op: 0 for op in self.JOB_LISTS}, **calls}
            return out

    # knobs a default may be set for (the job knobs)
    DEFAULTABLE = tuple(
        KNOB_PREFIX + k
        for k in ("outcome", "polls", "stop_polls", "seconds", "stop_seconds", "failure_reason", "log", "outputs")
    )

    def _get_defaults(self, request: Request) -> dict[str, str]:
        with self.registry.lock:
            return dict(knob_defaults(self.registry))

    def _set_defaults(self, request: Request) -> dict[str, Any]:
        """``POST /_emulator/defaults`` ``{"_emulator_seconds": "2", ...}``: the
        knob defaults for jobs created from now on (replaces the previous set;
        ``{}`` clears it)."""
        try:
            payload = json.loads(request.get_data() or b"null")
        except ValueError as err:
            raise ControlError(400, f"invalid defaults: {err}") from None
        if not isinstance(payload, dict):
            raise ControlError(400, "invalid defaults: body must be a JSON object of knob -> string")
        defaults: dict[str, str] = {}
        for knob, value in payload.items():
            if knob not in self.DEFAULTABLE:
                raise ControlError(400, f"invalid defaults: unknown knob {knob!r} (known: {', '.join(self.DEFAULTABLE)})")
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise ControlError(400, f"invalid defaults: {knob} must be a string, got {value!r}")
            defaults[knob] = str(value)
        if SECONDS_KNOB in defaults and KNOB_PREFIX + "polls" in defaults:
            raise ControlError(400, f"invalid defaults: set {SECONDS_KNOB} or {KNOB_PREFIX}polls, not both")
        try:
            for patch in PATCHES:
                if isinstance(patch, type) and issubclass(patch, JobPatch):
                    Plan.from_knobs({}, patch.VOCAB, defaults=defaults)
                    patch.check_knobs(defaults)
        except KnobError as err:
            raise ControlError(400, f"invalid defaults: {err}") from None
        with self.registry.lock:
            book = knob_defaults(self.registry)
            book.clear()
            book.update(defaults)
        return {"status": "ok", "defaults": defaults}

    LOG_READS = "log_reads"

    def _record_log_read(self, environ: dict[str, Any]) -> None:
        """Notes what a GetLogEvents asked for (stream, token or head), then puts the body
        back for moto: tests check that a reader goes on from its saved token."""
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length > 0 else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        with self.registry.lock:
            self.registry.book(self.LOG_READS, list).append(
                {
                    "logStreamName": body.get("logStreamName"),
                    "nextToken": body.get("nextToken"),
                    "startFromHead": body.get("startFromHead"),
                }
            )

    def _log_reads(self, request: Request) -> list[dict[str, Any]]:
        """``GET /_emulator/log-reads?stream_prefix=<job>/``: the GetLogEvents requests received
        for streams under the prefix, oldest first."""
        prefix = request.args.get("stream_prefix")
        if not prefix:
            raise ControlError(400, "query parameter 'stream_prefix' is required")
        with self.registry.lock:
            reads = self.registry.book(self.LOG_READS, list)
            return [r for r in reads if str(r.get("logStreamName") or "").startswith(prefix)]

    def _reset(self, request: Request) -> dict[str, str]:
        reset_everything(self.registry)
        return {"status": "ok"}

    def _book(self) -> InvocationBook:
        return self.registry.book(InvokeEndpointPatch.BOOK, InvocationBook)

    def _queue_answer(self, request: Request) -> dict[str, Any]:
        try:
            endpoint, answer = Answer.parse(json.loads(request.get_data() or b"null"))
        except ValueError as err:  # JSON errors included
            raise ControlError(400, f"invalid invoke result: {err}") from None
        with self.registry.lock:
            queued = self._book().queue(endpoint, answer)
        return {"status": "ok", "endpoint": endpoint, "queued": queued}

    def _invocations(self, request: Request) -> list[dict[str, Any]]:
        endpoint = request.args.get("endpoint")
        if not endpoint:
            raise ControlError(400, "query parameter 'endpoint' is required")
        with self.registry.lock:
            return self._book().received(endpoint)

    @staticmethod
    def _json(start_response: Callable[..., Any], status: int, payload: Any, extra: list[tuple[str, str]] | None = None) -> Iterable[bytes]:
        reasons = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
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
