"""A folder of labelled photos (one sub-folder per class) -> checked, split, decoded once, streamed.

Photos are decoded by the serving code in its decode sandbox (``handler.recognition.sandbox``:
worker processes under a memory cap and a deadline), so training and serving cannot preprocess
differently, and a hostile file in a dataset costs no more than it would cost the API. Each photo is
decoded once, into ``Pixels``: a file of 224x224x3 uint8 rows (147 KB a photo, in ``TMPDIR``), read
back a batch at a time, as they are (every model scales its pixels in its graph), so the memory
training needs does not grow with the dataset (the uint8 arrays of 10,000 photos would take 1.5 GB,
float32 ones 6 GB). Every problem a person can fix is a ``DatasetError`` with
a message that says what to do; unreadable files, and files over the size limit (refused by their
size, unread), are listed and skipped.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from handler.config import available_cpus
from handler.errors import Code, Refusal, Unprocessable, check_image_size
from handler.recognition import imaging
from handler.recognition.sandbox import Bounds, DecodeSandbox

if TYPE_CHECKING:
    from training.options import Options

MIN_IMAGES_PER_CLASS = 5
LIMITS = imaging.DecodeLimits(max_bytes=50 * 1024 * 1024, max_pixels=40_000_000)
# Your own photos: generous bounds per photo (a 40 MP scan; a laptop busy with other work).
DECODE_BOUNDS = Bounds(cpu_s=10.0, wall_s=60.0, request_cpu_s=0.0, request_wall_s=0.0)  # never one request
DECODE_MEMORY_BYTES = 1024 * 1024 * 1024
CHUNK = 32  # photos read and decoded together (the sandbox's workers take them in parallel)
CHUNK_BYTES = 128 * 1024 * 1024  # and at most this many of their bytes held at once
DUPLICATE = Unprocessable("A copy of another photo.", Code.CORRUPT_IMAGE)  # never decoded
SHAPE = (*imaging.INPUT_SIZE, 3)
ROW_BYTES = int(np.prod(SHAPE))


class Pixels:
    """Decoded photos in a file, one uint8 row each; indexing reads only the rows asked for and
    returns them as the models take them (uint8: they scale them in their graph), like the in-memory
    array it replaces."""

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
        pixels = self.uint8(key) if len(self) else self._empty()
        return pixels[0] if isinstance(key, (int, np.integer)) else pixels

    def _empty(self) -> np.ndarray:
        return np.zeros((0, *SHAPE), np.uint8)

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
    images: Pixels  # n photos; images[i], images[batch] -> uint8 RGB pixels
    labels: np.ndarray  # (n,) int
    paths: list[Path]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, as ``name`` gives it; why)
    digests: list[str] = field(default_factory=list)  # each photo's sha256, as paths
    roots: list[Path] = field(default_factory=list)  # every data folder (``root`` is the first)
    folders: list[dict] = field(default_factory=list)  # per data folder: photos used, skipped, copies

    def __post_init__(self) -> None:
        if not self.roots:
            self.roots = [self.root]

    def name(self, path: Path) -> str:
        """A photo's name in messages, reports and the fingerprint: its path in its data folder,
        behind that folder's name when there are several (``folder_names``)."""
        return _namer(self.roots)(path)

    def counts(self) -> dict[str, int]:
        return {name: int((self.labels == index).sum()) for index, name in enumerate(self.classes)}

    def fingerprint(self) -> str:
        """sha256 over every used file's name and bytes: which data a model was trained on."""
        digest = hashlib.sha256()
        name = _namer(self.roots)
        for path, photo in sorted(zip(self.paths, self.digests, strict=True)):
            digest.update(name(path).encode())
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
            roots=self.roots,
        )


def folder_names(roots: Sequence[Path]) -> list[str]:
    """Each data folder's name as a dataset shows it: its own name, or the path as given where two
    folders share a name (``a/train``, ``b/train``)."""
    names = [root.name for root in roots]
    return [root.as_posix() if names.count(root.name) > 1 else root.name for root in roots]


def _namer(roots: Sequence[Path]):
    """``path -> name``: relative to its data folder; behind that folder's name when there are several."""
    if len(roots) == 1:
        (root,) = roots
        return lambda path: path.relative_to(root).as_posix()
    labels = folder_names(roots)

    def name(path: Path) -> str:
        for root, label in zip(roots, labels, strict=True):
            if path.is_relative_to(root):
                return f"{label}/{path.relative_to(root).as_posix()}"
        return path.as_posix()

    return name


