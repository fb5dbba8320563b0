"""Classification metrics from labels and probabilities, in plain numpy (no extra dependency)."""

from __future__ import annotations

import numpy as np


def confusion(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """``matrix[true, predicted]`` counts."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    return matrix


def per_class(matrix: np.ndarray) -> list[dict[str, float]]:
    """Precision, recall, F1 and support of each class."""
    rows = []
    for index in range(len(matrix)):
        tp = matrix[index, index]
        predicted, actual = matrix[:, index].sum(), matrix[index, :].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append(
            {"precision": float(precision), "recall": float(recall), "f1": float(f1), "support": int(actual)}
        )
    return rows


def roc(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """ROC curve (false and true positive rates) and its AUC for binary ``truth`` (1 = positive)."""
    order = np.argsort(-scores, kind="stable")
    truth, scores = truth[order], scores[order]
    positives, negatives = truth.sum(), len(truth) - truth.sum()
    if not positives or not negatives:
        return np.array([0.0, 1.0]), np.array([0.0, 1.0]), float("nan")
    distinct = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tps = np.cumsum(truth)[distinct]
    fps = (distinct + 1) - tps
    tpr = np.r_[0.0, tps / positives]
    fpr = np.r_[0.0, fps / negatives]
    return fpr, tpr, float(np.trapezoid(tpr, fpr))


def summary(truth: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, balanced accuracy, per-class scores, the confusion matrix, and ROC AUC for two classes."""
    predicted = probabilities.argmax(axis=1)
    matrix = confusion(truth, predicted, len(classes))
    scores = per_class(matrix)
    recalls = [row["recall"] for row in scores if row["support"]]
    result = {
        "images": len(truth),
        "accuracy": float((predicted == truth).mean()) if len(truth) else 0.0,
        "balanced_accuracy": float(np.mean(recalls)) if recalls else 0.0,
        "per_class": dict(zip(classes, scores, strict=True)),
        "confusion_matrix": matrix.tolist(),
    }
    if len(classes) == 2:
        _, _, auc = roc(truth, probabilities[:, 1])
        result["roc_auc"] = auc
        result["positive_class"] = classes[1]
    return result
