"""Every setting of the function, read once from the environment, each with a documented default.

The CDK stack sets these variables on the function; locally the Makefile and tests set them.
Nothing else in ``handler`` reads ``os.environ``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO_MODEL_DIR = Path(__file__).resolve().parent.parent / "build" / "model"
LAMBDA_MODEL_DIR = Path("/opt/model")

BACKENDS = ("litert", "keras")


def _available_cpus() -> int:
    """CPUs this process may run on (Lambda gives 1 to 6 vCPUs by memory size)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _default_model_dir() -> Path:
    """``/opt/model`` inside Lambda (image and layer put it there), the ``make model`` output otherwise."""
    return LAMBDA_MODEL_DIR if os.environ.get("LAMBDA_TASK_ROOT") else REPO_MODEL_DIR


@dataclass(frozen=True)
class Settings:
    """Configuration of one process. See the README's configuration table."""

    model_dir: Path
    backend: str
    threads: int
    max_image_bytes: int
    max_image_pixels: int
    default_top_k: int
    max_top_k: int
    allowed_origins: tuple[str, ...]
    results_bucket: str | None
    results_prefix: str
    max_images_per_request: int
    max_decode_bytes: int
    uploads_bucket: str | None
    uploads_prefix: str
    max_upload_bytes: int
    upload_expires_seconds: int


def _int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw[:40]!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def read_settings() -> Settings:
    """Build settings from the environment; raise ``ValueError`` on a bad value (fail at init)."""
    backend = os.environ.get("MODEL_BACKEND", "litert").strip().lower() or "litert"
    if backend not in BACKENDS:
        raise ValueError(f"MODEL_BACKEND must be one of {', '.join(BACKENDS)}, got {backend!r}")
    origins = tuple(o.strip() for o in os.environ.get("ALLOWED_ORIGINS", "*").split(",") if o.strip())
    return Settings(
        model_dir=Path(os.environ.get("MODEL_DIR") or _default_model_dir()),
        backend=backend,
        threads=_int("MODEL_THREADS", _available_cpus()),
        max_image_bytes=_int("MAX_IMAGE_BYTES", 6 * 1024 * 1024),
        max_image_pixels=_int("MAX_IMAGE_PIXELS", 40_000_000),
        default_top_k=_int("DEFAULT_TOP_K", 5),
        max_top_k=_int("MAX_TOP_K", 20),
        allowed_origins=origins or ("*",),
        results_bucket=os.environ.get("RESULTS_BUCKET", "").strip() or None,
        results_prefix=os.environ.get("RESULTS_PREFIX", "results/").strip() or "results/",
        max_images_per_request=_int("MAX_IMAGES_PER_REQUEST", 16),
        max_decode_bytes=_int("MAX_DECODE_BYTES", 512 * 1024 * 1024),
        uploads_bucket=os.environ.get("UPLOADS_BUCKET", "").strip() or None,
        uploads_prefix=os.environ.get("UPLOADS_PREFIX", "uploads/").strip() or "uploads/",
        max_upload_bytes=_int("MAX_UPLOAD_BYTES", 20 * 1024 * 1024),
        upload_expires_seconds=_int("UPLOAD_EXPIRES_SECONDS", 300),
    )


@cache
def settings() -> Settings:
    """The process-wide settings, read on first use."""
    return read_settings()


# Powertools reads its own variables; these defaults make local runs emit the same names as Lambda.
POWERTOOLS_DEFAULTS = {
    "POWERTOOLS_SERVICE_NAME": "image-recognition",
    "POWERTOOLS_METRICS_NAMESPACE": "ImageRecognition",
}


def apply_powertools_defaults() -> None:
    """Set Powertools' service name and metric namespace unless the environment already does."""
    for name, value in POWERTOOLS_DEFAULTS.items():
        os.environ.setdefault(name, value)
