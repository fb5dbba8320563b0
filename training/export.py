"""A trained model as the files of a model directory, like ``make model``: the ``.keras``, the fp32
``.tflite``, the labels and, with ``quantize="int8"``, a full-integer int8 ``.tflite``; and the
checks around them: where they may be written (``check_out``), how closely two exports agree."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handler.recognition import manifest as model_manifest
from handler.recognition import model as serving
from handler.recognition.manifest import LABELS_FILE
from training import evaluate
from training.calibration import Calibrated
from training.dataset import Dataset, DatasetError
from training.options import Options

KERAS_FILE = "model.keras"
TFLITE_FILE = "model.tflite"
INT8_FILE = "model_int8.tflite"
CALIBRATION_IMAGES = 100  # training photos the int8 conversion calibrates its ranges on


@dataclass(frozen=True)
class Exported:
    """What ``write_models`` wrote: the manifest's ``artifacts`` and the files it pins."""

    artifacts: dict[str, str]
    files: list[str]


def check_out(out: Path, data: list[Path]) -> None:
    """``out`` must be a model directory to (re)place: new, empty, or an earlier model directory
    (one whose manifest checks), neither a link nor inside (or around) a data folder, where it would
    become a class of photos. Checked before anything is trained or created."""
    if out.is_symlink():
        raise DatasetError(f"--out {out} is a link: name the folder itself.")
    if out.exists() and not out.is_dir():
        raise DatasetError(f"--out {out} is a file: name a new folder (or an earlier model directory).")
    target = out.resolve()
    for folder in data:
        real = folder.resolve()
        if target == real or real in target.parents or target in real.parents:
            raise DatasetError(
                f"--out {out} is inside (or around) the photos in {folder}: the model directory would "
                "become a class of photos. Write it elsewhere (e.g. build/models/NAME)."
            )
    if out.is_dir() and any(out.iterdir()):
        try:
            model_manifest.validate(out)
        except model_manifest.ModelError:
            raise DatasetError(
                f"--out {out} holds files that are not a model directory: name a new folder, or an "
                "earlier model directory to replace."
            ) from None
    probe = target
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise DatasetError(f"--out {out}: {probe} is not writable.")


def exported(served):
    """The Keras model as the files hold it: the served model itself, which takes uint8 pixels and
    scales them in its graph (``model.build``; what the manifest's ``input`` and ``preprocessing``
    say, ``card.manifest_fields``): nothing to wrap. A model that takes anything else is refused
    here rather than exported under a manifest that would mis-describe it."""
    from layers.model.export import PIXELS_DTYPE

    if served.inputs[0].dtype != PIXELS_DTYPE:
        raise ValueError(f"the served model takes {served.inputs[0].dtype}, not {PIXELS_DTYPE} pixels")
    return served


def to_tflite(model, calibration: np.ndarray | None = None) -> bytes:
    """fp32 TFLite, or with ``calibration`` images (uint8 pixels) a full-integer int8 model with
    uint8 input and float output: the export's one conversion (quiet unless ``LOG_LEVEL=DEBUG``)."""
    import tensorflow as tf

    from layers.model.export import to_tflite as convert

    return convert(tf, model, calibration)


def calibration_images(train: Dataset, options: Options) -> np.ndarray:
    """Up to ``CALIBRATION_IMAGES`` training photos, drawn with the seed, in order."""
    rng = np.random.default_rng(options.seed)
    picked = rng.choice(len(train.labels), min(CALIBRATION_IMAGES, len(train.labels)), replace=False)
    return train.images[np.sort(picked)]


def write_models(staging: Path, served, classes: list[str], train: Dataset, options: Options) -> Exported:
    """``served`` as the model directory's files in ``staging``, with the labels."""
    model = exported(served)
    model.save(staging / KERAS_FILE)
    (staging / TFLITE_FILE).write_bytes(to_tflite(model))
    (staging / LABELS_FILE).write_text(json.dumps(classes, indent=0) + "\n")
    artifacts = {"keras": KERAS_FILE, "tflite": TFLITE_FILE}
    if options.quantize == "int8":
        (staging / INT8_FILE).write_bytes(to_tflite(model, calibration_images(train, options)))
        artifacts["tflite_int8"] = INT8_FILE
    files = [KERAS_FILE, TFLITE_FILE, LABELS_FILE, *([INT8_FILE] if options.quantize else [])]
    return Exported(artifacts, files)


def agreement(reference: np.ndarray, other: np.ndarray) -> dict:
    """How closely two models' probabilities agree on the same images."""
    return {
        "images": len(reference),
        "top1_agreement": float((reference.argmax(1) == other.argmax(1)).mean()) if len(reference) else 1.0,
        "max_abs_probability_difference": float(np.abs(reference - other).max()) if len(reference) else 0.0,
    }


def int8_figures(model_dir: Path, test: Dataset, calibrated: Calibrated) -> dict:
    """The card's ``int8``: the int8 ``.tflite`` against the fp32 one as served (calibrated), and
    its accuracy, on the test split."""
    int8_classifier = serving.load_classifier(model_dir, "litert", threads=2, precision="int8")
    int8 = evaluate.probabilities(int8_classifier, test.images)
    return {
        **agreement(serving.calibrated(calibrated.test, calibrated.temperature), int8),
        "test_accuracy": float((int8.argmax(1) == test.labels).mean()),
    }
