"""What the decode sandbox costs, measured inside ``bench.ours`` (litert), side by side with the
same work done in-process:

- a decode alone: ``imaging.to_pixels`` in this process vs one image through the sandbox (a fresh
  worker, as every image gets; its successor is forked by ``replenish`` outside the timed part,
  before the function is frozen, as the function does before its answer leaves);
- a whole request vs its floor: ``api_handler`` on a JSON base64 body vs the least that request
  needs (base64 decode, a ``draft`` decode in-process, one model call);
- batch-32 throughput: the sandbox's workers vs the in-process decoder threads the function used
  before the sandbox (a thread pool over ``to_pixels``, then one model call).

Every event, timed or not, follows ``between_events()``: under ``bench.shape``'s harness the whole
function is frozen in between, as Lambda freezes it.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from bench.figures import percentiles
from bench.shape import between_events


def p50_ms(work: Callable[[], object], runs: int, after: Callable[[], object] = lambda: None) -> float:
    """``work``'s p50; ``after`` runs after each, untimed, before the function is frozen."""
    samples = []
    for run in range(3 + runs):
        between_events()
        started = time.perf_counter()
        work()
        if run >= 3:
            samples.append(time.perf_counter() - started)
        after()
    return percentiles(samples)["p50_ms"]


def images_per_s(work: Callable[[], object], images: int, rounds: int) -> float:
    between_events()
    work()
    seconds = 0.0
    for _ in range(rounds):
        between_events()
        started = time.perf_counter()
        work()
        seconds += time.perf_counter() - started
    return round(images * rounds / seconds, 1)


def measure(app, photos: dict[str, bytes], quick: bool, progress) -> dict:
    """The sandbox's numbers for each photo (``{"600x512": bytes, "12mp": bytes}``)."""
    from handler.recognition import imaging
    from localaws.context import LocalContext
    from localaws.events import rest_event

    runtime = app.function.runtime
    recognizer, classifier = runtime.recognizer, runtime.recognizer.classifier
    limits = recognizer.limits()
    runs = 30 if quick else 150
    sandbox = recognizer.sandbox
    result: dict = {"workers": sandbox.size}
    for name, data in photos.items():
        step = progress(f"sandbox, {name}", 4)
        in_process = p50_ms(lambda d=data: imaging.to_pixels(d, limits), runs)
        step()
        sandboxed = p50_ms(lambda d=data: sandbox.decode([d], limits), runs, after=sandbox.replenish)
        step()
        text = base64.b64encode(data).decode()

        def floor(text=text) -> None:
            pixels = imaging.to_pixels(base64.b64decode(text), limits)
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
            "overhead_p50_ms": round(sandboxed - in_process, 2),
            "floor_p50_ms": floor_ms,
            "request_p50_ms": request_ms,
            "request_vs_floor": round(request_ms / floor_ms, 3),
        }
    batch = [photos["600x512"]] * 32
    rounds = 3 if quick else 10
    step = progress("sandbox, batch 32", 2, "measurement")
    with ThreadPoolExecutor(sandbox.size) as threads:

        def before() -> None:  # the in-process decoder threads of the function before the sandbox
            pixels = list(threads.map(lambda d: imaging.to_pixels(d, limits), batch))
            classifier.classify(np.stack(pixels), top_k=5)

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
