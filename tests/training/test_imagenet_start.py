"""``--imagenet-classes``: the head starts as ImageNet's own classifier for your classes, and
training may only move it by doing better on validation. Trained on a few dozen shared photos."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from handler.recognition import model
from tests.support import SHARED
from training.dataset import DatasetError, load
from training.evaluate import probabilities
from training.imagenet_start import rows_given
from training.train import Options, train

pytestmark = [pytest.mark.slow]

HYMENOPTERA = SHARED / "datasets" / "hymenoptera" / "train"
ANT, BEE = 310, 309  # their rows in ImageNet's 1,000 classes


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HYMENOPTERA.is_dir():
        pytest.fail(f"These tests need the shared datasets at {HYMENOPTERA.parents[1]} (see README).")
    data = tmp_path_factory.mktemp("ants-and-bees")
    for name in ("ants", "bees"):
        (data / name).mkdir()
        for photo in sorted((HYMENOPTERA / name).iterdir())[-14:]:
            shutil.copy(photo, data / name / photo.name)
    return data


def served_probabilities(model_dir: Path, data: Path) -> np.ndarray:
    classifier = model.load_classifier(model_dir, "litert", threads=2)
    return probabilities(classifier, load(data, progress=False).images)


def zero_shot(classifier, data: Path, rows: list[int]) -> np.ndarray:
    """MobileNetV2's own ImageNet answer (the served export) restricted to ``rows``, renormalized."""
    restricted = probabilities(classifier, load(data, progress=False).images)[:, rows]
    return restricted / restricted.sum(axis=1, keepdims=True)


def test_classes_resolve_to_imagenet_rows_in_folder_order() -> None:
    assert rows_given(Options(imagenet_classes="bees=bee,ants=ant"), ["ants", "bees"]) == [ANT, BEE]
    assert rows_given(Options(imagenet_classes="ants=n02219486,bees=bee"), ["ants", "bees"]) == [ANT, BEE]
    assert rows_given(Options(), ["ants", "bees"]) is None


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ("ants=ant", "the class folders are ants, bees: name each folder once"),
        ("ants=ant,bees=bees", r"'bees' \(for bees\) is not an ImageNet class \(did you mean bee"),
        ("ants=crane,bees=bee", "'crane' is two ImageNet classes: name it by its WordNet id"),
    ],
)
def test_a_mapping_that_is_not_imagenets_is_refused_before_any_photo_is_read(
    mapping: str, message: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    for name in ("ants", "bees"):
        (data / name).mkdir(parents=True)
        (data / name / "not-even-a-photo.jpg").write_bytes(b"\xff\xd8 broken")
    with pytest.raises(DatasetError, match=message):
        train(data, tmp_path / "model", Options(imagenet_classes=mapping))
    assert not (tmp_path / "model").exists()


def test_a_diverging_run_still_serves_the_zero_shot_answer(photos: Path, tmp_path: Path, classifier) -> None:
    """A learning rate of 10 wrecks the head in its first step: no epoch beats the start on
    validation, so what is served is exactly ImageNet's answer for ants and bees."""
    out = tmp_path / "model"
    options = Options(
        imagenet_classes="ants=ant,bees=bee",
        learning_rate=10.0,
        epochs=2,
        fine_tune_layers=0,
        flip_average=False,
    )
    card = train(photos, out, options)["card"]
    assert card["history"]["head"]["kept"] == [0.0]
    assert card["head"].startswith("linear, started as ImageNet's classifier for ants=ant, bees=bee")
    trained = served_probabilities(out, photos)
    # Served calibrated (the temperature fitted on validation): the same answer, same ranking.
    temperature = json.loads((out / "manifest.json").read_text())["calibration"]["temperature"]
    expected = model.calibrated(zero_shot(classifier, photos, [ANT, BEE]), temperature)
    np.testing.assert_allclose(trained, expected, atol=2e-3)


def test_a_wrong_start_is_trained_away(photos: Path, tmp_path: Path, classifier) -> None:
    """Ants mapped to ImageNet's bee and bees to its ant: the start answers backwards, training beats
    it on validation and is kept. The start is a starting point, not an answer."""
    out = tmp_path / "model"
    options = Options(imagenet_classes="ants=bee,bees=ant", learning_rate=1e-2, epochs=15, fine_tune_layers=0)
    card = train(photos, out, options)["card"]
    assert card["history"]["head"]["kept"] == [1.0]
    backwards = zero_shot(classifier, photos, [BEE, ANT])
    labels = np.repeat([0, 1], 14)
    assert (backwards.argmax(1) == labels).mean() < 0.5, "the start is wrong on these photos"
    # Validation: every ant ranked below every bee (the start ranked them all backwards: AUC 0).
    assert card["validation"]["roc_auc"] == 1.0 and card["test"]["accuracy"] > 0.5


def test_without_a_mapping_the_start_is_proposed_from_the_training_photos(
    photos: Path, tmp_path: Path, capsys
) -> None:
    """No --imagenet-classes: the zero-shot answer on each folder's training photos proposes ants=ant,
    bees=bee, prints it with its support, and the head starts there; --no-imagenet-start does not."""
    options = Options(epochs=1, fine_tune_layers=0, flip_average=False)
    card = train(photos, tmp_path / "proposed", options)["card"]
    assert card["head"].startswith("linear, started as ImageNet's classifier for ants=ant, bees=bee")
    printed = capsys.readouterr().out
    assert re.search(r"ants = ImageNet's ant \(\d+% of its 10 training photos\)", printed), printed
    assert re.search(r"bees = ImageNet's bee \(\d+% of its 10 training photos\)", printed), printed
    untouched = train(photos, tmp_path / "untouched", replace(options, imagenet_start=False))["card"]
    assert untouched["head"] == "Dense(1024, relu), dropout, softmax; random start"


def test_a_folder_imagenet_does_not_know_starts_untrained() -> None:
    """Proposals on made-up top-1 rows: one folder concentrated, one scattered, two on one class."""
    from training import imagenet_start

    names = [[f"n{i:08d}", f"class{i}"] for i in range(10)]
    names[7][1] = names[8][1]  # a name ImageNet has twice is given by its WordNet id
    top1 = np.array([3, 3, 3, 1, 1, 2, 4, 5, 8, 8, 8, 8])  # folders a, b, c: 4 photos each
    labels = np.repeat([0, 1, 2], 4)
    proposals = imagenet_start.propose(top1, labels, ["a", "b", "c"], names)
    assert [(p.label, p.share, p.taken) for p in proposals] == [
        ("class3", 0.75, True),
        ("class1", 0.25, False),
        ("n00000008", 1.0, True),
    ]
    assert imagenet_start.rows_of(proposals) == [3, None, 8]
    lines = imagenet_start.described(proposals)
    assert lines[0] == "a = ImageNet's class3 (75% of its 4 training photos)"
    assert "b: no ImageNet class takes 50% of its photos (at most class1, 25%)" in lines[1]
    both = imagenet_start.propose(np.array([3, 3, 3, 3]), np.repeat([0, 1], 2), ["a", "b"], names)
    assert imagenet_start.rows_of(both) is None, "one class for two folders tells them apart from nothing"
    assert "as another folder's do" in imagenet_start.described(both)[0]


def test_without_imagenets_class_index_the_error_says_where_to_put_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline, with no cached class index: Keras would try to download it and raise; the user reads
    where the file goes instead."""
    import keras

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -2] Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(DatasetError, match=r"imagenet_class_index.json in \$KERAS_HOME/models"):
        rows_given(Options(imagenet_classes="ants=ant,bees=bee"), ["ants", "bees"])
