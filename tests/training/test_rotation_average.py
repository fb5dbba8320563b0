"""``--rotation-average``: the served model answers the mean of the photo's 8 rotations and mirrors,
in the graph: a photo turned by 90 degrees or mirrored gets the same answer, and the ``.keras`` file
keeps it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.mark.slow
def test_the_served_answer_does_not_depend_on_the_photo_s_orientation(tmp_path: Path) -> None:
    import keras

    from training.model import build
    from training.options import Options

    served = build(2, Options(fine_tune_layers=0, rotation_average=True)).served
    photos = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    answer = served.predict(photos, verbose=0)
    mirrored = photos[:, :, ::-1]
    for turned in (np.rot90(photos, 1, axes=(1, 2)), photos[:, ::-1], np.rot90(mirrored, 3, axes=(1, 2))):
        np.testing.assert_allclose(served.predict(np.ascontiguousarray(turned), verbose=0), answer, atol=1e-5)
    flipped_only = build(2, Options(fine_tune_layers=0)).served  # the default: the photo and its mirror
    turned = np.ascontiguousarray(np.rot90(photos, 1, axes=(1, 2)))
    assert not np.allclose(flipped_only.predict(turned, verbose=0), flipped_only.predict(photos, verbose=0))
    served.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded.predict(photos, verbose=0), answer, atol=1e-6)


def test_rotation_average_needs_the_mirrors() -> None:
    from training.options import Options

    with pytest.raises(ValueError, match="--rotation-average averages the mirrors too"):
        Options(rotation_average=True, flip_average=False)
