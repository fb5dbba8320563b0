"""Your own classes: a folder of labelled photos -> a model directory the service serves.

keras-io's transfer-learning recipe, in two phases (``training/phases.py``). (1) The head (global
average pooling, ``Dense(1024, relu)``, dropout, a softmax over your classes) on MobileNetV2's frozen
ImageNet features: by default on features computed once and cached (``--feature-cache``), else on
the streamed photos with augmentation. (2) Fine-tuning of the top N base layers at a low learning
rate, batch-norm in inference mode, on the streamed photos with augmentation (Keras preprocessing
layers). Class weights for imbalance; early stopping on the validation split's ROC AUC keeps the
best epoch. Photos stream from disk (``training.dataset.Pixels``, ``training.stream``): memory does
not grow with the dataset.

Three splits: train; validation (stops training, chooses the thresholds); test (chooses nothing:
the card's figures, with 95 % intervals). ``test_dir`` replaces the test split with your own folder.

Exported like ``make model`` (``.keras``, fp32 ``.tflite``, labels, manifest) plus a model card,
the ``.tflite``/``.keras`` agreement, optionally a full-integer int8 ``.tflite``; the serving
classifier is evaluated on the validation and test splits (``evaluation/``, ``evaluation/test/``),
and 32 test photos become the pre-traffic gate's check set. Nothing is written to ``out`` until
everything succeeded; a failure removes what it staged.

This module is the order of things, read top-down: prepare the data (``dataset``), build the models
(``model``), fit the head and fine-tune (``phases``), attach the in-domain detector (``in_domain``),
export (``export``), write the manifest and card (``card``), calibrate (``calibration``), evaluate
and report (``evaluate``), then the cost (``cost``) and the check set (``checkset``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from handler.recognition import model as serving
from layers.model import manifest_writer
from training import calibration, checkset, cost, evaluate, export, imagenet_start, in_domain, stream
from training.card import baseline, manifest_fields, model_card, warnings_of
from training.dataset import Splits, data_folders, merged_class_folders, prepare, same_classes
from training.model import build
from training.options import Options
from training.phases import Fitted, fit

__all__ = ["Options", "train"]

# Photos of the test split kept as the check set of the pre-traffic quality gate.
CHECK_PHOTOS = 32


def quiet_tensorflow() -> None:
    """TensorFlow's Python warnings (a retracing notice per evaluation pass) would cut training's
    progress bars in two: ERROR and above only, unless ``LOG_LEVEL=DEBUG``."""
    from handler.config import debug_logging

    if not debug_logging():
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")


def train(data_dir: Path | Sequence[Path], out: Path, options: Options, test_dir: Path | None = None) -> dict:
    """Train on ``data_dir`` (a folder of class folders, or a list of them: same-named classes
    merge, copies across folders count once) and write the model directory ``out``; return its
    manifest."""
    folders = data_folders(data_dir)
    export.check_out(out, [*folders, *([test_dir] if test_dir else [])])
    quiet_tensorflow()
    classes, _ = merged_class_folders(folders)
    if test_dir is not None:
        same_classes(folders, test_dir)  # before hours of decoding and training
        options = replace(options, test_split=0.0)
    rows = imagenet_start.rows_given(options, classes)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".model-", dir=out.parent))
    try:
        with tempfile.TemporaryDirectory(prefix="imgrec-train-") as scratch:
            manifest = _train(folders, staging, options, test_dir, Path(scratch), rows)
        staging.chmod(0o755)
        manifest_writer.replace_folder(staging, out)
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # a failure leaves nothing behind


def _train(
    data_dirs: list[Path],
    staging: Path,
    options: Options,
    test_dir: Path | None,
    scratch: Path,
    rows: list[int | None] | None = None,
) -> dict:
    """The model directory, written into ``staging``; its manifest."""
    started = time.perf_counter()
    data = prepare(data_dirs, options, test_dir, scratch)
    import keras  # after the photos: a dataset's mistake is reported without waiting for TensorFlow

    classes = data.dataset.classes
    print(
        f"{len(classes)} classes: {len(data.train.labels)} training, {len(data.validation.labels)} "
        f"validation and {len(data.test.labels)} test photos; {len(data.dataset.skipped)} skipped",
        flush=True,
    )
    keras.utils.set_random_seed(options.seed)
    full = keras.applications.MobileNetV2(weights="imagenet")  # the base, and the zero-shot answer
    start = imagenet_start.head_start(keras, full, data.train, options, rows)
    models = build(len(classes), options, start.rows, full)
    fitted = fit(models, data.train, data.validation, options, scratch, warm_start=bool(start.rows))
    training_seconds = time.perf_counter() - started
    served, detector = in_domain.attached(keras, models, data.train, data.validation, options, scratch)

    written = export.write_models(staging, served, classes, data.train, options)
    card = model_card(data, options, test_dir, start, fitted, training_seconds)
    fields = manifest_fields(options, data.name, len(classes), written.artifacts, detector, card)
    manifest_writer.write(staging, fields, written.files)
    calibrated = _calibrate(staging, served, data, options, fields, written.files)
    _evaluate(staging, data, options, fields, fitted, calibrated)
    manifest_writer.write(staging, fields, written.files)  # the card now holds every figure
    manifest = cost.record(staging)  # what serving it costs: part of its contract
    print(cost.summary(manifest["cost"]))
    _write_check_set(staging, data, options, card["test"]["accuracy"])
    return manifest


def _calibrate(
    staging: Path, served, data: Splits, options: Options, fields: dict, files: list[str]
) -> calibration.Calibrated:
    """The exported files checked against each other on the validation photos (the card's
    ``tflite_vs_keras``), then the temperature fitted on the raw served probabilities, written to
    the manifest (from here on, what is served: calibrated probabilities)."""
    keras_probabilities = served.predict(
        stream.batches(
            data.validation.images, data.validation.labels, len(data.dataset.classes), options.batch_size
        ),
        verbose=0,
    )[0]
    raw = serving.load_classifier(staging, "litert", threads=2)  # no calibration in the manifest yet
    raw_validation = evaluate.probabilities(raw, data.validation.images)
    fields["card"]["tflite_vs_keras"] = export.agreement(keras_probabilities, raw_validation)
    raw_test = evaluate.probabilities(raw, data.test.images)
    fitted = calibration.fit(data.validation.labels, raw_validation, data.test.labels, raw_test)
    fields["calibration"] = fields["card"]["calibration"] = fitted
    manifest_writer.write(staging, fields, files)
    return calibration.Calibrated(raw_validation, raw_test, fitted)


def _evaluate(
    staging: Path,
    data: Splits,
    options: Options,
    fields: dict,
    fitted: Fitted,
    calibrated: calibration.Calibrated,
) -> None:
    """The served (calibrated) classifier evaluated on validation (where thresholds are chosen) and
    on test (which chose nothing): the report in ``evaluation/`` and the card's figures."""
    card, classes = fields["card"], data.dataset.classes
    classifier = serving.load_classifier(staging, "litert", threads=2)
    served_validation = serving.calibrated(calibrated.validation, calibrated.temperature)  # not run twice
    thresholds = evaluate.thresholds(data.validation.labels, served_validation, options.target_sensitivity)
    evaluated = evaluate.training_report(
        classifier, data, options, thresholds, fitted.history, calibrated, staging / "evaluation"
    )
    card["in_domain"] = in_domain.served_figures(
        classifier, data.test, options, fields["in_domain"]["threshold"]
    )
    card["baseline"] = baseline(served_validation, classes, options.min_confidence)
    card["validation"] = evaluate.card_figures(evaluated.validation)
    card["test"] = evaluate.card_figures(evaluated.test)
    card["warnings"] = warnings_of(card, data.test.labels, len(classes))
    for warning in card["warnings"]:
        print(f"WARNING: {warning}", flush=True)
    if options.quantize == "int8":
        card["int8"] = export.int8_figures(staging, data.test, calibrated)


def _write_check_set(staging: Path, data: Splits, options: Options, expected_accuracy: float) -> None:
    """``CHECK_PHOTOS`` photos of the test split, the pre-traffic gate's check set."""
    held_back = checkset.pick(data.test.labels, CHECK_PHOTOS, options.seed)
    checkset.write(
        staging,
        [(data.test.paths[i], data.dataset.classes[data.test.labels[i]]) for i in held_back],
        source=f"{len(held_back)} photos of the test split of {data.name}",
        expected_accuracy=expected_accuracy,
    )
