"""``make load``: the local server under load from a second process, then ``reliability.md``.

Starts ``imgrec serve`` on 127.0.0.1, warms it up, then sends a bounded mix of good and
bad requests (2,000 requests, 16 at a time) and records throughput, latency, every status that
was not the one expected, and the server's RSS before and after. The server, and every process it
starts, runs under ``bench.shape``'s CPU quota (``--vcpu``, the stack's share by default); it is not
frozen between events, since with 16 requests at a time there is no "between". Writes
``reliability.md`` (the hostile section ``make hostile`` wrote is kept) and ``reliability.json``
into ``build/bench/`` (``--write-docs``: the tracked ``docs/``; ``--out``: any folder).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import requests

from bench import output, shape
from bench.hostile import existing_section
from bench.photos import REPO, portrait
from bench.shape import Harness
from devtools.fixtures import png_header

CAT = REPO.parent / "shared" / "images" / "cat.bmp"


def mix() -> list[tuple[str, dict, int]]:
    """(name, request keyword arguments, expected status), cycled through in order."""
    photo = portrait()
    cat = CAT.read_bytes() if CAT.is_file() else photo
    jpeg = {"Content-Type": "image/jpeg"}
    return [
        ("multipart photo", {"files": {"image": ("g.jpg", photo, "image/jpeg")}}, 200),
        ("raw BMP", {"data": cat, "headers": {"Content-Type": "image/bmp"}}, 200),
        ("JSON base64", {"json": {"image": base64.b64encode(photo).decode()}}, 200),
        ("raw photo, top_k=3", {"data": photo, "headers": jpeg, "params": {"top_k": "3"}}, 200),
        ("text body", {"data": b"hello", "headers": {"Content-Type": "text/plain"}}, 415),
        ("truncated JPEG", {"data": photo[:20_000], "headers": jpeg}, 422),
        ("bad top_k", {"data": photo, "headers": jpeg, "params": {"top_k": "abc"}}, 400),
        ("pixel bomb", {"data": png_header(50_000, 50_000), "headers": {"Content-Type": "image/png"}}, 413),
        ("empty body", {"data": b"", "headers": jpeg}, 400),
        ("unknown route", {"path": "nope"}, 404),
    ]


def rss_mb(pid: int) -> float:
    """The resident memory of the server and of its execution environments (its child processes,
    one function and model each); the decode sandboxes' workers below them are recycled by design
    and not counted."""
    tasks = Path(f"/proc/{pid}/task").glob("*/children")  # each thread's children (any thread may start one)
    children = [child for task in tasks for child in task.read_text().split()]
    kilobytes = 0
    for process in [pid, *map(int, children)]:
        status = Path(f"/proc/{process}/status").read_text()
        kilobytes += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return round(kilobytes / 1024, 1)


def start_server(harness: Harness) -> tuple[subprocess.Popen, str]:
    """``imgrec serve --port 0`` under ``harness``'s CPU quota, never frozen: the OS picks the port;
    the line the server prints when it listens gives the URL (awaited, not polled). Its output is
    drained afterwards so it never blocks."""
    env = {**os.environ, "POWERTOOLS_LOG_LEVEL": "WARNING", "TF_CPP_MIN_LOG_LEVEL": "2"}
    server = harness.popen(
        [sys.executable, "-m", "devtools", "serve", "--port", "0"],
        events=False, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    for line in server.stdout:
        found = re.search(r"Demo page and API on (http://\S+)", line)
        if found:
            threading.Thread(target=server.stdout.read, daemon=True).start()
            return server, found.group(1)
    raise SystemExit("the local server did not start")


def run(total: int, concurrency: int, harness: Harness) -> dict:
    server, base = start_server(harness)
    local = threading.local()
    requests_mix = mix()

    def send(index: int) -> tuple[str, int, int, float]:
        name, kwargs, expected = requests_mix[index % len(requests_mix)]
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        kwargs = dict(kwargs)
        path = kwargs.pop("path", "predict")
        method = session.get if path == "nope" else session.post
        started = time.perf_counter()
        response = method(base + path, timeout=60, **kwargs)
        elapsed = time.perf_counter() - started
        json.loads(response.content)  # every answer must be JSON
        return name, expected, response.status_code, elapsed

    try:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(send, range(len(requests_mix) * 10)))  # warm-up
            rss_before = rss_mb(server.pid)
            started = time.perf_counter()
            results = list(pool.map(send, range(total)))
            wall = time.perf_counter() - started
        rss_after = rss_mb(server.pid)
        alive = server.poll() is None
    finally:
        server.terminate()
        server.wait(timeout=30)

    latencies = sorted(r[3] for r in results)
    unexpected = Counter(
        f"{name}: got {got}, expected {want}" for name, want, got, _ in results if got != want
    )
    return {
        "requests": total,
        "concurrency": concurrency,
        "seconds": round(wall, 2),
        "throughput_rps": round(total / wall, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))] * 1000, 1),
        "statuses": dict(Counter(str(r[2]) for r in results)),
        "unexpected": dict(unexpected),
        "rss_before_mb": rss_before,
        "rss_after_mb": rss_after,
        "rss_growth_pct": round(100 * (rss_after - rss_before) / rss_before, 1),
        "server_alive": alive,
        "mix": [name for name, _, _ in requests_mix],
        "harness": {
            **harness.info(),
            "frozen_between_events": False,
            "described": harness.describe(frozen=False),
        },
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def report(load: dict) -> str:
    unexpected = sum(load["unexpected"].values())
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(load["statuses"].items()))
    return f"""# Reliability

