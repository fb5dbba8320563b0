"""``imgrec train DATA DATA``: two data folders merged, the served probabilities calibrated on the
validation split, the card's baseline for drift. Trained on 28 shared photos (two epochs)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from handler.recognition import manifest as model_manifest
from handler.recognition import model
from tests.support import SHARED
from training.dataset import load
from training.evaluate import probabilities

pytestmark = [pytest.mark.slow]

HYMENOPTERA = SHARED / "datasets" / "hymenoptera" / "train"


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``curated`` (14 ants, 9 bees) and ``export`` (5 more bees, and a copy of a curated bee)."""
    if not HYMENOPTERA.is_dir():
        pytest.fail(f"These tests need the shared datasets at {HYMENOPTERA.parents[1]} (see README).")
    root = tmp_path_factory.mktemp("data")
    curated, export = root / "curated", root / "export"
    ants, bees = (sorted((HYMENOPTERA / name).iterdir())[:14] for name in ("ants", "bees"))
    for folder, chosen in (
        (curated / "ants", ants),
        (curated / "bees", bees[:9]),
        (export / "bees", bees[9:]),
    ):
        folder.mkdir(parents=True)
        for photo in chosen:
            shutil.copy(photo, folder / photo.name)
    shutil.copy(bees[0], export / "bees" / "again.jpg")
    (export / "review.csv").write_text("prediction_id,image\n")
    return curated, export


@pytest.fixture(scope="module")
def trained(folders: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from devtools.cli import main

    out = tmp_path_factory.mktemp("models") / "merged"
    args = ["train", *map(str, folders), "--out", str(out), "--name", "merged", "--epochs", "2"]
    assert main([*args, "--fine-tune-layers", "0", "--min-confidence", "0.7"]) == 0
    return out


@pytest.fixture(scope="module")
def fields(trained: Path) -> dict:
    return model_manifest.validate(trained)


def test_the_folders_merge_and_the_copy_counts_once(fields: dict) -> None:
    card = fields["card"]
    assert card["data"]["images"] == 28 and card["data"]["folder"] == "curated + export"
    assert card["data"]["folders"] == [
        {"folder": "curated", "images": 23, "skipped": 0, "copies_of_another_folder": 0},
        {"folder": "export", "images": 5, "skipped": 1, "copies_of_another_folder": 1},
    ]
    assert [s["file"] for s in card["data"]["skipped"]] == ["export/bees/again.jpg"]
    assert {name: sum(split.values()) for name, split in card["classes"].items()} == {"ants": 14, "bees": 14}
    assert fields["source"] == "trained by `imgrec train` on curated + export"


def test_the_manifest_carries_the_calibration_the_handler_applies(fields: dict, trained: Path) -> None:
    calibration = fields["calibration"]
    assert 0.05 <= calibration["temperature"] <= 20
    assert calibration["method"] == "temperature scaling, fitted on the validation split"
    for key in ("ece_before", "ece_after"):
        assert set(calibration[key]) == {"validation", "test"}
        assert all(0 <= value <= 1 for value in calibration[key].values())
    if "note" not in calibration:  # fitted: it cannot be worse on the split it was fitted on
        assert calibration["nll_after"]["validation"] <= calibration["nll_before"]["validation"] + 1e-4
    assert fields["card"]["calibration"] == calibration
    report = trained / "evaluation"
    assert (report / "reliability.png").is_file() and (report / "validation" / "reliability.png").is_file()
    assert "## Calibration" in (report / "report.md").read_text()


def test_the_served_answers_are_the_raw_ones_calibrated(fields: dict, trained: Path, folders) -> None:
    served = model.load_classifier(trained, "litert", threads=2)
    assert served.temperature == fields["calibration"]["temperature"]
    images = load(folders[0], progress=False).images
    calibrated = probabilities(served, images)
    served.temperature = 1.0  # what the .tflite answers
    raw = probabilities(served, images)
    np.testing.assert_allclose(
        calibrated, model.calibrated(raw, fields["calibration"]["temperature"]), atol=1e-5
    )


def test_the_card_has_a_baseline_for_drift(fields: dict) -> None:
    card = fields["card"]
    figures = card["baseline"]
    validation = sum(split["validation"] for split in card["classes"].values())
    assert figures["split"] == "validation" and figures["predictions"] == validation
    assert set(figures["top_class_share"]) == {"ants", "bees"}
    assert sum(figures["top_class_share"].values()) == pytest.approx(1)
    assert 0.5 <= figures["mean_top1_confidence"] <= 1 and 0 <= figures["uncertain_rate"] <= 1
    assert card["min_confidence"] == 0.7


def test_the_check_set_expects_the_test_accuracy(trained: Path, fields: dict) -> None:
    from training import checkset

    document = checkset.read(trained, "fp32")
    assert document["expected_accuracy"] == round(fields["card"]["test"]["accuracy"], 4)
    assert "curated + export" in document["source"]
