"""The two training phases, keras-io's transfer-learning recipe: (1) the head, on the frozen base's
cached features (``--feature-cache``) or on the streamed photos with augmentation; (2) fine-tuning
the top base layers at a low learning rate on the streamed photos, batch-norm in inference mode.

Each phase stops early on the validation split's ROC AUC and keeps its best epoch, and is kept only
if that epoch beats what came before it: the head's starting point when it starts as ImageNet's
classifier (``warm_start``), the head for fine-tuning. Class weights for imbalance."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training import stream
from training.dataset import Dataset
from training.model import Models
from training.options import Options


@dataclass(frozen=True)
class Fitted:
    """What ``fit`` returns: each phase's per-epoch history (rounded; ``kept`` says whether the
    phase was kept) and how long each phase took, in seconds."""

    history: dict[str, dict]
    seconds: dict[str, float]


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


def best_score(history: dict) -> tuple[float, float]:
    """A phase's best epoch as Keras' early stopping restores it (the first highest validation ROC
    AUC), with its validation loss to break a tie: (auc, -loss), higher is better."""
    best = int(np.argmax(history["val_auc"]))
    return history["val_auc"][best], -history["val_loss"][best]


def score_now(model, validation_data) -> tuple[float, float]:
    """How ``model`` scores on validation as it stands (see ``best_score``)."""
    data = validation_data if isinstance(validation_data, tuple) else (validation_data,)
    scores = model.evaluate(*data, verbose=0, return_dict=True)
    return scores["auc"], -scores["loss"]


@dataclass
class Phases:
    """What both phases share: the settings, the trainer (whose weights a phase not kept gives
    back), the class weights, the validation stream; and what they record."""

    options: Options
    trainer: Any
    classes: int
    weights: dict[int, float] | None
    validation_stream: Any
    history: dict[str, dict] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def compile(self, model, learning_rate: float) -> None:
        import keras

        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss="categorical_crossentropy",
            metrics=["accuracy", auc_metric(self.classes)],
        )

    def run(self, phase: str, model, epochs: int, data: tuple, validation_data) -> None:
        """``model.fit`` for ``phase``, its history recorded. Early stopping follows the validation
        ROC AUC: on a small, imbalanced split the loss is noisy and accuracy rewards the majority."""
        import keras

        stop = keras.callbacks.EarlyStopping(
            monitor="val_auc", mode="max", patience=self.options.patience, restore_best_weights=True
        )
        fitted = model.fit(
            *data,
            validation_data=validation_data,
            epochs=epochs,
            class_weight=self.weights,
            callbacks=[stop],
            shuffle=len(data) == 2,  # arrays: Keras shuffles them; a stream shuffles itself
            verbose=2,
        )
        self.history[phase] = fitted.history

    def keep_if_better(
        self, phase: str, before: tuple[float, float], weights_before: list
    ) -> tuple[float, float]:
        """The phase's best score if it beats ``before``; else the trainer gets ``weights_before``
        back and ``before`` stands."""
        if best_score(self.history[phase]) > before:
            self.history[phase]["kept"] = [1.0]
            return best_score(self.history[phase])
        self.trainer.set_weights(weights_before)
        self.history[phase]["kept"] = [0.0]
        print(f"{phase}: no epoch beat what came before it on validation, which is kept", flush=True)
        return before


def head_on_features(
    phases: Phases, models: Models, train: Dataset, validation: Dataset, scratch: Path, warm_start: bool
) -> tuple[float, float] | None:
    """Phase 1 on the base's features, computed once into ``scratch`` (with ``feature_copies``: and
    on augmented copies of each training photo). Returns the head's starting score if ``warm_start``."""
    options, copies = phases.options, phases.options.feature_copies
    print(
        "phase 1: the head, on the base's features (computed once"
        + (f"; with {copies} augmented copies of each training photo)" if copies else ")"),
        flush=True,
    )
    train_features = stream.features(
        models.extractor,
        train.images,
        options.batch_size,
        scratch / "train.npy",
        augment=models.trainer.get_layer("augmentation"),
        copies=copies,
    )
    validation_features = stream.features(
        models.extractor, validation.images, options.batch_size, scratch / "validation.npy"
    )
    targets = np.eye(phases.classes, dtype=np.float32)
    validation_data = (np.asarray(validation_features), targets[validation.labels])
    phases.compile(models.head, options.learning_rate)
    start = score_now(models.head, validation_data) if warm_start else None
    training_data = (np.asarray(train_features), targets[np.tile(train.labels, 1 + copies)])
    phases.run("head", models.head, options.epochs, training_data, validation_data)
    return start


