"""What a trained model directory says about itself: the manifest's fields (``manifest_fields``,
what the serving code reads) and the model card inside them (``model_card``: the data, the
settings, the training history, then the figures), with the card's drift ``baseline`` and the
``warnings`` a person must read before trusting it."""

from __future__ import annotations

import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from layers.model import manifest_writer
from training import metrics
from training.dataset import Splits
from training.imagenet_start import Start
from training.options import Options
from training.phases import Fitted

BASE_MODEL = (
    'keras.applications.MobileNetV2(weights="imagenet") up to out_relu (= include_top=False), 224x224'
)


def head_description(start: Start, classes: int) -> str:
    """The card's ``head``: how it started."""
    if not start.rows:
        return "Dense(1024, relu), dropout, softmax; random start"
    return (
        "linear, started as ImageNet's classifier for "
        + ", ".join(f"{c}={label}" for c, label in start.labels.items())
        + " (the zero-shot answer)"
        + ("" if len(start.labels) == classes else "; the other classes from a random start")
    )


def model_card(
    data: Splits, options: Options, test_dir: Path | None, start: Start, fitted: Fitted, seconds: float
) -> dict:
    """The card as training leaves it (the figures are added after evaluation): the base, the head,
    each class's photos per split, the data, the settings and the training history."""
    dataset = data.dataset
    return {
        "base_model": BASE_MODEL,
        "head": head_description(start, len(dataset.classes)),
        "classes": {
            name: {
                "train": data.train.counts()[name],
                "validation": data.validation.counts()[name],
                "test": data.test.counts()[name],
            }
            for name in dataset.classes
        },
        "data": {
            "folder": data.name,
            "folders": dataset.folders,
            "fingerprint_sha256": dataset.fingerprint(),
            "images": len(dataset.labels),
            "skipped": [{"file": file, "why": why} for file, why in dataset.skipped],
            "test": f"--test-dir {test_dir.name}" if test_dir else f"{options.test_split:.0%} of each class",
        },
        "hyperparameters": asdict(options),
        "history": fitted.history,
        "training_seconds": round(seconds, 1),
        "phase_seconds": fitted.seconds,
        "min_confidence": options.min_confidence,
    }


def manifest_fields(
    options: Options, data_name: str, classes: int, artifacts: dict, in_domain: dict, card: dict
) -> dict:
    """The manifest's fields for a trained model (``layers.model.manifest_writer`` adds the files'
    pins): what it is, what its files take (``input``, ``preprocessing``) and answer, how it was
    built, its in-domain detector and its card."""
    import keras
    import tensorflow as tf

    return {
        "name": options.name,
        "version": options.version,
        "source": f"trained by `imgrec train` on {data_name}",
        "input": dict(manifest_writer.INPUT),  # uint8 pixels, scaled in the graph (``model.build``)
        "preprocessing": dict(manifest_writer.PREPROCESSING),
        "output": {"classes": classes, "activation": "softmax"},
        "artifacts": artifacts,
        "built_with": {
            "keras": keras.__version__,
            "tensorflow": tf.__version__,
            "python": sys.version.split()[0],
        },
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "in_domain": in_domain,
        "card": card,
    }


def baseline(probabilities: np.ndarray, classes: list[str], min_confidence: float | None) -> dict:
    """The card's ``baseline``, what served traffic is compared with to see drift: on the
    validation split's (calibrated, served) ``probabilities``, the mean top-1 confidence, the share
    of answers below ``min_confidence`` (None without one) and each class's share of top-1 answers."""
    predicted, confidence = metrics.top1(probabilities)
    count = len(predicted)
    shares = np.bincount(predicted, minlength=len(classes)) / count if count else np.zeros(len(classes))
    return {
        "split": "validation",
        "predictions": count,
        "mean_top1_confidence": round(float(confidence.mean()), 4) if count else 0.0,
        "uncertain_rate": (
            round(float((confidence < min_confidence).mean()), 4)
            if min_confidence is not None and count
            else None
        ),
        "top_class_share": {name: float(share) for name, share in zip(classes, shares, strict=True)},
    }


def warnings_of(card: dict, test_truth: np.ndarray, classes: int) -> list[str]:
    """What a person must know before trusting the card: test figures that do not beat chance or
    the majority class (their interval includes it), calibration that made the test split worse."""
    found = []
    test = card["test"]
    majority = float(np.bincount(test_truth, minlength=classes).max() / len(test_truth))
    low, high = test["accuracy_95ci"]
    if low <= majority:
        found.append(
            f"test accuracy {test['accuracy']:.3f} (95 % interval {low:.3f}-{high:.3f}) does not beat always "
            f"answering the largest class ({majority:.3f}): this model may have learned nothing useful"
        )
    if "roc_auc_95ci" in test and test["roc_auc_95ci"][0] <= 0.5:
        auc_low, auc_high = test["roc_auc_95ci"]
        found.append(
            f"test ROC AUC {test['roc_auc']:.3f} (95 % interval {auc_low:.3f}-{auc_high:.3f}) does not beat "
            "chance (0.5)"
        )
    fitted = card.get("calibration", {})
    before, after = fitted.get("ece_before", {}).get("test"), fitted.get("ece_after", {}).get("test")
    if before is not None and after is not None and after > before:
        found.append(
            f"calibration (T = {fitted['temperature']:g}, fitted on validation) made the test split's "
            f"expected calibration error worse ({before:.3f} -> {after:.3f}); T is kept because the test "
            "split chooses nothing: more validation photos would fit it better"
        )
    return found
