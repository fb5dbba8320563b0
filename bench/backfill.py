"""``make bench-backfill``: the bulk worker's throughput on this machine, and what it means at scale.

On moto's S3 server (127.0.0.1) holding the demo archive (``devtools.backfill_demo``, one copy of
the shared photos plus the awkward objects):

1. **one worker** (``bulk_handler`` in this process, model loaded once) per batch size: images/s,
   milliseconds of work per image, S3 requests per image (counted on the client);
2. **the CLI** (``imgrec backfill``) with 1 and 2 worker processes: wall-clock throughput.

Writes ``scale.md`` (the measurements, then wall time and cost for 1 M and 10 M images at
several concurrencies, with the public prices and their date) and ``scale.json`` into
``build/bench/`` (``--write-docs``: the tracked ``docs/``; ``--out``: any folder). The workers log
and emit metrics as on Lambda, into files: ``build/bench/backfill/<time>/`` keeps them with the
CLI runs' reports.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import statistics
import sys
import time
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path

from bench import output

BUCKET = "bench-archive"
# AWS public list prices, us-east-1 (x86 Lambda, S3 Standard, Step Functions Standard), as of the
# date below; check https://aws.amazon.com/lambda/pricing/, /s3/pricing/, /step-functions/pricing/.
PRICES_DATE = "2026-11-25"
PRICES = {
    "lambda_gb_second": 0.0000166667,
    "lambda_request": 0.20 / 1e6,
    "s3_get_or_head": 0.0004 / 1000,
    "s3_put_or_list": 0.005 / 1000,
    "sfn_transition": 0.025 / 1000,
}
MEMORY_GB = 2.0  # the stack's memorySize (2048 MB)
# Per image on AWS, S3 answers in tens of milliseconds instead of moto's one or two: with the
# worker's 8 I/O threads, about this much is added per image (3 requests x ~20 ms / 8 threads,
# rounded up).
AWS_S3_MS_PER_IMAGE = 10.0
TRANSITIONS_PER_BATCH = 3  # a child execution: its start, the worker task, its end (retries add)
CONCURRENCIES = (10, 100, 500, 1000)
# S3's baseline per partitioned prefix (it adds partitions under sustained load, over minutes).
PREFIX_GET_PER_SECOND, PREFIX_PUT_PER_SECOND = 5500, 3500
SIZES = (1_000_000, 10_000_000)


def serve_archive() -> tuple[object, str, list[str]]:
    from moto.server import ThreadedMotoServer

    from devtools import backfill, backfill_demo

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = backfill.client_for(endpoint)
    client.create_bucket(Bucket=BUCKET)
    keys = backfill_demo.upload(client, BUCKET, backfill_demo.archive(copies=1))
    return server, endpoint, keys


def forget_results(client) -> None:
    """Delete every record, so the next pass is a first run (with its already-answered HEADs)."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="results/"):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys, "Quiet": True})


