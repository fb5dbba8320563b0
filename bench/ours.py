"""One backend of our service, measured in its own process (python -m bench.ours BACKEND).

Prints one JSON line: warm latency through ``api_handler`` on REST v1 events, batched
throughput through the batch path ``s3_handler`` uses (``Recognizer.classify``), peak RSS.
Before it, ``PROGRESS`` lines (one per step of each measurement) from which ``bench.run`` draws
a progress bar per measurement. ``bench.run`` runs it under ``bench.shape``'s harness: before every
event (timed or warm-up) it calls ``between_events()``, so the function is frozen between events as
on Lambda, and work done after an answer is paid for by the next event, not hidden.

    python -m bench.ours BACKEND PORTRAIT.jpg TWELVE_MP.jpg [--quick]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from bench import sandbox
from bench.figures import peak_rss_mb, percentiles, progress
from bench.shape import between_events


def warm_latency(handler, body: bytes, runs: int, measurement: str) -> dict[str, float]:
    from localaws.context import LocalContext
    from localaws.events import rest_event

    event = rest_event("POST", "/predict", body=body, headers={"Content-Type": "image/jpeg"})
    context = LocalContext()
    step = progress(measurement, runs)
    for _ in range(3):
        between_events()
        assert handler(event, context)["statusCode"] == 200
    samples = []
    for _ in range(runs):
        between_events()
        started = time.perf_counter()
        handler(event, context)
        samples.append(time.perf_counter() - started)
        step()
    return percentiles(samples)


def throughput(recognizer, batch_size: int, body: bytes, rounds: int) -> float:
    images = [body] * batch_size
    step = progress(f"throughput, batch {batch_size}", rounds, "batch")
    between_events()
    recognizer.classify(images, 5)
    seconds = 0.0
    for _ in range(rounds):
        between_events()
        started = time.perf_counter()
        recognizer.classify(images, 5)
        seconds += time.perf_counter() - started
        step()
    return round(batch_size * rounds / seconds, 1)


def main(backend: str, portrait_path: str, large_path: str, quick: bool) -> None:
    import os

    os.environ["MODEL_BACKEND"] = backend
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    from handler import app

    small, large = Path(portrait_path).read_bytes(), Path(large_path).read_bytes()
    runs = 30 if quick else 200
    result = {
        "backend": backend,
        "warm_small": warm_latency(app.api_handler, small, runs, "warm, 600×512 JPEG"),
        "warm_12mp": warm_latency(app.api_handler, large, max(10, runs // 4), "warm, 12 MP JPEG"),
        "throughput": {
            str(n): throughput(app.function.runtime.recognizer, n, small, 2 if quick else max(3, 96 // n))
            for n in (1, 8, 32)
        },
        "peak_rss_mb": peak_rss_mb(),
    }
    if backend == "litert":
        photos = {"600x512": small, "12mp": large}
        result["sandbox"] = sandbox.measure(app, photos, quick, progress)
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], "--quick" in sys.argv)
