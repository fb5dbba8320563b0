"""Refusals as exceptions: a permanent "no" for one image or request, with its HTTP status and a
machine-readable code.

They are raised deep (payload parsing, decoding, reading S3) and mapped to an answer in one place
each: ``http.api`` turns them into ``{"error", "code"}`` responses, ``records`` into error records.
Messages are written for the API's users and end up verbatim in the answer. Two families:
``ClientMistake`` (what the client sent) and ``SourceUnusable`` (a stored object that cannot be
read: gone, denied); ``NotConfigured`` is neither (a feature this deployment does not offer).
"""

from __future__ import annotations

from enum import StrEnum
from http import HTTPStatus


class Code(StrEnum):
    """Every machine-readable error code the service answers with (docs/api.md lists them)."""

    MISSING_IMAGE = "missing_image"
    INVALID_JSON = "invalid_json"
    INVALID_IMAGE_FIELD = "invalid_image_field"
    INVALID_BASE64 = "invalid_base64"
    INVALID_DATA_URL = "invalid_data_url"
    INVALID_MULTIPART = "invalid_multipart"
    TOO_MANY_IMAGES = "too_many_images"
    INVALID_PARAMETER = "invalid_parameter"
    IMAGE_TOO_LARGE = "image_too_large"
    IMAGE_TOO_MANY_PIXELS = "image_too_many_pixels"
    IMAGE_TOO_COSTLY = "image_too_costly"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    UNSUPPORTED_IMAGE_TYPE = "unsupported_image_type"
    CORRUPT_IMAGE = "corrupt_image"
    EMPTY_IMAGE = "empty_image"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    INVALID_EVENT = "invalid_event"
    INVALID_ID = "invalid_id"
    UNKNOWN_UPLOAD = "unknown_upload"
    UPLOADS_DISABLED = "uploads_disabled"
    INTERNAL_ERROR = "internal_error"
    SOURCE_NOT_FOUND = "source_not_found"
    SOURCE_ACCESS_DENIED = "source_access_denied"
    SOURCE_UNREADABLE = "source_unreadable"
    INVALID_PREDICTION_ID = "invalid_prediction_id"
    UNKNOWN_PREDICTION = "unknown_prediction"
    UNKNOWN_LABEL = "unknown_label"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    AUTHENTICATION_REQUIRED = "authentication_required"


class Refusal(Exception):
    """A permanent, explained failure of one image or request: answered, recorded, never retried."""

    status: HTTPStatus = HTTPStatus.BAD_REQUEST

    def __init__(self, message: str, code: Code) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def to_dict(self) -> dict[str, str]:
        return {"error": self.message, "code": self.code}


class ClientMistake(Refusal):
    """What the client sent cannot be served (the request, or one image of it)."""


class SourceUnusable(Refusal):
    """A stored object cannot be read (gone, access denied, unreadable): its error record says so."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY


class BadRequest(ClientMistake):
    """Malformed request: no image, bad base64, bad JSON, bad parameter."""

    status = HTTPStatus.BAD_REQUEST


class PayloadTooLarge(ClientMistake):
    """Too many encoded bytes or decoded pixels."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class UnsupportedMediaType(ClientMistake):
    """Not an image type the service decodes (or a request content type it does not read)."""

    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


class NotFound(ClientMistake):
    """The request names something that does not exist (an upload id never used)."""

    status = HTTPStatus.NOT_FOUND


class Forbidden(ClientMistake):
    """A privileged write without an authenticated caller (``POST /feedback`` when IAM is required)."""

    status = HTTPStatus.FORBIDDEN


class NotConfigured(Refusal):
    """The deployment does not offer this feature (no uploads bucket): not a client mistake, not a crash."""

    status = HTTPStatus.NOT_IMPLEMENTED


class Unavailable(Refusal):
    """A dependency (S3) failed this request: try again; nothing the client sent was wrong."""

    status = HTTPStatus.SERVICE_UNAVAILABLE


class Unprocessable(ClientMistake):
    """A supported image type that cannot be decoded into pixels (truncated, corrupt)."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY


EXCERPT_CHARS = 100


def too_costly(reason: str) -> PayloadTooLarge:
    """The one refusal of an image that would cost more to decode than the service spends on one
    (413 ``image_too_costly``): ``reason`` says which bound, found by a structure walk or met by a
    decode worker."""
    return PayloadTooLarge(f"{reason}; it is refused.", Code.IMAGE_TOO_COSTLY)


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """At most ``limit`` characters of something the client sent, for an error message."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_image_size(size: int, max_bytes: int) -> None:
    """Refuse an image by its encoded size before reading it (API bodies, multipart parts, S3 objects)."""
    if size > max_bytes:
        raise PayloadTooLarge(f"Image is {size} bytes; the limit is {max_bytes} bytes.", Code.IMAGE_TOO_LARGE)
