"""Training past memory: a few thousand generated photos, one epoch, memory bounded loosely.

The photos' float32 arrays alone would take 1.2 GB (and the old split copied them again); streamed
from disk, the training process stays near the model's own size. A bound, not a benchmark: the
figures are ``make bench-train``'s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.synthetic_photos import write_dataset
from tests.support import REPO

pytestmark = [pytest.mark.slow]

PHOTOS = 2_000
# The goal for any dataset size. Measured here (3,000 photos): about 1.5 GB, most of it
# TensorFlow, the model and the .tflite converter, none of it the photos; held in memory as float32
# these 2,000 would add 1.2 GB on their own (2.7 GB in all), and the old split copied them once more.
BOUND_MB = 2_500


def test_a_few_thousand_photos_train_in_bounded_memory(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "generated", PHOTOS // 2, side=64)
    out = tmp_path / "model"
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools", "train", str(data), "--out", str(out), "--epochs", "1",
         "--fine-tune-layers", "0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )  # fmt: skip
    printed = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    assert status == 0, printed[-3000:]
    card = json.loads((out / "manifest.json").read_text())["card"]
    assert card["data"]["images"] == PHOTOS and card["classes"]["discs"] == {
        "train": 700,
        "validation": 150,
        "test": 150,
    }
    assert card["test"]["accuracy"] > 0.6, "discs and squares are learnable: the pipeline fed real photos"
    peak_mb = usage.ru_maxrss / 1024
    assert peak_mb < BOUND_MB, f"peak RSS {peak_mb:.0f} MB"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("imgrec-")], "the pixel files are gone"
