"""Preprocessing: every mode to RGB, EXIF applied, first frame, limits before decode."""

from __future__ import annotations

import io
import re
import zlib

import numpy as np
import pytest
from PIL import Image

from devtools.fixtures import png_header
from handler.errors import PayloadTooLarge, Refusal, Unprocessable, UnsupportedMediaType
from handler.recognition import formats, imaging
from tests.corpora import corpus, hostile

LIMITS = imaging.DecodeLimits(max_bytes=6 * 1024 * 1024, max_pixels=40_000_000)


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def halves(left: tuple[int, int, int], right: tuple[int, int, int], size=(64, 32)) -> Image.Image:
    image = Image.new("RGB", size, left)
    image.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return image


def pixel(array: np.ndarray, x: int, y: int) -> tuple[int, ...]:
    return tuple(int(v) for v in array[y, x])


def test_output_is_unscaled_uint8_pixels(grace_hopper: bytes) -> None:
    """What the model takes as it is: it scales the pixels itself, in its graph."""
    array = imaging.to_pixels(grace_hopper, LIMITS)
    assert array.shape == (224, 224, 3)
    assert array.dtype == np.uint8
    assert array.min() < 64 and array.max() > 192


def test_cat_bmp_decodes(cat: bytes) -> None:
    assert imaging.to_pixels(cat, LIMITS).shape == (224, 224, 3)


@pytest.mark.parametrize(
    ("mode", "fill", "expected"),
    [
        ("RGBA", (255, 0, 0, 0), (255, 255, 255)),  # fully transparent -> the white background
        ("RGBA", (255, 0, 0, 255), (255, 0, 0)),
        ("LA", (0, 0), (255, 255, 255)),
        ("L", 128, (128, 128, 128)),
        ("CMYK", (0, 255, 255, 0), (255, 0, 0)),
    ],
)
def test_modes_convert_to_rgb_with_alpha_over_white(mode: str, fill, expected) -> None:
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    array = imaging.to_pixels(encode(Image.new(mode, (40, 30), fill), fmt), LIMITS)
    got = pixel(array, 112, 112)
    assert all(abs(a - b) <= 3 for a, b in zip(got, expected, strict=True)), got


def test_palette_with_transparency_is_composited_over_white() -> None:
    image = Image.new("P", (20, 20), 0)
    image.putpalette([0, 0, 0] + [0, 0, 255] * 255)
    data = encode(image, "PNG", transparency=0)
    assert pixel(imaging.to_pixels(data, LIMITS), 10, 10) == (255, 255, 255)


def test_16_bit_grayscale_is_scaled_not_clipped() -> None:
    image = Image.new("I;16", (32, 32), 32896)  # half of 65535
    array = imaging.to_pixels(encode(image, "PNG"), LIMITS)
    assert all(abs(v - 128) <= 1 for v in pixel(array, 100, 100))


def test_float_tiff_is_stretched_to_the_full_range() -> None:
    image = Image.fromarray(np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (16, 1)), mode="F")
    array = imaging.to_pixels(encode(image, "TIFF"), LIMITS)
    assert pixel(array, 0, 100)[0] <= 5 and pixel(array, 223, 100)[0] >= 250


def test_exif_orientation_is_applied() -> None:
    # Stored red|blue with orientation 3 (rotate 180): upright it is blue|red.
    exif = Image.Exif()
    exif[0x0112] = 3
    data = encode(halves((255, 0, 0), (0, 0, 255)), "JPEG", exif=exif.tobytes(), quality=95)
    array = imaging.to_pixels(data, LIMITS)
    left, right = pixel(array, 20, 112), pixel(array, 200, 112)
    assert left[2] > 200 and left[0] < 60, left
    assert right[0] > 200 and right[2] < 60, right


def test_first_frame_of_an_animated_gif() -> None:
    frames = [Image.new("RGB", (16, 16), color) for color in ((0, 255, 0), (255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    red, green, blue = pixel(imaging.to_pixels(data, LIMITS), 100, 100)
    assert green > 200 and red < 60 and blue < 60


def test_big_jpeg_is_draft_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(Image.new("RGB", (4000, 3000), (10, 200, 30)), "JPEG", quality=80)
    decoded_sizes = []
    original = imaging._resizable
    monkeypatch.setattr(
        imaging, "_resizable", lambda image: decoded_sizes.append(image.size) or original(image)
    )
    array = imaging.to_pixels(data, LIMITS)
    assert decoded_sizes == [(500, 375)], "JPEG should be decoded at 1/8 scale, not full size"
    assert array.shape == (224, 224, 3)


@pytest.mark.parametrize("size", [(1, 1), (10_000, 1)])
def test_degenerate_sizes_still_classifiable(size: tuple[int, int]) -> None:
    assert imaging.to_pixels(encode(Image.new("RGB", size, (9, 9, 9)), "PNG"), LIMITS).shape == (224, 224, 3)


def test_too_many_bytes_is_refused_before_decoding() -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        imaging.to_pixels(b"\xff" * 2048, imaging.DecodeLimits(max_bytes=1024, max_pixels=10**6))
    assert caught.value.code == "image_too_large"


@pytest.mark.parametrize(("width", "height"), [(50_000, 50_000), (8_000, 6_000)])
def test_too_many_pixels_is_refused_from_the_header(width: int, height: int) -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        imaging.to_pixels(png_header(width, height), LIMITS)
    assert caught.value.code == "image_too_many_pixels"


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.7\n%%EOF",
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
        b"just some text",
        b"\x00\x00\x00\x18ftypisom\x00\x00\x00\x00isommp41" + b"\x00" * 64,
        b"\x00\x00\x00\x14ftypmif1\x00\x00\x00\x00mif1" + b"\x00" * 64,
    ],
    ids=["pdf", "svg", "text", "mp4", "heif-of-no-codec-brand"],
)
def test_non_images_are_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedMediaType) as refused:
        imaging.to_pixels(data, LIMITS)
    assert "AVIF or HEIC" in refused.value.message


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
        b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00mif1avif" + b"\x00" * 64,
    ],
    ids=["heic-header-only", "avif-header-only"],
)
def test_an_avif_or_heic_without_an_image_is_corrupt(data: bytes) -> None:
    with pytest.raises(Unprocessable) as refused:
        imaging.to_pixels(data, LIMITS)
    assert refused.value.code == "corrupt_image"


