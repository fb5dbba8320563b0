"""Calibration and drift figures in plain numpy: expected calibration error on hand-made numbers,
the temperature fit on an over-confident synthetic model, the card's baseline."""

from __future__ import annotations

import numpy as np
import pytest

from handler.recognition.model import calibrated
from training import calibration, metrics
from training.card import baseline


def test_expected_calibration_error_on_hand_made_numbers() -> None:
    """Four answers at 95 % of which three are right (gap 0.20) and two at 55 %, both right (gap
    0.45): (4 x 0.20 + 2 x 0.45) / 6."""
    probabilities = np.array([[0.95, 0.05]] * 4 + [[0.45, 0.55]] * 2)
    truth = np.array([0, 0, 0, 1, 1, 1])
    assert metrics.expected_calibration_error(truth, probabilities) == pytest.approx((0.8 + 0.9) / 6)
    bins = metrics.reliability(truth, probabilities)
    assert len(bins) == 15 and sum(row["count"] for row in bins) == 6
    (high,) = [row for row in bins if row["count"] == 4]
    assert high["low"] == pytest.approx(14 / 15) and high["accuracy"] == 0.75
    assert high["confidence"] == pytest.approx(0.95)
    perfect = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert metrics.expected_calibration_error(np.array([0, 1]), perfect) == 0.0
    assert metrics.expected_calibration_error(np.array([], dtype=int), np.zeros((0, 2))) == 0.0


def overconfident(seed: int = 7, n: int = 3000, sharpening: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z) but reported as softmax(4 z): the over-confident model a
    temperature of 4 repairs exactly."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 3))
    honest = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    truth = (rng.random(n)[:, None] > np.cumsum(honest, axis=1)).sum(axis=1)
    sharp = np.exp(sharpening * logits)
    return truth, (sharp / sharp.sum(axis=1, keepdims=True)).astype(np.float32)


def test_the_fit_lowers_nll_and_ece_of_an_overconfident_model() -> None:
    truth, probabilities = overconfident()
    temperature = metrics.fit_temperature(truth, probabilities)
    assert 3.4 < temperature < 4.6, "close to the sharpening that made it over-confident"
    after = calibrated(probabilities, temperature)
    assert metrics.negative_log_likelihood(truth, after) < metrics.negative_log_likelihood(
        truth, probabilities
    )
    before_ece = metrics.expected_calibration_error(truth, probabilities)
    assert metrics.expected_calibration_error(truth, after) < before_ece / 3
    assert (after.argmax(axis=1) == probabilities.argmax(axis=1)).all(), "the ranking never changes"


def test_temperature_one_leaves_probabilities_unchanged() -> None:
    truth, probabilities = overconfident(sharpening=1.0)
    assert calibrated(probabilities, 1.0) is probabilities
    assert metrics.fit_temperature(truth, probabilities) == pytest.approx(1.0, abs=0.12), "already calibrated"
    fitted = calibration.fit(truth, probabilities, truth, probabilities)
    assert fitted["method"] == "temperature scaling, fitted on the validation split"
    assert set(fitted["ece_before"]) == set(fitted["ece_after"]) == {"validation", "test"}


def test_a_validation_split_with_no_mistake_is_not_sharpened_without_limit() -> None:
    """Every answer right: the NLL keeps falling as T shrinks (no finite optimum); T stays 1."""
    probabilities = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], dtype=np.float32)
    truth = np.array([0, 1, 0])
    assert metrics.fit_temperature(truth, probabilities) == pytest.approx(0.05, rel=1e-3)
    fitted = calibration.fit(truth, probabilities, truth, probabilities)
    assert fitted["temperature"] == 1.0 and fitted["note"] == calibration.NOT_FITTED
    assert fitted["ece_after"] == fitted["ece_before"]


def test_the_fit_softens_an_always_wrong_confident_model_to_the_bound() -> None:
    probabilities = np.array([[0.99, 0.01], [0.02, 0.98]], dtype=np.float32)
    assert metrics.fit_temperature(np.array([1, 0]), probabilities) == pytest.approx(20.0, rel=1e-3)


def test_the_baseline_is_what_drift_is_measured_against() -> None:
    probabilities = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    figures = baseline(probabilities, ["ants", "bees", "wasps"], min_confidence=0.75)
    assert figures == {
        "split": "validation",
        "predictions": 4,
        "mean_top1_confidence": pytest.approx(0.75),
        "uncertain_rate": 0.5,
        "top_class_share": {"ants": 0.5, "bees": 0.25, "wasps": 0.25},
    }
    without = baseline(probabilities, ["ants", "bees", "wasps"], min_confidence=None)
    assert without["uncertain_rate"] is None and sum(without["top_class_share"].values()) == 1


def test_warnings_name_a_model_no_better_than_the_majority_or_chance_and_calibration_that_hurt() -> None:
    """The skin-lesion run a newcomer saw: AUC 0.566 with an interval spanning 0.5, calibration
    that took the test ECE from 0.027 to 0.042, and nothing printed. Now each is said."""
    from training.card import warnings_of

    truth = np.array([0] * 8 + [1] * 2)
    card = {
        "test": {
            "accuracy": 0.8,
            "accuracy_95ci": [0.49, 0.94],
            "roc_auc": 0.566,
            "roc_auc_95ci": [0.3, 0.8],
        },
        "calibration": {"temperature": 1.3, "ece_before": {"test": 0.027}, "ece_after": {"test": 0.042}},
    }
    found = warnings_of(card, truth, 2)
    assert len(found) == 3, found
    assert "does not beat always answering the largest class (0.800)" in found[0]
    assert "does not beat chance (0.5)" in found[1] and "(0.027 -> 0.042)" in found[2]
    good = {
        "test": {
            "accuracy": 0.95,
            "accuracy_95ci": [0.85, 0.99],
            "roc_auc": 0.97,
            "roc_auc_95ci": [0.9, 1.0],
        },
        "calibration": {"temperature": 1.1, "ece_before": {"test": 0.05}, "ece_after": {"test": 0.03}},
    }
    assert warnings_of(good, truth, 2) == []
