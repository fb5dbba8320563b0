"""Your own classes: a folder of labelled photos -> a model directory the service serves.

keras-io's transfer-learning recipe, in two phases. (1) The head (global average pooling,
``Dense(1024, relu)``, dropout, a softmax over your classes) on MobileNetV2's frozen ImageNet
features: by default on features computed once and cached (``--feature-cache``), else on the
streamed photos with augmentation. (2) Fine-tuning of the top N base layers at a low learning rate,
batch-norm in inference mode, on the streamed photos with augmentation (Keras preprocessing
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
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from handler.recognition import manifest as model_manifest
from handler.recognition import model as serving
from handler.recognition.manifest import LABELS_FILE
from training import checkset, cost, evaluate, imagenet_start, in_domain, metrics, plots, stream
from training.dataset import (
    Dataset,
    DatasetError,
    class_folders,
    folder_names,
    load,
    merged_class_folders,
    stratified_split,
)
from training.options import Options

__all__ = ["Options", "train"]

KERAS_FILE = "model.keras"
TFLITE_FILE = "model.tflite"
INT8_FILE = "model_int8.tflite"
BASE_MODEL = (
    'keras.applications.MobileNetV2(weights="imagenet") up to out_relu (= include_top=False), 224x224'
)
CALIBRATION_IMAGES = 100
# Photos of the test split kept as the check set of the pre-traffic quality gate.
CHECK_PHOTOS = 32


def build(classes: int, options: Options, imagenet_rows: list[int | None] | None = None, full=None):
    """The models, sharing their layers: ``trainer`` (augmentation, then the classifier), ``served``
    (the classifier; with ``flip_average`` the mean of a photo's and its mirror's answers, with
    ``rotation_average`` too of their rotations by 90, 180 and 270 degrees: 8 views),
    ``extractor`` (the frozen base, pooled: the cached features), ``head`` (on those features), and
    the ``base`` (to unfreeze its top for fine-tuning). With ``imagenet_rows`` (your classes are
    those ImageNet classes) the head is linear and starts as ImageNet's own classifier restricted to
    them: before any training, the model answers exactly what MobileNetV2 answers zero-shot."""
    import keras
    from keras import layers

    # MobileNetV2 up to its last feature layer is exactly what include_top=False returns; built from
    # the full ImageNet weights so a machine that cached only that file (offline) can train too.
    if full is None:  # else the caller seeded before building it: the same draws either way
        keras.utils.set_random_seed(options.seed)
        full = keras.applications.MobileNetV2(weights="imagenet")
    base = keras.Model(full.input, full.get_layer("out_relu").output, name="mobilenet_v2_base")
    base.trainable = False
    augmentation = keras.Sequential(
        [
            layers.RandomFlip("horizontal_and_vertical"),
            layers.RandomRotation(options.rotation),
            layers.RandomZoom(options.zoom),
        ],
        name="augmentation",
    )
    pool = layers.GlobalAveragePooling2D()
    # ImageNet's own classifier on the pooled features (frozen): its 1,000 class probabilities, for
    # the head to read beside the features. Where your classes are ImageNet's (ants, bees), the head
    # starts from what MobileNetV2 already knows instead of relearning it from a few hundred photos.
    imagenet = full.get_layer("predictions")
    imagenet.trainable = False
    joined = layers.Concatenate(name="features_and_imagenet_scores")
    hidden = layers.Dense(1024, activation="relu")
    dropout = layers.Dropout(options.dropout)
    head_output = layers.Dense(classes, activation="softmax")

    def features(x):
        # training=False: batch-norm stays in inference mode, even when the top layers fine-tune.
        pooled = pool(base(x, training=False))
        return joined([pooled, imagenet(pooled)]) if options.imagenet_scores else pooled

    def top(features):
        if imagenet_rows:
            return head_output(dropout(features))
        return head_output(dropout(hidden(features)))

    def classify(x):
        return top(features(x))

    inputs = keras.Input((224, 224, 3))
    trainer = keras.Model(inputs, classify(augmentation(inputs)), name="trainer")
    answer = classify(inputs)
    if options.flip_average:
        views = [inputs, keras.ops.flip(inputs, axis=2)]
        if options.rotation_average:  # the 8 symmetries of the square: flips, then transposed
            # (not ops.rot90: it loses the static channel count, and TFLite's Conv2D needs it)
            views += [keras.ops.flip(view, axis=1) for view in views]
            views += [keras.ops.transpose(view, (0, 2, 1, 3)) for view in views]
        answer = layers.Average()([classify(view) for view in views])
    served = keras.Model(inputs, answer, name="classifier")
    extractor = keras.Model(inputs, features(inputs), name="features")
    cached = keras.Input(extractor.output_shape[1:])
    head = keras.Model(cached, top(cached), name="head")
    if imagenet_rows:  # a None row: a folder ImageNet does not know keeps its random start
        kernel, bias = imagenet.get_weights()
        start_kernel, start_bias = head_output.get_weights()
        for column, row in enumerate(imagenet_rows):
            if row is not None:
                start_kernel[:, column], start_bias[column] = kernel[:, row], bias[row]
        head_output.set_weights([start_kernel, start_bias])
    # The pooled backbone features alone (after fine-tuning too): what the in-domain detector reads.
    pooled = keras.Model(inputs, pool(base(inputs, training=False)), name="pooled_features")
    return trainer, served, extractor, head, base, pooled


def imagenet_rows(options: Options, classes: list[str]) -> list[int] | None:
    """``--imagenet-classes`` as ImageNet class indexes in the folders' order, checked before any
    photo is read: every folder named, every label one of ImageNet's (its name, or its WordNet id
    where a name is ImageNet's twice)."""
    mapping = options.imagenet_mapping()
    if not mapping:
        return None
    import keras

    from layers.model.export import fetch_labels

    try:
        names = fetch_labels(keras)
    except Exception as error:  # Keras' get_file: offline with no cached copy, or a bad checksum
        raise DatasetError(
            f"--imagenet-classes needs ImageNet's class index (imagenet_class_index.json in "
            f"$KERAS_HOME/models; `make keras-cache` links ../shared/models): {error}"
        ) from None
    index: dict[str, list[int]] = {}
    for row, (wnid, label) in enumerate(names):
        index.setdefault(label, []).append(row)
        index[wnid] = [row]
    problems = []
    if sorted(mapping) != sorted(classes):
        problems.append(
            f"--imagenet-classes names {', '.join(sorted(mapping))}; the class folders are "
            f"{', '.join(classes)}: name each folder once"
        )
    for folder, label in mapping.items():
        if label not in index:
            close = difflib.get_close_matches(label, [k for k in index if not k.startswith("n0")], 3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            problems.append(f"{label!r} (for {folder}) is not an ImageNet class{hint}")
        elif len(index[label]) > 1:
            problems.append(f"{label!r} is two ImageNet classes: name it by its WordNet id")
    if problems:
        raise DatasetError("; ".join(problems) + ".")
    return [index[mapping[folder]][0] for folder in classes]


def auc_metric(classes: int):
    """ROC AUC to stop on: of the positive (second) class for two classes, as the card reports it;
    one-vs-rest, micro-averaged, for more."""
    import keras

    if classes != 2:
        return keras.metrics.AUC(name="auc")

    class PositiveClassAUC(keras.metrics.AUC):
        def update_state(self, y_true, y_pred, sample_weight=None):
            return super().update_state(y_true[:, 1], y_pred[:, 1], sample_weight)

    return PositiveClassAUC(name="auc")


def class_weights(labels: np.ndarray, classes: int, scheme: str = "balanced") -> dict[int, float] | None:
    """``balanced``: each class counts as much as the others, whatever its size; ``sqrt``: the
    square root of those weights (halfway to unweighted); ``none``: no weights."""
    if scheme == "none":
        return None
    power = 0.5 if scheme == "sqrt" else 1.0
    counts = np.bincount(labels, minlength=classes)
    return {
        index: float((len(labels) / (classes * count)) ** power)
        for index, count in enumerate(counts)
        if count
    }


def best_score(history: dict) -> tuple[float, float]:
    """A phase's best epoch as Keras' early stopping restores it (the first highest validation ROC
    AUC), with its validation loss to break a tie: (auc, -loss), higher is better."""
    best = int(np.argmax(history["val_auc"]))
    return history["val_auc"][best], -history["val_loss"][best]


def fit(
    models: tuple,
    train: Dataset,
    validation: Dataset,
    options: Options,
    scratch: Path,
    warm_start: bool = False,
) -> tuple[dict, dict]:
    """Phase 1, the head (on cached features, or on the streamed photos with augmentation); phase 2,
    fine-tuning the top base layers on the streamed photos. Each phase stops early on the validation
    ROC AUC and keeps its best epoch, and is kept only if that epoch beats what came before it (the
    head's starting point when it starts as ImageNet's classifier, ``warm_start``; the head, for
    fine-tuning). Returns both phases' histories and how long each took."""
    import keras

    trainer, _, extractor, head, base, _ = models
    classes = len(train.classes)
    weights = class_weights(train.labels, classes, options.class_weight)
    validation_stream = stream.batches(validation.images, validation.labels, classes, options.batch_size)

    def run(model, epochs: int, data, validation_data) -> dict:
        # Early stopping follows the validation ROC AUC: on a small, imbalanced split the loss is
        # noisy and accuracy rewards the majority class.
        stop = keras.callbacks.EarlyStopping(
            monitor="val_auc", mode="max", patience=options.patience, restore_best_weights=True
        )
        fitted = model.fit(
            *data,
            validation_data=validation_data,
            epochs=epochs,
            class_weight=weights,
            callbacks=[stop],
            shuffle=len(data) == 2,  # arrays: Keras shuffles them; a stream shuffles itself
            verbose=2,
        )
        return fitted.history

    def compile(model, learning_rate: float) -> None:
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss="categorical_crossentropy",
            metrics=["accuracy", auc_metric(classes)],
        )

    def score_now(model, validation_data) -> tuple[float, float]:
        """How ``model`` scores on validation as it stands (see best_score)."""
        data = validation_data if isinstance(validation_data, tuple) else (validation_data,)
        scores = model.evaluate(*data, verbose=0, return_dict=True)
        return scores["auc"], -scores["loss"]

    def keep_if_better(phase: str, before: tuple[float, float], weights_before: list) -> tuple[float, float]:
        if best_score(history[phase]) > before:
            history[phase]["kept"] = [1.0]
            return best_score(history[phase])
        trainer.set_weights(weights_before)
        history[phase]["kept"] = [0.0]
        print(f"{phase}: no epoch beat what came before it on validation, which is kept", flush=True)
        return before

    history: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    start_weights = trainer.get_weights()
    if options.feature_cache:
        copies = options.feature_copies
        print(
            "phase 1: the head, on the base's features (computed once"
            + (f"; with {copies} augmented copies of each training photo)" if copies else ")"),
            flush=True,
        )
        train_features = stream.features(
            extractor,
            train.images,
            options.batch_size,
            scratch / "train.npy",
            augment=trainer.get_layer("augmentation"),
            copies=copies,
        )
        validation_features = stream.features(
            extractor, validation.images, options.batch_size, scratch / "validation.npy"
        )
        targets = np.eye(classes, dtype=np.float32)
        validation_data = (np.asarray(validation_features), targets[validation.labels])
        compile(head, options.learning_rate)
        start = score_now(head, validation_data) if warm_start else None
        history["head"] = run(
            head,
            options.epochs,
            (np.asarray(train_features), targets[np.tile(train.labels, 1 + copies)]),
            validation_data,
        )
    else:
        print("phase 1: the head, on the streamed photos (augmented)", flush=True)
        training_stream = stream.batches(
            train.images, train.labels, classes, options.batch_size, options.seed
        )
        compile(trainer, options.learning_rate)
        start = score_now(trainer, validation_stream) if warm_start else None
        history["head"] = run(trainer, options.epochs, (training_stream,), validation_stream)
    best = keep_if_better("head", start, start_weights) if start else best_score(history["head"])
    seconds["head"] = round(time.perf_counter() - started, 1)
    if options.fine_tune_layers:
        started = time.perf_counter()
        head_weights = trainer.get_weights()
        print(f"phase 2: fine-tuning the top {options.fine_tune_layers} base layers (augmented)", flush=True)
        base.trainable = True
        for layer in base.layers[: -options.fine_tune_layers]:
            layer.trainable = False
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
        training_stream = stream.batches(
            train.images, train.labels, classes, options.batch_size, options.seed + 1
        )
        compile(trainer, options.fine_tune_learning_rate)
        history["fine_tune"] = run(
            trainer,
            options.fine_tune_epochs,
            (training_stream,),
            validation_stream,
        )
        seconds["fine_tune"] = round(time.perf_counter() - started, 1)
        keep_if_better("fine_tune", best, head_weights)
    rounded = {
        phase: {
            k: [round(float(v), 4) for v in values] for k, values in h.items() if isinstance(values, list)
        }
        for phase, h in history.items()
    }
    return rounded, seconds


