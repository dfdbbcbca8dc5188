#!/usr/bin/env python3
"""Checks that the service matches its OpenAPI document, against the real binary and the AWS
emulator:

* ``schemathesis``: a bounded run over every operation of ``/openapi.json`` checking that no
  reply is a server error, every status is documented, and every reply matches its schema;
* ``client``: a Python client generated from ``openapi/openapi.json`` by openapi-python-client
  (into a temporary folder) drives submit -> status -> list for training, ``/execute``, models
  and endpoints (``client_roundtrip.py``).

Usage: ``run.py [--bin target/debug/sagemaker-executor] [client] [schemathesis]`` (both, in this
order, by default: schemathesis then also meets what the client created). Prints one ``conformance: N passed, N failed`` line at the end; exits non-zero when a
stage fails. Run by ``scripts/test`` after the Rust tests, with the test venv's Python.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent

# Bounds of the schemathesis run: a handful of cases per operation, one worker per core.
MAX_EXAMPLES = int(os.environ.get("CONFORMANCE_MAX_EXAMPLES", "12"))
MAX_TIME_SECS = int(os.environ.get("CONFORMANCE_MAX_TIME_SECS", "120"))
CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance"


def first_line(proc: subprocess.Popen, stream, prefixes, skipped=None, timeout: float = 60) -> str:
    """The first line of a child's stream that starts with one of ``prefixes`` ("" at EOF); the
    child is killed when none came within ``timeout`` seconds, so a hung start fails the stage
    instead of hanging it."""
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    try:
        for line in stream:
            if line.startswith(prefixes):
                return line
            if skipped is not None:
                skipped.write(line)
        return ""
    finally:
        watchdog.cancel()


class Emulator:
    """The AWS emulator; it exits when its stdin closes."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "tests/emulator/launcher.py"), "--port", "0",
             "--exit-on-stdin-eof"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        line = first_line(self.proc, self.proc.stdout, "EMULATOR_READY port=")
        if not line.startswith("EMULATOR_READY port="):
            raise SystemExit(f"the emulator did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split('=', 1)[1])}"

    def create_bucket(self, name: str) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/{name}", method="PUT"))

    def put_object(self, bucket: str, key: str, body: bytes) -> None:
        req = urllib.request.Request(
            f"{self.url}/{bucket}/{key}", data=body, method="PUT",
            headers={
                # moto refuses anonymous S3 calls but does not verify signatures.
                "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/"
                                 "aws4_request, SignedHeaders=host, Signature=00",
                "Content-Type": "text/csv",
            },
        )
        urllib.request.urlopen(req)

    def stop(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


class Service:
    """The real binary on a free loopback port with its own SQLite file."""

    def __init__(self, binary: Path, emulator: Emulator, scratch: Path, bucket: str) -> None:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "EXECUTOR_BIND": "127.0.0.1:0",
            "EXECUTOR_DATABASE_URL": f"sqlite://{scratch / 'executor.db'}",
            "EXECUTOR_POLL_MIN_MS": "50",
            "EXECUTOR_POLL_MAX_MS": "200",
            "EXECUTOR_S3_FORCE_PATH_STYLE": "true",
            "EXECUTOR_DATASETS_BUCKET": bucket,
            "EXECUTOR_LOG": "warn",
            "AWS_ENDPOINT_URL": emulator.url,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        self.log = open(scratch / "service.log", "w+")
        self.proc = subprocess.Popen(
            [str(binary), "serve"], env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        first = first_line(self.proc, self.proc.stderr, ("LISTENING ", "error:"), self.log)
        if not first.startswith("LISTENING "):
            raise SystemExit(f"the service did not start: {first!r}")
        self.url = f"http://{first.split()[1]}"
        # Keep draining its log so it never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.log.write(line)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.flush()

    def tail(self, n: int = 40) -> str:
        self.log.flush()
        self.log.seek(0)
        return "".join(self.log.readlines()[-n:])


def schemathesis(service: Service, scratch: Path) -> bool:
    cmd = [
        str(VENV_BIN / "schemathesis"), "run", f"{service.url}/openapi.json",
        "--checks", CHECKS,
        "--max-examples", str(MAX_EXAMPLES),
        "--max-time", str(MAX_TIME_SECS),
        "--workers", "2",
        "--seed", os.environ.get("CONFORMANCE_SEED", "9"),
        "--generation-database", "none",
        # Hypothesis's data-generation health checks judge the generator, not the API; on a busy
        # 2-core machine "too slow" would fail a conforming service.
        "--suppress-health-check", "all",
        "--request-timeout", "40",
        "--no-color",
        "--report", "junit",
        "--report-dir", str(scratch / "schemathesis-report"),
    ]
    print("+", " ".join(cmd), flush=True)
    # In the scratch folder: schemathesis keeps its own files (.schemathesis/) in the working one.
    return subprocess.run(cmd, cwd=scratch).returncode == 0


def client(service: Service, emulator: Emulator, scratch: Path, bucket: str) -> bool:
    out = scratch / "executor_client"
    generate = subprocess.run(
        [str(VENV_BIN / "openapi-python-client"), "generate",
         "--path", str(REPO / "openapi/openapi.json"), "--meta", "none",
         "--output-path", str(out)],
        # It formats the generated code with ruff, installed beside it.
        env={**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
        capture_output=True, text=True,
    )
    print(generate.stdout[-4000:], generate.stderr[-4000:], sep="", flush=True)
    if generate.returncode != 0:
        print("client: openapi-python-client failed")
        return False
    env = {
        **os.environ,
        "PYTHONPATH": str(scratch),
        "CONFORMANCE_SERVICE_URL": service.url,
        "CONFORMANCE_EMULATOR_URL": emulator.url,
        "CONFORMANCE_BUCKET": bucket,
    }
    return subprocess.run([sys.executable, str(HERE / "client_roundtrip.py")], env=env).returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=str(REPO / "target/debug/sagemaker-executor"))
    parser.add_argument("stages", nargs="*", help="client, schemathesis (default: both)")
    args = parser.parse_args()
    stages = args.stages or ["client", "schemathesis"]
    if any(s not in ("client", "schemathesis") for s in stages):
        parser.error("stages are client and schemathesis")
    binary = Path(args.bin)
    if not binary.exists():
        print(f"{binary} not found: build it first (cargo build)", file=sys.stderr)
        return 2
    passed, failed = 0, 0
    bucket = "conformance"
    with tempfile.TemporaryDirectory(prefix="conformance-") as tmp:
        scratch = Path(tmp)
        emulator = Emulator()
        service = None
        try:
            emulator.create_bucket(bucket)
            emulator.put_object(bucket, "in/train.csv", b"a,b,label\n1,2,0\n3,4,1\n")
            # One service for both stages: schemathesis then also meets the runs, models and
            # endpoints the client created, in every list.
            service = Service(binary, emulator, scratch, bucket)
            for stage in stages:
                started = time.monotonic()
                ok = (client(service, emulator, scratch, bucket) if stage == "client"
                      else schemathesis(service, scratch))
                took = time.monotonic() - started
                print(f"conformance stage {stage}: {'ok' if ok else 'FAILED'} ({took:.0f} s)",
                      flush=True)
                passed, failed = passed + ok, failed + (not ok)
        finally:
            if service is not None:
                service.stop()
                if failed:
                    print(f"last lines of the service log:\n{service.tail()}")
            emulator.stop()
    print(f"conformance: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
