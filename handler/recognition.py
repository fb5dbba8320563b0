"""The one road every image travels: bytes -> pixels -> one batched model call -> ranked labels.

The API (one image) and the S3 path (a batch) both call ``classify``; neither decodes or runs the
model itself. A bad image fails alone: its slot holds the ``ClientError``, the others are
classified in the same model call.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache

import numpy as np
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from handler import config, imaging, model
from handler.errors import ClientError

logger = Logger(child=True)
tracer = Tracer()
metrics = Metrics()


@dataclass(frozen=True)
class Outcome:
    """What became of one image: predictions, or the client error that stopped it."""

    predictions: list[model.Prediction] | None = None
    error: ClientError | None = None

    def to_dict(self) -> dict:
        """The API's shape for one image: its predictions, or its error."""
        if self.error:
            return self.error.to_dict()
        return {"predictions": [p.to_dict() for p in self.predictions or []]}


def limits(max_bytes: int | None = None) -> imaging.Limits:
    """The API's limits, or ``max_bytes`` instead (S3 objects are not bound by Lambda's payload)."""
    settings = config.settings()
    return imaging.Limits(
        max_bytes=max_bytes or settings.max_image_bytes, max_pixels=settings.max_image_pixels
    )


@cache
def _decoders() -> ThreadPoolExecutor:
    """Pillow releases the GIL while decoding: a batch decodes on every CPU Lambda gives us."""
    return ThreadPoolExecutor(max_workers=config.settings().threads, thread_name_prefix="decode")


def _decode(data: bytes | ClientError, bounds: imaging.Limits) -> np.ndarray | ClientError:
    if isinstance(data, ClientError):  # already refused upstream (a bad item of a batch request)
        return data
    try:
        return imaging.to_array(data, bounds)
    except ClientError as error:
        return error


@tracer.capture_method(capture_response=False)
def classify(
    images: Sequence[bytes | ClientError], top_k: int, max_bytes: int | None = None
) -> list[Outcome]:
    """Classify each image in one model call; failures (given or found) are returned in place."""
    bounds = limits(max_bytes)
    for data in images:  # here, not in the decoder threads: the metric set is not thread-safe
        if isinstance(data, bytes):
            metrics.add_metric(name="ImageBytes", unit=MetricUnit.Bytes, value=len(data))
    if len(images) > 1:
        decoded = list(_decoders().map(_decode, images, [bounds] * len(images)))
    else:
        decoded = [_decode(data, bounds) for data in images]
    arrays = [item for item in decoded if isinstance(item, np.ndarray)]
    outcomes: list[Outcome | None] = [
        Outcome(error=item) if isinstance(item, ClientError) else None for item in decoded
    ]
    if arrays:
        started = time.perf_counter()
        ranked = iter(model.classifier().classify(np.stack(arrays), top_k=top_k))
        elapsed_ms = (time.perf_counter() - started) * 1000
        metrics.add_metric(name="InferenceMs", unit=MetricUnit.Milliseconds, value=elapsed_ms)
        metrics.add_metric(name="BatchSize", unit=MetricUnit.Count, value=len(arrays))
        logger.debug("model call", extra={"batch_size": len(arrays), "inference_ms": round(elapsed_ms, 2)})
        outcomes = [outcome or Outcome(predictions=next(ranked)) for outcome in outcomes]
    return outcomes  # type: ignore[return-value]


def classify_one(image: bytes, top_k: int) -> list[model.Prediction]:
    """Classify a single image; raise its ``ClientError`` if it cannot be used."""
    (outcome,) = classify([image], top_k)
    if outcome.error:
        raise outcome.error
    return outcome.predictions or []