def imagenet_start_of(keras, full, train: Dataset, options: Options) -> tuple[list[int | None] | None, dict]:
    """The head's ImageNet start proposed from the training photos (``training/imagenet_start.py``):
    its rows in folder order and ``{folder: ImageNet label}``, printed with the shares behind them."""
    from layers.model.export import fetch_labels

    top1 = imagenet_start.top1_rows(full, train.images, options.batch_size)
    proposals = imagenet_start.propose(top1, train.labels, train.classes, fetch_labels(keras))
    print("ImageNet start (--no-imagenet-start: none; --imagenet-classes: your own mapping):", flush=True)
    for line in imagenet_start.described(proposals):
        print(f"  {line}", flush=True)
    return imagenet_start.rows_of(proposals), {p.folder: p.label for p in proposals if p.taken}


def with_detector(keras, models: tuple, train: Dataset, validation: Dataset, options: Options, scratch: Path):
    """The served model with its in-domain detector (``training/in_domain.py``) as a second output:
    fitted on the training split's pooled features, thresholded on the validation split's; and the
    manifest's ``in_domain``."""
    served, pooled = models[1], models[5]
    train_features = stream.features(pooled, train.images, options.batch_size, scratch / "pooled-train.npy")
    validation_features = stream.features(
        pooled, validation.images, options.batch_size, scratch / "pooled-validation.npy"
    )
    detector, shrinkage = in_domain.fit(np.asarray(train_features), train.labels, len(train.classes))
    limit = in_domain.threshold(detector.distances(np.asarray(validation_features)))
    fields = {
        "threshold": round(limit, 4),
        "output": in_domain.OUTPUT,
        "measure": in_domain.MEASURE,
        "validation_pass_rate": in_domain.PASS_RATE,
        "shrinkage": round(shrinkage, 4),
    }
    return in_domain.attach(keras, served, pooled, detector), fields


