"""Where the function and the stack meet: names and defaults both sides must agree on.

Imported by ``handler`` and by ``infra`` (and the dev tools); it imports nothing, so the CDK app
can read it without loading the function. Each value is defined here and nowhere else.
"""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum
from typing import Any

SERVICE_NAME = "image-recognition"  # POWERTOOLS_SERVICE_NAME: logs and the metrics' service dimension
METRICS_NAMESPACE = "ImageRecognition"  # POWERTOOLS_METRICS_NAMESPACE

API_HANDLER = "handler.app.api_handler"
S3_HANDLER = "handler.app.s3_handler"
BULK_HANDLER = "handler.app.bulk_handler"

# The request bodies API Gateway must base64-encode: exactly what the handler decodes ("*/*" would
# also encode the CORS preflight and break it).
BINARY_MEDIA_TYPES = ("image/*", "multipart/form-data", "application/octet-stream")

# Image types an upload may declare, and the key extension each gets (the S3 trigger filters on it).
UPLOAD_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/gif": "gif",
    "image/webp": "webp",
    "image/bmp": "bmp",
    "image/tiff": "tiff",
    "image/avif": "avif",
    "image/heic": "heic",
    "image/heif": "heif",
}
# Key suffixes that are images (the S3 notification filters; S3 filters are case-sensitive).
IMAGE_SUFFIXES = (
    ".jpg",
    ".jpeg",
    ".png",
    ".gif",
    ".webp",
    ".bmp",
    ".tif",
    ".tiff",
    ".avif",
    ".heic",
    ".heif",
)

# Every route the function answers (API Gateway paths; ``{name}`` is a path parameter). The stack
# creates exactly these on either API type; a test holds the function's router to the same list.
ROUTES = (
    ("POST", "/predict"),
    ("POST", "/uploads"),
    ("GET", "/results/{upload_id}"),
    ("POST", "/feedback"),
    ("GET", "/health"),
    ("GET", "/model"),
    ("GET", "/"),
    ("GET", "/openapi.json"),
)
# Public even when the API requires a key: the demo page and the OpenAPI document.
PUBLIC_ROUTES = (("GET", "/"), ("GET", "/openapi.json"))

# The ImageNet model the export writes (layers/model/export.py; the image's default model).
IMAGENET_MODEL = {"name": "mobilenet_v2", "version": "1.0.0"}

BACKENDS = ("litert", "keras")
PRECISIONS = ("fp32", "int8")  # int8: the full-integer .tflite a model directory may carry


# Lambda's CPU share: one vCPU at 1,769 MB of memory, in proportion below and above (6 at most).
MB_PER_VCPU = 1769


class Defaults:
    """Function settings whose default the stack also ships (``cdk.json`` and ``infra/settings.py``)."""

    MODEL_BACKEND = "litert"
    MAX_IMAGE_BYTES = 6 * 1024 * 1024  # Lambda's 6 MB synchronous payload
    MAX_IMAGE_PIXELS = 40_000_000
    MAX_IMAGES_PER_REQUEST = 16
    # The decode sandbox (handler/recognition/sandbox.py): each image in a worker process of its own
    # with an address-space cap and a CPU-time cap; an API request's images together have a CPU
    # budget and a wall-clock end (liveness, under API Gateway's 29 s).
    # 400: the function (~165 MB), the zygote (~35 MB) and two workers at their cap stay under 1 GB.
    DECODE_MEMORY_MB = 400
    # 1.5 s of CPU: a 40 MP progressive JPEG (the worst photo the pixel limit lets through) takes
    # 0.2-0.45 s of one core here, so it fits more than three times over.
    DECODE_CPU_MS = 1500
    DECODE_REQUEST_CPU_MS = 4000
    DECODE_REQUEST_DEADLINE_MS = 10000
    MAX_UPLOAD_BYTES = 20 * 1024 * 1024
    UPLOADS_PREFIX = "uploads/"
    RESULTS_PREFIX = "results/"
    CAPTURE_PREFIX = "capture/"
    ALLOWED_ORIGINS = "*"
    FEEDBACK_AUTH = "iam"


# The pre-traffic hook marks its check photos' events with this requestContext key: API Gateway
# builds requestContext itself, so no client request carries it. Its answers are not captured and
# not counted in the model-health metrics.
QUALITY_GATE_MARK = "imageRecognitionQualityGate"
QUALITY_GATE_SOURCE = "quality-gate"
# Answers given on a developer's machine (``imgrec predict``): not production traffic either.
LOCAL_SOURCE = "local"
NOT_TRAFFIC = (QUALITY_GATE_SOURCE, LOCAL_SOURCE)

