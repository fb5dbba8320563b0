"""Evaluate the *serving* classifier on labelled photos: ``report.md``, ``report.json`` and PNGs.

The classifier is the one the function would load (``handler.recognition.model.load_classifier``: the
``.tflite`` under LiteRT, or its int8 variant), fed by the serving decoder, so the figures are
the deployed model's. Works on the ImageNet model too: folders named by Keras label or WordNet id.

Each ``imgrec evaluate`` gets a folder of its own, ``MODEL_DIR/evaluations/<data folder>-<UTC
time>/`` unless ``--out`` names one; a report never lands in a folder that already holds files
(the training report, ``MODEL_DIR/evaluation/``, or an earlier evaluation).
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from handler.recognition import model as serving
from training import metrics
from training.dataset import Dataset, DatasetError, load

BATCH = 32
EVALUATIONS = "evaluations"  # MODEL_DIR/evaluations/<data folder>-<time>/: one folder per evaluation


class FolderInUse(Exception):
    """The report folder already holds files (or is not a folder): nothing is written there."""


def refuse_used(folder: Path) -> None:
    """``FolderInUse`` unless ``folder`` is new or an empty folder."""
    if folder.exists() and not folder.is_dir():
        raise FolderInUse(f"{folder} is a file, not a folder: nothing was written.")
    if folder.is_dir() and any(folder.iterdir()):
        raise FolderInUse(
            f"{folder} already holds files: nothing was written. Name a new or empty folder with --out, "
            "or drop --out for a new folder under MODEL_DIR/evaluations/."
        )


def report_folder(data_dir: Path, model_dir: Path, out: Path | None = None) -> Path:
    """The folder an evaluation writes into, created empty: ``out`` if it is new or empty, else a new
    ``model_dir/evaluations/<data folder>-<yyyymmddTHHMMSSZ>`` (``-2``, ``-3``… when that second is taken)."""
    if out is not None:
        refuse_used(out)
        out.mkdir(parents=True, exist_ok=True)
        return out
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = f"{data_dir.resolve().name}-{stamp}"
    for attempt in itertools.count(1):
        folder = model_dir / EVALUATIONS / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            folder.mkdir(parents=True)
        except FileExistsError:
            continue
        return folder
    raise AssertionError("unreachable")


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
    """Score ``dataset`` with ``classifier``; write the report files into ``out`` (new or empty:
    ``FolderInUse`` otherwise); return the figures."""
    refuse_used(out)
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
) -> tuple[Path, dict]:
    """``imgrec evaluate``: load the serving classifier and a labelled folder, write the report into
    ``out`` or a new folder under ``model_dir/evaluations/``; return that folder and the figures."""
    if out is not None:
        refuse_used(out)  # before the model and the photos load, not after
    classifier = serving.load_classifier(model_dir, backend, threads=2, precision=precision)
    dataset = load(data_dir)
    created = out is None or not out.exists()
    folder = report_folder(data_dir, model_dir, out)
    try:
        return folder, evaluate(classifier, dataset, folder, f"Evaluation on {data_dir.name}")
    except BaseException:
        if created and not any(folder.iterdir()):
            folder.rmdir()  # made here and still empty (e.g. a data folder that names no class)
        raise
