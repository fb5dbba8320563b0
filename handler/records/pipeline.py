"""Objects -> records: every object of a batch ends with exactly one record, nothing is lost.

The one road for stored photos, whatever brought them (S3/SQS notifications, Distributed Map
batches, S3 Batch Operations): for each object, skip it if it is under the results prefix (our own
output must not trigger us) or already answered by this model version (a HEAD of its record);
download it (one GET, its size checked from the headers before the body is read); then classify every
image of the batch in **one** model call (``Recognizer``) and write each record (one PUT): three
requests for a new object, one for an object already answered. Each object ends in one of four
ways (``Status``):

- ``classified``: ``<prefix><key>.json`` holds the predictions;
- ``error_record``: a permanent failure (not an image, too big, corrupt, gone, access denied)
  wrote ``{"error", "code", ...}`` at the same place; never retried;
- ``skipped``: a result key, a folder marker, or already answered;
- ``retry``: a transient failure (S3 5xx, throttling, timeouts): the caller retries that object
  (SQS redelivers its message, the Map retries its batch) and, in the end, a dead-letter queue or
  the run's report keeps it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from handler.answers.answering import Answerer
from handler.errors import Refusal
from handler.records.storage import S3Object, Storage
from handler.s3 import Superseded, TransientError

logger = Logger(child=True)
tracer = Tracer()
metrics = Metrics()


@dataclass(frozen=True)
class Records:
    """What the records doors are given, not the whole runtime: the answerer, the records' store,
    how many classes a record holds and how large an object may be."""

    answerer: Answerer
    storage: Storage
    top_k: int
    max_bytes: int


class Status(StrEnum):
    CLASSIFIED = "classified"
    ERROR_RECORD = "error_record"
    SKIPPED = "skipped"
    RETRY = "retry"


# An object's end: a status, the refusal its error record holds, or a transient failure (to retry).
RecordOutcome = Status | Refusal | TransientError
RecordOutcomes = dict[S3Object, RecordOutcome]

# S3 requests in flight per invocation: a batch's HEADs, GETs and PUTs wait on latency, not CPU.
IO_THREADS = 8


def status_of(outcome: RecordOutcome) -> Status:
    if isinstance(outcome, Refusal):
        return Status.ERROR_RECORD
    return Status.RETRY if isinstance(outcome, TransientError) else outcome


def _count_error(obj: S3Object, error: Refusal) -> None:
    logger.warning("cannot classify", extra={"key": obj.key, "code": error.code, "error": error.message})
    metrics.add_metric(name="ImagesFailed", unit=MetricUnit.Count, value=1)


def _fetch(
    road: Records, obj: S3Object, force: bool
) -> tuple[bytes, S3Object] | Status | Refusal | TransientError:
    """The object's bytes (and the object with its ETag, as the GET answered), the status it already
    ended in (skipped), or why it cannot be read. At most two requests: the record's HEAD and the
    object's GET. Runs in the I/O threads: no logging of outcomes or metrics here."""
    storage = road.storage
    try:
        if obj.key.endswith("/") or storage.is_result_key(obj):  # a console folder, or our own output
            return Status.SKIPPED
        if not force and storage.already_answered(obj, road.answerer.model):
            return Status.SKIPPED
        return storage.download(obj, road.max_bytes)
    except Superseded:  # replaced by other bytes: the newer version is answered on its own
        return Status.SKIPPED
    except (Refusal, TransientError) as error:
        return error


def _write(road: Records, obj: S3Object, record: dict[str, Any] | Refusal) -> RecordOutcome:
    """Write the object's result or error record (in an I/O thread)."""
    info = road.answerer.model
    try:
        if isinstance(record, Refusal):
            written = road.storage.write_record(obj, record.to_dict(), model=info)
            return record if written else Status.SKIPPED
        written = road.storage.write_record(obj, record, model=info)
    except TransientError as error:
        return error
    return Status.CLASSIFIED if written else Status.SKIPPED  # a later event of the key has its record


@tracer.capture_method(capture_response=False)
def process(
    road: Records, objects: Iterable[S3Object], force: bool = False, source: str = "s3"
) -> RecordOutcomes:
    """Answer every object once; classify all downloaded images in one model call. ``force``
    recomputes objects already answered by this model version. S3 requests run in parallel."""
    started = time.perf_counter()
    unique = list(dict.fromkeys(objects))  # the same object twice in a batch is answered once
    road.storage.client  # noqa: B018  (created here, once, not by several I/O threads at once)
    outcomes: RecordOutcomes = {}
    downloaded: dict[S3Object, bytes] = {}
    read_as: dict[S3Object, S3Object] = {}  # the object with the ETag its GET answered: its record's
    to_write: dict[S3Object, dict[str, Any] | Refusal] = {}
    with ThreadPoolExecutor(IO_THREADS) as pool:
        for obj, fetched in zip(unique, pool.map(lambda o: _fetch(road, o, force), unique), strict=True):
            if isinstance(fetched, tuple):
                downloaded[obj], read_as[obj] = fetched
            elif isinstance(fetched, Refusal):
                to_write[obj] = fetched
            else:
                outcomes[obj] = fetched
                if fetched is Status.SKIPPED:
                    logger.info("skipped: a results key or already answered", extra={"key": obj.key})
        answers = (
            road.answerer.answer(
                list(downloaded.values()),
                road.top_k,
                source,
                max_bytes=road.max_bytes,
                request_deadline=False,
            )
            if downloaded
            else []
        )
        batch_ms = round((time.perf_counter() - started) * 1000, 2)
        for obj, answer in zip(downloaded, answers, strict=True):
            to_write[obj] = answer.refusal or {
                **answer.body,
                "model": road.answerer.model,
                "batch_ms": batch_ms,
            }
        written = pool.map(lambda o: _write(road, read_as.get(o, o), to_write[o]), to_write)
        for obj, outcome in zip(to_write, written, strict=True):
            outcomes[obj] = outcome
            if isinstance(outcome, Refusal):
                _count_error(obj, outcome)
            elif outcome is Status.CLASSIFIED:
                metrics.add_metric(name="ImagesProcessed", unit=MetricUnit.Count, value=1)
                top1 = to_write[obj]["predictions"][0]["label"]  # type: ignore[index]
                logger.info("classified", extra={"key": obj.key, "top1": top1})
    retries = sum(isinstance(outcome, TransientError) for outcome in outcomes.values())
    if retries:
        metrics.add_metric(name="TransientFailures", unit=MetricUnit.Count, value=retries)
    return {obj: outcomes[obj] for obj in unique}


def summary(outcomes: RecordOutcomes) -> dict[str, Any]:
    """Each object's status, and its error code when its record is an error."""
    return {
        "objects": [
            {"key": o.key, "status": str(status_of(s))}
            | ({"code": str(s.code)} if isinstance(s, Refusal) else {})
            for o, s in outcomes.items()
        ]
    }
