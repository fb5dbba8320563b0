"""Generated labelled photos, as many as wanted: two classes a model can learn (discs and squares,
any colour, size and place, on a noisy background), small PNGs. For the training scale test and
``make bench-train``: a dataset of any size without shipping one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = ("discs", "squares")


def write_dataset(root: Path, per_class: int, side: int = 64, seed: int = 7) -> Path:
    """``root/discs/*.png`` and ``root/squares/*.png``, ``per_class`` each; returns ``root``."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    for name in CLASSES:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            background = rng.integers(0, 256, (side, side, 3), dtype=np.uint8) // 4 + 96
            image = Image.fromarray(background)
            size = int(rng.integers(side // 4, side // 2))
            x, y = (int(v) for v in rng.integers(0, side - size, 2))
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            draw = ImageDraw.Draw(image)
            shape = draw.ellipse if name == "discs" else draw.rectangle
            shape((x, y, x + size, y + size), fill=colour)
            image.save(folder / f"{index:05d}.png", optimize=False, compress_level=1)
    return root
