"""``s3_handler``: S3 ``ObjectCreated`` notifications, direct or in an SQS batch, to records.

Two event shapes reach it: a direct S3 notification, and the production path, an SQS batch whose
messages carry S3 notifications (S3 -> SQS -> Lambda, so bursts queue up and failures end in a
dead-letter queue). Each object goes through ``pipeline.process`` (one model call per batch);
this module only reads the events and reports what to retry.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import S3Event, SQSEvent
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from handler.answers import signals
from handler.contract import TEST_EVENT, EventKind, InvalidEvent, kind_of
from handler.errors import excerpt
from handler.records.pipeline import Records, process, summary
from handler.records.storage import S3Object
from handler.s3 import TransientError

logger = Logger(child=True)
metrics = Metrics()


class MalformedMessage(Exception):
    """An SQS message that is not an S3 notification: left to the queue's redrive policy (DLQ)."""


def objects_in(notification: S3Event) -> list[S3Object]:
    """The created objects of an S3 notification; keys arrive URL-encoded (``+`` for spaces).
    A record that is not one (no ``s3`` object, a key that is not text) raises ``MalformedMessage``."""
    objects = []
    for index, record in enumerate(notification.records):
        try:
            if not str(record.event_name).startswith("ObjectCreated"):
                continue
            s3 = record.s3
            objects.append(
                S3Object(
                    bucket=str(s3.bucket.name),
                    key=unquote_plus(s3.get_object.key),
                    version_id=s3.get_object.version_id,
                    etag=s3.get_object.etag or "",
                    sequencer=s3.get_object.sequencer,
                )
            )
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise MalformedMessage(f"record {index} is not an S3 object notification") from error
    return objects


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
    try:
        return objects_in(S3Event(body))
    except MalformedMessage as error:
        raise MalformedMessage(f"message {record.message_id}: {error}") from error


def _failed_messages(road: Records, records: list[SQSRecord]) -> list[str]:
    """Process these messages' objects together (one model call); the ids of the ones to retry."""
    planned: dict[str, list[S3Object] | MalformedMessage] = {}
    for record in records:
        try:
            planned[record.message_id] = objects_in_message(record)
        except MalformedMessage as error:  # its own batch item failure: redelivered, then the DLQ
            logger.warning(
                "not an S3 notification", extra={"message_id": record.message_id, "error": str(error)}
            )
            metrics.add_metric(name="MalformedMessages", unit=MetricUnit.Count, value=1)
            planned[record.message_id] = error
    try:
        outcomes = process(
            road, (o for objects in planned.values() if isinstance(objects, list) for o in objects)
        )
    except Exception:  # a bug or an exhausted resource: retry these messages, isolated on redelivery
        logger.exception("batch failed", extra={"messages": len(records)})
        metrics.add_metric(name="BatchFailures", unit=MetricUnit.Count, value=1)
        signals.batch(failed=True)
        return [record.message_id for record in records]
    signals.batch(failed=False)
    return [
        message_id
        for message_id, objects in planned.items()
        if isinstance(objects, MalformedMessage)
        or any(isinstance(outcomes[o], TransientError) for o in objects)
    ]


def handle_sqs(road: Records, event: dict[str, Any]) -> dict[str, Any]:
    """SQS batch: one model call for all messages; ``batchItemFailures`` lists only the retries.

    A batch that comes back (``ApproximateReceiveCount`` > 1) may hold the message that failed it,
    so it is processed one message at a time: a bad one fails alone while the others complete.
    """
    records = list(SQSEvent(event).records)
    redelivered = any(int(r.attributes.approximate_receive_count or 1) > 1 for r in records)
    groups = [[record] for record in records] if redelivered else [records]
    if redelivered:
        logger.info("redelivered batch: one message at a time", extra={"messages": len(records)})
    failed = [message_id for group in groups for message_id in _failed_messages(road, group)]
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}


def handle(road: Records, event: Any) -> dict[str, Any]:
    """Entry for both shapes. A direct S3 event with a transient failure raises, so Lambda's
    asynchronous retries run it again; answered objects are then skipped."""
    kind = kind_of(event)
    if kind not in (EventKind.SQS, EventKind.S3, EventKind.S3_TEST):
        raise InvalidEvent(
            "s3_handler takes an S3 ObjectCreated notification or an SQS batch of them; "
            f"got {excerpt(json.dumps(event, default=str))}"
        )
    if kind is EventKind.SQS:
        return handle_sqs(road, event)
    if kind is EventKind.S3_TEST:
        return {"objects": []}
    try:
        objects = objects_in(S3Event(event))
    except MalformedMessage as error:
        raise InvalidEvent(f"s3_handler: {error}") from error
    outcomes = process(road, objects)
    failed = [o.key for o, s in outcomes.items() if isinstance(s, TransientError)]
    if failed:
        raise TransientError(f"{len(failed)} object(s) failed transiently and will be retried: {failed}")
    return summary(outcomes)
