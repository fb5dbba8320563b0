"""S3 uploads -> result records in S3: every object gets exactly one answer, nothing is lost.

Two event shapes reach ``s3_handler``: a direct S3 ``ObjectCreated`` notification, and the
production path, an SQS batch whose messages carry S3 notifications (S3 -> SQS -> Lambda, so
bursts queue up and failures end in a dead-letter queue).

For each object: skip it if it is under the results prefix (our own output must not trigger us)
or if its result already exists for this version (re-delivery); check its size with a HEAD;
download; then classify every image of the invocation in **one** model call (``recognition``).
Each object ends in one of four ways:

- ``classified``: ``<prefix><key>.json`` holds the predictions;
- ``error_record``: a permanent failure (not an image, too big, corrupt, gone, access denied)
  wrote ``{"error", "code", ...}`` at the same place; never retried;
- ``skipped``: a result key, or already answered;
- ``retry``: a transient failure (S3 5xx, throttling, timeouts): raised for that record only, so
  SQS redelivers it and, in the end, the dead-letter queue keeps it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import S3Event, SQSEvent
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from handler import config, model, recognition
from handler.errors import ClientError, Code, check_image_size, excerpt

logger = Logger(child=True)
tracer = Tracer()
metrics = Metrics()

TEST_EVENT = "s3:TestEvent"
# S3 error codes that mean "try again later"; any other 4xx is the object's fault, not the moment's.
TRANSIENT_CODES = {"InternalError", "ServiceUnavailable", "SlowDown", "Throttling", "RequestTimeout"}
GONE_CODES = {"404", "NoSuchKey", "NoSuchVersion", "NoSuchBucket", "NotFound"}
DENIED_CODES = {"403", "AccessDenied", "AllAccessDisabled", "InvalidObjectState"}


class Status(StrEnum):
    CLASSIFIED = "classified"
    ERROR_RECORD = "error_record"
    SKIPPED = "skipped"
    RETRY = "retry"


class TransientError(Exception):
    """S3 could not be reached or asked us to slow down: the record must be retried."""


class InvalidEvent(ValueError):
    """The function was invoked with something that is not an S3 or SQS event (a misconfiguration)."""


class MalformedMessage(Exception):
    """An SQS message that is not an S3 notification: left to the queue's redrive policy (DLQ)."""


@dataclass(frozen=True)
class Upload:
    """One object named by a notification (the key already URL-decoded)."""

    bucket: str
    key: str
    version_id: str | None = None
    etag: str = ""

    def source(self) -> dict[str, str | None]:
        return {"bucket": self.bucket, "key": self.key, "version_id": self.version_id, "etag": self.etag}


@cache
def client():
    """The S3 client, created on first use so the API function never imports boto3."""
    import boto3
    from botocore.config import Config

    retries = {"mode": "standard", "max_attempts": 3}
    # SigV4 everywhere: presigned POST forms default to the legacy V2 otherwise.
    settings = Config(retries=retries, connect_timeout=5, read_timeout=30, signature_version="s3v4")
    # A session of its own: credentials are read now, not whatever boto3's default session cached.
    return boto3.session.Session().client("s3", config=settings)


def classify_s3_error(error: Exception, what: str) -> Exception:
    """Map an SDK error to a permanent ``ClientError`` (error record) or a ``TransientError``."""
    from botocore.exceptions import ClientError as SdkError

    if not isinstance(error, SdkError):  # connection, timeout and other botocore failures
        return TransientError(f"{what}: {error}")
    code = str(error.response.get("Error", {}).get("Code", ""))
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in TRANSIENT_CODES or status >= 500 or status == 429:
        return TransientError(f"{what}: {code or status}")
    if code in GONE_CODES or status == 404:
        return ClientError(f"The object no longer exists ({what}).", Code.SOURCE_NOT_FOUND)
    if code in DENIED_CODES or status == 403:
        return ClientError(f"Access to the object was denied ({what}).", Code.SOURCE_ACCESS_DENIED)
    return ClientError(f"The object cannot be read ({what}: {code or status}).", Code.SOURCE_UNREADABLE)


def is_missing(error: Exception) -> bool:
    """Whether an SDK error means "no such object" (as opposed to denied, throttled, unreachable)."""
    mapped = classify_s3_error(error, "lookup")
    return isinstance(mapped, ClientError) and mapped.code == Code.SOURCE_NOT_FOUND


def result_location(upload: Upload) -> tuple[str, str]:
    settings = config.settings()
    return settings.results_bucket or upload.bucket, f"{settings.results_prefix}{upload.key}.json"


