"""The records' store: where an object's record goes, whether the object was already answered,
and the one GET and one PUT each object costs. Knows nothing of events or the model; what an S3
error means is ``handler.s3``'s.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from handler.config import Settings
from handler.errors import Refusal, check_image_size
from handler.s3 import MAX_KEY_BYTES, Superseded, TransientError, classify_s3_error, is_missing, new_client

BY_HASH = "_by-hash/"  # under the results prefix: records of keys too long to mirror


@dataclass(frozen=True)
class S3Object:
    """One object to classify (its key already URL-decoded)."""

    bucket: str
    key: str
    version_id: str | None = None
    etag: str = ""
    # S3's event order for this key (notifications only: Map items and Batch Operations tasks have
    # none); not part of the object's identity.
    sequencer: str | None = field(default=None, compare=False)

    def source(self) -> dict[str, str | None]:
        return {"bucket": self.bucket, "key": self.key, "version_id": self.version_id, "etag": self.etag}


# What makes two answers the same answer: the source's bytes and the model that read them.
IDEMPOTENCY_KEYS = ("source-etag", "model-name", "model-version")


def _record_metadata(obj: S3Object, model: dict[str, str]) -> dict[str, str]:
    """What a record's S3 metadata says it answers: this source version (and its event's place in
    S3's order), by this model."""
    return {
        "source-etag": obj.etag,
        "source-version-id": obj.version_id or "",
        "source-sequencer": obj.sequencer or "",
        "model-name": model["name"],
        "model-version": model["version"],
    }


def later(sequencer: str, other: str) -> bool:
    """Whether S3 event ``sequencer`` comes after ``other`` for the same key. Sequencers are
    hexadecimal strings that may differ in length: S3's guide says to right-pad the shorter with
    zeros, then compare them as text."""
    width = max(len(sequencer), len(other))
    return sequencer.upper().ljust(width, "0") > other.upper().ljust(width, "0")


