"""Dataset checks: every shape of folder a person might give gets a message that says what to do."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from devtools.cli import main
from tests.support import PHOTOS, distinct_copy
from training.dataset import MIN_IMAGES_PER_CLASS, DatasetError, class_folders, load, stratified_split


def photos(folder: Path, count: int, source: str = "grace_hopper.jpg", first: int = 0) -> None:
    """``count`` distinct photos made from ``source`` (numbered from ``first``: another number,
    another photo)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(first, first + count):
        distinct_copy(PHOTOS / source, folder / f"{index}{Path(source).suffix}", index)


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
    pixels = np.asarray(dataset.images)
    assert pixels.shape == (12, 224, 224, 3) and pixels.dtype == np.uint8 and pixels.min() < pixels.max()


def test_the_split_is_three_way_stratified_and_reproducible() -> None:
    labels = np.array([0] * 80 + [1] * 20)
    train, validation, test = stratified_split(labels, 0.15, seed=7, test=0.15)
    assert sorted([*train, *validation, *test]) == list(range(100))
    assert (labels[test] == 0).sum() == 12 and (labels[test] == 1).sum() == 3
    assert (labels[validation] == 0).sum() == 12 and (labels[validation] == 1).sum() == 3
    assert not set(train) & set(validation) | set(train) & set(test) | set(validation) & set(test)
    assert np.array_equal(stratified_split(labels, 0.15, seed=7, test=0.15)[2], test)
    assert len(stratified_split(labels, 0.2, seed=7)[2]) == 0, "no test share: no test split"


def test_photos_are_decoded_once_into_a_file_and_read_back_a_batch_at_a_time(tmp_path: Path) -> None:
    photos(tmp_path / "ants", 5)
    photos(tmp_path / "bees", 5, "cat.bmp")
    dataset = load(tmp_path, progress=False)
    stored = dataset.images.path
    assert stored.stat().st_size == 10 * 224 * 224 * 3, "uint8 rows on disk, one per photo"
    subset = dataset.subset(np.array([9, 0]))
    first, last = subset.images[np.array([1])], subset.images[0]
    assert first.shape == (1, 224, 224, 3) and first.dtype == np.uint8, "as decoded: models scale them"
    assert np.array_equal(first[0], dataset.images[0]) and np.array_equal(last, dataset.images[9])
    assert subset.labels.tolist() == [1, 0]
    del dataset, subset, first, last
    import gc

    gc.collect()
    assert not stored.exists(), "the file goes with the last view of it"


def test_a_class_folder_that_links_to_another_is_refused(tmp_path: Path) -> None:
    photos(tmp_path / "ants", 6)
    (tmp_path / "bees").symlink_to(tmp_path / "ants")
    with pytest.raises(
        DatasetError, match=r"bees and ants are the same folder .* each class needs photos of its own"
    ):
        class_folders(tmp_path)


def test_a_photo_in_two_classes_is_refused(tmp_path: Path) -> None:
    photos(tmp_path / "ants", 6)
    photos(tmp_path / "bees", 6, "cat.bmp")
    (tmp_path / "bees" / "same.jpg").symlink_to(tmp_path / "ants" / "0.jpg")
    with pytest.raises(DatasetError, match=r"bees/same.jpg and ants/0.jpg are the same file in two classes"):
        load(tmp_path, progress=False)


def test_an_oversized_file_is_skipped_by_its_size_unread(tmp_path: Path, monkeypatch) -> None:
    """A 2 GB file in a class folder costs a stat(), never a read (here: 51 MB, sparse)."""
    photos(tmp_path / "ants", 6)
    photos(tmp_path / "bees", 6, "cat.bmp")
    with (tmp_path / "bees" / "huge.jpg").open("wb") as huge:
        huge.truncate(51 * 1024 * 1024)
    opened: list[str] = []
    real_read_bytes = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: opened.append(self.name) or real_read_bytes(self))
    dataset = load(tmp_path, progress=False)
    assert "huge.jpg" not in opened
    assert [file for file, _ in dataset.skipped] == ["bees/huge.jpg"]


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


def test_out_is_checked_before_anything_is_trained(tmp_path: Path) -> None:
    from training.train import Options, train

    photos(tmp_path / "data" / "ants", 6)
    photos(tmp_path / "data" / "bees", 6, "cat.bmp")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetError, match=r"--out .*file is a file: name a new folder"):
        train(tmp_path / "data", tmp_path / "file", Options())
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="holds files that are not a model directory"):
        train(tmp_path / "data", busy, Options())
    assert (busy / "notes.txt").read_text() == "mine" and (tmp_path / "file").read_text() == "x"


def test_a_training_that_fails_leaves_nothing_behind(tmp_path: Path) -> None:
    from training.train import Options, train

    photos(tmp_path / "data" / "ants", 6)
    photos(tmp_path / "data" / "bees", 2, "cat.bmp")
    models = tmp_path / "models"
    with pytest.raises(DatasetError, match="Too few readable photos in bees"):
        train(tmp_path / "data", models / "mine", Options())
    assert list(models.iterdir()) == [], "no staging folder left"


