"""The in-domain detector's arithmetic (no TensorFlow): the shrunk covariance, the distance, the
threshold, the card's figures, the synthetic outside photos, and the serving side's flag."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from handler.recognition.model import Classifier, ModelInfo
from training import in_domain


def test_the_distance_is_the_squared_mahalanobis_distance_to_the_nearest_class() -> None:
    rng = np.random.default_rng(0)
    scales = np.array([1.0, 2.0, 4.0, 8.0, 16.0])  # far from a multiple of the identity
    features = np.concatenate([rng.normal(0, 1, (200, 5)), rng.normal(4, 1, (200, 5))]) * scales
    labels = np.repeat([0, 1], 200)
    detector, shrinkage = in_domain.fit(features, labels, 2)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)  # the detector reads unit length
    means = np.stack([unit[labels == c].mean(0) for c in (0, 1)])
    covariance, _ = in_domain.ledoit_wolf(unit - means[labels])
    inverse = np.linalg.inv(covariance)
    probes = rng.normal(2, 3, (7, 5))
    units = probes / np.linalg.norm(probes, axis=1, keepdims=True)
    expected = np.min([[(p - m) @ inverse @ (p - m) for m in means] for p in units], axis=1)
    assert np.allclose(detector.distances(probes), expected, rtol=1e-4)
    assert 0 <= shrinkage < 0.2, "400 photos of 5 numbers, unequal variances: little to shrink"
    assert np.allclose(detector.distances(probes * 7), detector.distances(probes), rtol=1e-4), "length-free"


def test_with_fewer_photos_than_features_the_covariance_is_shrunk_and_invertible() -> None:
    rng = np.random.default_rng(1)
    centered = rng.normal(0, 1, (20, 50))
    covariance, shrinkage = in_domain.ledoit_wolf(centered - centered.mean(0))
    assert 0.3 < shrinkage <= 1
    assert np.linalg.eigvalsh(covariance).min() > 0, "the empirical one is singular (rank 19)"


def test_the_threshold_lets_95_percent_of_validation_through() -> None:
    distances = np.arange(1, 101, dtype=float)
    limit = in_domain.threshold(distances)
    assert (distances <= limit).mean() == pytest.approx(0.95, abs=0.01)


def test_the_cards_figures_can_fail() -> None:
    inside, outside = np.array([1.0, 2.0, 3.0, 10.0]), np.array([4.0, 12.0, 20.0])
    figures = in_domain.figures(inside, outside, 5.0, ["noise: 3"])
    assert figures["test_pass_rate"] == 0.75 and figures["outside_catch_rate"] == round(2 / 3, 4)
    assert figures["auroc"] == round(11 / 12, 4) and figures["outside_sources"] == ["noise: 3"]
    low, high = figures["test_pass_rate_95ci"]
    assert low < 0.75 < high


def test_the_synthetic_outside_photos_are_jpegs_of_pages_and_noise() -> None:
    photos = in_domain.synthetic_outside()
    assert len(photos) == in_domain.SYNTHETIC
    sizes = {Image.open(io.BytesIO(photo)).size for photo in photos}
    assert sizes == {(400, 560), (224, 224)}


class Answering:
    """A backend with a detector: fixed probabilities and the given distances."""

    input_shape, input_dtype, classes, detects = (224, 224, 3), "uint8", 2, True

    def __init__(self, distances) -> None:
        self.distances = np.asarray(distances, dtype=np.float32)

    def outputs(self, batch):
        return np.tile([[0.3, 0.7]], (len(batch), 1)).astype(np.float32), self.distances[: len(batch)]


def test_each_answer_says_whether_its_photo_is_within_the_threshold() -> None:
    info = ModelInfo("bees", "1.0.0", "litert")
    manifest = {"in_domain": {"threshold": 10.0}}
    classifier = Classifier(
        Answering([3.0, 10.0, 11.0, np.nan]), [(None, "ants"), (None, "bees")], info, manifest
    )
    assessed = classifier.assess(np.zeros((4, 224, 224, 3), np.uint8), top_k=1)
    assert [known for _, known in assessed] == [True, True, False, False], "NaN is outside"
    assert [ranked[0].label for ranked, _ in assessed] == ["bees"] * 4, "the ranking is still given"
    no_detector = Classifier(Answering([99.0]), [(None, "ants"), (None, "bees")], info, {})
    assert [known for _, known in no_detector.assess(np.zeros((1, 224, 224, 3), np.uint8))] == [True]