def outside_figures(classifier, test: Dataset, options: Options, limit: float) -> dict:
    """The detector as served, on the test split and on the outside set (the card's figures)."""
    outside, sources = in_domain.outside_pixels(options.outside_folders(), options.seed)
    figures = in_domain.figures(
        evaluate.distances(classifier, test.images), evaluate.distances(classifier, outside), limit, sources
    )
    print(
        f"in domain: {figures['test_pass_rate']:.0%} of test photos pass, "
        f"{figures['outside_catch_rate']:.0%} of {figures['outside_photos']} outside photos are caught "
        f"(AUROC {figures['auroc']:.3f})",
        flush=True,
    )
    return figures


def to_tflite(served, calibration: np.ndarray | None = None) -> bytes:
    """fp32 TFLite, or with ``calibration`` images a full-integer int8 model with float input/output:
    the export's one conversion (quiet unless ``LOG_LEVEL=DEBUG``)."""
    import tensorflow as tf

    from layers.model.export import to_tflite as convert

    return convert(tf, served, calibration)


def agreement(reference: np.ndarray, other: np.ndarray) -> dict:
    """How closely two models' probabilities agree on the same images."""
    return {
        "images": len(reference),
        "top1_agreement": float((reference.argmax(1) == other.argmax(1)).mean()) if len(reference) else 1.0,
        "max_abs_probability_difference": float(np.abs(reference - other).max()) if len(reference) else 0.0,
    }


