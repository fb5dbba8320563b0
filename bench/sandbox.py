"""What the decode sandbox costs, measured inside ``bench.ours`` (litert), side by side with the
same work done in-process:

- a decode alone: ``imaging.to_pixels`` in this process vs one image through the sandbox, with the
  API's kept workers and with a fresh worker per batch (stored objects, ``DECODE_FRESH_WORKERS``);
- a whole request vs its floor: ``api_handler`` on a JSON base64 body vs the least that request
  needs (base64 decode, a ``draft`` decode in-process, one model call);
- batch-32 throughput: the sandbox's workers vs the in-process decoder threads the function used
  before the sandbox (a thread pool over ``to_pixels``, then one model call).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from bench.ours import percentiles


def p50_ms(work: Callable[[], object], runs: int) -> float:
    for _ in range(3):
        work()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        samples.append(time.perf_counter() - started)
    return percentiles(samples)["p50_ms"]


def images_per_s(work: Callable[[], object], images: int, rounds: int) -> float:
    work()
    started = time.perf_counter()
    for _ in range(rounds):
        work()
    return round(images * rounds / (time.perf_counter() - started), 1)


def measure(app, photos: dict[str, bytes], quick: bool, progress) -> dict:
    """The sandbox's numbers for each photo (``{"600x512": bytes, "12mp": bytes}``)."""
    from devtools.context import LocalContext
    from devtools.events import rest_event
    from handler.recognition import imaging

    runtime = app.function.runtime
    recognizer, classifier = runtime.recognizer, runtime.recognizer.classifier
    limits = recognizer.limits()
    runs = 30 if quick else 150
    result: dict = {"workers": recognizer.sandbox.size}
    for name, data in photos.items():
        step = progress(f"sandbox, {name}", 5)
        in_process = p50_ms(lambda d=data: imaging.to_pixels(d, limits), runs)
        step()
        sandboxed = p50_ms(lambda d=data: recognizer.sandbox.decode([d], limits, fresh_workers=False), runs)
        step()
        fresh = p50_ms(lambda d=data: recognizer.sandbox.decode([d], limits, fresh_workers=True), runs)
        step()
        text = base64.b64encode(data).decode()

        def floor(text=text) -> None:
            pixels = imaging.to_array(base64.b64decode(text), limits)
            classifier.classify(pixels[np.newaxis], top_k=5)

        floor_ms = p50_ms(floor, runs)
        step()
        body = json.dumps({"image": text}).encode()
        event = rest_event("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
        request_ms = p50_ms(lambda e=event: app.api_handler(e, LocalContext()), runs)
        step()
        result[name] = {
            "decode_in_process_p50_ms": in_process,
            "decode_sandboxed_p50_ms": sandboxed,
            "decode_fresh_worker_p50_ms": fresh,
            "overhead_p50_ms": round(sandboxed - in_process, 2),
            "floor_p50_ms": floor_ms,
            "request_p50_ms": request_ms,
            "request_vs_floor": round(request_ms / floor_ms, 3),
        }
    batch = [photos["600x512"]] * 32
    rounds = 3 if quick else 10
    step = progress("sandbox, batch 32", 2, "measurement")
    with ThreadPoolExecutor(recognizer.sandbox.size) as threads:

        def before() -> None:  # the in-process decoder threads of the function before the sandbox
            pixels = list(threads.map(lambda d: imaging.to_pixels(d, limits), batch))
            classifier.classify(np.stack([imaging.scale(p) for p in pixels]), top_k=5)

        threads_rate = images_per_s(before, len(batch), rounds)
    step()
    sandbox_rate = images_per_s(lambda: recognizer.classify(batch, 5), len(batch), rounds)
    step()
    result["batch32"] = {
        "in_process_threads_images_per_s": threads_rate,
        "sandbox_images_per_s": sandbox_rate,
        "gain": round(sandbox_rate / threads_rate, 2),
    }
    return result
