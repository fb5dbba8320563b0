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


def wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion: honest for small sets and for 0 % or 100 %."""
    if not trials:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def bootstrap_auc(
    truth: np.ndarray, scores: np.ndarray, rounds: int = 1000, seed: int = 7
) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the ROC AUC (resampling photos, within each class)."""
    rng = np.random.default_rng(seed)
    positives, negatives = np.flatnonzero(truth == 1), np.flatnonzero(truth == 0)
    if not len(positives) or not len(negatives):
        return float("nan"), float("nan")
    aucs = []
    for _ in range(rounds):
        sample = np.r_[rng.choice(positives, len(positives)), rng.choice(negatives, len(negatives))]
        aucs.append(roc(truth[sample], scores[sample])[2])
    low, high = np.percentile(aucs, [2.5, 97.5])
    return float(low), float(high)


def operating_point(truth: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """Two classes: calling ``scores >= threshold`` positive, the sensitivity (recall of the positive
    class) and specificity (recall of the negative one), with their 95 % intervals and counts."""
    called = scores >= threshold
    tp, fn = int((called & (truth == 1)).sum()), int((~called & (truth == 1)).sum())
    tn, fp = int((~called & (truth == 0)).sum()), int((called & (truth == 0)).sum())
    return {
        "threshold": float(threshold),  # as chosen: rounding up could miss the photo that set it
        "sensitivity": tp / (tp + fn) if tp + fn else 0.0,
        "sensitivity_95ci": wilson(tp, tp + fn),
        "specificity": tn / (tn + fp) if tn + fp else 0.0,
        "specificity_95ci": wilson(tn, tn + fp),
        "counts": {"true_positive": tp, "false_negative": fn, "true_negative": tn, "false_positive": fp},
    }


def threshold_for_sensitivity(truth: np.ndarray, scores: np.ndarray, target: float) -> float | None:
    """The highest threshold whose sensitivity on these photos reaches ``target`` (chosen on the
    validation split, then reported on the test split, where it may fall short); None without any
    positive photo to choose it on."""
    positives = np.sort(scores[truth == 1])[::-1]
    if not len(positives):
        return None
    needed = int(np.ceil(target * len(positives) - 1e-9))  # 0.55 x 100 is 55, not 55.000000000000007
    return float(positives[max(needed, 1) - 1])


def top1(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's top-1 class and its probability (the confidence an answer reports)."""
    predicted = probabilities.argmax(axis=1)
    return predicted, probabilities[np.arange(len(probabilities)), predicted].astype(np.float64)


def reliability(truth: np.ndarray, probabilities: np.ndarray, bins: int = 15) -> list[dict]:
    """The reliability diagram's bins: ``bins`` equal-width bins of top-1 confidence, ``(i/bins,
    (i+1)/bins]`` (the first one takes 0 too), each with its photos, mean confidence and accuracy."""
    predicted, confidence = top1(probabilities)
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    rows = []
    for index in range(bins):
        members = which == index
        count = int(members.sum())
        rows.append(
            {
                "low": index / bins,
                "high": (index + 1) / bins,
                "count": count,
                "confidence": float(confidence[members].mean()) if count else None,
                "accuracy": float((predicted[members] == truth[members]).mean()) if count else None,
            }
        )
    return rows


def expected_calibration_error(truth: np.ndarray, probabilities: np.ndarray, bins: int = 15) -> float:
    """ECE: over ``bins`` equal-width bins of top-1 confidence, the photo-weighted mean gap between
    a bin's accuracy and its mean confidence (0: a 70 % answer is right 70 % of the time)."""
    if not len(truth):
        return 0.0
    return float(
        sum(
            row["count"] * abs(row["accuracy"] - row["confidence"])
            for row in reliability(truth, probabilities, bins)
            if row["count"]
        )
        / len(truth)
    )


def negative_log_likelihood(truth: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean ``-log p(true class)`` (probabilities clipped at 1e-12)."""
    if not len(truth):
        return 0.0
    chosen = probabilities[np.arange(len(truth)), truth].astype(np.float64)
    return float(-np.log(np.clip(chosen, 1e-12, None)).mean())


TEMPERATURE_BOUNDS = (0.05, 20.0)  # what handler.recognition.manifest accepts


def fit_temperature(
    truth: np.ndarray, probabilities: np.ndarray, bounds: tuple[float, float] = TEMPERATURE_BOUNDS
) -> float:
    """The temperature ``T`` in ``bounds`` minimizing the NLL of ``calibrated(probabilities, T)``
    (``handler.recognition.model``: what the served classifier applies): golden-section search on
    ``log T``. The NLL is convex in ``1/T``, so unimodal in ``log T``. Without photos, 1."""
    from handler.recognition.model import calibrated

    if not len(truth):
        return 1.0

    def loss(log_t: float) -> float:
        return negative_log_likelihood(truth, calibrated(probabilities, float(np.exp(log_t))))

    low, high = np.log(bounds[0]), np.log(bounds[1])
    ratio = (np.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    loss_a, loss_b = loss(a), loss(b)
    while high - low > 1e-5:
        if loss_a <= loss_b:
            high, b, loss_b = b, a, loss_a
            a = high - ratio * (high - low)
            loss_a = loss(a)
        else:
            low, a, loss_a = a, b, loss_b
            b = low + ratio * (high - low)
            loss_b = loss(b)
    best = (low + high) / 2
    # The search never evaluates the bounds themselves: an optimum at a bound is kept as such.
    edges = [float(np.log(bounds[0])), float(np.log(bounds[1]))]
    chosen = min([best, *edges], key=loss)
    return float(np.clip(np.exp(chosen), *bounds))
