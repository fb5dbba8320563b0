"""Synthesize the stack offline (no Docker, no AWS) with cdk.json's context plus overrides."""

from __future__ import annotations

import json
import os

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from infra.settings import Settings
from infra.stack import ImageRecognitionStack
from tests.conftest import REPO

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
CDK_JSON = json.loads((REPO / "cdk.json").read_text())

# Everything switched away from its default, to prove context reaches the template.
VARIANT = {
    "memorySize": "3008",
    "architecture": "arm64",
    "throttleRateLimit": "7",
    "throttleBurstLimit": "11",
    "usagePlanQuotaPerDay": "1234",
    "apiKeyRequired": "true",
    "enableWaf": "false",
    "expireAfterDays": "0",
    "uploadsThrottleRateLimit": "2",
    "uploadsThrottleBurstLimit": "3",
    "logRetentionDays": "14",
    "alarmP99LatencyMs": "1500",
    "alarmEmail": "ops@example.org",
    "provisionedConcurrency": "2",
    "reservedConcurrency": "20",
    "sqsBatchSize": "25",
    "modelBackend": "keras",
}


def app_with(overrides: dict[str, str] | None = None, outdir: str | None = None) -> cdk.App:
    return cdk.App(context={**CDK_JSON["context"], **(overrides or {})}, outdir=outdir)


def template_for(overrides: dict[str, str] | None = None) -> Template:
    """The stack's template (a fresh App without cdk-nag, as assertion tests should use)."""
    app = app_with(overrides)
    stack = ImageRecognitionStack(app, "ImageRecognition", settings=Settings.from_context(app.node))
    return Template.from_stack(stack)


@pytest.fixture(scope="session")
def template() -> Template:
    return template_for()


@pytest.fixture(scope="session")
def variant_template() -> Template:
    return template_for(VARIANT)
