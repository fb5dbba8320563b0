"""What an object costs in S3 requests, on every road that reads stored photos: at most three for a
new object (the record's HEAD, the object's GET, the record's PUT) and one for an object already
answered (the record's HEAD). S3 requests were 70 % of a bulk run's cost; each one counted here is
one the function sent to moto, seen by botocore's own event hook at the AWS boundary."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from urllib.parse import quote_plus, unquote

import pytest

from localaws.context import LocalContext
from localaws.events import s3_event, sqs_event
from tests.support import PHOTOS

NEW_OBJECT, ANSWERED_OBJECT = 3, 1


@pytest.fixture
def stored(s3_client) -> tuple[str, dict[str, str]]:
    """A bucket of photos (and a corrupt one, and one too large, whose records are errors): key -> ETag."""
    bucket = f"requests-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=bucket)
    photo = (PHOTOS / "grace_hopper.jpg").read_bytes()
    objects = {
        "uploads/portrait.jpg": photo,
        "uploads/cat one.bmp": (PHOTOS / "cat.bmp").read_bytes(),
        "uploads/corrupt.jpg": photo[:3000],
        "uploads/too-large.jpg": photo + bytes(40 * 1024 * 1024),
    }
    etags = {
        key: s3_client.put_object(Bucket=bucket, Key=key, Body=body)["ETag"] for key, body in objects.items()
    }
    return bucket, etags


@pytest.fixture
def requests_per_object(app) -> Iterator[Callable[[], Counter]]:
    """Every request the function sends, charged to the photo it is about (its own key, or its
    record's ``results/<key>.json``); read (and reset) by calling what this yields."""
    sent: Counter = Counter()

    def count(request, **_) -> None:
        path = unquote(request.url.split("?", 1)[0].split("/", 4)[-1])  # after http://host/bucket/
        key = path.removeprefix("results/").removesuffix(".json")
        sent[key] += 1

    events = app.runtime.storage.client.meta.events
    events.register("before-send.s3.*", count)

    def read() -> Counter:
        counted = Counter(sent)
        sent.clear()
        return counted

    yield read
    events.unregister("before-send.s3.*", count)


def sqs(bucket: str, etags: dict[str, str]) -> list[dict]:
    """One SQS batch, a message per object, as S3 -> SQS delivers them."""
    return [sqs_event([s3_event(bucket, [(key, etag.strip('"'), 1)]) for key, etag in etags.items()])]


def map_batch(bucket: str, etags: dict[str, str]) -> list[dict]:
    """One Distributed Map batch of the listed objects (the listing carries their ETags)."""
    items = [{"Key": key, "Etag": etag, "Size": 1, "StorageClass": "STANDARD"} for key, etag in etags.items()]
    return [{"Items": items, "BatchInput": {"bucket": bucket}}]


def batch_operations(bucket: str, etags: dict[str, str]) -> list[dict]:
    """One S3 Batch Operations invocation per task (schema 2.0): a key, no ETag, no version."""
    return [
        {
            "invocationSchemaVersion": "2.0",
            "invocationId": f"invocation-{i}",
            "job": {"id": "job-1", "userArguments": {}},
            "tasks": [{"taskId": f"task-{i}", "s3Key": quote_plus(key, safe="/"), "s3VersionId": None,
                       "s3Bucket": bucket}],
        }
        for i, key in enumerate(etags)
    ]  # fmt: skip


ROADS = {
    "s3-sqs worker": (sqs, "s3_handler"),
    "distributed map": (map_batch, "bulk_handler"),
    "batch operations": (batch_operations, "bulk_handler"),
}


@pytest.mark.parametrize("road", ROADS, ids=ROADS)
def test_a_new_object_costs_three_requests_and_an_answered_one_costs_one(
    app, stored, s3_client, requests_per_object, road: str
) -> None:
    bucket, etags = stored
    event_of, handler = ROADS[road]
    for event in event_of(bucket, etags):
        getattr(app, handler)(event, LocalContext())
    first = requests_per_object()
    assert set(first) == set(etags), first
    assert all(count <= NEW_OBJECT for count in first.values()), first
    for key in etags:  # each object ended with its record: a result, or an error for the bad ones
        assert s3_client.head_object(Bucket=bucket, Key=f"results/{key}.json")

    for event in event_of(bucket, etags):  # delivered again, or a second run
        getattr(app, handler)(event, LocalContext())
    again = requests_per_object()
    assert again == Counter(dict.fromkeys(etags, ANSWERED_OBJECT)), again
