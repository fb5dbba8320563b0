"""The Keras models training makes, sharing their layers: keras-io's transfer-learning recipe on
MobileNetV2 (a frozen ImageNet base, a small head over your classes), with the augmentation it
trains through and the served model it is exported as. Every one takes uint8 RGB pixels, as the
decoder makes them and the function serves them, and scales them first, in its graph
(``layers.model.export.pixel_scaling``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from training.options import Options


@dataclass(frozen=True)
class Models:
    """What ``build`` returns: one set of layers, seen six ways."""

    trainer: Any  # augmentation, then the classifier: what trains on streamed photos
    served: Any  # the classifier (with flip_average/rotation_average: the mean of its views)
    extractor: Any  # the frozen base, pooled (with imagenet_scores: and ImageNet's scores): cached
    head: Any  # the top alone, on the extractor's features
    base: Any  # MobileNetV2 up to out_relu: its top layers unfreeze for fine-tuning
    pooled: Any  # the pooled backbone features alone: what the in-domain detector reads


def build(classes: int, options: Options, imagenet_rows: list[int | None] | None = None, full=None) -> Models:
    """The models, sharing their layers (see ``Models``). ``served``: with ``flip_average`` the mean
    of a photo's and its mirror's answers, with ``rotation_average`` too of their rotations by 90,
    180 and 270 degrees (8 views). With ``imagenet_rows`` (your classes are those ImageNet classes)
    the head is linear and starts as ImageNet's own classifier restricted to them: before any
    training, the model answers exactly what MobileNetV2 answers zero-shot."""
    import keras
    from keras import layers

    from layers.model.export import pixel_input, pixel_scaling

    # MobileNetV2 up to its last feature layer is exactly what include_top=False returns; built from
    # the full ImageNet weights so a machine that cached only that file (offline) can train too.
    if full is None:  # else the caller seeded before building it: the same draws either way
        keras.utils.set_random_seed(options.seed)
        full = keras.applications.MobileNetV2(weights="imagenet")
    base = keras.Model(full.input, full.get_layer("out_relu").output, name="mobilenet_v2_base")
    base.trainable = False
    augmentation = augmentation_layers(keras, options)
    pool = layers.GlobalAveragePooling2D()
    # ImageNet's own classifier on the pooled features (frozen): its 1,000 class probabilities, for
    # the head to read beside the features. Where your classes are ImageNet's (ants, bees), the head
    # starts from what MobileNetV2 already knows instead of relearning it from a few hundred photos.
    imagenet = full.get_layer("predictions")
    imagenet.trainable = False
    joined = layers.Concatenate(name="features_and_imagenet_scores")
    hidden = layers.Dense(1024, activation="relu")
    dropout = layers.Dropout(options.dropout)
    head_output = layers.Dense(classes, activation="softmax")

    def features(x):
        # training=False: batch-norm stays in inference mode, even when the top layers fine-tune.
        pooled = pool(base(x, training=False))
        return joined([pooled, imagenet(pooled)]) if options.imagenet_scores else pooled

    def top(features):
        if imagenet_rows:
            return head_output(dropout(features))
        return head_output(dropout(hidden(features)))

    def classify(x):
        return top(features(x))

    inputs = pixel_input(keras)
    scaled = pixel_scaling(keras)(inputs)  # one layer, shared: every model below takes pixels
    trainer = keras.Model(inputs, classify(augmentation(scaled)), name="trainer")
    served = keras.Model(inputs, served_answer(keras, scaled, classify, options), name="classifier")
    extractor = keras.Model(inputs, features(scaled), name="features")
    cached = keras.Input(extractor.output_shape[1:])
    head = keras.Model(cached, top(cached), name="head")
    if imagenet_rows:
        start_as_imagenet(head_output, imagenet, imagenet_rows)
    # The pooled backbone features alone (after fine-tuning too): what the in-domain detector reads.
    pooled = keras.Model(inputs, pool(base(scaled, training=False)), name="pooled_features")
    return Models(trainer, served, extractor, head, base, pooled)


def augmentation_layers(keras, options: Options):
    """What the trainer sees instead of a photo: flipped, rotated and zoomed at random (Keras
    preprocessing layers, active only in training; on the scaled pixels in the trainer, on the
    pixels themselves for ``stream.features``' copies)."""
    layers = keras.layers
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal_and_vertical"),
            layers.RandomRotation(options.rotation),
            layers.RandomZoom(options.zoom),
        ],
        name="augmentation",
    )


def served_answer(keras, inputs, classify, options: Options):
    """The served model's output: ``classify(inputs)`` (``inputs``: the scaled pixels), or with
    ``flip_average`` the mean over the photo's views (with ``rotation_average``: the 8 symmetries of
    the square)."""
    answer = classify(inputs)
    if not options.flip_average:
        return answer
    views = [inputs, keras.ops.flip(inputs, axis=2)]
    if options.rotation_average:  # the 8 symmetries of the square: flips, then transposed
        # (not ops.rot90: it loses the static channel count, and TFLite's Conv2D needs it)
        views += [keras.ops.flip(view, axis=1) for view in views]
        views += [keras.ops.transpose(view, (0, 2, 1, 3)) for view in views]
    return keras.layers.Average()([classify(view) for view in views])


def start_as_imagenet(head_output, imagenet, rows: list[int | None]) -> None:
    """The head's softmax starts as ImageNet's classifier for ``rows`` (one per class, in order); a
    None row (a folder ImageNet does not know) keeps its random start."""
    kernel, bias = imagenet.get_weights()
    start_kernel, start_bias = head_output.get_weights()
    for column, row in enumerate(rows):
        if row is not None:
            start_kernel[:, column], start_bias[column] = kernel[:, row], bias[row]
    head_output.set_weights([start_kernel, start_bias])
