"""A folder of labelled photos (one sub-folder per class) -> checked, split, decoded once, streamed.

Photos are decoded by the serving code in its decode sandbox (``handler.recognition.sandbox``:
worker processes under a memory cap and a deadline), so training and serving cannot preprocess
differently, and a hostile file in a dataset costs no more than it would cost the API. Each photo is
decoded once, into ``Pixels``: a file of 224x224x3 uint8 rows (147 KB a photo, in ``TMPDIR``), read
back a batch at a time, so the memory training needs does not grow with the dataset (the float32
arrays of 10,000 photos would take 6 GB). Every problem a person can fix is a ``DatasetError`` with
a message that says what to do; unreadable files, and files over the size limit (refused by their
size, unread), are listed and skipped.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import weakref
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
CHUNK_BYTES = 128 * 1024 * 1024  # and at most this many of their bytes held at once
DUPLICATE = Unprocessable("A copy of another photo.", Code.CORRUPT_IMAGE)  # never decoded
SHAPE = (*imaging.INPUT_SIZE, 3)
ROW_BYTES = int(np.prod(SHAPE))


class Pixels:
    """Decoded photos in a file, one uint8 row each; indexing reads only the rows asked for and
    returns them scaled for the model (float32 in [-1, 1]), like the in-memory array it replaces."""

    def __init__(self, path: Path, rows: np.ndarray, owner: object | None = None) -> None:
        self.path = path
        self.rows = rows  # which rows of the file, in this view's order
        self._owner = owner  # keeps the file's folder alive while a view exists

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *SHAPE)

    def view(self, indexes: np.ndarray) -> Pixels:
        return Pixels(self.path, self.rows[np.asarray(indexes, dtype=np.int64)], self._owner or self)

    def uint8(self, key: int | slice | np.ndarray) -> np.ndarray:
        """The rows ``key`` selects, as decoded (uint8)."""
        rows = np.atleast_1d(self.rows[key])
        out = np.empty((len(rows), *SHAPE), np.uint8)
        with self.path.open("rb", buffering=0) as stream:
            for index, row in enumerate(rows):
                view = memoryview(out[index]).cast("B")
                if os.preadv(stream.fileno(), [view], int(row) * ROW_BYTES) != ROW_BYTES:
                    raise OSError(f"{self.path}: row {row} is short")
        return out

    def __getitem__(self, key: int | slice | np.ndarray) -> np.ndarray:
        scaled = np.stack([imaging.scale(image) for image in self.uint8(key)]) if len(self) else self._empty()
        return scaled[0] if isinstance(key, (int, np.integer)) else scaled

    def _empty(self) -> np.ndarray:
        return np.zeros((0, *SHAPE), np.float32)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """All of it in memory: only for small sets (a validation split, a calibration sample)."""
        array = self[np.arange(len(self))] if len(self) else self._empty()
        return array.astype(dtype) if dtype is not None else array


class PixelWriter:
    """Appends decoded photos to a new ``Pixels`` file in its own temporary folder (removed when the
    last view of it is gone, or at exit)."""

    def __init__(self, parent: Path | None = None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="imgrec-pixels-", dir=parent))
        weakref.finalize(self, shutil.rmtree, self.folder, True)
        self.path = self.folder / "pixels.u8"
        self._stream = self.path.open("wb")
        self.count = 0

    def append(self, pixels: np.ndarray) -> None:
        if pixels.shape != SHAPE or pixels.dtype != np.uint8:
            raise ValueError(f"expected {SHAPE} uint8 pixels, got {pixels.shape} {pixels.dtype}")
        self._stream.write(pixels.tobytes())
        self.count += 1

    def finish(self) -> Pixels:
        self._stream.close()
        return Pixels(self.path, np.arange(self.count), owner=self)


class DatasetError(ValueError):
    """The folder cannot be trained on; the message says why and what to do."""


@dataclass
class Dataset:
    """Decoded images, their class indexes and paths; the classes in label order."""

    root: Path
    classes: list[str]
    images: Pixels  # n photos; images[i], images[batch] -> float32 in [-1, 1]
    labels: np.ndarray  # (n,) int
    paths: list[Path]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, why)
    digests: list[str] = field(default_factory=list)  # each photo's sha256, as paths

    def counts(self) -> dict[str, int]:
        return {name: int((self.labels == index).sum()) for index, name in enumerate(self.classes)}

    def fingerprint(self) -> str:
        """sha256 over every used file's relative path and bytes: which data a model was trained on."""
        digest = hashlib.sha256()
        for path, photo in sorted(zip(self.paths, self.digests, strict=True)):
            digest.update(path.relative_to(self.root).as_posix().encode())
            digest.update(bytes.fromhex(photo))
        return digest.hexdigest()

    def subset(self, indexes: np.ndarray) -> Dataset:
        return Dataset(
            self.root,
            self.classes,
            self.images.view(indexes),
            self.labels[indexes],
            [self.paths[i] for i in indexes],
            digests=[self.digests[i] for i in indexes],
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
    seen: dict[Path, str] = {}
    for folder in folders:
        real = folder.resolve()
        if real in seen:
            raise DatasetError(
                f"{folder.name} and {seen[real]} are the same folder ({real}, through a link): each class "
                "needs photos of its own. Remove the link, or copy the photos that belong to both."
            )
        seen[real] = folder.name
    return folders


def photo_files(root: Path, folders: list[Path]) -> tuple[list[tuple[int, Path]], list[tuple[str, str]]]:
    """(class index, path) of every file under the class folders, and what is skipped unread (a
    linked sub-folder is not followed: it could lead anywhere, even back); a file that is the same
    file in two classes (a link) is refused: it cannot be both."""
    files, skipped = [], []
    for index, folder in enumerate(folders):
        for path in sorted(folder.rglob("*")):
            if path.is_symlink() and path.is_dir():
                skipped.append((path.relative_to(root).as_posix(), "a link to a folder: not followed"))
            elif path.is_file() and not path.name.startswith("."):
                files.append((index, path))
    owners: dict[Path, tuple[int, Path]] = {}
    unique = []
    for index, path in files:
        real = path.resolve()
        if real in owners and owners[real][0] != index:
            other = owners[real][1]
            raise DatasetError(
                f"{path.relative_to(root)} and {other.relative_to(root)} are the same file in two classes: "
                "a photo belongs to one class. Remove one of them."
            )
        if real not in owners:  # the same file twice in one class counts once
            owners[real] = (index, path)
            unique.append((index, path))
    return unique, skipped


def chunks(files: list[tuple[int, Path]]) -> list[list[tuple[int, Path]]]:
    """Groups of at most ``CHUNK`` files and ``CHUNK_BYTES`` bytes (as ``stat`` says), read and
    decoded together: the bytes held at once stay bounded whatever the files' sizes."""
    groups: list[list[tuple[int, Path]]] = [[]]
    held = 0
    for item in files:
        try:
            size = min(item[1].stat().st_size, LIMITS.max_bytes + 1)
        except OSError:
            size = 0
        if groups[-1] and (len(groups[-1]) >= CHUNK or held + size > CHUNK_BYTES):
            groups.append([])
            held = 0
        groups[-1].append(item)
        held += size
    return [group for group in groups if group]


def sandbox() -> DecodeSandbox:
    """Decode workers for a dataset: one per CPU."""
    return DecodeSandbox.start(available_cpus(), DECODE_MEMORY_BYTES, DECODE_DEADLINE_S)


def _read(files: list[tuple[int, Path]]) -> list[bytes | Refusal]:
    """Each file's bytes; one over the size limit is refused by its size, never read, and none is
    read past the limit (a file that grows after ``stat``, or that ``stat`` calls empty)."""
    read: list[bytes | Refusal] = []
    for _, path in files:
        try:
            check_image_size(path.stat().st_size, LIMITS.max_bytes)
            with path.open("rb") as stream:
                data = stream.read(LIMITS.max_bytes + 1)
            check_image_size(len(data), LIMITS.max_bytes)
            read.append(data)
        except Refusal as error:
            read.append(error)
        except OSError:
            read.append(Unprocessable("The file cannot be read.", Code.CORRUPT_IMAGE))
    return read


def _duplicate(root: Path, path: Path, index: int, first_index: int, first: Path) -> None:
    """A byte-identical copy in another class is a contradiction; in its own class, a skip."""
    if index != first_index:
        raise DatasetError(
            f"{path.relative_to(root)} and {first.relative_to(root)} are the same photo (same bytes) in two "
            "classes: a photo belongs to one class. Remove one of them."
        )


def load(root: Path, progress: bool = True, workdir: Path | None = None) -> Dataset:
    """Decode every photo under ``root`` once, into ``Pixels`` (under ``workdir``, default TMPDIR);
    skip (and list) what is not a readable image."""
    folders = class_folders(root)
    files, skipped = photo_files(root, folders)
    labels, paths, digests = [], [], []
    seen: dict[str, tuple[int, Path]] = {}  # a photo's sha256 -> its class and first path
    writer = PixelWriter(workdir)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(total=len(files), desc=f"decoding {root.name}", unit="photo")
    with sandbox() as decoder:
        for chunk in chunks(files):
            read = _read(chunk)
            for position, ((index, path), data) in enumerate(zip(chunk, read, strict=True)):
                if not isinstance(data, bytes):
                    continue
                digest = hashlib.sha256(data).hexdigest()
                if digest in seen:  # a copy: it would count twice, or land in two splits
                    _duplicate(root, path, index, *seen[digest])
                    first = seen[digest][1].relative_to(root).as_posix()
                    skipped.append((path.relative_to(root).as_posix(), f"the same photo as {first}"))
                    read[position] = DUPLICATE
                else:
                    seen[digest] = (index, path)
            for (index, path), data, decoded in zip(chunk, read, decoder.decode(read, LIMITS), strict=True):
                if isinstance(decoded, Refusal):
                    if data is not DUPLICATE:  # listed above
                        skipped.append((path.relative_to(root).as_posix(), decoded.message))
                    continue
                writer.append(decoded)
                labels.append(index)
                paths.append(path)
                digests.append(hashlib.sha256(data).hexdigest())  # type: ignore[arg-type]
            if progress:
                iterator.update(len(chunk))
    if progress:
        iterator.close()
    dataset = Dataset(
        root,
        [folder.name for folder in folders],
        writer.finish(),
        np.array(labels, dtype=np.int64),
        paths,
        skipped,
        digests,
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


def stratified_split(
    labels: np.ndarray, validation: float, seed: int, test: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, validation, test) indexes: the given share of each class held out for each (at least
    one photo when the share is not 0), the rest trains; the same seed gives the same split."""
    rng = np.random.default_rng(seed)
    train, held_validation, held_test = [], [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        tests = max(1, round(len(members) * test)) if test else 0
        validations = max(1, round(len(members) * validation)) if validation else 0
        held_test.extend(members[:tests])
        held_validation.extend(members[tests : tests + validations])
        train.extend(members[tests + validations :])
    return tuple(np.array(sorted(part), dtype=np.int64) for part in (train, held_validation, held_test))