CALIBRATION_METHOD = "temperature scaling, fitted on the validation split"
NOT_FITTED = (
    "every validation photo was right: a sharper answer always scores better there, so no finite "
    "temperature fits; the probabilities are served as the model gives them (T = 1)"
)


NOT_BETTER = (
    "the fitted temperature lowered the validation split's NLL but not its expected calibration "
    "error: the probabilities are served as the model gives them (T = 1)"
)


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


def calibration(
    validation_truth: np.ndarray,
    validation: np.ndarray,
    test_truth: np.ndarray,
    test: np.ndarray,
) -> dict:
    """The manifest's ``calibration``: the temperature ``T`` minimizing the validation split's NLL
    of ``calibrated(p, T)`` (the raw served probabilities ``validation``), and the expected
    calibration error of both splits before and after. A split with no mistake has no finite
    optimum (sharpening always lowers its NLL): then ``T`` stays 1 and ``note`` says why."""
    temperature = metrics.fit_temperature(validation_truth, validation)
    note = None
    low = metrics.TEMPERATURE_BOUNDS[0]
    if temperature <= low * 1.001 and (validation.argmax(axis=1) == validation_truth).all():
        temperature, note = 1.0, NOT_FITTED
    temperature = round(temperature, 4)
    if note is None and metrics.expected_calibration_error(
        validation_truth, serving.calibrated(validation, temperature)
    ) > metrics.expected_calibration_error(validation_truth, validation):
        temperature, note = 1.0, NOT_BETTER  # decided on validation: the test split chooses nothing
    splits = {"validation": (validation_truth, validation), "test": (test_truth, test)}
    fitted = {
        "temperature": temperature,
        "method": CALIBRATION_METHOD,
        "ece_before": {k: round(metrics.expected_calibration_error(*v), 4) for k, v in splits.items()},
        "ece_after": {
            k: round(metrics.expected_calibration_error(truth, serving.calibrated(p, temperature)), 4)
            for k, (truth, p) in splits.items()
        },
        "nll_before": {k: round(metrics.negative_log_likelihood(*v), 4) for k, v in splits.items()},
        "nll_after": {
            k: round(metrics.negative_log_likelihood(truth, serving.calibrated(p, temperature)), 4)
            for k, (truth, p) in splits.items()
        },
        "bins": 15,
    }
    if note:
        fitted["note"] = note
    return fitted


