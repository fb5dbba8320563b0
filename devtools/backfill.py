"""``imgrec backfill s3://BUCKET/PREFIX``: classify what is already stored, from your machine.

Does locally what the stack's Backfill state machine does on AWS, with the same worker: lists the
prefix as the Distributed Map's ``S3ObjectsItemReader`` does, cuts the listing into batches as its
``ItemBatcher`` does, and runs ``bulk_handler`` (the Lambda entry point, model loaded once per
process) on them in parallel processes, retrying a batch that fails transiently with backoff as
the Map's ``Retry`` does. A second run skips everything already answered by this model version.

Writes ``report.csv`` in S3 Batch Operations' completion-report columns and ``summary.json``.
Logs of the worker processes go to ``worker-PID.log`` beside them.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
import warnings
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from localaws.events import map_items

REPORT_COLUMNS = ("Bucket", "Key", "VersionId", "TaskStatus", "ErrorCode", "HTTPStatusCode", "ResultMessage")


@dataclass(frozen=True)
class Options:
    url: str
    batch_size: int = 50
    workers: int = max(1, (os.cpu_count() or 2) - 1)
    force: bool = False
    endpoint_url: str | None = None
    out_dir: Path | None = None  # default: build/backfill/BUCKET/TIMESTAMP
    attempts: int = 3
    progress: bool = True


@dataclass
class Summary:
    source: str
    objects: int = 0
    classified: int = 0
    skipped: int = 0
    error_records: int = 0
    failed: int = 0
    batches: int = 0
    batch_size: int = 0
    workers: int = 0
    seconds: float = 0.0
    objects_per_second: float = 0.0
    errors_by_code: dict[str, int] = field(default_factory=dict)
    report: str = ""


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")``."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"expected s3://BUCKET/PREFIX, got {url!r}")
    return parts.netloc, parts.path.lstrip("/")


def client_for(endpoint_url: str | None):
    """An S3 client; a local endpoint (moto) works without AWS credentials."""
    import boto3

    session = boto3.session.Session()
    local = endpoint_url and urlsplit(endpoint_url).hostname in ("127.0.0.1", "localhost")
    credentials = (
        {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
        if local and session.get_credentials() is None
        else {}
    )
    region = session.region_name or "us-east-1"
    return session.client("s3", endpoint_url=endpoint_url, region_name=region, **credentials)


def list_prefix(client, bucket: str, prefix: str) -> list[dict[str, Any]]:
    """Every object under ``prefix`` as the Distributed Map's items (ListObjectsV2, all pages)."""
    listed = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        listed += [(o["Key"], o["ETag"], o["Size"]) for o in page.get("Contents", [])]
    return map_items(listed)


# --- In each worker process: the Lambda entry point, started once.

_function = None


def _start_worker(endpoint_url: str | None, log_dir: str) -> None:
    """Send the worker's Powertools logs and metrics to a file, then start the function (the
    local cold start: the model is loaded here, once per process)."""
    global _function
    warnings.filterwarnings("ignore", "No application metrics to publish")  # a batch of skips
    sys.stdout = open(Path(log_dir) / f"worker-{os.getpid()}.log", "a", buffering=1)  # noqa: SIM115
    from handler import config
    from handler.function import Function

    _function = Function.start(config.read_settings(), s3_client=client_for(endpoint_url))


def _run_batch(event: dict[str, Any]) -> dict[str, Any]:
    """One batch through ``bulk_handler``: its output, or the failure the Map would see."""
    from handler.s3 import TransientError
    from localaws.context import LocalContext

    try:
        return {"output": _function.bulk_handler(event, LocalContext())}
    except TransientError as error:
        return {"transient": str(error)}
    except Exception as error:  # what Lambda would report as the invocation's error
        return {"error": f"{type(error).__name__}: {error}"}


# --- In the parent: batches, retries, progress, report.


def _row(bucket: str, key: str, status: str, code: str | None) -> dict[str, str]:
    """A completion-report row as S3 Batch Operations writes it for our function's answers."""
    failed = status not in ("classified", "skipped")
    error = "" if not failed else ("PermanentFailure" if status == "error_record" else "TemporaryFailure")
    return dict(
        zip(
            REPORT_COLUMNS,
            (bucket, key, "", "failed" if failed else "succeeded", error, "200", code or status),
            strict=True,
        )
    )


