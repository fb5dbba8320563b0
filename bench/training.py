"""``make bench-train``: what training costs on this machine (a report, never a test's assertion).

- Peak resident memory of the training process (``wait4``'s ``ru_maxrss``; the decode workers are
  processes of their own, capped by the sandbox) training on 10,000 generated photos
  (``tests.corpora.synthetic_photos``; the head phase only, on cached features: one pass of the base over
  every photo; fine-tuning streams the same batches, but would take hours on 2 cores) and on each
  shared dataset with its documented settings (both phases, int8). Goal: under 2.5 GB whatever the
  dataset's size. For scale, the float32 arrays of 10,000 photos alone are 6 GB. The pixel store
  (147 KB a photo) is a file in ``TMPDIR``: on a tmpfs it would be memory too, outside the process.
- Photos per second through the frozen-base phase on hymenoptera, 5 epochs: with the feature cache
  (the base runs once; the epochs train on features) and without (every epoch streams every photo,
  augmented, through the base).
- Wall time of ``make train-examples``: from ``models.json`` when that target ran.

Writes ``training.md`` and ``training.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import output
from bench.models import DATASETS, EXAMPLES
from bench.photos import REPO

GENERATED = 10_000
GOAL_MB = 2560


def train_process(data: Path, out: Path, *flags: str) -> dict:
    """``imgrec train`` in a process of its own: its peak RSS, its wall time, its card."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools", "train", str(data), "--out", str(out), *flags],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    printed = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"training {data} failed:\n{printed[-3000:]}")
    card = json.loads((out / "manifest.json").read_text())["card"]
    return {
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "seconds": round(time.perf_counter() - started, 1),
        "photos": card["data"]["images"],
        "phase_seconds": card["phase_seconds"],
        "train_photos": sum(c["train"] for c in card["classes"].values()),
        "epochs": len(card["history"]["head"]["loss"]),
    }


def flags_of(settings: dict) -> list[str]:
    """The documented settings as ``imgrec train`` flags (int8 included: its calibrated conversion
    is one of the run's heavier moments)."""
    return [part for key, value in settings.items() for part in (f"--{key.replace('_', '-')}", str(value))]


def measure(generated: int) -> dict:
    from tests.corpora.synthetic_photos import write_dataset

    results: dict = {"memory": {}, "throughput": {}}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        print(f"generating {generated:,} photos", flush=True)
        data = write_dataset(root / "generated", generated // 2)
        results["memory"][f"{generated:,} generated photos (head on cached features)"] = train_process(
            data, root / "generated-model", "--epochs", "1", "--fine-tune-layers", "0"
        )
        for name, (folder, settings) in EXAMPLES.items():
            print(f"training {name}", flush=True)
            results["memory"][f"{name} (documented settings)"] = train_process(
                DATASETS / folder, root / name, *flags_of(settings)
            )
        hymenoptera = DATASETS / EXAMPLES["hymenoptera"][0]
        for cache in ("--feature-cache", "--no-feature-cache"):
            run = train_process(
                hymenoptera, root / f"throughput{cache}", cache, "--epochs", "5", "--patience", "99",
                "--fine-tune-layers", "0",
            )  # fmt: skip
            photos = run["train_photos"] * run["epochs"]
            run["photos_per_second"] = round(photos / run["phase_seconds"]["head"], 1)
            results["throughput"]["with the feature cache" if cache == "--feature-cache" else "streamed"] = (
                run
            )
    return results


def train_examples_minutes(out: Path) -> float | None:
    """What ``make train-examples`` took, from its ``models.json`` beside this report (or build/)."""
    for folder in (out, output.BUILD):
        if (folder / "models.json").is_file():
            return json.loads((folder / "models.json").read_text()).get("minutes")
    return None


def markdown(results: dict) -> str:
    lines = [
        "# Training: memory and speed (`make bench-train`)",
        "",
        __doc__.split("\n\n")[1],
        "",
        "| training run | photos | peak RSS | goal | wall time |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, run in results["memory"].items():
        met = "met" if run["peak_rss_mb"] < GOAL_MB else "MISSED"
        lines.append(
            f"| {name} | {run['photos']:,} | {run['peak_rss_mb']:,} MB | < {GOAL_MB:,} MB ({met}) "
            f"| {run['seconds'] / 60:.1f} min |"
        )
    lines += [
        "",
        "| frozen-base phase, hymenoptera, 5 epochs | photos/s | phase time |",
        "| --- | ---: | ---: |",
    ]
    for name, run in results["throughput"].items():
        lines.append(f"| {name} | {run['photos_per_second']} | {run['phase_seconds']['head']} s |")
    minutes = results.get("train_examples_minutes")
    lines += ["", f"`make train-examples` wall time: {f'{minutes} min' if minutes else 'not measured yet'}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generated", type=int, default=GENERATED, help="generated photos (both classes)")
    output.add_arguments(parser)
    args = parser.parse_args(argv)
    results = measure(args.generated)
    out = output.folder(args)
    results["train_examples_minutes"] = train_examples_minutes(out)
    (out / "training.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "training.md").write_text(markdown(results))
    print(markdown(results))
    print(f"wrote {output.shown(out / 'training.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
