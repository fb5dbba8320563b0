"""The rollout signals: what a canary's rollback alarms watch, per function version.

A rollout's alarms must see the new version alone: measured over the whole stage, a new version's
failures are diluted by the old version's traffic (10 % canary: a version failing every request
shows as ~10 %). So these metrics carry the function and the executed version (Lambda's
``AWS_LAMBDA_FUNCTION_NAME`` and ``AWS_LAMBDA_FUNCTION_VERSION``: two stacks in one account, or the
API and the worker, never add up) as dimensions, beside ``service``, in an EMF blob of their own
(``EphemeralMetrics``: its dimensions do not leak into the function's other metrics). Each is 0 or 1
per sample, so its Average is a rate and its SampleCount the number of samples:

- ``AnswerFailed``: an API answer with a 5xx status (handled exceptions included, which Lambda's
  ``Errors`` never counts);
- ``ModelUncertain``: a prediction below the model's confidence threshold (a model that lost
  its calibration, or the wrong preprocessing, answers uncertain on everything), from every door.
  Its samples also carry a second dimension set, the model and its version (the drift alarm's
  question, ``drift``): one metric, one sample per prediction, two views;
- ``BatchFailed``: a worker batch whose objects could not be processed (a bug or an exhausted
  resource; a client's bad photo is an error record, not a failure).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from handler.answers import drift
from handler.contract import METRICS_NAMESPACE, SERVICE_NAME

UNPUBLISHED = "$LATEST"  # outside Lambda, or an unpublished function
LOCAL = "local"  # outside Lambda: no function name

# Namespace and service given here, not read from the environment at import: the alarms name them.
rollout_metrics = EphemeralMetrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)
# ModelUncertain in a blob of its own: its second dimension set (the model's) is for it alone.
uncertain_metrics = EphemeralMetrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)


def function_version() -> str:
    return os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", UNPUBLISHED)


def function_name() -> str:
    return os.environ.get("AWS_LAMBDA_FUNCTION_NAME", LOCAL)


def measured(handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """``handler`` with its signals published after each invocation, tagged with the version that
    ran it (read per invocation: tests and the rollout demo run several versions in one process)."""

    @functools.wraps(handler)
    def run(event: Any, context: Any) -> Any:
        rollout_metrics.add_dimension(name="function", value=function_name())
        rollout_metrics.add_dimension(name="version", value=function_version())
        try:
            return handler(event, context)
        finally:
            # The rollout signals, the uncertain samples, the model's health (handler.answers.drift).
            for blob in (rollout_metrics, uncertain_metrics, drift.model_metrics):
                drift.publish(blob)

    return run


def _sample(name: str, happened: bool, blob: EphemeralMetrics = rollout_metrics) -> None:
    # Off means nothing kept: Powertools would still accumulate values and print them at 100.
    if is_metrics_disabled():
        return
    blob.add_metric(name=name, unit=MetricUnit.Count, value=1 if happened else 0)


def answer(status: int) -> None:
    _sample("AnswerFailed", status >= 500)


def predictions(answers: list[dict], model: dict[str, str]) -> None:
    """One ``ModelUncertain`` sample per prediction a confidence threshold applies to, under the
    version that answered and, as a second dimension set, under the model and its version."""
    judged = [answer["uncertain"] for answer in answers if "uncertain" in answer]
    if not judged or is_metrics_disabled():
        return
    if "version" not in uncertain_metrics.dimension_set:  # first sample of this invocation
        uncertain_metrics.add_dimension(name="function", value=function_name())
        uncertain_metrics.add_dimension(name="version", value=function_version())
        uncertain_metrics.add_dimensions(
            service=SERVICE_NAME, model=model["name"], model_version=model["version"]
        )
    for uncertain in judged:
        _sample("ModelUncertain", uncertain, uncertain_metrics)


def batch(failed: bool) -> None:
    _sample("BatchFailed", failed)
