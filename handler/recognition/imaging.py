"""Image bytes -> one 224x224x3 uint8 RGB array, what every model takes (it scales it itself).

Knows nothing of events or the model. Every cost is bounded before it is paid, in two steps:
``open_image`` checks bytes, structure (``formats``) and header pixels and estimates the decode's
peak memory, in milliseconds; ``decode`` then decodes, shrinks to 224x224 and converts the small
image. A 50000x50000 PNG is refused after reading a few bytes, not after allocating 7 GB.

Every message a refusal carries is written here or in ``formats`` for the API's users: a decoder's
own exception text (function names, internals) never reaches an answer. Metadata never refuses an
image: a PNG's text and ICC chunks are dropped before parsing, unreadable EXIF is ignored.
"""

from __future__ import annotations

import contextlib
import io
import mmap
import struct
import warnings
import zlib
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import (  # noqa: F401  (importing a plugin registers its decoder; only these are allowed)
    BmpImagePlugin,
    ExifTags,
    GifImagePlugin,
    Image,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
    UnidentifiedImageError,
    WebPImagePlugin,
)

from handler.errors import (
    Code,
    PayloadTooLarge,
    Unprocessable,
    UnsupportedMediaType,
    check_image_size,
)
from handler.recognition import formats

INPUT_SIZE = (224, 224)

# Only these decoders may run: Pillow would otherwise try every plugin it has (EPS runs Ghostscript).
# MPO (what many phone cameras write: a JPEG with extra frames) is opened by the JPEG factory.
# AVIF (Pillow's own plugin: libavif with dav1d, in Pillow's wheels) and HEIF (HEIC, ``pi-heif``:
# libheif with libde265, decode only) are registered on their first file and only ever tried on a
# file whose ISOBMFF brands name them (``formats.check_heif``).
CLASSIC_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
FORMATS = (*CLASSIC_FORMATS, "AVIF", "HEIF")

UNSUPPORTED = "Not a supported image type: send JPEG, PNG, GIF, WebP, BMP, TIFF, AVIF or HEIC."
BROKEN_HEADER = "The image header cannot be read: the file is corrupt, truncated or an unsupported variant."
TOO_MANY_PIXELS = "The image has more pixels than this service decodes."
BROKEN_DATA = "The image data cannot be decoded: the file is corrupt or truncated."
NEEDS_MEMORY = "Decoding this image needs more memory than the service gives one image."
# What Pillow and its decoders raise on corrupt or truncated data, depending on the decoder.
DECODER_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    ArithmeticError,
    RuntimeError,
    struct.error,
    zlib.error,
)
# Bytes per pixel that the AVIF and HEIC decoders hold besides the image (their YUV planes and RGB
# conversion): measured here at 40 MP, 8.9 bytes a pixel in all for AVIF, 6.8 for HEIC.
HEIF_DECODER_BYTES = 6

WHITE = (255, 255, 255)

