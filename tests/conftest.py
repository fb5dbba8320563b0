"""Shared test setup: the real model, the real photos, moto's S3, and the function under test.

Nothing here fakes the model. If the model or the photos are missing the session stops with a
message saying how to get them; tests never fall back to random weights or skip.

The function is configured in one place, ``configure``: settings built from the defaults plus a
test's overrides, and an S3 client given explicitly. No test edits the environment or clears a
cache to reconfigure it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import pytest

from tests.support import CHROMIUM_FLAGS, MODEL_DIR, PHOTOS, SHARED, s3_client_for


def pytest_configure(config: pytest.Config) -> None:
    """Libraries only, once per session: no X-Ray daemon here, quiet TensorFlow, no jsii banner."""
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    from handler import config

    config.apply_powertools_defaults()  # before test modules import handler's loggers


# The modules that take minutes (training, the production loop, the docs' blocks, exports, scale
# runs), longest first: pytest-xdist hands modules to its workers in collection order, so these start
# at once and the short ones fill in beside them, instead of one long module running alone at the end.
LONGEST_FIRST = (
    "tests/training/test_scale.py",
    "tests/training/test_train.py",
    "tests/test_production_loop.py",
    "tests/docs/test_doc_blocks.py",
    "tests/training/test_imagenet_start.py",
    "tests/layers/test_export.py",
    "tests/handler/records/test_bulk_scale.py",
    "tests/devtools/test_backfill.py",
    "tests/devtools/test_rollout_demo.py",
    "tests/training/test_train_calibrated.py",
    "tests/layers/test_build.py",
    "tests/infra/test_nag.py",
    "tests/test_dockerfile.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest modules first (``LONGEST_FIRST``), every module's tests in their own order."""
    rank = {module: position for position, module in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


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
def moto_s3() -> str:
    """moto's S3 server on 127.0.0.1 for the whole session; its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_client(moto_s3: str):
    """A boto3 client for the session's moto server (tests' own view of S3)."""
    return s3_client_for(moto_s3)


@pytest.fixture
def bucket(s3_client) -> str:
    """A new, empty bucket on the session's moto server."""
    import uuid

    name = f"bucket-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def classifier():
    """The real model, loaded once for the session (each configured function shares it)."""
    from handler.recognition import model

    return model.load_classifier(MODEL_DIR, "litert", threads=os.cpu_count() or 1)


@pytest.fixture(scope="session")
def sandbox():
    """The decode sandbox with its default settings, started once for the session (the functions
    ``configure`` builds share it: tests run one event at a time)."""
    from handler import config
    from handler.runtime import start_sandbox

    with start_sandbox(config.read_settings({"MODEL_DIR": str(MODEL_DIR)})) as started:
        yield started


@pytest.fixture(scope="session")
def configure(classifier, s3_client, sandbox) -> Callable[..., object]:
    """The one way tests configure the function: ``configure(uploads_bucket="b", s3_client=c)``.

    Settings are the defaults (as Lambda would read them with no variables set) plus the given
    overrides; the S3 client is the session's moto one unless another is given; ``model`` serves
    another loaded classifier (a trained one) instead of the session's ImageNet model; ``sandbox``
    another decode sandbox (its own limits or decoder) instead of the session's.
    """
    from handler import config
    from handler.function import Function
    from handler.runtime import Runtime

    defaults = config.read_settings({"MODEL_DIR": str(MODEL_DIR)})

    def build(s3_client=s3_client, model=None, sandbox=sandbox, **overrides) -> Function:
        settings = dataclasses.replace(defaults, **overrides)
        return Function(Runtime.with_classifier(settings, model or classifier, s3_client, sandbox))

    return build


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, headless, with the flags this machine needs (no background networking)."""
    import shutil

    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is needed: `make browser` installs it (apt-get install chromium)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def app(configure):
    """The function with its default settings: ``app.api_handler``, ``app.s3_handler``."""
    return configure()


# Property-based fuzzing: a short run in `make test`, 10,000 examples with `make fuzz`.
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.register_profile(
    "fuzz", max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
