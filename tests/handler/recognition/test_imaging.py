"""Preprocessing: every mode to RGB, EXIF applied, first frame, limits before decode."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from devtools.fixtures import png_header
from handler.recognition import imaging
from handler.recognition.errors import PayloadTooLarge, Unprocessable, UnsupportedMediaType

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
    """Back from the model's [-1, 1] scale to 0..255 for readable assertions."""
    return tuple(round(float(v)) for v in (array[y, x] + 1.0) * 127.5)


def test_output_shape_dtype_and_scale(grace_hopper: bytes) -> None:
    array = imaging.to_array(grace_hopper, LIMITS)
    assert array.shape == (224, 224, 3)
    assert array.dtype == np.float32
    assert -1.0 <= array.min() < -0.5 and 0.5 < array.max() <= 1.0


def test_cat_bmp_decodes(cat: bytes) -> None:
    assert imaging.to_array(cat, LIMITS).shape == (224, 224, 3)


def test_scale_matches_keras_mobilenet_v2_preprocessing() -> None:
    pixels = np.array([[[0, 127.5, 255]]], dtype=np.float32)
    np.testing.assert_allclose(imaging.scale(pixels), [[[-1.0, 0.0, 1.0]]])


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
    array = imaging.to_array(encode(Image.new(mode, (40, 30), fill), fmt), LIMITS)
    got = pixel(array, 112, 112)
    assert all(abs(a - b) <= 3 for a, b in zip(got, expected, strict=True)), got


def test_palette_with_transparency_is_composited_over_white() -> None:
    image = Image.new("P", (20, 20), 0)
    image.putpalette([0, 0, 0] + [0, 0, 255] * 255)
    data = encode(image, "PNG", transparency=0)
    assert pixel(imaging.to_array(data, LIMITS), 10, 10) == (255, 255, 255)


def test_16_bit_grayscale_is_scaled_not_clipped() -> None:
    image = Image.new("I;16", (32, 32), 32896)  # half of 65535
    array = imaging.to_array(encode(image, "PNG"), LIMITS)
    assert all(abs(v - 128) <= 1 for v in pixel(array, 100, 100))


def test_float_tiff_is_stretched_to_the_full_range() -> None:
    image = Image.fromarray(np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (16, 1)), mode="F")
    array = imaging.to_array(encode(image, "TIFF"), LIMITS)
    assert pixel(array, 0, 100)[0] <= 5 and pixel(array, 223, 100)[0] >= 250


def test_exif_orientation_is_applied() -> None:
    # Stored red|blue with orientation 3 (rotate 180): upright it is blue|red.
    exif = Image.Exif()
    exif[0x0112] = 3
    data = encode(halves((255, 0, 0), (0, 0, 255)), "JPEG", exif=exif.tobytes(), quality=95)
    array = imaging.to_array(data, LIMITS)
    left, right = pixel(array, 20, 112), pixel(array, 200, 112)
    assert left[2] > 200 and left[0] < 60, left
    assert right[0] > 200 and right[2] < 60, right


def test_first_frame_of_an_animated_gif() -> None:
    frames = [Image.new("RGB", (16, 16), color) for color in ((0, 255, 0), (255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    red, green, blue = pixel(imaging.to_array(data, LIMITS), 100, 100)
    assert green > 200 and red < 60 and blue < 60


def test_big_jpeg_is_draft_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(Image.new("RGB", (4000, 3000), (10, 200, 30)), "JPEG", quality=80)
    decoded_sizes = []
    original = imaging._resizable
    monkeypatch.setattr(
        imaging, "_resizable", lambda image: decoded_sizes.append(image.size) or original(image)
    )
    array = imaging.to_array(data, LIMITS)
    assert decoded_sizes == [(500, 375)], "JPEG should be decoded at 1/8 scale, not full size"
    assert array.shape == (224, 224, 3)


@pytest.mark.parametrize("size", [(1, 1), (10_000, 1)])
def test_degenerate_sizes_still_classifiable(size: tuple[int, int]) -> None:
    assert imaging.to_array(encode(Image.new("RGB", size, (9, 9, 9)), "PNG"), LIMITS).shape == (224, 224, 3)


def test_too_many_bytes_is_refused_before_decoding() -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        imaging.to_array(b"\xff" * 2048, imaging.DecodeLimits(max_bytes=1024, max_pixels=10**6))
    assert caught.value.code == "image_too_large"


@pytest.mark.parametrize(("width", "height"), [(50_000, 50_000), (8_000, 6_000)])
def test_too_many_pixels_is_refused_from_the_header(width: int, height: int) -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        imaging.to_array(png_header(width, height), LIMITS)
    assert caught.value.code == "image_too_many_pixels"


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.7\n%%EOF",
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
        b"just some text",
        b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
    ],
    ids=["pdf", "svg", "text", "heic"],
)
def test_non_images_are_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedMediaType):
        imaging.to_array(data, LIMITS)


def test_truncated_jpeg_is_unprocessable(grace_hopper: bytes) -> None:
    with pytest.raises(Unprocessable) as caught:
        imaging.to_array(grace_hopper[: len(grace_hopper) // 2], LIMITS)
    assert caught.value.code == "corrupt_image"


def test_empty_is_unprocessable() -> None:
    with pytest.raises(Unprocessable):
        imaging.to_array(b"", LIMITS)