# EXIF orientation -> the transpose that makes the image upright (as ImageOps.exif_transpose does).
ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# Pillow's own bomb guard is configured once, here, to the largest image any setting allows; the
# per-request limit (``DecodeLimits.max_pixels``) is checked right after the header is read.
Image.MAX_IMAGE_PIXELS = formats.PILLOW_MAX_PIXELS
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds on one image: encoded size and decoded pixel count."""

    max_bytes: int
    max_pixels: int


@dataclass
class Opened:
    """An image whose header is read and checked, its pixels not yet decoded.

    ``cost`` bounds the bytes its decode holds at the peak, so a caller can refuse or schedule a
    batch before any of it is paid.
    """

    image: Image.Image
    cost: int


@cache
def _register(decoder: str) -> None:
    """Register the AVIF or HEIF plugin on its first file (each costs about 10 ms to import)."""
    if decoder == "AVIF":
        from PIL import AvifImagePlugin

        if not AvifImagePlugin.SUPPORTED:  # a Pillow built without libavif
            raise ImportError("Pillow has no AVIF support")
    elif decoder == "HEIF":
        import pi_heif

        # The primary image only: no thumbnails, depth or auxiliary images are read.
        pi_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)


def register_decoders() -> None:
    """Register the AVIF and HEIF plugins now (a decode zygote calls this before it forks, so its
    workers share them); otherwise each is registered on its first file."""
    for decoder in ("AVIF", "HEIF"):
        with contextlib.suppress(ImportError):
            _register(decoder)


def _unsupported() -> UnsupportedMediaType:
    return UnsupportedMediaType(UNSUPPORTED, Code.UNSUPPORTED_IMAGE_TYPE)


def _identify(data: bytes | mmap.mmap, decoder: str | None = None) -> Image.Image:
    """Open with the one decoder the walk named, or the classic ones: read the header only."""
    if decoder == formats.UNKNOWN:
        raise _unsupported()
    allowed = CLASSIC_FORMATS
    if decoder is not None:
        try:
            _register(decoder)
        except ImportError as error:
            raise _unsupported() from error
        allowed = (decoder,)
    try:
        return Image.open(_file(data), formats=allowed)
    except UnidentifiedImageError as error:
        if decoder is not None:  # an AVIF or HEIC by its brands that its decoder cannot open
            raise Unprocessable(BROKEN_HEADER, Code.CORRUPT_IMAGE) from error
        raise _unsupported() from error
    except Image.DecompressionBombError as error:  # a GIF frame larger than its screen
        raise PayloadTooLarge(TOO_MANY_PIXELS, Code.IMAGE_TOO_MANY_PIXELS) from error
    except DECODER_ERRORS as error:  # header found but broken
        raise Unprocessable(BROKEN_HEADER, Code.CORRUPT_IMAGE) from error


def _file(data: bytes | mmap.mmap) -> io.BytesIO | mmap.mmap:
    """A file over the image without copying it: ``BytesIO`` shares a ``bytes`` object's buffer, and
    a decode worker's image (the function's memfd, mapped) is a file itself."""
    if isinstance(data, mmap.mmap):
        data.seek(0)
        return data
    return io.BytesIO(data)


def _fits(size: int) -> bool:
    """Whether this process could still map ``size`` more bytes. Under a decode worker's address-space
    cap, a native decoder (libavif, libheif, libtiff) reports an allocation the kernel refused as a
    generic decode error: if the image's estimated need does not fit either, memory was the reason."""
    try:
        mmap.mmap(-1, max(size, 1), flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ).close()
    except (OSError, MemoryError, ValueError, OverflowError):
        return False
    return True


def _check_pixels(image: Image.Image, limits: DecodeLimits) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise Unprocessable("The image has no pixels.", Code.EMPTY_IMAGE)
    limit = min(limits.max_pixels, formats.MAX_PIXELS.get(image.format or "", limits.max_pixels))
    formats.check_pixels(width, height, image.format or "this format", limit)