def head_on_photos(
    phases: Phases, models: Models, train: Dataset, warm_start: bool
) -> tuple[float, float] | None:
    """Phase 1 on the streamed photos, augmented. Returns the starting score if ``warm_start``."""
    options = phases.options
    print("phase 1: the head, on the streamed photos (augmented)", flush=True)
    training_stream = stream.batches(
        train.images, train.labels, phases.classes, options.batch_size, options.seed
    )
    phases.compile(models.trainer, options.learning_rate)
    start = score_now(models.trainer, phases.validation_stream) if warm_start else None
    phases.run("head", models.trainer, options.epochs, (training_stream,), phases.validation_stream)
    return start


def unfreeze_top(base, layers: int) -> None:
    """The top ``layers`` of ``base`` train; batch-norm layers never do."""
    import keras

    base.trainable = True
    for layer in base.layers[:-layers]:
        layer.trainable = False
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def fine_tune(phases: Phases, models: Models, train: Dataset, best: tuple[float, float]) -> None:
    """Phase 2: the top ``fine_tune_layers`` base layers on the streamed photos, augmented; kept
    only if it beats ``best``, the head's score."""
    options = phases.options
    started = time.perf_counter()
    head_weights = models.trainer.get_weights()
    print(f"phase 2: fine-tuning the top {options.fine_tune_layers} base layers (augmented)", flush=True)
    unfreeze_top(models.base, options.fine_tune_layers)
    training_stream = stream.batches(
        train.images, train.labels, phases.classes, options.batch_size, options.seed + 1
    )
    phases.compile(models.trainer, options.fine_tune_learning_rate)
    phases.run(
        "fine_tune", models.trainer, options.fine_tune_epochs, (training_stream,), phases.validation_stream
    )
    phases.seconds["fine_tune"] = round(time.perf_counter() - started, 1)
    phases.keep_if_better("fine_tune", best, head_weights)


def rounded(history: dict[str, dict]) -> dict[str, dict]:
    """Each phase's per-epoch lists, to 4 decimals (what the card records)."""
    return {
        phase: {
            k: [round(float(v), 4) for v in values] for k, values in h.items() if isinstance(values, list)
        }
        for phase, h in history.items()
    }


def fit(
    models: Models,
    train: Dataset,
    validation: Dataset,
    options: Options,
    scratch: Path,
    warm_start: bool = False,
) -> Fitted:
    """Phase 1, the head; phase 2, fine-tuning (with ``fine_tune_layers``). ``warm_start``: the head
    starts as ImageNet's classifier, and phase 1 must beat that start to be kept."""
    classes = len(train.classes)
    phases = Phases(
        options,
        models.trainer,
        classes,
        class_weights(train.labels, classes, options.class_weight),
        stream.batches(validation.images, validation.labels, classes, options.batch_size),
    )
    started = time.perf_counter()
    start_weights = models.trainer.get_weights()
    if options.feature_cache:
        start = head_on_features(phases, models, train, validation, scratch, warm_start)
    else:
        start = head_on_photos(phases, models, train, warm_start)
    best = (
        phases.keep_if_better("head", start, start_weights) if start else best_score(phases.history["head"])
    )
    phases.seconds["head"] = round(time.perf_counter() - started, 1)
    if options.fine_tune_layers:
        fine_tune(phases, models, train, best)
    return Fitted(rounded(phases.history), phases.seconds)
