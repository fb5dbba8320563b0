"""The one road every image travels: bytes -> pixels -> one batched model call -> ranked labels.

The API (one image or a batch), the S3 worker and the CLI all call ``Recognizer.classify``; none
decodes or runs the model itself. Stages, each timed: *preprocess* reads every header and holds
the batch to the memory budget, then decodes (``imaging``); *inference* is one model call;
*postprocess* puts each answer back in its slot. A bad image fails alone: its slot holds the
``ClientMistake``, the others are classified in the same model call.

Memory is budgeted before anything is decoded: each image's peak decode memory is estimated from
its header (``imaging.open_image``). An API request whose images together exceed
``MAX_DECODE_BYTES`` is refused whole (413); a worker batch is decoded in waves that each fit.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from handler import imaging, memory
from handler.config import Settings
from handler.errors import ClientMistake, Code, PayloadTooLarge
from handler.model import Classifier, Prediction

# After a request whose decodes held this much, hand freed memory back to the OS (costs ~1 ms).
RELEASE_AFTER_BYTES = 32 * 1024 * 1024

logger = Logger(child=True)
tracer = Tracer()
metrics = Metrics()


@dataclass(frozen=True)
class Outcome:
    """What became of one image: predictions, or the client mistake that stopped it."""

    predictions: list[Prediction] | None = None
    error: ClientMistake | None = None

    def to_dict(self, min_confidence: float | None = None) -> dict:
        """The API's shape for one image: its predictions (``uncertain`` when a threshold is set),
        or its error."""
        if self.error:
            return self.error.to_dict()
        return answer_for(self.predictions or [], min_confidence)


def answer_for(predictions: list[Prediction], min_confidence: float | None) -> dict:
    """``{"predictions": [...]}``, plus ``"uncertain"`` when a confidence threshold applies."""
    answer: dict = {"predictions": [p.to_dict() for p in predictions]}
    if min_confidence is not None:
        answer["uncertain"] = not predictions or predictions[0].probability < min_confidence
    return answer


def _open(data: bytes | ClientMistake, bounds: imaging.Limits) -> imaging.Opened | ClientMistake:
    if isinstance(data, ClientMistake):  # already refused upstream (a bad item of a batch request)
        return data
    try:
        return imaging.open_image(data, bounds)
    except ClientMistake as error:
        return error


def _decode(item: imaging.Opened | ClientMistake) -> np.ndarray | ClientMistake:
    if isinstance(item, ClientMistake):
        return item
    try:
        return imaging.decode(item)
    except ClientMistake as error:
        return error


def _over_budget(cost: int, budget: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The images decode to about {cost // 2**20} MB together; the limit is {budget // 2**20} MB "
        "per request: send fewer or smaller images.",
        Code.REQUEST_TOO_MANY_PIXELS,
    )


def waves(opened: list[imaging.Opened | ClientMistake], budget: int) -> list[list[int]]:
    """Indexes of the images to decode together, in order, each group within ``budget`` bytes."""
    groups: list[list[int]] = []
    current: list[int] = []
    used = 0
    for index, item in enumerate(opened):
        cost = item.cost if isinstance(item, imaging.Opened) else 0
        if current and used + cost > budget:
            groups.append(current)
            current, used = [], 0
        current.append(index)
        used += cost
    return [*groups, current] if current else groups


def decode_within_budget(
    opened: list[imaging.Opened | ClientMistake],
    budget: int,
    queue_over_budget: bool,
    pool: ThreadPoolExecutor | None = None,
) -> list[np.ndarray | ClientMistake]:
    """Decode within the memory budget: refuse the request over it, or decode it in waves."""
    total = sum(item.cost for item in opened if isinstance(item, imaging.Opened))
    if total > budget and not queue_over_budget:
        for item in opened:
            if isinstance(item, imaging.Opened):
                item.image.close()
        raise _over_budget(total, budget)
    for index, item in enumerate(opened):  # an image over the budget alone fails alone
        if isinstance(item, imaging.Opened) and item.cost > budget:
            item.image.close()
            opened[index] = _over_budget(item.cost, budget)
    decoded: list[np.ndarray | ClientMistake] = [None] * len(opened)  # type: ignore[list-item]
    for group in waves(opened, budget):
        items = [opened[index] for index in group]
        results = list(pool.map(_decode, items)) if pool and len(items) > 1 else [_decode(i) for i in items]
        for index, result in zip(group, results, strict=True):
            decoded[index] = result
    if total > RELEASE_AFTER_BYTES:
        memory.release()
    return decoded


class Recognizer:
    """The loaded model and the settings it serves under; built once where the function starts."""

    def __init__(self, classifier: Classifier, settings: Settings) -> None:
        self.classifier = classifier
        self.settings = settings
        # Pillow releases the GIL while decoding: a batch decodes on every CPU Lambda gives us.
        self._decoders = ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="decode")

    def limits(self, max_bytes: int | None = None) -> imaging.Limits:
        """The API's limits, or ``max_bytes`` instead (S3 objects are not bound by Lambda's payload)."""
        return imaging.Limits(
            max_bytes=max_bytes or self.settings.max_image_bytes, max_pixels=self.settings.max_image_pixels
        )

    @tracer.capture_method(capture_response=False)
    def classify(
        self,
        images: Sequence[bytes | ClientMistake],
        top_k: int,
        max_bytes: int | None = None,
        queue_over_budget: bool = False,
    ) -> list[Outcome]:
        """Classify each image in one model call; failures (given or found) are returned in place.

        Over the decode memory budget, raise ``PayloadTooLarge`` (an API request), or with
        ``queue_over_budget`` decode in waves (a worker batch, the CLI).
        """
        decoded, decode_ms = self._preprocess(images, self.limits(max_bytes), queue_over_budget)
        arrays = [item for item in decoded if isinstance(item, np.ndarray)]
        ranked: list[list[Prediction]] = []
        if arrays:
            ranked = self._inference(np.stack(arrays), top_k, decode_ms)
        return self._postprocess(decoded, ranked)

    def classify_one(self, image: bytes, top_k: int) -> list[Prediction]:
        """Classify a single image; raise its ``ClientMistake`` if it cannot be used."""
        (outcome,) = self.classify([image], top_k)
        if outcome.error:
            raise outcome.error
        return outcome.predictions or []

    def _preprocess(
        self, images: Sequence[bytes | ClientMistake], bounds: imaging.Limits, queue_over_budget: bool
    ) -> tuple[list[np.ndarray | ClientMistake], float]:
        for data in images:  # here, not in the decoder threads: the metric set is not thread-safe
            if isinstance(data, bytes):
                metrics.add_metric(name="ImageBytes", unit=MetricUnit.Bytes, value=len(data))
        started = time.perf_counter()
        opened = [_open(data, bounds) for data in images]  # headers only: milliseconds
        decoded = decode_within_budget(
            opened, self.settings.max_decode_bytes, queue_over_budget, self._decoders
        )
        decode_ms = (time.perf_counter() - started) * 1000
        metrics.add_metric(name="DecodeMs", unit=MetricUnit.Milliseconds, value=decode_ms)
        return decoded, decode_ms

    def _inference(self, batch: np.ndarray, top_k: int, decode_ms: float) -> list[list[Prediction]]:
        started = time.perf_counter()
        ranked = self.classifier.classify(batch, top_k=top_k)
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
        decoded: list[np.ndarray | ClientMistake], ranked: list[list[Prediction]]
    ) -> list[Outcome]:
        answers = iter(ranked)
        return [
            Outcome(error=item) if isinstance(item, ClientMistake) else Outcome(predictions=next(answers))
            for item in decoded
        ]