How the service is shown to answer every kind of garbage correctly, survive load, and run under
the real AWS runtime client. Everything here runs in `make test`, except the long runs noted.

| check | where | result |
| --- | --- | --- |
| bad-input corpus: {{corpus}} generated cases (bombs, truncations, odd modes, bad base64, bad JSON, wrong types, `top_k`…) through REST v1 and HTTP v2 events | `tests/corpora/corpus.py`, `tests/handler/http/test_bad_inputs.py` | each gets its status and error code; no 5xx, no trace |
| property-based fuzzing of bodies, content types, headers, query strings, base64 flags | `tests/handler/http/test_fuzz.py` | 150 examples per `make test`; `make fuzz` runs 10,000 |
| the real `awslambdaric` (the image's bootstrap) on a local Runtime API: fixtures, an oversized event, bad input, an init failure, the S3 entry point | `tests/localaws/test_runtime_api.py` | every answer as expected; RSS flat (< 10 %) over 200 invocations |
| S3 faults on moto: object deleted before the read, a bucket policy denying reads, an endpoint dropping the connection | `tests/handler/records/test_s3_faults.py` | result, error record or retry for each; the retry succeeds |
| no stack trace or internal path in any answer; `nosniff` on every answer; no image bytes in logs | `tests/handler/http/test_bad_inputs.py`, `test_api.py` | asserted |
| least-privilege IAM (S3 actions scoped to the two prefixes; the API function has none) | `tests/infra/test_stack.py` | asserted |
| decoder bombs and the worst file that still passes, per format; JSON and multipart edge cases; the memory budget | `tests/corpora/hostile.py`, `tests/handler/recognition/test_hostile.py`, `make hostile` | each refused before its decoder runs (asserted), or classified; the figures are below |
| schemathesis against the local server's own `/openapi.json` (uploads on) | `tests/handler/http/test_schema_fuzz.py` | 40 examples per operation: no 5xx, every answer as documented |
| an SQS batch holding two hostile files; a redelivered batch with a message that crashes the worker | `tests/handler/records/test_s3.py` | eight results and two error records in one model call; the crashing message fails alone |

## The decode sandbox: what holds, and the arithmetic

Every image is decoded in a worker process of its own (`handler/recognition/sandbox.py`), forked
from a zygote that imported only Pillow, numpy and the decoder. What holds, and by what:

| promise | kept by | shown by (`tests/handler/recognition/test_sandbox.py`) |
| --- | --- | --- |
| a worker never serves two callers (an API request, an S3 object, a Map item, a Batch Operations task) | each worker decodes **one image**, then is killed with its process group; spares are fresh forks | the `PLANT` double (a subverted worker that lies about every later image) changes none of the next 30 API answers, and no other object's record in an SQS batch, a Map batch or a Batch Operations job |
| no state leaks between images | the same: nothing a decoder leaves (a HEIC's 70 MB of address space, a planted exploit) outlives its image | the `PLANT` tests above; every test that follows a double with a photo |
| CPU: an image costs at most `DECODE_CPU_MS` (1.5 s) of CPU | the function reads the worker's CPU time from `/proc/PID/stat` every 20 ms; the kernel's `RLIMIT_CPU` (the next whole second: SIGXCPU, then SIGKILL) backs it | a double that spins is stopped by its CPU time; four "slow but legitimate" photos (200 ms of CPU each, cap 300 ms) classify beside two CPU-busy processes and on half a CPU (a cgroup quota) shared by two workers |
| wall time: liveness only | `DECODE_WALL_MS`, derived: CPU cap × max(1, (workers + 1) ÷ vCPUs) × 3 + 1 s | a double that sleeps is stopped by the wall clock |
| an API request's images together | a CPU budget (`DECODE_REQUEST_CPU_MS`, 4 s) and a wall-clock end (`DECODE_REQUEST_DEADLINE_MS`, 10 s) | spinning doubles exhaust the budget; sleeping ones reach the end |
| memory: a worker's address space ≤ `DECODE_MEMORY_MB` | `RLIMIT_AS`; a native decoder (libavif, libheif, libtiff) that reports a refused allocation as a decode error answers 413 `image_too_costly`, not 422, when the image's estimated need no longer fits (`imaging._fits`) | a double that allocates without bound; a real AVIF under a cap too small for it |
| nothing runs after the answer | taking a spare asks the zygote for its successor at once (the fork overlaps the decode and the model call); `replenish` waits for it before the answer leaves | after an API answer every spare has said "ready" |
| one copy of the body | the image travels as a `memfd` (Lambda has no `/dev/shm`) that the worker maps read-only; the pixels come back into the array the model reads | — |

**The arithmetic for the stack's memory sizes** (`infra/settings.py`; vCPUs = memory ÷ 1,769 MB):

| memory | vCPUs | workers | worker cap | CPU per image | wall bound per image | a request's images |
| ---: | ---: | ---: | ---: | ---: | ---: | --- |
| 2,048 MB (default) | 1.16 | 1 | 1,536 MB | 1.5 s | 8.8 s | 4 s of CPU, 10 s of wall |
| 3,538 MB | 2.0 | 2 | 1,513 MB | 1.5 s | 7.8 s | 4 s of CPU, 10 s of wall |
| 10,240 MB | 5.79 | 6 | 1,621 MB | 1.5 s | 6.4 s | 4 s of CPU, 10 s of wall |

Memory: the function's own share (512 MB with `litert`) + the zygote (about 50 MB resident, shared
with its forks) + `DECODE_WORKERS` busy workers at their cap + as many spares (about 3.4 MB of
private memory each: they have decoded nothing yet) stays within the memory size. An SQS batch (10
objects) whose every object met its wall bound still ends within the S3 worker's timeout: the synth
checks it. A hostile API request holds the function for at most 4 s of CPU (about 3.5 s at
1.16 vCPU) plus its model call; only a decoder that sleeps (an exploit, not a file) reaches the
10 s end.

**What a subverted decoder can still do.** An exploit that runs code in a worker runs as the
function's user until its image's bound, and then dies (killed through a pidfd taken before it saw
the image, so never another process that reused its pid). Its seccomp filter
(`handler/recognition/seccomp.py`, x86_64 and aarch64) refuses sockets, fork and exec, signals,
limits and scheduling changes aimed at any other process, `setsid`/`setpgid`, ptrace,
`process_vm_*`, `memfd_create`, io_uring and bpf; its image's memfd is sealed (it cannot write or
grow it to hold memory outside its address-space cap); it cannot read or write the function's or
the zygote's memory (both non-dumpable: as a non-root user, as on Lambda; a root process, as on
these test machines, bypasses that); it sees no credentials (the zygote's environment is
allow-listed); and it speaks only through its socket, where the function reads at most a 1 KB
header and exactly the pixels, within the image's bounds, whatever rate it writes at. It can
still answer its own image wrongly, spend its image's CPU and memory, and, where the filter cannot
be installed (another architecture, an old kernel), do what any process of the function's user
can. An attack run against this sandbox (a helper with its own doubles: malformed and dripped
answers, threads spinning after the answer, a grown memfd, renicing the function, SIGSTOP,
killing the zygote, 2,000-image batches, four threads at once) found the five breaks fixed in this
version and no leak of a process or descriptor.

