"""A Distributed Map batch of 2,000 tiny objects (32 waves of 64, each object decoded by a process
of its own): memory follows the wave, not the batch, and every item ends with a record. The bulk
worker runs in a process of its own (a cold start, as Lambda's), against moto's S3 server, so its
peak memory is its own: the function, the zygote and its workers."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from tests.support import REPO

pytestmark = [pytest.mark.slow]

ITEMS = 2_000
MEMORY_TARGET_MB = 512

WORKER = """
import json, sys
from pathlib import Path
from handler import config
from handler.function import Function
from localaws.context import LocalContext

function = Function.start(config.read_settings())
event = json.loads(Path(sys.argv[1]).read_text())
summary = function.bulk_handler(event, LocalContext())
sandbox = function.runtime.recognizer.sandbox
status = Path("/proc/self/status").read_text()
own = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
peaks = sandbox.peaks_kb()
summary["memory_mb"] = round((own + peaks["zygote"] + sandbox.size * peaks["worker"]) / 1024, 1)
summary.pop("objects")
print("SUMMARY " + json.dumps(summary))
"""


def tiny_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def test_thousands_of_tiny_objects_stay_under_512_mb_and_each_gets_a_record(
    moto_s3, s3_client, tmp_path
) -> None:
    bucket = f"tiny-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)
    data = tiny_png()
    keys = [f"tiny/{n:05d}.png" for n in range(ITEMS)]
    with ThreadPoolExecutor(8) as pool:
        etags = list(
            pool.map(lambda key: s3_client.put_object(Bucket=bucket, Key=key, Body=data)["ETag"], keys)
        )
    items = [{"Key": key, "Etag": etag, "Size": len(data)} for key, etag in zip(keys, etags, strict=True)]
    event = tmp_path / "batch.json"
    event.write_text(json.dumps({"Items": items, "BatchInput": {"bucket": bucket}}))
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL_S3": moto_s3,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(event)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.split("SUMMARY ", 1)[1])
    assert (summary["items"], summary["classified"], summary["invalid_items"]) == (ITEMS, ITEMS, 0)
    print(f"{ITEMS:,} tiny objects: {summary}")
    assert summary["memory_mb"] < MEMORY_TARGET_MB, summary
    records = 0
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="results/tiny/"):
        records += page.get("KeyCount", 0)
    assert records == ITEMS
