"""Submits one demo training run to a service running against the bundled emulator and prints its
transitions until it ends. Used by scripts/serve in demo mode."""
import json
import sys
import time
import urllib.request

import boto3

bind, endpoint = sys.argv[1], sys.argv[2]
base = f"http://{bind}"


def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


for _ in range(300):
    try:
        call("GET", "/healthz")
        break
    except OSError:
        time.sleep(0.1)

boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="demo",
             aws_secret_access_key="demo").create_bucket(Bucket="essedum-demo")
run = call("POST", "/api/service/v1/pipelines/training/train", {
    "RoleArn": "arn:aws:iam::123456789012:role/SageMakerDemo",
    "Bucket": "essedum-demo",
    "S3Prefix": "demo",
    "TrainingImage": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1",
    "inline_csv": "label,feature\n1,0.9\n0,0.1\n1,0.8\n",
    "HyperParameters": {"num_round": "10", "_emulator_polls": "4"},
})
print(f"demo: submitted training run {run['id']} (job {run['name']})", flush=True)
seen = 0
while True:
    detail = call("GET", f"/api/v1/runs/{run['id']}")
    for ev in detail["history"][seen:]:
        print(f"demo: {ev.get('from_state') or '-'} -> {ev['to_state']}: {ev.get('detail') or ''}", flush=True)
    seen = len(detail["history"])
    if detail["state"] in ("Done", "Failed", "Cancelled"):
        status = call("GET", f"/status/{run['id']}")
        print(f"demo: run ended {status['state']}; artifacts at {status.get('artifacts')}", flush=True)
        break
    time.sleep(0.5)