def _subfolders(root: Path) -> list[Path]:
    """The class folders of one data folder (every sub-folder not hidden), sorted."""
    if not root.exists():
        raise DatasetError(f"{root} does not exist: give a folder with one sub-folder of photos per class.")
    if not root.is_dir():
        raise DatasetError(f"{root} is a file: give a folder with one sub-folder of photos per class.")
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _too_few_classes(where: str, folders: list[Path], verb: str = "has") -> DatasetError:
    found = ", ".join(sorted({p.name for p in folders})) or "none"
    count = len({p.name for p in folders})
    return DatasetError(
        f"{where} {verb} {count} class folder(s) ({found}); a "
        "classifier needs at least 2, one sub-folder of photos per class (e.g. ants/ and bees/)."
    )


def _distinct(folders: list[Path]) -> None:
    """Two class names must not be one folder (through a link): each class needs photos of its own."""
    seen: dict[Path, str] = {}
    for folder in folders:
        real = folder.resolve()
        if real in seen and seen[real] != folder.name:
            raise DatasetError(
                f"{folder.name} and {seen[real]} are the same folder ({real}, through a link): each class "
                "needs photos of its own. Remove the link, or copy the photos that belong to both."
            )
        seen.setdefault(real, folder.name)


def class_folders(root: Path) -> list[Path]:
    """The class folders of ``root``, sorted; a clear error for every shape that cannot be trained."""
    folders = _subfolders(root)
    if len(folders) < 2:
        raise _too_few_classes(str(root), folders)
    _distinct(folders)
    return folders


def merged_class_folders(roots: Sequence[Path]) -> tuple[list[str], list[tuple[int, Path]]]:
    """Several data folders as one: the classes (every class folder name of any of them, sorted)
    and each class folder as ``(class index, folder)``. A class may be in some folders only; each
    folder must hold at least one class, all of them together at least two; a folder given twice,
    or one inside another, is refused (its photos would count twice)."""
    if len(roots) == 1:
        folders = class_folders(roots[0])
        return [folder.name for folder in folders], list(enumerate(folders))
    if not roots:
        raise DatasetError("No data folder given: give at least one folder with one sub-folder per class.")
    resolved = [root.resolve() for root in roots]
    for i, (root, real) in enumerate(zip(roots, resolved, strict=True)):
        for other, other_real in zip(roots[:i], resolved[:i], strict=True):
            if real == other_real or real in other_real.parents or other_real in real.parents:
                raise DatasetError(
                    f"{root} and {other} are the same folder or one is inside the other: give each data "
                    "folder once (its photos would count twice)."
                )
    every: list[Path] = []
    for root in roots:
        folders = _subfolders(root)
        if not folders:
            raise DatasetError(
                f"{root} has no class folder: each data folder needs one sub-folder of photos per class "
                "(a class may be missing from some of the folders)."
            )
        every += folders
    classes = sorted({folder.name for folder in every})
    if len(classes) < 2:
        raise _too_few_classes(" and ".join(str(root) for root in roots), every, "have")
    _distinct(every)
    return classes, [(classes.index(folder.name), folder) for folder in every]


