"""Photos too big for the API: a presigned S3 POST for one object, then its result by id.

API Gateway and Lambda cap a synchronous request near 6 MB; S3 takes the photo directly instead.
The server picks the key (a random id under the uploads prefix, with the extension of the declared
type, so the S3 notification filter matches) and S3 enforces the signed policy: size range and an
image Content-Type. The S3 path (``s3.py``) classifies the object as it does any upload; this
module only hands out upload forms and reads result records. It knows nothing of HTTP.
"""

from __future__ import annotations

import json
import re
import uuid
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from handler import config, s3
from handler.errors import BadRequest, Code, NotConfigured, NotFound, UnsupportedMediaType, excerpt

EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/gif": "gif",
    "image/webp": "webp",
    "image/bmp": "bmp",
    "image/tiff": "tiff",
}
UPLOAD_ID = re.compile(r"^[0-9a-f]{32}\.(?:jpg|png|gif|webp|bmp|tiff)$")


def _bucket() -> str:
    bucket = config.settings().uploads_bucket
    if not bucket:
        raise NotConfigured(
            "Uploads are not enabled on this deployment (no UPLOADS_BUCKET).", Code.UPLOADS_DISABLED
        )
    return bucket


def new_upload(content_type: str) -> dict[str, Any]:
    """A presigned POST form for one new object; the id names its result."""
    settings = config.settings()
    bucket = _bucket()
    kind = content_type.split(";")[0].strip().lower()
    if kind not in EXTENSIONS:
        raise UnsupportedMediaType(
            f"Cannot upload {excerpt(kind) or 'an unnamed type'}: declare one of {', '.join(EXTENSIONS)}.",
            Code.UNSUPPORTED_MEDIA_TYPE,
        )
    upload_id = f"{uuid.uuid4().hex}.{EXTENSIONS[kind]}"
    form = s3.client().generate_presigned_post(
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


@cache
def _origin_of(bucket: str) -> str:
    url = urlsplit(s3.client().generate_presigned_post(Bucket=bucket, Key="origin-probe")["url"])
    return f"{url.scheme}://{url.netloc}"


def upload_origin() -> str | None:
    """Where browsers POST uploads (for the page's CSP ``connect-src``); None without uploads.

    Presigning is local signing, no request: this costs no network call.
    """
    bucket = config.settings().uploads_bucket
    return _origin_of(bucket) if bucket else None


def validate_id(upload_id: str) -> str:
    """Ids are exactly what ``new_upload`` makes: nothing else ever becomes part of a key."""
    if not UPLOAD_ID.fullmatch(upload_id):
        raise BadRequest("Not an upload id: expected 32 hex digits and an image extension.", Code.INVALID_ID)
    return upload_id


def result(upload_id: str) -> tuple[bool, dict[str, Any]]:
    """``(True, record)`` once the result or error record exists, ``(False, pending)`` before."""
    upload = s3.Upload(bucket=_bucket(), key=f"{config.settings().uploads_prefix}{validate_id(upload_id)}")
    bucket, key = s3.result_location(upload)
    try:
        record = json.loads(s3.client().get_object(Bucket=bucket, Key=key)["Body"].read())
        return True, record
    except Exception as error:
        if not s3.is_missing(error):
            raise
    try:
        s3.client().head_object(Bucket=upload.bucket, Key=upload.key)
    except Exception as error:
        if s3.is_missing(error):
            raise NotFound(
                "No upload has this id (or it has not arrived yet).", Code.UNKNOWN_UPLOAD
            ) from error
        raise
    return False, {"status": "pending", "id": upload_id}