class Storage:
    """The function's S3: given a client (tests, local S3) or creating one on first use, so the
    API path never imports boto3 unless uploads are used."""

    def __init__(self, settings: Settings, client: Any = None) -> None:
        self.settings = settings
        self._given = client

    @cached_property
    def client(self):
        return self._given if self._given is not None else new_client()

    @property
    def given_client(self) -> Any:
        """The client this storage was given (tests, local S3), or None: others share it."""
        return self._given

    @cached_property
    def post_origin(self) -> str | None:
        """Where browsers POST presigned uploads (scheme and host); None without an uploads bucket.
        Presigning is local signing, no request; computed once."""
        bucket = self.settings.uploads_bucket
        if not bucket:
            return None
        url = urlsplit(self.client.generate_presigned_post(Bucket=bucket, Key="origin-probe")["url"])
        return f"{url.scheme}://{url.netloc}"

    def result_location(self, obj: S3Object) -> tuple[str, str]:
        """Where ``obj``'s record goes: ``<results prefix><key>.json``, or, when that would pass S3's
        1,024-byte key limit (a legal source key of 1,012 bytes or more), the fallback
        ``<results prefix>_by-hash/<sha256 of the key>.json`` (the record names its source key).
        A source key that itself starts with ``_by-hash/`` goes to the fallback too: so no mirrored
        record is ever under ``_by-hash/``, and two keys never share a record."""
        key = f"{self.settings.results_prefix}{obj.key}.json"
        if len(key.encode("utf-8")) > MAX_KEY_BYTES or obj.key.startswith(BY_HASH):
            key = self.fallback_key(obj)
        return self.settings.results_bucket or obj.bucket, key

    def fallback_key(self, obj: S3Object) -> str:
        digest = hashlib.sha256(obj.key.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{self.settings.results_prefix}{BY_HASH}{digest}.json"

    def is_result_key(self, obj: S3Object) -> bool:
        """Recursion guard: never process what we (or another run) wrote: records under the results
        prefix, captures under the capture prefix of the capture bucket (a backfill of a whole
        bucket would otherwise classify, and capture again, the photos capture kept)."""
        capture_bucket = self.settings.capture_bucket or self.settings.uploads_bucket
        captured = obj.key.startswith(self.settings.capture_prefix) and obj.bucket == capture_bucket
        return obj.key.startswith(self.settings.results_prefix) or captured

    def already_answered(self, obj: S3Object, model: dict[str, str]) -> bool:
        """True when these exact bytes (the source's ETag) were answered by this model name and
        version: a re-delivered notification, or a backfill over uploads already answered (a Map
        item carries no version id, a notification does: the version is not compared). A new
        object version with other bytes, or a new model version, is answered again."""
        bucket, key = self.result_location(obj)
        try:
            head = self.client.head_object(Bucket=bucket, Key=key)
        except Exception as error:
            if is_missing(error):
                return False
            # Unreadable results (throttled, denied): retry rather than guess; the DLQ keeps it.
            raise TransientError(f"reading the result s3://{bucket}/{key}: {error}") from error
        stored = head.get("Metadata", {})
        if obj.sequencer and later(stored.get("source-sequencer", ""), obj.sequencer):
            return True  # a later event of this key has its record: this one is out of date
        wanted = _record_metadata(obj, model)
        if obj.etag:
            return all(stored.get(name) == wanted[name] for name in IDEMPOTENCY_KEYS)
        # An S3 Batch Operations task names a key (and a version where the bucket keeps them), no
        # ETag: a record by this model for that version, or that key, answers it without a second
        # request. Bytes rewritten in place since are answered by their own notification (or a
        # forced run).
        same_model = all(stored.get(name) == wanted[name] for name in ("model-name", "model-version"))
        return same_model and (not obj.version_id or stored.get("source-version-id") == obj.version_id)

    def download(self, obj: S3Object, max_bytes: int) -> tuple[bytes, S3Object]:
        """GET this exact version, its size checked from the response's headers before a byte of
        the body is read (too large: the stream is closed, unread); with its ETag known, only those
        bytes (``IfMatch``): an object replaced since it was listed or announced is ``Superseded``
        (its new version has its own notification, or the next backfill). Returns the bytes and
        ``obj`` with the ETag S3 answered (a Batch Operations task names a key only)."""
        version = {"VersionId": obj.version_id} if obj.version_id else {}
        same = {"IfMatch": f'"{obj.etag}"'} if obj.etag else {}
        try:
            response = self.client.get_object(Bucket=obj.bucket, Key=obj.key, **version, **same)
            try:
                check_image_size(int(response["ContentLength"]), max_bytes)
                data = response["Body"].read()
            finally:
                response["Body"].close()
        except Refusal:
            raise
        except Exception as error:
            raise classify_s3_error(error, f"reading s3://{obj.bucket}/{obj.key}") from error
        return data, replace(obj, etag=str(response.get("ETag", "")).strip('"') or obj.etag)

    def write_record(self, obj: S3Object, record: dict[str, Any], model: dict[str, str]) -> bool:
        """Write the result or error record; its metadata ties it to the source version and model.
        False when a record for a later event of the key (S3's sequencer) is already there: an
        older event never replaces it, whatever order SQS delivers them in."""
        bucket, key = self.result_location(obj)
        body = {
            **obj.source(),
            **record,
            "processed_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        encoded = json.dumps(body, indent=2).encode()
        try:
            return self._put_in_order(bucket, key, encoded, obj, model)
        except Refusal as refused:
            # S3 refused the key itself (a permanent 4xx): the record goes to the fallback, once.
            fallback = self.fallback_key(obj)
            if key == fallback:
                raise TransientError(str(refused)) from refused
            try:
                return self._put_in_order(bucket, fallback, encoded, obj, model)
            except Refusal as again:
                raise TransientError(str(again)) from again

    def _put_in_order(self, bucket: str, key: str, body: bytes, obj: S3Object, model: dict[str, str]) -> bool:
        """An object with a sequencer (a notification) writes only over a record of an earlier
        event, and only over the very record it read (``IfMatch``, or ``IfNoneMatch`` when there was
        none): a writer that raced it and won is read again. Without one (Map, Batch Operations,
        which read the key's current version), the record is simply written."""
        if not obj.sequencer:
            return self._put_record(bucket, key, body, obj, model, {})
        condition = {"IfNoneMatch": "*"}  # the usual case, a new object: one request, no read
        for _ in range(3):
            try:
                return self._put_record(bucket, key, body, obj, model, condition)
            except Superseded:  # a record is there (or another writer came first): read it, decide
                pass
            try:
                head = self.client.head_object(Bucket=bucket, Key=key)
            except Exception as error:
                if not is_missing(error):
                    raise TransientError(f"reading the result s3://{bucket}/{key}: {error}") from error
                condition = {"IfNoneMatch": "*"}  # deleted meanwhile
                continue
            if later(head.get("Metadata", {}).get("source-sequencer", ""), obj.sequencer):
                return False
            condition = {"IfMatch": head["ETag"]}
        raise TransientError(f"the record s3://{bucket}/{key} kept changing while it was written")

    def _put_record(
        self, bucket: str, key: str, body: bytes, obj: S3Object, model: dict[str, str], condition: dict
    ) -> bool:
        try:
            self.client.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                Metadata=_record_metadata(obj, model),
                **condition,
            )
        except Exception as error:
            raise classify_s3_error(error, f"writing s3://{bucket}/{key}") from error
        return True

    def read_record(self, obj: S3Object) -> dict[str, Any] | None:
        """The result or error record of ``obj``, or None while there is none."""
        bucket, key = self.result_location(obj)
        try:
            return json.loads(self.client.get_object(Bucket=bucket, Key=key)["Body"].read())
        except Exception as error:
            if is_missing(error):
                return None
            raise

    def exists(self, obj: S3Object) -> bool:
        try:
            self.client.head_object(Bucket=obj.bucket, Key=obj.key)
        except Exception as error:
            if is_missing(error):
                return False
            raise
        return True
