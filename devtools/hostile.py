"""Hostile inputs: small files that cost a decoder far more than their size (dev and tests only).

Each builder returns the bytes an attacker would send. ``make hostile`` measures what each costs
the service (``bench/hostile.py``); the tests assert each is refused before its expensive decode,
or classified when it is legitimate. Built in memory, deterministic, no photos needed.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image


def _encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def bmp_rle(width: int = 40_000, height: int = 1_000, bits: int = 8) -> bytes:
    """An RLE8 (or RLE4) BMP: one run of one pixel per row, then end-of-line.

    Pillow's RLE decoder is pure Python and fills each row to its width: seconds for 5 KB.
    """
    rows = b"".join(b"\x01\x00" + b"\x00\x00" for _ in range(height)) + b"\x00\x01"
    colors = 1 << bits
    palette = b"\x00\x00\x00\x00" * colors
    compression = 1 if bits == 8 else 2
    info = struct.pack(
        "<IiiHHIIiiII", 40, width, height, 1, bits, compression, len(rows), 2835, 2835, colors, 0
    )
    offset = 14 + len(info) + len(palette)
    header = b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset)
    return header + info + palette + rows


def _jpeg_segments(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every marker segment and scan up to EOI, for splicing test files."""
    spans, pos = [], 2
    while pos < len(data):
        marker = data[pos + 1]
        if marker == 0xD9:
            break
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        end = pos + 2 + length
        if marker == 0xDA:  # entropy-coded data runs to the next marker that is not RSTn or stuffing
            while True:
                end = data.index(b"\xff", end)
                if data[end + 1] != 0 and not 0xD0 <= data[end + 1] <= 0xD7:
                    break
                end += 2
        spans.append((pos, end))
        pos = end
    return spans


def progressive_jpeg_scans(size: int = 6_000, scans: int = 10_000) -> bytes:
    """A progressive grayscale JPEG of ``size`` x ``size`` whose last (AC refinement) scan repeats.

    libjpeg walks every block of the image for every scan; nothing in Pillow caps the scans.
    """
    data = _encode(Image.new("L", (size, size), 128), "JPEG", progressive=True, quality=50)
    spans = _jpeg_segments(data)
    start, end = spans[-1]  # the last scan
    body_end = end
    return data[:body_end] + data[start:end] * (scans - 1) + b"\xff\xd9"


def jpeg_comments(count: int = 500_000) -> bytes:
    """A small JPEG with ``count`` empty COM segments before its frame: Pillow parses each in Python."""
    data = _encode(Image.new("L", (8, 8), 128), "JPEG")
    return data[:2] + b"\xff\xfe\x00\x02" * count + data[2:]


def webp_lossless(width: int = 16_000, height: int = 2_500) -> bytes:
    """A lossless WebP of transparent pixels: about 1.6 KB that decodes to 160 MB of RGBA."""
    return _encode(Image.new("RGBA", (width, height)), "WEBP", lossless=True)


def png_zeros(size: int = 6_000) -> bytes:
    """An all-black RGB PNG: about 100 KB that decodes to 144 MB."""
    return _encode(Image.new("RGB", (size, size)), "PNG", compress_level=9)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_chunks(count: int = 400_000) -> bytes:
    """A 1x1 PNG with ``count`` empty private chunks before its data: one Python loop turn each."""
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    filler = _png_chunk(b"vpAg", b"") * count
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + filler
        + _png_chunk(b"IDAT", zlib.compress(b"\x00\x00"))
        + _png_chunk(b"IEND", b"")
    )


def png_split_idat(size: int = 300, chunk: int = 1) -> bytes:
    """A PNG whose stored (uncompressed) data is cut into ``chunk``-byte IDAT chunks: 90,000 of
    them, each one a Python call in Pillow."""
    raw = zlib.compress(b"".join(b"\x00" + b"\x00" * size for _ in range(size)), 0)
    ihdr = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    idats = b"".join(_png_chunk(b"IDAT", raw[i : i + chunk]) for i in range(0, len(raw), chunk))
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + idats + _png_chunk(b"IEND", b"")


