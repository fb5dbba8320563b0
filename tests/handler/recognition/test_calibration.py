"""Temperature scaling at serving: the manifest's temperature reshapes every probability the model
gives, never its ranking; a manifest with a temperature no fit could produce is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from handler.recognition import manifest, model
from handler.recognition.model import calibrated
from tests.support import MODEL_DIR, link_file


def test_temperature_one_changes_nothing_and_others_keep_the_ranking() -> None:
    p = np.array([[0.7, 0.2, 0.1], [0.05, 0.9, 0.05]], dtype=np.float32)
    assert calibrated(p, 1.0) is p
    for temperature in (0.5, 2.0, 7.0):
        q = calibrated(p, temperature)
        np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-6)
        assert (np.argsort(-q, axis=1) == np.argsort(-p, axis=1)).all()
    assert calibrated(p, 2.0)[0, 0] < 0.7 < calibrated(p, 0.5)[0, 0], "T > 1 softens, T < 1 sharpens"
    logits = np.log(p)
    expected = np.exp(logits / 3) / np.exp(logits / 3).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(calibrated(p, 3.0), expected, rtol=1e-5)


def test_a_zero_probability_does_not_break_the_arithmetic() -> None:
    q = calibrated(np.array([[1.0, 0.0]], dtype=np.float32), 2.0)
    assert np.isfinite(q).all() and q[0, 0] > 0.99


def with_temperature(tmp_path: Path, temperature) -> Path:
    """The ImageNet export, its files linked, its manifest with a temperature."""
    folder = tmp_path / "model"
    folder.mkdir()
    for item in MODEL_DIR.iterdir():
        if item.is_file() and item.name != "manifest.json":
            link_file(item, folder / item.name)
    fields = json.loads((MODEL_DIR / "manifest.json").read_text())
    fields["calibration"] = {"temperature": temperature}
    (folder / "manifest.json").write_text(json.dumps(fields))
    return folder


def test_the_served_probabilities_are_the_calibrated_ones(tmp_path: Path, classifier) -> None:
    warmer = model.load_classifier(with_temperature(tmp_path, 2.0), "litert", threads=1)
    batch = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    np.testing.assert_allclose(
        warmer.probabilities(batch), calibrated(classifier.probabilities(batch), 2.0), atol=1e-5
    )
    assert warmer.classify(batch, 1)[0][0].label == classifier.classify(batch, 1)[0][0].label


@pytest.mark.parametrize("temperature", [0, -1, 0.01, 50, float("nan"), "2", True])
def test_a_temperature_no_fit_produces_is_refused(tmp_path: Path, temperature) -> None:
    folder = with_temperature(tmp_path, temperature)
    with pytest.raises(manifest.ManifestError, match=r"calibration\.temperature"):
        manifest.validate(folder)