def test_a_test_folder_must_have_the_training_classes(tmp_path: Path) -> None:
    from training.dataset import splits
    from training.options import Options

    photos(tmp_path / "data" / "ants", 6)
    photos(tmp_path / "data" / "bees", 6, "cat.bmp")
    photos(tmp_path / "other" / "ants", 5, first=100)
    photos(tmp_path / "other" / "wasps", 5, "cat.bmp", first=100)
    dataset = load(tmp_path / "data", progress=False)
    with pytest.raises(
        DatasetError, match=r"--test-dir .* has classes ants, wasps; the training folder has ants, bees"
    ):
        splits(dataset, Options(), tmp_path / "other")
    photos(tmp_path / "mine" / "ants", 5, first=100)
    photos(tmp_path / "mine" / "bees", 5, "cat.bmp", first=100)
    train, validation, test = splits(dataset, Options(), tmp_path / "mine")
    assert len(test.labels) == 10 and test.root == tmp_path / "mine", "the given folder, whole"
    assert len(train.labels) + len(validation.labels) == 12, "no test share taken from the training folder"
    with pytest.raises(DatasetError, match=r"holds 12 photo.s. that are also in the training folder"):
        splits(dataset, Options(), tmp_path / "data")


def test_a_copy_is_skipped_in_its_class_and_refused_across_classes(tmp_path: Path) -> None:
    """Byte-identical copies would count twice or straddle the splits (a test photo seen in training)."""
    photos(tmp_path / "ants", 6)
    photos(tmp_path / "bees", 6, "cat.bmp")
    shutil.copy(tmp_path / "ants" / "0.jpg", tmp_path / "ants" / "copy.jpg")
    dataset = load(tmp_path, progress=False)
    assert dataset.counts() == {"ants": 6, "bees": 6}
    assert ("ants/copy.jpg", "the same photo as ants/0.jpg") in dataset.skipped
    shutil.copy(tmp_path / "ants" / "1.jpg", tmp_path / "bees" / "stray.jpg")
    with pytest.raises(
        DatasetError, match=r"bees/stray.jpg and ants/1.jpg are the same photo \(same bytes\)"
    ):
        load(tmp_path, progress=False)


def test_a_linked_sub_folder_is_listed_not_followed(tmp_path: Path) -> None:
    photos(tmp_path / "ants", 6)
    photos(tmp_path / "bees", 6, "cat.bmp")
    (tmp_path / "ants" / "loop").symlink_to(tmp_path)
    dataset = load(tmp_path, progress=False)
    assert ("ants/loop", "a link to a folder: not followed") in dataset.skipped
    assert dataset.counts() == {"ants": 6, "bees": 6}


@pytest.mark.parametrize("where", ["inside", "is", "around"])
def test_out_never_lands_among_the_photos(tmp_path: Path, where: str) -> None:
    from training.train import Options, train

    data = tmp_path / "data"
    photos(data / "ants", 6)
    photos(data / "bees", 6, "cat.bmp")
    out = {"inside": data / "models" / "m", "is": data, "around": tmp_path}[where]
    with pytest.raises(DatasetError, match="would become a class of photos"):
        train(data, out, Options())
    assert sorted(p.name for p in data.iterdir()) == ["ants", "bees"], "nothing created there"


def test_out_that_only_looks_like_a_model_directory_is_refused(tmp_path: Path) -> None:
    """A web project has a manifest.json too: only a model directory whose manifest checks may be
    replaced; a link is refused rather than followed."""
    from training.train import Options, train

    photos(tmp_path / "data" / "ants", 6)
    photos(tmp_path / "data" / "bees", 6, "cat.bmp")
    app = tmp_path / "my-app"
    app.mkdir()
    (app / "manifest.json").write_text('{"name": "my app", "start_url": "/"}')
    with pytest.raises(DatasetError, match="holds files that are not a model directory"):
        train(tmp_path / "data", app, Options())
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(DatasetError, match="is a link: name the folder itself"):
        train(tmp_path / "data", tmp_path / "link", Options())
    assert (app / "manifest.json").is_file()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"validation_split": 0.0}, "--validation-split must be above 0"),
        ({"test_split": 0.5, "validation_split": 0.45}, "leave too little to train on"),
        ({"target_sensitivity": 1.5}, "--target-sensitivity must be above 0 and at most 1"),
        ({"batch_size": 0}, "--batch-size must be at least 1"),
        ({"imagenet_classes": "ants:ant"}, "write FOLDER=LABEL pairs"),
        ({"imagenet_classes": "ants=ant,bees="}, "write FOLDER=LABEL pairs"),
        ({"imagenet_classes": "ants=ant,bees=ant"}, "names a folder or a label twice"),
        ({"imagenet_classes": "ants=ant,ants=bee"}, "names a folder or a label twice"),
        ({"imagenet_classes": "ants=ant,bees=bee", "imagenet_scores": True}, "choose one"),
    ],
)
def test_settings_that_cannot_train_are_refused_before_anything_is_read(settings: dict, message: str) -> None:
    from training.options import Options

    with pytest.raises(ValueError, match=message):
        Options(**settings)


def test_imagenet_classes_read_as_folder_to_label() -> None:
    from training.options import Options

    assert Options(imagenet_classes=" ants = ant,bees=bee ").imagenet_mapping() == {
        "ants": "ant",
        "bees": "bee",
    }
    assert Options().imagenet_mapping() == {}
