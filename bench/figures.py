"""The figures every measuring process reports (``bench.ours``, ``bench.sandbox``, ``bench.baseline``,
``bench.capture``): percentiles of timed samples, the process's peak memory, and the ``PROGRESS``
lines ``bench.run`` draws its progress bars from."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def progress(measurement: str, total: int, unit: str = "request") -> Callable[[], None]:
    """Announce a measurement of ``total`` steps; the function returned reports one step done. Lines
    on stdout, outside the timed sections: ``PROGRESS<tab>measurement<tab>unit<tab>done<tab>total``."""
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        print(f"PROGRESS\t{measurement}\t{unit}\t{done}\t{total}", flush=True)

    print(f"PROGRESS\t{measurement}\t{unit}\t0\t{total}", flush=True)
    return step


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss would include the parent's, kept across exec)."""
    status = Path("/proc/self/status").read_text()
    kilobytes = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return round(kilobytes / 1024, 1)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": round(pick(0.5) * 1000, 2), "p99_ms": round(pick(0.99) * 1000, 2), "n": len(samples)}
