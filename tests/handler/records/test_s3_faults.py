"""S3 faults against moto's server: nothing is lost. Every object ends as a result, an error
record, or a retry (its SQS message in ``batchItemFailures``), and a retry later succeeds."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from localaws.context import LocalContext
from localaws.events import s3_event, sqs_event
from localaws.s3_proxy import S3Proxy
from tests.support import s3_client_for


@pytest.fixture
def proxied_handler(moto_s3: str) -> Iterator[S3Proxy]:
    """A fault-injecting proxy in front of moto."""
    proxy = S3Proxy(moto_s3)
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def app(configure, proxied_handler):
    """In this module the function reaches S3 through the proxy."""
    return configure(s3_client=s3_client_for(proxied_handler.url))


def test_every_object_ends_as_a_result_an_error_record_or_a_retry(
    app, proxied_handler, s3_client, grace_hopper
) -> None:
    bucket = f"faults-{uuid.uuid4().hex[:10]}"
    client = s3_client
    client.create_bucket(Bucket=bucket)
    keys = ["uploads/good.jpg", "uploads/deleted.jpg", "uploads/denied.jpg", "uploads/flaky.jpg"]
    objects = []
    for key in keys:
        etag = client.put_object(Bucket=bucket, Key=key, Body=grace_hopper)["ETag"].strip('"')
        objects.append((key, etag, len(grace_hopper)))
    client.delete_object(Bucket=bucket, Key="uploads/deleted.jpg")  # gone before we read it
    client.put_bucket_policy(
        Bucket=bucket,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:GetObject",
                        "Resource": f"arn:aws:s3:::{bucket}/uploads/denied.jpg",
                    }
                ],
            }
        ),
    )
    proxied_handler.drop.add("flaky.jpg")  # the endpoint drops every connection for this key
    event = sqs_event([s3_event(bucket, [obj]) for obj in objects])

    answer = app.s3_handler(event, LocalContext())

    flaky_message = event["Records"][3]["messageId"]
    assert answer == {"batchItemFailures": [{"itemIdentifier": flaky_message}]}
    assert proxied_handler.dropped, "the fault was injected"

    def record(key: str) -> dict:
        return json.loads(client.get_object(Bucket=bucket, Key=f"results/{key}.json")["Body"].read())

    assert record("uploads/good.jpg")["predictions"][0]["label"] == "military_uniform"
    assert record("uploads/deleted.jpg")["code"] == "source_not_found"
    assert record("uploads/denied.jpg")["code"] == "source_access_denied"
    listing = client.list_objects_v2(Bucket=bucket, Prefix="results/")["Contents"]
    assert "results/uploads/flaky.jpg.json" not in {item["Key"] for item in listing}

    # SQS redelivers the failed message once the endpoint recovers: the object gets its result,
    # and the three already answered are not touched again.
    proxied_handler.drop.clear()
    retry = {"Records": [event["Records"][3]]}
    assert app.s3_handler(retry, LocalContext()) == {"batchItemFailures": []}
    assert record("uploads/flaky.jpg")["predictions"][0]["label"] == "military_uniform"
    assert app.s3_handler(event, LocalContext()) == {"batchItemFailures": []}
    versions = client.list_objects_v2(Bucket=bucket, Prefix="results/")["KeyCount"]
    assert versions == 4
