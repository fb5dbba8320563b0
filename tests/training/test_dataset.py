"""Dataset checks: every shape of folder a person might give gets a message that says what to do."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from devtools.cli import main
from tests.support import PHOTOS
from training.dataset import MIN_IMAGES_PER_CLASS, DatasetError, class_folders, load, stratified_split


def photos(folder: Path, count: int, source: str = "grace_hopper.jpg") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        shutil.copy(PHOTOS / source, folder / f"{index}{Path(source).suffix}")


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist: give a folder with one sub-folder"):
        class_folders(tmp_path / "missing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DatasetError, match="is a file"):
        class_folders(tmp_path / "file.txt")


def test_fewer_than_two_classes(tmp_path: Path) -> None:
    photos(tmp_path / "ants", 6)
    with pytest.raises(
        DatasetError, match=r"has 1 class folder\(s\) \(ants\); a classifier needs at least 2"
    ):
        class_folders(tmp_path)


def test_a_class_with_too_few_photos(tmp_path: Path) -> None:
    photos(tmp_path / "ants", 6)
    photos(tmp_path / "bees", 2, "cat.bmp")
    with pytest.raises(
        DatasetError,
        match=f"Too few readable photos in bees: 2; each class needs at least {MIN_IMAGES_PER_CLASS}",
    ):
        load(tmp_path, progress=False)


def test_unreadable_files_are_listed_and_skipped(tmp_path: Path) -> None:
    photos(tmp_path / "ants", 6)
    photos(tmp_path / "bees", 6, "cat.bmp")
    (tmp_path / "bees" / "notes.txt").write_text("not a photo")
    (tmp_path / "ants" / "broken.jpg").write_bytes((PHOTOS / "grace_hopper.jpg").read_bytes()[:500])
    dataset = load(tmp_path, progress=False)
    assert dataset.classes == ["ants", "bees"] and dataset.counts() == {"ants": 6, "bees": 6}
    assert sorted(file for file, _ in dataset.skipped) == ["ants/broken.jpg", "bees/notes.txt"]
    assert (
        dataset.images.shape == (12, 224, 224, 3) and -1 <= dataset.images.min() < dataset.images.max() <= 1
    )


def test_the_split_is_stratified_and_reproducible() -> None:
    labels = np.array([0] * 80 + [1] * 20)
    train, validation = stratified_split(labels, 0.2, seed=7)
    assert sorted([*train, *validation]) == list(range(100))
    assert (labels[validation] == 0).sum() == 16 and (labels[validation] == 1).sum() == 4
    assert np.array_equal(stratified_split(labels, 0.2, seed=7)[1], validation)


@pytest.mark.slow  # the CLI as a subprocess
@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_the_cli_answers_a_bad_dataset_with_a_message_not_a_traceback(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture
) -> None:
    args = [command, str(tmp_path / "nowhere")] + (
        ["--out", str(tmp_path / "model")] if command == "train" else []
    )
    assert main(args) == 2
    out = capsys.readouterr().out
    assert out.startswith("error: ") and "does not exist" in out and "Traceback" not in out
