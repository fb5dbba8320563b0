"""``bulk_handler`` against moto's S3: Distributed Map batches and S3 Batch Operations 1.0/2.0."""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote_plus

import pytest

from handler import s3
from handler.contract import Defaults
from localaws.context import LocalContext
from tests.support import CAT_CLASSES, EVENTS, PHOTOS, s3_client_for

UNICODE_KEY = "archive/Été 2026/Grace Hopper + ü.jpg"


@pytest.fixture
def archive(s3_client) -> tuple[str, dict[str, str]]:
    """A bucket of existing objects: photos, a corrupt file, a text file, a folder marker, a result."""
    bucket = f"archive-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=bucket)
    photo = (PHOTOS / "grace_hopper.jpg").read_bytes()
    objects = {
        "archive/portrait.jpg": photo,
        "archive/cat.bmp": (PHOTOS / "cat.bmp").read_bytes(),
        UNICODE_KEY: photo,
        "archive/corrupt.jpg": photo[:3000],
        "archive/notes.txt": b"not a photo",
        "archive/folder/": b"",
        "archive/too-large.jpg": photo + bytes(Defaults.MAX_UPLOAD_BYTES),  # refused by its size
        "results/archive/old.jpg.json": b"{}",
    }
    etags = {}
    for key, body in objects.items():
        etags[key] = s3_client.put_object(Bucket=bucket, Key=key, Body=body)["ETag"]
    return bucket, etags


def storage_has(s3_client, bucket: str, key: str) -> bool:
    return "Contents" in s3_client.list_objects_v2(Bucket=bucket, Prefix=key)


def record(s3_client, bucket: str, key: str) -> dict:
    return json.loads(s3_client.get_object(Bucket=bucket, Key=f"results/{key}.json")["Body"].read())


def map_event(bucket: str, etags: dict[str, str], keys: list[str], **batch_input) -> dict:
    items = [
        {"Key": key, "Etag": etags.get(key, '"0"'), "Size": 1, "StorageClass": "STANDARD"} for key in keys
    ]
    return {"Items": items, "BatchInput": {"bucket": bucket, **batch_input}}


def test_a_map_batch_answers_every_object_in_one_model_call(app, archive, s3_client) -> None:
    bucket, etags = archive
    s3_client.delete_object(Bucket=bucket, Key="archive/cat.bmp")  # listed, then deleted before the read
    calls = app.runtime.recognizer.classifier.calls
    summary = app.bulk_handler(map_event(bucket, etags, list(etags)), LocalContext())
    assert app.runtime.recognizer.classifier.calls == calls + 1
    counts = {k: summary[k] for k in ("items", "classified", "error_records", "skipped")}
    assert counts == {"items": 8, "classified": 2, "error_records": 4, "skipped": 2}
    outcomes = {entry["key"]: (entry["status"], entry.get("code")) for entry in summary["objects"]}
    assert outcomes == {
        "archive/portrait.jpg": ("classified", None),
        UNICODE_KEY: ("classified", None),
        "archive/corrupt.jpg": ("error_record", "corrupt_image"),
        "archive/notes.txt": ("error_record", "unsupported_image_type"),
        "archive/cat.bmp": ("error_record", "source_not_found"),
        "archive/too-large.jpg": ("error_record", "image_too_large"),
        "archive/folder/": ("skipped", None),
        "results/archive/old.jpg.json": ("skipped", None),
    }, "every listed key, in the output the Map's ResultWriter keeps"
    assert record(s3_client, bucket, "archive/portrait.jpg")["predictions"][0]["label"] == "military_uniform"
    assert record(s3_client, bucket, UNICODE_KEY)["predictions"][0]["label"] == "military_uniform"
    assert record(s3_client, bucket, "archive/corrupt.jpg")["code"] == "corrupt_image"
    assert record(s3_client, bucket, "archive/notes.txt")["code"] == "unsupported_image_type"
    assert record(s3_client, bucket, "archive/cat.bmp")["code"] == "source_not_found"
    again = app.bulk_handler(map_event(bucket, etags, list(etags)), LocalContext())
    assert again["skipped"] == 8 and app.runtime.recognizer.classifier.calls == calls + 1, (
        "a rerun writes nothing"
    )
    forced = app.bulk_handler(map_event(bucket, etags, ["archive/portrait.jpg"], force=True), LocalContext())
    assert forced["classified"] == 1


