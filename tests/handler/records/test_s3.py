"""``s3_handler`` against moto's S3 server on 127.0.0.1, with the real model and photos."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable, Iterator

import pytest
from botocore.exceptions import EndpointConnectionError
from PIL import Image, ImageOps

from handler import s3
from handler.contract import InvalidEvent
from handler.records import storage
from localaws.context import LocalContext
from localaws.events import s3_event, s3_test_event, sqs_event
from tests.support import CAT_CLASSES, EVENTS

UPLOADS = "uploads/"


S3 = None  # the session's moto client, set for every test of this module by ``_s3``


@pytest.fixture(autouse=True)
def _s3(s3_client) -> None:
    global S3
    S3 = s3_client


@pytest.fixture
def put(bucket: str) -> Callable[..., tuple[str, str, int]]:
    """Upload bytes; return what the notification would carry: (key, etag, size)."""

    def upload(key: str, data: bytes, target: str | None = None) -> tuple[str, str, int]:
        answer = S3.put_object(Bucket=target or bucket, Key=key, Body=data)
        return key, answer["ETag"].strip('"'), len(data)

    return upload


def result(bucket: str, key: str) -> dict:
    body = S3.get_object(Bucket=bucket, Key=f"results/{key}.json")["Body"].read()
    return json.loads(body)


def result_keys(bucket: str) -> list[str]:
    listing = S3.list_objects_v2(Bucket=bucket, Prefix="results/")
    return sorted(item["Key"] for item in listing.get("Contents", []))


def direct(app, event: dict) -> dict:
    return app.s3_handler(event, LocalContext())


def via_sqs(app, bucket: str, objects: list[tuple[str, str, int]]) -> dict:
    """One SQS message per object, as S3 -> SQS delivers them."""
    return app.s3_handler(sqs_event([s3_event(bucket, [obj]) for obj in objects]), LocalContext())


def jpeg(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=90, **params)
    return buffer.getvalue()


@pytest.fixture
def get_object_hook(app) -> Iterator[Callable]:
    """Attach a botocore hook to the handler's client at the AWS boundary, removed afterwards."""
    registered = []

    def attach(event_name: str, hook: Callable) -> None:
        app.runtime.storage.client.meta.events.register(event_name, hook)
        registered.append((event_name, hook))

    yield attach
    for event_name, hook in registered:
        app.runtime.storage.client.meta.events.unregister(event_name, hook)


def test_direct_event_writes_one_result_per_photo(app, bucket, put, grace_hopper, cat) -> None:
    objects = [put(f"{UPLOADS}grace_hopper.jpg", grace_hopper), put(f"{UPLOADS}cat.bmp", cat)]
    summary = direct(app, s3_event(bucket, objects))
    assert [o["status"] for o in summary["objects"]] == ["classified", "classified"]
    assert result_keys(bucket) == ["results/uploads/cat.bmp.json", "results/uploads/grace_hopper.jpg.json"]
    grace = result(bucket, f"{UPLOADS}grace_hopper.jpg")
    assert grace["predictions"][0]["label"] == "military_uniform"
    assert grace["bucket"] == bucket and grace["key"] == f"{UPLOADS}grace_hopper.jpg"
    assert grace["etag"] == objects[0][1]
    assert grace["model"] == {"name": "mobilenet_v2", "version": "1.0.0", "backend": "litert"}
    assert grace["batch_ms"] > 0 and grace["processed_at"].endswith("+00:00")
    assert result(bucket, f"{UPLOADS}cat.bmp")["predictions"][0]["label"] in CAT_CLASSES


def test_sqs_batch_writes_one_result_per_photo(app, bucket, put, grace_hopper, cat) -> None:
    objects = [put(f"{UPLOADS}a/grace.jpg", grace_hopper), put(f"{UPLOADS}b/cat.bmp", cat)]
    answer = via_sqs(app, bucket, objects)
    assert answer == {"batchItemFailures": []}
    assert result(bucket, f"{UPLOADS}a/grace.jpg")["predictions"][0]["label"] == "military_uniform"
    assert result(bucket, f"{UPLOADS}b/cat.bmp")["predictions"][0]["label"] in CAT_CLASSES


