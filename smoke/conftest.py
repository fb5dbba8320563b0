"""Where the API is, and the photo it must recognise. Standard library and pytest only, so the suite
runs anywhere (a CI runner after a deploy, a laptop) against any URL."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

FIXTURE = Path(__file__).resolve().parents[1] / "events" / "api-http-predict-raw-jpeg.json"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--api-url", default=os.environ.get("API_URL"), help="the API's base URL (ApiUrl output)"
    )
    parser.addoption(
        "--expect-top1",
        default=os.environ.get("SMOKE_TOP1", "military_uniform"),
        help="top-1 label of the photo for the deployed model (ImageNet: military_uniform)",
    )


@pytest.fixture(scope="session")
def api(request: pytest.FixtureRequest) -> str:
    url = request.config.getoption("--api-url")
    if not url:
        pytest.fail("Say which API to test: make smoke API_URL=https://…/prod/ (or --api-url).")
    return url if url.endswith("/") else url + "/"


@pytest.fixture(scope="session")
def photo() -> bytes:
    """grace_hopper.jpg (public domain), as the committed API fixture embeds it."""
    return base64.b64decode(json.loads(FIXTURE.read_text())["body"])


@pytest.fixture(scope="session")
def top1(request: pytest.FixtureRequest) -> str:
    return request.config.getoption("--expect-top1")