def photo_files(
    name, folders: list[tuple[int, Path]]
) -> tuple[list[tuple[int, Path]], list[tuple[str, str]]]:
    """(class index, path) of every file under the class folders (``(class index, folder)``), and
    what is skipped unread (a linked sub-folder is not followed: it could lead anywhere, even back);
    a file that is the same file in two classes (a link) is refused: it cannot be both. ``name``
    gives a path's name in messages (``_namer``)."""
    files, skipped = [], []
    for index, folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_symlink() and path.is_dir():
                skipped.append((name(path), "a link to a folder: not followed"))
            elif path.is_file() and not path.name.startswith("."):
                files.append((index, path))
    owners: dict[Path, tuple[int, Path]] = {}
    unique = []
    for index, path in files:
        real = path.resolve()
        if real in owners and owners[real][0] != index:
            other = owners[real][1]
            raise DatasetError(
                f"{name(path)} and {name(other)} are the same file in two classes: "
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
    return DecodeSandbox.start(available_cpus(), DECODE_MEMORY_BYTES, DECODE_BOUNDS)


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


def _duplicate(name, path: Path, index: int, first_index: int, first: Path) -> None:
    """A byte-identical copy in another class is a contradiction; in its own class, a skip."""
    if index != first_index:
        raise DatasetError(
            f"{name(path)} and {name(first)} are the same photo (same bytes) in two "
            "classes: a photo belongs to one class. Remove one of them."
        )


def load(
    root: Path | Sequence[Path],
    progress: bool = True,
    workdir: Path | None = None,
    min_per_class: int = MIN_IMAGES_PER_CLASS,
) -> Dataset:
    """Decode every photo under ``root`` (a data folder, or several merged: a class is the photos of
    its class folders in all of them) once, into ``Pixels`` (under ``workdir``, default TMPDIR);
    skip (and list) what is not a readable image, and every copy (same bytes) of a photo already
    taken, in the same folder or another."""
    roots = [root] if isinstance(root, (str, os.PathLike)) else list(root)
    roots = [Path(r) for r in roots]
    classes, folders = merged_class_folders(roots)
    name = _namer(roots)
    files, skipped = photo_files(name, folders)
    labels, paths, digests = [], [], []
    seen: dict[str, tuple[int, Path]] = {}  # a photo's sha256 -> its class and first path
    per_root = [{"images": 0, "skipped": 0, "copies_of_another_folder": 0} for _ in roots]

    def root_of(path: Path) -> int:
        return next((i for i, r in enumerate(roots) if path.is_relative_to(r)), 0)

    writer = PixelWriter(workdir)
    if progress:
        from tqdm import tqdm

        label = roots[0].name if len(roots) == 1 else f"{len(roots)} folders"
        iterator = tqdm(total=len(files), desc=f"decoding {label}", unit="photo")
    with sandbox() as decoder:
        for chunk in chunks(files):
            read = _read(chunk)
            for position, ((index, path), data) in enumerate(zip(chunk, read, strict=True)):
                if not isinstance(data, bytes):
                    continue
                digest = hashlib.sha256(data).hexdigest()
                if digest in seen:  # a copy: it would count twice, or land in two splits
                    _duplicate(name, path, index, *seen[digest])
                    first = seen[digest][1]
                    skipped.append((name(path), f"the same photo as {name(first)}"))
                    if root_of(first) != root_of(path):
                        per_root[root_of(path)]["copies_of_another_folder"] += 1
                    read[position] = DUPLICATE
                else:
                    seen[digest] = (index, path)
            for (index, path), data, decoded in zip(chunk, read, decoder.decode(read, LIMITS), strict=True):
                if isinstance(decoded, Refusal):
                    if data is not DUPLICATE:  # listed above
                        skipped.append((name(path), decoded.message))
                    continue
                writer.append(decoded)
                labels.append(index)
                paths.append(path)
                digests.append(hashlib.sha256(data).hexdigest())  # type: ignore[arg-type]
                per_root[root_of(path)]["images"] += 1
            if progress:
                iterator.update(len(chunk))
    if progress:
        iterator.close()
    for file, _ in skipped:
        for i, label in enumerate(folder_names(roots)):
            if len(roots) == 1 or file.startswith(f"{label}/"):
                per_root[i]["skipped"] += 1
                break
    dataset = Dataset(
        roots[0],
        classes,
        writer.finish(),
        np.array(labels, dtype=np.int64),
        paths,
        skipped,
        digests,
        roots,
        [{"folder": label, **counts} for label, counts in zip(folder_names(roots), per_root, strict=True)],
    )
    too_few = {name: count for name, count in dataset.counts().items() if count < min_per_class}
    if too_few:
        listed = ", ".join(f"{name}: {count}" for name, count in too_few.items())
        raise DatasetError(
            f"Too few readable photos in {listed}; each class needs at least {min_per_class} "
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


@dataclass(frozen=True)
class Splits:
    """The photos of a training run: all of them, their three splits, and the data's name (its
    folders' names, joined) as the card and the check set give it."""

    dataset: Dataset
    train: Dataset
    validation: Dataset
    test: Dataset  # chooses nothing: the card's figures
    name: str


def prepare(
    data_dirs: list[Path], options: Options, test_dir: Path | None, workdir: Path | None = None
) -> Splits:
    """The data folders decoded (into ``workdir``) and split (``splits``)."""
    dataset = load(data_dirs, workdir=workdir)
    name = " + ".join(folder_names(data_dirs))
    train, validation, test = splits(dataset, options, test_dir, workdir)
    return Splits(dataset, train, validation, test, name)


def data_folders(data: Path | Sequence[Path]) -> list[Path]:
    """One data folder (a path) or several (a list of them), as a list."""
    return [Path(data)] if isinstance(data, (str, os.PathLike)) else [Path(folder) for folder in data]


def same_classes(data: Path | Sequence[Path], test_dir: Path) -> None:
    """``test_dir`` has the training folders' classes, or a ``DatasetError`` says what differs."""
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
    same_classes(dataset.roots, test_dir)
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
