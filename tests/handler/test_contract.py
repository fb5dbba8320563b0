"""handler.contract: the one place that says which entry point an event belongs to."""

from __future__ import annotations

import json

import pytest

from handler.contract import (
    API_HANDLER,
    BULK_HANDLER,
    S3_HANDLER,
    EventKind,
    InvalidEvent,
    entry_point_for,
    kind_of,
)
from tests.support import EVENTS

# The file name's first word says the entry point each fixture is for.
BY_PREFIX = {"api": API_HANDLER, "s3": S3_HANDLER, "sqs": S3_HANDLER, "bulk": BULK_HANDLER}


@pytest.mark.parametrize(
    "fixture", sorted(p.name for p in EVENTS.glob("*.json") if p.name != "expected.json")
)
def test_every_fixture_goes_to_its_entry_point(fixture: str) -> None:
    event = json.loads((EVENTS / fixture).read_text())
    assert entry_point_for(event) == BY_PREFIX[fixture.split("-", 1)[0]]


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        ({"version": "2.0", "requestContext": {}, "rawPath": "/"}, EventKind.HTTP_API),
        ({"httpMethod": "GET", "path": "/"}, EventKind.REST_API),
        ({"version": "2.0", "httpMethod": "GET"}, EventKind.REST_API),  # v2 needs its requestContext
        ({"Records": [{"eventSource": "aws:sqs"}]}, EventKind.SQS),
        ({"Records": [{"eventSource": "aws:s3"}]}, EventKind.S3),
        ({"Event": "s3:TestEvent"}, EventKind.S3_TEST),
        ({"Items": []}, EventKind.MAP_BATCH),
        ({"invocationSchemaVersion": "2.0"}, EventKind.BATCH_OPERATIONS),
    ],
)
def test_kinds_by_their_fields(event: dict, kind: EventKind) -> None:
    assert kind_of(event) is kind


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"Records": []},
        {"Records": ["not a record"]},
        {"Records": [{"EventSource": "aws:sns", "Sns": {}}]},
        {"Records": [{"eventSource": "aws:kinesis"}]},
        [],
        "text",
        None,
        7,
        {"Records": "x"},
    ],
)
def test_anything_else_is_unknown_and_has_no_entry_point(event) -> None:
    assert kind_of(event) is EventKind.UNKNOWN
    with pytest.raises(InvalidEvent, match="Unrecognised event"):
        entry_point_for(event)
