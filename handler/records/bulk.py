"""Classify what is already stored: Step Functions Distributed Map batches and S3 Batch Operations
tasks, through the worker's road (one model call per batch) and its records.

- Distributed Map (``ItemReader`` over ListObjectsV2, ``ItemBatcher``): ``{"Items": [{"Key", "Etag",
  "Size", ...}], "BatchInput": {"bucket", "force"}}`` -> a record per object and a small summary.
  A transient S3 failure raises, so the Map's ``Retry`` runs the batch again (answered objects are
  then skipped); folder markers (``.../``) and keys under the results prefix are skipped.
- S3 Batch Operations (``invocationSchemaVersion`` 1.0 and 2.0): one result per task,
  ``Succeeded`` (classified, or already answered), ``PermanentFailure`` (its error record says
  why) or ``TemporaryFailure`` (S3 Batch Operations retries it); ``userArguments.force`` (2.0).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import (
    S3BatchOperationEvent,
    S3BatchOperationResponse,
    S3BatchOperationResponseRecord,
)

from handler.contract import EventKind, InvalidEvent, kind_of
from handler.errors import Refusal, excerpt
from handler.records import pipeline
from handler.records.pipeline import Records
from handler.records.storage import S3Object
from handler.s3 import TransientError

logger = Logger(child=True)

# What one wave (download, decode, one model call, write) holds at most: a batch of large photos,
# or of very many small ones, is classified in parts.
BATCH_BYTES = 256 * 1024 * 1024
WAVE_OBJECTS = 64


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1", "yes")


def groups_within(costs: Sequence[int], budget: int, max_items: int | None = None) -> list[list[int]]:
    """Indexes of consecutive items whose costs add up to at most ``budget`` (and, with
    ``max_items``, that many items at most), in order.

    An item that alone costs more than the budget gets a group of its own (the caller decides
    whether to refuse it); nothing is reordered or dropped.
    """
    groups: list[list[int]] = []
    used = 0
    for index, cost in enumerate(costs):
        full = max_items is not None and groups and len(groups[-1]) >= max_items
        if not groups or used + cost > budget or full:
            groups.append([])
            used = 0
        groups[-1].append(index)
        used += cost
    return groups


def _listed_size(size: Any) -> int:
    """The item's listed size in bytes; 0 (unknown: the HEAD will tell) when it is not one."""
    if isinstance(size, str) and size.isdigit():
        size = int(size)
    return size if type(size) is int and size >= 0 else 0


def listed_item(bucket: str, item: Any) -> tuple[S3Object, int] | str:
    """A Map item as ``(object, listed size)``, or why it cannot be one. Only the key is required:
    a missing or odd ``Size`` or ``Etag`` is read from S3 instead (the HEAD checks the size)."""
    key = item.get("Key") if isinstance(item, dict) else None
    if not isinstance(key, str) or not key:
        return "the item has no Key (a string)"
    size = _listed_size(item.get("Size"))
    etag = item.get("Etag") or item.get("ETag") or ""
    return S3Object(bucket, key, etag=etag.strip('"') if isinstance(etag, str) else ""), size


