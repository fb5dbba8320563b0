"""The real ``awslambdaric`` (the image's bootstrap) against our local Runtime API."""

from __future__ import annotations

import json
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from localaws.events import rest_event, s3_event, sqs_event
from localaws.runtime_api import RuntimeApi, start_runtime_client
from tests.support import EVENTS, MODEL_DIR, REPO

pytestmark = [pytest.mark.slow]

QUIET = {"PYTHONPATH": str(REPO), "MODEL_DIR": str(MODEL_DIR), "POWERTOOLS_LOG_LEVEL": "WARNING"}


def rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator:
    """Start a Runtime API and a runtime client for a handler; stop both afterwards."""
    started: list[tuple[RuntimeApi, subprocess.Popen]] = []

    def start(handler: str, **env: str) -> tuple[RuntimeApi, subprocess.Popen]:
        api = RuntimeApi(timeout_s=120)
        threading.Thread(target=api.serve_forever, daemon=True).start()
        client = start_runtime_client(api, handler, {**QUIET, **env})
        started.append((api, client))
        return api, client

    yield start
    for api, client in started:
        client.kill()
        client.wait(timeout=10)
        api.shutdown()
        api.server_close()


def test_api_handler_under_the_runtime_client(runtime) -> None:
    api, client = runtime("handler.app.api_handler")
    expected = json.loads((EVENTS / "expected.json").read_text())
    for fixture in sorted(EVENTS.glob("api-*.json")):
        kind, answer = api.invoke(json.loads(fixture.read_text()))
        assert kind == "response", answer
        assert answer["statusCode"] == expected[fixture.name]["status"], fixture.name
        if "top1" in expected[fixture.name]:
            assert json.loads(answer["body"])["predictions"][0]["label"] == expected[fixture.name]["top1"]

    kind, answer = api.invoke(b"{" + b'"x": "' + b"a" * (7 * 1024 * 1024) + b'"}')
    assert kind == "rejected" and answer["errorType"] == "RequestEntityTooLargeException"
    bad = rest_event("POST", "/predict", body=b"not a photo", headers={"Content-Type": "text/plain"})
    kind, answer = api.invoke(bad)
    assert kind == "response" and answer["statusCode"] == 415
    kind, answer = api.invoke({"not": "an api event"})
    assert kind == "response" and answer["statusCode"] == 400
    assert client.poll() is None, "the runtime client survives every input"


def test_rss_stays_flat_over_200_invocations(runtime) -> None:
    api, client = runtime("handler.app.api_handler")
    names = ("predict-multipart", "predict-raw-jpeg", "error-415-not-an-image", "error-422-truncated-jpeg")
    events = [json.loads(next(EVENTS.glob(f"api-*-{name}.json")).read_text()) for name in names]
    for event in events * 4:  # warm-up: allocator pools, interpreter caches
        api.invoke(event)
    before = rss_kb(client.pid)
    for index in range(200):
        kind, answer = api.invoke(events[index % len(events)])
        assert kind == "response" and answer["statusCode"] in (200, 415, 422)
    after = rss_kb(client.pid)
    assert client.poll() is None
    assert after < before * 1.10, f"RSS grew from {before} kB to {after} kB over 200 invocations"


def test_init_failure_is_reported_to_the_runtime_api(runtime, tmp_path: Path) -> None:
    api, _ = runtime("handler.app.api_handler", MODEL_DIR=str(tmp_path / "no-model"))
    assert api.init_failed.wait(timeout=60), "the runtime client never reported the init error"
    error = json.loads(api.init_error)
    assert error["errorType"] == "ModelError" and "make model" in error["errorMessage"]


def test_s3_handler_under_the_runtime_client(runtime, moto_s3: str, s3_client, grace_hopper: bytes) -> None:
    bucket = f"ric-{uuid.uuid4().hex[:10]}"
    s3 = s3_client
    s3.create_bucket(Bucket=bucket)
    etag = s3.put_object(Bucket=bucket, Key="uploads/g.jpg", Body=grace_hopper)["ETag"].strip('"')
    # The function process is configured as Lambda configures it: by its environment.
    aws = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    api, client = runtime("handler.app.s3_handler", AWS_ENDPOINT_URL_S3=moto_s3, **aws)
    kind, answer = api.invoke(sqs_event([s3_event(bucket, [("uploads/g.jpg", etag, len(grace_hopper))])]))
    assert (kind, answer) == ("response", {"batchItemFailures": []})
    record = json.loads(s3.get_object(Bucket=bucket, Key="results/uploads/g.jpg.json")["Body"].read())
    assert record["predictions"][0]["label"] == "military_uniform"
    assert client.poll() is None
