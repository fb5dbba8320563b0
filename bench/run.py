"""``make bench``: our service and the tutorial's app, one run, same machine, same photos.

Writes ``benchmarks.md`` (table, machine, versions, date), ``benchmarks.json`` and
``benchmarks.png`` into ``build/bench/`` (``--write-docs``: the tracked ``docs/``, ``--out``: any
folder). Every measurement runs in a fresh process so backends do not share memory or warm caches,
and shows a progress bar (stderr). Every process, ours and the baseline, cold starts included, runs
in Lambda's shape (``bench.shape``): the same CPU quota (``--vcpu``, the stack's memory size's
share by default), and frozen between events. Nothing here asserts: the numbers are recorded, and
the report's targets say which are met and which are missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from tqdm import tqdm

from bench import output, shape
from bench.photos import REPO, portrait, twelve_megapixels
from bench.shape import Harness

FIXTURE = REPO / "events" / "api-rest-predict-multipart.json"

# From interpreter start to the first answered event: import (model load, checksum, warm-up) + answer.
COLD_OURS = f"""
import json, time
from handler import app
from localaws.context import LocalContext
result = app.api_handler(json.load(open({str(FIXTURE)!r})), LocalContext())
assert result["statusCode"] == 200
print("ANSWERED", time.time(), flush=True)
"""
COLD_BASELINE = """
import io, sys, time
from bench.baseline import create_app
client = create_app().test_client()
response = client.post("/predict", data={"image": (io.BytesIO(open(sys.argv[1], "rb").read()), "p.jpg")})
assert response.status_code == 200
print("ANSWERED", time.time(), flush=True)
"""


def environment(backend: str) -> dict[str, str]:
    env = {**os.environ, "MODEL_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.update({"POWERTOOLS_LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"})
    return env


def result_line(
    harness: Harness, command: list[str], env: dict[str, str], label: str, timeout: float = 1800
) -> dict:
    """Run a measuring process (``bench.ours``, ``bench.baseline``) in ``harness``: a progress bar
    per measurement from its ``PROGRESS`` lines, then its ``RESULT`` line. Its stderr is shown only
    if it fails."""
    bars: dict[str, tqdm] = {}
    result = None
    with tempfile.TemporaryFile("w+") as errors:
        process = harness.popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=errors, text=True)
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            for line in process.stdout:
                if line.startswith("PROGRESS\t"):
                    _, measurement, unit, done, total = line.rstrip("\n").split("\t")
                    bar = bars.get(measurement)
                    if bar is None:
                        bar = bars[measurement] = tqdm(
                            total=int(total), desc=f"{label}: {measurement}", unit=unit, mininterval=0.5
                        )
                    bar.update(int(done) - bar.n)
                    if int(done) >= int(total):
                        bar.close()
                elif line.startswith("RESULT "):
                    result = json.loads(line.removeprefix("RESULT "))
            process.wait()
        finally:
            timer.cancel()
            for bar in bars.values():
                bar.close()
            harness.sweep()  # the process, if it still runs, and whatever it left running
        if process.returncode != 0 or result is None:
            errors.seek(0)
            raise SystemExit(f"{' '.join(command)} failed:\n{errors.read()[-3000:]}")
    return result


def cold_start(harness: Harness, code: str, env: dict[str, str], runs: int, label: str, *args: str) -> float:
    """Median seconds from process start to the first answer, over ``runs`` fresh processes, each
    under ``harness``'s CPU quota."""
    samples = []
    for _ in tqdm(range(runs), desc=f"{label}: cold start", unit="process"):
        started = time.time()
        try:
            done = harness.run(
                [sys.executable, "-c", code, *args],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
        except subprocess.CalledProcessError as error:
            raise SystemExit(f"cold start run failed:\n{error.stderr[-3000:]}") from None
        if "ANSWERED" not in done.stdout:
            raise SystemExit(f"cold start run failed:\n{done.stderr[-3000:]}")
        samples.append(float(done.stdout.split("ANSWERED", 1)[1].split()[0]) - started)
    return round(statistics.median(samples), 3)


def machine() -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    versions = {
        name: metadata.version(name)
        for name in ("ai-edge-litert", "tensorflow-cpu", "keras", "pillow", "numpy")
    }
    return {
        "cpu": cpu,
        "cpus": str(len(os.sched_getaffinity(0))),
        "python": platform.python_version(),
        "os": platform.platform(),
        **versions,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def measure(quick: bool, workdir: Path, harness: Harness) -> dict:
    small, large = workdir / "portrait.jpg", workdir / "12mp.jpg"
    print("generating the 12 MP input…", file=sys.stderr, flush=True)
    small.write_bytes(portrait())
    large.write_bytes(twelve_megapixels())
    flag = ["--quick"] if quick else []
    results: dict = {
        "machine": machine(),
        "quick": quick,
        "sizes": {"12mp_bytes": large.stat().st_size},
        "harness": {**harness.info(), "described": harness.describe()},
    }
    for backend in ("litert", "keras"):
        env = environment(backend)
        results[backend] = result_line(
            harness,
            [sys.executable, "-m", "bench.ours", backend, str(small), str(large), *flag],
            env,
            backend,
        )
        results[backend]["cold_start_s"] = cold_start(harness, COLD_OURS, env, 3 if quick else 7, backend)
    env = environment("keras")
    results["baseline"] = result_line(
        harness, [sys.executable, "-m", "bench.baseline", str(small), str(large), *flag], env, "baseline"
    )
    results["baseline"]["cold_start_s"] = cold_start(
        harness, COLD_BASELINE, env, 2 if quick else 3, "baseline", str(small)
    )
    return results


def verdict(value: float, target: float, lower_is_better: bool = True) -> str:
    met = value <= target if lower_is_better else value >= target
    return "met" if met else "**missed**"


def report(results: dict) -> str:
    lite, keras, base = results["litert"], results["keras"], results["baseline"]
    rows = [
        ("warm p50, 600×512 JPEG (ms)", "warm_small", "p50_ms"),
        ("warm p99, 600×512 JPEG (ms)", "warm_small", "p99_ms"),
        ("warm p50, 12 MP JPEG (ms)", "warm_12mp", "p50_ms"),
        ("warm p99, 12 MP JPEG (ms)", "warm_12mp", "p99_ms"),
    ]
    lines = [
        "| measurement | tutorial app (baseline) | ours, `keras` | ours, `litert` | litert vs baseline |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for title, group, key in rows:
        theirs, ours = base[group][key], lite[group][key]
        lines.append(f"| {title} | {theirs} | {keras[group][key]} | {ours} | {theirs / ours:.1f}× faster |")
    lines.append(
        f"| cold start to first answer (s, median) | {base['cold_start_s']} | {keras['cold_start_s']} | "
        f"{lite['cold_start_s']} | {base['cold_start_s'] / lite['cold_start_s']:.1f}× faster |"
    )
    lines.append(
        f"| peak RSS (MB) | {base['peak_rss_mb']} | {keras['peak_rss_mb']} | {lite['peak_rss_mb']} | "
        f"{base['peak_rss_mb'] / lite['peak_rss_mb']:.1f}× smaller |"
    )
    for n in ("1", "8", "32"):
        rates = f"{keras['throughput'][n]} | {lite['throughput'][n]}"
        lines.append(f"| batch throughput, batch {n} (images/s) | – | {rates} | |")
    speedup = base["warm_small"]["p50_ms"] / lite["warm_small"]["p50_ms"]
    sandbox = lite["sandbox"]
    # The targets are ratios (to the floor, to the tutorial's app) and a cold start: absolute
    # milliseconds depend on the machine and the CPU share, and are reported above, not judged.
    checks = [
        ("ours / floor, 600×512", "≤ 1.25×", sandbox["600x512"]["request_vs_floor"], 1.25, True),
        ("ours / floor, 12 MP", "≤ 1.25×", sandbox["12mp"]["request_vs_floor"], 1.25, True),
        ("speed-up per request vs baseline, 600×512", "≥ 10×", round(speedup, 1), 10, False),
        ("LiteRT cold start, with the sandbox", "≤ 0.4 s", lite["cold_start_s"], 0.4, True),
        ("LiteRT peak RSS", "≤ 250 MB", lite["peak_rss_mb"], 250, True),
    ]
    target_lines = ["| target | goal | reached | |", "| --- | --- | ---: | --- |"]
    target_lines += [
        f"| {name} | {goal} | {value} | {verdict(value, t, low)} |" for name, goal, value, t, low in checks
    ]
    missed = [name for name, _, value, t, low in checks if verdict(value, t, low) != "met"]
    why = "\n".join(f"- **{name}**: {WHY.get(name, 'not explained yet.')}" for name in missed)
    why = (
        f"**{len(missed)} of {len(checks)} targets missed.** Where a target is missed, why:\n\n{why}"
        if missed
        else f"**Every target is met** ({len(checks)} of {len(checks)})."
    )
    m = results["machine"]
    return TEMPLATE.format(
        harness=results["harness"]["described"],
        share="every figure is for the CPU share of the stack's memory size, not for this machine's cores"
        if results["harness"]["vcpu"]
        else "**no CPU quota** in this mode: the figures are for this machine's cores, not Lambda's share",
        table="\n".join(lines),
        sandbox=sandbox_table(sandbox),
        targets="\n".join(target_lines),
        why=why,
        machine=", ".join(f"{k} {v}" for k, v in m.items() if k != "date"),
        date=m["date"],
        quick=" (quick run: fewer samples)" if results["quick"] else "",
        large_mb=round(results["sizes"]["12mp_bytes"] / 1e6, 1),
        top1=base["top1"],
    )


def sandbox_table(sandbox: dict) -> str:
    """In-process vs sandboxed decoding, side by side, same run."""
    lines = [
        "| photo | decode in-process p50 | sandboxed p50 | overhead | floor p50 | ours (request) p50 | ours / floor |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in ("600x512", "12mp"):
        s = sandbox[name]
        lines.append(
            f"| {name.replace('x', '×').replace('12mp', '12 MP')} | {s['decode_in_process_p50_ms']} ms | "
            f"{s['decode_sandboxed_p50_ms']} ms | {s['overhead_p50_ms']} ms | {s['floor_p50_ms']} ms | "
            f"{s['request_p50_ms']} ms | {s['request_vs_floor']}× |"
        )
    batch = sandbox["batch32"]
    lines += [
        "",
        f"Batch of 32 (600×512), decode + one model call: in-process decoder threads "
        f"{batch['in_process_threads_images_per_s']} images/s, the sandbox's {sandbox['workers']} workers "
        f"{batch['sandbox_images_per_s']} images/s ({batch['gain']}×).",
    ]
    return "\n".join(lines)


WHY = {
    "ours / floor, 600×512": "every request decodes in a fresh worker process (a worker never serves two "
    "callers), forked while the previous image decodes and the model runs and ready before the answer "
    "leaves. That fork, its copy-on-write page faults and its warm-up cost about 3 ms of CPU per request "
    "(CPython writes reference counts into the pages it reads, so a new process copies what its decode "
    "touches), which a function on a 1.16 vCPU share pays within its own request; the floor pays none. "
    "The rest is Powertools' routing, validation and logging (about 1.5 ms). Kept workers shared between "
    "callers were 1.3× here; that is no longer an option.",
    "ours / floor, 12 MP": "the same fork per request, reading a 3.7 MB JSON body (`json.loads`, about "
    "2.4 ms) and the image's sha256 for its prediction id (about 1.7 ms); the floor decodes the base64 "
    "string directly, in-process.",
    "speed-up per request vs baseline, 600×512": "see the ours / floor row: the fresh process per request.",
    "LiteRT cold start, with the sandbox": "importing Powertools (pydantic, the X-Ray SDK with botocore), "
    "numpy, Pillow and LiteRT, checking the model's sha256 and one warm-up inference, all within the CPU "
    "quota; the sandbox's zygote boots in parallel with those imports, and shares that quota.",
    "LiteRT peak RSS": "XNNPACK's activation arena grows with the batch; batches run in chunks of 8.",
}

TEMPLATE = """# Benchmarks

Measured by `make bench` on {date}{quick}, in one run on one machine:
{machine}.

**Lambda's shape** (`bench/shape.py`): {harness}. That holds for every process measured here,
ours and the tutorial's app, cold starts included: what a function does after its answer (forking
spare workers, cleaning up) is paid for by its next event, as on Lambda; {share}.

Inputs: `grace_hopper.jpg` (512×600, 61 KB; every implementation answers `{top1}`) and a
generated 4000×3000 JPEG ({large_mb} MB, quality 90). Ours is `handler.app.api_handler` called
with REST v1 events (multipart body decoded from base64, as API Gateway sends it); the baseline is
the tutorial's Flask app (`bench/baseline.py`: Keras MobileNetV2, `model.predict` per request,
Pillow full decode then resize) called through Flask's test client. Each column runs in its own
process; cold start is a fresh interpreter up to the first answered request (median).
Throughput is the batch path `s3_handler` uses (decode every image, one model call), S3 I/O
excluded.

![p50 latency per request](benchmarks.png)

{table}

## The decode sandbox

Every image is decoded in a fresh worker process of its own (`handler/recognition/sandbox.py`;
pre-forked spares, a worker never decodes a second image). Its cost, beside the same decode
in-process: *sandboxed* is one image through the sandbox; the spare that replaces its worker is
forked and warm (`replenish`) after the timed part and before the function is frozen, as the
function does before its answer leaves. *Floor* is the least a JSON base64 request needs (base64
decode, a `draft()` decode in-process, one model call); *ours* is `api_handler` on that request.

{sandbox}

## Targets

{targets}

{why}

Reproduce: `make bench` (about 5 minutes; `make bench BENCH_ARGS=--quick` for a smoke run).
"""


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["baseline (tutorial)", "ours: keras", "ours: litert"]
    keys = ["baseline", "keras", "litert"]
    small = [results[k]["warm_small"]["p50_ms"] for k in keys]
    large = [results[k]["warm_12mp"]["p50_ms"] for k in keys]
    figure, axis = plt.subplots(figsize=(8, 4.2), dpi=120)
    positions = range(len(names))
    axis.barh([p + 0.2 for p in positions], small, height=0.4, label="600×512 JPEG", color="#0b5cad")
    axis.barh([p - 0.2 for p in positions], large, height=0.4, label="12 MP JPEG", color="#8fb8e3")
    for position, (fast, slow) in enumerate(zip(small, large, strict=True)):
        axis.text(fast, position + 0.2, f" {fast:.1f} ms", va="center", fontsize=8)
        axis.text(slow, position - 0.2, f" {slow:.1f} ms", va="center", fontsize=8)
    axis.set_yticks(list(positions), names)
    axis.set_xlabel("warm latency per request, p50 (ms), lower is better")
    axis.set_xlim(0, max(large) * 1.2)
    axis.legend(loc="lower right")
    axis.set_title("MobileNetV2 per request: the tutorial's app vs this service")
    figure.tight_layout()
    figure.savefig(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    output.add_arguments(parser)
    shape.add_arguments(parser)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir, Harness.from_args(args) as harness:
        results = measure(args.quick, Path(workdir), harness)
    write(results, output.folder(args))
    return 0


def write(results: dict, out: Path) -> None:
    """The three files into ``out``; the report on stdout, then where it went."""
    (out / "benchmarks.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "benchmarks.md").write_text(report(results))
    chart(results, out / "benchmarks.png")
    print((out / "benchmarks.md").read_text())
    print(f"wrote {output.shown(out / 'benchmarks.md')}, benchmarks.json and benchmarks.png", flush=True)


if __name__ == "__main__":
    sys.exit(main())
