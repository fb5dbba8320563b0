"""``make bench-capture``: what capture costs an answer (the p50 and p99 of ``POST /predict``).

The same photo answered by the same function, warm, with capture off and with ``CAPTURE_RATE=1``
(every answer stores its image and its answer: two PUTs), interleaved so both see the same machine.
S3 is moto's server on 127.0.0.1 behind the local policy proxy: a PUT there costs about what one
costs in-region (single-digit to tens of milliseconds); the capture client makes one attempt per
PUT with 1 s timeouts, within a 1 s budget per invocation (tested against a store that hangs).

Writes ``capture.md`` and ``capture.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

from bench import output
from bench.figures import percentiles
from bench.photos import REPO

PHOTO = REPO.parent / "shared" / "images" / "grace_hopper.jpg"


def measure(runs: int) -> dict:
    from tqdm import tqdm

    from handler import config
    from handler.function import Function
    from handler.recognition import model
    from handler.runtime import Runtime
    from localaws.context import LocalContext
    from localaws.events import rest_event
    from localaws.s3_stack import LocalS3

    settings = config.read_settings()
    classifier = model.load_classifier(settings.model_dir, settings.backend, settings.threads)
    local = LocalS3(bucket="capture-bench")
    try:
        functions = {
            "capture off": Function(Runtime.with_classifier(settings, classifier, local.client)),
            "CAPTURE_RATE=1": Function(
                Runtime.with_classifier(
                    dataclasses.replace(settings, uploads_bucket=local.bucket, capture_rate=1.0),
                    classifier,
                    local.client,
                )
            ),
        }
        event = rest_event(
            "POST", "/predict", body=PHOTO.read_bytes(), headers={"Content-Type": "image/jpeg"}
        )
        samples: dict[str, list[float]] = {name: [] for name in functions}
        for function in functions.values():  # warm: the model, the sandbox, the S3 connection
            for _ in range(5):
                function.api_handler(event, LocalContext())
        for _ in tqdm(range(runs), desc="answers (each way)", unit="pair"):
            for name, function in functions.items():
                started = time.perf_counter()
                answer = function.api_handler(event, LocalContext())
                samples[name].append(time.perf_counter() - started)
                assert answer["statusCode"] == 200
        stored = local.client.list_objects_v2(Bucket=local.bucket, Prefix="capture/").get("KeyCount", 0)
    finally:
        local.stop()
    figures = {name: percentiles(values) for name, values in samples.items()}
    off, on = figures["capture off"], figures["CAPTURE_RATE=1"]
    return {
        **figures,
        "p50_cost_ms": round(on["p50_ms"] - off["p50_ms"], 2),
        "objects_stored": stored,
        "runs": runs,
    }


def report(result: dict) -> str:
    lines = [
        "# What capture costs an answer (`make bench-capture`)",
        "",
        __doc__.split("\n\n")[1].replace("\n", " "),
        "",
        "| `POST /predict`, warm (grace_hopper.jpg) | p50 | p99 | answers |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name in ("capture off", "CAPTURE_RATE=1"):
        row = result[name]
        lines.append(f"| {name} | {row['p50_ms']:.1f} ms | {row['p99_ms']:.1f} ms | {row['n']} |")
    lines += [
        "",
        f"Capture adds **{result['p50_cost_ms']:.1f} ms** at the p50 of a sampled answer; at "
        f"`CAPTURE_RATE=0.05` that is about {result['p50_cost_ms'] * 0.05:.2f} ms on average. "
        f"{result['objects_stored']} objects stored (an image and an answer per captured request).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    output.add_arguments(parser)
    args = parser.parse_args(argv)
    out = output.folder(args)
    result = measure(args.runs)
    (out / "capture.json").write_text(json.dumps(result, indent=2) + "\n")
    text = report(result)
    (out / "capture.md").write_text(text)
    print(text)
    print(f"wrote {output.shown(out / 'capture.md')} and capture.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
