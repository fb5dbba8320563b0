"""S3 uploads -> result records in S3: every object gets exactly one answer, nothing is lost.

Two event shapes reach ``s3_handler``: a direct S3 ``ObjectCreated`` notification, and the
production path, an SQS batch whose messages carry S3 notifications (S3 -> SQS -> Lambda, so
bursts queue up and failures end in a dead-letter queue).

For each object: skip it if it is under the results prefix (our own output must not trigger us)
or if its result already exists for this version (re-delivery); check its size with a HEAD;
download; then classify every image of the invocation in **one** model call. Each object ends in
one of four ways:

- ``classified``: ``<prefix><key>.json`` holds the predictions;
- ``error_record``: a permanent failure (not an image, too big, corrupt, gone, access denied)
  wrote ``{"error", "code", ...}`` at the same place; never retried;
- ``skipped``: a result key, or already answered;
- ``retry``: a transient failure (S3 5xx, throttling, timeouts): reported for that message only,
  so SQS redelivers it and, in the end, the dead-letter queue keeps it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import S3Event, SQSEvent
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from handler.errors import ClientMistake, excerpt
from handler.storage import S3Object, TransientError

if TYPE_CHECKING:
    from handler.runtime import Runtime

logger = Logger(child=True)
tracer = Tracer()
metrics = Metrics()

TEST_EVENT = "s3:TestEvent"


class Status(StrEnum):
    CLASSIFIED = "classified"
    ERROR_RECORD = "error_record"
    SKIPPED = "skipped"
    RETRY = "retry"


class InvalidEvent(ValueError):
    """The function was invoked with something that is not an S3 or SQS event (a misconfiguration)."""


class MalformedMessage(Exception):
    """An SQS message that is not an S3 notification: left to the queue's redrive policy (DLQ)."""


# An object's end: a status, the error its record holds, or a transient failure (to retry).
Outcome = Status | ClientMistake | TransientError
Outcomes = dict[S3Object, Outcome]

# S3 requests in flight per invocation: a batch's HEADs, GETs and PUTs wait on latency, not CPU.
IO_THREADS = 8


def status_of(outcome: Outcome) -> Status:
    if isinstance(outcome, ClientMistake):
        return Status.ERROR_RECORD
    return Status.RETRY if isinstance(outcome, TransientError) else outcome


def _count_error(obj: S3Object, error: ClientMistake) -> None:
    logger.warning("cannot classify", extra={"key": obj.key, "code": error.code, "error": error.message})
    metrics.add_metric(name="ImagesFailed", unit=MetricUnit.Count, value=1)


def error_record(runtime: Runtime, obj: S3Object, error: ClientMistake) -> ClientMistake:
    """Write ``error``'s record for ``obj`` (logged and counted): the object's permanent answer."""
    runtime.storage.write_record(obj, error.to_dict(), model=runtime.recognizer.classifier.info.to_dict())
    _count_error(obj, error)
    return error


def _fetch(runtime: Runtime, obj: S3Object, force: bool) -> bytes | Status | ClientMistake | TransientError:
    """The object's bytes, the status it already ended in (skipped), or why it cannot be read.
    Runs in the I/O threads: no logging of outcomes or metrics here."""
    storage = runtime.storage
    try:
        if obj.key.endswith("/") or storage.is_result_key(obj):  # a console folder, or our own output
            return Status.SKIPPED
        if not force and storage.already_answered(obj, runtime.recognizer.classifier.info.to_dict()):
            return Status.SKIPPED
        return storage.download(obj, runtime.settings.max_upload_bytes)
    except (ClientMistake, TransientError) as error:
        return error


def _write(runtime: Runtime, obj: S3Object, record: dict[str, Any] | ClientMistake) -> Outcome:
    """Write the object's result or error record (in an I/O thread)."""
    info = runtime.recognizer.classifier.info.to_dict()
    try:
        if isinstance(record, ClientMistake):
            runtime.storage.write_record(obj, record.to_dict(), model=info)
            return record
        runtime.storage.write_record(obj, record, model=info)
    except TransientError as error:
        return error
    return Status.CLASSIFIED


@tracer.capture_method(capture_response=False)
def process(runtime: Runtime, objects: Iterable[S3Object], force: bool = False) -> Outcomes:
    """Answer every object once; classify all downloaded images in one model call. ``force``
    recomputes objects already answered by this model version. S3 requests run in parallel."""
    started = time.perf_counter()
    settings = runtime.settings
    unique = list(dict.fromkeys(objects))  # the same object twice in a batch is answered once
    outcomes: Outcomes = {}
    downloaded: dict[S3Object, bytes] = {}
    to_write: dict[S3Object, dict[str, Any] | ClientMistake] = {}
    with ThreadPoolExecutor(IO_THREADS) as pool:
        for obj, fetched in zip(unique, pool.map(lambda o: _fetch(runtime, o, force), unique), strict=True):
            if isinstance(fetched, bytes):
                downloaded[obj] = fetched
            elif isinstance(fetched, ClientMistake):
                to_write[obj] = fetched
            else:
                outcomes[obj] = fetched
                if fetched is Status.SKIPPED:
                    logger.info("skipped: a results key or already answered", extra={"key": obj.key})
        answers = (
            runtime.recognizer.classify(
                list(downloaded.values()),
                settings.default_top_k,
                settings.max_upload_bytes,
                queue_over_budget=True,
            )
            if downloaded
            else []
        )
        batch_ms = round((time.perf_counter() - started) * 1000, 2)
        info = runtime.recognizer.classifier.info.to_dict()
        for obj, answer in zip(downloaded, answers, strict=True):
            to_write[obj] = answer.error or {
                **answer.to_dict(runtime.min_confidence),
                "model": info,
                "batch_ms": batch_ms,
            }
        written = pool.map(lambda o: _write(runtime, o, to_write[o]), to_write)
        for obj, outcome in zip(to_write, written, strict=True):
            outcomes[obj] = outcome
            if isinstance(outcome, ClientMistake):
                _count_error(obj, outcome)
            elif outcome is Status.CLASSIFIED:
                metrics.add_metric(name="ImagesProcessed", unit=MetricUnit.Count, value=1)
                top1 = to_write[obj]["predictions"][0]["label"]  # type: ignore[index]
                logger.info("classified", extra={"key": obj.key, "top1": top1})
    retries = sum(isinstance(outcome, TransientError) for outcome in outcomes.values())
    if retries:
        metrics.add_metric(name="TransientFailures", unit=MetricUnit.Count, value=retries)
    return {obj: outcomes[obj] for obj in unique}