def ten_photos(grace_hopper: bytes, cat: bytes) -> dict[str, bytes]:
    grace, kitty = Image.open(io.BytesIO(grace_hopper)), Image.open(io.BytesIO(cat))
    photos = {"grace.jpg": grace_hopper, "cat.bmp": cat}
    for name, image in (("grace", grace), ("cat", kitty)):
        photos[f"{name}-mirror.jpg"] = jpeg(ImageOps.mirror(image))
        photos[f"{name}-small.jpg"] = jpeg(image.resize((image.width // 2, image.height // 2)))
        photos[f"{name}-crop.jpg"] = jpeg(image.crop((20, 20, image.width - 20, image.height - 20)))
        photos[f"{name}-gray.jpg"] = jpeg(ImageOps.grayscale(image))
    return photos


@pytest.mark.slow  # about a second: ten photos, one by one and as a batch
def test_a_10_object_batch_is_one_model_call_and_matches_one_by_one(
    app, bucket, put, moto_s3, grace_hopper, cat
) -> None:
    photos = ten_photos(grace_hopper, cat)
    assert len(photos) == 10
    objects = [put(f"{UPLOADS}{name}", data) for name, data in photos.items()]
    calls = app.runtime.recognizer.classifier.calls
    assert via_sqs(app, bucket, objects) == {"batchItemFailures": []}
    assert app.runtime.recognizer.classifier.calls == calls + 1, (
        "all ten images must go through one model call"
    )

    single_bucket = f"single-{uuid.uuid4().hex[:12]}"
    S3.create_bucket(Bucket=single_bucket)
    for name, data in photos.items():
        direct(app, s3_event(single_bucket, [put(f"{UPLOADS}{name}", data, target=single_bucket)]))
    for name in photos:
        batched = result(bucket, f"{UPLOADS}{name}")["predictions"]
        alone = result(single_bucket, f"{UPLOADS}{name}")["predictions"]
        assert [p["label"] for p in batched] == [p["label"] for p in alone], name
        for b, a in zip(batched, alone, strict=True):
            assert b["probability"] == pytest.approx(a["probability"], abs=1e-4)
    assert result(bucket, f"{UPLOADS}grace-mirror.jpg")["predictions"][0]["label"] == "military_uniform"


def test_permanent_failures_get_error_records_and_the_rest_succeeds(
    app, bucket, put, grace_hopper, get_object_hook
) -> None:
    oversize = b"\xff\xd8" + b"\0" * (20 * 1024 * 1024)  # MAX_UPLOAD_BYTES + 2
    objects = [
        put(f"{UPLOADS}good.jpg", grace_hopper),
        put(f"{UPLOADS}corrupt.jpg", grace_hopper[:15_000]),
        put(f"{UPLOADS}notes.txt.jpg", b"this is not an image"),
        put(f"{UPLOADS}huge.jpg", oversize),
        put(f"{UPLOADS}deleted.jpg", grace_hopper),
    ]
    S3.delete_object(Bucket=bucket, Key=f"{UPLOADS}deleted.jpg")
    read: dict[str, int] = {}  # bytes of each GET's body the function read

    def count_reads(http_response, parsed, model, **_) -> None:
        key, body = http_response.url.rsplit("/", 1)[-1], parsed.get("Body")
        if body is None:
            return
        original = body.read

        def counted(*args, **kwargs):
            data = original(*args, **kwargs)
            read[key] = read.get(key, 0) + len(data)
            return data

        body.read = counted

    get_object_hook("after-call.s3.GetObject", count_reads)

    assert via_sqs(app, bucket, objects) == {"batchItemFailures": []}

    assert result(bucket, f"{UPLOADS}good.jpg")["predictions"][0]["label"] == "military_uniform"
    expected = {
        "corrupt.jpg": "corrupt_image",
        "notes.txt.jpg": "unsupported_image_type",
        "huge.jpg": "image_too_large",
        "deleted.jpg": "source_not_found",
    }
    for name, code in expected.items():
        record = result(bucket, f"{UPLOADS}{name}")
        assert record["code"] == code, (name, record)
        assert record["error"] and record["key"] == f"{UPLOADS}{name}" and record["bucket"] == bucket
        assert "predictions" not in record
    assert read.get("huge.jpg", 0) == 0, "an oversize object is refused by its GET's headers, its body unread"
    assert read["good.jpg"] == len(grace_hopper)


def test_a_transient_failure_retries_only_that_record(app, bucket, put, grace_hopper, cat, get_object_hook):
    objects = [
        put(f"{UPLOADS}ok.jpg", grace_hopper),
        put(f"{UPLOADS}flaky.jpg", grace_hopper),
        put(f"{UPLOADS}c.bmp", cat),
    ]

    def unreachable(request, **_):
        if "flaky.jpg" in request.url:
            raise EndpointConnectionError(endpoint_url=request.url)

    get_object_hook("before-send.s3.GetObject", unreachable)
    event = sqs_event([s3_event(bucket, [obj]) for obj in objects])
    answer = app.s3_handler(event, LocalContext())
    flaky_id = event["Records"][1]["messageId"]
    assert answer == {"batchItemFailures": [{"itemIdentifier": flaky_id}]}
    assert result_keys(bucket) == ["results/uploads/c.bmp.json", "results/uploads/ok.jpg.json"]


def test_a_transient_failure_in_a_direct_event_raises_for_lambda_to_retry(
    app, bucket, put, grace_hopper, get_object_hook
) -> None:
    objects = [put(f"{UPLOADS}ok.jpg", grace_hopper), put(f"{UPLOADS}flaky.jpg", grace_hopper)]

    def unreachable(request, **_):
        if "flaky.jpg" in request.url:
            raise EndpointConnectionError(endpoint_url=request.url)

    get_object_hook("before-send.s3.GetObject", unreachable)
    with pytest.raises(s3.TransientError, match=r"flaky\.jpg"):
        direct(app, s3_event(bucket, objects))
    assert result_keys(bucket) == ["results/uploads/ok.jpg.json"]


def test_redelivery_writes_nothing_new(app, bucket, put, grace_hopper) -> None:
    client = S3
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    objects = [put(f"{UPLOADS}grace.jpg", grace_hopper)]
    event = sqs_event([s3_event(bucket, objects)])
    app.s3_handler(event, LocalContext())
    first = client.head_object(Bucket=bucket, Key="results/uploads/grace.jpg.json")
    calls = app.runtime.recognizer.classifier.calls
    assert app.s3_handler(event, LocalContext()) == {"batchItemFailures": []}
    assert app.runtime.recognizer.classifier.calls == calls, "a re-delivered object is not classified again"
    versions = client.list_object_versions(Bucket=bucket, Prefix="results/")["Versions"]
    assert len(versions) == 1
    assert client.head_object(Bucket=bucket, Key="results/uploads/grace.jpg.json")["ETag"] == first["ETag"]


def test_a_new_version_of_the_same_key_gets_a_new_result(app, bucket, put, grace_hopper, cat) -> None:
    direct(app, s3_event(bucket, [put(f"{UPLOADS}photo", grace_hopper)]))
    direct(app, s3_event(bucket, [put(f"{UPLOADS}photo", cat)]))
    assert result(bucket, f"{UPLOADS}photo")["predictions"][0]["label"] in CAT_CLASSES


def versioned_events(bucket: str, key: str, photos: list[bytes], sequencers: list[str]) -> list[dict]:
    """Each photo uploaded as a new version of ``key`` in a versioned bucket; its notification, as S3
    sends it (version id, ETag, sequencer)."""
    S3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    events = []
    for photo, sequencer in zip(photos, sequencers, strict=True):
        put = S3.put_object(Bucket=bucket, Key=key, Body=photo)
        event = s3_event(bucket, [(key, put["ETag"].strip('"'), len(photo))])
        event["Records"][0]["s3"]["object"].update(versionId=put["VersionId"], sequencer=sequencer)
        events.append(event)
    return events


@pytest.mark.parametrize("order", ["newest first", "oldest first", "newest, then oldest later"])
def test_out_of_order_versions_end_with_the_newest_record(app, bucket, grace_hopper, cat, order) -> None:
    """v1 (the portrait) then v2 (the cat) of one key; SQS delivers their notifications in any order.
    Sequencers of different lengths ("0063" is later than "0062FF": S3 says to right-pad the shorter
    with zeros): the record always ends naming v2, and the older event is skipped."""
    key = f"{UPLOADS}versioned.jpg"
    v1, v2 = versioned_events(bucket, key, [grace_hopper, cat], ["0062FF", "0063"])
    if order == "newest first":
        app.s3_handler(sqs_event([v2, v1]), LocalContext())
    elif order == "oldest first":
        app.s3_handler(sqs_event([v1, v2]), LocalContext())
    else:
        app.s3_handler(sqs_event([v2]), LocalContext())
        summary = direct(app, v1)
        assert [o["status"] for o in summary["objects"]] == ["skipped"]
    record = result(bucket, key)
    assert record["version_id"] == v2["Records"][0]["s3"]["object"]["versionId"]
    assert record["predictions"][0]["label"] in CAT_CLASSES


@pytest.mark.parametrize(
    ("sequencer", "other", "later"),
    [("0063", "0062FF", True), ("0062FF", "0063", False), ("00A", "009FFF", True), ("0a", "09", True),
     ("0055AED6DCD90281E5", "0055AED6DCD90281E5", False), ("0055AED6DCD90281E6", "0055AED6DCD90281E5", True)],
)  # fmt: skip
def test_sequencers_compare_as_s3_says(sequencer: str, other: str, later: bool) -> None:
    assert storage.later(sequencer, other) is later


def test_results_are_never_processed(app, bucket, put, grace_hopper) -> None:
    objects = [put("results/uploads/x.jpg", grace_hopper), put("results/old.json", b"{}")]
    calls = app.runtime.recognizer.classifier.calls
    summary = direct(app, s3_event(bucket, objects))
    assert [o["status"] for o in summary["objects"]] == ["skipped", "skipped"]
    assert app.runtime.recognizer.classifier.calls == calls
    assert result_keys(bucket) == ["results/old.json", "results/uploads/x.jpg"]


def test_keys_with_spaces_and_unicode(app, bucket, put, grace_hopper) -> None:
    key = f"{UPLOADS}Été 2026/Grace Hopper (1984) + ünïcode.jpg"
    event = s3_event(bucket, [put(key, grace_hopper)])
    assert (
        "+" in event["Records"][0]["s3"]["object"]["key"]
        and "%C3%89" in event["Records"][0]["s3"]["object"]["key"]
    )
    assert via_sqs(app, bucket, [put(key, grace_hopper)]) == {"batchItemFailures": []}
    assert result(bucket, key)["key"] == key
    assert result(bucket, key)["predictions"][0]["label"] == "military_uniform"


def test_s3_test_events_are_ignored(app, bucket) -> None:
    assert app.s3_handler(sqs_event([s3_test_event(bucket)]), LocalContext()) == {"batchItemFailures": []}
    assert direct(app, s3_test_event(bucket)) == {"objects": []}
    assert result_keys(bucket) == []


def test_a_malformed_message_is_left_to_the_dead_letter_queue(app, bucket, put, grace_hopper) -> None:
    event = sqs_event([s3_event(bucket, [put(f"{UPLOADS}g.jpg", grace_hopper)]), {"hello": "world"}])
    event["Records"].append({**event["Records"][0], "messageId": "not-json", "body": "{oops"})
    answer = app.s3_handler(event, LocalContext())
    failed = {item["itemIdentifier"] for item in answer["batchItemFailures"]}
    assert failed == {event["Records"][1]["messageId"], "not-json"}
    assert result_keys(bucket) == ["results/uploads/g.jpg.json"]


@pytest.mark.parametrize(
    "broken",
    [
        {"Records": [{"eventName": "ObjectCreated:Put"}]},  # a record without its s3 object
        {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {}, "object": {}}}]},
        {
            "Records": [
                {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": 7}}}
            ]
        },
        {"Records": ["not a record"]},
    ],
    ids=["no-s3", "empty-s3", "key-not-text", "record-not-object"],
)
def test_a_malformed_record_fails_its_message_only(app, bucket, put, grace_hopper, broken) -> None:
    """Every SQS message is judged on its own: the valid ones of the batch get their records."""
    event = sqs_event([s3_event(bucket, [put(f"{UPLOADS}g.jpg", grace_hopper)]), broken])
    answer = app.s3_handler(event, LocalContext())
    assert answer == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    assert result_keys(bucket) == ["results/uploads/g.jpg.json"]


def test_a_malformed_direct_notification_is_a_clear_error(app) -> None:
    with pytest.raises(InvalidEvent, match="record 0 is not an S3 object notification"):
        app.s3_handler(
            {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]}, LocalContext()
        )