# A cell starting with one of these is a formula to a spreadsheet (OWASP's CSV injection rule).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """A key such as ``=HYPERLINK(...)`` opens as text, not a formula: a leading quote neutralises it."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def run(options: Options, out: TextIO = sys.stderr) -> Summary:
    from tqdm import tqdm

    bucket, prefix = parse_url(options.url)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = options.out_dir or Path("build/backfill") / bucket / stamp
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    items = list_prefix(client_for(options.endpoint_url), bucket, prefix)
    events = [
        {"Items": items[i : i + options.batch_size], "BatchInput": {"bucket": bucket, "force": options.force}}
        for i in range(0, len(items), options.batch_size)
    ]
    out.write(
        f"{len(items)} object(s) under {options.url}: "
        f"{len(events)} batch(es) on {options.workers} worker(s)\n"
    )
    rows: list[dict[str, str]] = []
    with (
        ProcessPoolExecutor(
            options.workers,
            mp_context=get_context("spawn"),
            initializer=_start_worker,
            initargs=(options.endpoint_url, str(out_dir)),
        ) as pool,
        tqdm(total=len(items), unit="obj", desc="backfill", file=out, disable=not options.progress) as bar,
    ):
        pending: dict[Future, tuple[dict[str, Any], int]] = {
            pool.submit(_run_batch, event): (event, 1) for event in events
        }
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                event, attempt = pending.pop(future)
                try:
                    answer = future.result()
                except Exception as error:  # a worker process died (out of memory, killed)
                    answer = {"error": f"worker process failed: {type(error).__name__}: {error}"}
                if "transient" in answer and attempt < options.attempts:
                    time.sleep(min(2**attempt * 0.1, 5))  # the Map's backoff, shortened
                    pending[pool.submit(_run_batch, event)] = (event, attempt + 1)
                    continue
                rows += _rows_for(bucket, event, answer, attempt)
                bar.update(len(event["Items"]))
    return _finish(options, out_dir, rows, len(events), time.perf_counter() - started, out)


def _rows_for(
    bucket: str, event: dict[str, Any], answer: dict[str, Any], attempts: int
) -> list[dict[str, str]]:
    if "output" in answer:
        return [_row(bucket, o["key"], o["status"], o.get("code")) for o in answer["output"]["objects"]]
    reason = answer.get("transient") or answer.get("error")
    message = f"batch failed after {attempts} attempt(s): {reason}"[:500]
    return [_row(bucket, item["Key"], "failed", message) for item in event["Items"]]


def _finish(
    options: Options, out_dir: Path, rows: list[dict[str, str]], batches: int, seconds: float, out: TextIO
) -> Summary:
    rows.sort(key=lambda row: row["Key"])
    report = out_dir / "report.csv"
    with report.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=REPORT_COLUMNS)
        writer.writeheader()
        writer.writerows([{name: spreadsheet_safe(value) for name, value in row.items()} for row in rows])
    outcomes = Counter(
        "classified" if r["ResultMessage"] == "classified" else
        "skipped" if r["ResultMessage"] == "skipped" else
        "error_records" if r["ErrorCode"] == "PermanentFailure" else "failed"
        for r in rows
    )  # fmt: skip
    summary = Summary(
        source=options.url,
        objects=len(rows),
        classified=outcomes["classified"],
        skipped=outcomes["skipped"],
        error_records=outcomes["error_records"],
        failed=outcomes["failed"],
        batches=batches,
        batch_size=options.batch_size,
        workers=options.workers,
        seconds=round(seconds, 2),
        objects_per_second=round(len(rows) / seconds, 1) if seconds else 0.0,
        errors_by_code=dict(
            Counter(r["ResultMessage"] for r in rows if r["ErrorCode"] == "PermanentFailure").most_common()
        ),
        report=str(report),
    )
    (out_dir / "summary.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
    out.write(
        f"{summary.objects} object(s) in {summary.seconds} s ({summary.objects_per_second}/s): "
        f"{summary.classified} classified, {summary.skipped} skipped, {summary.error_records} error "
        f"record(s), {summary.failed} failed\nreport: {report}\nsummary: {out_dir / 'summary.json'}\n"
    )
    return summary
