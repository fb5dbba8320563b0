"""Hostile inputs (``tests.corpora.hostile``): each is refused before its expensive decode, with its
4xx and code, or classified when legitimate. Costs are measured by ``make hostile``, not here.

The differential classes (a structure the walk once read differently from its decoder) are held
to the decoder's own reading: the walk must see every scan, segment and header the decoder sees."""

from __future__ import annotations

import base64
import io
import json
import os
import struct

import numpy as np
import pytest
from PIL import Image, ImageFile

from handler.errors import Code, PayloadTooLarge
from handler.recognition import formats, imaging
from localaws.context import LocalContext
from localaws.events import http_event, multipart_body, rest_event
from tests.corpora import hostile
from tests.support import body_json, workers_of

# The tests that decode at-limit photos within the sandbox's time bounds (one on a CPU shared on
# purpose) are marked serial: alone, never beside another worker. Refusals bound no time.

LIMITS = imaging.DecodeLimits(max_bytes=20 * 1024 * 1024, max_pixels=40_000_000)


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any pixel decoder runs (headers may still be read by Image.open)."""

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"the {self.format} decoder ran: the refusal must come before it")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


@pytest.fixture(scope="module")
def headers_only(configure):
    """The function with a sandbox whose workers cannot decode pixels: a refusal that must come from
    the header (or the structure) answers 422 ``corrupt_image`` instead if any decoder ran."""
    from handler.recognition.sandbox import Bounds, DecodeSandbox
    from tests.corpora import decode_doubles

    with DecodeSandbox.start(
        2, 512 * 1024 * 1024, Bounds(5.0, 10.0, 20.0, 20.0), decode_doubles.WITHOUT_PIXEL_DECODING
    ) as sandbox:
        yield configure(sandbox=sandbox)


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
def test_hostile_images_are_refused_through_both_doors(app, case) -> None:
    data = case.build()
    for door in (rest_event, http_event):
        status, body = call(app, data, case.content_type, door)
        assert (status, body["code"]) == (case.status, case.code), body
        assert len(body["error"]) < 200


@pytest.mark.parametrize("case", [c for c in hostile.IMAGES if c.walk], ids=lambda case: case.name)
def test_structural_bombs_are_refused_before_pillow_parses_them(case, no_opening) -> None:
    with pytest.raises(PayloadTooLarge) as refused:
        imaging.open_image(case.build(), LIMITS)
    assert refused.value.code == case.code


def test_each_refusal_names_its_limit(no_opening) -> None:
    expected = {
        "bmp-rle8-40000x1000": formats.MAX_BMP_RLE_PIXELS,
        "jpeg-10000-scans": formats.MAX_JPEG_SCAN_PIXELS,
        "jpeg-500000-comments": formats.MAX_JPEG_SEGMENTS,
        "png-400000-chunks": formats.MAX_PNG_CHUNKS,
        "gif-1000000-extensions": formats.MAX_GIF_BLOCKS,
        "tiff-500000-strips": formats.MAX_TIFF_STRIPS,
        "jpeg-36mp-3000-scans-behind-junk": formats.MAX_JPEG_SCAN_PIXELS,
        "jpeg-36mp-3000-scans-behind-ff00": formats.MAX_JPEG_SCAN_PIXELS,
        "jpeg-36mp-3000-scans-behind-zero-length-com": formats.MAX_JPEG_SCAN_PIXELS,
        "jpeg-500000-comments-after-eoi": formats.MAX_JPEG_SEGMENTS,
        "jpeg-500000-comments-after-soi": formats.MAX_JPEG_SEGMENTS,
        "tiff-jpeg-15-strips-99-scans": formats.MAX_JPEG_SCANS,
        "tiff-jpeg-144-tiles-99-scans": formats.MAX_JPEG_SCANS,
        "tiff-jpeg-15-strips-30-scans": formats.MAX_JPEG_SCAN_PIXELS,
        "tiff-old-jpeg-99-scans": formats.MAX_JPEG_SCAN_PIXELS,
        "tiff-float-6000x6000-deflate": formats.MAX_RAW_BYTES,
        "tiff-16-bit-rgb-6000x6000-deflate": formats.MAX_RAW_BYTES,
        "png-decoy-ihdr-320mb": formats.MAX_RAW_BYTES,
        "png-ihdr-after-text-320mb": formats.MAX_RAW_BYTES,
        "heic-60000-items": formats.MAX_HEIF_ITEMS,
    }
    for case in hostile.IMAGES:
        if case.name in expected:
            with pytest.raises(PayloadTooLarge) as refused:
                imaging.open_image(case.build(), LIMITS)
            assert f"the limit is {expected[case.name]}" in refused.value.message, case.name
    assert expected.keys() <= {case.name for case in hostile.IMAGES}


@pytest.mark.parametrize("name", ["webp-animation-16000000x1-canvas", "apng-16000000x1"])
def test_a_huge_thin_canvas_is_refused_by_its_longest_side(name, no_decoding) -> None:
    (case,) = [c for c in hostile.IMAGES if c.name == name]
    with pytest.raises(PayloadTooLarge) as refused:
        imaging.open_image(case.build(), LIMITS)
    assert refused.value.code == Code.IMAGE_TOO_MANY_PIXELS
    assert f"longest side this service decodes is {formats.MAX_SIDE}" in refused.value.message


def test_too_many_scans_on_a_small_image_is_refused_by_count(no_opening) -> None:
    data = hostile.progressive_jpeg_scans(size=64, scans=40)
    with pytest.raises(PayloadTooLarge) as refused:
        imaging.open_image(data, LIMITS)
    assert refused.value.code == Code.IMAGE_TOO_COSTLY
    assert f"the limit is {formats.MAX_JPEG_SCANS}" in refused.value.message


@pytest.mark.parametrize(
    ("name", "build", "content_type"), hostile.AT_LIMITS, ids=[c[0] for c in hostile.AT_LIMITS]
)
@pytest.mark.slow  # 40 MP files: seconds each to build and decode
@pytest.mark.serial
def test_the_worst_inputs_that_pass_are_classified(app, name, build, content_type) -> None:
    status, body = call(app, build(), content_type)
    assert status == 200, body
    assert len(body["predictions"]) == 5


@pytest.fixture(scope="module")
def at_the_limits() -> list[bytes]:
    return [build() for _, build, _ in hostile.AT_LIMITS]


@pytest.mark.slow  # the at-limit photos twice, on a CPU shared two ways
@pytest.mark.serial
@pytest.mark.parametrize("sharing", ["two busy processes beside it", "half a vCPU for two workers"])
def test_the_worst_inputs_that_pass_classify_when_the_cpu_is_shared(at_the_limits, sharing) -> None:
    """The bounds measure work (CPU time), not luck: on a CPU shared with two spinning processes, or
    on half a vCPU (a cgroup quota, as Lambda shares it by memory size) for two workers, every
    at-limit photo still decodes, with the function's default CPU cap and its derived wall bound."""
    from handler import config
    from handler.recognition.sandbox import DecodeSandbox
    from tests.support import MODEL_DIR, busy_processes, cpu_quota

    cpus = 0.5 if sharing.startswith("half") else len(os.sched_getaffinity(0))
    wall_ms = config.decode_wall_ms_for(config.Defaults.DECODE_CPU_MS, 2, cpus)
    environ = {"MODEL_DIR": str(MODEL_DIR), "DECODE_WORKERS": "2", "DECODE_WALL_MS": str(wall_ms)}
    limits = imaging.DecodeLimits(max_bytes=50 * 1024 * 1024, max_pixels=40_000_000)
    with DecodeSandbox.for_settings(config.read_settings(environ).decoding).ready() as sandbox:
        sharing_the_cpu = (
            cpu_quota({sandbox.zygote_pid, *workers_of(sandbox.zygote_pid)}, 0.5)
            if sharing.startswith("half")
            else busy_processes(2)
        )
        with sharing_the_cpu:
            results = sandbox.decode(at_the_limits, limits)
    refused = {
        name: r.message
        for (name, _, _), r in zip(hostile.AT_LIMITS, results, strict=True)
        if not hasattr(r, "shape")
    }
    assert refused == {}