def test_metrics_count_processed_and_failed(app, bucket, put, grace_hopper, capsys) -> None:
    objects = [put(f"{UPLOADS}g.jpg", grace_hopper), put(f"{UPLOADS}bad.jpg", b"nope")]
    capsys.readouterr()
    via_sqs(app, bucket, objects)
    blob = next(
        json.loads(line) for line in capsys.readouterr().out.splitlines() if "ImagesProcessed" in line
    )
    assert blob["ImagesProcessed"] == [1.0]
    assert blob["ImagesFailed"] == [1.0]
    assert blob["BatchSize"] == [1.0]


@pytest.mark.parametrize(
    "fixture",
    sorted(p.name for p in EVENTS.glob("s3-*.json")) + sorted(p.name for p in EVENTS.glob("sqs-*.json")),
)
def test_s3_event_fixtures(app, moto_s3, grace_hopper, fixture: str) -> None:
    """Every S3/SQS fixture works once its objects exist: the expected results appear."""
    expected = json.loads((EVENTS / "expected.json").read_text())[fixture]
    client = S3
    client.create_bucket(Bucket=expected["bucket"])
    for key in expected["results"]:
        client.put_object(Bucket=expected["bucket"], Key=key, Body=grace_hopper)
    event = json.loads((EVENTS / fixture).read_text())
    answer = app.s3_handler(event, LocalContext())
    if event["Records"][0].get("eventSource") == "aws:sqs":
        assert answer == {"batchItemFailures": []}
    for key in expected["results"]:
        record = result(expected["bucket"], key)
        assert record["predictions"][0]["label"] == "military_uniform", key