def reliability_figure(truth: np.ndarray, raw: np.ndarray, temperature: float, file: Path) -> None:
    """The reliability diagram of ``raw`` probabilities before and after ``calibrated(raw, T)``."""
    after = serving.calibrated(raw, temperature)
    curves = {
        f"before (ECE {metrics.expected_calibration_error(truth, raw):.3f})": metrics.reliability(truth, raw),
        f"after, T = {temperature:g} (ECE {metrics.expected_calibration_error(truth, after):.3f})": (
            metrics.reliability(truth, after)
        ),
    }
    plots.reliability_diagram(curves, file, f"Reliability ({len(truth)} photos, 15 bins)")


def calibration_section(fitted: dict) -> str:
    """The report's calibration section (markdown)."""
    lines = [
        "",
        "## Calibration",
        "",
        f"Served probabilities are `softmax(log p / T)` with T = {fitted['temperature']:g} "
        f"({fitted['method']}); `min_confidence` compares them. The ranking never changes.",
        "",
        "| expected calibration error (15 bins) | before | after |",
        "| --- | ---: | ---: |",
    ]
    for split in ("validation", "test"):
        lines.append(f"| {split} | {fitted['ece_before'][split]:.3f} | {fitted['ece_after'][split]:.3f} |")
    if "note" in fitted:
        lines += ["", f"Not fitted: {fitted['note']}."]
    lines += [
        "",
        "![reliability, test split](reliability.png) "
        "![reliability, validation split](validation/reliability.png)",
    ]
    return "\n".join(lines) + "\n"


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


def data_folders(data: Path | Sequence[Path]) -> list[Path]:
    """One data folder (a path) or several (a list of them), as a list."""
    return [Path(data)] if isinstance(data, (str, os.PathLike)) else [Path(folder) for folder in data]


def _same_classes(data: Path | Sequence[Path], test_dir: Path) -> None:
    folders = data_folders(data)
    trained, _ = merged_class_folders(folders)
    tested = [folder.name for folder in class_folders(test_dir)]
    if tested != trained:
        what = "training folder has" if len(folders) == 1 else "training folders have"
        raise DatasetError(
            f"--test-dir {test_dir} has classes {', '.join(tested)}; the {what} "
            f"{', '.join(trained)}: they must be the same sub-folders."
        )


