"""The served model's recorded cost against the functions: each limit is named with its overrun."""

from __future__ import annotations

import pytest

from infra import model_cost
from infra.settings import MIN_DECODE_MEMORY_MB, Settings

COST = {"image_cpu_ms": 10.0, "batch_cpu_ms_per_image": 12.0, "peak_mb": 150.0, "load_cpu_ms": 100.0}


def overruns(cost: dict, **changed) -> list[str]:
    # Unvalidated (model_construct): the settings' own check would refuse them before overruns runs.
    settings = Settings.model_construct(**{**Settings().model_dump(), **changed})
    need = model_cost.need({**COST, **cost}, settings.memory_size, settings.model_cost_headroom)
    parent = max(512, int(need.peak_mb))
    return model_cost.overruns(settings, need, parent, MIN_DECODE_MEMORY_MB * settings.decode_workers)


def test_a_model_like_the_export_fits_the_default_functions() -> None:
    assert overruns({}) == []


def test_on_lambda_cpu_time_is_spread_over_the_memory_sizes_share_with_headroom() -> None:
    need = model_cost.need(COST, 1769, 1.5)  # 1 vCPU
    assert (need.image_ms, need.batch_image_ms, need.load_ms) == (15.0, 18.0, 150.0)
    assert need.peak_mb == 150 * 1.5 + model_cost.FUNCTION_MB
    assert model_cost.need(COST, 3538, 1.0).image_ms == 5.0  # 2 vCPUs


@pytest.mark.parametrize(
    ("cost", "changed", "message"),
    [
        # 16 x 1,300 ms / 1.158 vCPU x 1.5 = 27.0 s of model time + the 10 s decode deadline
        ({"batch_cpu_ms_per_image": 1300.0}, {}, "needs 37.0 s: over API Gateway's 29 s by 8.0 s"),
        ({"batch_cpu_ms_per_image": 500.0}, {"api_timeout_seconds": 20}, "over apiTimeoutSeconds 20 by"),
        (
            {"image_cpu_ms": 5000.0},
            {},
            "an S3 worker batch of 10 objects (sqsBatchSize), each at its decode bound,",
        ),
        ({"image_cpu_ms": 5000.0}, {"s3_timeout_seconds": 900}, "over backfillTimeoutSeconds 300 by"),
        (
            {"load_cpu_ms": 9000.0},
            {},
            "loading the model needs 11.7 s: over Lambda's 10 s init phase by 1.7 s",
        ),
        ({"peak_mb": 1200.0}, {}, "need 2184 MB: over memorySize 2048 by 136 MB"),
    ],
)
def test_each_limit_a_costly_model_exceeds_is_named_with_its_overrun(cost, changed, message) -> None:
    found = overruns(cost, **changed)
    assert any(message in line for line in found), found


def test_synth_refuses_it_and_names_the_model(tmp_path) -> None:
    """The ImageNet export at a quarter of its memory: the whole message, as ``cdk synth`` prints it."""
    with pytest.raises(
        ValueError, match=r"^the model in build/model does not fit these functions \(its recorded"
    ):
        Settings(memory_size=600)


def test_a_manifest_without_a_cost_says_how_to_measure_it(tmp_path) -> None:
    (tmp_path / "manifest.json").write_text('{"name": "x"}')
    with pytest.raises(ValueError, match=r"records no cost .* measure it with `python -m training.cost "):
        model_cost.recorded(tmp_path)
    for broken in ("NaN", "true", "-1", "1e308", "9" * 400, '"fast"', "[1]"):
        others = '"batch_cpu_ms_per_image": 1, "peak_mb": 1, "load_cpu_ms": 1'
        (tmp_path / "manifest.json").write_text(f'{{"cost": {{"image_cpu_ms": {broken}, {others}}}}}')
        with pytest.raises(
            ValueError, match=r"cost.image_cpu_ms is .*: a figure is a number from 0 to 1e\+07"
        ):
            model_cost.recorded(tmp_path)
