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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from handler.recognition import model as serving
from training import calibration, metrics, plots
from training.dataset import Dataset, DatasetError, Splits, load

if TYPE_CHECKING:
    from training.options import Options

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


def distances(classifier: serving.Classifier, images: np.ndarray) -> np.ndarray:
    """The serving model's in-domain distance of each image, batch by batch (its detector's)."""
    out = [classifier.outputs(images[i : i + BATCH])[1] for i in range(0, len(images), BATCH)]
    if any(d is None for d in out):
        raise ValueError(f"{classifier.info.name} has no in-domain detector")
    return np.concatenate(out) if out else np.zeros(0, np.float32)


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


def thresholds(truth: np.ndarray, probabilities: np.ndarray, target_sensitivity: float) -> dict[str, float]:
    """Two classes: the operating thresholds on P(positive class), chosen on these (validation)
    photos: 0.5 (the argmax), and the highest reaching ``target_sensitivity``."""
    if probabilities.shape[1] != 2:
        return {}
    reached = metrics.threshold_for_sensitivity(truth, probabilities[:, 1], target_sensitivity)
    chosen = {"argmax (0.5)": 0.5}
    if reached is not None:
        chosen[f"sensitivity >= {target_sensitivity:g} on validation"] = reached
    return chosen


def evaluate(
    classifier: serving.Classifier,
    dataset: Dataset,
    out: Path,
    title: str = "Evaluation",
    chosen_thresholds: dict[str, float] | None = None,
) -> dict:
    """Score ``dataset`` with ``classifier``; write the report files into ``out`` (new or empty:
    ``FolderInUse`` otherwise); return the figures. ``chosen_thresholds`` (two classes; chosen on
    other photos): each one's sensitivity and specificity here, with 95 % intervals."""
    refuse_used(out)
    out.mkdir(parents=True, exist_ok=True)
    columns = _class_map(classifier, dataset.classes)
    probs = probabilities(classifier, dataset.images)
    if len(columns) != len(classifier.labels) or columns != list(range(len(columns))):
        probs = probs[:, columns]  # the folders' classes only (ImageNet: a few of 1,000)
        probs = probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)
    result = metrics.summary(dataset.labels, probs, dataset.classes)
    correct = int((probs.argmax(axis=1) == dataset.labels).sum())
    result["accuracy_95ci"] = metrics.wilson(correct, len(dataset.labels))
    if len(dataset.classes) == 2:
        result["roc_auc_95ci"] = metrics.bootstrap_auc(dataset.labels, probs[:, 1])
        points = chosen_thresholds or {"argmax (0.5)": 0.5}
        result["operating_points"] = {
            name: metrics.operating_point(dataset.labels, probs[:, 1], threshold)
            for name, threshold in points.items()
        }
    predicted = probs.argmax(axis=1)
    result["misclassified"] = [
        {
            "file": dataset.name(path),
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


@dataclass(frozen=True)
class Evaluated:
    """``evaluate``'s results on the two held-out splits of a training run."""

    test: dict
    validation: dict


def training_report(
    classifier: serving.Classifier,
    data: Splits,
    options: Options,
    chosen_thresholds: dict[str, float],
    history: dict,
    calibrated: calibration.Calibrated,
    folder: Path,
) -> Evaluated:
    """A new model directory's ``evaluation/`` (``folder``): the served ``classifier`` on the test
    split (which chose nothing) and, in ``validation/``, on the validation split; the learning
    curves, each split's reliability diagram and the report's training and calibration sections."""
    title = f"{options.name}: test split (used to choose nothing)"
    tested = evaluate(classifier, data.test, folder, title, chosen_thresholds)
    title = f"{options.name}: validation split (it stopped training and chose the thresholds)"
    chosen = evaluate(classifier, data.validation, folder / "validation", title, chosen_thresholds)
    plots.learning_curves(history, folder / "learning_curves.png")
    for where, truth, raw in (
        (folder, data.test.labels, calibrated.test),
        (folder / "validation", data.validation.labels, calibrated.validation),
    ):
        calibration.reliability_figure(truth, raw, calibrated.temperature, where / "reliability.png")
    with (folder / "report.md").open("a") as markdown_file:
        markdown_file.write(
            "\n## Training\n\n![learning curves](learning_curves.png)\n\n"
            "The validation split's report: [validation/report.md](validation/report.md).\n"
            + calibration.report_section(calibrated.fields)
        )
    return Evaluated(tested, chosen)


def card_figures(result: dict) -> dict:
    """What the model card keeps of a report."""
    keys = (
        "images",
        "accuracy",
        "accuracy_95ci",
        "balanced_accuracy",
        "per_class",
        "roc_auc",
        "roc_auc_95ci",
    )
    figures = {key: result[key] for key in keys if key in result}
    if "operating_points" in result:
        figures["operating_points"] = result["operating_points"]
        figures["positive_class"] = result["positive_class"]
    return figures


def _plots(result: dict, dataset: Dataset, probs: np.ndarray, out: Path) -> None:
    plots.confusion_matrix(
        np.array(result["confusion_matrix"]), dataset.classes, out / "confusion_matrix.png"
    )
    if len(dataset.classes) == 2:
        fpr, tpr, auc = metrics.roc(dataset.labels, probs[:, 1])
        points = result.get("operating_points", {})
        plots.roc_curve(fpr, tpr, auc, dataset.classes[1], points, out / "roc.png")


def markdown(result: dict, title: str) -> str:
    lines = [
        f"# {title}",
        "",
        f"Model `{result['model']['name']}` {result['model']['version']} ({result['model']['backend']}), "
        f"{result['images']} images, {result['evaluated_at']}.",
        "",
        "| measure | value | 95 % interval |",
        "| --- | ---: | ---: |",
        f"| accuracy | {result['accuracy']:.3f} | {_interval(result.get('accuracy_95ci'))} |",
        f"| balanced accuracy | {result['balanced_accuracy']:.3f} | |",
    ]
    if "roc_auc" in result:
        lines.append(
            f"| ROC AUC ({result['positive_class']} positive) | {result['roc_auc']:.3f} "
            f"| {_interval(result.get('roc_auc_95ci'))} |"
        )
    if "operating_points" in result:
        lines += [
            "",
            f"Calling a photo **{result['positive_class']}** when its probability reaches the threshold:",
            "",
            "| threshold | sensitivity (95 % CI) | specificity (95 % CI) | missed positives | false alarms |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for name, point in result["operating_points"].items():
            counts = point["counts"]
            lines.append(
                f"| {name}: {point['threshold']:.3f} "
                f"| {point['sensitivity']:.3f} ({_interval(point['sensitivity_95ci'])}) "
                f"| {point['specificity']:.3f} ({_interval(point['specificity_95ci'])}) "
                f"| {counts['false_negative']} of {counts['false_negative'] + counts['true_positive']} "
                f"| {counts['false_positive']} of {counts['false_positive'] + counts['true_negative']} |"
            )
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


def _interval(bounds) -> str:
    return f"{bounds[0]:.3f}-{bounds[1]:.3f}" if bounds else ""


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