def gif_extensions(count: int = 1_000_000) -> bytes:
    """A 1x1 GIF with ``count`` empty extension blocks before its image (parsed in Python)."""
    header = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    extensions = b"\x21\xfe\x00" * count  # comment extension, no sub-blocks
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return header + extensions + image + b"\x3b"


def tiff_strips(width: int = 16, height: int = 500_000) -> bytes:
    """An uncompressed grayscale TIFF with one row per strip: Pillow makes a Python tile per strip."""
    strips = height
    entries = [
        (256, 4, 1, width),  # ImageWidth
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # Photometric: black is zero
        (273, 4, strips, None),  # StripOffsets
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, 1),  # RowsPerStrip
        (279, 4, strips, None),  # StripByteCounts
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    offsets_at = 8 + ifd_size
    counts_at = offsets_at + 4 * strips
    pixels_at = counts_at + 4 * strips
    # Every strip points at the same row of pixels: the file stays small, the tile list does not.
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        if tag == 273:
            value = offsets_at
        elif tag == 279:
            value = counts_at
        elif kind == 3:
            value = value | 0
        ifd += struct.pack("<HHI", tag, kind, count)
        ifd += struct.pack("<HH", value, 0) if kind == 3 and count == 1 else struct.pack("<I", value)
    ifd += struct.pack("<I", 0)
    offsets = struct.pack(f"<{strips}I", *([pixels_at] * strips))
    counts = struct.pack(f"<{strips}I", *([width] * strips))
    return b"II*\x00" + struct.pack("<I", 8) + ifd + offsets + counts + b"\x80" * width


def json_big_integer(digits: int = 5_000) -> bytes:
    return b'{"image": ' + b"9" * digits + b"}"


def json_deep(depth: int = 100_000) -> bytes:
    return b'{"image": ' + b"[" * depth + b"]" * depth + b"}"


@dataclass(frozen=True)
class Hostile:
    """One hostile input: how to build it, its media type, and what the service must answer."""

    name: str
    build: Callable[[], bytes]
    content_type: str
    status: int
    code: str
    what: str


IMAGES: tuple[Hostile, ...] = (
    Hostile(
        "bmp-rle8-40000x1000", bmp_rle, "image/bmp", 413, "image_too_costly", "RLE8 BMP, pure-Python decoder"
    ),
    Hostile(
        "bmp-rle4-40000x1000",
        lambda: bmp_rle(bits=4),
        "image/bmp",
        413,
        "image_too_costly",
        "RLE4 BMP, pure-Python decoder",
    ),
    Hostile(
        "jpeg-10000-scans",
        progressive_jpeg_scans,
        "image/jpeg",
        413,
        "image_too_costly",
        "progressive JPEG 6000x6000, 10,000 scans",
    ),
    Hostile(
        "jpeg-500000-comments",
        jpeg_comments,
        "image/jpeg",
        413,
        "image_too_costly",
        "JPEG with 500,000 COM segments",
    ),
    Hostile("png-400000-chunks", png_chunks, "image/png", 413, "image_too_costly", "PNG with 400,000 chunks"),
    Hostile(
        "png-90000-idat-chunks",
        png_split_idat,
        "image/png",
        413,
        "image_too_costly",
        "PNG 300x300 in 90,000 one-byte IDAT chunks",
    ),
    Hostile(
        "gif-1000000-extensions",
        gif_extensions,
        "image/gif",
        413,
        "image_too_costly",
        "GIF with 1,000,000 extension blocks",
    ),
    Hostile(
        "tiff-500000-strips",
        tiff_strips,
        "image/tiff",
        413,
        "image_too_costly",
        "TIFF 16x500000, one row per strip",
    ),
)


# --- At the limits: the most expensive inputs that still pass, one per format (they must classify).