def map_batch(road: Records, event: dict[str, Any]) -> dict[str, Any]:
    """One Distributed Map child batch: every listed object ends with a record, or the batch fails
    (and the Map retries it). An item that names no object fails alone, listed in the output as
    ``invalid_item``. The output counts the outcomes and lists each key's (error records with their
    code). Objects are classified in waves bounded by bytes and by count, so memory follows the
    wave, not the batch (10,000 tiny objects hold what 64 do)."""
    batch_input = event.get("BatchInput") or {}
    bucket = batch_input.get("bucket") if isinstance(batch_input, dict) else None
    if not isinstance(bucket, str) or not bucket:
        raise InvalidEvent('A Distributed Map batch needs "BatchInput": {"bucket": ...}.')
    force = _truthy(batch_input.get("force", False))
    items = event.get("Items") or []
    if not isinstance(items, list):
        raise InvalidEvent('A Distributed Map batch\'s "Items" is a list.')
    parsed = [listed_item(bucket, item) for item in items]
    listed = [entry for entry in parsed if isinstance(entry, tuple)]
    invalid = [
        {"key": item.get("Key") if isinstance(item, dict) and isinstance(item.get("Key"), str) else None,
         "status": "invalid_item", "error": entry}
        for item, entry in zip(items, parsed, strict=True)
        if isinstance(entry, str)
    ]  # fmt: skip
    if invalid:
        logger.warning("invalid Map items", extra={"count": len(invalid)})
    outcomes: pipeline.RecordOutcomes = {}
    for group in groups_within([size for _, size in listed], BATCH_BYTES, WAVE_OBJECTS):
        outcomes.update(
            pipeline.process(road, [listed[index][0] for index in group], force=force, source="bulk")
        )
    failed = [obj.key for obj, outcome in outcomes.items() if isinstance(outcome, TransientError)]
    if failed:
        raise TransientError(
            f"{len(failed)} object(s) failed transiently; the Map retries the batch: {failed[:5]}"
        )
    objects = pipeline.summary(outcomes)["objects"]
    counts = Counter(entry["status"] for entry in objects)
    return {
        "items": len(items),
        "classified": counts[pipeline.Status.CLASSIFIED],
        "error_records": counts[pipeline.Status.ERROR_RECORD],
        "skipped": counts[pipeline.Status.SKIPPED],
        "invalid_items": len(invalid),
        "objects": objects + invalid,
    }


def batch_operations(road: Records, event: dict[str, Any]) -> dict[str, Any]:
    """S3 Batch Operations: one task per invocation, one result per task."""
    parsed = S3BatchOperationEvent(event)
    arguments = (parsed.job.user_arguments or {}) if parsed.invocation_schema_version == "2.0" else {}
    force = _truthy(arguments.get("force", False))
    response = S3BatchOperationResponse(
        parsed.invocation_schema_version, parsed.invocation_id, "PermanentFailure"
    )
    for task in parsed.tasks:
        response.add_result(_task_result(road, task, force))
    return response.asdict()


def _task_object(task) -> S3Object | None:
    """The object a task names, or None when it names none (each task is judged on its own)."""
    try:
        bucket, key = task.s3_bucket, task.s3_key
        version = task.s3_version_id
    except (KeyError, TypeError, AttributeError, ValueError, IndexError):
        return None
    if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
        return None
    return S3Object(bucket, key, version if isinstance(version, str) and version else None)


def _task_result(road: Records, task, force: bool) -> S3BatchOperationResponseRecord:
    def result(code: str, text: str) -> S3BatchOperationResponseRecord:
        task_id = task.get("taskId") if isinstance(task.get("taskId"), str) else "unknown-task"
        return S3BatchOperationResponseRecord(task_id, code, excerpt(text, 200))

    obj = _task_object(task)
    if obj is None:
        return result("PermanentFailure", "invalid_task: the task names no S3 object (bucket and key)")

    # The task names a key (and a version): no HEAD to learn its ETag, the GET answers it; a gone or
    # denied object gets its error record from the pipeline, as on every other road.
    outcome = pipeline.process(road, [obj], force=force, source="bulk")[obj]
    if isinstance(outcome, TransientError):
        return result("TemporaryFailure", str(outcome))
    if isinstance(outcome, Refusal):
        return result("PermanentFailure", f"{outcome.code}: {outcome.message}")
    return result("Succeeded", str(outcome))


def handle(road: Records, event: Any) -> dict[str, Any]:
    """Entry for both bulk shapes."""
    kind = kind_of(event)
    if kind is EventKind.MAP_BATCH:
        return map_batch(road, event)
    if kind is EventKind.BATCH_OPERATIONS:
        return batch_operations(road, event)
    raise InvalidEvent(
        'bulk_handler takes a Distributed Map batch ({"Items": [...], "BatchInput": {...}}) or an '
        "S3 Batch Operations event (invocationSchemaVersion 1.0 or 2.0)."
    )
