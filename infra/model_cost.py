"""The served model's cost against the functions it is deployed in.

``make model`` and ``imgrec train`` record what the model costs (``training/cost.py``: CPU time per
image at batch 1 and at the largest batch, peak memory, load time). Here that record becomes what
each function will need on Lambda, where the CPU share is the memory size's (1 vCPU per 1,769 MB) and
the machine may be slower than the one that measured (``modelCostHeadroom``); ``cdk synth`` refuses a
model that cannot fit, saying which limit and by how much, and the pre-traffic gate gets the same
figures to hold the deployed version to (``hooks/pre_traffic.py``), because the record is only as
honest as whoever wrote the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from handler.contract import MB_PER_VCPU
from handler.recognition import manifest

# API Gateway ends every integration at 29 s, whatever the function's timeout.
API_GATEWAY_MS = 29_000
# Lambda's init phase (imports, the model's load, the sandbox) must end within 10 s.
INIT_LIMIT_MS = 10_000
# What the function holds beside what ``training.cost`` measures (the model in a bare process):
# Powertools, pydantic, the API's routes, the decode sandbox's zygote and spare workers. Measured:
# 138 MB bare, 223 MB peak for the whole function (``make bench``).
FUNCTION_MB = 128
MAX_VCPUS = 6
# What a decode worker and the zygote hold while they decode a check photo (well under their cap).
DECODE_WORKER_MB = 48
MOST = 1e7  # any recorded figure above this (ms or MB: hours, terabytes) is a broken record


@dataclass(frozen=True)
class Need:
    """What the recorded model needs on this deployment's functions."""

    image_ms: float  # one photo's model time
    batch_image_ms: float  # each image's, at the largest batch
    peak_mb: float  # the function's peak memory at the largest batch, decode workers aside
    load_ms: float  # the cold start's model load

    def batch_ms(self, images: int) -> float:
        return self.batch_image_ms * images


def recorded(model_dir: Path) -> dict:
    """The manifest's ``cost``; a ``ValueError`` that says how to measure it when there is none, or
    what is wrong with it (each figure a finite, non-negative number of sane size, not a bool)."""
    fields = manifest.read(model_dir)
    cost = fields.get("cost")
    keys = ("image_cpu_ms", "batch_cpu_ms_per_image", "peak_mb", "load_cpu_ms")
    if not isinstance(cost, dict) or not all(k in cost for k in keys):
        raise ValueError(
            f"{model_dir}: its manifest records no cost (field 'cost' with {', '.join(keys)}): measure it "
            f"with `python -m training.cost {model_dir}` (make model and imgrec train do it)"
        )
    for key in keys:
        value = cost[key]
        try:
            sane = not isinstance(value, bool) and 0 <= float(value) <= MOST
        except (TypeError, ValueError, OverflowError):
            sane = False
        if not sane:
            raise ValueError(
                f"{model_dir}: its manifest's cost.{key} is {str(value)[:40]!r}: a figure is a number from 0 "
                f"to {MOST:g}; measure it again with `python -m training.cost {model_dir}`"
            )
    return {**cost, **{key: float(cost[key]) for key in keys}}


def vcpus(memory_size: int) -> float:
    return min(MAX_VCPUS, memory_size / MB_PER_VCPU)


def need(cost: dict, memory_size: int, headroom: float) -> Need:
    """The record as Lambda at ``memory_size`` will run it: CPU time spread over the memory size's
    vCPU share, times ``headroom``."""
    share = vcpus(memory_size)

    def on_lambda(cpu_ms: float) -> float:
        return round(cpu_ms / share * headroom, 1)

    return Need(
        image_ms=on_lambda(cost["image_cpu_ms"]),
        batch_image_ms=on_lambda(cost["batch_cpu_ms_per_image"]),
        peak_mb=round(cost["peak_mb"] * headroom + FUNCTION_MB),
        load_ms=on_lambda(cost["load_cpu_ms"]),
    )


def overruns(settings, model: Need, parent_mb: int, decode_reserve_mb: int) -> list[str]:
    """Each limit the model's need exceeds, with by how much (empty: it fits). ``settings`` is the
    stack's ``Settings``; ``parent_mb``/``decode_reserve_mb``: the function process's share and the
    least its decode workers need."""
    found = []

    def over(needed_ms: float, limit_ms: float, what: str, limit: str) -> None:
        if needed_ms > limit_ms:
            found.append(
                f"{what} needs {needed_ms / 1000:.1f} s: "
                f"over {limit} by {(needed_ms - limit_ms) / 1000:.1f} s"
            )

    api_ms = min(settings.api_timeout_seconds * 1000, API_GATEWAY_MS)
    largest, deadline_ms = settings.max_images_per_request, settings.decode_request_deadline_ms
    over(
        model.batch_ms(largest) + deadline_ms,
        api_ms,
        f"a request of {largest} images (maxImagesPerRequest), {model.batch_ms(largest) / 1000:.1f} s "
        f"of model time and the {deadline_ms / 1000:g} s decode deadline,",
        "API Gateway's 29 s"
        if api_ms == API_GATEWAY_MS
        else f"apiTimeoutSeconds {settings.api_timeout_seconds}",
    )
    batch = settings.sqs_batch_size
    over(
        batch * model.image_ms + settings.decode_batch_ms(batch),
        settings.s3_timeout_seconds * 1000,
        f"an S3 worker batch of {batch} objects (sqsBatchSize), each at its decode bound,",
        f"s3TimeoutSeconds {settings.s3_timeout_seconds}",
    )
    if settings.enable_backfill:  # it stops taking objects near its end (retried): only the model counts
        over(
            settings.backfill_batch_size * model.image_ms,
            settings.backfill_timeout_seconds * 1000,
            f"the model time of a backfill batch of {settings.backfill_batch_size} objects",
            f"backfillTimeoutSeconds {settings.backfill_timeout_seconds}",
        )
    over(model.load_ms, INIT_LIMIT_MS, "loading the model", f"Lambda's {INIT_LIMIT_MS // 1000} s init phase")
    memory_mb = parent_mb + decode_reserve_mb
    if memory_mb > settings.memory_size:
        found.append(
            f"its peak at the largest batch ({model.peak_mb:.0f} MB with the function) and the decode "
            f"workers' {decode_reserve_mb} MB need {memory_mb:.0f} MB: over memorySize "
            f"{settings.memory_size} by {memory_mb - settings.memory_size:.0f} MB"
        )
    return found


def gate_environment(settings, model: Need) -> dict[str, str]:
    """What the pre-traffic hook holds the new version to (``hooks.pre_traffic.cost_from``)."""
    largest = settings.max_images_per_request
    api_ms = min(settings.api_timeout_seconds * 1000, API_GATEWAY_MS)
    environment = {
        "LARGEST_BATCH": str(largest),
        "API_MS": str(api_ms),
        "BATCH_BUDGET_MS": str(api_ms - settings.decode_request_deadline_ms),
        "MEMORY_MB": str(settings.memory_size),
        "EXPECTED_IMAGE_MS": str(model.image_ms),
        "EXPECTED_BATCH_MS": str(round(model.batch_ms(largest), 1)),
        "EXPECTED_PEAK_MB": str(model.peak_mb + settings.decode_workers * DECODE_WORKER_MB),
        "EXPECTED_LOAD_MS": str(model.load_ms),
    }
    if not settings.accept_slower_model:
        environment["LIVE_MARGIN"] = str(settings.quality_gate_cost_margin)
    return environment
