"""Evaluate the *serving* classifier on labelled photos: ``report.md``, ``report.json`` and PNGs.

The classifier is the one the function would load (``handler.model.load_classifier``: the
``.tflite`` under LiteRT, or its int8 variant), fed by the serving decoder, so the figures are
the deployed model's. Works on the ImageNet model too: folders named by Keras label or WordNet id.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from handler import model as serving
from training import metrics
from training.dataset import Dataset, DatasetError, load

BATCH = 32


def probabilities(classifier: serving.Classifier, images: np.ndarray) -> np.ndarray:
    """Softmax outputs of the serving backend, batch by batch."""
    out = [classifier.probabilities(images[i : i + BATCH]) for i in range(0, len(images), BATCH)]
    return np.concatenate(out) if out else np.zeros((0, len(classifier.labels)), np.float32)


def _class_map(classifier: serving.Classifier, folders: list[str]) -> list[int]:
    """Each folder's output index: its label, or (ImageNet) its WordNet id."""
    by_name = {label: index for index, (_, label) in enumerate(classifier.entries)}
    by_id = {class_id: index for index, (class_id, _) in enumerate(classifier.entries) if class_id}
    mapped = []
    for folder in folders:
        index = by_name.get(folder, by_id.get(folder))
        if index is None:
            raise DatasetError(
                f"Folder {folder!r} is not a class of {classifier.info.name}: name folders after its "
                f"labels ({', '.join(classifier.labels[:5])}, ...)."
            )
        mapped.append(index)
    return mapped


def evaluate(classifier: serving.Classifier, dataset: Dataset, out: Path, title: str = "Evaluation") -> dict:
    """Score ``dataset`` with ``classifier``; write the report files into ``out``; return the figures."""
    out.mkdir(parents=True, exist_ok=True)
    columns = _class_map(classifier, dataset.classes)
    probs = probabilities(classifier, dataset.images)
    if len(columns) != len(classifier.labels) or columns != list(range(len(columns))):
        probs = probs[:, columns]  # the folders' classes only (ImageNet: a few of 1,000)
        probs = probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)
    result = metrics.summary(dataset.labels, probs, dataset.classes)
    predicted = probs.argmax(axis=1)
    result["misclassified"] = [
        {
            "file": path.relative_to(dataset.root).as_posix(),
            "truth": dataset.classes[truth],
            "predicted": dataset.classes[guess],
            "probability": round(float(probs[i, guess]), 4),
        }
        for i, (path, truth, guess) in enumerate(zip(dataset.paths, dataset.labels, predicted, strict=True))
        if truth != guess
    ]
    result["model"] = classifier.info.to_dict()
    result["classes"] = dataset.classes
    result["evaluated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["skipped"] = [{"file": file, "why": why} for file, why in dataset.skipped]
    _plots(result, dataset, probs, out)
    (out / "report.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "report.md").write_text(markdown(result, title))
    return result


def _plots(result: dict, dataset: Dataset, probs: np.ndarray, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.array(result["confusion_matrix"])
    figure, axis = plt.subplots(figsize=(1.2 + 0.9 * len(dataset.classes), 1 + 0.8 * len(dataset.classes)))
    axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(dataset.classes)), dataset.classes, rotation=45, ha="right")
    axis.set_yticks(range(len(dataset.classes)), dataset.classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for (row, column), count in np.ndenumerate(matrix):
        axis.text(column, row, str(count), ha="center", va="center", color="black")
    axis.set_title("Confusion matrix")
    figure.tight_layout()
    figure.savefig(out / "confusion_matrix.png", dpi=110)
    plt.close(figure)
    if len(dataset.classes) == 2:
        fpr, tpr, auc = metrics.roc(dataset.labels, probs[:, 1])
        figure, axis = plt.subplots(figsize=(4.2, 4))
        axis.plot(fpr, tpr, label=f"AUC {auc:.3f}")
        axis.plot([0, 1], [0, 1], linestyle="--", color="grey")
        axis.set_xlabel("false positive rate")
        axis.set_ylabel(f"true positive rate ({dataset.classes[1]})")
        axis.set_title("ROC")
        axis.legend(loc="lower right")
        figure.tight_layout()
        figure.savefig(out / "roc.png", dpi=110)
        plt.close(figure)


def markdown(result: dict, title: str) -> str:
    lines = [
        f"# {title}",
        "",
        f"Model `{result['model']['name']}` {result['model']['version']} ({result['model']['backend']}), "
        f"{result['images']} images, {result['evaluated_at']}.",
        "",
        "| measure | value |",
        "| --- | ---: |",
        f"| accuracy | {result['accuracy']:.3f} |",
        f"| balanced accuracy | {result['balanced_accuracy']:.3f} |",
    ]
    if "roc_auc" in result:
        lines.append(f"| ROC AUC ({result['positive_class']} positive) | {result['roc_auc']:.3f} |")
    lines += ["", "| class | precision | recall | F1 | images |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, row in result["per_class"].items():
        lines.append(
            f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | {row['support']} |"
        )
    lines += ["", "![confusion matrix](confusion_matrix.png)"]
    if "roc_auc" in result:
        lines.append("![ROC](roc.png)")
    lines += ["", f"## Misclassified ({len(result['misclassified'])})", ""]
    lines += [
        f"- `{m['file']}`: {m['truth']} → {m['predicted']} ({m['probability']:.0%})"
        for m in result["misclassified"][:50]
    ]
    if result["skipped"]:
        lines += ["", f"## Skipped as unreadable ({len(result['skipped'])})", ""]
        lines += [f"- `{s['file']}`: {s['why']}" for s in result["skipped"]]
    return "\n".join(lines) + "\n"


def run(
    data_dir: Path, model_dir: Path, out: Path | None, backend: str = "litert", precision: str = "fp32"
) -> dict:
    """``imgrec evaluate``: load the serving classifier and a labelled folder, write the report."""
    classifier = serving.load_classifier(model_dir, backend, threads=2, precision=precision)
    dataset = load(data_dir)
    return evaluate(classifier, dataset, out or model_dir / "evaluation", f"Evaluation on {data_dir.name}")
