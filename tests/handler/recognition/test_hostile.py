"""Hostile inputs (``devtools.hostile``): each is refused before its expensive decode, with its
4xx and code, or classified when legitimate. Costs are measured by ``make hostile``, not here."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from PIL import Image, ImageFile

from devtools import hostile
from devtools.context import LocalContext
from devtools.events import http_event, multipart_body, rest_event
from handler.recognition import decoding, formats, imaging
from handler.recognition.errors import Code, PayloadTooLarge
from tests.support import body_json

LIMITS = imaging.DecodeLimits(max_bytes=20 * 1024 * 1024, max_pixels=40_000_000)


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any pixel decoder runs (headers may still be read by Image.open)."""

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"the {self.format} decoder ran: the refusal must come before it")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


@pytest.fixture
def no_opening(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if Pillow even parses the file (structural refusals come before that)."""

    def refuse(*args, **kwargs):
        raise AssertionError("Pillow parsed the file: the structure walk must refuse it first")

    monkeypatch.setattr(Image, "open", refuse)


def call(app, data: bytes, content_type: str, door=rest_event) -> tuple[int, dict]:
    event = door("POST", "/predict", body=data, headers={"Content-Type": content_type})
    result = app.api_handler(event, LocalContext())
    return result["statusCode"], body_json(result)


@pytest.mark.parametrize("case", hostile.IMAGES, ids=lambda case: case.name)
def test_structural_bombs_are_refused_before_pillow_parses_them(app, case, no_opening) -> None:
    data = case.build()
    for door in (rest_event, http_event):
        status, body = call(app, data, case.content_type, door)
        assert (status, body["code"]) == (case.status, case.code), body
        assert len(body["error"]) < 200


def test_each_refusal_names_its_limit(no_opening) -> None:
    expected = {
        "bmp-rle8-40000x1000": formats.MAX_BMP_RLE_PIXELS,
        "jpeg-10000-scans": formats.MAX_JPEG_SCAN_PIXELS,
        "jpeg-500000-comments": formats.MAX_JPEG_SEGMENTS,
        "png-400000-chunks": formats.MAX_PNG_CHUNKS,
        "gif-1000000-extensions": formats.MAX_GIF_BLOCKS,
        "tiff-500000-strips": formats.MAX_TIFF_STRIPS,
    }
    for case in hostile.IMAGES:
        if case.name in expected:
            with pytest.raises(PayloadTooLarge) as refused:
                imaging.open_image(case.build(), LIMITS)
            assert f"the limit is {expected[case.name]}" in refused.value.message


def test_too_many_scans_on_a_small_image_is_refused_by_count(no_opening) -> None:
    data = hostile.progressive_jpeg_scans(size=64, scans=40)
    with pytest.raises(PayloadTooLarge) as refused:
        imaging.open_image(data, LIMITS)
    assert refused.value.code == Code.IMAGE_TOO_COSTLY
    assert f"the limit is {formats.MAX_JPEG_SCANS}" in refused.value.message


@pytest.mark.parametrize(
    ("name", "build", "content_type"), hostile.AT_LIMITS, ids=[c[0] for c in hostile.AT_LIMITS]
)
def test_the_worst_inputs_that_pass_are_classified(app, name, build, content_type) -> None:
    status, body = call(app, build(), content_type)
    assert status == 200, body
    assert len(body["predictions"]) == 5


def test_a_lossless_webp_over_its_format_limit_is_refused_before_decoding(app, no_decoding) -> None:
    status, body = call(app, hostile.webp_lossless(), "image/webp")
    assert (status, body["code"]) == (413, Code.IMAGE_TOO_MANY_PIXELS)
    assert "WEBP" in body["error"]


def test_the_issues_batches_fail_item_by_item_without_decoding(app, no_decoding) -> None:
    webp = hostile.webp_lossless()
    png = hostile.png_zeros()
    for item, code in ((webp, Code.IMAGE_TOO_MANY_PIXELS), (png, Code.IMAGE_TOO_COSTLY)):
        form, form_type = multipart_body([("image", f"{i}.img", item, "image/png") for i in range(16)])
        status, body = call(app, form, form_type)
        assert status == 200
        assert [r["code"] for r in body["results"]] == [code] * 16


def test_a_request_over_the_memory_budget_is_refused_before_decoding(app, no_decoding) -> None:
    big = hostile.png_at_limit(bit_depth=8, width=5_000, height=4_000)  # about 153 MB to decode
    form, form_type = multipart_body([("image", f"{i}.png", big, "image/png") for i in range(4)])
    status, body = call(app, form, form_type)
    assert (status, body["code"]) == (413, Code.REQUEST_TOO_MANY_PIXELS)
    assert "512 MB" in body["error"]


def test_decode_memory_estimates_cover_the_pipeline() -> None:
    opened = imaging.open_image(hostile.png_at_limit(bit_depth=8, width=5_000, height=4_000), LIMITS)
    assert opened.cost == 20_000_000 * 8  # RGBA pixels plus the premultiplied copy resizing makes
    opened.image.close()
    jpeg = hostile.jpeg_scans_at_limit(width=4_000, height=2_000, scans=10)
    opened = imaging.open_image(jpeg, LIMITS)
    assert opened.image.size == (500, 250)  # drafted at 1/8 ...
    assert opened.cost >= 8_000_000 * 3 * 2  # ... but every DCT coefficient is kept
    opened.image.close()


def test_worker_batches_over_the_budget_are_decoded_in_waves() -> None:
    photo = hostile._encode(Image.new("RGB", (1000, 1000), (200, 40, 40)), "PNG")
    opened = [imaging.open_image(photo, LIMITS) for _ in range(5)]
    cost = opened[0].cost
    assert decoding.waves(list(opened), budget=2 * cost) == [[0, 1], [2, 3], [4]]
    decoded = decoding.decode_within_budget(list(opened), 2 * cost, queue_over_budget=True)
    assert all(isinstance(item, np.ndarray) for item in decoded)
    alone = [imaging.open_image(photo, LIMITS)]
    (refused,) = decoding.decode_within_budget(alone, cost - 1, queue_over_budget=True)
    assert isinstance(refused, PayloadTooLarge) and refused.code == Code.REQUEST_TOO_MANY_PIXELS


@pytest.mark.parametrize("path", ["/predict", "/uploads"])
@pytest.mark.parametrize(
    "body",
    [hostile.json_big_integer(), hostile.json_deep(), b'{"image": "x", "images": "y"', b"\xff\xfe{}"],
    ids=["5000-digit-integer", "100000-deep", "truncated", "not-utf8"],
)
def test_json_edge_cases_are_400_invalid_json(app, path, body) -> None:
    for door in (rest_event, http_event):
        event = door("POST", path, body=body, headers={"Content-Type": "application/json"})
        result = app.api_handler(event, LocalContext())
        assert result["statusCode"] == 400, result["body"]
        assert body_json(result)["code"] == Code.INVALID_JSON


@pytest.mark.parametrize(
    "document",
    [{"images": [1, None, {"a": 1}]}, {"image": ["x"]}, {"image": {"deep": [1]}}, [1, 2], "text", 5],
    ids=["items-of-wrong-types", "list", "object", "array-body", "string-body", "number-body"],
)
def test_wrong_types_anywhere_are_400(app, document) -> None:
    status, body = call(app, json.dumps(document).encode(), "application/json")
    if status == 200:  # a batch answers each bad item in place
        assert {r["code"] for r in body["results"]} == {Code.INVALID_IMAGE_FIELD}
    else:
        assert status == 400 and body["code"] in (Code.INVALID_JSON, Code.INVALID_IMAGE_FIELD), body


def test_uploads_refuses_a_non_object_body(app) -> None:
    for document in (b"[]", b'"image/png"', b'{"content_type": ["image/png"]}'):
        event = rest_event("POST", "/uploads", body=document, headers={"Content-Type": "application/json"})
        result = app.api_handler(event, LocalContext())
        assert result["statusCode"] in (400, 501), result["body"]
        assert body_json(result)["code"] in (Code.INVALID_JSON, Code.UPLOADS_DISABLED)


def test_multipart_with_too_many_parts_is_invalid_multipart(app, grace_hopper) -> None:
    fields = [("note", None, b"x", None)] * 40 + [("image", "g.jpg", grace_hopper, "image/jpeg")]
    form, form_type = multipart_body(fields)
    status, body = call(app, form, form_type)
    assert (status, body["code"]) == (400, Code.INVALID_MULTIPART)
    assert "too many parts" in body["error"]


def test_multipart_with_too_many_image_parts_is_too_many_images(app) -> None:
    form, form_type = multipart_body([("image", f"{i}.png", b"x", "image/png") for i in range(40)])
    status, body = call(app, form, form_type)
    assert (status, body["code"]) == (413, Code.TOO_MANY_IMAGES)


def test_a_huge_part_header_is_invalid_multipart(app, grace_hopper) -> None:
    boundary = "b0undary"
    form = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{"a" * 20_000}.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + grace_hopper
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, body = call(app, form, f"multipart/form-data; boundary={boundary}")
    assert (status, body["code"]) == (400, Code.INVALID_MULTIPART)
    assert "header" in body["error"]


def test_error_messages_never_echo_much_client_input(app, grace_hopper) -> None:
    long_type = "image-" + "x" * 10_000
    status, body = call(app, grace_hopper, long_type)
    assert status == 415 and len(body["error"]) < 250
    data_url = json.dumps({"image": "data:" + "y" * 10_000 + ";base64,AAAA"}).encode()
    status, body = call(app, data_url, "application/json")
    assert status == 415 and len(body["error"]) < 250
    upload = json.dumps({"content_type": "z" * 10_000}).encode()
    result = app.api_handler(
        rest_event("POST", "/uploads", body=upload, headers={"Content-Type": "application/json"}),
        LocalContext(),
    )
    assert len(body_json(result)["error"]) < 250


def test_base64_item_sizes_are_checked_before_decoding(app) -> None:
    huge = base64.b64encode(b"\x00" * (7 * 1024 * 1024)).decode()
    status, body = call(app, json.dumps({"images": [huge]}).encode(), "application/json")
    assert status == 200 and body["results"][0]["code"] == Code.IMAGE_TOO_LARGE
