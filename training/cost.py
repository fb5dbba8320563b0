"""A model's cost, measured where it is made and recorded in its manifest (field ``cost``).

A model directory whose files match their sha256 pins can still be unfit to serve: one extra
convolution makes every photo take seconds, a wide layer makes a batch take gigabytes. So the cost is
part of the model's contract, measured by ``make model`` and ``imgrec train`` (and ``python -m
training.cost DIR`` for a directory made otherwise) the way the function runs the model: the
serving classifier (``handler.recognition.model.load_classifier``, LiteRT) in a fresh process, so
its peak memory and load time are the model's, not the builder's (TensorFlow alone holds a GB).

Recorded: CPU time (the work, whatever the machine's share; wall time beside it) per image at batch
1 and at the largest batch a request may carry, the process's peak memory at that batch, and the
cold start's load. ``infra/model_cost.py`` turns it into what the function will need on Lambda and
refuses at synth a model that cannot fit; the pre-traffic gate (``hooks/pre_traffic.py``) holds the
deployed version to it, because a manifest is written by whoever made the directory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from handler.contract import Defaults
from handler.recognition import manifest as model_manifest
from layers.model import manifest_writer

# The batch the function's largest request carries (MAX_IMAGES_PER_REQUEST's default): LiteRT runs
# it in chunks of 8 (``LiteRTBackend.CHUNK``), so any larger batch needs the same memory and time in
# proportion to its images.
LARGEST_BATCH = Defaults.MAX_IMAGES_PER_REQUEST
# The interpreter's threads: Lambda shows 2 cores up to 3,538 MB, and the function uses them all.
THREADS = 2
SINGLE_RUNS = 5  # batch-1 calls whose median is recorded (the first warm call is not representative)
MEASURE_TIMEOUT_S = 600.0


class CostError(RuntimeError):
    """The model could not be measured (it failed to load or to run)."""


def peak_mb() -> float:
    """This process's peak resident memory since it started its interpreter (MB): the kernel's
    ``VmHWM``. Not ``ru_maxrss``: Linux carries it across exec, so a process started by a builder
    that holds TensorFlow would report the builder's gigabyte."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # not Linux


def _timed(work) -> tuple[float, float]:
    """(wall ms, CPU ms of this process, every thread) of ``work()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def _measure_here(model_dir: Path, largest_batch: int, threads: int) -> dict:
    """In the measuring process: load as the function does, then time batch 1 and the largest."""
    from handler.recognition.model import load_classifier

    holder: dict = {}
    load_ms, load_cpu_ms = _timed(lambda: holder.update(c=load_classifier(model_dir, "litert", threads)))
    classifier = holder["c"]
    rng = np.random.default_rng(0)
    shape = classifier._backend.input_shape
    dtype = classifier._backend.input_dtype  # uint8 pixels (the model scales them)
    one = rng.integers(0, 256, (1, *shape)).astype(dtype)
    singles = [_timed(lambda: classifier.classify(one, top_k=1)) for _ in range(SINGLE_RUNS)]
    batch = rng.integers(0, 256, (largest_batch, *shape)).astype(dtype)
    batch_ms, batch_cpu_ms = _timed(lambda: classifier.classify(batch, top_k=1))
    return {
        "measured_with": {
            "threads": threads,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(),
        },
        "load_ms": round(load_ms, 1),
        "load_cpu_ms": round(load_cpu_ms, 1),
        "image_ms": round(statistics.median(ms for ms, _ in singles), 2),
        "image_cpu_ms": round(statistics.median(cpu for _, cpu in singles), 2),
        "largest_batch": largest_batch,
        "batch_ms_per_image": round(batch_ms / largest_batch, 2),
        "batch_cpu_ms_per_image": round(batch_cpu_ms / largest_batch, 2),
        "peak_mb": peak_mb(),
    }


def measure(model_dir: Path, largest_batch: int = LARGEST_BATCH, threads: int = THREADS) -> dict:
    """The cost of serving ``model_dir``, measured in a fresh process (see the module's doc)."""
    command = [
        sys.executable,
        "-m",
        "training.cost",
        str(model_dir),
        "--batch",
        str(largest_batch),
        "--threads",
        str(threads),
        "--print",
    ]
    environ = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    root = Path(__file__).resolve().parent.parent
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), environ.get("PYTHONPATH")]))
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=MEASURE_TIMEOUT_S, env=environ, check=False
        )
    except subprocess.TimeoutExpired:
        raise CostError(f"{model_dir}: measuring its cost took over {MEASURE_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no output"])[-1]  # the exception, not its traceback
        raise CostError(f"{model_dir}: its cost could not be measured: {why[-600:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def record(model_dir: Path, largest_batch: int = LARGEST_BATCH) -> dict:
    """Measure ``model_dir`` and write the figures into its manifest's ``cost``; the manifest."""
    fields = model_manifest.read(model_dir)
    fields["cost"] = measure(model_dir, largest_batch)
    files = list(fields.pop("files"))
    return manifest_writer.write(model_dir, fields, files)


def summary(cost: dict) -> str:
    """One line for a person: what the model costs on this machine."""
    return (
        f"cost on this machine ({cost['measured_with']['threads']} threads): "
        f"{cost['image_cpu_ms']:.1f} ms CPU per photo, {cost['batch_cpu_ms_per_image']:.1f} ms per image "
        f"at batch {cost['largest_batch']}, peak {cost['peak_mb']:.0f} MB, load {cost['load_ms']:.0f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure a model directory's cost into its manifest.")
    parser.add_argument("model_dir", type=Path)
    parser.add_argument(
        "--batch", type=int, default=LARGEST_BATCH, help="the largest batch a request carries"
    )
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--print", action="store_true", help="measure in this process and print the JSON")
    args = parser.parse_args(argv)
    if args.print:
        print(json.dumps(_measure_here(args.model_dir, args.batch, args.threads)))
        return 0
    manifest = record(args.model_dir, args.batch)
    print(f"{args.model_dir}: {summary(manifest['cost'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
