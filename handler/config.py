"""Every setting of the function, read once from the environment, each with a documented default.

The CDK stack sets these variables on the function. ``read_settings`` runs once, where the
function starts (``handler.app``), and the result is passed down; nothing else in ``handler``
reads ``os.environ``. Tests and dev tools build their own ``Settings`` instead of patching it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from handler.contract import (
    BACKENDS,
    FEEDBACK_AUTH_MODES,
    MB_PER_VCPU,
    METRICS_NAMESPACE,
    PRECISIONS,
    SERVICE_NAME,
    Defaults,
)

REPO_MODEL_DIR = Path(__file__).resolve().parent.parent / "build" / "model"
LAMBDA_MODEL_DIR = Path("/opt/model")


def available_cpus() -> int:
    """CPUs this process may run on (Lambda gives 1 to 6 vCPUs by memory size)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def function_cpus(environ: Mapping[str, str] | None = None) -> float:
    """The CPUs this function really has: on Lambda, its memory size's share (2,048 MB: 1.16 vCPU,
    though the process sees two cores); elsewhere a cgroup CPU quota if one is set; else the cores
    it may run on."""
    environ = os.environ if environ is None else environ
    cores = float(available_cpus())
    memory = environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
    if memory.isdigit():
        return min(cores, max(0.1, int(memory) / MB_PER_VCPU))
    quota = _cgroup_quota()
    return min(cores, quota) if quota else cores


def _cgroup_quota() -> float | None:
    """This process's CFS quota in CPUs (cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``), if any."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        try:
            if controllers == "":  # cgroup v2
                quota, period = Path(f"/sys/fs/cgroup{path}/cpu.max").read_text().split()
            elif "cpu" in controllers.split(","):
                root = Path("/sys/fs/cgroup") / controllers
                quota = (root / path.lstrip("/") / "cpu.cfs_quota_us").read_text().strip()
                period = (root / path.lstrip("/") / "cpu.cfs_period_us").read_text().strip()
            else:
                continue
        except (OSError, ValueError):
            continue
        if quota not in ("max", "-1"):
            return int(quota) / int(period)
    return None


def decode_wall_ms_for(cpu_ms: int, workers: int, cpus: float) -> int:
    """One image's wall-clock bound, for liveness only: its CPU cap stretched by how many processes
    share the function's CPUs at once (the workers, and the function itself), three times over, plus
    a second. Only a decoder that sleeps or blocks meets it; a slow but honest one meets the CPU cap
    first however busy the machine (2,048 MB, one worker: 1.5 s of CPU -> 8.8 s)."""
    return int(cpu_ms * max(1.0, (workers + 1) / cpus) * 3 + 1000)


def _default_model_dir(environ: Mapping[str, str]) -> Path:
    """``/opt/model`` inside Lambda (image and layer put it there), the ``make model`` output otherwise."""
    return LAMBDA_MODEL_DIR if environ.get("LAMBDA_TASK_ROOT") else REPO_MODEL_DIR


@dataclass(frozen=True)
class DecodeSettings:
    """What recognition needs of the settings, and nothing else: the limits an image is checked
    against, and the decode sandbox's size and bounds (``handler.recognition`` never sees the
    service's buckets, origins or capture rates)."""

    max_image_bytes: int
    max_image_pixels: int
    workers: int
    memory_mb: int
    cpu_ms: int  # one image's CPU time
    wall_ms: int  # one image's wall time: liveness only
    request_cpu_ms: int  # an API request's images together
    request_deadline_ms: int


@dataclass(frozen=True)
class Settings:
    """Configuration of one process; every variable is in docs/settings.md."""

    model_dir: Path
    backend: str
    precision: str
    threads: int
    max_image_bytes: int
    max_image_pixels: int
    default_top_k: int
    max_top_k: int
    allowed_origins: tuple[str, ...]
    results_bucket: str | None
    results_prefix: str
    max_images_per_request: int
    uploads_bucket: str | None
    uploads_prefix: str
    max_upload_bytes: int
    upload_expires_seconds: int
    min_confidence: float | None = None
    decode_workers: int = 1
    decode_memory_mb: int = Defaults.DECODE_MEMORY_MB
    decode_cpu_ms: int = Defaults.DECODE_CPU_MS
    # One image's wall-clock bound: liveness only (a decoder that sleeps or blocks); ``read_settings``
    # derives it from the CPU cap and the CPUs the function really has (``decode_wall_ms_for``).
    decode_wall_ms: int = 3 * Defaults.DECODE_CPU_MS
    decode_request_cpu_ms: int = Defaults.DECODE_REQUEST_CPU_MS
    decode_request_deadline_ms: int = Defaults.DECODE_REQUEST_DEADLINE_MS
    # Capture (handler.answers.capture): off unless a rate is above 0.
    capture_rate: float = 0.0
    capture_uncertain_rate: float | None = None  # None: the same as capture_rate
    capture_bucket: str | None = None  # None: the uploads bucket
    capture_prefix: str = Defaults.CAPTURE_PREFIX
    # Who may correct an answer (POST /feedback): "iam", only a caller API Gateway authenticated
    # (the function refuses one without, 403); "none", anyone, anonymous corrections kept apart.
    feedback_auth: str = Defaults.FEEDBACK_AUTH

    @property
    def decoding(self) -> DecodeSettings:
        return DecodeSettings(
            max_image_bytes=self.max_image_bytes,
            max_image_pixels=self.max_image_pixels,
            workers=self.decode_workers,
            memory_mb=self.decode_memory_mb,
            cpu_ms=self.decode_cpu_ms,
            wall_ms=self.decode_wall_ms,
            request_cpu_ms=self.decode_request_cpu_ms,
            request_deadline_ms=self.decode_request_deadline_ms,
        )


