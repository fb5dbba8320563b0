"""Regenerate ``events/``: API Gateway event fixtures and the answer each one must get.

    python -m devtools.fixtures [--photo ../shared/images/grace_hopper.jpg] [--out events]

The fixtures embed ``grace_hopper.jpg`` (public domain; also in matplotlib's sample data) and
small synthetic files; nothing from ``../shared/models``. Each is a complete event, usable as-is
with ``sam local invoke -e`` or ``python -m handler invoke``. ``expected.json`` records the status
and top-1 label or error code the tests hold every fixture to.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import struct
import zlib
from pathlib import Path
from typing import Any

from localaws.events import (
    batch_operations_event,
    http_event,
    map_batch_event,
    multipart_body,
    rest_event,
    s3_event,
    s3_test_event,
    sqs_event,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PHOTO = REPO.parent / "shared" / "images" / "grace_hopper.jpg"
FIXED_TIME_MS = 1_795_000_000_000  # fixtures are byte-stable across regenerations
EXAMPLE_BUCKET = "image-recognition-uploads-example"
UNICODE_KEY = "uploads/Été 2026/Grace Hopper (portrait) + ü.jpg"
ARCHIVE_UNICODE_KEY = "archive/Été 2019/Grace Hopper (portrait) + ü.jpg"


def png_header(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming ``width`` x ``height``, with one empty IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def _stable(event: dict[str, Any], name: str) -> dict[str, Any]:
    if "requestContext" not in event:  # S3 and SQS events are already fixed
        return event
    context = event["requestContext"]
    context["requestId"] = f"fixture-{name}"
    if "requestTimeEpoch" in context:
        context["requestTimeEpoch"] = FIXED_TIME_MS
    else:
        context["timeEpoch"] = FIXED_TIME_MS
        context["time"] = "01/Nov/2026:00:00:00 +0000"
    return event


def build(photo: bytes) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """``{file name: (event, expected)}`` for every fixture."""
    form, form_type = multipart_body([("image", "grace_hopper.jpg", photo, "image/jpeg")], boundary="fixture")
    data_url = json.dumps({"image": "data:image/jpeg;base64," + base64.b64encode(photo).decode()}).encode()
    json_type = {"Content-Type": "application/json"}
    uniform = {"status": 200, "top1": "military_uniform"}
    return {
        "api-rest-predict-multipart.json": (
            rest_event("POST", "/predict", body=form, headers={"Content-Type": form_type}),
            uniform,
        ),
        "api-rest-predict-json-data-url.json": (
            rest_event("POST", "/predict", body=data_url, headers=json_type, query="top_k=3"),
            {**uniform, "count": 3},
        ),
        "api-http-predict-raw-jpeg.json": (
            http_event("POST", "/predict", body=photo, headers={"Content-Type": "image/jpeg"}),
            uniform,
        ),
        "api-rest-health.json": (rest_event("GET", "/health"), {"status": 200}),
        "api-rest-error-400-no-image.json": (
            rest_event("POST", "/predict", body=b'{"picture": "oops"}', headers=json_type),
            {"status": 400, "code": "missing_image"},
        ),
        "api-rest-error-413-too-many-pixels.json": (
            rest_event(
                "POST", "/predict", body=png_header(50_000, 50_000), headers={"Content-Type": "image/png"}
            ),
            {"status": 413, "code": "image_too_many_pixels"},
        ),
        "api-rest-error-415-not-an-image.json": (
            rest_event(
                "POST",
                "/predict",
                body=b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n",
                headers={"Content-Type": "application/octet-stream"},
            ),
            {"status": 415, "code": "unsupported_image_type"},
        ),
        "api-http-error-422-truncated-jpeg.json": (
            http_event(
                "POST", "/predict", body=photo[: len(photo) // 3], headers={"Content-Type": "image/jpeg"}
            ),
            {"status": 422, "code": "corrupt_image"},
        ),
    }


def build_s3(photo: bytes) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """S3 fixtures: ``expected`` names the bucket, and the keys that must exist and get a result."""
    etag = hashlib.md5(photo).hexdigest()

    def obj(key: str) -> tuple[str, str, int]:
        return key, etag, len(photo)

    batch = [f"uploads/batch/photo-{n}.jpg" for n in range(1, 4)]
    return {
        "s3-put.json": (
            s3_event(EXAMPLE_BUCKET, [obj("uploads/grace_hopper.jpg")]),
            {"bucket": EXAMPLE_BUCKET, "results": ["uploads/grace_hopper.jpg"]},
        ),
        "s3-put-unicode-key.json": (
            s3_event(EXAMPLE_BUCKET, [obj(UNICODE_KEY)]),
            {"bucket": EXAMPLE_BUCKET, "results": [UNICODE_KEY]},
        ),
        "sqs-s3-batch.json": (
            sqs_event([s3_event(EXAMPLE_BUCKET, [obj(key)]) for key in batch]),
            {"bucket": EXAMPLE_BUCKET, "results": batch},
        ),
        "sqs-s3-test-event.json": (
            sqs_event([s3_test_event(EXAMPLE_BUCKET)]),
            {"bucket": EXAMPLE_BUCKET, "results": []},
        ),
    }


def build_bulk(photo: bytes) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Bulk fixtures (``bulk_handler``): a Distributed Map batch and S3 Batch Operations 1.0/2.0
    tasks. ``results`` are the keys that must exist and get a result; ``answer`` is the summary
    (Map) or the result codes (Batch Operations) expected."""
    etag = hashlib.md5(photo).hexdigest()
    photos = ["archive/2019/grace_hopper.jpg", ARCHIVE_UNICODE_KEY]
    listed = [*photos, "archive/2019/", "results/archive/2019/old.jpg.json"]
    return {
        "bulk-map-batch.json": (
            map_batch_event(EXAMPLE_BUCKET, [(key, etag, len(photo)) for key in listed]),
            {
                "bucket": EXAMPLE_BUCKET,
                "results": photos,
                "answer": {"items": 4, "classified": 2, "error_records": 0, "skipped": 2},
            },
        ),
        **{
            f"bulk-s3-batch-operations-{version}.json": (
                batch_operations_event(EXAMPLE_BUCKET, [ARCHIVE_UNICODE_KEY], version=version),
                {"bucket": EXAMPLE_BUCKET, "results": [ARCHIVE_UNICODE_KEY], "answer": ["Succeeded"]},
            )
            for version in ("1.0", "2.0")
        },
    }


def write(out_dir: Path, photo: bytes) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    expected = {}
    written = []
    for name, (event, expectation) in {**build(photo), **build_s3(photo), **build_bulk(photo)}.items():
        path = out_dir / name
        path.write_text(json.dumps(_stable(event, name.removesuffix(".json")), indent=2) + "\n")
        expected[name] = expectation
        written.append(path)
    (out_dir / "expected.json").write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTO, help="the photo to embed")
    parser.add_argument("--out", type=Path, default=REPO / "events", help="fixture directory")
    args = parser.parse_args(argv)
    for path in write(args.out, args.photo.read_bytes()):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
