"""The bad-input corpus: hostile, broken and merely odd requests, each with the answer it must get.

    python -m tests.corpora.corpus --out build/corpus     # writes one file per body and cases.json

Tests build the same cases in memory (``cases()``) and run each through ``api_handler`` as a
REST v1 and an HTTP v2 event. Valid-but-odd images must be classified (200); everything else
gets its 4xx status and error code; nothing may answer 5xx or raise.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import struct
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

from PIL import Image

from devtools.fixtures import DEFAULT_PHOTO, png_header
from localaws.events import multipart_body

MAX_IMAGE_BYTES = 6 * 1024 * 1024


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes
    content_type: str | None
    status: int
    code: str | None = None  # expected error code (None for 200)
    query: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    base64_encoded: bool | None = None  # None: as API Gateway would; False: binary sent as text


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def gif_bomb() -> bytes:
    """A GIF whose screen and frame claim 65535x65535 pixels, with almost no data."""
    header = b"GIF89a" + struct.pack("<HHBBB", 65535, 65535, 0, 0, 0)
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 65535, 65535, 0) + b"\x02\x02\x44\x01\x00"
    return header + frame + b"\x3b"


def truncated_png(photo: Image.Image) -> bytes:
    data = encode(photo, "PNG")
    return data[: len(data) // 2]


def json_image(value) -> bytes:
    return json.dumps({"image": value}).encode()


@cache
def photo() -> Image.Image:
    return Image.open(DEFAULT_PHOTO).convert("RGB")


@cache
def cases() -> tuple[Case, ...]:
    """Every case: the odd images classified, then the bad images and the bad requests refused."""
    jpeg = DEFAULT_PHOTO.read_bytes()
    return (*classified(photo(), jpeg), *bad_images(photo(), jpeg), *bad_requests(jpeg))


def classified(upright: Image.Image, jpeg: bytes) -> list[Case]:
    """Valid but odd images and requests: each is classified (200)."""
    b64 = base64.b64encode(jpeg).decode()
    exif = Image.Exif()
    exif[0x0112] = 8  # "rotate 90 CCW to display": stored turned the other way
    frames = [upright, upright.rotate(90), upright.rotate(180)]
    form, form_type = multipart_body([("image", "grace.jpg", jpeg, "image/jpeg")])
    ok = 200
    return [
        Case("tiny-1x1-png", encode(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG"), "image/png", ok),
        Case("wide-10000x1-png", encode(Image.new("RGB", (10_000, 1), (9, 9, 9)), "PNG"), "image/png", ok),
        Case("png-16-bit", encode(upright.convert("L").convert("I;16"), "PNG"), "image/png", ok),
        Case("cmyk-jpeg", encode(upright.convert("CMYK"), "JPEG", quality=90), "image/jpeg", ok),
        Case(
            "palette-png-transparency",
            encode(upright.convert("P", palette=Image.Palette.ADAPTIVE), "PNG", transparency=0),
            "image/png",
            ok,
        ),
        Case(
            "animated-gif",
            encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0),
            "image/gif",
            ok,
        ),
        Case(
            "multi-frame-tiff",
            encode(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
            "image/tiff",
            ok,
        ),
        Case("webp", encode(upright, "WEBP", quality=85), "image/webp", ok),
        Case(
            "exif-rotated-jpeg",
            encode(upright.transpose(Image.Transpose.ROTATE_270), "JPEG", quality=92, exif=exif.tobytes()),
            "image/jpeg",
            ok,
        ),
        Case("grayscale-jpeg", encode(upright.convert("L"), "JPEG", quality=90), "image/jpeg", ok),
        Case("rgba-png", encode(upright.convert("RGBA"), "PNG"), "image/png", ok),
        Case("bmp", encode(upright, "BMP"), "image/bmp", ok),
        Case("octet-stream-jpeg", jpeg, "application/octet-stream", ok),
        Case("content-type-with-params", jpeg, "image/jpeg; charset=binary", ok),
        Case("json-base64-newlines", json_image(base64.encodebytes(jpeg).decode()), "application/json", ok),
        Case(
            "json-urlsafe-base64", json_image(base64.urlsafe_b64encode(jpeg).decode()), "application/json", ok
        ),
        Case("json-data-url", json_image(f"data:image/jpeg;base64,{b64}"), "application/json", ok),
        Case(
            "multipart-odd-filename",
            multipart_body(
                [("image", '../../etc/pa"ss wd\u00e9\u4e2d.jpg', jpeg, "image/jpeg")], boundary="b0"
            )[0],
            "multipart/form-data; boundary=b0",
            ok,
        ),
        Case("multipart-grace", form, form_type, ok),
        Case(
            "multipart-batch-of-two",
            multipart_body([("image", "a.jpg", jpeg, "image/jpeg")] * 2, boundary="b3")[0],
            "multipart/form-data; boundary=b3",
            ok,
        ),
        Case(
            "json-batch-with-a-bad-item",
            json.dumps({"images": [b64, "!!", b64]}).encode(),
            "application/json",
            ok,
        ),
        Case("very-long-header", jpeg, "image/jpeg", ok, headers={"X-Long": "x" * 10_000}),
        Case("top-k-20", jpeg, "image/jpeg", ok, query="top_k=20"),
    ]


def bad_images(upright: Image.Image, jpeg: bytes) -> list[Case]:
    """Bodies that are no image, a broken one, a bomb or a format refused: 4xx with its code."""
    return [
        Case("empty-body", b"", "image/jpeg", 400, "missing_image"),
        Case("random-bytes", bytes(range(256)) * 64, "image/jpeg", 415, "unsupported_image_type"),
        Case("truncated-jpeg", jpeg[: len(jpeg) // 3], "image/jpeg", 422, "corrupt_image"),
        Case("truncated-png", truncated_png(upright), "image/png", 422, "corrupt_image"),
        Case("png-bomb-50000x50000", png_header(50_000, 50_000), "image/png", 413, "image_too_many_pixels"),
        Case("gif-bomb", gif_bomb(), "image/gif", 413, "image_too_many_pixels"),
        Case(
            "svg",
            b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><rect width="9"/></svg>',
            "image/svg+xml",
            415,
            "unsupported_image_type",
        ),
        Case(
            "heic-header-only",
            b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\0" * 64,
            "image/heic",
            422,
            "corrupt_image",
        ),
        Case(
            "mp4-as-octet-stream",
            b"\x00\x00\x00\x18ftypisom\x00\x00\x00\x00isommp41" + b"\0" * 64,
            "application/octet-stream",
            415,
            "unsupported_image_type",
        ),
        Case(
            "pdf",
            b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n",
            "application/pdf",
            415,
            "unsupported_media_type",
        ),
        Case(
            "pdf-as-octet-stream",
            b"%PDF-1.7\n%%EOF\n",
            "application/octet-stream",
            415,
            "unsupported_image_type",
        ),
    ]


def bad_requests(jpeg: bytes) -> list[Case]:
    """Requests wrong in their JSON, form, media type, size or parameters: 4xx with its code."""
    b64 = base64.b64encode(jpeg).decode()
    form, _ = multipart_body([("image", "grace.jpg", jpeg, "image/jpeg")])
    return [
        Case("json-invalid-base64", json_image("not*base64!"), "application/json", 400, "invalid_base64"),
        Case(
            "json-data-url-text",
            json_image("data:text/plain;base64,aGVsbG8="),
            "application/json",
            415,
            "unsupported_media_type",
        ),
        Case(
            "json-data-url-no-mime",
            json_image(f"data:;base64,{b64}"),
            "application/json",
            415,
            "unsupported_media_type",
        ),
        Case(
            "json-data-url-not-base64",
            json_image("data:image/png,abc"),
            "application/json",
            400,
            "invalid_data_url",
        ),
        Case("json-syntax-error", b'{"image": ', "application/json", 400, "invalid_json"),
        Case("json-not-an-object", b'["image"]', "application/json", 400, "invalid_json"),
        Case("json-image-null", json_image(None), "application/json", 400, "missing_image"),
        Case("json-image-number", json_image(42), "application/json", 400, "invalid_image_field"),
        Case("json-image-array", json_image([b64]), "application/json", 400, "invalid_image_field"),
        Case(
            "multipart-without-image",
            multipart_body([("photo", "a.jpg", jpeg, "image/jpeg")], boundary="b1")[0],
            "multipart/form-data; boundary=b1",
            400,
            "missing_image",
        ),
        Case(
            "multipart-17-images",
            multipart_body([("image", "a.jpg", b"x", "image/jpeg")] * 17, boundary="b2")[0],
            "multipart/form-data; boundary=b2",
            413,
            "too_many_images",
        ),
        Case(
            "json-17-images",
            json.dumps({"images": ["eA=="] * 17}).encode(),
            "application/json",
            413,
            "too_many_images",
        ),
        Case("multipart-no-boundary", form, "multipart/form-data", 400, "invalid_multipart"),
        Case(
            "multipart-garbage",
            b"\x00garbage\xff" * 100,
            "multipart/form-data; boundary=zz",
            400,
            "invalid_multipart",
        ),
        Case("wrong-content-type", jpeg, "text/plain", 415, "unsupported_media_type"),
        Case(
            "form-urlencoded",
            b"image=abc",
            "application/x-www-form-urlencoded",
            415,
            "unsupported_media_type",
        ),
        Case("no-content-type", jpeg, None, 415, "unsupported_media_type"),
        Case(
            "just-over-max-bytes",
            b"\xff\xd8" + b"\0" * (MAX_IMAGE_BYTES - 1),
            "image/jpeg",
            413,
            "image_too_large",
        ),
        Case("binary-as-text", jpeg, "image/jpeg", 415, "unsupported_image_type", base64_encoded=False),
        Case("top-k-0", jpeg, "image/jpeg", 400, "invalid_parameter", query="top_k=0"),
        Case("top-k-negative", jpeg, "image/jpeg", 400, "invalid_parameter", query="top_k=-1"),
        Case("top-k-21", jpeg, "image/jpeg", 400, "invalid_parameter", query="top_k=21"),
        Case("top-k-abc", jpeg, "image/jpeg", 400, "invalid_parameter", query="top_k=abc"),
    ]


def write(out: Path) -> list[Path]:
    """Write each body to ``out/<name>.bin`` and the expectations to ``out/cases.json``."""
    out.mkdir(parents=True, exist_ok=True)
    index = []
    for case in cases():
        (out / f"{case.name}.bin").write_bytes(case.body)
        entry = {k: v for k, v in asdict(case).items() if k != "body"}
        index.append({**entry, "file": f"{case.name}.bin"})
    (out / "cases.json").write_text(json.dumps(index, indent=2) + "\n")
    return [out / "cases.json"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("build/corpus"))
    args = parser.parse_args()
    write(args.out)
    print(f"{len(cases())} cases written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
