"""Production data for the model's next version: every answer's ``prediction_id``, a sampled
capture of the image and its answer, and the corrections people send back.

``prediction_id`` is ``{model}:{version}:{UTC time}:{sha256 of the image}``: it says which image,
which model and when, and it is where the capture lives, so ``POST /feedback`` finds it without a
database. Capture is off unless ``CAPTURE_RATE`` (or ``CAPTURE_UNCERTAIN_RATE``) is above 0; a
sampled answer stores the image and its answer side by side::

    {CAPTURE_PREFIX}{model}/{version}/{yyyy}/{mm}/{dd}/{prediction_id}.{ext}
    {CAPTURE_PREFIX}{model}/{version}/{yyyy}/{mm}/{dd}/{prediction_id}.json
    {CAPTURE_PREFIX}{model}/{version}/{yyyy}/{mm}/{dd}/{prediction_id}.feedback.json   (POST /feedback)
    {CAPTURE_PREFIX}{model}/{version}/{yyyy}/{mm}/{dd}/{prediction_id}.anonymous-feedback.json

A correction is a privileged write: ``.feedback.json`` holds one from a caller API Gateway
authenticated (IAM), with who sent it (``"caller": {"arn", "account"}``, read from the event's
``requestContext``, never from the request); ``.anonymous-feedback.json`` one without a caller,
possible only where ``FEEDBACK_AUTH=none`` allows it. Two keys, so an anonymous correction can
never replace a trusted one or pass for it; the readers (``imgrec dataset export``, ``imgrec
compare``) use trusted corrections only unless asked (``--include-anonymous``).

A capture never fails an answer and never holds it long: one attempt per PUT on a client with
1 s timeouts, and per invocation a budget (``BUDGET_SECONDS``): after the first failure, or once
the budget is spent, the invocation's other captures are skipped. A failure is the
``CaptureFailed`` metric and a warning in the log; a skipped one ``CaptureSkipped``. Each model
version's labels are stored once per container beside its captures
(``{CAPTURE_PREFIX}{model}/{version}/labels.json``), so feedback on an answer of an earlier
version is checked against the classes of the model that gave it.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from urllib.parse import quote, unquote

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from handler.config import Settings
from handler.recognition.formats import signature_of
from handler.s3 import MAX_KEY_BYTES, is_missing, new_client

logger = Logger(child=True)
metrics = Metrics()

STAMP = "%Y%m%dT%H%M%S%fZ"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_STAMP = re.compile(r"\d{8}T\d{12}Z")
# The longest id accepted from a client: model and version names are short, quoted at most 3x.
MAX_ID_LENGTH = 600
# What a capture's files end with (after ``{prediction_id}.``): the readers (``imgrec dataset
# export``, ``imgrec compare``) list them by these.
ANSWER_SUFFIX = "json"
FEEDBACK_SUFFIX = "feedback.json"  # a trusted correction: its record names the caller
ANONYMOUS_FEEDBACK_SUFFIX = "anonymous-feedback.json"  # one without a caller (FEEDBACK_AUTH=none)
IMAGE_EXTENSIONS = ("jpg", "png", "gif", "tiff", "bmp", "webp", "avif", "heic", "bin")
LABELS_FILE = "labels.json"  # {prefix}{model}/{version}/labels.json: the classes of that version
# Seconds one invocation may spend capturing: a slow store costs an answer this, plus at most one
# attempt already under way (connect and read timeouts of 1 s each).
BUDGET_SECONDS = 1.0
MAX_RECORD_BYTES = 4 * 1024 * 1024  # an answer is a few KB; ImageNet's labels.json 20 KB


# An IAM principal's ARN as API Gateway's IAM authorization reports it (a user, a role's session,
# a federated user); an ARN is at most 2,048 characters.
MAX_ARN_LENGTH = 2048
_CALLER_ARN = re.compile(r"arn:aws(?:-[a-z]{1,20}){0,3}:(?:iam|sts)::(\d{12}):[\x21-\x7e]{1,1900}")


def caller_record(arn: Any) -> dict[str, str] | None:
    """``{"arn", "account"}`` of an authenticated IAM caller, or None when ``arn`` is not one (not a
    string, too long, not an IAM or STS principal's ARN). The account is the one in the ARN: the
    principal's own, which IAM authenticated with it."""
    if not isinstance(arn, str) or len(arn) > MAX_ARN_LENGTH:
        return None
    match = _CALLER_ARN.fullmatch(arn)
    return {"arn": arn, "account": match.group(1)} if match else None


def trusted(record: Any) -> bool:
    """Whether a stored ``.feedback.json`` record names an authenticated caller (its ``caller``
    as ``caller_record`` writes it); a record without one (written before callers were recorded,
    or by hand) is not trusted."""
    caller = record.get("caller") if isinstance(record, dict) else None
    return isinstance(caller, dict) and caller_record(caller.get("arn")) == caller


class PredictionIdError(ValueError):
    """A string that is not a prediction_id this service writes."""


@dataclass(frozen=True)
class PredictionId:
    model: str
    version: str
    time: datetime
    sha256: str

    def __str__(self) -> str:
        return ":".join((quote(self.model, safe=""), quote(self.version, safe=""), self.stamp, self.sha256))

    @property
    def stamp(self) -> str:
        return self.time.strftime(STAMP)

    @property
    def folder(self) -> str:
        """``{model}/{version}/``, quoted: this model version's captures, below the prefix."""
        return f"{quote(self.model, safe='')}/{quote(self.version, safe='')}/"

    def key(self, prefix: str, suffix: str) -> str:
        """Where this prediction's file ``suffix`` (``jpg``, ``json``, ``feedback.json``) lives."""
        return f"{prefix}{self.folder}{self.time:%Y/%m/%d}/{self}.{suffix}"

    @classmethod
    def new(cls, image: bytes, model: str, version: str, now: datetime | None = None) -> PredictionId:
        return cls(model, version, now or datetime.now(UTC), hashlib.sha256(image).hexdigest())

    @classmethod
    def parse(cls, text: Any) -> PredictionId:
        """The id a client sent back; ``PredictionIdError`` saying why when it is not one of ours."""
        if not isinstance(text, str) or not 0 < len(text) <= MAX_ID_LENGTH:
            raise PredictionIdError("prediction_id must be the string an answer carried.")
        parts = text.split(":")
        if len(parts) != 4 or not all(parts):
            raise PredictionIdError("prediction_id must be MODEL:VERSION:TIME:SHA256, as answers carry it.")
        model, version, stamp, digest = parts
        if not _STAMP.fullmatch(stamp) or not _SHA256.fullmatch(digest):
            raise PredictionIdError("prediction_id's time or image digest is not one an answer carries.")
        try:
            when = datetime.strptime(stamp, STAMP).replace(tzinfo=UTC)
        except ValueError:
            raise PredictionIdError("prediction_id's time is not a date.") from None
        if when.year < 2000:
            raise PredictionIdError("prediction_id's time is before this service existed.")
        model, version = unquote(model), unquote(version)
        if {model, version} & {".", ".."} or "" in (model.strip(), version.strip()):
            raise PredictionIdError("prediction_id's model or version is not one an answer carries.")
        return cls(model, version, when, digest)


@dataclass(frozen=True)
class Sampled:
    """An answer sampled for capture: its id, the image as received, the answer, and why."""

    pid: PredictionId
    image: bytes
    answer: dict
    reason: str


def image_type(image: bytes) -> tuple[str, str]:
    """(extension, content type) of an image from its first bytes (the decoders' own table)."""
    signature = signature_of(image)
    return (signature.extension, signature.content_type) if signature else ("bin", "application/octet-stream")


def new_capture_client(endpoint_url: str | None = None):
    """An S3 client that gives up fast: a capture must never hold an answer for long."""
    return new_client(attempts=1, connect_timeout=1, read_timeout=1, endpoint_url=endpoint_url)


class Capture:
    """Samples answers into S3 and keeps the corrections people send for them."""

    def __init__(
        self, settings: Settings, client: Any = None, draw: Callable[[], float] = random.random
    ) -> None:
        self.bucket = settings.capture_bucket or settings.uploads_bucket
        self.prefix = settings.capture_prefix
        self.rate = settings.capture_rate
        self.uncertain_rate = (
            settings.capture_rate
            if settings.capture_uncertain_rate is None
            else settings.capture_uncertain_rate
        )
        self._given = client
        self._draw = draw
        self._labels_stored: set[str] = set()  # model versions whose labels.json this container wrote

    @cached_property
    def client(self):
        return self._given if self._given is not None else new_capture_client()

    @property
    def enabled(self) -> bool:
        return bool(self.bucket) and (self.rate > 0 or self.uncertain_rate > 0)

    def sampled_by(self, answer: dict) -> str | None:
        """Why this answer is captured (``rate`` or ``uncertain_rate``), or None: one draw."""
        if not self.enabled or "predictions" not in answer:
            return None
        uncertain = bool(answer.get("uncertain"))
        rate, reason = (self.uncertain_rate, "uncertain_rate") if uncertain else (self.rate, "rate")
        return reason if rate > 0 and self._draw() < rate else None

    def store_all(
        self, sampled: list[Sampled], model: dict, labels: list[str], source: str
    ) -> dict[str, bool]:
        """Each sampled answer's image and answer, side by side, within the invocation's budget:
        ``{prediction_id: stored}`` (the same image twice in a request is one capture)."""
        started, failed, stored = time.monotonic(), False, {}
        for item in sampled:
            key = str(item.pid)
            if key in stored:
                continue
            if failed or time.monotonic() - started > BUDGET_SECONDS:
                metrics.add_metric(name="CaptureSkipped", unit=MetricUnit.Count, value=1)
                stored[key] = False
                continue
            try:
                self._store_labels(item.pid, labels)
                self._store_one(item, model, source)
            except Exception as error:  # any SDK or network failure: the answer goes out regardless
                logger.warning("capture failed", extra={"prediction_id": key, "error": str(error)[:300]})
                metrics.add_metric(name="CaptureFailed", unit=MetricUnit.Count, value=1)
                failed, stored[key] = True, False
                continue
            metrics.add_metric(name="CaptureStored", unit=MetricUnit.Count, value=1)
            stored[key] = True
        return stored

    def _store_labels(self, pid: PredictionId, labels: list[str]) -> None:
        if pid.folder in self._labels_stored:
            return
        self.client.put_object(
            Bucket=self.bucket,
            Key=f"{self.prefix}{pid.folder}{LABELS_FILE}",
            Body=json.dumps(labels).encode(),
            ContentType="application/json",
        )
        self._labels_stored.add(pid.folder)

    def _store_one(self, item: Sampled, model: dict, source: str) -> None:
        pid, image, answer = item.pid, item.image, item.answer
        extension, content_type = image_type(image)
        image_key = pid.key(self.prefix, extension)
        record = {
            "prediction_id": str(pid),
            "time": pid.time.isoformat().replace("+00:00", "Z"),
            "source": source,
            "image": {
                "key": image_key,
                "sha256": pid.sha256,
                "bytes": len(image),
                "content_type": content_type,
            },
            "model": model,
            **{k: answer[k] for k in ("predictions", "uncertain") if k in answer},
            "sampled_by": item.reason,
        }
        self.client.put_object(Bucket=self.bucket, Key=image_key, Body=image, ContentType=content_type)
        self.client.put_object(
            Bucket=self.bucket,
            Key=pid.key(self.prefix, ANSWER_SUFFIX),
            Body=json.dumps(record, indent=2).encode(),
            ContentType="application/json",
        )

    def _read_json(self, key: str) -> Any:
        """The JSON stored at ``key``; None when there is none, or it is not JSON, or no object can
        have that key (over S3's 1,024 bytes: a client's made-up id, a 404, not the store's 503)."""
        if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
            return None
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read(MAX_RECORD_BYTES)
        except Exception as error:
            if is_missing(error):
                return None
            raise
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            return None

    def captured(self, pid: PredictionId) -> dict | None:
        """The stored answer of ``pid``, or None when nothing (readable) was captured under it."""
        if not self.bucket:
            return None
        document = self._read_json(pid.key(self.prefix, ANSWER_SUFFIX))
        return document if isinstance(document, dict) else None

    def labels_of(self, pid: PredictionId) -> list[str] | None:
        """The classes of the model version that gave ``pid``, as its captures recorded them."""
        document = self._read_json(f"{self.prefix}{pid.folder}{LABELS_FILE}")
        if isinstance(document, list) and all(isinstance(label, str) for label in document):
            return document
        return None

    def store_feedback(self, pid: PredictionId, label: str, caller: dict[str, str] | None = None) -> dict:
        """The correction beside its capture (a later one of the same kind replaces it), naming the
        model that answered and who sent it: with a ``caller`` (``caller_record``) it is trusted
        (``.feedback.json``); without, anonymous (``.anonymous-feedback.json``), never in the
        trusted one's place."""
        feedback = {
            "prediction_id": str(pid),
            "label": label,
            "time": datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "model": {"name": pid.model, "version": pid.version},
            "caller": caller,
        }
        self.client.put_object(
            Bucket=self.bucket,
            Key=pid.key(self.prefix, FEEDBACK_SUFFIX if caller else ANONYMOUS_FEEDBACK_SUFFIX),
            Body=json.dumps(feedback, indent=2).encode(),
            ContentType="application/json",
        )
        metrics.add_metric(name="FeedbackStored", unit=MetricUnit.Count, value=1)
        if not caller:
            metrics.add_metric(name="FeedbackAnonymous", unit=MetricUnit.Count, value=1)
        return feedback