def test_a_lossless_webp_over_its_format_limit_is_refused_before_decoding(headers_only) -> None:
    status, body = call(headers_only, hostile.webp_lossless(), "image/webp")
    assert (status, body["code"]) == (413, Code.IMAGE_TOO_MANY_PIXELS)
    assert "WEBP" in body["error"]


@pytest.mark.slow
def test_the_issues_batches_fail_item_by_item_without_decoding(headers_only) -> None:
    webp = hostile.webp_lossless()
    png = hostile.png_zeros()
    for item, code in ((webp, Code.IMAGE_TOO_MANY_PIXELS), (png, Code.IMAGE_TOO_COSTLY)):
        form, form_type = multipart_body([("image", f"{i}.img", item, "image/png") for i in range(16)])
        status, body = call(headers_only, form, form_type)
        assert status == 200
        assert [r["code"] for r in body["results"]] == [code] * 16


def test_the_headers_only_double_really_stops_pixel_decoding(headers_only, grace_hopper) -> None:
    """The fixture above can fail: a photo that needs its pixels answers 422 there."""
    status, body = call(headers_only, grace_hopper, "image/jpeg")
    assert (status, body["code"]) == (422, "corrupt_image")


@pytest.mark.slow
@pytest.mark.serial
def test_a_batch_of_large_photos_decodes_each_in_its_own_worker(app) -> None:
    """Before the sandbox, 4 RGBA PNGs of 20 MP were over the request's decode budget (413); each
    is now bounded by its worker's memory cap instead, and all four are classified."""
    big = hostile.png_at_limit(bit_depth=8, width=5_000, height=4_000)  # about 160 MB to decode
    form, form_type = multipart_body([("image", f"{i}.png", big, "image/png") for i in range(4)])
    status, body = call(app, form, form_type)
    assert status == 200 and all("predictions" in result for result in body["results"]), body


