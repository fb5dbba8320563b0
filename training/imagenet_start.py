"""Start from what ImageNet already knows, without being told.

MobileNetV2 answers 1,000 ImageNet classes. Where a class folder's training photos concentrate on one
of them (ants on ``ant``, bees on ``bee``), the head's column for that folder starts as ImageNet's
own classifier for that class: before any training the model answers what MobileNetV2 answers
zero-shot, and training keeps it unless it beats it on validation (``phases.fit``). This module runs
the zero-shot model over each folder's training photos and proposes that mapping; ``imgrec train``
prints it with the share of photos that support it and uses it unless ``--no-imagenet-start``
(``--imagenet-classes`` given by hand wins). Folders ImageNet does not know (no class takes
``MIN_SHARE`` of their photos, or two folders land on the same class) start as before.

A WordNet subtree (all the dog breeds as "dog") would need the WordNet hierarchy, which Keras does
not ship and these machines cannot download: only single classes are proposed.
"""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass

import numpy as np

from training.dataset import Dataset, DatasetError
from training.options import Options

MIN_SHARE = 0.5  # of a folder's training photos whose zero-shot top-1 is the proposed class
BATCH = 32


@dataclass(frozen=True)
class Proposal:
    """What one folder's photos say in ImageNet's terms."""

    folder: str
    row: int  # ImageNet's output index of its most frequent top-1 class
    label: str  # that class, by name (its WordNet id where the name is ImageNet's twice)
    share: float  # of the folder's photos whose top-1 it is
    photos: int

    @property
    def taken(self) -> bool:
        return self.share >= MIN_SHARE


def top1_rows(full, images, batch_size: int = BATCH) -> np.ndarray:
    """MobileNetV2's (``full``: with its ImageNet top, taking pixels) top-1 row for each of ``images``."""
    rows = [
        full.predict_on_batch(images[np.arange(start, min(start + batch_size, len(images)))]).argmax(axis=1)
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(rows) if rows else np.zeros(0, int)


def propose(
    top1: np.ndarray, labels: np.ndarray, classes: list[str], names: list[list[str]]
) -> list[Proposal]:
    """Each folder's most frequent ImageNet class and its share; a class two folders land on is
    no one's (it cannot tell them apart)."""
    counted = {}
    for index, folder in enumerate(classes):
        rows = top1[labels == index]
        values, counts = np.unique(rows, return_counts=True)
        best = int(np.argmax(counts))
        counted[folder] = (int(values[best]), float(counts[best] / len(rows)), len(rows))
    twice = {row for row, _, _ in counted.values() if sum(r == row for r, _, _ in counted.values()) > 1}
    proposals = []
    by_name = Counter(name for _, name in names)
    for folder, (row, share, photos) in counted.items():
        wnid, name = names[row]
        label = wnid if by_name[name] > 1 else name
        proposals.append(Proposal(folder, row, label, 0.0 if row in twice else round(share, 3), photos))
    return proposals


def rows_of(proposals: list[Proposal]) -> list[int | None] | None:
    """The head's starting rows in folder order (None: that folder starts as before); None when no
    folder is ImageNet's."""
    rows = [p.row if p.taken else None for p in proposals]
    return rows if any(row is not None for row in rows) else None


def described(proposals: list[Proposal]) -> list[str]:
    """One line per folder: the mapping chosen and the share that supports it, or why not."""
    lines = []
    for p in proposals:
        if p.taken:
            lines.append(
                f"{p.folder} = ImageNet's {p.label} ({p.share:.0%} of its {p.photos} training photos)"
            )
        elif p.share == 0.0:
            lines.append(
                f"{p.folder}: its photos land on ImageNet's {p.label}, as another folder's do: no start"
            )
        else:
            lines.append(
                f"{p.folder}: no ImageNet class takes {MIN_SHARE:.0%} of its photos (at most {p.label}, "
                f"{p.share:.0%}): starts untrained"
            )
    return lines


@dataclass(frozen=True)
class Start:
    """How the head starts: ``rows``, ImageNet's row for each folder in order (None: that folder
    starts at random; ``rows`` None: no ImageNet start at all), and ``labels``, ``{folder: ImageNet
    label}`` for the folders that start as ImageNet's (given by hand or proposed)."""

    rows: list[int | None] | None
    labels: dict[str, str]


def rows_given(options: Options, classes: list[str]) -> list[int] | None:
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


def proposed(keras, full, train: Dataset, options: Options) -> Start:
    """The head's start proposed from the training photos by the zero-shot model ``full``, printed
    with the shares behind it."""
    from layers.model.export import fetch_labels, taking_pixels

    top1 = top1_rows(taking_pixels(keras, full), train.images, options.batch_size)
    proposals = propose(top1, train.labels, train.classes, fetch_labels(keras))
    print("ImageNet start (--no-imagenet-start: none; --imagenet-classes: your own mapping):", flush=True)
    for line in described(proposals):
        print(f"  {line}", flush=True)
    return Start(rows_of(proposals), {p.folder: p.label for p in proposals if p.taken})


def head_start(keras, full, train: Dataset, options: Options, given: list[int | None] | None) -> Start:
    """``given`` (``--imagenet-classes``, checked by ``rows_given``) if any; else, with
    ``--imagenet-start`` and without ``--imagenet-scores``, what the training photos propose."""
    if given is None and options.imagenet_start and not options.imagenet_scores:
        return proposed(keras, full, train, options)
    return Start(given, options.imagenet_mapping())
