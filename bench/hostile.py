"""``make hostile``: what each hostile input costs the service, measured as Lambda runs it.

Every input of ``devtools.hostile`` (the bombs, and the worst files that still pass, one per
format) and the worst batch requests go through ``api_handler`` in the main thread of a fresh
process (a cold start, as a new execution environment would serve it). For each: the answer, the
decode time of the image alone, the request's time, the process's peak RSS and its RSS after.
Writes the "Hostile inputs" section of ``reliability.md`` and ``hostile.json`` into
``build/bench/`` (``--write-docs``: the tracked ``docs/``; ``--out``: any folder); exits 1 if any
decode takes over 0.5 s or any request's peak RSS reaches 1 GB.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import output
from bench.photos import REPO
from devtools import hostile
from devtools.events import multipart_body

DECODE_TARGET_S = 0.5
PEAK_TARGET_MB = 1024
START, END = "<!-- hostile:start -->", "<!-- hostile:end -->"


@dataclass(frozen=True)
class Case:
    name: str
    what: str
    body: Callable[[], tuple[bytes, str]]
    single: bool  # one image (its decode is timed alone too) or a whole request
    allocator: bool = True  # False: glibc's defaults, to show what handler.recognition.memory changes


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
BATCHES = (
    ("batch-16-webp-16000x2500", "16 lossless WebPs of 40 MP", hostile.webp_lossless, 16, "image/webp"),
    ("batch-16-png-zeros-6000x6000", "16 all-black PNGs of 36 MP", hostile.png_zeros, 16, "image/png"),
    ("batch-4-png-rgba-20mp", "4 RGBA PNGs of 20 MP: over the memory budget", _rgba_20mp, 4, "image/png"),
    ("batch-3-png-rgba-20mp", "3 RGBA PNGs of 20 MP: the most memory a request may take",
     _rgba_20mp, 3, "image/png"),
    ("batch-13-tiff-16384-strips", "13 TIFFs at the strip limit (a Python turn per strip)",
     hostile.tiff_strips_at_limit, 13, "image/tiff"),
    ("batch-16-bmp-rle-at-limit", "16 RLE BMPs at the RLE limits (pure Python)",
     hostile.bmp_rle_at_limit, 16, "image/bmp"),
)  # fmt: skip


def cases() -> list[Case]:
    found = [Case(h.name, h.what, _single(h.build, h.content_type), True) for h in hostile.IMAGES]
    found += [Case(name, what, _single(build, kind), True) for name, what, build, kind in BOMBS]
    found += [
        Case(name, "at the limit: must classify", _single(build, kind), True)
        for name, build, kind in hostile.AT_LIMITS
    ]
    found += [
        Case(name, what, _batch(build, count, kind), False) for name, what, build, count, kind in BATCHES
    ]
    found.append(
        Case(
            "batch-3-png-rgba-20mp-glibc-defaults",
            "the same, with glibc's defaults instead of `handler.recognition.memory`'s settings",
            _batch(_rgba_20mp, 3, "image/png"),
            single=False,
            allocator=False,
        )
    )
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


def measure_one(path: Path, content_type: str, single: bool, allocator: bool = True) -> dict:
    """In this (fresh) process: the cold start, one request in the main thread, then the decode alone."""
    if not allocator:
        from handler.recognition import memory

        memory.configure = lambda: False
        memory.release = lambda: None
    from devtools.context import LocalContext
    from devtools.events import rest_event
    from handler import app
    from handler.recognition import imaging
    from handler.recognition.errors import Refusal

    data = path.read_bytes()
    event = rest_event("POST", "/predict", body=data, headers={"Content-Type": content_type})
    rss_ready = rss_mb()
    started = time.perf_counter()
    answer = app.api_handler(event, LocalContext())
    request_s = time.perf_counter() - started
    peak = rss_mb("VmHWM")
    after = rss_mb()
    body = json.loads(answer["body"])
    codes = sorted({item.get("code", "classified") for item in body.get("results", [])})
    result = {
        "status": answer["statusCode"],
        "code": body.get("code") or (", ".join(codes) if codes else "classified"),
        "request_s": round(request_s, 3),
        "rss_ready_mb": round(rss_ready, 1),
        "peak_rss_mb": round(peak, 1),
        "rss_after_mb": round(after, 1),
        "bytes": len(data),
    }
    if single:
        started = time.perf_counter()
        with contextlib.suppress(Refusal):
            imaging.decode(imaging.open_image(data, app.function.runtime.recognizer.limits()))
        result["decode_s"] = round(time.perf_counter() - started, 3)
    return result


def run_all(selected: list[Case]) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for index, case in enumerate(selected, 1):
            body, content_type = case.body()
            path = Path(folder) / case.name
            path.write_bytes(body)
            print(f"[{index}/{len(selected)}] {case.name} ({len(body):,} bytes)", flush=True)
            command = [
                sys.executable,
                "-m",
                "bench.hostile",
                "--one",
                str(path),
                "--content-type",
                content_type,
            ]
            if case.single:
                command.append("--single")
            if not case.allocator:
                command.append("--glibc-defaults")
            env_quiet = {"POWERTOOLS_LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"}
            output = subprocess.run(
                command, cwd=REPO, capture_output=True, text=True, check=True, timeout=600,
                env={**__import__("os").environ, **env_quiet},
            ).stdout  # fmt: skip
            measured = json.loads(output.strip().splitlines()[-1])
            rows.append({"name": case.name, "what": case.what, **measured})
    return rows


def verdict(rows: list[dict]) -> tuple[bool, float, float]:
    worst_decode = max((r["decode_s"] for r in rows if "decode_s" in r), default=0.0)
    worst_peak = max(r["peak_rss_mb"] for r in rows)
    return worst_decode <= DECODE_TARGET_S and worst_peak < PEAK_TARGET_MB, worst_decode, worst_peak


def section(rows: list[dict], date: str) -> str:
    ok, worst_decode, worst_peak = verdict(rows)
    lines = [
        START,
        f"## Hostile inputs (`make hostile`, {date})",
        "",
        "Each input through `api_handler` in the main thread of a fresh process (a cold start, as a new",
        "Lambda execution environment), on this 2-core machine. *decode* is the image alone",
        "(`open_image` + `decode`: refusals are decided there); *request* is the whole invocation;",
        "peak RSS is the process's, model included. The limits and why: `handler/recognition/formats.py`.",
        "",
        "| input | what | answer | decode | request | peak RSS | RSS after |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        decode = f"{r['decode_s'] * 1000:.0f} ms" if "decode_s" in r else "–"
        lines.append(
            f"| `{r['name']}` | {r['what']} | {r['status']} {r['code']} | {decode} | "
            f"{r['request_s'] * 1000:.0f} ms | {r['peak_rss_mb']:.0f} MB | {r['rss_after_mb']:.0f} MB |"
        )
    lines += [
        "",
        f"Worst decode {worst_decode * 1000:.0f} ms (target ≤ {DECODE_TARGET_S * 1000:.0f} ms); "
        f"worst peak RSS {worst_peak:.0f} MB (target < {PEAK_TARGET_MB} MB): "
        f"**{'met' if ok else 'MISSED'}**.",
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
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--content-type", help=argparse.SUPPRESS)
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--glibc-defaults", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(args.one, args.content_type, args.single, not args.glibc_defaults)))
        return 0
    selected = [c for c in cases() if not args.only or c.name in args.only]
    rows = run_all(selected)
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = section(rows, date)
    print(text)
    if not args.only:
        out = output.folder(args)
        write_section(text, out / "reliability.md")
        (out / "hostile.json").write_text(json.dumps({"date": date, "cases": rows}, indent=2) + "\n")
        print(f"wrote {output.shown(out / 'reliability.md')} (its hostile section) and hostile.json")
    else:
        print("--only: a partial run, nothing written")
    return 0 if verdict(rows)[0] else 1


if __name__ == "__main__":
    sys.exit(main())
