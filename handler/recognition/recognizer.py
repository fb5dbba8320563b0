"""The one road every image travels: bytes -> pixels -> one batched model call -> ranked labels.

The API (one image or a batch), the records pipeline and the CLI all call ``Recognizer.classify``;
none decodes or runs the model itself. Stages, each timed: *preprocess* decodes each image in the
decode sandbox's worker processes (``sandbox``), the batch across them; *inference* is one model call
(``model``); *postprocess* puts each answer back in its slot. A bad image fails alone: its slot
holds the ``Refusal``, the others are classified in the same model call.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from handler.config import DecodeSettings
from handler.errors import Refusal
from handler.recognition import imaging
from handler.recognition.model import Classifier, Prediction
from handler.recognition.sandbox import DecodeSandbox

logger = Logger(child=True)
tracer = Tracer()
metrics = Metrics()


@dataclass(frozen=True)
class ImageResult:
    """What became of one image: its predictions and whether it looks like what the model knows,
    or the refusal that stopped it."""

    predictions: list[Prediction] | None = None
    error: Refusal | None = None
    in_domain: bool = True

    def to_dict(self, min_confidence: float | None = None) -> dict:
        """The API's shape for one image: its predictions, ``in_domain``, ``uncertain`` when a
        threshold is set; or its error."""
        if self.error:
            return self.error.to_dict()
        return answer_for(self.predictions or [], min_confidence, self.in_domain)


def answer_for(predictions: list[Prediction], min_confidence: float | None, in_domain: bool = True) -> dict:
    """``{"predictions": [...], "in_domain": ...}``, plus ``"uncertain"`` when a confidence
    threshold applies. ``in_domain`` false: the photo is unlike anything the model was trained on
    (its ranking is still given); ``uncertain``: the model hesitates between its classes."""
    answer: dict = {"predictions": [p.to_dict() for p in predictions], "in_domain": in_domain}
    if min_confidence is not None:
        answer["uncertain"] = not predictions or predictions[0].probability < min_confidence
    return answer


class Recognizer:
    """The loaded model, the decode sandbox and the settings they serve under; built once where the
    function starts. A batch decodes in parallel, one image per sandbox worker at a time."""

    def __init__(self, classifier: Classifier, settings: DecodeSettings, sandbox: DecodeSandbox) -> None:
        self.classifier = classifier
        self.settings = settings
        self.sandbox = sandbox

    def limits(self, max_bytes: int | None = None) -> imaging.DecodeLimits:
        """The API's limits, or ``max_bytes`` instead (S3 objects are not bound by Lambda's payload)."""
        return imaging.DecodeLimits(
            max_bytes=max_bytes or self.settings.max_image_bytes, max_pixels=self.settings.max_image_pixels
        )

    @tracer.capture_method(capture_response=False)
    def classify(
        self,
        images: Sequence[bytes | Refusal],
        top_k: int,
        max_bytes: int | None = None,
        request_deadline: bool = True,
    ) -> list[ImageResult]:
        """Classify each image in one model call; failures (given or found) are returned in place.

        Each image decodes in a worker of its own, under its CPU and wall bounds; with
        ``request_deadline`` (an API request) the images together have the request's CPU budget and
        end too. Without it (stored objects, the CLI), one costly image costs its own bounds only.
        """
        decoded, decode_ms = self._preprocess(images, self.limits(max_bytes), request_deadline)
        arrays = [item for item in decoded if isinstance(item, np.ndarray)]
        ranked: list[tuple[list[Prediction], bool]] = []
        if arrays:
            ranked = self._inference(np.stack(arrays), top_k, decode_ms)
        # The spare workers forked while the model ran; they are ready before this answer leaves,
        # since Lambda freezes every process once it has (nothing may be left for the next event).
        self.sandbox.replenish()
        return self._postprocess(decoded, ranked)

    def _preprocess(
        self, images: Sequence[bytes | Refusal], bounds: imaging.DecodeLimits, request_deadline: bool
    ) -> tuple[list[np.ndarray | Refusal], float]:
        for data in images:
            if isinstance(data, bytes):
                metrics.add_metric(name="ImageBytes", unit=MetricUnit.Bytes, value=len(data))
        started = time.perf_counter()
        replaced = self.sandbox.replaced
        # uint8, as every model takes them: scaling is inside the model
        decoded = self.sandbox.decode(images, bounds, request=request_deadline)
        decode_ms = (time.perf_counter() - started) * 1000
        metrics.add_metric(name="DecodeMs", unit=MetricUnit.Milliseconds, value=decode_ms)
        if self.sandbox.replaced > replaced:  # stopped at a bound, or crashed
            metrics.add_metric(
                name="DecodeWorkersReplaced", unit=MetricUnit.Count, value=self.sandbox.replaced - replaced
            )
        return decoded, decode_ms

    def _inference(
        self, batch: np.ndarray, top_k: int, decode_ms: float
    ) -> list[tuple[list[Prediction], bool]]:
        started = time.perf_counter()
        ranked = self.classifier.assess(batch, top_k=top_k)
        inference_ms = (time.perf_counter() - started) * 1000
        metrics.add_metric(name="InferenceMs", unit=MetricUnit.Milliseconds, value=inference_ms)
        metrics.add_metric(name="BatchSize", unit=MetricUnit.Count, value=len(batch))
        logger.debug(
            "model call",
            extra={
                "batch_size": len(batch),
                "decode_ms": round(decode_ms, 2),
                "inference_ms": round(inference_ms, 2),
            },
        )
        return ranked

    @staticmethod
    def _postprocess(
        decoded: list[np.ndarray | Refusal], ranked: list[tuple[list[Prediction], bool]]
    ) -> list[ImageResult]:
        answers = iter(ranked)
        return [
            ImageResult(error=item)
            if isinstance(item, Refusal)
            else ImageResult(*_with_domain(next(answers)))
            for item in decoded
        ]


def _with_domain(answer: tuple[list[Prediction], bool]) -> tuple[list[Prediction], None, bool]:
    predictions, in_domain = answer
    return predictions, None, in_domain