LIMIT_PIXELS = 40_000_000


def png_at_limit(bit_depth: int = 16, color_type: int = 6, width: int = 3_650, height: int = 2_730) -> bytes:
    """A PNG at the raw-data limit (16-bit RGBA 10 MP), every row Paeth-filtered (the slowest filter)."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    row = b"\x04" + b"\x00" * (width * channels * bit_depth // 8)
    compressor = zlib.compressobj(1)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )


def jpeg_scans_at_limit(width: int = 8_000, height: int = 5_000, scans: int = 32) -> bytes:
    """A progressive colour JPEG of ``LIMIT_PIXELS`` whose last scan repeats up to the scan limit."""
    noise = Image.effect_noise((width // 64, height // 64), 32).resize((width, height))
    photo = Image.merge("RGB", [noise, noise.transpose(Image.Transpose.ROTATE_180), noise])
    data = _encode(photo, "JPEG", progressive=True, quality=60, subsampling=0)
    spans = _jpeg_segments(data)
    have = sum(data[start + 1] == 0xDA for start, _ in spans)
    start, end = spans[-1]
    return data[:end] + data[start:end] * max(0, scans - have) + b"\xff\xd9"


def tiff_strips_at_limit(strips: int = 16_384, width: int = 2_441) -> bytes:
    """An uncompressed TIFF of ``LIMIT_PIXELS`` with the most strips allowed."""
    return tiff_strips(width=width, height=strips)


def webp_at_limit(width: int = 16_000, height: int = 1_000) -> bytes:
    """A lossless RGBA WebP at WebP's own pixel limit."""
    return webp_lossless(width, height)


def bmp_rle_at_limit(width: int = 1_000, height: int = 1_000) -> bytes:
    """An RLE8 BMP at the RLE limits: one-pixel runs (one Python loop turn each) filling 256 KB."""
    runs_per_row = min(width, (256 * 1024 - 2048) // (2 * height) - 1)
    row = b"\x01\x07" * runs_per_row + b"\x00\x00"
    rows = row * height + b"\x00\x01"
    palette = b"\x00\x00\x00\x00" * 256
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(rows), 2835, 2835, 256, 0)
    offset = 14 + len(info) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset) + info + palette + rows


def gif_at_limit(blocks: int = 65_000, width: int = 8_000, height: int = 5_000) -> bytes:
    """A GIF of ``LIMIT_PIXELS`` after the most extension blocks allowed."""
    frame = _encode(Image.new("P", (width, height), 3), "GIF")
    header_end = 13 + (3 << ((frame[10] & 7) + 1) if frame[10] & 0x80 else 0)
    filler = (b"\x21\xfe" + b"\x01\x20" * 254 + b"\x00") * (blocks // 255)
    return frame[:header_end] + filler + frame[header_end:]


AT_LIMITS: tuple[tuple[str, Callable[[], bytes], str], ...] = (
    ("png-16-bit-rgba-10mp-paeth", png_at_limit, "image/png"),
    ("png-8-bit-rgba-20mp-paeth", lambda: png_at_limit(bit_depth=8, width=5_000, height=4_000), "image/png"),
    ("png-8-bit-gray-40mp-paeth", lambda: png_at_limit(8, 0, 8_000, 5_000), "image/png"),
    ("jpeg-progressive-40mp-10-scans", lambda: jpeg_scans_at_limit(scans=10), "image/jpeg"),
    ("jpeg-progressive-12mp-32-scans", lambda: jpeg_scans_at_limit(4_000, 3_000, 32), "image/jpeg"),
    ("tiff-40mp-16384-strips", tiff_strips_at_limit, "image/tiff"),
    ("webp-lossless-16mp", webp_at_limit, "image/webp"),
    ("bmp-rle8-1mp-256kb", bmp_rle_at_limit, "image/bmp"),
    ("gif-40mp-65000-blocks", gif_at_limit, "image/gif"),
)
