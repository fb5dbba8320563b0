"""Broken builds of a good model directory, for rehearsing a rollout (tests, ``make rollout-demo``).

Each is what a real pipeline can ship by mistake, under the good model's name and version, with a
manifest that pins its own files (so the cold start's integrity check passes: these are builds,
not corruptions):

- ``shuffled_labels``: the right weights, ``labels.json`` in another order (a class list rebuilt
  from a folder listing in another order);
- ``double_scaled``: a graph that scales its pixels twice: ``x / 127.5 - 1`` and again (the model
  wrapped in MobileNetV2's preprocessing once more, though its graph already does it: the course's
  classic mistake, now made at export rather than in the function);
- ``worse_weights``: the classifier's weights with noise (a model that is simply worse than the card
  it ships with).

The last two need TensorFlow (``.keras`` in, ``.tflite`` out), as do the costly builds: the same
answers as the good model (its output plus 1e-30 times a mean of the extra work, which no converter
can fold away), at another cost. Each is written with its own measured cost (``training/cost.py``,
an honest manifest) or with the good build's (``lying=True``: a manifest copied from a good build,
whoever wrote it):

- ``slow``: one extra 3x3 convolution of 64 channels at 224x224 (3.7 GFLOP, about 12 times
  MobileNetV2's 0.3);
- ``ten_times_slower``: ten of them;
- ``memory_hungry``: a 1x1 convolution to 1,024 channels at 224x224: 205 MB of activations per image.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from handler.recognition import manifest
from layers.model import manifest_writer


def _copy(good: Path, out: Path) -> dict:
    """``good``'s served files in ``out`` (not its check set: the hook brings the good one's)."""
    fields = manifest.read(good)
    out.mkdir(parents=True, exist_ok=True)
    for name in [*fields["files"], manifest.MANIFEST_FILE]:
        shutil.copyfile(good / name, out / name)
    return fields


def _pin(out: Path, fields: dict) -> Path:
    manifest_writer.write(out, {k: v for k, v in fields.items() if k != "files"}, list(fields["files"]))
    return out


def shuffled_labels(good: Path, out: Path, seed: int = 7) -> Path:
    fields = _copy(good, out)
    labels = json.loads((out / manifest.LABELS_FILE).read_text())
    order = np.random.default_rng(seed).permutation(len(labels))
    while len(labels) > 1 and (order == np.arange(len(labels))).any():  # every label moves
        order = np.roll(order, 1)
    (out / manifest.LABELS_FILE).write_text(json.dumps([labels[i] for i in order], indent=0) + "\n")
    return _pin(out, fields)


def _rebuilt(good: Path, out: Path, change: Callable) -> Path:
    """``good``'s Keras model changed by ``change(keras, model) -> model``, saved and converted."""
    import keras
    import tensorflow as tf

    from layers.model.export import to_tflite

    fields = _copy(good, out)
    model = change(keras, keras.models.load_model(good / manifest.artifact(fields, "keras")))
    model.save(out / manifest.artifact(fields, "keras"))
    (out / manifest.artifact(fields, "tflite")).write_bytes(to_tflite(tf, model))
    int8 = fields.get("artifacts", {}).get("tflite_int8")
    if int8:  # not rebuilt: dropped, so nothing stale is served
        (out / int8).unlink()
        fields["files"].pop(int8)
        fields["artifacts"].pop("tflite_int8")
    return _pin(out, fields)


def double_scaled(good: Path, out: Path) -> Path:
    from layers.model.export import PIXELS_DTYPE, scaled_part

    def change(keras, model):
        pixels = keras.Input(model.input_shape[1:], dtype=PIXELS_DTYPE)
        once = keras.layers.Rescaling(1 / 127.5, offset=-1)(pixels)
        twice = keras.layers.Rescaling(1 / 127.5, offset=-1)(once)
        return keras.Model(pixels, scaled_part(model)(twice))

    return _rebuilt(good, out, change)


def worse_weights(good: Path, out: Path, noise: float = 3.0, seed: int = 7) -> Path:
    """``noise``: the noise's standard deviation, in standard deviations of each weight array."""

    def change(keras, model):
        dense = next(layer for layer in reversed(_layers(model)) if layer.get_weights())
        rng = np.random.default_rng(seed)
        noisy = [w + rng.normal(0, noise * w.std(), w.shape).astype(w.dtype) for w in dense.get_weights()]
        dense.set_weights(noisy)
        return model

    return _rebuilt(good, out, change)


def _layers(model) -> list:
    """Every layer of ``model``, those of the models inside it in their place (the export's
    MobileNetV2 sits inside the model that scales its pixels)."""
    nested = [_layers(layer) if hasattr(layer, "layers") else [layer] for layer in model.layers]
    return [layer for layers in nested for layer in layers]


def _costly(good: Path, out: Path, extra: Callable, lying: bool) -> Path:
    """``good`` plus the work ``extra(keras, inputs) -> tensor``, answering what ``good`` answers;
    its manifest's cost measured (``lying``: copied from ``good``)."""
    from training import cost

    def change(keras, model):
        inputs = keras.Input(model.input_shape[1:], dtype=model.inputs[0].dtype)
        work = keras.ops.mean(extra(keras, keras.ops.cast(inputs, "float32")), axis=(1, 2, 3), keepdims=False)
        return keras.Model(inputs, model(inputs) + 1e-30 * keras.ops.expand_dims(work, -1))

    built = _rebuilt(good, out, change)
    if lying:
        return claiming_cost_of(good, built)
    cost.record(built)
    return built


def claiming_cost_of(good: Path, build: Path) -> Path:
    """``build`` with ``good``'s recorded cost in its manifest (re-pinned: the integrity check passes)."""
    fields = manifest.read(build)
    fields["cost"] = manifest.read(good)["cost"]
    return _pin(build, fields)


def _convolutions(count: int) -> Callable:
    def extra(keras, inputs):
        x = keras.layers.Conv2D(64, 3, padding="same")(inputs)
        for _ in range(count):
            x = keras.layers.Conv2D(64, 3, padding="same")(x)
        return x

    return extra


def slow(good: Path, out: Path, lying: bool = True) -> Path:
    return _costly(good, out, _convolutions(1), lying)


def ten_times_slower(good: Path, out: Path, lying: bool = False) -> Path:
    return _costly(good, out, _convolutions(10), lying)


def memory_hungry(good: Path, out: Path, lying: bool = False) -> Path:
    return _costly(good, out, lambda keras, inputs: keras.layers.Conv2D(1024, 1)(inputs), lying)


BUILDS: dict[str, Callable[[Path, Path], Path]] = {
    "shuffled labels": shuffled_labels,
    "double-scaled input": double_scaled,
    "worse weights": worse_weights,
}
# What ``make rollout-demo`` also shows: a build whose answers are right and whose manifest says it
# costs what the good build costs.
COSTLY_BUILDS: dict[str, Callable[[Path, Path], Path]] = {"slow, good's manifest": slow}