def test_a_transient_failure_fails_the_map_batch_and_its_retry_completes_it(
    app, archive, s3_client, monkeypatch
) -> None:
    bucket, etags = archive
    keys = ["archive/portrait.jpg", "archive/cat.bmp", UNICODE_KEY]
    download = app.runtime.storage.download
    throttled = {"archive/cat.bmp"}

    def slow_down_once(obj, max_bytes):
        if obj.key in throttled:
            throttled.discard(obj.key)
            raise s3.TransientError("SlowDown")
        return download(obj, max_bytes)

    monkeypatch.setattr(app.runtime.storage, "download", slow_down_once)
    with pytest.raises(s3.TransientError, match="the Map retries the batch"):
        app.bulk_handler(map_event(bucket, etags, keys), LocalContext())
    assert "predictions" in record(s3_client, bucket, "archive/portrait.jpg"), "the others are answered"
    retried = app.bulk_handler(map_event(bucket, etags, keys), LocalContext())  # the Map's Retry
    assert (retried["classified"], retried["skipped"]) == (1, 2)
    assert record(s3_client, bucket, "archive/cat.bmp")["predictions"][0]["label"] in CAT_CLASSES


def test_a_batch_of_large_objects_is_classified_in_parts(app, archive, s3_client, monkeypatch) -> None:
    from handler.records import bulk

    bucket, etags = archive
    monkeypatch.setattr(bulk, "BATCH_BYTES", 1)  # every listed object is over the budget
    calls = app.runtime.recognizer.classifier.calls
    keys = ["archive/portrait.jpg", "archive/cat.bmp"]
    summary = app.bulk_handler(map_event(bucket, etags, keys, force=True), LocalContext())
    assert summary["classified"] == 2 and app.runtime.recognizer.classifier.calls == calls + 2


def test_groups_within_a_byte_budget() -> None:
    from handler.records.bulk import groups_within

    assert groups_within([40, 50, 20, 200, 10], 100) == [[0, 1], [2], [3], [4]]
    assert groups_within([0, 0, 150, 0], 100) == [[0, 1], [2], [3]]  # over the budget: alone
    assert groups_within([], 100) == []


def batch_operations_event(bucket: str, key: str, version: str, **arguments) -> dict:
    task = {"taskId": "task-1", "s3Key": quote_plus(key, safe="/"), "s3VersionId": None}
    event = {"invocationSchemaVersion": version, "invocationId": "invocation-1", "tasks": [task]}
    if version == "1.0":
        task["s3BucketArn"] = f"arn:aws:s3:::{bucket}"
        event["job"] = {"id": "job-1"}
    else:
        task["s3Bucket"] = bucket
        event["job"] = {"id": "job-1", "userArguments": {k: str(v) for k, v in arguments.items()}}
    return event


@pytest.mark.parametrize("version", ["1.0", "2.0"])
@pytest.mark.parametrize(
    ("key", "code", "text"),
    [
        (UNICODE_KEY, "Succeeded", "classified"),
        ("archive/corrupt.jpg", "PermanentFailure", "corrupt_image"),
        ("archive/gone.jpg", "PermanentFailure", "source_not_found"),
        ("archive/notes.txt", "PermanentFailure", "unsupported_image_type"),
        ("archive/too-large.jpg", "PermanentFailure", "image_too_large"),
        ("archive/folder/", "Succeeded", "skipped"),  # a console folder: no record, as in the Map
    ],
)
def test_s3_batch_operations_get_one_result_per_task(
    app, archive, s3_client, version, key, code, text
) -> None:
    bucket, _ = archive
    answer = app.bulk_handler(batch_operations_event(bucket, key, version), LocalContext())
    assert answer["invocationSchemaVersion"] == version and answer["invocationId"] == "invocation-1"
    assert answer["treatMissingKeysAs"] == "PermanentFailure", "an unanswered task is never a success"
    (result,) = answer["results"]
    assert result["taskId"] == "task-1" and result["resultCode"] == code and text in result["resultString"]
    if text == "skipped":
        assert not storage_has(s3_client, bucket, f"results/{key}.json")
        return
    assert "code" in record(s3_client, bucket, key) or "predictions" in record(s3_client, bucket, key)
    if code == "Succeeded":
        again = app.bulk_handler(batch_operations_event(bucket, key, version), LocalContext())
        assert again["results"][0]["resultString"] == "skipped"
        if version == "2.0":
            forced = app.bulk_handler(
                batch_operations_event(bucket, key, version, force=True), LocalContext()
            )
            assert forced["results"][0]["resultString"] == "classified"


