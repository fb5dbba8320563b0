"""The input pipeline: photos stream from ``Pixels`` a batch at a time, never the whole dataset.

``batches``: a ``tf.data`` pipeline over a split (a new shuffle each epoch, batching, prefetch) for
Keras' ``fit``; augmentation runs in the model (its preprocessing layers), so the pipeline only
reads. ``features``: the frozen base's pooled features (1,280 float32 a photo, 2,280 with ImageNet's
class scores: 5 to 9 KB), computed once
per split and kept on disk, so the head-only phase trains on them in seconds instead of running the
base over every photo in every epoch (augmented only through ``copies``: features of a few flipped,
rotated and zoomed copies of each training photo, cached beside it; the measured trade-offs are in
docs/reports/models.md and docs/reports/recipes.md).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from training.dataset import SHAPE, Pixels


def batches(pixels: Pixels, labels: np.ndarray, classes: int, batch_size: int, seed: int | None = None):
    """(images, one-hot labels) batches of a split; ``seed``: shuffled, differently each epoch."""
    import tensorflow as tf

    targets = np.eye(classes, dtype=np.float32)[labels]
    epochs = itertools.count()

    def generate():
        order = np.arange(len(pixels))
        if seed is not None:
            order = np.random.default_rng(seed + next(epochs)).permutation(order)
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            yield pixels[chosen], targets[chosen]

    signature = (
        tf.TensorSpec((None, *SHAPE), tf.uint8),
        tf.TensorSpec((None, classes), tf.float32),
    )
    steps = -(-len(pixels) // batch_size)  # Keras knows each epoch's length: no "ran out of data"
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    return dataset.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(2)


def features(
    extractor, pixels: Pixels, batch_size: int, file: Path, augment=None, copies: int = 0
) -> np.ndarray:
    """``extractor``'s output for every photo, batch by batch, into ``file`` (a ``.npy`` the caller
    removes; memory: one batch). With ``copies``, then that many augmented copies of every photo
    (``augment``: the trainer's preprocessing layers, a new draw each time, on the pixels: each copy
    is rounded back to uint8 pixels, a photo like the others), after the originals: row
    ``k * len(pixels) + i`` is copy ``k`` of photo ``i`` (``k = 0``: the photo itself)."""
    from tqdm import tqdm

    count = len(pixels)
    shape = ((1 + copies) * count, extractor.output_shape[-1])
    out = np.lib.format.open_memmap(file, "w+", np.float32, shape)
    steps = [(copy, start) for copy in range(1 + copies) for start in range(0, count, batch_size)]
    for copy, start in tqdm(steps, desc="features", unit="batch", leave=False):
        chosen = np.arange(start, min(start + batch_size, count))
        batch = pixels[chosen]
        if copy:
            copied = np.asarray(augment(batch.astype(np.float32), training=True))
            batch = np.clip(np.rint(copied), 0, 255).astype(np.uint8)
        # predict_on_batch runs the compiled graph: an eager call keeps every activation alive and
        # peaked at 3.7 GB over 20 batches of 32 here, this stays near the model's own size.
        out[copy * count + chosen] = extractor.predict_on_batch(batch)
    out.flush()
    return out