def splits(
    dataset: Dataset, options: Options, test_dir: Path | None, workdir: Path | None = None
) -> tuple[Dataset, Dataset, Dataset]:
    """(train, validation, test): stratified from ``dataset``, or the test photos from ``test_dir``
    (which must not hold any of the training folders' photos: same bytes, anywhere)."""
    if test_dir is None:
        train, validation, test = stratified_split(
            dataset.labels, options.validation_split, options.seed, options.test_split
        )
        return dataset.subset(train), dataset.subset(validation), dataset.subset(test)
    _same_classes(dataset.roots, test_dir)
    tested = load(test_dir, workdir=workdir)
    shared = set(tested.digests) & set(dataset.digests)
    if shared:
        raise DatasetError(
            f"--test-dir {test_dir} holds {len(shared)} photo(s) that are also in the training folder"
            f"{'s' if len(dataset.roots) > 1 else ''} (same bytes): a test must be on photos the model "
            "never saw."
        )
    train, validation, _ = stratified_split(dataset.labels, options.validation_split, options.seed)
    return dataset.subset(train), dataset.subset(validation), tested


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
    check_out(out, [*folders, *([test_dir] if test_dir else [])])
    quiet_tensorflow()
    classes, _ = merged_class_folders(folders)
    if test_dir is not None:
        _same_classes(folders, test_dir)  # before hours of decoding and training
        options = replace(options, test_split=0.0)
    rows = imagenet_rows(options, classes)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".model-", dir=out.parent))
    try:
        with tempfile.TemporaryDirectory(prefix="imgrec-train-") as scratch:
            manifest = _train(folders, staging, options, test_dir, Path(scratch), rows)
        staging.chmod(0o755)
        model_manifest.replace_folder(staging, out)
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
    started = time.perf_counter()
    dataset = load(data_dirs, workdir=scratch)
    data_name = " + ".join(folder_names(data_dirs))
    train_set, validation, test = splits(dataset, options, test_dir, scratch)
    import keras  # after the photos: a dataset's mistake is reported without waiting for TensorFlow
    import tensorflow as tf

    print(
        f"{len(dataset.classes)} classes: {len(train_set.labels)} training, {len(validation.labels)} "
        f"validation and {len(test.labels)} test photos; {len(dataset.skipped)} skipped",
        flush=True,
    )
    start = options.imagenet_mapping()
    keras.utils.set_random_seed(options.seed)
    full = keras.applications.MobileNetV2(weights="imagenet")  # the base, and the zero-shot answer
    if rows is None and options.imagenet_start and not options.imagenet_scores:
        rows, start = imagenet_start_of(keras, full, train_set, options)
    models = build(len(dataset.classes), options, rows, full)
    served = models[1]
    history, phase_seconds = fit(models, train_set, validation, options, scratch, warm_start=bool(rows))
    training_seconds = time.perf_counter() - started
    served, detector = with_detector(keras, models, train_set, validation, options, scratch)

    served.save(staging / KERAS_FILE)
    (staging / TFLITE_FILE).write_bytes(to_tflite(served))
    (staging / LABELS_FILE).write_text(json.dumps(dataset.classes, indent=0) + "\n")
    artifacts = {"keras": KERAS_FILE, "tflite": TFLITE_FILE}
    if options.quantize == "int8":
        rng = np.random.default_rng(options.seed)
        picked = rng.choice(
            len(train_set.labels), min(CALIBRATION_IMAGES, len(train_set.labels)), replace=False
        )
        (staging / INT8_FILE).write_bytes(to_tflite(served, train_set.images[np.sort(picked)]))
        artifacts["tflite_int8"] = INT8_FILE
    card = {
        "base_model": BASE_MODEL,
        "head": (
            "linear, started as ImageNet's classifier for "
            + ", ".join(f"{c}={label}" for c, label in start.items())
            + " (the zero-shot answer)"
            + ("" if len(start) == len(dataset.classes) else "; the other classes from a random start")
            if rows
            else "Dense(1024, relu), dropout, softmax; random start"
        ),
        "classes": {
            name: {
                "train": train_set.counts()[name],
                "validation": validation.counts()[name],
                "test": test.counts()[name],
            }
            for name in dataset.classes
        },
        "data": {
            "folder": data_name,
            "folders": dataset.folders,
            "fingerprint_sha256": dataset.fingerprint(),
            "images": len(dataset.labels),
            "skipped": [{"file": file, "why": why} for file, why in dataset.skipped],
            "test": f"--test-dir {test_dir.name}" if test_dir else f"{options.test_split:.0%} of each class",
        },
        "hyperparameters": asdict(options),
        "history": history,
        "training_seconds": round(training_seconds, 1),
        "phase_seconds": phase_seconds,
        "min_confidence": options.min_confidence,
    }
    fields = {
        "name": options.name,
        "version": options.version,
        "source": f"trained by `imgrec train` on {data_name}",
        "input": {"height": 224, "width": 224, "channels": 3, "dtype": "float32"},
        "preprocessing": {"color": "RGB", "resize": "bilinear", "scale": "x / 127.5 - 1", "keras_mode": "tf"},
        "output": {"classes": len(dataset.classes), "activation": "softmax"},
        "artifacts": artifacts,
        "built_with": {
            "keras": keras.__version__,
            "tensorflow": tf.__version__,
            "python": sys.version.split()[0],
        },
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "in_domain": detector,
        "card": card,
    }
    files = [KERAS_FILE, TFLITE_FILE, LABELS_FILE, *([INT8_FILE] if options.quantize else [])]
    model_manifest.write(staging, fields, files)

    # The exported files checked against each other on the validation photos, then the serving
    # classifier (what would be deployed) evaluated on validation (where thresholds are chosen) and
    # on test (which chose nothing: the card's figures).
    keras_probabilities = served.predict(
        stream.batches(validation.images, validation.labels, len(dataset.classes), options.batch_size),
        verbose=0,
    )[0]
    raw = serving.load_classifier(staging, "litert", threads=2)  # no calibration in the manifest yet
    raw_validation = evaluate.probabilities(raw, validation.images)
    card["tflite_vs_keras"] = agreement(keras_probabilities, raw_validation)
    raw_test = evaluate.probabilities(raw, test.images)
    fields["calibration"] = calibration(validation.labels, raw_validation, test.labels, raw_test)
    card["calibration"] = fields["calibration"]
    model_manifest.write(staging, fields, files)
    # From here on, what is served: calibrated probabilities (thresholds, figures, check set, int8).
    temperature = fields["calibration"]["temperature"]
    classifier = serving.load_classifier(staging, "litert", threads=2)
    fp32 = serving.calibrated(raw_validation, temperature)  # what ``classifier`` answers, not run twice
    thresholds = evaluate.thresholds(validation.labels, fp32, options.target_sensitivity)
    report = staging / "evaluation"
    title = f"{options.name}: test split (used to choose nothing)"
    tested = evaluate.evaluate(classifier, test, report, title, thresholds)
    title = f"{options.name}: validation split (it stopped training and chose the thresholds)"
    chosen = evaluate.evaluate(classifier, validation, report / "validation", title, thresholds)
    plots.learning_curves(history, report / "learning_curves.png")
    for folder, truth, probabilities in (
        (report, test.labels, raw_test),
        (report / "validation", validation.labels, raw_validation),
    ):
        reliability_figure(truth, probabilities, temperature, folder / "reliability.png")
    with (report / "report.md").open("a") as markdown:
        markdown.write(
            "\n## Training\n\n![learning curves](learning_curves.png)\n\n"
            "The validation split's report: [validation/report.md](validation/report.md).\n"
            + calibration_section(fields["calibration"])
        )
    card["in_domain"] = outside_figures(classifier, test, options, detector["threshold"])
    card["baseline"] = baseline(fp32, dataset.classes, options.min_confidence)
    card["validation"] = evaluate.card_figures(chosen)
    card["test"] = evaluate.card_figures(tested)
    card["warnings"] = warnings_of(card, test.labels, len(dataset.classes))
    for warning in card["warnings"]:
        print(f"WARNING: {warning}", flush=True)
    if options.quantize == "int8":
        int8_classifier = serving.load_classifier(staging, "litert", threads=2, precision="int8")
        int8 = evaluate.probabilities(int8_classifier, test.images)
        card["int8"] = {
            **agreement(serving.calibrated(raw_test, temperature), int8),
            "test_accuracy": float((int8.argmax(1) == test.labels).mean()),
        }
    model_manifest.write(staging, fields, files)  # the card now holds every figure
    manifest = cost.record(staging)  # what serving it costs: part of its contract
    print(cost.summary(manifest["cost"]))
    held_back = checkset.pick(test.labels, CHECK_PHOTOS, options.seed)
    checkset.write(
        staging,
        [(test.paths[i], dataset.classes[test.labels[i]]) for i in held_back],
        source=f"{len(held_back)} photos of the test split of {data_name}",
        expected_accuracy=card["test"]["accuracy"],
    )
    return manifest