def test_a_batch_with_two_hostile_files_completes_with_two_error_records(
    app, bucket, put, grace_hopper, cat
) -> None:
    from tests.corpora import hostile

    objects = [put(f"{UPLOADS}photo-{i}.jpg", grace_hopper if i % 2 else cat) for i in range(8)]
    objects.insert(3, put(f"{UPLOADS}rle.bmp", hostile.bmp_rle()))
    objects.insert(7, put(f"{UPLOADS}scans.jpg", hostile.progressive_jpeg_scans(scans=2_000)))
    calls = app.runtime.recognizer.classifier.calls
    assert via_sqs(app, bucket, objects) == {"batchItemFailures": []}
    assert app.runtime.recognizer.classifier.calls == calls + 1  # the eight photos in one model call
    records = {key: result(bucket, key) for key, _, _ in objects}
    errors = {key: r["code"] for key, r in records.items() if "code" in r}
    assert errors == {f"{UPLOADS}rle.bmp": "image_too_costly", f"{UPLOADS}scans.jpg": "image_too_costly"}
    assert sum("predictions" in r for r in records.values()) == 8


def test_a_redelivered_batch_isolates_the_message_that_fails_it(
    app, bucket, put, grace_hopper, cat, monkeypatch
) -> None:
    poison = grace_hopper + b"poison"  # classifies like the portrait, but this test makes it crash
    objects = [put(f"{UPLOADS}a.jpg", grace_hopper), put(f"{UPLOADS}poison.jpg", poison)]
    objects.append(put(f"{UPLOADS}c.bmp", cat))
    classify = app.runtime.recognizer.classify

    def crashing(images, *args, **kwargs):
        if poison in images:
            raise MemoryError("a bug or an exhausted resource, triggered by one object")
        return classify(images, *args, **kwargs)

    monkeypatch.setattr(app.runtime.recognizer, "classify", crashing)
    event = sqs_event([s3_event(bucket, [obj]) for obj in objects])
    ids = [record["messageId"] for record in event["Records"]]
    first = app.s3_handler(event, LocalContext())
    assert first == {"batchItemFailures": [{"itemIdentifier": i} for i in ids]}  # nothing lost
    assert result_keys(bucket) == []
    for record in event["Records"]:
        record["attributes"]["ApproximateReceiveCount"] = "2"
    again = app.s3_handler(event, LocalContext())
    assert again == {"batchItemFailures": [{"itemIdentifier": ids[1]}]}
    assert result_keys(bucket) == [f"results/{UPLOADS}a.jpg.json", f"results/{UPLOADS}c.bmp.json"]


