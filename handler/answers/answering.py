"""Every answer the service gives is built here, whatever door the image came through (the API,
an S3 notification, a bulk job): the ranked classes (``uncertain`` under the confidence threshold),
the ``prediction_id`` that names the image, the model and the time, the optional capture of the
image with its answer (``records.capture``), and the model-health samples (``drift``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from handler.answers import drift
from handler.answers.capture import PredictionId, Sampled
from handler.contract import QUALITY_GATE_SOURCE
from handler.errors import Refusal
from handler.recognition.recognizer import ImageResult

if TYPE_CHECKING:
    from handler.runtime import Runtime


def answers(
    runtime: Runtime, images: Sequence[bytes | Refusal], results: Sequence[ImageResult], source: str
) -> list[dict]:
    """One answer per image, in order: an error answer stays as it is; a prediction gets its id
    and, when sampled, is captured (``"captured": true``, or false when S3 refused it or the
    invocation's capture budget was spent). The id names the image, the model and the time: the
    same photo twice in one request has one id, and one capture."""
    info = runtime.recognizer.classifier.info.to_dict()
    now = datetime.now(UTC)
    built, sampled = [], []
    for image, result in zip(images, results, strict=True):
        answer = result.to_dict(runtime.min_confidence)
        if result.error is None and isinstance(image, bytes):
            pid = PredictionId.new(image, info["name"], info["version"], now)
            answer["prediction_id"] = str(pid)
            reason = None if source == QUALITY_GATE_SOURCE else runtime.capture.sampled_by(answer)
            if reason:
                sampled.append(Sampled(pid, image, dict(answer), reason))
        built.append(answer)
    if sampled:
        labels = runtime.recognizer.classifier.labels
        stored = runtime.capture.store_all(sampled, info, labels, source)
        for answer in built:
            if answer.get("prediction_id") in stored:
                answer["captured"] = stored[answer["prediction_id"]]
    if source != QUALITY_GATE_SOURCE:  # the gate's check photos are not production traffic
        drift.observe(built, info, runtime.recognizer.classifier.labels)
    return built
