"""Photos too big for the API: a presigned S3 POST for one object, then its result by id.

API Gateway and Lambda cap a synchronous request near 6 MB; S3 takes the photo directly instead.
The server picks the key (a random id under the uploads prefix, with the extension of the declared
type, so the S3 notification filter matches) and S3 enforces the signed policy: size range and an
image Content-Type. The worker classifies the object as it does any upload; this module only
hands out upload forms and reads result records. It knows nothing of HTTP.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from handler.contract import UPLOAD_EXTENSIONS
from handler.errors import (
    BadRequest,
    Code,
    NotConfigured,
    NotFound,
    UnsupportedMediaType,
    excerpt,
)
from handler.records.storage import S3Object, Storage

UPLOAD_ID = re.compile(rf"^[0-9a-f]{{32}}\.(?:{'|'.join(UPLOAD_EXTENSIONS.values())})$")


def _bucket(storage: Storage) -> str:
    bucket = storage.settings.uploads_bucket
    if not bucket:
        raise NotConfigured(
            "Uploads are not enabled on this deployment (no UPLOADS_BUCKET).", Code.UPLOADS_DISABLED
        )
    return bucket


def new_upload(storage: Storage, content_type: str) -> dict[str, Any]:
    """A presigned POST form for one new object; the id names its result."""
    settings = storage.settings
    bucket = _bucket(storage)
    kind = content_type.split(";")[0].strip().lower()
    if kind not in UPLOAD_EXTENSIONS:
        raise UnsupportedMediaType(
            f"Cannot upload {excerpt(kind) or 'an unnamed type'}: "
            f"declare one of {', '.join(UPLOAD_EXTENSIONS)}.",
            Code.UNSUPPORTED_MEDIA_TYPE,
        )
    upload_id = f"{uuid.uuid4().hex}.{UPLOAD_EXTENSIONS[kind]}"
    form = storage.client.generate_presigned_post(
        Bucket=bucket,
        Key=f"{settings.uploads_prefix}{upload_id}",
        Fields={"Content-Type": kind},
        Conditions=[
            ["content-length-range", 1, settings.max_upload_bytes],
            ["starts-with", "$Content-Type", "image/"],
        ],
        ExpiresIn=settings.upload_expires_seconds,
    )
    return {
        "upload": {"url": form["url"], "fields": form["fields"]},
        "id": upload_id,
        "expires_in": settings.upload_expires_seconds,
        "max_bytes": settings.max_upload_bytes,
    }


def validate_id(upload_id: str) -> str:
    """Ids are exactly what ``new_upload`` makes: nothing else ever becomes part of a key."""
    if not UPLOAD_ID.fullmatch(upload_id):
        raise BadRequest("Not an upload id: expected 32 hex digits and an image extension.", Code.INVALID_ID)
    return upload_id


def result(storage: Storage, upload_id: str) -> tuple[bool, dict[str, Any]]:
    """``(True, record)`` once the result or error record exists, ``(False, pending)`` before."""
    key = f"{storage.settings.uploads_prefix}{validate_id(upload_id)}"
    obj = S3Object(bucket=_bucket(storage), key=key)
    record = storage.read_record(obj)
    if record is not None:
        return True, record
    if not storage.exists(obj):
        raise NotFound("No upload has this id (or it has not arrived yet).", Code.UNKNOWN_UPLOAD)
    return False, {"status": "pending", "id": upload_id}
