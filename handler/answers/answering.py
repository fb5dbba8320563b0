"""Every answer the service gives is built here, whatever door the image came through (the API,
an S3 notification, a bulk job): the ranked classes (``uncertain`` under the confidence threshold),
the ``prediction_id`` that names the image, the model and the time, the optional capture of the
image with its answer (``capture``), and the model-health samples (``drift``, ``signals``).

The doors are given an ``Answerer``, not the runtime: it is all they need of recognition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from handler.answers import drift, signals
from handler.answers.capture import Capture, PredictionId, Sampled
from handler.contract import NOT_TRAFFIC
from handler.errors import Refusal
from handler.recognition.recognizer import ImageResult, Recognizer


@dataclass(frozen=True)
class Answer:
    """One image's answer: the body a door returns or stores, and the refusal behind it when the
    image could not be used (the API answers a single image's refusal with its status)."""

    body: dict[str, Any]
    refusal: Refusal | None = None


@dataclass(frozen=True)
class Answerer:
    """The one road from images to answers: classify them in one model call (``Recognizer``), then
    build each answer in order."""

    recognizer: Recognizer
    capture: Capture
    min_confidence: float | None  # below it, ``"uncertain": true``; None: never

    @cached_property
    def model(self) -> dict[str, str]:
        """The model that answers: name, version, backend (read once: every record carries it)."""
        return self.recognizer.classifier.info.to_dict()

    @property
    def labels(self) -> list[str]:
        return self.recognizer.classifier.labels

    @property
    def manifest(self) -> dict[str, Any]:
        return self.recognizer.classifier.manifest

    def default_top_k(self, configured: int) -> int:
        """``DEFAULT_TOP_K`` bounded by this model's class count (a two-class model answers two)."""
        return min(configured, len(self.labels))

    def answer(
        self,
        images: Sequence[bytes | Refusal],
        top_k: int,
        source: str,
        *,
        max_bytes: int | None = None,
        request_deadline: bool = True,
    ) -> list[Answer]:
        """One answer per image, in order (a refusal given in ``images`` stays in its place).
        ``max_bytes`` and ``request_deadline``: see ``Recognizer.classify``."""
        results = self.recognizer.classify(images, top_k, max_bytes, request_deadline=request_deadline)
        return self._built(images, results, source)

    def _built(
        self, images: Sequence[bytes | Refusal], results: Sequence[ImageResult], source: str
    ) -> list[Answer]:
        """A prediction gets its id and, when sampled, is captured (``"captured": true``, or false
        when S3 refused it or the invocation's capture budget was spent). The id names the image,
        the model and the time: the same photo twice in one request has one id, and one capture."""
        info = self.model
        now = datetime.now(UTC)
        built, sampled = [], []
        traffic = source not in NOT_TRAFFIC  # the gate's check photos, a developer's own
        for image, result in zip(images, results, strict=True):
            answer = Answer(result.to_dict(self.min_confidence), result.error)
            if result.error is None and isinstance(image, bytes):
                pid = PredictionId.new(image, info["name"], info["version"], now)
                answer.body["prediction_id"] = str(pid)
                reason = self.capture.sampled_by(answer.body) if traffic else None
                if reason:
                    sampled.append(Sampled(pid, image, dict(answer.body), reason))
            built.append(answer)
        if sampled:
            stored = self.capture.store_all(sampled, info, self.labels, source)
            for answer in built:
                if answer.body.get("prediction_id") in stored:
                    answer.body["captured"] = stored[answer.body["prediction_id"]]
        if traffic:
            bodies = [answer.body for answer in built]
            drift.observe(bodies, info, self.labels)
            signals.predictions(bodies, info)
        return built