def _storage(mode: str) -> int:
    """Bytes per pixel in Pillow's memory (multi-band 8-bit modes take 4)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def _cost(image: Image.Image, full_size: tuple[int, int], structure: formats.Structure) -> int:
    """Upper bound of the bytes decoding and resizing this image holds at once (measured per format)."""
    pixels = image.size[0] * image.size[1]
    cost = pixels * _storage(image.mode)
    if image.mode in ("1", "P", "PA"):  # converted before resizing: Pillow resizes these nearest-neighbour
        cost += pixels * 4
    if _has_alpha(image):  # resizing premultiplies alpha into a copy
        cost += pixels * 4
    if image.format == "WEBP":
        # Pillow decodes every WebP with libwebp's animation decoder: its canvas and the previous
        # one (RGBA each), and the frame it returns as bytes, all alive during the load.
        cost += pixels * 12
    if image.format in ("AVIF", "HEIF"):
        cost += pixels * HEIF_DECODER_BYTES
    if structure.jpeg_buffered or (
        image.format in ("JPEG", "MPO") and (image.info.get("progressive") or image.info.get("progression"))
    ):
        # libjpeg keeps every coefficient of a progressive or multi-scan image (2 bytes each; a
        # lossless one 4), whatever the scale; in a JPEG TIFF, of each strip (counted whole).
        per_sample = 4 if structure.jpeg_lossless else 2
        cost += full_size[0] * full_size[1] * len(image.getbands()) * per_sample
    return cost


def open_image(data: bytes | mmap.mmap, limits: DecodeLimits) -> Opened:
    """Read and check the header; every refusal that needs no decoding happens here, in milliseconds.

    Raises ``PayloadTooLarge`` (413), ``UnsupportedMediaType`` (415) or ``Unprocessable`` (422).
    """
    check_image_size(len(data), limits.max_bytes)
    if not data:
        raise Unprocessable("The image is empty.", Code.EMPTY_IMAGE)
    structure = formats.check_structure(data, limits.max_pixels)
    image = _identify(formats.without(data, structure.drop), structure.decoder)
    try:
        _check_pixels(image, limits)
        full_size = image.size
        # JPEG DCT scaling: decode a 4000x3000 photo at 1/8 scale directly (about 6x faster). A
        # lossless JPEG has no DCT: it decodes at full size, within the same pixel limits.
        if not structure.jpeg_lossless:
            image.draft(None, INPUT_SIZE)
        return Opened(image, _cost(image, full_size, structure))
    except BaseException:
        image.close()
        raise


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )


def _resizable(image: Image.Image) -> Image.Image:
    """Modes Pillow resizes only nearest-neighbour (bilevel, palette) become L / RGB / RGBA first."""
    if image.mode == "1":
        return image.convert("L")
    if image.mode in ("P", "PA"):
        return image.convert("RGBA" if _has_alpha(image) else "RGB")
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB: alpha over white, 16-bit and float scaled, CMYK/palette converted.

    Called on the 224x224 image, so these conversions cost nothing however large the original.
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        pixels = np.asarray(image, dtype=np.float32)
        if image.mode.startswith("I;16"):
            pixels = pixels / 257.0
        else:  # 32-bit int or float: no fixed range, stretch what is there
            low, high = float(pixels.min()), float(pixels.max())
            pixels = (pixels - low) * (255.0 / (high - low)) if high > low else np.zeros_like(pixels)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L")
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _orientation(image: Image.Image) -> int | None:
    """The EXIF orientation, or None when there is none or the EXIF cannot be read (ignored)."""
    try:
        value = image.getexif().get(ExifTags.Base.Orientation)
    except MemoryError:
        raise
    except Exception:  # metadata is never a reason to refuse a photo
        return None
    return value if isinstance(value, int) else None


def _upright(image: Image.Image, orientation: int | None) -> Image.Image:
    """Apply the EXIF orientation to the small image (the same as rotating first: the target is square)."""
    method = ORIENTATIONS.get(orientation or 1)
    return image.transpose(method) if method is not None else image


def decode(opened: Opened) -> np.ndarray:
    """Decode, shrink to 224x224 first and convert after, so no full-size copy is ever made twice;
    uint8 RGB pixels of shape (224, 224, 3), the model's input as they are (it scales them itself).

    Raises ``PayloadTooLarge`` (413) or ``Unprocessable`` (422); closes the image either way.
    """
    image = opened.image
    try:
        image.load()
        # After the load: a PNG's eXIf may follow its data, and Pillow turns a TIFF upright as it
        # loads it (and drops the tag): read before, a TIFF was turned twice.
        orientation = _orientation(image)
        small = _resizable(image).resize(INPUT_SIZE, Image.Resampling.BILINEAR)
        rgb = _to_rgb(_upright(small, orientation))
    except Image.DecompressionBombError as error:  # a later frame or tile claims more pixels
        raise PayloadTooLarge(TOO_MANY_PIXELS, Code.IMAGE_TOO_MANY_PIXELS) from error
    except DECODER_ERRORS as error:
        if not _fits(opened.cost):
            raise PayloadTooLarge(NEEDS_MEMORY, Code.IMAGE_TOO_COSTLY) from error
        raise Unprocessable(BROKEN_DATA, Code.CORRUPT_IMAGE) from error
    finally:
        image.close()
    return np.asarray(rgb, dtype=np.uint8)


def to_pixels(data: bytes | mmap.mmap, limits: DecodeLimits) -> np.ndarray:
    """Encoded image -> uint8 RGB array of shape (224, 224, 3): what a decode worker returns and the
    model takes (in this process: trusted files only, e.g. the export's calibration photos;
    requests go through the sandbox).

    Raises ``PayloadTooLarge`` (413), ``UnsupportedMediaType`` (415) or ``Unprocessable`` (422).
    """
    return decode(open_image(data, limits))
