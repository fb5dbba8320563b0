"""``make hostile``: what each hostile input costs the function, measured as Lambda runs it.

Every input of ``tests.corpora.hostile`` (the bombs, the format tricks, and the worst files that still
pass, one per format), the misbehaving decoder doubles (``tests.corpora.decode_doubles``: a decoder that
sleeps, one that spins, one that allocates without bound, one that segfaults, one that tries to
escape its worker) and the worst batch requests go through
``api_handler`` as a REST v1 and as an HTTP v2 event, in a fresh process each (a cold start, as a
new execution environment would serve it), with the decode sandbox at its default settings. Each
process runs in Lambda's shape (``bench.shape``): the stack's CPU share (``--vcpu``) for it and
every process it starts, the whole tree frozen between its two events. For each: the answer, each
request's time, and the function's peak memory: this process's peak RSS plus the sandbox's (the
zygote, and every worker counted at the busiest worker's peak, as if all had peaked at once: an
upper bound). The photos at the limits, which must classify, run a second time beside two
CPU-busy processes (outside the function's cgroup, competing for the machine's cores).

Writes the "Hostile inputs" section of ``reliability.md`` and ``hostile.json`` into
``build/bench/`` (``--write-docs``: the tracked ``docs/``; ``--out``: any folder); exits 1 if a
request takes over 2 s (a batch over 5 s; on the idle pass; a decoder that sleeps: over the
request's wall-clock end plus a second), answers 5xx, refuses a photo that must classify (either
pass), or the function's peak reaches 1 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import output, shape
from bench.photos import REPO
from bench.shape import Harness, between_events
from handler.contract import Defaults
from localaws.events import multipart_body
from tests.corpora import decode_doubles, hostile

REQUEST_TARGET_S = 2.0
BATCH_TARGET_S = 5.0
# A decoder that sleeps uses no CPU: only the wall-clock liveness bounds stop it (an image's
# DECODE_WALL_MS, a request's DECODE_REQUEST_DEADLINE_MS), plus a second for the rest of the request.
SLEEPING = ("double-hang", "batch-16-hang")
LIVENESS_TARGET_S = Defaults.DECODE_REQUEST_DEADLINE_MS / 1000 + 1.0
PEAK_TARGET_MB = 1024
START, END = "<!-- hostile:start -->", "<!-- hostile:end -->"
DEFAULT_MEMORY_MB = Defaults.DECODE_MEMORY_MB
DEFAULT_CPU_MS = Defaults.DECODE_CPU_MS
DEFAULT_REQUEST_CPU_MS = Defaults.DECODE_REQUEST_CPU_MS
MUST_CLASSIFY = "at the limit: must classify"
BUSY_PROCESSES = 2  # the second pass of the photos at the limits: CPU-busy processes beside the function


@dataclass(frozen=True)
class Case:
    name: str
    what: str
    body: Callable[[], tuple[bytes, str]]
    single: bool  # one image, or a batch request (its own time target)
    must_classify: bool = False  # a refusal is a failure


def _single(build: Callable[[], bytes], content_type: str) -> Callable[[], tuple[bytes, str]]:
    return lambda: (build(), content_type)


def _batch(build: Callable[[], bytes], count: int, content_type: str) -> Callable[[], tuple[bytes, str]]:
    def body() -> tuple[bytes, str]:
        data = build()
        return multipart_body([("image", f"{i}.img", data, content_type) for i in range(count)])

    return body


def _rgba_20mp() -> bytes:
    return hostile.png_at_limit(bit_depth=8, width=5_000, height=4_000)


def _json(build: Callable[[], bytes]) -> Callable[[], tuple[bytes, str]]:
    return lambda: (build(), "application/json")


BOMBS = (
    (
        "webp-lossless-16000x2500",
        "lossless WebP, 40 MP of RGBA in 1.6 KB",
        hostile.webp_lossless,
        "image/webp",
    ),
    ("png-zeros-6000x6000", "all-black RGB PNG, 108 MB of pixel data", hostile.png_zeros, "image/png"),
)
DOUBLES = (
    ("double-hang", "a decoder that never returns (test double)", lambda: decode_doubles.HANG + bytes(64)),
    ("double-allocate", "a decoder that allocates without bound (test double)",
     lambda: decode_doubles.ALLOCATE + bytes(64)),
    ("double-segfault", "a decoder that segfaults (test double)", lambda: decode_doubles.CRASH + bytes(64)),
    ("double-spin", "a decoder that spins on the CPU (test double): its CPU time stops it",
     lambda: decode_doubles.SPIN + bytes(64)),
    ("double-escape", "a subverted decoder that tries the network, fork, exec, signals (test double)",
     lambda: decode_doubles.ESCAPE + bytes(64)),
)  # fmt: skip
BATCHES = (
    ("batch-16-webp-16000x2500", "16 lossless WebPs of 40 MP", hostile.webp_lossless, 16, "image/webp"),
    ("batch-16-png-zeros-6000x6000", "16 all-black PNGs of 36 MP", hostile.png_zeros, 16, "image/png"),
    ("batch-4-png-rgba-20mp", "4 RGBA PNGs of 20 MP: each in its worker, under its cap", _rgba_20mp, 4,
     "image/png"),
    ("batch-16-hang", "16 images whose decoder never returns: the request's deadline",
     lambda: decode_doubles.HANG + bytes(64), 16, "image/jpeg"),
    ("batch-16-spin", "16 images whose decoder spins: the request's CPU budget",
     lambda: decode_doubles.SPIN + bytes(64), 16, "image/jpeg"),
    ("batch-16-allocate", "16 images whose decoder allocates without bound",
     lambda: decode_doubles.ALLOCATE + bytes(64), 16, "image/jpeg"),
    ("batch-13-tiff-16384-strips", "13 TIFFs at the strip limit (a Python turn per strip)",
     hostile.tiff_strips_at_limit, 13, "image/tiff"),
    ("batch-16-bmp-rle-at-limit", "16 RLE BMPs at the RLE limits (pure Python)",
     hostile.bmp_rle_at_limit, 16, "image/bmp"),
)  # fmt: skip


def cases() -> list[Case]:
    found = [Case(h.name, h.what, _single(h.build, h.content_type), True) for h in hostile.IMAGES]
    found += [Case(name, what, _single(build, kind), True) for name, what, build, kind in BOMBS]
    found += [
        Case(name, MUST_CLASSIFY, _single(build, kind), True, True) for name, build, kind in hostile.AT_LIMITS
    ]
    found += [Case(name, what, _single(build, "image/jpeg"), True) for name, what, build in DOUBLES]
    found += [
        Case(name, what, _batch(build, count, kind), False) for name, what, build, count, kind in BATCHES
    ]
    found.append(
        Case("json-5000-digit-integer", 'JSON {"image": 999…9}', _json(hostile.json_big_integer), False)
    )
    found.append(Case("json-100000-deep", "JSON nested 100,000 deep", _json(hostile.json_deep), False))
    return found


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory, or with ``VmHWM`` its peak (ru_maxrss would include the
    parent's: Linux keeps it across exec)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith(f"{field}:"))) / 1024


def measure_one(path: Path, content_type: str) -> dict:
    """In this (fresh) process: the cold start, then the request as REST v1 and as HTTP v2."""
    from handler import config
    from handler.function import Function
    from handler.recognition.sandbox import DecodeSandbox
    from localaws.context import LocalContext
    from localaws.events import http_event, rest_event

    settings = config.read_settings()
    function = Function.start(
        settings, sandbox=DecodeSandbox.for_settings(settings.decoding, decode_doubles.PATH)
    )
    sandbox = function.runtime.recognizer.sandbox
    data = path.read_bytes()
    result: dict = {"bytes": len(data), "workers": sandbox.size}
    for name, door in (("rest", rest_event), ("http", http_event)):
        event = door("POST", "/predict", body=data, headers={"Content-Type": content_type})
        if name == "http":
            between_events()  # the answer is out: the whole function is frozen until this event
        started = time.perf_counter()
        answer = function.api_handler(event, LocalContext())
        result[f"{name}_s"] = round(time.perf_counter() - started, 3)
        body = json.loads(answer["body"])
        codes = sorted({item.get("code", "classified") for item in body.get("results", [])})
        result[f"{name}_status"] = answer["statusCode"]
        result[f"{name}_code"] = result["code"] = body.get("code") or (
            ", ".join(codes) if codes else "classified"
        )
    peaks = sandbox.peaks_kb()
    parent_mb = rss_mb("VmHWM")
    worker_mb = peaks["worker"] / 1024
    result.update(
        {
            "parent_peak_mb": round(parent_mb, 1),
            "zygote_peak_mb": round(peaks["zygote"] / 1024, 1),
            "worker_peak_mb": round(worker_mb, 1),
            "function_peak_mb": round(parent_mb + peaks["zygote"] / 1024 + sandbox.size * worker_mb, 1),
            "workers_replaced": sandbox.replaced,
        }
    )
    sandbox.close()
    return result


def run_all(selected: list[Case], harness: Harness, label: str = "") -> list[dict]:
    """Each case in a fresh process in ``harness``: its measurements, one row each."""
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for index, case in enumerate(selected, 1):
            body, content_type = case.body()
            path = Path(folder) / case.name
            path.write_bytes(body)
            print(f"{label}[{index}/{len(selected)}] {case.name} ({len(body):,} bytes)", flush=True)
            command = [
                sys.executable,
                "-m",
                "bench.hostile",
                "--one",
                str(path),
                "--content-type",
                content_type,
            ]
            env = {**os.environ, "POWERTOOLS_LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"}
            printed = harness.run(
                command, cwd=REPO, capture_output=True, text=True, timeout=600, env=env
            ).stdout
            measured = json.loads(printed.strip().splitlines()[-1])
            row = {
                "name": case.name,
                "what": case.what,
                "single": case.single,
                "must_classify": case.must_classify,
            }
            rows.append({**row, **measured})
    return rows


def misses(row: dict, timed: bool = True) -> list[str]:
    """What this row misses of the targets (empty: all met); ``timed=False``: not its times."""
    limit = REQUEST_TARGET_S if row["single"] else BATCH_TARGET_S
    if row["name"] in SLEEPING:
        limit = LIVENESS_TARGET_S
    doors = ("rest", "http")
    found = [f"{door} {row[f'{door}_s']} s" for door in doors if timed and row[f"{door}_s"] > limit]
    found += [f"{door} {row[f'{door}_status']}" for door in doors if row[f"{door}_status"] >= 500]
    found += [
        f"{door} refused ({row[f'{door}_status']} {row[f'{door}_code']}), must classify"
        for door in doors
        if row.get("must_classify") and row[f"{door}_status"] != 200
    ]
    if row["function_peak_mb"] >= PEAK_TARGET_MB:
        found.append(f"peak {row['function_peak_mb']} MB")
    return found


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| input | what | answer | REST v1 | HTTP v2 | function peak | function / worker peak | replaced |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        answer = f"{r['rest_status']} {r['rest_code']}"
        if (r["http_status"], r["http_code"]) != (r["rest_status"], r["rest_code"]):
            answer += f"; HTTP v2: {r['http_status']} {r['http_code']}"
        lines.append(
            f"| `{r['name']}` | {r['what']} | {answer} | {r['rest_s'] * 1000:.0f} ms | "
            f"{r['http_s'] * 1000:.0f} ms | {r['function_peak_mb']:.0f} MB | "
            f"{r['parent_peak_mb']:.0f} / {r['worker_peak_mb']:.0f} MB | {r['workers_replaced']} |"
        )
    return lines


def all_misses(rows: list[dict], busy_rows: list[dict]) -> dict[str, list[str]]:
    """Every row that misses a target, by name: the busy pass is judged on its answers and memory."""
    missed = {r["name"]: misses(r) for r in rows if misses(r)}
    busy = f" (beside {BUSY_PROCESSES} busy processes)"
    missed.update({r["name"] + busy: misses(r, timed=False) for r in busy_rows if misses(r, timed=False)})
    return missed


def section(rows: list[dict], busy_rows: list[dict], date: str, harness: Harness) -> str:
    working = [r for r in rows if r["name"] not in SLEEPING]
    worst_single = max((max(r["rest_s"], r["http_s"]) for r in working if r["single"]), default=0.0)
    worst_batch = max((max(r["rest_s"], r["http_s"]) for r in working if not r["single"]), default=0.0)
    worst_sleep = max((max(r["rest_s"], r["http_s"]) for r in rows if r["name"] in SLEEPING), default=0.0)
    worst_peak = max(r["function_peak_mb"] for r in rows + busy_rows)
    missed = all_misses(rows, busy_rows)
    must = [r for r in rows + busy_rows if r.get("must_classify")]
    refused = [r for r in must if r["rest_status"] != 200 or r["http_status"] != 200]
    workers = rows[0]["workers"] if rows else 0
    lines = [
        START,
        f"## Hostile inputs (`make hostile`, {date})",
        "",
        "Each input through `api_handler` as a REST v1 and as an HTTP v2 event, in a fresh process",
        f"(a cold start, as a new Lambda execution environment) on a {os.cpu_count()}-core machine, in",
        f"Lambda's shape (`bench/shape.py`): {harness.describe()}. The decode sandbox's defaults:",
        f"{workers} workers (a fresh one per image), each capped at {DEFAULT_MEMORY_MB} MB of address space",
        f"and {DEFAULT_CPU_MS} ms of CPU time per image; a request's images together, a CPU budget of",
        f"{DEFAULT_REQUEST_CPU_MS} ms.",
        "*function peak* bounds the whole function's memory: the function's peak RSS (the model",
        "included) + the zygote's + every worker at the busiest worker's peak. The structure walk's",
        "limits and why: `handler/recognition/formats.py`; the sandbox: `handler/recognition/sandbox.py`.",
        "",
        *table(rows),
    ]
    if busy_rows:
        lines += [
            "",
            f"### At the limits, beside {BUSY_PROCESSES} CPU-busy processes",
            "",
            f"The photos at the limits again, each while {BUSY_PROCESSES} processes spin on the CPU outside",
            "the function's cgroup, competing with it for the machine's cores: the function gets less than",
            "its quota, so these times are reported, not judged; every photo must still classify.",
            "",
            *table(busy_rows),
        ]
    lines += [
        "",
        f"Slowest single-image request {worst_single * 1000:.0f} ms "
        f"(target ≤ {REQUEST_TARGET_S * 1000:.0f} ms), "
        f"slowest batch {worst_batch * 1000:.0f} ms (target ≤ {BATCH_TARGET_S * 1000:.0f} ms), "
        f"a decoder that sleeps stopped in {worst_sleep * 1000:.0f} ms (the liveness bound: target ≤ "
        f"{LIVENESS_TARGET_S * 1000:.0f} ms), "
        f"largest function peak {worst_peak:.0f} MB (target < {PEAK_TARGET_MB} MB), no 5xx, "
        f"{len(must) - len(refused)} of {len(must)} photos at the limits classified "
        f"(target: all, on both passes): "
        f"**{'met' if not missed else 'MISSED: ' + json.dumps(missed, ensure_ascii=False)}**.",
        "",
        "The arithmetic: every image decodes in a fresh worker of its own, at most `DECODE_WORKERS` at a",
        "time, each for at most `DECODE_CPU_MS` of CPU time, a request's images together for at most",
        "`DECODE_REQUEST_CPU_MS` of CPU time (the request's CPU budget; wall-clock bounds, `DECODE_WALL_MS`",
        "and `DECODE_REQUEST_DEADLINE_MS`, only catch a decoder that sleeps or blocks), so a busy machine",
        "slows a photo down but cannot get it refused. A worker's memory cannot pass `DECODE_MEMORY_MB`",
        "(the kernel refuses its allocations), so the function's memory is at most its own + the zygote's",
        "+ `DECODE_WORKERS` × `DECODE_MEMORY_MB`. The stack sets them from the function's memory size",
        '(docs/settings.md, "Environment variables (the function)").',
        END,
    ]
    return "\n".join(lines)


def write_section(text: str, document: Path) -> None:
    """Replace (or append) the hostile section of ``reliability.md``; the rest is ``make load``'s (a
    new ``document`` starts from the tracked one, so it reads as ``docs/`` would)."""
    tracked = output.DOCS / document.name
    current = next((d.read_text() for d in (document, tracked) if d.is_file()), "# Reliability\n")
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    updated = (
        pattern.sub(lambda _: text, current) if START in current else current.rstrip() + "\n\n" + text + "\n"
    )
    document.write_text(updated)


def existing_section(document: Path) -> str:
    """The hostile section already in ``document`` (``make load`` keeps it when rewriting the file)."""
    text = document.read_text() if document.is_file() else ""
    match = re.search(re.escape(START) + ".*?" + re.escape(END), text, re.DOTALL)
    return match.group(0) if match else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    output.add_arguments(parser)
    parser.add_argument("--only", nargs="*", help="case names to run (default: all; then nothing is written)")
    shape.add_arguments(parser)
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--content-type", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(args.one, args.content_type)))
        return 0
    selected = [c for c in cases() if not args.only or c.name in args.only]
    with Harness.from_args(args) as harness:
        rows = run_all(selected, harness)
        with shape.busy_processes(BUSY_PROCESSES):
            label = f"beside {BUSY_PROCESSES} busy processes "
            busy_rows = run_all([c for c in selected if c.must_classify], harness, label)
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = section(rows, busy_rows, date, harness)
    print(text)
    missed = all_misses(rows, busy_rows)
    if not args.only:
        out = output.folder(args)
        write_section(text, out / "reliability.md")
        report = {
            "date": date,
            "harness": harness.info(),
            "cases": rows,
            "cases_beside_busy_processes": busy_rows,
        }
        (out / "hostile.json").write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {output.shown(out / 'reliability.md')} (its hostile section) and hostile.json")
    else:
        print("--only: a partial run, nothing written")
    if missed:
        print(
            f"MISSED ({len(missed)}): "
            + "; ".join(f"{name}: {', '.join(why)}" for name, why in missed.items())
        )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
