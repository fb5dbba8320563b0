"""``--feature-copies``: the head phase's cache holds each training photo's features and those of N
augmented copies of it; validation's features stay those of the photos themselves. On 10 photos."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.support import SHARED
from training.phases import class_weights

SKIN = SHARED / "datasets" / "skin-lesions"


def test_class_weights_balanced_sqrt_and_none() -> None:
    labels = np.array([0] * 6 + [1] * 2)
    assert class_weights(labels, 2) == {0: 8 / 12, 1: 8 / 4}
    sqrt = class_weights(labels, 2, "sqrt")
    assert sqrt == pytest.approx({0: (8 / 12) ** 0.5, 1: 2**0.5})
    assert class_weights(labels, 2, "none") is None


def test_options_refuse_negative_copies_and_unknown_weights() -> None:
    from training.options import Options

    with pytest.raises(ValueError, match="--feature-copies cannot be negative"):
        Options(feature_copies=-1)
    with pytest.raises(ValueError, match="--class-weight must be balanced, sqrt or none"):
        Options(class_weight="inverse")


@pytest.mark.slow
def test_the_cache_holds_augmented_copies_and_validation_is_untouched(tmp_path: Path) -> None:
    from training.dataset import load
    from training.model import build
    from training.options import Options
    from training.phases import fit

    if not SKIN.is_dir():
        pytest.fail(f"This test needs the shared datasets at {SKIN.parent} (see README).")
    for name in ("benign", "malignant"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for photo in sorted((SKIN / name).glob("*.jpg"))[:5]:
            shutil.copy(photo, tmp_path / "data" / name / photo.name)
    dataset = load(tmp_path / "data", progress=False)
    train = dataset.subset(np.array([0, 1, 2, 5, 6, 7]))
    validation = dataset.subset(np.array([3, 4, 8, 9]))
    copies = 2
    options = Options(epochs=1, fine_tune_layers=0, batch_size=4, feature_copies=copies)
    models = build(2, options)
    extractor, head = models.extractor, models.head
    seen = {}
    head_fit = head.fit

    def recording_fit(x, y, **kwargs):
        seen["x"], seen["y"] = np.array(x), np.array(y)
        return head_fit(x, y, **kwargs)

    head.fit = recording_fit
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    fit(models, train, validation, options, scratch)

    cached = np.load(scratch / "train.npy")
    photos = len(train.labels)
    assert cached.shape == ((1 + copies) * photos, extractor.output_shape[-1])
    originals = extractor.predict(train.images[np.arange(photos)], verbose=0)
    assert np.allclose(cached[:photos], originals, atol=1e-4)
    for copy in range(1, 1 + copies):
        rows = cached[copy * photos : (copy + 1) * photos]
        # every copy is another picture of its photo: not the photo, not the other copies
        assert np.abs(rows - originals).max(axis=1).min() > 1e-2
        assert not np.allclose(rows, cached[(copy % copies + 1) * photos :][:photos])
    assert np.array_equal(seen["x"], cached)
    assert np.array_equal(seen["y"].argmax(1), np.tile(train.labels, 1 + copies))

    held_out = np.load(scratch / "validation.npy")
    assert held_out.shape == (len(validation.labels), extractor.output_shape[-1])
    plain = extractor.predict(validation.images[np.arange(len(validation.labels))], verbose=0)
    assert np.allclose(held_out, plain, atol=1e-4)