def test_anything_else_is_a_clear_error(app) -> None:
    from handler.contract import InvalidEvent

    with pytest.raises(InvalidEvent, match="Distributed Map batch"):
        app.bulk_handler({"Records": []}, LocalContext())


@pytest.mark.parametrize("fixture", sorted(p.name for p in EVENTS.glob("bulk-*.json")))
def test_bulk_event_fixtures(app, s3_client, fixture: str) -> None:
    """Each bulk fixture, once its objects exist, gets the expected answer and result records."""
    expected = json.loads((EVENTS / "expected.json").read_text())[fixture]
    bucket = expected["bucket"]
    s3_client.create_bucket(Bucket=bucket)
    photo = (PHOTOS / "grace_hopper.jpg").read_bytes()
    for key in expected["results"]:
        s3_client.put_object(Bucket=bucket, Key=key, Body=photo)
        s3_client.delete_object(Bucket=bucket, Key=f"results/{key}.json")  # a previous fixture's
    answer = app.bulk_handler(json.loads((EVENTS / fixture).read_text()), LocalContext())
    if "results" in answer:
        assert [r["resultCode"] for r in answer["results"]] == expected["answer"]
    else:
        assert {k: answer[k] for k in expected["answer"]} == expected["answer"]
    for key in expected["results"]:
        assert record(s3_client, bucket, key)["predictions"][0]["label"] == "military_uniform", key


def test_a_bad_map_item_fails_alone(app, archive) -> None:
    """Items without a Key (or with one that is not text) are listed as invalid; odd sizes and
    ETags are read from S3 instead; the rest of the batch is classified."""
    bucket, etags = archive
    event = map_event(bucket, etags, ["archive/portrait.jpg"], force=True)
    event["Items"] += [{"Etag": '"x"', "Size": 1}, {"Key": 7}, "not an item",
                       {"Key": UNICODE_KEY, "Size": "many", "Etag": 12}]  # fmt: skip
    summary = app.bulk_handler(event, LocalContext())
    assert (summary["items"], summary["classified"], summary["invalid_items"]) == (5, 2, 3)
    invalid = [entry for entry in summary["objects"] if entry["status"] == "invalid_item"]
    assert [entry["key"] for entry in invalid] == [None, None, None]
    assert all(entry["error"] == "the item has no Key (a string)" for entry in invalid)


def test_a_map_batch_is_classified_in_waves_by_count(app, archive, monkeypatch) -> None:
    """Memory follows the wave, not the batch: with waves of 2 objects, 3 photos take 2 model calls."""
    from handler.records import bulk

    monkeypatch.setattr(bulk, "WAVE_OBJECTS", 2)
    bucket, etags = archive
    calls = app.runtime.recognizer.classifier.calls
    keys = ["archive/portrait.jpg", "archive/cat.bmp", UNICODE_KEY]
    summary = app.bulk_handler(map_event(bucket, etags, keys, force=True), LocalContext())
    assert summary["classified"] == 3 and app.runtime.recognizer.classifier.calls == calls + 2


def test_groups_within_a_count() -> None:
    from handler.records.bulk import groups_within

    assert groups_within([1, 1, 1, 1, 1], 100, max_items=2) == [[0, 1], [2, 3], [4]]
    assert groups_within([60, 60, 1], 100, max_items=5) == [[0], [1, 2]]