def test_truncated_jpeg_is_unprocessable(grace_hopper: bytes) -> None:
    with pytest.raises(Unprocessable) as caught:
        imaging.to_pixels(grace_hopper[: len(grace_hopper) // 2], LIMITS)
    assert caught.value.code == "corrupt_image"


def test_empty_is_unprocessable() -> None:
    with pytest.raises(Unprocessable):
        imaging.to_pixels(b"", LIMITS)


# --- Phones' formats: AVIF (Pillow's own plugin) and HEIC (pi-heif) --------------------------------


@pytest.mark.parametrize("build", [hostile.avif_photo, hostile.heic_photo], ids=["avif", "heic"])
def test_avif_and_heic_decode_like_the_same_photo_in_png(build) -> None:
    photo = hostile._photo(640, 480)
    data = build(640, 480, 90)
    expected = imaging.to_pixels(encode(photo, "PNG"), LIMITS).astype(np.int16)
    got = imaging.to_pixels(data, LIMITS).astype(np.int16)
    assert np.abs(got - expected).mean() < 4  # lossy, but the same picture


@pytest.mark.parametrize("kind", ["AVIF", "HEIF", "PNG", "WEBP", "TIFF"])
def test_exif_orientation_is_applied_in_every_format_that_carries_it(kind: str) -> None:
    """Once, whoever applies it: Pillow turns a TIFF upright as it loads it (and drops the tag),
    libheif a HEIC (pi-heif then reports orientation 1); the others are turned here."""
    exif = Image.Exif()
    exif[0x0112] = 3
    image = halves((255, 0, 0), (0, 0, 255))
    if kind == "HEIF":
        import pillow_heif

        heif = pillow_heif.from_pillow(image)
        heif.info["exif"] = exif.tobytes()
        buffer = io.BytesIO()
        heif.save(buffer, format="HEIF", quality=90)
        data = buffer.getvalue()
    elif kind == "TIFF":
        data = encode(image, kind, tiffinfo={0x0112: 3})
    else:
        data = encode(image, kind, exif=exif.tobytes(), quality=95)
    array = imaging.to_pixels(data, LIMITS)
    left, right = pixel(array, 20, 112), pixel(array, 200, 112)
    assert left[2] > 200 and left[0] < 60, left
    assert right[0] > 200 and right[2] < 60, right


def test_the_avif_and_heif_decoders_register_on_demand() -> None:
    imaging.register_decoders()
    assert {"AVIF", "HEIF"} <= set(Image.OPEN)
    assert set(imaging.FORMATS) == {*imaging.CLASSIC_FORMATS, "AVIF", "HEIF"}


def test_an_animated_webp_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), color) for color in ((0, 255, 0), (255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    red, green, blue = pixel(imaging.to_pixels(data, LIMITS), 100, 100)
    assert green > 200 and red < 60 and blue < 60


# --- Real files once refused ---------------------------------------------------------------------


def test_a_lossless_jpeg_decodes_exactly_at_full_size() -> None:
    photo = hostile._photo(800, 600)
    data = hostile.jpeg_lossless(photo)
    opened = imaging.open_image(data, LIMITS)
    assert opened.image.size == (800, 600)  # no draft: lossless JPEG has no reduced-size decode
    np.testing.assert_array_equal(imaging.decode(opened), imaging.to_pixels(encode(photo, "PNG"), LIMITS))
    gray = hostile.jpeg_lossless(photo.convert("L"))
    assert imaging.to_pixels(gray, LIMITS).shape == (224, 224, 3)


@pytest.mark.parametrize("kind", hostile.PNG_BROKEN_METADATA)
def test_a_png_whose_only_flaw_is_its_metadata_classifies(kind: str) -> None:
    data = hostile.png_broken_metadata(kind)
    plain = imaging.to_pixels(encode(hostile._photo(320, 240), "PNG"), LIMITS)
    np.testing.assert_array_equal(imaging.to_pixels(data, LIMITS), plain)


def test_png_text_and_icc_chunks_are_dropped_before_parsing() -> None:
    text = hostile._png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"x" * 500_000))
    data = hostile._png_with([text, hostile._png_chunk(b"tEXt", b"a\x00b")])
    structure = formats.check_structure(data, LIMITS.max_pixels)
    assert len(structure.drop) == 2
    with Image.open(io.BytesIO(formats.without(data, structure.drop))) as image:
        assert "Comment" not in image.info and "a" not in image.info