## Load and soak (`make load`, {load["date"]})

`imgrec serve` on 127.0.0.1 (concurrent requests in up to 4 execution environments, each a
process with its own function and model, as Lambda runs them; the RSS counts the server and all of them), driven from a second process: {load["requests"]} requests, {load["concurrency"]} at a time,
cycling through: {", ".join(load["mix"])}.

In Lambda's shape (`bench/shape.py`): {load["harness"]["described"]}. One quota for the server and
all its execution environments together (on Lambda each environment has its own), and no freezing:
with {load["concurrency"]} requests at a time there is no "between events" to freeze in.

| measure | value | target |
| --- | --- | --- |
| throughput | {load["throughput_rps"]} requests/s | |
| latency p50 / p99 (client side, queueing included) | {load["p50_ms"]} ms / {load["p99_ms"]} ms | |
| statuses | {statuses} | |
| unexpected statuses | {unexpected} | 0 |
| server RSS after warm-up → after the run | {load["rss_before_mb"]} MB → {load["rss_after_mb"]} MB ({load["rss_growth_pct"]:+} %) | growth < 10 % |
| server still running | {"yes" if load["server_alive"] else "**no**"} | yes |
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    output.add_arguments(parser)
    shape.add_arguments(parser)
    args = parser.parse_args(argv)
    with Harness.from_args(args) as harness:
        load = run(args.requests, args.concurrency, harness)
    from tests.corpora.corpus import cases

    text = report(load).replace("{corpus}", str(len(cases())))
    out = output.folder(args)
    # make hostile's part of the document: this folder's, else the tracked one's.
    kept = existing_section(out / "reliability.md") or existing_section(output.DOCS / "reliability.md")
    text = text + "\n" + kept + "\n" if kept else text
    (out / "reliability.md").write_text(text)
    (out / "reliability.json").write_text(json.dumps(load, indent=2) + "\n")
    print(text)
    print(f"wrote {output.shown(out / 'reliability.md')} and reliability.json")
    ok = not load["unexpected"] and load["rss_growth_pct"] < 10 and load["server_alive"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