@pytest.mark.parametrize("event", [{}, {"Records": []}, {"detail": {"bucket": "x"}}, []])
def test_events_that_are_not_s3_notifications_get_a_clear_error(app, event) -> None:
    with pytest.raises(InvalidEvent, match="S3 ObjectCreated notification or an SQS batch"):
        app.s3_handler(event, LocalContext())


def test_a_key_too_long_to_mirror_gets_its_record_by_hash(app, bucket, put, grace_hopper) -> None:
    """S3 keys may be 1,024 bytes; results/<key>.json would then be longer than S3 allows (moto does
    not enforce it): the record goes to results/_by-hash/<sha256 of the key>.json, once, and says
    which key it answers. A rerun finds it there (already answered)."""
    import hashlib

    key = UPLOADS + "é" * 400 + "x" * 200 + ".jpg"  # 1,012 bytes in UTF-8
    assert len(key.encode()) == 1012
    assert via_sqs(app, bucket, [put(key, grace_hopper)]) == {"batchItemFailures": []}
    (stored,) = result_keys(bucket)
    assert stored == f"results/_by-hash/{hashlib.sha256(key.encode()).hexdigest()}.json"
    record = json.loads(S3.get_object(Bucket=bucket, Key=stored)["Body"].read())
    assert record["key"] == key and record["predictions"][0]["label"] == "military_uniform"
    assert direct(app, s3_event(bucket, [(key, record["etag"], 1)]))["objects"][0]["status"] == "skipped"