def test_unreadable_exif_is_ignored_not_refused() -> None:
    for exif in (b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\xff\xff", b"not exif at all"):
        data = encode(hostile._photo(64, 48), "JPEG", exif=exif)
        assert imaging.to_pixels(data, LIMITS).shape == (224, 224, 3)
    # An orientation that is not a number: the tag typed ASCII, "three".
    odd = b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x12\x00\x02\x00\x00\x00\x06"
    odd += b"\x00\x00\x00\x1a\x00\x00\x00\x00three\x00"
    data = encode(hostile._photo(64, 48), "JPEG", exif=odd)
    with Image.open(io.BytesIO(data)) as image:
        assert image.getexif().get(0x0112) == "three"
    assert imaging.to_pixels(data, LIMITS).shape == (224, 224, 3)


# --- No message shows internals ----------------------------------------------------------------

# Function names, modules, files, classes, raw exception text, bytes reprs, addresses, tracebacks.
INTERNALS = re.compile(
    r"\w+\(\)|\.py\b|Error|Exception|Traceback|PIL|Pillow|lib(jpeg|png|tiff|webp|avif|heif)|"
    r"Plugin|\bline \d|[<>{}]|\bb'|\\x|\b0x[0-9a-fA-F]|errno|decoder error|-\d+\b"
)


def _samples() -> dict[str, bytes]:
    """A small valid file of every format and variant the service decodes."""
    photo = hostile._photo(96, 64)
    frames = [photo, photo.rotate(90), photo.rotate(180)]
    exif = Image.Exif()
    exif[0x0112] = 6
    return {
        "jpeg": encode(photo, "JPEG", exif=exif.tobytes()),
        "jpeg-progressive": encode(photo, "JPEG", progressive=True),
        "jpeg-lossless": hostile.jpeg_lossless(photo),
        "jpeg-cmyk": encode(photo.convert("CMYK"), "JPEG"),
        "png": encode(photo, "PNG"),
        "png-16-bit": encode(photo.convert("I;16"), "PNG"),
        "png-palette": encode(photo.convert("P"), "PNG", transparency=0),
        "apng": encode(frames[0], "PNG", save_all=True, append_images=frames[1:]),
        "gif": encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "webp-lossy": encode(photo, "WEBP"),
        "webp-lossless": encode(photo.convert("RGBA"), "WEBP", lossless=True),
        "webp-animated": encode(frames[0], "WEBP", save_all=True, append_images=frames[1:]),
        "bmp": encode(photo, "BMP"),
        "bmp-rle": hostile.bmp_rle(64, 32),
        "tiff": encode(photo, "TIFF"),
        "tiff-deflate": encode(photo, "TIFF", compression="tiff_adobe_deflate"),
        "tiff-jpeg": encode(photo, "TIFF", compression="jpeg"),
        "tiff-float": hostile.tiff_deep(64, 64),
        "avif": hostile.avif_photo(96, 64),
        "heic": hostile.heic_photo(96, 64),
    }


def _broken(data: bytes) -> list[bytes]:
    """Truncations throughout, and bytes changed in the header."""
    cuts = [data[: max(1, len(data) * percent // 100)] for percent in (2, 10, 25, 50, 75, 90, 99)]
    flips = []
    for at in (3, 7, 12, 16, 20, 24, 30, 40, 60):
        if at < len(data):
            changed = bytearray(data)
            changed[at] ^= 0xA5
            flips.append(bytes(changed))
    return cuts + flips


@pytest.mark.slow
def test_no_message_shows_internals() -> None:
    """Every refusal of every hostile, corrupt and truncated file carries a message written for
    the API's users (never a decoder's exception text); nothing but a refusal escapes."""
    inputs = [(case.name, case.build()) for case in hostile.IMAGES]
    inputs += [(case.name, case.body) for case in corpus.cases() if case.code == "corrupt_image"]
    for name, data in _samples().items():
        inputs += [(f"{name}-broken-{index}", broken) for index, broken in enumerate(_broken(data))]
    messages: dict[str, str] = {}
    for name, data in inputs:
        try:
            imaging.to_pixels(data, imaging.DecodeLimits(max_bytes=20 * 1024 * 1024, max_pixels=40_000_000))
        except Refusal as refusal:
            messages[name] = refusal.message
    assert len(messages) > len(hostile.IMAGES) + 50  # most broken files are refused
    leaks = {name: message for name, message in messages.items() if INTERNALS.search(message)}
    assert not leaks
    assert len(set(messages.values())) < len(messages)  # fixed texts, not one per failure
