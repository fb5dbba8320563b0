"""A folder of labelled photos (one sub-folder per class) -> checked, split, decoded arrays.

Photos are decoded by the serving code (``handler.recognition.imaging``), so training and serving cannot
preprocess differently. Every problem a person can fix is a ``DatasetError`` with a message that
says what to do; unreadable files are listed and skipped, never fatal.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from handler.recognition import imaging
from handler.recognition.errors import Refusal

MIN_IMAGES_PER_CLASS = 5
LIMITS = imaging.DecodeLimits(max_bytes=50 * 1024 * 1024, max_pixels=40_000_000)


class DatasetError(ValueError):
    """The folder cannot be trained on; the message says why and what to do."""


@dataclass
class Dataset:
    """Decoded images, their class indexes and paths; the classes in label order."""

    root: Path
    classes: list[str]
    images: np.ndarray  # (n, 224, 224, 3) float32 in [-1, 1]
    labels: np.ndarray  # (n,) int
    paths: list[Path]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, why)

    def counts(self) -> dict[str, int]:
        return {name: int((self.labels == index).sum()) for index, name in enumerate(self.classes)}

    def fingerprint(self) -> str:
        """sha256 over every used file's relative path and bytes: which data a model was trained on."""
        digest = hashlib.sha256()
        for path in sorted(self.paths):
            digest.update(path.relative_to(self.root).as_posix().encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()

    def subset(self, indexes: np.ndarray) -> Dataset:
        return Dataset(
            self.root,
            self.classes,
            self.images[indexes],
            self.labels[indexes],
            [self.paths[i] for i in indexes],
        )


def class_folders(root: Path) -> list[Path]:
    """The class folders of ``root``, sorted; a clear error for every shape that cannot be trained."""
    if not root.exists():
        raise DatasetError(f"{root} does not exist: give a folder with one sub-folder of photos per class.")
    if not root.is_dir():
        raise DatasetError(f"{root} is a file: give a folder with one sub-folder of photos per class.")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(folders) < 2:
        found = ", ".join(p.name for p in folders) or "none"
        raise DatasetError(
            f"{root} has {len(folders)} class folder(s) ({found}); a classifier needs at least 2, "
            "one sub-folder of photos per class (e.g. ants/ and bees/)."
        )
    return folders


def load(root: Path, progress: bool = True) -> Dataset:
    """Decode every photo under ``root``; skip (and list) what is not a readable image."""
    folders = class_folders(root)
    images, labels, paths, skipped = [], [], [], []
    files = [(index, path) for index, folder in enumerate(folders) for path in sorted(folder.rglob("*"))]
    files = [(index, path) for index, path in files if path.is_file() and not path.name.startswith(".")]
    iterator = files
    if progress:
        from tqdm import tqdm

        iterator = tqdm(files, desc=f"decoding {root.name}", unit="photo")
    for index, path in iterator:
        try:
            images.append(imaging.to_array(path.read_bytes(), LIMITS))
        except Refusal as error:
            skipped.append((path.relative_to(root).as_posix(), error.message))
            continue
        labels.append(index)
        paths.append(path)
    dataset = Dataset(
        root,
        [folder.name for folder in folders],
        np.stack(images) if images else np.zeros((0, *imaging.INPUT_SIZE, 3), np.float32),
        np.array(labels, dtype=np.int64),
        paths,
        skipped,
    )
    too_few = {name: count for name, count in dataset.counts().items() if count < MIN_IMAGES_PER_CLASS}
    if too_few:
        listed = ", ".join(f"{name}: {count}" for name, count in too_few.items())
        raise DatasetError(
            f"Too few readable photos in {listed}; each class needs at least {MIN_IMAGES_PER_CLASS} "
            f"(more is better: a few dozen per class is a start)."
            + (f" Skipped as unreadable: {len(skipped)}." if skipped else "")
        )
    return dataset


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indexes: ``fraction`` of each class (at least one) held out, fixed seed."""
    rng = np.random.default_rng(seed)
    train, validation = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        held = max(1, round(len(members) * fraction))
        validation.extend(members[:held])
        train.extend(members[held:])
    return np.array(sorted(train)), np.array(sorted(validation))