def test_a_backfill_skips_versioned_uploads_already_answered(app, s3_client) -> None:
    """Upload notifications carry a version id, Map items do not: answers are the same answer when
    the bytes (ETag) and the model are; a new version with other bytes is answered again."""
    from localaws.events import s3_event, sqs_event

    bucket = f"versioned-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)
    s3_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    photo = (PHOTOS / "grace_hopper.jpg").read_bytes()
    put = s3_client.put_object(Bucket=bucket, Key="uploads/a.jpg", Body=photo)
    etag, version = put["ETag"].strip('"'), put["VersionId"]
    notification = s3_event(bucket, [("uploads/a.jpg", etag, len(photo))])
    notification["Records"][0]["s3"]["object"]["versionId"] = version
    assert app.s3_handler(sqs_event([notification]), LocalContext()) == {"batchItemFailures": []}
    item = {
        "Items": [{"Key": "uploads/a.jpg", "Etag": f'"{etag}"', "Size": len(photo)}],
        "BatchInput": {"bucket": bucket},
    }
    assert app.bulk_handler(item, LocalContext())["skipped"] == 1
    newer = s3_client.put_object(Bucket=bucket, Key="uploads/a.jpg", Body=(PHOTOS / "cat.bmp").read_bytes())
    item["Items"][0]["Etag"] = newer["ETag"]
    assert app.bulk_handler(item, LocalContext())["classified"] == 1


def test_an_object_replaced_since_it_was_listed_is_not_answered_for_its_old_bytes(
    app, archive, s3_client
) -> None:
    bucket, etags = archive
    s3_client.put_object(Bucket=bucket, Key="archive/portrait.jpg", Body=(PHOTOS / "cat.bmp").read_bytes())
    try:
        event = map_event(bucket, etags, ["archive/portrait.jpg"], force=True)
        summary = app.bulk_handler(event, LocalContext())
    finally:  # the archive is shared: put the photo back
        s3_client.put_object(
            Bucket=bucket, Key="archive/portrait.jpg", Body=(PHOTOS / "grace_hopper.jpg").read_bytes()
        )
    assert (summary["classified"], summary["skipped"]) == (0, 1), "the listing's ETag is stale: superseded"


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_a_batch_operations_task_that_names_no_object_fails_alone(app, archive, version) -> None:
    """S3 Batch Operations sends one task per invocation; one that names no object is its own
    PermanentFailure (in the completion report), never an exception."""
    bucket, _ = archive
    event = batch_operations_event(bucket, "archive/portrait.jpg", version, force="true")
    event["tasks"] = [{"taskId": "task-2", "s3VersionId": None}]  # no key, no bucket
    (result,) = app.bulk_handler(event, LocalContext())["results"]
    assert (result["taskId"], result["resultCode"]) == ("task-2", "PermanentFailure")
    assert result["resultString"].startswith("invalid_task")


def test_a_backfill_of_the_capture_bucket_skips_what_capture_kept(configure, moto_s3, s3_client) -> None:
    """A backfill of a whole bucket that holds captures: the captured photos are the service's own
    output, like its records; classifying them would capture them again, and again."""
    bucket = f"uploads-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=bucket)
    photo = (PHOTOS / "grace_hopper.jpg").read_bytes()
    etags = {
        key: s3_client.put_object(Bucket=bucket, Key=key, Body=photo)["ETag"]
        for key in ("uploads/a.jpg", "capture/mobilenet_v2/1.0.0/2026/11/27/x.jpg")
    }
    app = configure(s3_client=s3_client_for(moto_s3), uploads_bucket=bucket, capture_rate=1.0)
    summary = app.bulk_handler(map_event(bucket, etags, list(etags)), LocalContext())
    outcomes = {entry["key"]: entry["status"] for entry in summary["objects"]}
    assert outcomes == {
        "uploads/a.jpg": "classified",
        "capture/mobilenet_v2/1.0.0/2026/11/27/x.jpg": "skipped",
    }
    captured = s3_client.list_objects_v2(Bucket=bucket, Prefix="capture/")["Contents"]
    keys = [o["Key"] for o in captured if not o["Key"].endswith("/labels.json")]
    assert len(keys) == 3, "the one classified photo captured (image + answer), nothing more"
    (answer,) = [key for key in keys if key.endswith(".json") and "/2026/11/27/x" not in key]
    assert json.loads(s3_client.get_object(Bucket=bucket, Key=answer)["Body"].read())["source"] == "bulk"
