"""The model layer holds what the function reads, and nothing else (no reports, no .keras)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from layers.build import served_files
from tests.support import MODEL_DIR


def test_only_the_manifest_and_the_files_it_pins_less_keras(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(MODEL_DIR, model_dir)
    (model_dir / "evaluations" / "photos-20261127T000000Z").mkdir(parents=True)
    (model_dir / "evaluations" / "photos-20261127T000000Z" / "report.json").write_text("{}")
    (model_dir / "notes.txt").write_text("not served")
    pinned = set(json.loads((model_dir / "manifest.json").read_text())["files"])
    assert set(served_files(model_dir)) == {"manifest.json"} | {n for n in pinned if not n.endswith(".keras")}
    assert "labels.json" in served_files(model_dir)
    assert not [n for n in served_files(model_dir) if n.startswith("evaluation") or n == "notes.txt"]