def is_result_key(upload: Upload) -> bool:
    """Recursion guard: never process what we (or another run) wrote under the results prefix."""
    return upload.key.startswith(config.settings().results_prefix)


def already_answered(upload: Upload) -> bool:
    """True when the result for this exact object version exists (a re-delivered notification)."""
    bucket, key = result_location(upload)
    try:
        head = client().head_object(Bucket=bucket, Key=key)
    except Exception as error:
        if is_missing(error):
            return False
        # Unreadable results (throttled, denied): retry the record rather than guess; the DLQ keeps it.
        raise TransientError(f"reading the result s3://{bucket}/{key}: {error}") from error
    metadata = head.get("Metadata", {})
    return metadata.get("source-etag") == upload.etag and metadata.get("source-version-id", "") == (
        upload.version_id or ""
    )


def download(upload: Upload, max_bytes: int) -> bytes:
    """HEAD for the size (refuse before downloading), then GET this exact version."""
    version = {"VersionId": upload.version_id} if upload.version_id else {}
    try:
        head = client().head_object(Bucket=upload.bucket, Key=upload.key, **version)
        check_image_size(int(head["ContentLength"]), max_bytes)
        return client().get_object(Bucket=upload.bucket, Key=upload.key, **version)["Body"].read()
    except ClientError:
        raise
    except Exception as error:
        raise classify_s3_error(error, f"reading s3://{upload.bucket}/{upload.key}") from error


def write_record(upload: Upload, record: dict[str, Any]) -> None:
    """Write the result or error record next to the others; metadata ties it to the source version."""
    bucket, key = result_location(upload)
    body = {**upload.source(), **record, "processed_at": datetime.now(UTC).isoformat(timespec="milliseconds")}
    try:
        client().put_object(
            Bucket=bucket,
            Key=key,
            Body=json.dumps(body, indent=2).encode(),
            ContentType="application/json",
            Metadata={"source-etag": upload.etag, "source-version-id": upload.version_id or ""},
        )
    except Exception as error:
        mapped = classify_s3_error(error, f"writing s3://{bucket}/{key}")
        raise (mapped if isinstance(mapped, TransientError) else TransientError(str(mapped))) from error


def _error_record(upload: Upload, error: ClientError) -> Status:
    logger.warning("cannot classify", extra={"key": upload.key, "code": error.code, "error": error.message})
    write_record(upload, error.to_dict())
    metrics.add_metric(name="ImagesFailed", unit=MetricUnit.Count, value=1)
    return Status.ERROR_RECORD


def _fetch(upload: Upload, max_bytes: int) -> bytes | Status:
    """The object's bytes, or the status it already ended in (skipped / error record)."""
    if is_result_key(upload):
        logger.info("skipping a results key", extra={"key": upload.key})
        return Status.SKIPPED
    if already_answered(upload):
        logger.info("already answered", extra={"key": upload.key})
        return Status.SKIPPED
    try:
        return download(upload, max_bytes)
    except ClientError as error:
        return _error_record(upload, error)


@tracer.capture_method(capture_response=False)
def process(uploads: Iterable[Upload]) -> dict[Upload, Status | TransientError]:
    """Answer every upload once; classify all downloaded images in one model call."""
    started = time.perf_counter()
    settings = config.settings()
    outcomes: dict[Upload, Status | TransientError] = {}
    downloaded: dict[Upload, bytes] = {}
    for upload in dict.fromkeys(uploads):  # the same object twice in a batch is answered once
        try:
            fetched = _fetch(upload, settings.max_upload_bytes)
        except TransientError as error:
            outcomes[upload] = error
            continue
        if isinstance(fetched, bytes):
            downloaded[upload] = fetched
        else:
            outcomes[upload] = fetched

    answers = (
        recognition.classify(
            list(downloaded.values()),
            settings.default_top_k,
            settings.max_upload_bytes,
            queue_over_budget=True,
        )
        if downloaded
        else []
    )
    batch_ms = round((time.perf_counter() - started) * 1000, 2)
    info = model.classifier().info.to_dict()
    for upload, answer in zip(downloaded, answers, strict=True):
        try:
            if answer.error:
                outcomes[upload] = _error_record(upload, answer.error)
                continue
            predictions = [p.to_dict() for p in answer.predictions or []]
            write_record(upload, {"predictions": predictions, "model": info, "batch_ms": batch_ms})
            metrics.add_metric(name="ImagesProcessed", unit=MetricUnit.Count, value=1)
            logger.info("classified", extra={"key": upload.key, "top1": predictions[0]["label"]})
            outcomes[upload] = Status.CLASSIFIED
        except TransientError as error:
            outcomes[upload] = error
    retries = sum(isinstance(outcome, TransientError) for outcome in outcomes.values())
    if retries:
        metrics.add_metric(name="TransientFailures", unit=MetricUnit.Count, value=retries)
    return outcomes


