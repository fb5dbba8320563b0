"""The training settings, defined once: ``imgrec train``'s flags are generated from these fields
(name, type, default, help), so the command line and ``train()`` cannot disagree on a default.
Light to import (no TensorFlow): the CLI reads it to build its parser."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


def option(default: Any, help: str, flag: bool = True) -> Any:
    """A field with its help text; ``flag=False`` keeps it off the command line."""
    return field(default=default, metadata={"help": help, "flag": flag})


@dataclass(frozen=True)
class Options:
    name: str = option("custom", "model name (imgrec train: the data folder's name)", flag=False)
    version: str = option("1.0.0", "model version")
    epochs: int = option(15, "epochs of the head on frozen features")
    fine_tune_layers: int = option(30, "then fine-tune the top N base layers (0: head only)")
    fine_tune_epochs: int = option(8, "epochs of fine-tuning")
    validation_split: float = option(0.15, "share of each class held out to stop training and choose")
    test_split: float = option(
        0.15, "share of each class held out for the card's figures (0 with --test-dir)"
    )
    seed: int = option(7, "seed of the split, the shuffles and the initial weights")
    batch_size: int = option(32, "images per training step")
    learning_rate: float = option(1e-3, "Adam's learning rate for the head")
    fine_tune_learning_rate: float = option(1e-5, "Adam's learning rate for fine-tuning")
    dropout: float = option(0.3, "dropout before the softmax")
    rotation: float = option(0.1, "augmentation: RandomRotation factor (0.5: any angle)")
    zoom: float = option(0.1, "augmentation: RandomZoom factor")
    patience: int = option(4, "epochs without a better validation AUC before stopping")
    feature_cache: bool = option(True, "head phase on cached base features (fast; see --feature-copies)")
    feature_copies: int = option(
        0,
        "with --feature-cache: also cache N augmented copies of each training photo (flips, rotation, "
        "zoom; N more feature passes); validation stays as it is",
    )
    class_weight: str = option(
        "balanced", "balanced (each class counts alike), sqrt (its square root: halfway) or none"
    )
    flip_average: bool = option(True, "served model averages each photo with its mirror (2x inference)")
    rotation_average: bool = option(
        False,
        "with --flip-average: also the photo's and its mirror's rotations by 90, 180 and 270 degrees "
        "(8 views, 8x inference; for photos with no up, like dermoscopy)",
    )
    imagenet_scores: bool = option(False, "the head also reads MobileNetV2's 1,000 ImageNet class scores")
    imagenet_start: bool = option(
        True,
        "where a folder's training photos concentrate on one ImageNet class (the zero-shot answer), its "
        "head column starts as ImageNet's classifier for it (printed; --imagenet-classes wins)",
    )
    imagenet_classes: str = option(
        "",
        "your classes are ImageNet's (FOLDER=LABEL,...: ants=ant,bees=bee): the head starts as ImageNet's "
        "own classifier for them (the zero-shot answer) and keeps it unless training beats it on validation",
    )
    outside: str = option(
        "",
        "folders of photos that are none of your classes (comma-separated; any layout): the in-domain "
        "detector's outside set on the card, beside the shared ImageNet photos and synthetic ones",
    )
    target_sensitivity: float = option(0.9, "two classes: the sensitivity a second threshold is chosen for")
    quantize: str | None = option(None, "add a full-integer int8 .tflite", flag=False)
    min_confidence: float | None = option(None, "below it, answers say uncertain", flag=False)

    def __post_init__(self) -> None:
        """Mistakes a person can make on the command line, refused before anything is read."""
        problems = []
        if not 0 < self.validation_split < 1:
            problems.append("--validation-split must be above 0 and below 1 (it stops training)")
        if not 0 <= self.test_split < 1:
            problems.append("--test-split must be at least 0 and below 1")
        if self.validation_split + self.test_split >= 0.9:
            problems.append("--validation-split and --test-split leave too little to train on")
        if not 0 < self.target_sensitivity <= 1:
            problems.append("--target-sensitivity must be above 0 and at most 1")
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be at least 1")
        if self.feature_copies < 0:
            problems.append("--feature-copies cannot be negative")
        if self.class_weight not in ("balanced", "sqrt", "none"):
            problems.append("--class-weight must be balanced, sqrt or none")
        if self.rotation_average and not self.flip_average:
            problems.append("--rotation-average averages the mirrors too: it needs --flip-average")
        if self.fine_tune_layers < 0 or self.fine_tune_epochs < 0:
            problems.append("--fine-tune-layers and --fine-tune-epochs cannot be negative")
        if self.imagenet_classes:
            try:
                self.imagenet_mapping()
            except ValueError as error:
                problems.append(str(error))
            if self.imagenet_scores:
                problems.append("--imagenet-classes and --imagenet-scores: choose one")
        if problems:
            raise ValueError("; ".join(problems))

    def outside_folders(self) -> list:
        """``--outside`` as paths (empty: only the shared photos and the synthetic ones)."""
        from pathlib import Path

        return [Path(folder.strip()) for folder in self.outside.split(",") if folder.strip()]

    def imagenet_mapping(self) -> dict[str, str]:
        """``--imagenet-classes`` as ``{folder: ImageNet label}`` (empty: not given)."""
        if not self.imagenet_classes:
            return {}
        pairs = [pair.partition("=") for pair in self.imagenet_classes.split(",")]
        if any(not folder.strip() or not sep or not label.strip() for folder, sep, label in pairs):
            raise ValueError(
                f"--imagenet-classes {self.imagenet_classes!r}: write FOLDER=LABEL pairs separated by "
                "commas, e.g. ants=ant,bees=bee"
            )
        mapping = {folder.strip(): label.strip() for folder, _, label in pairs}
        if len(mapping) != len(pairs) or len(set(mapping.values())) != len(mapping):
            raise ValueError(f"--imagenet-classes {self.imagenet_classes!r} names a folder or a label twice")
        return mapping


def command_line_fields() -> list[tuple[str, type, Any, str]]:
    """``(flag, type, default, help)`` for each field the command line offers."""
    types = {"str": str, "int": int, "float": float, "bool": bool}
    return [
        ("--" + f.name.replace("_", "-"), types[str(f.type)], f.default, f.metadata["help"])
        for f in fields(Options)
        if f.metadata["flag"]
    ]
