"""Which kind of event this is, and so which entry point it belongs to: decided here only.

Each entry point checks that its event is one it serves (a misrouted or hand-made event gets a
clear refusal, not a ``KeyError``); the dev tools route an event file to its entry point with the
same function.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from handler.contract import API_HANDLER, BULK_HANDLER, S3_HANDLER

TEST_EVENT = "s3:TestEvent"  # what S3 sends once when a notification is configured


class InvalidEvent(ValueError):
    """The function was invoked with an event its entry point does not serve (a misconfiguration)."""


class EventKind(StrEnum):
    REST_API = "API Gateway REST API (payload 1.0)"
    HTTP_API = "API Gateway HTTP API (payload 2.0)"
    SQS = "SQS batch of S3 notifications"
    S3 = "S3 ObjectCreated notification"
    S3_TEST = "S3 test event"
    MAP_BATCH = "Step Functions Distributed Map batch"
    BATCH_OPERATIONS = "S3 Batch Operations task"
    UNKNOWN = "unknown"


# The entry point (``handler.app`` attribute, as the stack names it) for each kind of event.
ENTRY_POINTS = {
    EventKind.REST_API: API_HANDLER,
    EventKind.HTTP_API: API_HANDLER,
    EventKind.SQS: S3_HANDLER,
    EventKind.S3: S3_HANDLER,
    EventKind.S3_TEST: S3_HANDLER,
    EventKind.MAP_BATCH: BULK_HANDLER,
    EventKind.BATCH_OPERATIONS: BULK_HANDLER,
}


def kind_of(event: Any) -> EventKind:
    """The kind of ``event``, from the fields AWS puts in each shape (UNKNOWN for anything else)."""
    if not isinstance(event, dict):
        return EventKind.UNKNOWN
    if event.get("version") == "2.0" and "requestContext" in event:
        return EventKind.HTTP_API
    if "httpMethod" in event:
        return EventKind.REST_API
    records = event.get("Records")
    if isinstance(records, list) and records:
        source = records[0].get("eventSource") if isinstance(records[0], dict) else None
        # Other services deliver "Records" too (SNS, Kinesis, DynamoDB streams): not ours.
        return {"aws:sqs": EventKind.SQS, "aws:s3": EventKind.S3}.get(source, EventKind.UNKNOWN)
    if event.get("Event") == TEST_EVENT:
        return EventKind.S3_TEST
    if "Items" in event:
        return EventKind.MAP_BATCH
    if "invocationSchemaVersion" in event:
        return EventKind.BATCH_OPERATIONS
    return EventKind.UNKNOWN


def entry_point_for(event: Any) -> str:
    """``handler.app.<name>`` that serves ``event``; ``InvalidEvent`` when none does."""
    kind = kind_of(event)
    if kind not in ENTRY_POINTS:
        raise InvalidEvent(
            "Unrecognised event: expected an API Gateway (REST v1 / HTTP v2), S3, SQS, Distributed "
            "Map batch or S3 Batch Operations event."
        )
    return ENTRY_POINTS[kind]