def test_decode_memory_estimates_cover_the_pipeline() -> None:
    opened = imaging.open_image(hostile.png_at_limit(bit_depth=8, width=5_000, height=4_000), LIMITS)
    assert opened.cost == 20_000_000 * 8  # RGBA pixels plus the premultiplied copy resizing makes
    opened.image.close()
    jpeg = hostile.jpeg_scans_at_limit(width=4_000, height=2_000, scans=10)
    opened = imaging.open_image(jpeg, LIMITS)
    assert opened.image.size == (500, 250)  # drafted at 1/8 ...
    assert opened.cost >= 8_000_000 * 3 * 2  # ... but every DCT coefficient is kept
    opened.image.close()


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


# --- The walk reads each file as its decoder does --------------------------------------------------


def _pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


@pytest.mark.parametrize("gap", hostile.JPEG_GAPS)
def test_what_libjpeg_skips_hides_no_scan_from_the_walk(gap) -> None:
    """A gap before every marker after the first: libjpeg and Pillow step over it and decode the
    same pixels; the walk counts every scan and sees the frame."""
    plain = hostile._progressive(64, 48, 10)
    spans = hostile._jpeg_segments(plain)
    gapped = plain[: spans[1][0]] + b"".join(hostile.JPEG_GAPS[gap] + plain[s:e] for s, e in spans[1:])
    gapped += plain[spans[-1][1] :]
    np.testing.assert_array_equal(_pixels(gapped), _pixels(plain))
    walk = formats.walk_jpeg(gapped, 2, len(gapped), LIMITS.max_pixels, pillow=True)
    assert (walk.scans, walk.pixels, walk.progressive) == (10, 64 * 48, True)


@pytest.mark.parametrize("gap", hostile.JPEG_GAPS)
def test_scans_behind_a_gap_are_refused_by_count(gap, no_opening) -> None:
    data = hostile._before_first_scan(hostile._progressive(64, 64, 40), hostile.JPEG_GAPS[gap])
    with pytest.raises(PayloadTooLarge) as refused:
        imaging.open_image(data, LIMITS)
    assert f"the limit is {formats.MAX_JPEG_SCANS}" in refused.value.message


def test_fill_bytes_and_restart_markers_are_not_counted_as_segments() -> None:
    """Extra 0xFF before a marker is fill, and RSTn belong to the scan: a file with 300 fill bytes
    and a restart marker every block (thousands) is a legitimate photo."""
    photo = hostile._photo(256, 192)
    data = hostile._encode(photo, "JPEG", quality=90, restart_marker_blocks=1)
    filled = hostile._before_first_scan(data, b"\xff" * 300)
    walk = formats.walk_jpeg(filled, 2, len(filled), LIMITS.max_pixels, pillow=True)
    assert walk.segments < 20 and walk.scans == 1
    assert imaging.to_pixels(filled, LIMITS).shape == (224, 224, 3)


def test_junk_before_the_first_scan_is_bounded(no_opening) -> None:
    """Pillow steps over bytes between markers one Python turn each before the first scan."""
    data = hostile._before_first_scan(hostile._progressive(64, 64, 2), b"\x00" * 70_000)
    with pytest.raises(PayloadTooLarge) as refused:
        imaging.open_image(data, LIMITS)
    assert f"the limit is {formats.MAX_JPEG_SKIPPED_BYTES}" in refused.value.message


def test_jpeg_scans_add_up_over_a_tiffs_strips(no_opening) -> None:
    """Each strip's 30 scans are within the per-stream limit; the file's total decides."""
    within = hostile.tiff_jpeg_progressive(1_000, 4_000, rows=1_000, scans=30)  # 120 M
    assert formats.check_structure(within, LIMITS.max_pixels).jpeg_buffered
    over = hostile.tiff_jpeg_progressive(1_000, 16_000, rows=1_000, scans=30)  # 480 M
    with pytest.raises(PayloadTooLarge) as refused:
        imaging.open_image(over, LIMITS)
    assert f"the limit is {formats.MAX_JPEG_SCAN_PIXELS}" in refused.value.message


