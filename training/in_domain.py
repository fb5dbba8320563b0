"""An "outside what I know" answer for every model ``imgrec train`` makes.

A classifier trained for one job (delivery notes, skin lesions) is shown everything its users point
a camera at, and answers each photo with one of its classes, often confidently: a softmax has no
"none of these". So each model carries a detector of inputs unlike its training data, inside the
model itself (a second output, so the ``.keras`` and ``.tflite`` files answer it alike):

- **measure**: the Mahalanobis distance of the photo's pooled backbone features (1,280 numbers,
  MobileNetV2's global average pool), scaled to unit length, to the nearest class mean, with one
  covariance shared by the classes and shrunk towards a multiple of the identity (Ledoit and Wolf's
  shrinkage: a few hundred photos cannot estimate 1,280 x 1,280 numbers alone). Fitted on the
  training split. Unit length matters: on raw features a dermoscopy photo (small activations) sat
  closer to the ants-and-bees means than their own photos (10 % caught, AUROC 0.77); on unit-length
  ones 99 % are caught (AUROC 1.00), measured on the shared datasets.
- **threshold**: chosen on the validation split so that ``PASS_RATE`` (95 %) of its photos pass.
- **figures** (the card): on the test split, the share that passes; on an outside set built at
  training from photos that are not the user's classes (another dataset, the shared ImageNet photos,
  synthetic documents and noise), the share caught, and the ROC AUC of the distance between test
  and outside photos.

The softmax's own confidence (``min_confidence``, ``uncertain``) stays a separate idea: a model can
hesitate between two of its classes on a photo it knows well.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from training import evaluate, metrics, stream

if TYPE_CHECKING:
    from training.dataset import Dataset
    from training.model import Models
    from training.options import Options

PASS_RATE = 0.95
OUTPUT = "in_domain_distance"
MEASURE = (
    "Mahalanobis distance of the unit-length pooled MobileNetV2 features to the nearest class mean "
    "(shared covariance, Ledoit-Wolf shrinkage), fitted on the training split"
)
SYNTHETIC = 24  # synthetic outside photos: documents and noise, half each


@dataclass(frozen=True)
class Detector:
    """The fitted detector: whitening ``W`` (features -> whitened) and the whitened class means."""

    whitening: np.ndarray  # (d, d)
    means: np.ndarray  # (classes, d), whitened

    def distances(self, features: np.ndarray) -> np.ndarray:
        """(n, d) features -> (n,) squared Mahalanobis distance of their unit-length form to the
        nearest class mean."""
        whitened = unit(features) @ self.whitening
        squared = (whitened**2).sum(axis=1, keepdims=True) - 2 * whitened @ self.means.T
        return (squared + (self.means**2).sum(axis=1)).min(axis=1)


def unit(features: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (as ``keras.layers.UnitNormalization`` does in the model)."""
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def ledoit_wolf(centered: np.ndarray) -> tuple[np.ndarray, float]:
    """The shrunk covariance of ``centered`` (n, d) rows and the shrinkage chosen (0 to 1), as
    Ledoit and Wolf (2004) give it (scikit-learn's ``ledoit_wolf`` with ``assume_centered``)."""
    n, d = centered.shape
    empirical = centered.T @ centered / n
    squared = centered**2
    trace_terms = squared.sum(axis=0) / n
    mu = trace_terms.sum() / d
    beta_ = (squared.T @ squared).sum()
    delta_ = (empirical**2).sum()
    beta = (beta_ / n - delta_) / (d * n)
    delta = (delta_ - 2 * mu * trace_terms.sum() + d * mu**2) / d
    shrinkage = 0.0 if beta <= 0 else min(beta, delta) / delta
    return (1 - shrinkage) * empirical + shrinkage * mu * np.eye(d), float(shrinkage)


def fit(features: np.ndarray, labels: np.ndarray, classes: int) -> tuple[Detector, float]:
    """The detector fitted on training features and their labels; with the shrinkage chosen."""
    features = unit(features.astype(np.float64))
    means = np.stack([features[labels == c].mean(axis=0) for c in range(classes)])
    covariance, shrinkage = ledoit_wolf(features - means[labels])
    values, vectors = np.linalg.eigh(covariance)
    whitening = vectors @ np.diag(1 / np.sqrt(np.maximum(values, 1e-12))) @ vectors.T
    detector = Detector(whitening.astype(np.float32), (means @ whitening).astype(np.float32))
    return detector, shrinkage


def threshold(validation_distances: np.ndarray, pass_rate: float = PASS_RATE) -> float:
    """The distance under which ``pass_rate`` of the validation photos fall."""
    return float(np.quantile(validation_distances, pass_rate))


def attach(keras, served, pooled_features, detector: Detector):
    """``served`` (photo -> probabilities) with the distance as a second output, computed from the
    same input's pooled features (``pooled_features``: a layer-sharing model photo -> features). The
    matrices are frozen Dense layers (their weights go with the model's), the rest keras ops."""
    from keras import layers

    inputs = served.inputs[0]
    whiten = layers.Dense(
        detector.whitening.shape[1], use_bias=False, trainable=False, name="in_domain_whiten"
    )
    cross = layers.Dense(len(detector.means), trainable=False, name="in_domain_means")
    whitened = whiten(layers.UnitNormalization(axis=-1, name="in_domain_unit")(pooled_features(inputs)))
    to_means = cross(whitened)
    whiten.set_weights([detector.whitening])
    cross.set_weights([-2 * detector.means.T, (detector.means**2).sum(axis=1)])
    squared = keras.ops.sum(keras.ops.square(whitened), axis=-1, keepdims=True) + to_means
    distance = layers.Identity(name=OUTPUT)(keras.ops.min(squared, axis=-1, keepdims=True))
    return keras.Model(inputs, [served(inputs), distance], name="classifier_with_in_domain")


