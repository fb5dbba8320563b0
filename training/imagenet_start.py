"""Start from what ImageNet already knows, without being told.

MobileNetV2 answers 1,000 ImageNet classes. Where a class folder's training photos concentrate on one
of them (ants on ``ant``, bees on ``bee``), the head's column for that folder starts as ImageNet's
own classifier for that class: before any training the model answers what MobileNetV2 answers
zero-shot, and training keeps it unless it beats it on validation (``train.fit``). This module runs
the zero-shot model over each folder's training photos and proposes that mapping; ``imgrec train``
prints it with the share of photos that support it and uses it unless ``--no-imagenet-start``
(``--imagenet-classes`` given by hand wins). Folders ImageNet does not know (no class takes
``MIN_SHARE`` of their photos, or two folders land on the same class) start as before.

A WordNet subtree (all the dog breeds as "dog") would need the WordNet hierarchy, which Keras does
not ship and these machines cannot download: only single classes are proposed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

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
    """MobileNetV2's (``full``: with its ImageNet top) top-1 row for each of ``images`` (scaled)."""
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
