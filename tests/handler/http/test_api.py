"""``api_handler`` end to end on the real model, through REST v1 and HTTP v2 events."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable

import pytest
from PIL import Image

from localaws.context import LocalContext
from localaws.events import http_event, multipart_body, rest_event
from tests.support import EVENTS, body_json, captured_logs, header

DOORS = {"rest": rest_event, "http": http_event}


def invoke(app, event: dict) -> dict:
    return app.api_handler(event, LocalContext())


def upload_styles(photo: bytes) -> dict[str, tuple[bytes, str]]:
    """The same photo as each accepted body: {style: (body, content type)}."""
    b64 = base64.b64encode(photo).decode()
    return {
        "multipart": multipart_body([("image", "photo.jpg", photo, "image/jpeg")]),
        "json-base64": (json.dumps({"image": b64}).encode(), "application/json"),
        "json-data-url": (
            json.dumps({"image": f"data:image/jpeg;base64,{b64}"}).encode(),
            "application/json",
        ),
        "raw-image": (photo, "image/jpeg"),
        "raw-octet-stream": (photo, "application/octet-stream"),
    }


def predict(app, door: Callable, body: bytes, content_type: str, query: str | None = None) -> dict:
    return invoke(
        app, door("POST", "/predict", body=body, headers={"Content-Type": content_type}, query=query)
    )


def test_every_upload_style_and_door_gives_identical_predictions(app, grace_hopper: bytes) -> None:
    answers = {}
    for door_name, door in DOORS.items():
        for style, (body, content_type) in upload_styles(grace_hopper).items():
            result = predict(app, door, body, content_type)
            assert result["statusCode"] == 200, (door_name, style, result["body"])
            answers[(door_name, style)] = body_json(result)["predictions"]
    reference = answers[("rest", "multipart")]
    assert reference[0]["label"] == "military_uniform"
    assert all(answer == reference for answer in answers.values()), "all styles must agree"


def test_answer_shape(app, grace_hopper: bytes) -> None:
    result = predict(app, rest_event, grace_hopper, "image/jpeg")
    answer = body_json(result)
    assert len(answer["predictions"]) == 5
    first = answer["predictions"][0]
    assert first == {
        "label": "military_uniform",
        "probability": pytest.approx(0.93, abs=0.03),
        "class_id": "n03763968",
    }
    assert answer["model"] == {"name": "mobilenet_v2", "version": "1.0.0", "backend": "litert"}
    probabilities = [p["probability"] for p in answer["predictions"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert header(result, "Content-Type") == "application/json"
    assert header(result, "Cache-Control") == "no-store"
    assert header(result, "X-Content-Type-Options") == "nosniff"


def test_cat_through_the_api(app, cat: bytes) -> None:
    answer = body_json(predict(app, http_event, cat, "image/bmp"))
    assert answer["predictions"][0]["label"] in {"Egyptian_cat", "tabby", "tiger_cat"}


@pytest.mark.parametrize(("query", "count"), [("top_k=1", 1), ("top_k=20", 20), (None, 5)])
def test_top_k(app, grace_hopper: bytes, query: str | None, count: int) -> None:
    answer = body_json(predict(app, rest_event, grace_hopper, "image/jpeg", query=query))
    assert len(answer["predictions"]) == count
    assert answer["predictions"][0]["label"] == "military_uniform"


@pytest.mark.parametrize("door", DOORS.values(), ids=DOORS.keys())
@pytest.mark.parametrize("value", ["0", "-1", "21", "abc", "1.5", ""])
def test_bad_top_k_is_400(app, grace_hopper: bytes, door: Callable, value: str) -> None:
    result = predict(app, door, grace_hopper, "image/jpeg", query=f"top_k={value}")
    assert result["statusCode"] == 400, result["body"]
    assert body_json(result) == {
        "error": "top_k must be a whole number from 1 to 20 (above the model's class count, every class "
        "is answered).",
        "code": "invalid_parameter",
    }


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def variants(photo: bytes) -> dict[str, tuple[bytes, str]]:
    """Odd but valid versions of the same photo; each must still be a military uniform."""
    upright = Image.open(io.BytesIO(photo))
    rgba = upright.convert("RGBA")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": store it rotated the other way
    return {
        "rgba-png": (encode(rgba, "PNG"), "image/png"),
        "grayscale-jpeg": (encode(upright.convert("L"), "JPEG", quality=90), "image/jpeg"),
        "exif-rotated-jpeg": (
            encode(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=90, exif=exif.tobytes()),
            "image/jpeg",
        ),
        "webp": (encode(upright, "WEBP", quality=90), "image/webp"),
    }


@pytest.mark.parametrize("variant", ["rgba-png", "grayscale-jpeg", "exif-rotated-jpeg", "webp"])
def test_odd_valid_images_are_classified(app, grace_hopper: bytes, variant: str) -> None:
    body, content_type = variants(grace_hopper)[variant]
    result = predict(app, rest_event, body, content_type)
    assert result["statusCode"] == 200, result["body"]
    assert body_json(result)["predictions"][0]["label"] == "military_uniform"


def test_exif_rotation_matters(app, grace_hopper: bytes) -> None:
    """Without the EXIF tag the sideways photo is seen differently: the tag is what fixes it."""
    upright = Image.open(io.BytesIO(grace_hopper))
    sideways = encode(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=90)
    tagged = variants(grace_hopper)["exif-rotated-jpeg"][0]
    plain = body_json(predict(app, rest_event, sideways, "image/jpeg"))["predictions"]
    fixed = body_json(predict(app, rest_event, tagged, "image/jpeg"))["predictions"]
    assert fixed[0]["label"] == "military_uniform"
    assert plain[0]["probability"] < fixed[0]["probability"] or plain[0]["label"] != "military_uniform"


ERRORS = [
    # (name, body, content type, status, code)
    ("empty body", b"", "image/jpeg", 400, "missing_image"),
    ("bad json", b"{oops", "application/json", 400, "invalid_json"),
    ("no image field", b'{"img": "x"}', "application/json", 400, "missing_image"),
    ("bad base64", b'{"image": "@@@"}', "application/json", 400, "invalid_base64"),
    ("text body", b"hello", "text/plain", 415, "unsupported_media_type"),
    ("pdf as octet-stream", b"%PDF-1.4\n%%EOF", "application/octet-stream", 415, "unsupported_image_type"),
    ("svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml", 415, "unsupported_image_type"),
    ("data url not an image", b'{"image": "data:text/plain;base64,aGk="}', "application/json", 415, None),
    ("truncated png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "image/png", 422, "corrupt_image"),
]


@pytest.mark.parametrize("door", DOORS.values(), ids=DOORS.keys())
@pytest.mark.parametrize(
    ("name", "body", "content_type", "status", "code"), ERRORS, ids=[e[0] for e in ERRORS]
)
def test_client_errors(app, door, name, body, content_type, status, code) -> None:
    result = predict(app, door, body, content_type)
    assert result["statusCode"] == status, result["body"]
    answer = body_json(result)
    assert set(answer) == {"error", "code"}
    assert answer["error"] and "Traceback" not in answer["error"]
    if code:
        assert answer["code"] == code


def test_too_many_bytes_is_413(app) -> None:
    limit = app.runtime.settings.max_image_bytes
    result = predict(app, rest_event, b"\xff\xd8" + b"\x00" * limit, "image/jpeg")
    assert result["statusCode"] == 413
    assert body_json(result)["code"] == "image_too_large"


def test_too_many_pixels_is_413(app) -> None:
    from devtools.fixtures import png_header

    result = predict(app, http_event, png_header(7_000, 7_000), "image/png")
    assert result["statusCode"] == 413
    assert body_json(result)["code"] == "image_too_many_pixels"


def test_truncated_jpeg_is_422(app, grace_hopper: bytes) -> None:
    result = predict(app, rest_event, grace_hopper[:20_000], "image/jpeg")
    assert result["statusCode"] == 422
    assert body_json(result)["code"] == "corrupt_image"


def test_invalid_base64_body_flag_is_400(app) -> None:
    event = rest_event("POST", "/predict", body=b"x", headers={"Content-Type": "image/jpeg"})
    event["body"], event["isBase64Encoded"] = "!!!notbase64!!!", True
    result = invoke(app, event)
    assert result["statusCode"] == 400
    assert body_json(result)["code"] == "invalid_base64"


def test_unexpected_failure_is_500_without_details(app, grace_hopper: bytes, monkeypatch, capsys) -> None:
    """Answered as a 500 without details, and counted: an EMF ServerErrors metric (Lambda's Errors
    metric never sees an exception the function answered)."""

    def explode(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(app.runtime.recognizer, "classify", explode)
    capsys.readouterr()
    result = predict(app, rest_event, grace_hopper, "image/jpeg")
    assert result["statusCode"] == 500
    assert body_json(result) == {"error": "Internal error; it has been logged.", "code": "internal_error"}
    emitted = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')
    ]
    assert any(blob.get("ServerErrors") == [1.0] for blob in emitted), emitted


@pytest.mark.parametrize("door", DOORS.values(), ids=DOORS.keys())
def test_health(app, door) -> None:
    result = invoke(app, door("GET", "/health"))
    assert result["statusCode"] == 200
    answer = body_json(result)
    assert answer["status"] == "ok"
    assert answer["model"]["backend"] == "litert"
    assert answer["limits"]["max_image_bytes"] == 6 * 1024 * 1024


@pytest.mark.parametrize("door", DOORS.values(), ids=DOORS.keys())
def test_unknown_route_is_json_404(app, door) -> None:
    result = invoke(app, door("GET", "/nope"))
    assert result["statusCode"] == 404
    assert body_json(result) == {"error": "No such route.", "code": "not_found"}


def test_cors_preflight_and_headers(app, grace_hopper: bytes) -> None:
    preflight = invoke(
        app,
        rest_event(
            "OPTIONS",
            "/predict",
            headers={"Origin": "https://example.org", "Access-Control-Request-Method": "POST"},
        ),
    )
    assert preflight["statusCode"] == 204
    assert header(preflight, "Access-Control-Allow-Origin") == "*"
    assert "POST" in header(preflight, "Access-Control-Allow-Methods")
    assert "Content-Type" in header(preflight, "Access-Control-Allow-Headers")
    answer = invoke(
        app,
        rest_event(
            "POST",
            "/predict",
            body=grace_hopper,
            headers={"Content-Type": "image/jpeg", "Origin": "https://x.org"},
        ),
    )
    assert header(answer, "Access-Control-Allow-Origin") == "*"


@pytest.mark.parametrize("fixture", sorted(p.name for p in EVENTS.glob("api-*.json")))
def test_event_fixtures_get_their_expected_answer(app, fixture: str) -> None:
    expected = json.loads((EVENTS / "expected.json").read_text())[fixture]
    result = invoke(app, json.loads((EVENTS / fixture).read_text()))
    assert result["statusCode"] == expected["status"], result["body"]
    answer = body_json(result)
    if "top1" in expected:
        assert answer["predictions"][0]["label"] == expected["top1"]
        assert len(answer["predictions"]) == expected.get("count", 5)
    if "code" in expected:
        assert answer["code"] == expected["code"]


def test_every_fixture_file_has_an_expectation() -> None:
    expected = json.loads((EVENTS / "expected.json").read_text())
    assert {p.name for p in EVENTS.glob("*.json")} - {"expected.json"} == set(expected)


def test_metrics_are_emitted_as_emf(app, grace_hopper: bytes, capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    predict(app, rest_event, grace_hopper, "image/jpeg")
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    names = {m["Name"] for blob in blobs for d in blob["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"InferenceMs", "ImageBytes", "BatchSize"} <= names
    metric_blob = next(b for b in blobs if "InferenceMs" in b)
    assert metric_blob["backend"] == "litert"
    assert metric_blob["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "ImageRecognition"


def test_logs_carry_the_request_id_and_never_the_image(app, grace_hopper: bytes) -> None:
    """Powertools' logger keeps the stdout it found at import: read its stream directly."""
    with captured_logs() as stream:
        event = rest_event("POST", "/predict", body=grace_hopper, headers={"Content-Type": "image/jpeg"})
        invoke(app, event)
    predict_log = stream.getvalue()
    records = [json.loads(line) for line in predict_log.splitlines() if line.startswith('{"level"')]
    classified = next(r for r in records if r["message"] == "classified")
    assert classified["correlation_id"] == event["requestContext"]["requestId"]
    assert classified["top1"] == "military_uniform"
    assert base64.b64encode(grace_hopper[:60]).decode()[:40] not in predict_log


