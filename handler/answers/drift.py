"""The model's health in production, per model version: what its answers look like, beside the
card's validation baseline, so a drift alarm can say "this version answers differently now".

One EMF blob of its own (``EphemeralMetrics``) whose dimensions are the service, the model and its
version (the rollout signals are per function version: another question). Per prediction:

- ``Top1Confidence``: the top-1 probability (calibrated when the model has a temperature);
- ``ModelUncertain`` is the rollout signals' (``signals``), published under this room's dimensions
  too: one metric, two questions;
- ``ModelOutOfDomain``: 0 or 1, whether the photo was unlike the model's training data (Average: the
  share of photos the model does not know; rises when users point it at something new);
- ``TopClass_<label>``: for models of at most ``WATCHED_CLASSES`` classes, 1 for the top-1 class
  and 0 for the others (Average: the class's share). ImageNet's 1,000 classes would be 1,000
  metrics per version (about $300 a month): they are not watched one by one.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from handler.contract import METRICS_NAMESPACE, SERVICE_NAME, WATCHED_CLASSES, top_class_metric

model_metrics = EphemeralMetrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)


def observe(answers: list[dict], model: dict, labels: list[str]) -> None:
    """One sample per answered image (error answers carry no prediction and are skipped)."""
    if is_metrics_disabled():
        return
    predicted = [a for a in answers if a.get("predictions")]
    if not predicted:
        return
    if "model" not in model_metrics.dimension_set:
        model_metrics.add_dimension(name="model", value=model["name"])
        model_metrics.add_dimension(name="model_version", value=model["version"])
    watched = labels if len(labels) <= WATCHED_CLASSES else []
    for answer in predicted:
        top = answer["predictions"][0]
        model_metrics.add_metric(name="Top1Confidence", unit=MetricUnit.NoUnit, value=top["probability"])
        model_metrics.add_metric(
            name="ModelOutOfDomain", unit=MetricUnit.Count, value=0 if answer.get("in_domain", True) else 1
        )
        for label in watched:
            model_metrics.add_metric(
                name=top_class_metric(label), unit=MetricUnit.Count, value=1 if top["label"] == label else 0
            )


def publish(blob: EphemeralMetrics) -> None:
    """Print what ``blob`` holds, then forget it all, dimensions included: Powertools keeps them
    when it has nothing to print (after its own flush at 100 values, say), and an invocation must
    never publish under the last one's version or model. Every EMF blob of ``answers`` ends so."""
    if blob.metric_set:
        blob.flush_metrics()
    blob.clear_metrics()


def flush() -> None:
    """Publish what this invocation observed (a no-op when it observed nothing)."""
    publish(model_metrics)
