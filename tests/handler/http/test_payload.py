"""Request bodies -> image bytes: the three upload styles and every way they go wrong."""

from __future__ import annotations

import base64
import json

import pytest

from handler.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from handler.http import payload
from localaws.events import multipart_body

MAX = 1024 * 1024
IMAGE = b"\xff\xd8\xff\xe0 pretend jpeg \x00\x01\x02\xff\xd9"


def single(body: bytes, content_type: str | None, max_bytes: int) -> bytes:
    """The one image of a non-batch request."""
    request = payload.parse(body, content_type, max_bytes, max_images=16)
    assert not request.batch and len(request.images) == 1
    return request.images[0]


def as_json(value) -> bytes:
    return json.dumps({"image": value}).encode()


def test_multipart_image_field() -> None:
    body, content_type = multipart_body([("image", "a.jpg", IMAGE, "image/jpeg")])
    assert single(body, content_type, MAX) == IMAGE


def test_multipart_binary_content_is_kept_byte_for_byte() -> None:
    data = bytes(range(256)) * 64 + b"\r\n--not-the-boundary\r\n"
    body, content_type = multipart_body([("image", "a.bin", data, "application/octet-stream")])
    assert single(body, content_type, MAX) == data


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ([("photo", "a.jpg", IMAGE, "image/jpeg")], "missing_image"),
        ([], "missing_image"),
    ],
)
def test_multipart_without_image_field(fields, code) -> None:
    body, content_type = multipart_body(fields)
    with pytest.raises(BadRequest) as caught:
        single(body, content_type, MAX)
    assert caught.value.code == code


def test_several_image_fields_are_a_batch_in_order() -> None:
    images = [IMAGE + bytes([n]) for n in range(3)]
    body, content_type = multipart_body(
        [("image", f"{n}.jpg", data, "image/jpeg") for n, data in enumerate(images)]
    )
    request = payload.parse(body, content_type, MAX, max_images=16)
    assert request.batch and request.images == images


def test_json_images_is_a_batch_with_bad_items_in_place() -> None:
    good = base64.b64encode(IMAGE).decode()
    body = json.dumps({"images": [good, "***", 7, f"data:text/plain;base64,{good}", good]}).encode()
    request = payload.parse(body, "application/json", MAX, max_images=16)
    assert request.batch
    assert request.images[0] == request.images[4] == IMAGE
    assert [getattr(item, "code", None) for item in request.images[1:4]] == [
        "invalid_base64",
        "invalid_image_field",
        "unsupported_media_type",
    ]


@pytest.mark.parametrize("style", ["multipart", "json"])
def test_more_images_than_the_limit_is_413(style: str) -> None:
    if style == "multipart":
        body, content_type = multipart_body([("image", "a.jpg", IMAGE, "image/jpeg")] * 17)
    else:
        body, content_type = (
            json.dumps({"images": [base64.b64encode(IMAGE).decode()] * 17}).encode(),
            "application/json",
        )
    with pytest.raises(PayloadTooLarge) as caught:
        payload.parse(body, content_type, MAX, max_images=16)
    assert caught.value.code == "too_many_images"


@pytest.mark.parametrize("images", [[], "x", None])
def test_json_images_must_be_a_non_empty_list(images) -> None:
    with pytest.raises(BadRequest):
        payload.parse(json.dumps({"images": images}).encode(), "application/json", MAX, max_images=16)


def test_multipart_without_boundary() -> None:
    with pytest.raises(BadRequest) as caught:
        single(b"--x\r\n", "multipart/form-data", MAX)
    assert caught.value.code == "invalid_multipart"


def test_multipart_part_over_the_limit() -> None:
    body, content_type = multipart_body([("image", "a.jpg", b"x" * 5000, "image/jpeg")])
    with pytest.raises(PayloadTooLarge):
        single(body, content_type, 4096)


@pytest.mark.parametrize(
    "encode",
    [
        lambda data: base64.b64encode(data).decode(),
        lambda data: base64.encodebytes(data).decode(),  # line breaks every 76 characters
        lambda data: base64.urlsafe_b64encode(data).decode().rstrip("="),  # URL-safe, no padding
        lambda data: "data:image/jpeg;base64," + base64.b64encode(data).decode(),
        lambda data: "data:image/png;name=a.png;base64," + base64.b64encode(data).decode(),
    ],
    ids=["standard", "newlines", "urlsafe-unpadded", "data-url", "data-url-with-params"],
)
def test_json_base64_variants(encode) -> None:
    data = IMAGE * 40
    assert single(as_json(encode(data)), "application/json; charset=utf-8", MAX) == data


@pytest.mark.parametrize(
    ("body", "error", "code"),
    [
        (b"{not json", BadRequest, "invalid_json"),
        (b'["image"]', BadRequest, "invalid_json"),
        (b'"just a string"', BadRequest, "invalid_json"),
        (b"{}", BadRequest, "missing_image"),
        (as_json(None), BadRequest, "missing_image"),
        (as_json(42), BadRequest, "invalid_image_field"),
        (as_json(["a"]), BadRequest, "invalid_image_field"),
        (as_json("***not base64***"), BadRequest, "invalid_base64"),
        (as_json("data:text/plain;base64,aGVsbG8="), UnsupportedMediaType, "unsupported_media_type"),
        (as_json("data:;base64,aGVsbG8="), UnsupportedMediaType, "unsupported_media_type"),
        (as_json("data:image/png,rawtext"), BadRequest, "invalid_data_url"),
        (as_json("data:image/png;base64"), BadRequest, "invalid_data_url"),
    ],
)
def test_json_errors(body: bytes, error: type, code: str) -> None:
    with pytest.raises(error) as caught:
        single(body, "application/json", MAX)
    assert caught.value.code == code


def test_json_base64_over_the_limit_is_refused_before_decoding() -> None:
    with pytest.raises(PayloadTooLarge):
        single(as_json("A" * 8000), "application/json", 4096)


@pytest.mark.parametrize(
    "content_type", ["image/jpeg", "image/png", "application/octet-stream", "IMAGE/WEBP"]
)
def test_raw_bodies(content_type: str) -> None:
    assert single(IMAGE, content_type, MAX) == IMAGE


def test_raw_body_over_the_limit() -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        single(b"x" * 101, "image/jpeg", 100)
    assert caught.value.code == "image_too_large"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "", None])
def test_other_content_types_are_unsupported(content_type) -> None:
    with pytest.raises(UnsupportedMediaType):
        single(IMAGE, content_type, MAX)


def test_empty_body_names_the_ways_to_send_an_image() -> None:
    with pytest.raises(BadRequest) as caught:
        single(b"", "image/jpeg", MAX)
    assert caught.value.code == "missing_image"
    assert "multipart" in caught.value.message