def synthetic_outside(count: int = SYNTHETIC, seed: int = 0) -> list[bytes]:
    """JPEG photos that are no one's classes: printed-page-like documents and noise."""
    import io

    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    photos = []
    for index in range(count):
        if index % 2:
            pixels = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
            if index % 4 == 1:  # smooth noise too, not only white noise
                pixels = np.asarray(
                    Image.fromarray(pixels).resize((14, 14)).resize((224, 224), Image.BICUBIC)
                )
            image = Image.fromarray(pixels)
        else:
            image = Image.new("RGB", (400, 560), (250, 250, 245))
            draw = ImageDraw.Draw(image)
            for line in range(int(rng.integers(12, 30))):
                y = 30 + line * 17
                width = int(rng.integers(120, 340))
                draw.rectangle([30, y, 30 + width, y + 7], fill=(40, 40, 40))
            if index % 4 == 0:
                draw.rectangle([30, 420, 370, 520], outline=(0, 0, 0), width=2)  # a delivery note's table
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        photos.append(buffer.getvalue())
    return photos


def outside_sources(folders: list[Path]) -> list[Path]:
    """Every photo file below ``folders`` (any layout: a dataset's class folders, a flat folder)."""
    suffixes = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
    return sorted(p for folder in folders for p in folder.rglob("*") if p.suffix.lower() in suffixes)


def figures(
    test_distances: np.ndarray, outside_distances: np.ndarray, limit: float, sources: list[str]
) -> dict:
    """The card's figures: test pass rate, outside catch rate (Wilson 95 % intervals), AUROC."""
    passed = int((test_distances <= limit).sum())
    caught = int((outside_distances > limit).sum())
    truth = np.concatenate([np.zeros(len(test_distances)), np.ones(len(outside_distances))])
    _, _, auroc = metrics.roc(truth.astype(int), np.concatenate([test_distances, outside_distances]))
    return {
        "test_pass_rate": round(passed / len(test_distances), 4),
        "test_pass_rate_95ci": [round(v, 4) for v in metrics.wilson(passed, len(test_distances))],
        "test_photos": len(test_distances),
        "outside_catch_rate": round(caught / len(outside_distances), 4),
        "outside_catch_rate_95ci": [round(v, 4) for v in metrics.wilson(caught, len(outside_distances))],
        "outside_photos": len(outside_distances),
        "outside_sources": sources,
        "auroc": round(float(auroc), 4),
    }


# The shared ImageNet photos beside the checkout (../shared/images), where they exist: photos of
# the world at large, in every outside set.
SHARED_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "images"
OUTSIDE_MOST = 160  # outside photos decoded from folders (a sample when there are more)


def outside_pixels(folders: list[Path], seed: int) -> tuple[np.ndarray, list[str]]:
    """The outside set, decoded as the function does (uint8 pixels): up to ``OUTSIDE_MOST`` photos from
    ``folders``, the shared ImageNet photos and the synthetic documents and noise; and what each
    source gave."""
    from handler.errors import Refusal
    from training.dataset import LIMITS, sandbox

    files = outside_sources(folders)
    if len(files) > OUTSIDE_MOST:  # a sample of the given folders; the shared photos always
        picked = np.random.default_rng(seed).choice(len(files), OUTSIDE_MOST, replace=False)
        files = [files[i] for i in sorted(picked)]
    sources = [*folders, *([SHARED_PHOTOS] if SHARED_PHOTOS.is_dir() else [])]
    files += outside_sources(sources[len(folders) :])
    data = [file.read_bytes() for file in files] + synthetic_outside(seed=seed)
    with sandbox() as decoder:
        decoded = decoder.decode(data, LIMITS)
    pixels = [item for item in decoded if not isinstance(item, Refusal)]
    described = [
        f"{folder.name}: {sum(f.is_relative_to(folder) for f in files)} photos" for folder in sources
    ]
    described.append(f"synthetic documents and noise: {SYNTHETIC}")
    return np.stack(pixels), described


def attached(keras, models: Models, train: Dataset, validation: Dataset, options: Options, scratch: Path):
    """The served model with its detector as a second output: fitted on the training split's pooled
    features, thresholded on the validation split's; and the manifest's ``in_domain``."""
    pooled = models.pooled
    train_features = stream.features(pooled, train.images, options.batch_size, scratch / "pooled-train.npy")
    validation_features = stream.features(
        pooled, validation.images, options.batch_size, scratch / "pooled-validation.npy"
    )
    detector, shrinkage = fit(np.asarray(train_features), train.labels, len(train.classes))
    limit = threshold(detector.distances(np.asarray(validation_features)))
    fields = {
        "threshold": round(limit, 4),
        "output": OUTPUT,
        "measure": MEASURE,
        "validation_pass_rate": PASS_RATE,
        "shrinkage": round(shrinkage, 4),
    }
    return attach(keras, models.served, pooled, detector), fields


def served_figures(classifier, test: Dataset, options: Options, limit: float) -> dict:
    """The detector as served (``classifier``), on the test split and on the outside set: the
    card's ``in_domain``, printed."""
    outside, sources = outside_pixels(options.outside_folders(), options.seed)
    found = figures(
        evaluate.distances(classifier, test.images), evaluate.distances(classifier, outside), limit, sources
    )
    print(
        f"in domain: {found['test_pass_rate']:.0%} of test photos pass, "
        f"{found['outside_catch_rate']:.0%} of {found['outside_photos']} outside photos are caught "
        f"(AUROC {found['auroc']:.3f})",
        flush=True,
    )
    return found
