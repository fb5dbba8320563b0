"""The wrong-scaling build (``devtools/bad_builds.double_scaled``): a graph that scales its uint8
pixels twice loads and answers like any model (its manifest is honest, its files pinned), and the
pre-traffic quality gate stops it on the good build's check set. The good build passes the same
gate (``tests/hooks/test_pre_traffic.py``); ``make rollout-demo`` shows every bad build's verdict."""

from __future__ import annotations

import pytest

from devtools import bad_builds
from handler.recognition import manifest, model
from hooks import pre_traffic
from localaws.context import LocalContext
from tests.support import MODEL_DIR

pytestmark = pytest.mark.slow  # a TensorFlow rebuild and conversion of the export (about 40 s here)


@pytest.fixture(scope="module")
def double_scaled(tmp_path_factory) -> model.Classifier:
    folder = bad_builds.double_scaled(MODEL_DIR, tmp_path_factory.mktemp("double-scaled") / "model")
    fields = manifest.validate(folder)
    assert fields["input"]["dtype"] == "uint8" and fields["preprocessing"]["scale"] == "inside the model"
    return model.load_classifier(folder, "litert", threads=2)


def test_the_double_scaled_build_takes_uint8_pixels_like_the_good_one(double_scaled) -> None:
    assert double_scaled._backend.input_dtype == "uint8"
    assert double_scaled.info.name == "mobilenet_v2"


def test_the_gate_stops_the_double_scaled_build(double_scaled, configure) -> None:
    function = configure(model=double_scaled)
    expected = manifest.read(MODEL_DIR)
    gate = pre_traffic.Gate(model={"name": expected["name"], "version": expected["version"]})

    def invoke(event: dict) -> tuple[dict, dict]:
        return function.api_handler(event, LocalContext()), {}

    verdict = pre_traffic.check(invoke, gate, MODEL_DIR / "check")
    assert not verdict.passed, verdict.reason
    assert verdict.figures["accuracy"] == 0.0, "every check photo answered as another class"
    assert verdict.figures["max_probability_drift"] > 0.5
