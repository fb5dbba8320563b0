"""Shared test setup: the real model, the real photos, and event helpers.

Nothing here fakes the model. If the model or the photos are missing the session stops with a
message saying how to get them; tests never fall back to random weights or skip.
"""

from __future__ import annotations

import os

import pytest

from tests.support import MODEL_DIR, PHOTOS, SHARED

os.environ.setdefault("MODEL_DIR", str(MODEL_DIR))
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")  # no X-Ray daemon here
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_sessionstart(session: pytest.Session) -> None:
    problems = []
    if not (MODEL_DIR / "manifest.json").is_file():
        problems.append(
            f"No model in {MODEL_DIR}. Run `make model`: it exports MobileNetV2 with the real ImageNet "
            "weights, which Keras reads from $KERAS_HOME/models (`make keras-cache` links them from "
            f"{SHARED / 'models'}; on a machine with internet Keras downloads them)."
        )
    for name in ("grace_hopper.jpg", "cat.bmp"):
        if not (PHOTOS / name).is_file():
            problems.append(
                f"Missing test photo {PHOTOS / name}: the tests need ../shared/images beside the repo."
            )
    if problems:
        pytest.exit("\n".join(problems), returncode=1)


@pytest.fixture(scope="session")
def grace_hopper() -> bytes:
    return (PHOTOS / "grace_hopper.jpg").read_bytes()


@pytest.fixture(scope="session")
def cat() -> bytes:
    return (PHOTOS / "cat.bmp").read_bytes()


@pytest.fixture(scope="session")
def app():
    """``handler.app`` imported once: the cold start (model load + warm-up) happens here."""
    from handler import app as lambda_app

    return lambda_app


@pytest.fixture(scope="session")
def moto_s3():
    """moto's S3 server on 127.0.0.1 for the whole session; the handler's boto3 client talks to it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(
        {
            "AWS_ENDPOINT_URL_S3": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    os.environ.pop("AWS_PROFILE", None)
    yield endpoint
    server.stop()


# Property-based fuzzing: a short run in `make test`, 10,000 examples with `make fuzz`.
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.register_profile(
    "fuzz", max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
