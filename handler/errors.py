"""Client mistakes as exceptions, each carrying its HTTP status and a machine-readable code.

They are raised deep (payload parsing, decoding) and mapped to a response in one place
(``api.py``); the S3 path maps the same exceptions to error records. Messages are written for the
API's users: they end up verbatim in ``{"error": ..., "code": ...}``.
"""

from __future__ import annotations

from http import HTTPStatus


class ClientError(Exception):
    """A request the service cannot serve because of what the client sent."""

    status: HTTPStatus = HTTPStatus.BAD_REQUEST

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def to_dict(self) -> dict[str, str]:
        return {"error": self.message, "code": self.code}


class BadRequest(ClientError):
    """Malformed request: no image, bad base64, bad JSON, bad parameter."""

    status = HTTPStatus.BAD_REQUEST


class PayloadTooLarge(ClientError):
    """Too many encoded bytes or decoded pixels."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class UnsupportedMediaType(ClientError):
    """Not an image type the service decodes (or a request content type it does not read)."""

    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


class Unprocessable(ClientError):
    """A supported image type that cannot be decoded into pixels (truncated, corrupt)."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY


def check_image_size(size: int, max_bytes: int) -> None:
    """Refuse an image by its encoded size before reading it (API bodies, multipart parts, S3 objects)."""
    if size > max_bytes:
        raise PayloadTooLarge(f"Image is {size} bytes; the limit is {max_bytes} bytes.", "image_too_large")
