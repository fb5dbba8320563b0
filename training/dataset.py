"""A folder of labelled photos (one sub-folder per class) -> checked, split, decoded arrays.

Photos are decoded by the serving code in its decode sandbox (``handler.recognition.sandbox``:
worker processes under a memory cap and a deadline), so training and serving cannot preprocess
differently, and a hostile file in a dataset costs no more than it would cost the API. Every
problem a person can fix is a ``DatasetError`` with a message that says what to do; unreadable
files (and files over the size limit, refused by their size unread) are listed and skipped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from handler.config import available_cpus
from handler.recognition import imaging
from handler.recognition.errors import Code, Refusal, Unprocessable, check_image_size
from handler.recognition.sandbox import DecodeSandbox

MIN_IMAGES_PER_CLASS = 5
LIMITS = imaging.DecodeLimits(max_bytes=50 * 1024 * 1024, max_pixels=40_000_000)
# Your own photos: a generous deadline and memory cap per photo (a slow disk, a 40 MP scan).
DECODE_DEADLINE_S = 10.0
DECODE_MEMORY_BYTES = 1024 * 1024 * 1024
CHUNK = 32  # photos read and decoded together (the sandbox's workers take them in parallel)


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


def sandbox() -> DecodeSandbox:
    """Decode workers for a dataset: one per CPU."""
    return DecodeSandbox.start(available_cpus(), DECODE_MEMORY_BYTES, DECODE_DEADLINE_S)


def _read(files: list[tuple[int, Path]]) -> list[bytes | Refusal]:
    """Each file's bytes; one over the size limit is refused by its size, never read."""
    read: list[bytes | Refusal] = []
    for _, path in files:
        try:
            check_image_size(path.stat().st_size, LIMITS.max_bytes)
            read.append(path.read_bytes())
        except Refusal as error:
            read.append(error)
        except OSError:
            read.append(Unprocessable("The file cannot be read.", Code.CORRUPT_IMAGE))
    return read


def load(root: Path, progress: bool = True) -> Dataset:
    """Decode every photo under ``root``; skip (and list) what is not a readable image."""
    folders = class_folders(root)
    images, labels, paths, skipped = [], [], [], []
    files = [(index, path) for index, folder in enumerate(folders) for path in sorted(folder.rglob("*"))]
    files = [(index, path) for index, path in files if path.is_file() and not path.name.startswith(".")]
    if progress:
        from tqdm import tqdm

        iterator = tqdm(total=len(files), desc=f"decoding {root.name}", unit="photo")
    with sandbox() as decoder:
        for start in range(0, len(files), CHUNK):
            chunk = files[start : start + CHUNK]
            for (index, path), decoded in zip(chunk, decoder.decode(_read(chunk), LIMITS), strict=True):
                if isinstance(decoded, Refusal):
                    skipped.append((path.relative_to(root).as_posix(), decoded.message))
                    continue
                images.append(imaging.scale(decoded))
                labels.append(index)
                paths.append(path)
            if progress:
                iterator.update(len(chunk))
    if progress:
        iterator.close()
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