def test_a_jpeg_tiff_within_the_scan_budget_classifies() -> None:
    data = hostile.tiff_jpeg_progressive(1_000, 4_000, tile=500, scans=30)  # 32 tiles, 240 M
    assert imaging.to_pixels(data, LIMITS).shape == (224, 224, 3)


def test_overlapping_jpeg_strips_are_refused(no_opening) -> None:
    """Strips without byte counts run to the end of the file: many of them overlap."""
    jpeg = hostile._encode(Image.new("L", (64, 8), 99), "JPEG")
    offsets = [("blob", 0)] * 1 + list(range(8, 8 + 400))  # the real strip, then 400 arbitrary starts
    data = hostile._tiff(
        [
            (256, 4, 1, 64),
            (257, 4, 1, 8 * len(offsets)),
            (258, 3, 1, 8),
            (259, 3, 1, 7),
            (262, 3, 1, 1),
            (277, 3, 1, 1),
            (278, 3, 1, 8),
            (273, 4, len(offsets), offsets),
        ],
        [jpeg * 200],
    )
    with pytest.raises(PayloadTooLarge) as refused:
        imaging.open_image(data, LIMITS)
    assert "bytes of JPEG data in a TIFF" in refused.value.message


@pytest.mark.parametrize(
    ("samples", "bits", "side", "passes"),
    [(1, 32, 4_000, True), (1, 32, 5_000, False), (3, 16, 3_000, True), (3, 16, 4_000, False)],
    ids=["float-64mb", "float-100mb", "16-bit-rgb-54mb", "16-bit-rgb-96mb"],
)
def test_tiff_raw_bytes_count_samples_and_bits(samples, bits, side, passes) -> None:
    data = hostile.tiff_deep(side, side, samples=samples, bits=bits)
    if passes:
        assert imaging.to_pixels(data, LIMITS).shape == (224, 224, 3)
    else:
        with pytest.raises(PayloadTooLarge) as refused:
            imaging.open_image(data, LIMITS)
        assert f"the limit is {formats.MAX_RAW_BYTES}" in refused.value.message


def test_webp_animation_frames_are_counted(no_opening) -> None:
    data = hostile.webp_animation_canvas(64, 64, frames=formats.MAX_WEBP_CHUNKS + 1)
    with pytest.raises(PayloadTooLarge) as refused:
        imaging.open_image(data, LIMITS)
    assert f"the limit is {formats.MAX_WEBP_CHUNKS}" in refused.value.message


@pytest.mark.slow
def test_a_still_webps_size_is_checked_before_libwebp_allocates_its_canvas(no_opening) -> None:
    """Pillow opens every WebP with libwebp's animation decoder, which allocates the canvas twice
    when the file is opened: a lossless still (VP8L) is refused from its own header first."""
    with pytest.raises(PayloadTooLarge) as refused:
        imaging.open_image(hostile.webp_lossless(), LIMITS)
    assert refused.value.code == Code.IMAGE_TOO_MANY_PIXELS and "WEBP" in refused.value.message
    lossy = hostile._encode(Image.new("RGB", (5_000, 4_000)), "WEBP", quality=10)
    with pytest.raises(PayloadTooLarge):
        imaging.open_image(lossy, LIMITS)


def test_a_png_header_over_the_pixel_limit_is_left_to_the_pixel_check() -> None:
    """A decoy IHDR claiming more pixels than allowed is not the one Pillow uses: a file whose
    last header is small classifies; one whose last header is huge gets the pixel refusal."""
    small = hostile._encode(hostile._photo(64, 48), "PNG")
    huge = hostile._png_chunk(b"IHDR", struct.pack(">IIBBBBB", 50_000, 50_000, 16, 6, 0, 0, 0))
    assert imaging.to_pixels(small[:8] + huge + small[8:], LIMITS).shape == (224, 224, 3)
    with pytest.raises(PayloadTooLarge) as refused:
        imaging.open_image(small[:33] + huge + small[33:], LIMITS)
    assert refused.value.code == Code.IMAGE_TOO_MANY_PIXELS


def test_heif_items_and_boxes_are_bounded(no_opening) -> None:
    with pytest.raises(PayloadTooLarge) as refused:
        imaging.open_image(hostile.heif_items("avif"), LIMITS)
    assert f"the limit is {formats.MAX_HEIF_ITEMS}" in refused.value.message
    boxes = hostile.avif_photo(64, 64) + b"\x00\x00\x00\x08free" * (formats.MAX_HEIF_BOXES + 1)
    with pytest.raises(PayloadTooLarge) as refused:
        imaging.open_image(boxes, LIMITS)
    assert f"the limit is {formats.MAX_HEIF_BOXES}" in refused.value.message
