"""What a live deployment must do: answer health, describe its model, classify a photo sent each
way, refuse a bad image with the JSON error shape, answer CORS preflights, and (when uploads are
on) classify a photo uploaded straight to S3."""

from __future__ import annotations

import base64
import json
import time
import uuid

from smoke.http import call


def multipart(photo: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="photo.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + photo
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def assert_top1(answer, top1: str) -> None:
    assert answer.status == 200, answer.body[:300]
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["predictions"][0]["label"] == top1


def test_health(api: str) -> None:
    answer = call("GET", f"{api}health")
    assert answer.status == 200 and answer.json()["status"] == "ok", answer.body[:300]


def test_model_describes_what_is_served(api: str) -> None:
    answer = call("GET", f"{api}model")
    assert answer.status == 200, answer.body[:300]
    spec = answer.json()["model_spec"]
    assert spec["name"] and spec["version"]


def test_predict_raw_bytes(api: str, photo: bytes, top1: str) -> None:
    assert_top1(call("POST", f"{api}predict", photo, {"Content-Type": "image/jpeg"}), top1)


def test_predict_multipart(api: str, photo: bytes, top1: str) -> None:
    body, content_type = multipart(photo)
    assert_top1(call("POST", f"{api}predict", body, {"Content-Type": content_type}), top1)


def test_predict_json_base64(api: str, photo: bytes, top1: str) -> None:
    body = json.dumps({"image": base64.b64encode(photo).decode()}).encode()
    assert_top1(call("POST", f"{api}predict", body, {"Content-Type": "application/json"}), top1)


def test_a_bad_image_gets_the_json_error_shape(api: str) -> None:
    answer = call("POST", f"{api}predict", b"this is not a photo", {"Content-Type": "image/jpeg"})
    assert answer.status in (415, 422), answer.body[:300]
    error = answer.json()
    assert error["code"] in ("unsupported_image_type", "corrupt_image") and error["error"]


def test_cors_preflight(api: str) -> None:
    answer = call(
        "OPTIONS",
        f"{api}predict",
        headers={"Origin": "https://example.org", "Access-Control-Request-Method": "POST"},
    )
    assert answer.status in (200, 204), answer.body[:300]
    assert answer.headers.get("access-control-allow-origin") in ("*", "https://example.org")


def test_the_upload_flow_when_enabled(api: str, photo: bytes, top1: str) -> None:
    """POST /uploads → presigned form → S3 → the result. A deployment without uploads must say so
    with the JSON error shape (404)."""
    answer = call(
        "POST", f"{api}uploads", b'{"content_type": "image/jpeg"}', {"Content-Type": "application/json"}
    )
    if answer.status == 404:
        assert answer.json()["code"], "uploads are off: the JSON error says so"
        return
    assert answer.status == 201, answer.body[:300]
    form = answer.json()
    fields = "".join(
        f'--b\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in form["upload"]["fields"].items()
    )
    body = (fields + '--b\r\nContent-Disposition: form-data; name="file"; filename="p.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n").encode() + photo + b"\r\n--b--\r\n"  # fmt: skip
    stored = call("POST", form["upload"]["url"], body, {"Content-Type": "multipart/form-data; boundary=b"})
    assert stored.status in (200, 201, 204), stored.body[:300]
    deadline = time.monotonic() + 120
    while (result := call("GET", form["result_url"])).status == 202 and time.monotonic() < deadline:
        time.sleep(1)
    assert_top1(result, top1)
