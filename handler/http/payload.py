"""Request body -> the image's bytes, for the three ways a client can send a photo.

- ``multipart/form-data`` with a file field ``image`` (HTML forms, ``curl -F image=@photo.jpg``);
  several ``image`` fields make a batch
- ``application/json`` ``{"image": "<base64>"}`` or ``{"image": "data:image/jpeg;base64,..."}``;
  ``{"images": [...]}`` makes a batch
- a raw ``image/*`` or ``application/octet-stream`` body (``curl --data-binary``)

Knows nothing of Pillow or the model; every refusal is a ``Refusal`` with its HTTP meaning.

Multipart is parsed with the ``multipart`` library rather than Powertools' ``File()`` parameter:
Powertools parses form bodies in its validation middleware, which answers 415 to any other
content type before the route runs, so one ``/predict`` could not also take raw and JSON bodies.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import re
from dataclasses import dataclass
from typing import Any

import multipart

from handler.errors import (
    BadRequest,
    Code,
    PayloadTooLarge,
    Refusal,
    UnsupportedMediaType,
    check_image_size,
    excerpt,
)

FIELD = "image"
RAW_TYPES = ("application/octet-stream",)
DATA_URL = re.compile(r"^data:(?P<mime>[^;,]*)(?P<params>(;[^;,]*)*?),(?P<data>.*)$", re.DOTALL)
# One C pass over the text: URL-safe base64's two letters to the standard ones, and the whitespace
# of line-wrapped base64 dropped (a regex over a 5 MB body cost ~25 ms; this, ~1 ms).
URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
WHITESPACE = b" \t\n\r\x0b\x0c"


def media_type(content_type: str | None) -> tuple[str, dict[str, str]]:
    """``'Multipart/Form-Data; boundary=x'`` -> ``('multipart/form-data', {'boundary': 'x'})``."""
    value, options = multipart.parse_options_header(content_type or "")
    return value.strip().lower(), options


def decode_base64(text: str | bytes, max_bytes: int, what: str = "image") -> bytes:
    """Decode standard or URL-safe base64, tolerating line breaks and missing padding.

    The decoded size is estimated from the text length first, so a 100 MB string is refused
    without allocating its decoded copy.
    """
    if len(text) * 3 // 4 <= max_bytes + 2:  # the usual case (standard, padded, unwrapped): one C pass
        with contextlib.suppress(binascii.Error, ValueError):
            return binascii.a2b_base64(text, strict_mode=True)
    data = text.encode("ascii", "replace") if isinstance(text, str) else text
    data = data.translate(URLSAFE_TO_STANDARD, WHITESPACE)
    if len(data) * 3 // 4 > max_bytes + 2:
        raise PayloadTooLarge(
            f"The base64 {what} decodes to more than {max_bytes} bytes.", Code.IMAGE_TOO_LARGE
        )
    data += b"=" * (-len(data) % 4)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as error:
        raise BadRequest(f"The {what} is not valid base64: {error}", Code.INVALID_BASE64) from error


def parse_json(body: str | bytes) -> Any:
    """``json.loads`` whose every failure is a 400 ``invalid_json``.

    Besides syntax errors, ``json`` raises ``ValueError`` for integers over 4,300 digits and
    ``RecursionError`` for deep nesting: both are the client's mistake, not a crash.
    """
    try:
        return json.loads(body)
    except UnicodeDecodeError as error:
        raise BadRequest("The body is not valid JSON: it is not UTF-8 text.", Code.INVALID_JSON) from error
    except json.JSONDecodeError as error:
        raise BadRequest(f"The body is not valid JSON: {error}", Code.INVALID_JSON) from error
    except ValueError as error:  # e.g. "Exceeds the limit (4300 digits) for integer string conversion"
        raise BadRequest(f"The body is not valid JSON: {excerpt(str(error))}", Code.INVALID_JSON) from error
    except RecursionError as error:
        raise BadRequest("The body is not valid JSON: it is nested too deeply.", Code.INVALID_JSON) from error


def _from_data_url(value: str, max_bytes: int) -> bytes:
    match = DATA_URL.match(value)
    if not match:
        raise BadRequest(
            "The data URL is malformed: expected data:image/...;base64,<data>.", Code.INVALID_DATA_URL
        )
    mime = match["mime"].strip().lower()
    if not mime.startswith("image/"):
        raise UnsupportedMediaType(
            f"The data URL's media type is {excerpt(mime) or 'missing'}; expected image/*.",
            Code.UNSUPPORTED_MEDIA_TYPE,
        )
    if ";base64" not in match["params"].lower():
        raise BadRequest(
            "The data URL must be base64-encoded (data:image/...;base64,...).", Code.INVALID_DATA_URL
        )
    return decode_base64(match["data"], max_bytes)


@dataclass(frozen=True)
class ImageRequest:
    """What a request carried: one image, or a batch whose items may each have failed to decode."""

    images: list[bytes | Refusal]
    batch: bool


def _item(value: Any, max_bytes: int) -> bytes:
    """One JSON image value: a base64 string or a data: URL."""
    if not isinstance(value, str):
        raise BadRequest("Each image must be a base64 string or a data: URL.", Code.INVALID_IMAGE_FIELD)
    if value.startswith("data:"):
        return _from_data_url(value, max_bytes)
    return decode_base64(value, max_bytes)


def _batch_item(value: Any, max_bytes: int) -> bytes | Refusal:
    try:
        return _item(value, max_bytes)
    except Refusal as error:  # one bad image does not fail the others
        return error


def check_count(count: int, max_images: int) -> None:
    if count > max_images:
        message = f"{count} images in one request; the limit is {max_images}."
        raise PayloadTooLarge(message, Code.TOO_MANY_IMAGES)


def from_json(body: str | bytes, max_bytes: int, max_images: int) -> ImageRequest:
    """``{"image": "<base64 or data URL>"}`` or ``{"images": [...]}`` (a batch)."""
    document = parse_json(body)
    if not isinstance(document, dict):
        raise BadRequest('The JSON body must be an object like {"image": "<base64>"}.', Code.INVALID_JSON)
    if "images" in document:
        values = document["images"]
        if not isinstance(values, list) or not values:
            raise BadRequest('"images" must be a non-empty list of base64 strings.', Code.INVALID_IMAGE_FIELD)
        check_count(len(values), max_images)
        return ImageRequest([_batch_item(value, max_bytes) for value in values], batch=True)
    value = document.get(FIELD)
    if value is None:
        raise BadRequest('The JSON body has no "image" (or "images") field.', Code.MISSING_IMAGE)
    return ImageRequest([_item(value, max_bytes)], batch=False)


def _multipart_limit(reason: str, max_bytes: int, max_images: int) -> Refusal:
    """A limit of the multipart parser, said as the client's mistake it is."""
    lowered = reason.lower()
    if "header" in lowered:
        return BadRequest(
            f"A multipart part has too many or too long headers ({reason}).", Code.INVALID_MULTIPART
        )
    if (
        "count" in lowered or "part limit" in lowered
    ):  # images are counted before this: these are other fields
        return BadRequest(
            f"The form has too many parts: at most {max_images} images and a few other fields.",
            Code.INVALID_MULTIPART,
        )
    return PayloadTooLarge(
        f"The upload exceeds a limit: {reason} (at most {max_bytes} bytes per image).", Code.IMAGE_TOO_LARGE
    )


