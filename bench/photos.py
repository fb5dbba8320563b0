"""The benchmark's inputs: the 600x512 portrait from ../shared and a generated 12-megapixel JPEG."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SHARED_PHOTO = REPO.parent / "shared" / "images" / "grace_hopper.jpg"


def portrait() -> bytes:
    """grace_hopper.jpg: 512x600 (the 600x512 JPEG of the issue)."""
    return SHARED_PHOTO.read_bytes()


def twelve_megapixels() -> bytes:
    """4000x3000, quality 90: the portrait upscaled with sensor-like noise, as a phone would send."""
    image = Image.open(io.BytesIO(portrait())).convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC)
    noise = np.random.default_rng(7).normal(0, 6, (3000, 4000, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()