def one_worker(endpoint: str, batch_sizes: list[int], log: Path) -> list[dict]:
    """``bulk_handler`` in this process over the whole archive, once per batch size, each a first run.
    Its Powertools logs and metrics (stdout on Lambda, about 1 MB here) go to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as file, contextlib.redirect_stdout(file), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "No application metrics to publish")  # a batch of skips
        return _one_worker(endpoint, batch_sizes)


def _one_worker(endpoint: str, batch_sizes: list[int]) -> list[dict]:
    from devtools import backfill
    from handler import config
    from handler.function import Function
    from localaws.context import LocalContext

    client = backfill.client_for(endpoint)
    requests: Counter[str] = Counter()
    client.meta.events.register("before-send.s3.*", lambda request, **_: requests.update([request.method]))
    function = Function.start(replace(config.read_settings()), s3_client=client)
    items = backfill.list_prefix(client, BUCKET, "archive/")
    rows = []
    for size in batch_sizes:
        forget_results(client)
        requests.clear()
        durations = []
        started = time.perf_counter()
        for i in range(0, len(items), size):
            event = {"Items": items[i : i + size], "BatchInput": {"bucket": BUCKET}}
            begun = time.perf_counter()
            function.bulk_handler(event, LocalContext())
            durations.append(time.perf_counter() - begun)
        seconds = time.perf_counter() - started
        rows.append(
            {
                "batch_size": size,
                "images": len(items),
                "seconds": round(seconds, 2),
                "images_per_second": round(len(items) / seconds, 1),
                "ms_per_image": round(1000 * seconds / len(items), 2),
                "batch_p50_s": round(statistics.median(durations), 3),
                "s3_requests_per_image": {m: round(n / len(items), 2) for m, n in sorted(requests.items())},
            }
        )
        print(f"batch {size}: {rows[-1]['images_per_second']} images/s", file=sys.stderr)
    return rows


def processes(endpoint: str, batch_size: int, workers: list[int], out_dir: Path) -> list[dict]:
    from devtools import backfill

    rows = []
    for count in workers:
        forget_results(backfill.client_for(endpoint))
        options = backfill.Options(
            f"s3://{BUCKET}/archive/",
            batch_size=batch_size,
            workers=count,
            endpoint_url=endpoint,
            out_dir=out_dir / f"workers-{count}",
            progress=False,
        )
        summary = backfill.run(options)
        rows.append({"workers": count, "objects": summary.objects, "seconds": summary.seconds,
                     "objects_per_second": summary.objects_per_second})  # fmt: skip
    return rows


def prefix_ceiling(get_class: float) -> float:
    """Images/s one source prefix sustains at S3's baseline: its GET-class requests (the photo's
    GET) against 5,500/s; the results prefix gets one HEAD and one PUT per image."""
    source_get = max(get_class - 1, 1)  # one of the HEADs asks the results prefix
    return min(PREFIX_GET_PER_SECOND / source_get, PREFIX_GET_PER_SECOND, PREFIX_PUT_PER_SECOND)


def projection(ms_per_image: float, batch_size: int, get_class: float, put_class: float) -> list[dict]:
    """Wall time and cost of ``SIZES`` images at ``CONCURRENCIES`` workers."""
    per_image_s = (ms_per_image + AWS_S3_MS_PER_IMAGE) / 1000
    ceiling = prefix_ceiling(get_class)
    rows = []
    for images in SIZES:
        batches = math.ceil(images / batch_size)
        compute = images * per_image_s * MEMORY_GB * PRICES["lambda_gb_second"]
        invocations = batches * PRICES["lambda_request"]
        s3 = images * (get_class * PRICES["s3_get_or_head"] + put_class * PRICES["s3_put_or_list"])
        listing = math.ceil(images / 1000) * PRICES["s3_put_or_list"]
        transitions = batches * TRANSITIONS_PER_BATCH * PRICES["sfn_transition"]
        cost = compute + invocations + s3 + listing + transitions
        for concurrency in CONCURRENCIES:
            rows.append(
                {
                    "images": images,
                    "concurrency": concurrency,
                    "hours": round(images * per_image_s / concurrency / 3600, 2),
                    "hours_one_prefix": round(images / min(concurrency / per_image_s, ceiling) / 3600, 2),
                    "s3_requests_per_second": round(concurrency / per_image_s * (get_class + put_class)),
                    "lambda_usd": round(compute + invocations, 2),
                    "s3_usd": round(s3 + listing, 2),
                    "step_functions_usd": round(transitions, 2),
                    "total_usd": round(cost, 2),
                }
            )
    return rows


def report(measured: dict) -> str:
    worker = measured["one_worker"]
    chosen = next(r for r in worker if r["batch_size"] == measured["batch_size"])
    reqs = chosen["s3_requests_per_image"]
    get_class = reqs.get("GET", 0) + reqs.get("HEAD", 0)
    put_class = reqs.get("PUT", 0)
    lines = [
        "# Classifying a whole bucket: measurements and scale",
        "",
        f"Measured by `make bench-backfill` on {measured['date']} ({measured['machine']}), moto's S3 server "
        f"on 127.0.0.1, the demo archive ({chosen['images']} objects: the shared photos and the awkward "
        "objects of `make backfill-demo`), the fp32 LiteRT MobileNetV2. Numbers from this machine, where "
        "moto's server shares the cores with the workers (two worker processes on 2 cores are hardly "
        "faster than one); the projections below say what they assume.",
        "",
        "## One worker (bulk_handler, model loaded once)",
        "",
        "| batch size | images/s | ms per image | batch p50 (s) | S3 requests per image |",
        "|---:|---:|---:|---:|---|",
    ]
    for r in worker:
        requests = ", ".join(f"{n} {m}" for m, n in r["s3_requests_per_image"].items())
        lines.append(
            f"| {r['batch_size']} | {r['images_per_second']} | {r['ms_per_image']} | "
            f"{r['batch_p50_s']} | {requests} |"
        )
    lines += [
        "",
        "Per image the worker reads its result's metadata (HEAD: already answered?), the object (one GET, "
        "its size checked from the headers before the body is read), and writes one record (PUT); an "
        "object already answered costs the HEAD alone; the listing costs one LIST per 1,000 keys.",
        "",
        f"## The CLI (`imgrec backfill`), worker processes on this machine's {measured['cores']} cores",
        "",
        "| workers | objects | seconds (incl. start-up) | objects/s |",
        "|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['workers']} | {r['objects']} | {r['seconds']} | {r['objects_per_second']} |"
              for r in measured["processes"]]  # fmt: skip
    lines += [
        "",
        f"## 1 M and 10 M images on AWS (batch size {measured['batch_size']}, 2,048 MB workers)",
        "",
        f"Assumes a Lambda worker does {chosen['ms_per_image']} ms of work per image as one worker did "
        f"here, plus {AWS_S3_MS_PER_IMAGE:.0f} ms of S3 latency not hidden by its 8 I/O threads; "
        f"{TRANSITIONS_PER_BATCH} Step Functions transitions per batch. Prices: AWS public list prices, "
        f"us-east-1, as of {PRICES_DATE} — Lambda x86 $0.0000166667 per GB-second and $0.20 per million "
        "requests; S3 Standard $0.0004 per 1,000 GET/HEAD and $0.005 per 1,000 PUT/LIST; Step Functions "
        "Standard $0.025 per 1,000 state transitions. Check the pricing pages before budgeting; free tiers "
        "are ignored.",
        "",
        "| images | concurrency | wall time (h) | one prefix at S3's baseline (h) | S3 requests/s "
        "| Lambda $ | S3 $ | Step Functions $ | total $ |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in measured["projection"]:
        lines.append(
            f"| {r['images']:,} | {r['concurrency']:,} | {r['hours']} | {r['hours_one_prefix']} | "
            f"{r['s3_requests_per_second']:,} | "
            f"{r['lambda_usd']:,} | {r['s3_usd']:,} | {r['step_functions_usd']:,} | {r['total_usd']:,} |"
        )
    lines += [
        "",
        "Cost does not depend on concurrency (the same GB-seconds and requests, sooner); wall time does. "
        "*Wall time* assumes S3 keeps up; *one prefix at S3's baseline* caps a single source prefix at "
        f"{prefix_ceiling(get_class):,.0f} images/s (its GET-class requests against 5,500/s) until S3 "
        "adds partitions. "
        f"About ${measured['projection'][0]['total_usd'] / SIZES[0] * 1000:.2f} per 1,000 images.",
        "",
        "## Where the limits are",
        "",
        "- **Lambda concurrency**: 1,000 concurrent executions per account and Region by default, shared "
        "with the API and the upload worker; `backfillMaxConcurrency` (20) keeps a backfill from starving "
        "them. Raise the quota before running at 500 or 1,000.",
        "- **S3 request rates**: 5,500 GET/HEAD and 3,500 PUT per second *per partitioned prefix*. The "
        "worker makes about "
        f"{get_class:g} GET-class and {put_class:g} PUT requests per image, so at concurrency 100 a single "
        "prefix sees the rates in the table above; S3 partitions a busy prefix over minutes and answers "
        "503 SlowDown meanwhile. SlowDown is a `TransientError`: the batch fails, the Map's Retry "
        "(backoff with jitter, 6 attempts) runs it again, answered objects are skipped. Spread an "
        "archive over several prefixes (one execution each) to go faster from the start.",
        "- **Distributed Map**: up to 10,000 parallel child executions; `ItemBatcher` input at most "
        "256 KiB per batch (`backfillMaxBatchBytes`); one execution's history is not a limit here "
        "(children are separate executions). A run that exceeds `backfillToleratedFailurePercent` fails; "
        "its `ResultWriter` manifest under `results/backfill-runs/` lists the failed batches, and a "
        "redrive runs only those.",
        "- **S3 Batch Operations**: one Lambda invocation per object (no batching), so per image it costs "
        "an invocation and a task ($0.25 per job plus $1.00 per million objects processed, same price "
        "date) and gives up the one-model-call-per-batch; choose it when you already have an S3 "
        "Inventory or CSV manifest, or want its completion report.",
        "- **Worker memory**: a batch holds at most 256 MiB of source bytes at once (larger batches are "
        "classified in parts) and decodes within `maxDecodeBytes`.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import os
    import platform
    from datetime import UTC, datetime

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--batch-size", type=int, default=50, help="the one projected (cdk.json default)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    output.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.batch_size not in args.batch_sizes:
        parser.error(f"--batch-size {args.batch_size} must be one of --batch-sizes (it is projected)")
    runs = output.BUILD / "backfill" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    server, endpoint, _ = serve_archive()
    try:
        worker = one_worker(endpoint, args.batch_sizes, runs / "one-worker.log")
        parallel = processes(endpoint, args.batch_size, args.workers, runs)
    finally:
        server.stop()
    chosen = next(r for r in worker if r["batch_size"] == args.batch_size)
    reqs = chosen["s3_requests_per_image"]
    measured = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "cores": os.cpu_count(),
        "batch_size": args.batch_size,
        "one_worker": worker,
        "processes": parallel,
        "prices": {"date": PRICES_DATE, **PRICES},
        "projection": projection(
            chosen["ms_per_image"],
            args.batch_size,
            reqs.get("GET", 0) + reqs.get("HEAD", 0),
            reqs.get("PUT", 0),
        ),
    }
    out = output.folder(args)
    (out / "scale.json").write_text(json.dumps(measured, indent=2) + "\n")
    (out / "scale.md").write_text(report(measured))
    print(f"wrote {output.shown(out / 'scale.md')} and scale.json", file=sys.stderr)
    print(f"worker logs and the CLI runs' reports: {output.shown(runs)}/", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
