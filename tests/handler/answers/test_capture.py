"""prediction_id, capture and feedback, on moto's S3 server with the real model and photos."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import socket
import threading
import time
from datetime import UTC, datetime

import pytest

from handler.answers.capture import (
    PredictionId,
    PredictionIdError,
    caller_record,
    image_type,
    new_capture_client,
    trusted,
)
from localaws.context import LocalContext
from localaws.events import Caller, http_event, rest_event, s3_event
from tests.support import PHOTOS, body_json

GRACE = (PHOTOS / "grace_hopper.jpg").read_bytes()
CAT = (PHOTOS / "cat.bmp").read_bytes()


@pytest.fixture
def capturing(configure, s3_client, bucket):
    """The function with every answer captured into ``bucket``."""
    return configure(s3_client=s3_client, uploads_bucket=bucket, capture_rate=1.0)


def predict(app, image: bytes, door=rest_event) -> dict:
    headers = {"Content-Type": "image/jpeg"}
    return app.api_handler(door("POST", "/predict", body=image, headers=headers), LocalContext())


# A reviewer whose signed request API Gateway's IAM authorization let through.
REVIEWER = Caller(
    arn="arn:aws:sts::111122223333:assumed-role/Reviewers/ana", account="111122223333", user_id="AROAEX:ana"
)


def send_feedback(app, document, door=rest_event, caller: Caller | None = REVIEWER) -> dict:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    headers = {"Content-Type": "application/json"}
    event = door("POST", "/feedback", body=body, headers=headers, caller=caller)
    return app.api_handler(event, LocalContext())


def stored(s3_client, bucket: str, prefix: str = "capture/") -> dict[str, bytes]:
    """The captures in ``bucket`` (each model version's labels.json aside)."""
    listed = s3_client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    keys = [o["Key"] for o in listed if not o["Key"].endswith("/labels.json")]
    return {key: s3_client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


# --- prediction_id -------------------------------------------------------------------------------


def test_a_prediction_id_names_the_image_the_model_and_the_time() -> None:
    now = datetime(2026, 11, 27, 21, 44, 20, 123456, tzinfo=UTC)
    pid = PredictionId.new(GRACE, "my model/v2", "1.0:rc", now)
    text = str(pid)
    assert text == f"my%20model%2Fv2:1.0%3Arc:20261127T214420123456Z:{hashlib.sha256(GRACE).hexdigest()}"
    assert PredictionId.parse(text) == pid
    assert pid.key("capture/", "jpg") == f"capture/my%20model%2Fv2/1.0%3Arc/2026/11/27/{text}.jpg"


@pytest.mark.parametrize(
    "hostile",
    [
        None,
        42,
        "",
        "a:b:c",
        "a:b:c:d:e",
        "m:v:20261127T214420123456Z:" + "g" * 64,
        "m:v:20261127T214420123456Z:" + "a" * 63,
        "m:v:2026-11-27T21:44:20Z:" + "a" * 64,
        "m:v:20261399T214420123456Z:" + "a" * 64,  # month 13
        "m::20261127T214420123456Z:" + "a" * 64,
        "m:v:20261127T214420123456Z:" + "a" * 64 + "\n",
        "x" * 10_000,
        "m:v:00010101T000000000000Z:" + "a" * 64,  # year 1: would not even print back the same
        "..:v:20261127T214420123456Z:" + "a" * 64,  # a key segment S3 takes literally, a proxy may not
        "m:%2E%2E:20261127T214420123456Z:" + "a" * 64,
        "%20:v:20261127T214420123456Z:" + "a" * 64,
    ],
)
def test_anything_else_is_not_a_prediction_id(hostile) -> None:
    with pytest.raises(PredictionIdError):
        PredictionId.parse(hostile)


@pytest.mark.parametrize(
    ("start", "extension"),
    [
        (GRACE[:16], "jpg"),
        (CAT[:16], "bmp"),
        (b"\x89PNG\r\n\x1a\n", "png"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"),
        (b"\x00\x00\x00\x1cftypavif", "avif"),
        (b"\x00\x00\x00\x1cftypheic", "heic"),
        (b"GIF89a", "gif"),
        (b"II*\x00", "tiff"),
        (b"hello", "bin"),
    ],
)
def test_a_captured_image_keeps_its_type(start: bytes, extension: str) -> None:
    assert image_type(start)[0] == extension


# --- answers -------------------------------------------------------------------------------------


def test_every_answer_has_a_prediction_id_and_capture_is_off_by_default(app, s3_client) -> None:
    answer = body_json(predict(app, GRACE))
    pid = PredictionId.parse(answer["prediction_id"])
    assert (pid.model, pid.version, pid.sha256) == (
        "mobilenet_v2",
        "1.0.0",
        hashlib.sha256(GRACE).hexdigest(),
    )
    assert abs((datetime.now(UTC) - pid.time).total_seconds()) < 60
    assert "captured" not in answer


@pytest.mark.parametrize("door", [rest_event, http_event])
def test_a_captured_answer_stores_the_image_and_its_answer_side_by_side(
    capturing, s3_client, bucket, door
) -> None:
    answer = body_json(predict(capturing, GRACE, door))
    assert answer["captured"] is True
    pid = PredictionId.parse(answer["prediction_id"])
    files = stored(s3_client, bucket)
    day = f"capture/mobilenet_v2/1.0.0/{pid.time:%Y/%m/%d}/{answer['prediction_id']}"
    assert set(files) == {f"{day}.jpg", f"{day}.json"}
    assert files[f"{day}.jpg"] == GRACE
    record = json.loads(files[f"{day}.json"])
    assert record["prediction_id"] == answer["prediction_id"] and record["source"] == "api"
    assert record["predictions"] == answer["predictions"]
    assert record["predictions"][0]["label"] == "military_uniform"
    assert record["image"] == {
        "key": f"{day}.jpg",
        "sha256": hashlib.sha256(GRACE).hexdigest(),
        "bytes": len(GRACE),
        "content_type": "image/jpeg",
    }
    assert record["model"]["name"] == "mobilenet_v2" and record["sampled_by"] == "rate"


def test_a_batch_captures_each_photo_and_not_the_refused_one(capturing, s3_client, bucket) -> None:
    body = json.dumps(
        {"images": [__import__("base64").b64encode(x).decode() for x in (GRACE, b"not an image", CAT)]}
    ).encode()
    answer = body_json(
        capturing.api_handler(
            rest_event("POST", "/predict", body=body, headers={"Content-Type": "application/json"}),
            LocalContext(),
        )
    )
    first, refused, third = answer["results"]
    assert first["captured"] and third["captured"] and "prediction_id" not in refused
    assert first["prediction_id"] != third["prediction_id"]
    assert sorted(k.rsplit(".", 1)[1] for k in stored(s3_client, bucket)) == ["bmp", "jpg", "json", "json"]


def test_uncertain_answers_are_captured_at_their_own_rate(configure, moto_s3, s3_client, bucket) -> None:
    """Rate 0 for confident answers, 1 for uncertain ones: a threshold above every probability
    makes the cat uncertain; a threshold of 0 makes it confident, and nothing is stored."""

    def capturing_uncertain(threshold: float):
        return configure(
            s3_client=s3_client,
            uploads_bucket=bucket,
            capture_rate=0.0,
            capture_uncertain_rate=1.0,
            min_confidence=threshold,
        )

    assert "captured" not in body_json(predict(capturing_uncertain(0.0), CAT))
    assert stored(s3_client, bucket) == {}
    unsure = capturing_uncertain(1.0)
    answer = body_json(predict(unsure, CAT))
    assert answer["uncertain"] is True and answer["captured"] is True
    (record,) = [json.loads(v) for k, v in stored(s3_client, bucket).items() if k.endswith(".json")]
    assert record["uncertain"] is True and record["sampled_by"] == "uncertain_rate"


def test_stored_objects_get_a_prediction_id_and_are_captured_too(capturing, s3_client, bucket) -> None:
    s3_client.put_object(Bucket=bucket, Key="uploads/cat.bmp", Body=CAT)
    etag = s3_client.head_object(Bucket=bucket, Key="uploads/cat.bmp")["ETag"].strip('"')
    capturing.s3_handler(s3_event(bucket, [("uploads/cat.bmp", etag, len(CAT))]), LocalContext())
    record = json.loads(
        s3_client.get_object(Bucket=bucket, Key="results/uploads/cat.bmp.json")["Body"].read()
    )
    pid = PredictionId.parse(record["prediction_id"])
    assert pid.sha256 == hashlib.sha256(CAT).hexdigest() and record["captured"] is True
    (answer,) = [json.loads(v) for k, v in stored(s3_client, bucket).items() if k.endswith(".json")]
    assert answer["source"] == "s3" and answer["prediction_id"] == record["prediction_id"]


class Refusing:
    """An S3 client whose every call fails, as a full bucket policy or an outage would."""

    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise RuntimeError(f"{name}: S3 is down")

        return fail


def test_a_failed_capture_is_a_metric_not_an_error(configure, capsys) -> None:
    app = configure(s3_client=Refusing(), uploads_bucket="anywhere", capture_rate=1.0)
    answer = predict(app, GRACE)
    assert answer["statusCode"] == 200
    body = body_json(answer)
    assert body["captured"] is False and body["predictions"][0]["label"] == "military_uniform"
    assert '"CaptureFailed":[1.0]' in capsys.readouterr().out.replace(" ", "")


def distinct_photos(count: int) -> list[bytes]:
    """``count`` different small JPEGs (different bytes: different prediction ids)."""
    import io

    from PIL import Image

    with Image.open(PHOTOS / "grace_hopper.jpg") as portrait:
        small = portrait.convert("RGB").resize((96, 96))
    photos = []
    for turn in range(count):
        encoded = io.BytesIO()
        small.rotate(turn * 7).save(encoded, "JPEG")
        photos.append(encoded.getvalue())
    return photos


def batch_body(images: list[bytes]) -> dict:
    import base64

    body = json.dumps({"images": [base64.b64encode(image).decode() for image in images]}).encode()
    return rest_event("POST", "/predict", body=body, headers={"Content-Type": "application/json"})


@pytest.mark.slow
def test_a_capture_store_that_hangs_costs_a_batch_one_attempt_not_one_per_photo(configure, capsys) -> None:
    """A server that accepts connections and never answers, and a batch of 16 photos: the first
    capture's one attempt times out; the other 15 are skipped (the invocation's capture budget),
    so the answer waits seconds, not the minute 16 timed-out captures (and their retries) took."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held = []

    def accept_forever() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(listener.accept())

    threading.Thread(target=accept_forever, daemon=True).start()
    import os

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    client = new_capture_client(endpoint_url=f"http://127.0.0.1:{listener.getsockname()[1]}")
    app = configure(s3_client=client, uploads_bucket="hanging", capture_rate=1.0)
    capsys.readouterr()
    started = time.monotonic()
    answer = app.api_handler(batch_body(distinct_photos(16)), LocalContext())
    waited = time.monotonic() - started
    listener.close()
    assert answer["statusCode"] == 200
    assert [result["captured"] for result in body_json(answer)["results"]] == [False] * 16
    printed = capsys.readouterr().out.replace(" ", "")
    assert (
        '"CaptureFailed":[1.0]' in printed and '"CaptureSkipped":[' + ",".join(["1.0"] * 15) + "]" in printed
    )
    assert len(held) == 1, "one connection: no retry, no second photo tried"
    assert waited < 10, f"the answer waited {waited:.1f} s for a hanging capture store"


# --- feedback ------------------------------------------------------------------------------------


@pytest.mark.parametrize("door", [rest_event, http_event])
def test_feedback_is_stored_beside_its_capture_with_its_caller(capturing, s3_client, bucket, door) -> None:
    """The caller is what API Gateway put in requestContext (v1 identity, v2 authorizer.iam)."""
    pid = body_json(predict(capturing, CAT))["prediction_id"]
    answer = send_feedback(capturing, {"prediction_id": pid, "label": "tiger_cat"}, door)
    assert answer["statusCode"] == 201, answer["body"]
    body = body_json(answer)
    assert body["label"] == "tiger_cat" and body["answered"] == "Egyptian_cat"
    key = PredictionId.parse(pid).key("capture/", "feedback.json")
    feedback = json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert feedback["prediction_id"] == pid and feedback["label"] == "tiger_cat"
    assert feedback["model"] == {"name": "mobilenet_v2", "version": "1.0.0"}
    assert feedback["caller"] == {"arn": REVIEWER.arn, "account": "111122223333"}
    assert trusted(feedback)
    assert not [k for k in stored(s3_client, bucket) if k.endswith(".anonymous-feedback.json")]


def test_anonymous_feedback_is_kept_apart_and_never_replaces_a_trusted_one(
    configure, s3_client, bucket
) -> None:
    """FEEDBACK_AUTH=none: a correction without a caller is stored under its own key, so it can
    neither overwrite the trusted correction nor pass for one."""
    app = configure(s3_client=s3_client, uploads_bucket=bucket, capture_rate=1.0, feedback_auth="none")
    pid = body_json(predict(app, CAT))["prediction_id"]
    assert send_feedback(app, {"prediction_id": pid, "label": "tiger_cat"})["statusCode"] == 201
    answer = send_feedback(app, {"prediction_id": pid, "label": "tabby"}, caller=None)
    assert answer["statusCode"] == 201, answer["body"]
    assert body_json(answer)["caller"] is None
    parsed = PredictionId.parse(pid)
    kept = json.loads(stored(s3_client, bucket)[parsed.key("capture/", "feedback.json")])
    assert (kept["label"], trusted(kept)) == ("tiger_cat", True)
    anonymous = json.loads(stored(s3_client, bucket)[parsed.key("capture/", "anonymous-feedback.json")])
    assert (anonymous["label"], anonymous["caller"], trusted(anonymous)) == ("tabby", None, False)


@pytest.mark.parametrize(
    ("arn", "expected"),
    [
        ("arn:aws:iam::111122223333:user/ana", "111122223333"),
        ("arn:aws-cn:sts::444455556666:assumed-role/R/s", "444455556666"),
        ("arn:aws-us-gov:iam::111122223333:root", "111122223333"),
        ("arn:aws:sts::111122223333:federated-user/ana", "111122223333"),
        ("*", None),
        ("arn:aws:s3:::bucket/key", None),  # not a principal
        ("arn:aws:iam::1111:user/ana", None),
        ("arn:aws:iam::111122223333:user/a b", None),  # no spaces in an ARN
        ("arn:aws:iam::111122223333:user/" + "a" * 3000, None),
        ("arn:aws:iam::111122223333:user/ana\n", None),
        (12, None),
        (None, None),
        (["arn:aws:iam::111122223333:user/ana"], None),
    ],
)
def test_only_an_iam_principals_arn_is_a_caller(arn, expected) -> None:
    record = caller_record(arn)
    assert (record["account"] if record else None) == expected
    if record:
        assert record["arn"] == arn and trusted({"caller": record})


@pytest.mark.parametrize(
    "record",
    [
        {"label": "tabby"},  # written before callers were recorded
        {"label": "tabby", "caller": None},
        {"label": "tabby", "caller": "arn:aws:iam::111122223333:user/ana"},
        {"label": "tabby", "caller": {"arn": "someone"}},
        {"label": "tabby", "caller": {"arn": "arn:aws:iam::111122223333:user/ana", "account": "1"}},
        ["not", "a", "record"],
    ],
)
def test_a_record_without_a_recorded_caller_is_not_trusted(record) -> None:
    assert not trusted(record)


@pytest.mark.parametrize(
    ("document", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"[]", 400, "invalid_json"),
        ({"label": "tiger_cat"}, 400, "invalid_prediction_id"),
        ({"prediction_id": "m:v:t:s", "label": "tiger_cat"}, 400, "invalid_prediction_id"),
        ({"prediction_id": "GOOD", "label": "not_a_class"}, 400, "unknown_label"),
        ({"prediction_id": "GOOD", "label": ["tiger_cat"]}, 400, "unknown_label"),
        ({"prediction_id": "GOOD"}, 400, "unknown_label"),
        ({"prediction_id": "UNKNOWN", "label": "tiger_cat"}, 404, "unknown_prediction"),
    ],
)
def test_bad_feedback_gets_a_clear_error(capturing, document, status: int, code: str) -> None:
    if isinstance(document, dict) and document.get("prediction_id") in ("GOOD", "UNKNOWN"):
        if document["prediction_id"] == "GOOD":
            document["prediction_id"] = body_json(predict(capturing, CAT))["prediction_id"]
        else:  # well formed, never captured
            document["prediction_id"] = str(PredictionId.new(b"never sent", "mobilenet_v2", "1.0.0"))
    answer = send_feedback(capturing, document)
    assert answer["statusCode"] == status, answer["body"]
    assert body_json(answer)["code"] == code


class KeyLengthEnforcing:
    """The session's moto client, refusing keys over 1,024 bytes as S3 does (moto does not)."""

    def __init__(self, client) -> None:
        self.client = client

    def __getattr__(self, name: str):
        method = getattr(self.client, name)

        def call(**kwargs):
            if len(kwargs.get("Key", "").encode()) > 1024:
                from botocore.exceptions import ClientError

                error = {"Error": {"Code": "KeyTooLongError", "Message": "Your key is too long"}}
                raise ClientError(error, name)
            return method(**kwargs)

        return call


def test_an_id_whose_capture_key_cannot_exist_is_404_not_503(configure, s3_client, bucket) -> None:
    """A client-made id with a long model name: its capture key would pass S3's 1,024 bytes, where
    S3 answers KeyTooLongError. No capture can have it: 404, never a 5xx the canary alarm counts."""
    app = configure(s3_client=KeyLengthEnforcing(s3_client), uploads_bucket=bucket, capture_rate=1.0)
    pid = PredictionId.new(b"never sent", "m" * 460, "1.0.0")
    assert len(pid.key("capture/", "json").encode()) > 1024
    answer = send_feedback(app, {"prediction_id": str(pid), "label": "tiger_cat"})
    assert answer["statusCode"] == 404, answer["body"]
    assert body_json(answer)["code"] == "unknown_prediction"


def test_feedback_without_capture_is_404_and_a_broken_store_503(configure) -> None:
    pid = str(PredictionId.new(CAT, "mobilenet_v2", "1.0.0"))
    off = configure()  # no bucket at all
    assert send_feedback(off, {"prediction_id": pid, "label": "tiger_cat"})["statusCode"] == 404
    broken = configure(s3_client=Refusing(), uploads_bucket="anywhere", capture_rate=1.0)
    answer = send_feedback(broken, {"prediction_id": pid, "label": "tiger_cat"})
    assert answer["statusCode"] == 503 and body_json(answer)["code"] == "storage_unavailable"


def test_every_type_a_capture_can_store_is_one_the_export_reads() -> None:
    """The export lists captures by their files' extensions: one it did not know would leave a
    captured AVIF or HEIC photo behind as "image missing"."""
    from devtools import capture_export
    from handler.answers.capture import IMAGE_EXTENSIONS
    from handler.recognition.formats import SIGNATURES

    assert {signature.extension for signature in SIGNATURES} | {"bin"} == set(IMAGE_EXTENSIONS)
    starts = [
        b"\xff\xd8\xff\xe0",
        b"\x89PNG\r\n\x1a\n",
        b"GIF89a",
        b"II*\0",
        b"MM\0*",
        b"BM",
        b"RIFF\0\0\0\0WEBP",
        b"\0\0\0\x1cftypavif",
        b"\0\0\0\x1cftypheic",
        b"?",
    ]
    for start in starts:
        extension = image_type(start)[0]
        assert extension in IMAGE_EXTENSIONS
        assert capture_export.split_key(f"capture/m/v/2026/11/27/id.{extension}") == (
            "capture/m/v/2026/11/27/id",
            "image",
        )


def test_the_same_photo_twice_in_a_request_is_one_capture(capturing, s3_client, bucket) -> None:
    answer = body_json(capturing.api_handler(batch_body([CAT, GRACE, CAT]), LocalContext()))
    first, _, again = answer["results"]
    assert first["prediction_id"] == again["prediction_id"] and first["captured"] and again["captured"]
    assert sorted(k.rsplit(".", 1)[1] for k in stored(s3_client, bucket)) == ["bmp", "jpg", "json", "json"]


def test_feedback_on_an_earlier_versions_answer_is_checked_against_its_classes(
    configure, classifier, moto_s3, s3_client, bucket
) -> None:
    """An answer of version 0.9.0 (whose classes were ants and bees), corrected after 1.0.0 took
    over: the correction is checked against 0.9.0's classes, and recorded as 0.9.0's."""
    settings = {"s3_client": s3_client, "uploads_bucket": bucket, "capture_rate": 1.0}
    answering_as_earlier = copy.copy(classifier)  # the same loaded model, under another version
    answering_as_earlier.info = dataclasses.replace(classifier.info, version="0.9.0")
    earlier = configure(model=answering_as_earlier, **settings)
    pid = body_json(predict(earlier, CAT))["prediction_id"]
    s3_client.put_object(
        Bucket=bucket, Key="capture/mobilenet_v2/0.9.0/labels.json", Body=b'["ants", "bees"]'
    )
    now = configure(**settings)
    refused = send_feedback(now, {"prediction_id": pid, "label": "tiger_cat"})
    assert refused["statusCode"] == 400 and "classes of mobilenet_v2 0.9.0" in body_json(refused)["error"]
    answer = send_feedback(now, {"prediction_id": pid, "label": "bees"})
    assert answer["statusCode"] == 201, answer["body"]
    key = PredictionId.parse(pid).key("capture/", "feedback.json")
    feedback = json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert feedback["model"] == {"name": "mobilenet_v2", "version": "0.9.0"}


@pytest.mark.parametrize(
    ("record", "status"), [(b"not json", 404), (b"[1, 2]", 404), (b'{"predictions": {"a": 1}}', 201)]
)
def test_a_capture_record_someone_mangled_is_never_a_500(
    capturing, s3_client, bucket, record, status
) -> None:
    pid = body_json(predict(capturing, CAT))["prediction_id"]
    s3_client.put_object(Bucket=bucket, Key=PredictionId.parse(pid).key("capture/", "json"), Body=record)
    answer = send_feedback(capturing, {"prediction_id": pid, "label": "tiger_cat"})
    assert answer["statusCode"] == status, answer["body"]
    if status == 201:
        assert body_json(answer)["answered"] is None
