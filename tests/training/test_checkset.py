"""The check set a model directory carries for the pre-traffic gate: written with the serving code,
bound to the model's files, refused when it cannot vouch for the build being deployed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.support import MODEL_DIR, PHOTOS, link_file
from training import checkset

PAIRS = [(PHOTOS / "grace_hopper.jpg", "military_uniform"), (PHOTOS / "cat.bmp", "Egyptian_cat")]


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """The ImageNet export's files (links) in a directory of its own, without a check set."""
    folder = tmp_path / "model"
    folder.mkdir()
    for path in MODEL_DIR.iterdir():
        if path.is_file():
            link_file(path, folder / path.name)
    return folder


def test_a_check_set_is_recorded_with_the_serving_code(model_dir: Path) -> None:
    document = checkset.write(model_dir, PAIRS, "two shared photos")
    assert checkset.read(model_dir) == document
    assert document["expected_accuracy"] == 1.0 and document["accuracy_when_recorded"] == {"fp32": 1.0}
    first, second = document["photos"]
    assert (first["label"], first["recorded"]["fp32"][0]["label"]) == ("military_uniform", "military_uniform")
    assert 0.85 < first["recorded"]["fp32"][0]["probability"] < 0.97
    assert len(first["recorded"]["fp32"]) == checkset.TOP_K
    photo = model_dir / "check" / second["file"]
    assert photo.read_bytes()[:3] == b"\xff\xd8\xff", "the BMP is sent as the JPEG it was recorded from"


def test_the_expected_accuracy_is_the_cards_when_given(model_dir: Path) -> None:
    assert checkset.write(model_dir, PAIRS, "card", expected_accuracy=0.71)["expected_accuracy"] == 0.71


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (PAIRS[:1], "a check set has 2 to 64 photos, not 1"),
        ([*PAIRS, (PHOTOS / "cat.bmp", "ants")], "not classes of this model: ants"),
    ],
)
def test_a_check_set_that_cannot_judge_is_refused(model_dir: Path, pairs, message: str) -> None:
    with pytest.raises(checkset.CheckSetError, match=message):
        checkset.write(model_dir, pairs, "bad")


def test_a_photo_changed_after_recording_is_refused(model_dir: Path) -> None:
    document = checkset.write(model_dir, PAIRS, "two shared photos")
    (model_dir / "check" / document["photos"][1]["file"]).write_bytes(b"not the photo")
    with pytest.raises(checkset.CheckSetError, match="is missing or changed since it was recorded"):
        checkset.read(model_dir)


def test_a_precision_never_recorded_is_refused(model_dir: Path) -> None:
    checkset.write(model_dir, PAIRS, "two shared photos")
    with pytest.raises(checkset.CheckSetError, match="has no int8 recordings"):
        checkset.read(model_dir, "int8")


def test_a_garbled_check_set_says_how_to_make_one(model_dir: Path) -> None:
    checkset.write(model_dir, PAIRS, "two shared photos")
    (model_dir / "check" / "check.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(checkset.CheckSetError, match=r"is not a check set .* `imgrec check-set"):
        checkset.read(model_dir)


def test_a_large_photo_is_sent_small() -> None:
    from io import BytesIO

    from PIL import Image

    big = BytesIO()
    Image.new("RGB", (2000, 1000), "red").save(big, "PNG")
    sent = checkset.as_check_photo(big.getvalue())
    with Image.open(BytesIO(sent)) as image:
        assert (image.format, image.size) == ("JPEG", (512, 256))
    small = BytesIO()
    Image.new("RGB", (300, 200), "blue").save(small, "JPEG")
    assert checkset.as_check_photo(small.getvalue()) == small.getvalue(), "a small JPEG is sent as it is"


def test_picking_from_a_split_keeps_every_class() -> None:
    labels = np.array([0] * 30 + [1] * 3)
    picked = checkset.pick(labels, 8, seed=1)
    assert len(picked) == 8 and sorted(set(labels[picked])) == [0, 1]
    assert (labels[picked] == 1).sum() == 3, "a rare class keeps all it has, up to its turn"
    assert picked == checkset.pick(labels, 8, seed=1)


def test_imgrec_check_set_writes_one_from_a_folder_per_class(model_dir: Path, tmp_path: Path, capsys) -> None:
    from devtools.cli import main

    photos = tmp_path / "photos"
    for path, label in PAIRS:
        (photos / label).mkdir(parents=True)
        (photos / label / path.name).symlink_to(path)
    assert main(["check-set", str(model_dir), str(photos), "--expected-accuracy", "0.7"]) == 0
    assert "2 check photos in" in capsys.readouterr().out
    assert checkset.read(model_dir)["expected_accuracy"] == 0.7
    assert main(["check-set", str(model_dir), "--photo", "no-label-here"]) == 2
    assert "--photo takes FILE=LABEL" in capsys.readouterr().err