# Who may correct an answer (POST /feedback; context feedbackAuth, FEEDBACK_AUTH): "iam" (the route
# has API Gateway's IAM authorization, and the function refuses a correction without a caller) or
# "none" (anyone; anonymous corrections are stored apart and never used unless asked for).
FEEDBACK_AUTH_MODES = ("iam", "none")

# The model-health metrics (handler.answers.drift) the drift alarms and the dashboard read (infra).
WATCHED_CLASSES = 10  # models of at most this many classes get a TopClass_<label> metric each
_UNSAFE_IN_METRIC = re.compile(r"[^A-Za-z0-9_.-]")


def top_class_metric(label: str) -> str:
    """``TopClass_<label>``, the label reduced to characters every metric tool accepts; a label the
    reduction changed also gets 8 hex of its sha256, so two labels never share a metric (``蜂`` and
    ``蚁``, ``a b`` and ``a_b``)."""
    safe = _UNSAFE_IN_METRIC.sub("_", label)
    if safe != label or len(label) > 200:
        safe = f"{safe[:190]}_{hashlib.sha256(label.encode()).hexdigest()[:8]}"
    return f"TopClass_{safe}"


# Which kind of event this is, and so which entry point it belongs to: decided here only. Each entry
# point checks that its event is one it serves (a misrouted or hand-made event gets a clear refusal,
# not a ``KeyError``); the dev tools route an event file to its entry point with the same function.
TEST_EVENT = "s3:TestEvent"  # what S3 sends once when a notification is configured


class InvalidEvent(ValueError):
    """The function was invoked with an event its entry point does not serve (a misconfiguration)."""


class EventKind(StrEnum):
    REST_API = "API Gateway REST API (payload 1.0)"
    HTTP_API = "API Gateway HTTP API (payload 2.0)"
    SQS = "SQS batch of S3 notifications"
    S3 = "S3 ObjectCreated notification"
    S3_TEST = "S3 test event"
    MAP_BATCH = "Step Functions Distributed Map batch"
    BATCH_OPERATIONS = "S3 Batch Operations task"
    UNKNOWN = "unknown"


# The entry point (``handler.app`` attribute, as the stack names it) for each kind of event.
ENTRY_POINTS = {
    EventKind.REST_API: API_HANDLER,
    EventKind.HTTP_API: API_HANDLER,
    EventKind.SQS: S3_HANDLER,
    EventKind.S3: S3_HANDLER,
    EventKind.S3_TEST: S3_HANDLER,
    EventKind.MAP_BATCH: BULK_HANDLER,
    EventKind.BATCH_OPERATIONS: BULK_HANDLER,
}


def kind_of(event: Any) -> EventKind:
    """The kind of ``event``, from the fields AWS puts in each shape (UNKNOWN for anything else)."""
    if not isinstance(event, dict):
        return EventKind.UNKNOWN
    if event.get("version") == "2.0" and "requestContext" in event:
        return EventKind.HTTP_API
    if "httpMethod" in event:
        return EventKind.REST_API
    records = event.get("Records")
    if isinstance(records, list) and records:
        source = records[0].get("eventSource") if isinstance(records[0], dict) else None
        # Other services deliver "Records" too (SNS, Kinesis, DynamoDB streams): not ours.
        return {"aws:sqs": EventKind.SQS, "aws:s3": EventKind.S3}.get(source, EventKind.UNKNOWN)
    if event.get("Event") == TEST_EVENT:
        return EventKind.S3_TEST
    if "Items" in event:
        return EventKind.MAP_BATCH
    if "invocationSchemaVersion" in event:
        return EventKind.BATCH_OPERATIONS
    return EventKind.UNKNOWN


def entry_point_for(event: Any) -> str:
    """``handler.app.<name>`` that serves ``event``; ``InvalidEvent`` when none does."""
    kind = kind_of(event)
    if kind not in ENTRY_POINTS:
        raise InvalidEvent(
            "Unrecognised event: expected an API Gateway (REST v1 / HTTP v2), S3, SQS, Distributed "
            "Map batch or S3 Batch Operations event."
        )
    return ENTRY_POINTS[kind]
