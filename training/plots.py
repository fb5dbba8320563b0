"""The report's figures, drawn to be read: a confusion matrix with counts and row-normalized rates
(dark cells get white text), the ROC curve with the chosen operating points, learning curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix(matrix: np.ndarray, classes: list[str], file: Path) -> None:
    """Counts and, below them, each row's share (the recall of that class), coloured by the share."""
    plt = _pyplot()
    rows = matrix.sum(axis=1, keepdims=True)
    rates = np.divide(matrix, rows, out=np.zeros(matrix.shape, float), where=rows > 0)
    side = 1.6 + 1.1 * len(classes)
    figure, axis = plt.subplots(figsize=(side + 1.2, side))
    image = axis.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="share of the true class")
    axis.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for (row, column), count in np.ndenumerate(matrix):
        colour = "white" if rates[row, column] > 0.55 else "black"
        axis.text(column, row, f"{count}\n{rates[row, column]:.0%}", ha="center", va="center", color=colour,
                  fontsize=11)  # fmt: skip
    axis.set_title(f"Confusion matrix ({int(matrix.sum())} photos)")
    figure.tight_layout()
    figure.savefig(file, dpi=120)
    plt.close(figure)


def roc_curve(fpr: np.ndarray, tpr: np.ndarray, auc: float, positive: str, points: dict, file: Path) -> None:
    """The ROC curve, with each operating point (name -> its sensitivity/specificity) marked."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4.8, 4.5))
    axis.plot(fpr, tpr, label=f"AUC {auc:.3f}")
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey")
    for name, point in points.items():
        axis.scatter([1 - point["specificity"]], [point["sensitivity"]], zorder=3,
                     label=f"{name} (threshold {point['threshold']:.2f})")  # fmt: skip
    axis.set_xlabel("1 - specificity (false positive rate)")
    axis.set_ylabel(f"sensitivity ({positive})")
    axis.set_title("ROC")
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(file, dpi=120)
    plt.close(figure)


def learning_curves(history: dict, file: Path) -> None:
    """Loss and ROC AUC per epoch, training and validation, both phases end to end."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    offset = 0
    for phase, curves in history.items():
        epochs = np.arange(offset + 1, offset + 1 + len(curves.get("loss", [])))
        for axis, metric in zip(axes, ("loss", "auc"), strict=True):
            axis.plot(epochs, curves.get(metric, []), marker=".", label=f"{phase}: training")
            axis.plot(epochs, curves.get(f"val_{metric}", []), marker=".", label=f"{phase}: validation")
        offset += len(epochs)
    for axis, title in zip(axes, ("loss", "ROC AUC"), strict=True):
        axis.set_xlabel("epoch")
        axis.set_title(title)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(file, dpi=110)
    plt.close(figure)


def reliability_diagram(curves: dict[str, list[dict]], file: Path, title: str = "Reliability") -> None:
    """Accuracy against mean top-1 confidence per confidence bin (``metrics.reliability``), one
    line per named curve (before and after calibration, with their ECE in the name); the diagonal
    is a perfectly calibrated model. A point's size follows its bin's photos."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4.8, 4.5))
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey", label="calibrated (diagonal)")
    for name, bins in curves.items():
        used = [row for row in bins if row["count"]]
        total = sum(row["count"] for row in used) or 1
        confidence = [row["confidence"] for row in used]
        accuracy = [row["accuracy"] for row in used]
        (line,) = axis.plot(confidence, accuracy, marker="", label=name)
        axis.scatter(confidence, accuracy, s=[12 + 200 * row["count"] / total for row in used],
                     color=line.get_color(), zorder=3)  # fmt: skip
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.set_xlabel("mean top-1 confidence in the bin")
    axis.set_ylabel("accuracy in the bin")
    axis.set_title(title)
    axis.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(file, dpi=120)
    plt.close(figure)
