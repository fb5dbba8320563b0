"""S3 as every part of the function reaches it: one way to build a client, and what its errors
mean. Every S3 failure is sorted into one of three kinds: permanent (a ``Refusal`` with a
``source_*`` code, which becomes the object's error record), ``TransientError`` (throttling, 5xx,
timeouts: the object is retried and, in the end, kept by the dead-letter queue) or ``Superseded``
(the object changed since it was announced: nothing to answer).
"""

from __future__ import annotations

from handler.errors import Code, Refusal, SourceUnusable

MAX_KEY_BYTES = 1024  # S3's limit on an object key, in UTF-8 bytes
# S3 error codes that mean "try again later"; any other 4xx is the object's fault, not the moment's.
TRANSIENT_CODES = {"InternalError", "ServiceUnavailable", "SlowDown", "Throttling", "RequestTimeout"}
GONE_CODES = {"404", "NoSuchKey", "NoSuchVersion", "NoSuchBucket", "NotFound"}
DENIED_CODES = {"403", "AccessDenied", "AllAccessDisabled", "InvalidObjectState"}


class Superseded(Exception):
    """The object was replaced by other bytes since it was listed or announced: nothing to answer."""


class TransientError(Exception):
    """S3 could not be reached or asked us to slow down: the object must be retried."""


def new_client(
    *,
    attempts: int = 4,
    connect_timeout: float = 5,
    read_timeout: float = 30,
    endpoint_url: str | None = None,
):
    """An S3 client: standard retries (``attempts`` in all, the first included: by default one try
    and 3 retries), bounded timeouts, SigV4 (presigned POST forms default to V2)."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={
            "mode": "standard",
            "total_max_attempts": attempts,
        },  # botocore's max_attempts counts retries
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        signature_version="s3v4",
    )
    # A session of its own: credentials are read now, not whatever boto3's default session cached.
    return boto3.session.Session().client("s3", config=config, endpoint_url=endpoint_url)


def classify_s3_error(error: Exception, what: str) -> Exception:
    """Map an SDK error to a permanent ``Refusal`` (error record), a ``TransientError``, or, for a
    conditional read whose ETag no longer matches, ``Superseded``."""
    from botocore.exceptions import ClientError as SdkError  # botocore's, not ours

    if not isinstance(error, SdkError):  # connection, timeout and other botocore failures
        return TransientError(f"{what}: {error}")
    code = str(error.response.get("Error", {}).get("Code", ""))
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in TRANSIENT_CODES or status >= 500 or status == 429:
        return TransientError(f"{what}: {code or status}")
    if code == "PreconditionFailed" or status == 412:
        return Superseded(f"{what}: the object changed since it was listed")
    if code in GONE_CODES or status == 404:
        return SourceUnusable(f"The object no longer exists ({what}).", Code.SOURCE_NOT_FOUND)
    if code in DENIED_CODES or status == 403:
        return SourceUnusable(f"Access to the object was denied ({what}).", Code.SOURCE_ACCESS_DENIED)
    return SourceUnusable(f"The object cannot be read ({what}: {code or status}).", Code.SOURCE_UNREADABLE)


def is_missing(error: Exception) -> bool:
    """Whether an SDK error means "no such object" (as opposed to denied, throttled, unreachable)."""
    mapped = classify_s3_error(error, "lookup")
    return isinstance(mapped, Refusal) and mapped.code == Code.SOURCE_NOT_FOUND
