"""A model's cost, measured where it is made: the serving classifier in a process of its own."""

from __future__ import annotations

import numpy as np

from handler.recognition import manifest
from tests.support import MODEL_DIR
from training import cost


def test_make_model_records_what_serving_the_export_costs() -> None:
    recorded = manifest.read(MODEL_DIR)["cost"]
    assert recorded["largest_batch"] == 16 and recorded["measured_with"]["threads"] == cost.THREADS
    assert 0 < recorded["image_cpu_ms"] < 1000 and 0 < recorded["batch_cpu_ms_per_image"] < 1000
    assert 50 < recorded["peak_mb"] < 600, "LiteRT, numpy and a 14 MB model: no TensorFlow"
    assert 0 < recorded["load_ms"] < 10_000
    assert "cost on this machine (2 threads)" in cost.summary(recorded)


def test_the_peak_is_the_measuring_process_own_not_its_parents() -> None:
    """Linux carries ``ru_maxrss`` across exec: a builder holding a GB (TensorFlow) would pass its
    peak on to the process it starts. ``VmHWM`` starts anew with the interpreter."""
    held = np.ones(600 * 1024 * 1024 // 8)  # 600 MB resident in this process
    try:
        measured = cost.measure(MODEL_DIR, largest_batch=2)
    finally:
        del held
    assert measured["largest_batch"] == 2
    assert measured["peak_mb"] < 500, measured


def test_a_model_that_cannot_load_is_a_clear_error(tmp_path) -> None:
    import pytest

    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(
        cost.CostError, match=r"its cost could not be measured: .*ManifestError: .*field 'name' is missing$"
    ):
        cost.measure(tmp_path)