def from_multipart(body: bytes, boundary: str | None, max_bytes: int, max_images: int) -> ImageRequest:
    """Every file field ``image`` of a ``multipart/form-data`` body (two or more: a batch)."""
    if not boundary:
        raise BadRequest("multipart/form-data without a boundary parameter.", Code.INVALID_MULTIPART)
    parser = multipart.MultipartParser(
        io.BytesIO(body),
        boundary,
        content_length=len(body),
        part_limit=max_images + 16,
        partsize_limit=max_bytes + 1,
        spool_limit=max_bytes + 1,  # keep parts in memory: Lambda's disk is for /tmp only
        memory_limit=2 * max_bytes + 1024,
    )
    images: list[bytes | Refusal] = []
    try:
        for part in parser:
            if part.name == FIELD:
                check_count(len(images) + 1, max_images)
                check_image_size(part.size, max_bytes)
                images.append(part.raw)
    except multipart.ParserLimitReached as error:
        raise _multipart_limit(str(error), max_bytes, max_images) from error
    except multipart.MultipartError as error:
        raise BadRequest(
            f"The multipart body is malformed: {excerpt(str(error))}", Code.INVALID_MULTIPART
        ) from error
    if not images:
        raise BadRequest('The form has no "image" file field.', Code.MISSING_IMAGE)
    return ImageRequest(images, batch=len(images) > 1)


def parse(body: str | bytes, content_type: str | None, max_bytes: int, max_images: int) -> ImageRequest:
    """The image(s) in a request body, by its ``Content-Type``; ``Refusal`` when there are none.

    ``max_bytes`` bounds the whole body (Lambda's payload limit is per request) and each image. A
    text body (``str``, as API Gateway passes JSON) is parsed as text; the others as bytes.
    """
    if not body:
        raise BadRequest(
            'The request has no body: send an image as multipart field "image", JSON or raw bytes.',
            Code.MISSING_IMAGE,
        )
    kind, options = media_type(content_type)
    if kind == "application/json" or kind.endswith("+json"):
        return from_json(body, max_bytes, max_images)
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    if kind == "multipart/form-data":
        return from_multipart(body, options.get("boundary"), max_bytes, max_images)
    if kind.startswith("image/") or kind in RAW_TYPES:
        check_image_size(len(body), max_bytes)
        return ImageRequest([body], batch=False)
    raise UnsupportedMediaType(
        f"Content-Type {excerpt(kind) or '(none)'} is not accepted: use multipart/form-data, "
        "application/json, image/* or application/octet-stream.",
        Code.UNSUPPORTED_MEDIA_TYPE,
    )