def objects_in(notification: S3Event) -> list[S3Object]:
    """The created objects of an S3 notification; keys arrive URL-encoded (``+`` for spaces)."""
    return [
        S3Object(
            bucket=record.s3.bucket.name,
            key=unquote_plus(record.s3.get_object.key),
            version_id=record.s3.get_object.version_id,
            etag=record.s3.get_object.etag,
        )
        for record in notification.records
        if record.event_name.startswith("ObjectCreated")
    ]


def objects_in_message(record: SQSRecord) -> list[S3Object]:
    """The objects an SQS message announces (none for S3's ``s3:TestEvent``)."""
    try:
        body = json.loads(record.body)
    except (TypeError, ValueError, RecursionError) as error:
        raise MalformedMessage(f"message {record.message_id} is not JSON") from error
    if not isinstance(body, dict):
        raise MalformedMessage(f"message {record.message_id} is not an S3 notification")
    if body.get("Event") == TEST_EVENT:
        return []
    if not isinstance(body.get("Records"), list):
        raise MalformedMessage(f"message {record.message_id} is not an S3 notification")
    return objects_in(S3Event(body))


def summary(outcomes: Outcomes) -> dict[str, Any]:
    """Each object's status, and its error code when its record is an error."""
    return {
        "objects": [
            {"key": o.key, "status": str(status_of(s))}
            | ({"code": str(s.code)} if isinstance(s, ClientMistake) else {})
            for o, s in outcomes.items()
        ]
    }


def _failed_messages(runtime: Runtime, records: list[SQSRecord]) -> list[str]:
    """Process these messages' objects together (one model call); the ids of the ones to retry."""
    planned: dict[str, list[S3Object] | MalformedMessage] = {}
    for record in records:
        try:
            planned[record.message_id] = objects_in_message(record)
        except MalformedMessage as error:
            logger.warning(
                "not an S3 notification", extra={"message_id": record.message_id, "error": str(error)}
            )
            planned[record.message_id] = error
    try:
        outcomes = process(
            runtime, (o for objects in planned.values() if isinstance(objects, list) for o in objects)
        )
    except Exception:  # a bug or an exhausted resource: retry these messages, isolated on redelivery
        logger.exception("batch failed", extra={"messages": len(records)})
        metrics.add_metric(name="BatchFailures", unit=MetricUnit.Count, value=1)
        return [record.message_id for record in records]
    return [
        message_id
        for message_id, objects in planned.items()
        if isinstance(objects, MalformedMessage)
        or any(isinstance(outcomes[o], TransientError) for o in objects)
    ]


def handle_sqs(runtime: Runtime, event: dict[str, Any]) -> dict[str, Any]:
    """SQS batch: one model call for all messages; ``batchItemFailures`` lists only the retries.

    A batch that comes back (``ApproximateReceiveCount`` > 1) may hold the message that failed it,
    so it is processed one message at a time: a bad one fails alone while the others complete.
    """
    records = list(SQSEvent(event).records)
    redelivered = any(int(r.attributes.approximate_receive_count or 1) > 1 for r in records)
    groups = [[record] for record in records] if redelivered else [records]
    if redelivered:
        logger.info("redelivered batch: one message at a time", extra={"messages": len(records)})
    failed = [message_id for group in groups for message_id in _failed_messages(runtime, group)]
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}


def handle(runtime: Runtime, event: Any) -> dict[str, Any]:
    """Entry for both shapes. A direct S3 event with a transient failure raises, so Lambda's
    asynchronous retries run it again; answered objects are then skipped."""
    if not isinstance(event, dict) or not (event.get("Records") or event.get("Event") == TEST_EVENT):
        raise InvalidEvent(
            "s3_handler takes an S3 ObjectCreated notification or an SQS batch of them; "
            f"got {excerpt(json.dumps(event, default=str))}"
        )
    records = event["Records"] if event.get("Records") else []
    if records and records[0].get("eventSource") == "aws:sqs":
        return handle_sqs(runtime, event)
    if event.get("Event") == TEST_EVENT:
        return {"objects": []}
    outcomes = process(runtime, objects_in(S3Event(event)))
    failed = [o.key for o, s in outcomes.items() if isinstance(s, TransientError)]
    if failed:
        raise TransientError(f"{len(failed)} object(s) failed transiently and will be retried: {failed}")
    return summary(outcomes)
