"""``imgrec evaluate`` on the ImageNet model: folders named by Keras label or WordNet id."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from devtools.cli import main
from tests.support import MODEL_DIR, PHOTOS


def test_evaluate_the_imagenet_model_on_labelled_folders(tmp_path: Path, capsys) -> None:
    data = tmp_path / "photos"
    for folder, photo in (("military_uniform", "grace_hopper.jpg"), ("n02124075", "cat.bmp")):
        (data / folder).mkdir(parents=True)
        for index in range(5):
            shutil.copy(PHOTOS / photo, data / folder / f"{index}{Path(photo).suffix}")
    (data / "n02124075" / "notes.txt").write_text("skipped, and listed in the report")
    out = tmp_path / "report"
    assert main(["evaluate", str(data), "--model-dir", str(MODEL_DIR), "--out", str(out)]) == 0
    assert "accuracy 1.000, balanced accuracy 1.000, ROC AUC 1.000 (10 images)" in capsys.readouterr().out
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
            shutil.copy(PHOTOS / "grace_hopper.jpg", tmp_path / folder / f"{index}.jpg")
    assert main(["evaluate", str(tmp_path), "--model-dir", str(MODEL_DIR), "--out", str(tmp_path / "r")]) == 2
    assert "Folder 'unicorn' is not a class of mobilenet_v2" in capsys.readouterr().out
