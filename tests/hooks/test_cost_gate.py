"""A model's cost is part of its contract, against builds whose answers are right and whose cost is
not (``devtools/bad_builds.py``: TensorFlow rebuilds of the ImageNet export with extra work):

- synth refuses a build whose recorded cost cannot fit the functions (the memory-hungry one: its
  205 MB of activations per image make a batch need more than the function's 2,048 MB);
- the pre-traffic gate, holding each build as a new version against the good build serving as live
  (each in an execution environment of its own, whose figures are Lambda's REPORT figures), stops
  the ten-times-slower build by its cost against live, and builds whose manifest claims the good
  build's cost (whoever wrote it) by their cost against that record: the slow one by its time, the
  memory-hungry one by its peak; the good build passes.
"""

from __future__ import annotations

import shutil

import pytest

from devtools import bad_builds, rollout_demo
from handler import config
from handler.recognition import manifest
from infra import model_cost
from infra.settings import Settings
from localaws.environment import FunctionProcess
from tests.support import MODEL_DIR

# serial: it compares measured costs, alone, not beside another worker.
pytestmark = [pytest.mark.slow, pytest.mark.serial]


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict:
    """Each costly build with its own measured cost, and copies claiming the good build's."""
    root = tmp_path_factory.mktemp("costly")
    made = {
        "slow": bad_builds.slow(MODEL_DIR, root / "slow", lying=False),
        "ten times slower": bad_builds.ten_times_slower(MODEL_DIR, root / "ten"),
        "memory hungry": bad_builds.memory_hungry(MODEL_DIR, root / "hungry"),
    }
    for name in ("slow", "memory hungry"):
        claiming = root / f"{name.replace(' ', '-')}-claiming"
        shutil.copytree(made[name], claiming)
        made[f"{name}, good's manifest"] = bad_builds.claiming_cost_of(MODEL_DIR, claiming)
    return made


def test_each_costly_build_records_what_it_costs(builds) -> None:
    good = manifest.read(MODEL_DIR)["cost"]
    costs = {name: manifest.read(folder)["cost"] for name, folder in builds.items()}
    assert costs["slow"]["image_cpu_ms"] > 3 * good["image_cpu_ms"], costs
    assert costs["ten times slower"]["image_cpu_ms"] > 5 * costs["slow"]["image_cpu_ms"], costs
    assert costs["memory hungry"]["peak_mb"] > good["peak_mb"] + 1024, "8 images x 205 MB at once"
    assert costs["slow, good's manifest"] == good
    for folder in builds.values():  # TensorFlow rebuilds of the export take what it takes: uint8 pixels
        fields = manifest.validate(folder)
        assert fields["input"]["dtype"] == "uint8" and fields["preprocessing"]["scale"] == "inside the model"


def test_synth_refuses_a_build_whose_recorded_cost_cannot_fit_and_says_where(builds) -> None:
    with pytest.raises(ValueError, match=r"does not fit these functions .* over memorySize 2048 by \d+ MB"):
        Settings(model_dir=str(builds["memory hungry"]))
    for fits in ("slow", "ten times slower"):  # slower, within the limits: the gate compares with live
        assert Settings(model_dir=str(builds[fits])).model_need.image_ms > 0
    # At a quarter vCPU, the fewest images its own record cannot answer within API Gateway's 29 s
    # (from the record, not a fixed count: how fast the build ran here is this machine's business).
    slower, limits = builds["ten times slower"], Settings()
    per_image = model_cost.need(model_cost.recorded(slower), 512, limits.model_cost_headroom).batch_image_ms
    images = int((model_cost.API_GATEWAY_MS - limits.decode_request_deadline_ms) / per_image) + 1
    with pytest.raises(ValueError, match=r"over API Gateway's 29 s by"):
        Settings(model_dir=str(slower), memory_size=512, max_images_per_request=images)


@pytest.fixture(scope="module")
def live():
    """The good build serving as alias live."""
    environment = FunctionProcess(config.read_settings({"MODEL_DIR": str(MODEL_DIR)}))
    yield environment
    environment.close()


@pytest.mark.parametrize(
    ("build", "why"),
    [
        ("ten times slower", "over the live version's"),
        ("slow, good's manifest", "for a batch of 16: the recorded cost"),
        ("memory hungry, good's manifest", "MB: the recorded peak memory"),
    ],
)
def test_the_gate_stops_a_build_that_costs_more_than_live_or_its_record(builds, live, build, why) -> None:
    new = FunctionProcess(config.read_settings({"MODEL_DIR": str(builds[build])}))
    try:
        verdict = rollout_demo.gate(new, live, MODEL_DIR, Settings())
    finally:
        new.close()
    assert not verdict.passed and verdict.reason.startswith("cost: ") and why in verdict.reason, verdict
    assert verdict.figures["accuracy"] == 1.0, "its answers are right: its cost stopped it"


def test_the_gate_lets_the_good_build_through_against_itself(live) -> None:
    verdict = rollout_demo.gate(live, live, MODEL_DIR, Settings())
    assert verdict.passed, verdict
    assert verdict.figures["cost"]["peak_mb"] < 1024 and verdict.figures["live_cost"]["photo_ms"] > 0
