"""``imgrec evaluate`` on the ImageNet model: folders named by Keras label or WordNet id; each
evaluation in a folder of its own, never over the training report or an earlier evaluation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from devtools.cli import main
from tests.support import MODEL_DIR, PHOTOS, distinct_copy, link_file


def labelled_photos(data: Path) -> Path:
    for folder, photo in (("military_uniform", "grace_hopper.jpg"), ("n02124075", "cat.bmp")):
        (data / folder).mkdir(parents=True)
        for index in range(5):
            distinct_copy(PHOTOS / photo, data / folder / f"{index}{Path(photo).suffix}", index)
    (data / "n02124075" / "notes.txt").write_text("skipped, and listed in the report")
    return data


@pytest.mark.slow
def test_evaluate_the_imagenet_model_on_labelled_folders(tmp_path: Path, capsys) -> None:
    data = labelled_photos(tmp_path / "photos")
    out = tmp_path / "report"
    assert main(["evaluate", str(data), "--model-dir", str(MODEL_DIR), "--out", str(out)]) == 0
    headline = (
        "photos: accuracy 1.000 (95 % CI 0.722-1.000), balanced accuracy 1.000, ROC AUC 1.000 (10 images)"
    )
    assert headline in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["confusion_matrix"] == [[5, 0], [0, 5]] and report["misclassified"] == []
    assert report["per_class"]["military_uniform"] == {
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "support": 5,
    }
    assert report["skipped"][0]["file"] == "n02124075/notes.txt"
    assert {p.name for p in out.iterdir()} == {"report.json", "report.md", "confusion_matrix.png", "roc.png"}
    assert "| ROC AUC (n02124075 positive) | 1.000 |" in (out / "report.md").read_text()


def test_a_folder_that_names_no_class_is_a_message(tmp_path: Path, capsys) -> None:
    for folder in ("military_uniform", "unicorn"):
        (tmp_path / folder).mkdir()
        for index in range(5):
            distinct_copy(
                PHOTOS / "grace_hopper.jpg", tmp_path / folder / f"{index}.jpg", index + 10 * len(folder)
            )
    assert main(["evaluate", str(tmp_path), "--model-dir", str(MODEL_DIR), "--out", str(tmp_path / "r")]) == 2
    assert "Folder 'unicorn' is not a class of mobilenet_v2" in capsys.readouterr().out
    assert not (tmp_path / "r").exists()  # no empty report folder left behind


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.slow
def test_each_evaluation_gets_a_new_folder_beside_the_training_report(tmp_path: Path, capsys) -> None:
    model_dir = tmp_path / "model"  # the served files linked, so the evaluations land here
    model_dir.mkdir()
    for file in MODEL_DIR.iterdir():
        if file.is_file():
            link_file(file, model_dir / file.name)
    training_report = model_dir / "evaluation"  # what `imgrec train` wrote
    training_report.mkdir()
    (training_report / "report.md").write_text("# skin-lesions: validation split\n")
    data = labelled_photos(tmp_path / "new-photos")
    arguments = ["evaluate", str(data), "--model-dir", str(model_dir)]

    assert main(arguments) == 0
    first = Path(re.search(r"report written to (\S+)", capsys.readouterr().out).group(1))
    assert first.parent == model_dir / "evaluations"
    assert re.fullmatch(r"new-photos-\d{8}T\d{6}Z", first.name)
    before = snapshot(first)
    assert {"report.json", "report.md", "confusion_matrix.png", "roc.png"} <= set(before)

    assert main(arguments) == 0  # the same data again, possibly within the same second
    second = Path(re.search(r"report written to (\S+)", capsys.readouterr().out).group(1))
    assert second != first and second.parent == first.parent
    assert re.fullmatch(r"new-photos-\d{8}T\d{6}Z(-\d+)?", second.name)
    assert snapshot(first) == before
    assert snapshot(training_report) == {"report.md": b"# skin-lesions: validation split\n"}
    assert json.loads((second / "report.json").read_text())["accuracy"] == 1.0

    # --out naming a folder that holds files: a message, nothing written there, nothing created.
    assert main([*arguments, "--out", str(first)]) == 2
    assert f"error: {first} already holds files" in capsys.readouterr().out
    assert snapshot(first) == before
    assert sorted(p.name for p in (model_dir / "evaluations").iterdir()) == sorted([first.name, second.name])
