"""Your own classes: a folder of labelled photos -> a model directory the service serves.

The tutorial's transfer learning: MobileNetV2's ImageNet features, frozen; global average
pooling; ``Dense(1024, relu)``; dropout; a softmax over your classes. Augmentation by Keras
preprocessing layers, class weights for imbalance, early stopping that keeps the best epoch, and
an optional second phase that fine-tunes the top N base layers at a low learning rate (batch-norm
stays in inference mode). Exported like ``make model`` (``.keras``, fp32 ``.tflite``, labels,
manifest) plus a model card, the ``.tflite``/``.keras`` agreement, optionally a full-integer int8
``.tflite``; then the serving classifier is evaluated on the validation split (``evaluation/``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from handler.recognition import manifest as model_manifest
from handler.recognition import model as serving
from handler.recognition.manifest import LABELS_FILE
from training import checkset, evaluate
from training.dataset import Dataset, load, stratified_split
from training.options import Options

__all__ = ["Options", "train"]

KERAS_FILE = "model.keras"
TFLITE_FILE = "model.tflite"
INT8_FILE = "model_int8.tflite"
BASE_MODEL = (
    'keras.applications.MobileNetV2(weights="imagenet") up to out_relu (= include_top=False), 224x224'
)
CALIBRATION_IMAGES = 100
# Photos of the validation split kept as the check set of the pre-traffic quality gate.
CHECK_PHOTOS = 32


def build(classes: int, options: Options):
    """(training model with augmentation, inference model sharing its layers, the frozen base)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(options.seed)
    # MobileNetV2 up to its last feature layer is exactly what include_top=False returns; built from
    # the full ImageNet weights so a machine that cached only that file (offline) can train too.
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
    hidden = layers.Dense(1024, activation="relu")
    dropout = layers.Dropout(options.dropout)
    head = layers.Dense(classes, activation="softmax")

    def classify(x):
        # training=False: batch-norm stays in inference mode, even when the top layers fine-tune.
        return head(dropout(hidden(pool(base(x, training=False)))))

    inputs = keras.Input((224, 224, 3))
    trainer = keras.Model(inputs, classify(augmentation(inputs)), name="trainer")
    served = keras.Model(inputs, classify(inputs), name="classifier")
    return trainer, served, base


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


def class_weights(labels: np.ndarray, classes: int) -> dict[int, float]:
    """Balanced weights: each class counts as much as the others, whatever its size."""
    counts = np.bincount(labels, minlength=classes)
    return {index: float(len(labels) / (classes * count)) for index, count in enumerate(counts) if count}


def fit(trainer, base, train: Dataset, validation: Dataset, options: Options) -> dict:
    """Train the head, then (optionally) fine-tune the top base layers; the history of both."""
    import keras

    weights = class_weights(train.labels, len(train.classes))
    # Early stopping follows the validation ROC AUC: on a small, imbalanced split the loss is noisy
    # and accuracy rewards the majority class.
    stop = keras.callbacks.EarlyStopping(
        monitor="val_auc", mode="max", patience=options.patience, restore_best_weights=True
    )
    classes = len(train.classes)
    targets, validation_targets = np.eye(classes)[train.labels], np.eye(classes)[validation.labels]
    common = {
        "validation_data": (validation.images, validation_targets),
        "batch_size": options.batch_size,
        "class_weight": weights,
        "callbacks": [stop],
        "verbose": 1,  # Keras' own progress bar per epoch
    }
    trainer.compile(
        optimizer=keras.optimizers.Adam(options.learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy", auc_metric(classes)],
    )
    history = {"head": trainer.fit(train.images, targets, epochs=options.epochs, **common).history}
    if options.fine_tune_layers:
        base.trainable = True
        for layer in base.layers[: -options.fine_tune_layers]:
            layer.trainable = False
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
        trainer.compile(
            optimizer=keras.optimizers.Adam(options.fine_tune_learning_rate),
            loss="categorical_crossentropy",
            metrics=["accuracy", auc_metric(classes)],
        )
        history["fine_tune"] = trainer.fit(
            train.images, targets, epochs=options.fine_tune_epochs, **common
        ).history
    return {
        phase: {k: [round(float(v), 4) for v in values] for k, values in h.items()}
        for phase, h in history.items()
    }


def to_tflite(served, calibration: np.ndarray | None = None) -> bytes:
    """fp32 TFLite, or with ``calibration`` images a full-integer int8 model with float input/output."""
    import contextlib
    import io

    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(served)
    if calibration is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[np.newaxis]] for image in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def agreement(reference: np.ndarray, other: np.ndarray) -> dict:
    """How closely two models' probabilities agree on the same images."""
    return {
        "images": len(reference),
        "top1_agreement": float((reference.argmax(1) == other.argmax(1)).mean()) if len(reference) else 1.0,
        "max_abs_probability_difference": float(np.abs(reference - other).max()) if len(reference) else 0.0,
    }


