"""Image bytes -> one 224x224x3 float32 array scaled for MobileNetV2, for every entry point.

Knows nothing of events or the model. Limits are checked on the header, before the pixels are
decoded: a 50000x50000 PNG is refused after reading a few bytes, not after allocating 7 GB.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import (  # noqa: F401  (importing a plugin registers its decoder; only these are allowed)
    BmpImagePlugin,
    GifImagePlugin,
    Image,
    ImageOps,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    UnidentifiedImageError,
    WebPImagePlugin,
)

from handler.errors import Code, PayloadTooLarge, Unprocessable, UnsupportedMediaType, check_image_size

INPUT_SIZE = (224, 224)

# Only these decoders may run: Pillow would otherwise try every plugin it has (EPS runs Ghostscript).
# MPO (what many phone cameras write: a JPEG with extra frames) is opened by the JPEG factory.
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")

WHITE = (255, 255, 255)


@dataclass(frozen=True)
class Limits:
    """Bounds on one image: encoded size and decoded pixel count."""

    max_bytes: int
    max_pixels: int


def _open(data: bytes, limits: Limits) -> Image.Image:
    """Read the header only, identify the format, and check the pixel count."""
    if not data:
        raise Unprocessable("The image is empty.", Code.EMPTY_IMAGE)
    # Pillow's own bomb guard runs at open(); align it with ours so both give the same answer.
    Image.MAX_IMAGE_PIXELS = limits.max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as error:
        raise PayloadTooLarge(
            f"Image has too many pixels; the limit is {limits.max_pixels}.", Code.IMAGE_TOO_MANY_PIXELS
        ) from error
    except UnidentifiedImageError as error:
        raise UnsupportedMediaType(
            "Not a supported image type: send JPEG, PNG, GIF, WebP, BMP or TIFF.",
            Code.UNSUPPORTED_IMAGE_TYPE,
        ) from error
    except (OSError, SyntaxError, ValueError) as error:  # header found but broken
        raise Unprocessable(f"The image header cannot be read: {error}", Code.CORRUPT_IMAGE) from error
    width, height = image.size
    if width < 1 or height < 1:
        raise Unprocessable("The image has no pixels.", Code.EMPTY_IMAGE)
    if width * height > limits.max_pixels:
        raise PayloadTooLarge(
            f"Image is {width}x{height} = {width * height} pixels; the limit is {limits.max_pixels}.",
            Code.IMAGE_TOO_MANY_PIXELS,
        )
    return image


def _decode(image: Image.Image) -> Image.Image:
    """Decode the first frame at the smallest size JPEG allows, upright."""
    # JPEG DCT scaling: decode a 4000x3000 photo at 1/8 scale directly (about 6x faster).
    image.draft(None, INPUT_SIZE)
    image.load()
    ImageOps.exif_transpose(image, in_place=True)  # no copy when there is nothing to rotate
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB: alpha over white, 16-bit and float scaled, CMYK/palette converted."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        pixels = np.asarray(image, dtype=np.float32)
        if image.mode.startswith("I;16"):
            pixels = pixels / 257.0
        else:  # 32-bit int or float: no fixed range, stretch what is there
            low, high = float(pixels.min()), float(pixels.max())
            pixels = (pixels - low) * (255.0 / (high - low)) if high > low else np.zeros_like(pixels)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def scale(pixels: np.ndarray) -> np.ndarray:
    """MobileNetV2's preprocessing (Keras ``mode="tf"``): uint8 [0, 255] -> float32 [-1, 1]."""
    scaled = pixels.astype(np.float32)  # a copy: the caller's array is left alone
    scaled *= 1 / 127.5  # in place: one float array per image, not three
    scaled -= 1.0
    return scaled


def to_array(data: bytes, limits: Limits) -> np.ndarray:
    """Encoded image -> float32 array of shape (224, 224, 3), ready for the model.

    Raises ``PayloadTooLarge`` (413), ``UnsupportedMediaType`` (415) or ``Unprocessable`` (422).
    """
    check_image_size(len(data), limits.max_bytes)
    image = _open(data, limits)
    try:
        upright = _decode(image)
        rgb = _to_rgb(upright)
        resized = rgb.resize(INPUT_SIZE, Image.Resampling.BILINEAR)
    except Image.DecompressionBombError as error:  # a later frame or tile claims more pixels
        raise PayloadTooLarge(
            f"Image has too many pixels; the limit is {limits.max_pixels}.", Code.IMAGE_TOO_MANY_PIXELS
        ) from error
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as error:
        # Pillow reports truncated or corrupt data with any of these, depending on the decoder.
        raise Unprocessable(f"The image cannot be decoded: {error}", Code.CORRUPT_IMAGE) from error
    finally:
        image.close()
    return scale(np.asarray(resized))
