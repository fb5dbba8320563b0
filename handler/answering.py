"""Every answer the service gives is built here, whatever door the image came through (the API,
an S3 notification, a bulk job): the ranked classes (``uncertain`` under the confidence threshold),
the ``prediction_id`` that names the image, the model and the time, the optional capture of the
image with its answer (``records.capture``), and the model-health samples (``drift``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from handler import drift
from handler.recognition.errors import Refusal
from handler.recognition.recognizer import ImageResult
from handler.records.capture import PredictionId

if TYPE_CHECKING:
    from handler.runtime import Runtime


def answers(
    runtime: Runtime, images: Sequence[bytes | Refusal], results: Sequence[ImageResult], source: str
) -> list[dict]:
    """One answer per image, in order: an error answer stays as it is; a prediction gets its id
    and, when sampled, is captured (``"captured": true``, or false when S3 refused it)."""
    info = runtime.recognizer.classifier.info.to_dict()
    now = datetime.now(UTC)
    built = []
    for image, result in zip(images, results, strict=True):
        answer = result.to_dict(runtime.min_confidence)
        if result.error is None and isinstance(image, bytes):
            pid = PredictionId.new(image, info["name"], info["version"], now)
            answer["prediction_id"] = str(pid)
            reason = runtime.capture.sampled_by(answer)
            if reason:
                answer["captured"] = runtime.capture.store(pid, image, answer, info, source, reason)
        built.append(answer)
    drift.observe(built, info, runtime.recognizer.classifier.labels)
    return built
