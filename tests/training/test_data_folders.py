"""Several data folders as one dataset: same-named classes merge, a class may live in one folder
only, a copy of a photo in another folder counts once, and every check covers every folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.training.test_dataset import photos
from training.dataset import DatasetError, load, merged_class_folders


@pytest.fixture
def two(tmp_path: Path) -> tuple[Path, Path]:
    first, second = tmp_path / "curated", tmp_path / "export"
    photos(first / "ants", 6)
    photos(first / "bees", 5, "cat.bmp")
    photos(second / "bees", 3, "cat.bmp", first=50)  # bees only: ants is in one folder
    shutil.copy(first / "bees" / "0.bmp", second / "bees" / "copy.bmp")  # the same bytes, again
    (second / "review.csv").write_text("prediction_id,image\n")  # top-level files are not classes
    (second / ".imgrec-export.json").write_text("{}")
    return first, second


def test_same_named_classes_merge_and_copies_across_folders_count_once(two: tuple[Path, Path]) -> None:
    first, second = two
    dataset = load([first, second], progress=False)
    assert dataset.classes == ["ants", "bees"] and dataset.counts() == {"ants": 6, "bees": 8}
    assert ("export/bees/copy.bmp", "the same photo as curated/bees/0.bmp") in dataset.skipped
    assert dataset.folders == [
        {"folder": "curated", "images": 11, "skipped": 0, "copies_of_another_folder": 0},
        {"folder": "export", "images": 3, "skipped": 1, "copies_of_another_folder": 1},
    ]
    assert dataset.name(second / "bees" / "50.bmp") == "export/bees/50.bmp"
    assert dataset.subset(np.flatnonzero(dataset.labels == 1)).roots == [first, second]
    alone = load(first, progress=False)
    assert alone.name(first / "ants" / "0.jpg") == "ants/0.jpg", "one folder: names as before"
    assert alone.fingerprint() != dataset.fingerprint()
    assert load([first], progress=False).fingerprint() == alone.fingerprint()


def test_a_copy_in_another_class_of_another_folder_is_refused(two: tuple[Path, Path]) -> None:
    first, second = two
    photos(second / "ants", 1, first=90)
    shutil.copy(first / "ants" / "2.jpg", second / "bees" / "wrong.jpg")
    with pytest.raises(
        DatasetError, match=r"export/bees/wrong.jpg and curated/ants/2.jpg are the same photo"
    ):
        load([first, second], progress=False)


def test_folders_given_twice_or_nested_or_empty_are_refused(two: tuple[Path, Path], tmp_path: Path) -> None:
    first, second = two
    with pytest.raises(DatasetError, match="the same folder or one is inside the other"):
        merged_class_folders([first, first])
    with pytest.raises(DatasetError, match="the same folder or one is inside the other"):
        merged_class_folders([first, first / "ants"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty has no class folder"):
        merged_class_folders([first, tmp_path / "empty"])
    with pytest.raises(DatasetError, match="does not exist"):
        merged_class_folders([first, tmp_path / "missing"])
    only_bees = tmp_path / "more"
    photos(only_bees / "bees", 1, "cat.bmp", first=70)
    with pytest.raises(
        DatasetError, match=r"have 1 class folder\(s\) \(bees\); a classifier needs at least 2"
    ):
        merged_class_folders([second, only_bees])


def test_every_check_covers_every_folder(two: tuple[Path, Path], tmp_path: Path) -> None:
    from training.dataset import splits
    from training.train import Options, train

    first, second = two
    with pytest.raises(DatasetError, match="would become a class of photos"):
        train([first, second], second / "model", Options())
    assert not (second / "model").exists()
    dataset = load([first, second], progress=False)
    test_dir = tmp_path / "test"
    photos(test_dir / "ants", 5, first=200)
    photos(test_dir / "bees", 4, "cat.bmp", first=200)
    shutil.copy(second / "bees" / "51.bmp", test_dir / "bees" / "seen.bmp")
    with pytest.raises(DatasetError, match=r"holds 1 photo.s. that are also in the training folders"):
        splits(dataset, Options(), test_dir)
    (test_dir / "bees" / "seen.bmp").unlink()
    photos(test_dir / "wasps", 5, first=300)
    with pytest.raises(
        DatasetError, match=r"has classes ants, bees, wasps; the training folders have ants, bees"
    ):
        train([first, second], tmp_path / "model", Options(), test_dir=test_dir)