def test_a_key_named_like_a_fallback_keeps_its_own_record(app, bucket, put, grace_hopper, cat) -> None:
    """The legal key ``_by-hash/<sha256 of a long key>`` and that long key: each ends with its own
    record, whichever runs first and however often (keys under ``_by-hash/`` are hashed too)."""
    import hashlib

    long_key = UPLOADS + "é" * 400 + "x" * 200 + ".jpg"
    lookalike = f"_by-hash/{hashlib.sha256(long_key.encode()).hexdigest()}"
    for _ in range(2):
        for key, photo in ((lookalike, cat), (long_key, grace_hopper)):
            assert via_sqs(app, bucket, [put(key, photo)]) == {"batchItemFailures": []}
    records = [json.loads(S3.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in result_keys(bucket)]
    assert sorted(r["key"] for r in records) == sorted([lookalike, long_key])
    by_key = {r["key"]: r["predictions"][0]["label"] for r in records}
    assert by_key[long_key] == "military_uniform" and by_key[lookalike] in CAT_CLASSES


def test_a_key_s3_refuses_for_its_record_falls_back_by_hash(app, bucket, put, grace_hopper) -> None:
    """A permanent 4xx on the record's key (KeyTooLongError injected, as S3 answers it) is not
    retried forever: the record is written at the fallback."""
    from botocore.exceptions import ClientError

    client = app.runtime.storage.client
    original = client.put_object

    def refuse_long(**kwargs):
        if not kwargs["Key"].startswith("results/_by-hash/"):
            error = {"Error": {"Code": "KeyTooLongError"}, "ResponseMetadata": {"HTTPStatusCode": 400}}
            raise ClientError(error, "PutObject")
        return original(**kwargs)

    client.put_object = refuse_long
    try:
        assert via_sqs(app, bucket, [put(f"{UPLOADS}refused.jpg", grace_hopper)]) == {"batchItemFailures": []}
    finally:
        client.put_object = original
    (stored,) = result_keys(bucket)
    assert stored.startswith("results/_by-hash/")