def train(data_dir: Path, out: Path, options: Options) -> dict:
    """Train on ``data_dir`` and write the model directory ``out``; return its manifest."""
    import keras
    import tensorflow as tf

    started = time.perf_counter()
    dataset = load(data_dir)
    train_index, validation_index = stratified_split(dataset.labels, options.validation_split, options.seed)
    train_set, validation = dataset.subset(train_index), dataset.subset(validation_index)
    print(
        f"{len(dataset.classes)} classes, {len(train_set.labels)} training and {len(validation.labels)} "
        f"validation photos; {len(dataset.skipped)} skipped",
        flush=True,
    )
    trainer, served, base = build(len(dataset.classes), options)
    history = fit(trainer, base, train_set, validation, options)
    training_seconds = time.perf_counter() - started

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".model-", dir=out.parent))
    served.save(staging / KERAS_FILE)
    (staging / TFLITE_FILE).write_bytes(to_tflite(served))
    (staging / LABELS_FILE).write_text(json.dumps(dataset.classes, indent=0) + "\n")
    artifacts = {"keras": KERAS_FILE, "tflite": TFLITE_FILE}
    if options.quantize == "int8":
        rng = np.random.default_rng(options.seed)
        picked = rng.choice(
            len(train_set.images), min(CALIBRATION_IMAGES, len(train_set.images)), replace=False
        )
        (staging / INT8_FILE).write_bytes(to_tflite(served, train_set.images[picked]))
        artifacts["tflite_int8"] = INT8_FILE
    card = {
        "base_model": BASE_MODEL,
        "classes": {
            name: {"train": train_set.counts()[name], "validation": validation.counts()[name]}
            for name in dataset.classes
        },
        "data": {
            "folder": data_dir.name,
            "fingerprint_sha256": dataset.fingerprint(),
            "images": len(dataset.labels),
            "skipped": [{"file": file, "why": why} for file, why in dataset.skipped],
        },
        "hyperparameters": asdict(options),
        "history": history,
        "training_seconds": round(training_seconds, 1),
        "min_confidence": options.min_confidence,
    }
    fields = {
        "name": options.name,
        "version": options.version,
        "source": f"trained by `imgrec train` on {data_dir.name}",
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
        "card": card,
    }
    files = [KERAS_FILE, TFLITE_FILE, LABELS_FILE, *([INT8_FILE] if options.quantize else [])]
    model_manifest.write(staging, fields, files)

    # The exported files checked against each other on the validation photos, then the serving
    # classifier (what would be deployed) evaluated the way `imgrec evaluate` does.
    keras_probabilities = served.predict(validation.images, batch_size=options.batch_size, verbose=0)
    classifier = serving.load_classifier(staging, "litert", threads=2)
    fp32 = evaluate.probabilities(classifier, validation.images)
    card["tflite_vs_keras"] = agreement(keras_probabilities, fp32)
    report = evaluate.evaluate(
        classifier, validation, staging / "evaluation", f"{options.name}: validation split"
    )
    card["validation"] = {k: report[k] for k in ("images", "accuracy", "balanced_accuracy", "per_class")}
    if "roc_auc" in report:
        card["validation"]["roc_auc"] = report["roc_auc"]
    if options.quantize == "int8":
        int8_classifier = serving.load_classifier(staging, "litert", threads=2, precision="int8")
        int8 = evaluate.probabilities(int8_classifier, validation.images)
        truth = validation.labels
        card["int8"] = {
            **agreement(fp32, int8),
            "validation_accuracy": float((int8.argmax(1) == truth).mean()),
        }
    manifest = model_manifest.write(staging, fields, files)  # the card now holds every figure
    held_back = checkset.pick(validation.labels, CHECK_PHOTOS, options.seed)
    checkset.write(
        staging,
        [(validation.paths[i], dataset.classes[validation.labels[i]]) for i in held_back],
        source=f"{len(held_back)} photos of the validation split of {data_dir.name}",
        expected_accuracy=card["validation"]["accuracy"],
    )

    staging.chmod(0o755)
    if out.exists():
        shutil.rmtree(out)
    os.replace(staging, out)
    return manifest