def uploads_in(notification: S3Event) -> list[Upload]:
    """The created objects of an S3 notification; keys arrive URL-encoded (``+`` for spaces)."""
    return [
        Upload(
            bucket=record.s3.bucket.name,
            key=unquote_plus(record.s3.get_object.key),
            version_id=record.s3.get_object.version_id,
            etag=record.s3.get_object.etag,
        )
        for record in notification.records
        if record.event_name.startswith("ObjectCreated")
    ]


def uploads_in_message(record: SQSRecord) -> list[Upload]:
    """The uploads an SQS message announces (none for S3's ``s3:TestEvent``)."""
    try:
        body = json.loads(record.body)
    except (TypeError, json.JSONDecodeError) as error:
        raise MalformedMessage(f"message {record.message_id} is not JSON") from error
    if not isinstance(body, dict):
        raise MalformedMessage(f"message {record.message_id} is not an S3 notification")
    if body.get("Event") == TEST_EVENT:
        return []
    if not isinstance(body.get("Records"), list):
        raise MalformedMessage(f"message {record.message_id} is not an S3 notification")
    return uploads_in(S3Event(body))


def summary(outcomes: dict[Upload, Status | TransientError]) -> dict[str, Any]:
    return {
        "objects": [
            {"key": u.key, "status": str(o) if isinstance(o, Status) else Status.RETRY.value}
            for u, o in outcomes.items()
        ]
    }


def _failed_messages(records: list[SQSRecord]) -> list[str]:
    """Process these messages' objects together (one model call); the ids of the ones to retry."""
    planned: dict[str, list[Upload] | MalformedMessage] = {}
    for record in records:
        try:
            planned[record.message_id] = uploads_in_message(record)
        except MalformedMessage as error:
            logger.warning(
                "not an S3 notification", extra={"message_id": record.message_id, "error": str(error)}
            )
            planned[record.message_id] = error
    try:
        outcomes = process(u for uploads in planned.values() if isinstance(uploads, list) for u in uploads)
    except Exception:  # a bug or an exhausted resource: retry these messages, isolated on redelivery
        logger.exception("batch failed", extra={"messages": len(records)})
        metrics.add_metric(name="BatchFailures", unit=MetricUnit.Count, value=1)
        return [record.message_id for record in records]
    return [
        message_id
        for message_id, uploads in planned.items()
        if isinstance(uploads, MalformedMessage)
        or any(isinstance(outcomes[upload], TransientError) for upload in uploads)
    ]


def handle_sqs(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """SQS batch: one model call for all messages; ``batchItemFailures`` lists only the retries.

    A batch that comes back (``ApproximateReceiveCount`` > 1) may hold the message that failed it,
    so it is processed one message at a time: a bad one fails alone while the others complete.
    """
    records = list(SQSEvent(event).records)
    redelivered = any(int(r.attributes.approximate_receive_count or 1) > 1 for r in records)
    groups = [[record] for record in records] if redelivered else [records]
    if redelivered:
        logger.info("redelivered batch: one message at a time", extra={"messages": len(records)})
    failed = [message_id for group in groups for message_id in _failed_messages(group)]
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}


def handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Entry for both shapes. A direct S3 event with a transient failure raises, so Lambda's
    asynchronous retries run it again; answered objects are then skipped."""
    if not isinstance(event, dict) or not (event.get("Records") or event.get("Event") == TEST_EVENT):
        raise InvalidEvent(
            "s3_handler takes an S3 ObjectCreated notification or an SQS batch of them; "
            f"got {excerpt(json.dumps(event, default=str))}"
        )
    records = event["Records"] if event.get("Records") else []
    if records and records[0].get("eventSource") == "aws:sqs":
        return handle_sqs(event, context)
    if event.get("Event") == TEST_EVENT:
        return {"objects": []}
    outcomes = process(uploads_in(S3Event(event)))
    failed = [u.key for u, o in outcomes.items() if isinstance(o, TransientError)]
    if failed:
        raise TransientError(f"{len(failed)} object(s) failed transiently and will be retried: {failed}")
    return summary(outcomes)
