"""Where infra meets handler: entry points and environment variables, checked on both sides."""

from __future__ import annotations

import importlib

import pytest
from aws_cdk.assertions import Template

from handler import config
from handler.contract import API_HANDLER, S3_HANDLER
from tests.support import functions


def test_commands_name_real_entry_points(template: Template) -> None:
    for command in (*functions(template), API_HANDLER, S3_HANDLER):
        module, name = command.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), name)), command


def _changed(value: str) -> str:
    """Another value of the same kind (a number plus 7, not a default that depends on the machine,
    such as DECODE_WORKERS' CPU count; a string with a suffix)."""
    return str(int(value) + 7) if value.isdigit() else f"{value}x"


def test_every_variable_the_stack_sets_changes_the_handlers_settings(template: Template) -> None:
    """Each variable, set to another value, changes what ``read_settings`` returns or is refused by
    name: the handler really reads it (a name only mentioned in the source would not pass)."""
    defaults = config.read_settings({})
    for function in functions(template).values():
        for name, value in function["Properties"]["Environment"]["Variables"].items():
            if name.startswith("POWERTOOLS_"):
                continue  # read by Powertools itself
            if not isinstance(value, str):  # a reference resolved at deploy time (a bucket name)
                value = "bucket-name"
            try:
                changed = config.read_settings({name: _changed(value)})
            except ValueError as refused:
                assert name in str(refused)
                continue
            assert changed != defaults, f"{name} is set by the stack but the handler ignores it"


def test_stack_limits_match_the_handler_defaults(template: Template) -> None:
    defaults = config.read_settings()
    env = functions(template)["handler.app.api_handler"]["Properties"]["Environment"]["Variables"]
    assert int(env["MAX_IMAGE_BYTES"]) == defaults.max_image_bytes
    assert int(env["MAX_IMAGE_PIXELS"]) == defaults.max_image_pixels
    assert int(env["DECODE_CPU_MS"]) == defaults.decode_cpu_ms
    assert int(env["DECODE_REQUEST_CPU_MS"]) == defaults.decode_request_cpu_ms
    assert int(env["DECODE_REQUEST_DEADLINE_MS"]) == defaults.decode_request_deadline_ms
    assert env["RESULTS_PREFIX"] == defaults.results_prefix


@pytest.mark.parametrize(
    ("memory", "backend", "workers", "cap"),
    [
        (2048, "litert", 1, 1536),
        (3538, "litert", 2, 1513),
        (10240, "litert", 6, 1621),
        (3538, "keras", 2, 1001),
    ],
)
def test_decode_workers_and_caps_follow_the_memory_size(memory, backend, workers, cap) -> None:
    """One worker per vCPU; the function's own share plus every worker at its cap fit in its memory."""
    from infra.settings import PARENT_MB, Settings

    settings = Settings(memory_size=memory, model_backend=backend)
    assert (settings.decode_workers, settings.decode_memory_mb) == (workers, cap)
    assert PARENT_MB[backend] + workers * cap <= memory


def test_an_sqs_batch_at_its_wall_bounds_must_fit_the_worker_timeout() -> None:
    from infra.settings import Settings

    with pytest.raises(
        ValueError,
        match=r"an S3 worker batch of 10 objects \(sqsBatchSize\), each at its decode bound, "
        r"needs 8\d\.\d s: over s3TimeoutSeconds 30 by",
    ):
        Settings(s3_timeout_seconds=30)


def test_too_little_memory_for_the_decode_workers_fails_the_synth() -> None:
    from infra.settings import Settings

    with pytest.raises(
        ValueError, match=r"and the decode workers' 256 MB need \d+ MB: over memorySize 700 by"
    ):
        Settings(memory_size=700, s3_timeout_seconds=300)


def test_the_stack_gives_the_functions_their_decode_settings(template: Template) -> None:
    from infra.settings import Settings

    settings = Settings()
    for function in functions(template).values():
        env = function["Properties"]["Environment"]["Variables"]
        assert int(env["DECODE_WORKERS"]) == settings.decode_workers
        assert int(env["DECODE_MEMORY_MB"]) == settings.decode_memory_mb
        assert (
            int(function["Properties"]["MemorySize"])
            >= 512 + settings.decode_workers * settings.decode_memory_mb
        )
