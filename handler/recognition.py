"""The one road every image travels: bytes -> pixels -> one batched model call -> ranked labels.

The API (one image) and the S3 path (a batch) both call ``classify``; neither decodes or runs the
model itself. A bad image fails alone: its slot holds the ``ClientError``, the others are
classified in the same model call.

Memory is budgeted before anything is decoded: every header is read first and each image's peak
decode memory estimated (``imaging.open_image``). An API request whose images together exceed
``MAX_DECODE_BYTES`` is refused whole (413); a worker batch is decoded in waves that each fit.
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

from handler import config, imaging, memory, model
from handler.errors import ClientError, Code, PayloadTooLarge

# After a request whose decodes held this much, hand freed memory back to the OS (costs ~1 ms).
RELEASE_AFTER_BYTES = 32 * 1024 * 1024

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


def _open(data: bytes | ClientError, bounds: imaging.Limits) -> imaging.Opened | ClientError:
    if isinstance(data, ClientError):  # already refused upstream (a bad item of a batch request)
        return data
    try:
        return imaging.open_image(data, bounds)
    except ClientError as error:
        return error


def _decode(item: imaging.Opened | ClientError) -> np.ndarray | ClientError:
    if isinstance(item, ClientError):
        return item
    try:
        return imaging.decode(item)
    except ClientError as error:
        return error


def _over_budget(cost: int, budget: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The images decode to about {cost // 2**20} MB together; the limit is {budget // 2**20} MB "
        "per request: send fewer or smaller images.",
        Code.REQUEST_TOO_MANY_PIXELS,
    )


def waves(opened: list[imaging.Opened | ClientError], budget: int) -> list[list[int]]:
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


def _decode_all(
    opened: list[imaging.Opened | ClientError], budget: int, queue_over_budget: bool
) -> list[np.ndarray | ClientError]:
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
    decoded: list[np.ndarray | ClientError] = [None] * len(opened)  # type: ignore[list-item]
    for group in waves(opened, budget):
        items = [opened[index] for index in group]
        results = list(_decoders().map(_decode, items)) if len(items) > 1 else [_decode(items[0])]
        for index, result in zip(group, results, strict=True):
            decoded[index] = result
    if total > RELEASE_AFTER_BYTES:
        memory.release()
    return decoded


@tracer.capture_method(capture_response=False)
def classify(
    images: Sequence[bytes | ClientError],
    top_k: int,
    max_bytes: int | None = None,
    queue_over_budget: bool = False,
) -> list[Outcome]:
    """Classify each image in one model call; failures (given or found) are returned in place.

    Over the decode memory budget, raise ``PayloadTooLarge`` (an API request), or with
    ``queue_over_budget`` decode in waves (a worker batch, the CLI).
    """
    bounds = limits(max_bytes)
    for data in images:  # here, not in the decoder threads: the metric set is not thread-safe
        if isinstance(data, bytes):
            metrics.add_metric(name="ImageBytes", unit=MetricUnit.Bytes, value=len(data))
    started = time.perf_counter()
    opened = [_open(data, bounds) for data in images]  # headers only: milliseconds
    decoded = _decode_all(opened, config.settings().max_decode_bytes, queue_over_budget)
    decode_ms = (time.perf_counter() - started) * 1000
    metrics.add_metric(name="DecodeMs", unit=MetricUnit.Milliseconds, value=decode_ms)
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
        logger.debug(
            "model call",
            extra={
                "batch_size": len(arrays),
                "decode_ms": round(decode_ms, 2),
                "inference_ms": round(elapsed_ms, 2),
            },
        )
        outcomes = [outcome or Outcome(predictions=next(ranked)) for outcome in outcomes]
    return outcomes  # type: ignore[return-value]


def classify_one(image: bytes, top_k: int) -> list[model.Prediction]:
    """Classify a single image; raise its ``ClientError`` if it cannot be used."""
    (outcome,) = classify([image], top_k)
    if outcome.error:
        raise outcome.error
    return outcome.predictions or []