def ten_images(grace_hopper: bytes, cat: bytes) -> list[tuple[bytes, str]]:
    upright, kitty = Image.open(io.BytesIO(grace_hopper)), Image.open(io.BytesIO(cat))
    images = [(grace_hopper, "image/jpeg"), (cat, "image/bmp")]
    for source in (upright, kitty):
        images += [
            (encode(source.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "PNG"), "image/png"),
            (encode(source.convert("L"), "JPEG", quality=90), "image/jpeg"),
            (encode(source.resize((source.width // 2, source.height // 2)), "WEBP"), "image/webp"),
            (encode(source.crop((10, 10, source.width - 10, source.height - 10)), "JPEG"), "image/jpeg"),
        ]
    return images


@pytest.mark.parametrize("style", ["multipart", "json"])
def test_a_10_image_batch_equals_10_single_requests_in_one_model_call(app, grace_hopper, cat, style) -> None:
    images = ten_images(grace_hopper, cat)
    if style == "multipart":
        body, content_type = multipart_body(
            [("image", f"{n}", data, kind) for n, (data, kind) in enumerate(images)]
        )
    else:
        encoded = [base64.b64encode(data).decode() for data, _ in images]
        body, content_type = json.dumps({"images": encoded}).encode(), "application/json"
    calls = app.runtime.recognizer.classifier.calls
    batch = body_json(predict(app, rest_event, body, content_type))
    assert app.runtime.recognizer.classifier.calls == calls + 1, "ten images, one model call"
    singles = [body_json(predict(app, rest_event, data, kind))["predictions"] for data, kind in images]
    assert len(batch["results"]) == 10
    for together, alone in zip(batch["results"], singles, strict=True):
        assert [p["label"] for p in together["predictions"]] == [p["label"] for p in alone]
        for a, b in zip(together["predictions"], alone, strict=True):
            assert a["probability"] == pytest.approx(b["probability"], abs=1e-4)
    assert batch["results"][0]["predictions"][0]["label"] == "military_uniform"
    assert batch["model"]["name"] == "mobilenet_v2"


def test_a_corrupt_image_in_a_batch_is_an_error_entry_at_its_position(app, grace_hopper) -> None:
    parts = [
        ("image", "a.jpg", grace_hopper, "image/jpeg"),
        ("image", "b.jpg", grace_hopper[:9000], "image/jpeg"),
    ]
    parts.append(("image", "c.jpg", grace_hopper, "image/jpeg"))
    body, content_type = multipart_body(parts)
    result = predict(app, http_event, body, content_type)
    assert result["statusCode"] == 200
    first, broken, last = body_json(result)["results"]
    assert first["predictions"][0]["label"] == last["predictions"][0]["label"] == "military_uniform"
    assert broken == {"error": broken["error"], "code": "corrupt_image"}


def test_17_images_is_413(app, grace_hopper) -> None:
    body, content_type = multipart_body([("image", "a.jpg", grace_hopper, "image/jpeg")] * 17)
    result = predict(app, rest_event, body, content_type)
    assert result["statusCode"] == 413
    assert body_json(result)["code"] == "too_many_images"


@pytest.mark.parametrize("door", [rest_event, http_event], ids=["rest", "http"])
def test_every_answer_varies_on_origin(app, door, grace_hopper) -> None:
    origin = {"Origin": "https://app.example.org"}
    answers = [
        invoke(app, door("GET", "/health", headers=origin)),
        invoke(app, door("POST", "/predict", body=b"nope", headers={**origin, "Content-Type": "text/plain"})),
        invoke(app, door("GET", "/nowhere", headers=origin)),
        invoke(
            app,
            door(
                "OPTIONS",
                "/predict",
                headers={**origin, "Access-Control-Request-Method": "POST"},
            ),
        ),
    ]
    for answer in answers:
        assert header(answer, "Vary") == "Origin", answer
        assert header(answer, "Access-Control-Allow-Origin") in ("*", "https://app.example.org")


@pytest.mark.parametrize("door", [rest_event, http_event], ids=["rest", "http"])
def test_a_known_path_with_another_method_is_405_with_allow(app, door) -> None:
    answer = invoke(app, door("GET", "/predict"))
    assert answer["statusCode"] == 405
    assert header(answer, "Allow") == "OPTIONS, POST"
    assert body_json(answer)["code"] == "method_not_allowed"
    answer = invoke(app, door("DELETE", "/results/0123456789abcdef0123456789abcdef.jpg"))
    assert (answer["statusCode"], header(answer, "Allow")) == (405, "GET, HEAD, OPTIONS")


@pytest.mark.parametrize("door", [rest_event, http_event], ids=["rest", "http"])
def test_head_is_get_without_a_body(app, door) -> None:
    get = invoke(app, door("GET", "/health"))
    head = invoke(app, door("HEAD", "/health"))
    assert head["statusCode"] == 200 and head["body"] == ""
    assert header(head, "Content-Type") == header(get, "Content-Type")


@pytest.mark.parametrize(
    "event",
    [{}, [], "text", {"version": "2.0"}, {"requestContext": {}}, {"Records": []}, None],
    ids=["empty", "list", "string", "v2-without-context", "context-only", "s3-shaped", "none"],
)
def test_events_that_are_not_api_gateway_get_a_clear_400(app, event) -> None:
    answer = app.api_handler(event, LocalContext())
    assert answer["statusCode"] == 400
    assert json.loads(answer["body"]) == {"error": "Not an API Gateway proxy event.", "code": "invalid_event"}
