"""``config.read_settings``: every variable, its default, and the message a bad value gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from handler import config
from handler.contract import Defaults


def test_defaults_with_no_variables_set() -> None:
    settings = config.read_settings({})
    assert settings.backend == Defaults.MODEL_BACKEND
    assert settings.max_image_bytes == Defaults.MAX_IMAGE_BYTES == 6 * 1024 * 1024
    assert settings.max_image_pixels == Defaults.MAX_IMAGE_PIXELS
    assert settings.decode_memory_mb == Defaults.DECODE_MEMORY_MB
    assert settings.decode_cpu_ms == Defaults.DECODE_CPU_MS
    assert settings.decode_request_cpu_ms == Defaults.DECODE_REQUEST_CPU_MS
    assert settings.decode_request_deadline_ms == Defaults.DECODE_REQUEST_DEADLINE_MS
    assert settings.decode_wall_ms > settings.decode_cpu_ms
    assert settings.decode_workers >= 1
    assert settings.decoding.workers == settings.decode_workers
    assert settings.decoding.max_image_pixels == Defaults.MAX_IMAGE_PIXELS
    assert (settings.default_top_k, settings.max_top_k) == (5, 20)
    assert settings.allowed_origins == ("*",)
    assert settings.uploads_bucket is None and settings.results_bucket is None
    assert (settings.uploads_prefix, settings.results_prefix) == ("uploads/", "results/")
    assert settings.model_dir == config.REPO_MODEL_DIR
    assert settings.threads >= 1
    assert settings.feedback_auth == Defaults.FEEDBACK_AUTH == "iam"  # corrections need a caller


def test_inside_lambda_the_model_is_read_from_opt() -> None:
    assert config.read_settings({"LAMBDA_TASK_ROOT": "/var/task"}).model_dir == Path("/opt/model")


def test_every_variable_is_read() -> None:
    settings = config.read_settings(
        {
            "MODEL_DIR": "/models/x",
            "MODEL_BACKEND": " LiteRT ",
            "MODEL_PRECISION": "INT8",
            "MIN_CONFIDENCE": "0.6",
            "MODEL_THREADS": "3",
            "MAX_IMAGE_BYTES": "1000",
            "MAX_IMAGE_PIXELS": "2000",
            "DEFAULT_TOP_K": "2",
            "MAX_TOP_K": "7",
            "ALLOWED_ORIGINS": "https://a.example, https://b.example,",
            "RESULTS_BUCKET": "results-bucket",
            "RESULTS_PREFIX": "out/",
            "MAX_IMAGES_PER_REQUEST": "4",
            "DECODE_WORKERS": "3",
            "DECODE_MEMORY_MB": "700",
            "DECODE_CPU_MS": "250",
            "DECODE_WALL_MS": "700",
            "DECODE_REQUEST_CPU_MS": "800",
            "DECODE_REQUEST_DEADLINE_MS": "900",
            "UPLOADS_BUCKET": "uploads-bucket",
            "UPLOADS_PREFIX": "in/",
            "MAX_UPLOAD_BYTES": "5000",
            "UPLOAD_EXPIRES_SECONDS": "60",
            "CAPTURE_RATE": "0.05",
            "CAPTURE_UNCERTAIN_RATE": "1",
            "CAPTURE_BUCKET": "capture-bucket",
            "CAPTURE_PREFIX": "kept/",
            "FEEDBACK_AUTH": " None ",
        }
    )
    assert settings == config.Settings(
        model_dir=Path("/models/x"),
        backend="litert",
        precision="int8",
        threads=3,
        max_image_bytes=1000,
        max_image_pixels=2000,
        default_top_k=2,
        max_top_k=7,
        allowed_origins=("https://a.example", "https://b.example"),
        results_bucket="results-bucket",
        results_prefix="out/",
        max_images_per_request=4,
        uploads_bucket="uploads-bucket",
        uploads_prefix="in/",
        max_upload_bytes=5000,
        upload_expires_seconds=60,
        min_confidence=0.6,
        decode_workers=3,
        decode_memory_mb=700,
        decode_cpu_ms=250,
        decode_wall_ms=700,
        decode_request_cpu_ms=800,
        decode_request_deadline_ms=900,
        capture_rate=0.05,
        capture_uncertain_rate=1.0,
        capture_bucket="capture-bucket",
        capture_prefix="kept/",
        feedback_auth="none",
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAX_IMAGE_BYTES", "six", "MAX_IMAGE_BYTES must be an integer, got 'six'"),
        ("MODEL_THREADS", "0", "MODEL_THREADS must be >= 1, got 0"),
        ("MAX_TOP_K", "2.5", "MAX_TOP_K must be an integer"),
        ("MODEL_BACKEND", "onnx", "MODEL_BACKEND must be one of litert, keras, got 'onnx'"),
        ("MIN_CONFIDENCE", "high", "MIN_CONFIDENCE must be a number from 0 to 1"),
        ("MIN_CONFIDENCE", "1.5", "MIN_CONFIDENCE must be a number from 0 to 1, got 1.5"),
        ("CAPTURE_RATE", "5%", "CAPTURE_RATE must be a number from 0 to 1"),
        ("CAPTURE_UNCERTAIN_RATE", "2", "CAPTURE_UNCERTAIN_RATE must be a number from 0 to 1, got 2"),
        ("CAPTURE_PREFIX", "uploads/captured/", "CAPTURE_PREFIX 'uploads/captured/' overlaps UPLOADS_PREFIX"),
        ("CAPTURE_PREFIX", "results", "CAPTURE_PREFIX 'results' overlaps RESULTS_PREFIX 'results/'"),
        ("FEEDBACK_AUTH", "apikey", "FEEDBACK_AUTH must be one of iam, none, got 'apikey'"),
    ],
)
def test_a_bad_value_names_its_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config.read_settings({name: value})


def test_int8_needs_the_litert_backend() -> None:
    with pytest.raises(ValueError, match="MODEL_PRECISION must be fp32, or int8 with the litert backend"):
        config.read_settings({"MODEL_BACKEND": "keras", "MODEL_PRECISION": "int8"})


def test_blank_values_mean_the_default() -> None:
    assert config.read_settings({"MAX_IMAGE_BYTES": "  ", "UPLOADS_BUCKET": ""}) == config.read_settings({})


@pytest.mark.parametrize(
    ("environ", "cpus"),
    [
        ({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048"}, 2048 / 1769),
        ({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "885"}, 885 / 1769),
    ],
)
def test_on_lambda_the_cpus_are_the_memory_sizes_share(environ, cpus) -> None:
    """Lambda shows a process two cores at 2,048 MB but gives it 1.16 vCPU: the bounds use the share."""
    assert config.function_cpus(environ) == pytest.approx(min(cpus, config.available_cpus()))


def test_the_wall_bound_grows_as_the_cpu_is_shared() -> None:
    """Liveness only: two workers and the function on half a CPU wait six times longer than alone."""
    alone = config.decode_wall_ms_for(1500, 1, 2.0)
    assert alone == 1500 * 3 + 1000
    assert config.decode_wall_ms_for(1500, 2, 0.5) == 1500 * 6 * 3 + 1000
    environ = {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048", "DECODE_WORKERS": "1", "DECODE_CPU_MS": "1500"}
    assert config.read_settings(environ).decode_wall_ms == config.decode_wall_ms_for(
        1500, 1, config.function_cpus(environ)
    )