# What each variable accepts, declared (pydantic validates in lax mode: environment values are text).
Whole = Annotated[int, Field(ge=1)]
Millis = Annotated[int, Field(ge=10)]
Fraction = Annotated[float, Field(ge=0, le=1)]
FRACTIONS = ("MIN_CONFIDENCE", "CAPTURE_RATE", "CAPTURE_UNCERTAIN_RATE")
LOWERCASED = ("MODEL_BACKEND", "MODEL_PRECISION", "FEEDBACK_AUTH")


class Variables(BaseModel):
    """The function's variables, named as the stack sets them; a blank one means its default."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    MODEL_DIR: str | None = None
    MODEL_BACKEND: str = Defaults.MODEL_BACKEND
    MODEL_PRECISION: str = "fp32"
    MODEL_THREADS: Whole | None = None  # None: every CPU the process may use
    MAX_IMAGE_BYTES: Whole = Defaults.MAX_IMAGE_BYTES
    MAX_IMAGE_PIXELS: Whole = Defaults.MAX_IMAGE_PIXELS
    DEFAULT_TOP_K: Whole = 5
    MAX_TOP_K: Whole = 20
    ALLOWED_ORIGINS: str = Defaults.ALLOWED_ORIGINS
    RESULTS_BUCKET: str | None = None
    RESULTS_PREFIX: str = Defaults.RESULTS_PREFIX
    MAX_IMAGES_PER_REQUEST: Whole = Defaults.MAX_IMAGES_PER_REQUEST
    UPLOADS_BUCKET: str | None = None
    UPLOADS_PREFIX: str = Defaults.UPLOADS_PREFIX
    MAX_UPLOAD_BYTES: Whole = Defaults.MAX_UPLOAD_BYTES
    UPLOAD_EXPIRES_SECONDS: Whole = 300
    MIN_CONFIDENCE: Fraction | None = None
    DECODE_WORKERS: Whole | None = None  # None: every CPU the process may use
    DECODE_MEMORY_MB: Annotated[int, Field(ge=128)] = Defaults.DECODE_MEMORY_MB
    DECODE_CPU_MS: Millis = Defaults.DECODE_CPU_MS
    DECODE_WALL_MS: Whole | None = None  # None: derived from the CPU cap (decode_wall_ms_for)
    DECODE_REQUEST_CPU_MS: Millis = Defaults.DECODE_REQUEST_CPU_MS
    DECODE_REQUEST_DEADLINE_MS: Millis = Defaults.DECODE_REQUEST_DEADLINE_MS
    CAPTURE_RATE: Fraction = 0.0
    CAPTURE_UNCERTAIN_RATE: Fraction | None = None
    CAPTURE_BUCKET: str | None = None
    CAPTURE_PREFIX: str = Defaults.CAPTURE_PREFIX
    FEEDBACK_AUTH: Literal[FEEDBACK_AUTH_MODES] = Defaults.FEEDBACK_AUTH  # type: ignore[valid-type]

    @classmethod
    def read(cls, environ: Mapping[str, str]) -> Variables:
        """The variables set (blank ones left out), validated; ``ValueError`` naming the first bad
        one in a sentence (never pydantic's report: the reader is whoever set the variable)."""
        given = {name: environ[name].strip() for name in cls.model_fields if environ.get(name, "").strip()}
        given |= {name: given[name].lower() for name in LOWERCASED if name in given}
        try:
            return cls.model_validate(given)
        except ValidationError as error:
            raise ValueError(_sentence(error.errors()[0])) from None


def _sentence(error: Any) -> str:
    """One pydantic error as the sentence the docs use: the variable, what it must be, its value."""
    name, raw = error["loc"][0], error["input"]
    shown = repr(raw[:40]) if isinstance(raw, str) else raw
    kind, limits = error["type"], error.get("ctx", {})
    if name in FRACTIONS:
        return f"{name} must be a number from 0 to 1, got {shown if kind == 'float_parsing' else raw}"
    if kind == "literal_error":
        return f"{name} must be one of {', '.join(FEEDBACK_AUTH_MODES)}, got {shown}"
    if kind == "greater_than_equal":
        return f"{name} must be >= {limits['ge']}, got {raw}"
    return f"{name} must be an integer, got {shown}"


def read_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from ``environ`` (the process environment by default); raise ``ValueError``
    naming the variable on a bad value, so a misconfigured function fails at init."""
    environ = os.environ if environ is None else environ
    read = Variables.read(environ)
    check_engine(read.MODEL_BACKEND, read.MODEL_PRECISION)
    origins = tuple(o.strip() for o in read.ALLOWED_ORIGINS.split(",") if o.strip())
    workers = read.DECODE_WORKERS or available_cpus()
    wall_ms = read.DECODE_WALL_MS or decode_wall_ms_for(read.DECODE_CPU_MS, workers, function_cpus(environ))
    settings = Settings(
        model_dir=Path(read.MODEL_DIR or _default_model_dir(environ)),
        backend=read.MODEL_BACKEND,
        precision=read.MODEL_PRECISION,
        threads=read.MODEL_THREADS or available_cpus(),
        max_image_bytes=read.MAX_IMAGE_BYTES,
        max_image_pixels=read.MAX_IMAGE_PIXELS,
        default_top_k=read.DEFAULT_TOP_K,
        max_top_k=read.MAX_TOP_K,
        allowed_origins=origins or ("*",),
        results_bucket=read.RESULTS_BUCKET,
        results_prefix=read.RESULTS_PREFIX,
        max_images_per_request=read.MAX_IMAGES_PER_REQUEST,
        uploads_bucket=read.UPLOADS_BUCKET,
        uploads_prefix=read.UPLOADS_PREFIX,
        max_upload_bytes=read.MAX_UPLOAD_BYTES,
        upload_expires_seconds=read.UPLOAD_EXPIRES_SECONDS,
        min_confidence=read.MIN_CONFIDENCE,
        decode_workers=workers,
        decode_memory_mb=read.DECODE_MEMORY_MB,
        decode_cpu_ms=read.DECODE_CPU_MS,
        decode_wall_ms=wall_ms,
        decode_request_cpu_ms=read.DECODE_REQUEST_CPU_MS,
        decode_request_deadline_ms=read.DECODE_REQUEST_DEADLINE_MS,
        capture_rate=read.CAPTURE_RATE,
        capture_uncertain_rate=read.CAPTURE_UNCERTAIN_RATE,
        capture_bucket=read.CAPTURE_BUCKET,
        capture_prefix=read.CAPTURE_PREFIX,
        feedback_auth=read.FEEDBACK_AUTH,
    )
    check_prefixes(settings)
    return settings


def check_prefixes(settings: Settings) -> None:
    """The capture prefix apart from the uploads' and the results': a capture under the uploads
    prefix would be classified (and captured) again; an upload under the capture prefix would never
    be classified (the workers skip what capture kept)."""
    for name, other in (
        ("UPLOADS_PREFIX", settings.uploads_prefix),
        ("RESULTS_PREFIX", settings.results_prefix),
    ):
        if settings.capture_prefix.startswith(other) or other.startswith(settings.capture_prefix):
            raise ValueError(
                f"CAPTURE_PREFIX {settings.capture_prefix!r} overlaps {name} {other!r}: give captures a "
                "prefix of their own"
            )


def check_engine(backend: str, precision: str) -> None:
    """The one check of an inference engine choice (settings at init, ``load_classifier`` for the
    dev tools and training): ``ValueError`` naming the variable otherwise."""
    if backend not in BACKENDS:
        raise ValueError(f"MODEL_BACKEND must be one of {', '.join(BACKENDS)}, got {backend[:40]!r}")
    if precision not in PRECISIONS or (precision == "int8" and backend != "litert"):
        raise ValueError(
            f"MODEL_PRECISION must be fp32, or int8 with the litert backend; got {precision[:40]!r}"
        )


# Powertools reads its own variables; these defaults make local runs emit the same names as Lambda.
POWERTOOLS_DEFAULTS = {
    "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
    "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
}


def apply_powertools_defaults() -> None:
    """Set Powertools' service name and metric namespace unless the environment already does."""
    for name, value in POWERTOOLS_DEFAULTS.items():
        os.environ.setdefault(name, value)


def debug_logging(environ: Mapping[str, str] | None = None) -> bool:
    """``LOG_LEVEL=DEBUG`` (or ``POWERTOOLS_LOG_LEVEL``, which Powertools reads first): every log
    line and every native library notice shown, the ones hidden as noise included."""
    environ = os.environ if environ is None else environ
    level = environ.get("POWERTOOLS_LOG_LEVEL") or environ.get("LOG_LEVEL") or ""
    return level.strip().upper() == "DEBUG"
