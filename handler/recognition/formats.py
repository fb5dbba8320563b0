"""Cheap walks over an image's structure that refuse what would make a decoder loop for seconds.

Pixel counts bound memory, not work: Pillow parses JPEG markers, PNG chunks, GIF blocks and TIFF
strips one Python loop turn at a time, libjpeg walks the whole image once per progressive scan,
and Pillow's BMP RLE decoder is pure Python. Each walk here reads only the structure (lengths and
markers, never pixel data), stops at its limit, and so costs milliseconds whatever the file
claims. The limits sit far above what real encoders write; docs/reliability.md gives each
format's worst case that still passes, measured.
"""

from __future__ import annotations

import contextlib
import re
import struct

from handler.recognition.errors import Code, PayloadTooLarge

# libjpeg's progressive encoders write about 10 scans; jpegtran scripts rarely exceed 20.
MAX_JPEG_SCANS = 32
# libjpeg walks every block of the image once per scan: scans x pixels bounds the work (measured
# here: about 22 ms per scan of a 40 MP photo). 400 M is 10 scans at 40 MP, 32 scans at 12 MP.
MAX_JPEG_SCAN_PIXELS = 400_000_000
# Start-of-frame markers (SOF0-SOF15 but DHT, JPG and DAC): they carry the height and width.
JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# SOI..EOI segments: a JPEG has about 10, plus one DHT per progressive scan, plus APPn metadata.
MAX_JPEG_SEGMENTS = 256
# libpng writes 8 KB IDAT chunks: a 20 MB upload is 2,560 of them.
MAX_PNG_CHUNKS = 8_192
# Inflating and unfiltering PNG data runs about 250 MB/s here (Paeth rows): 80 MB is a 26 MP RGB
# photo, 20 MP RGBA, 10 MP 16-bit RGBA.
MAX_PNG_RAW_BYTES = 80_000_000
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Extension blocks and their sub-blocks before the first image (XMP's trailer alone is 257).
MAX_GIF_BLOCKS = 65_536
# Pillow makes one Python tile per strip or tile; scanners write one row per strip (6,000 rows).
MAX_TIFF_STRIPS = 16_384
MAX_TIFF_TAGS = 1_024
# Pillow's BMP RLE decoder is pure Python: only small RLE files decode within the work budget.
MAX_BMP_RLE_PIXELS = 1_000_000
MAX_BMP_RLE_BYTES = 256 * 1024

# Decoders that are slow per pixel get a lower pixel limit than MAX_IMAGE_PIXELS (measured here:
# a 40 MP lossless WebP takes 1.4 s in libwebp alone).
MAX_PIXELS = {"WEBP": 16_000_000}
# Pillow's own guard, set once: above any pixel limit a deployment may configure.
PILLOW_MAX_PIXELS = 200_000_000

# In entropy-coded data a marker is 0xFF followed by anything but 0x00 (stuffing), RSTn or 0xFF (fill).
_NEXT_MARKER = re.compile(rb"\xff(?=[^\x00\xd0-\xd7\xff])")


def _too_costly(what: str, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The image has more {what} than this service decodes (the limit is {limit}).",
        Code.IMAGE_TOO_COSTLY,
    )


def check_jpeg(data: bytes, max_pixels: int) -> None:
    """Count marker segments and scans; stop at the first structural surprise (the decoder reports it)."""
    pos, segments, scans, pixels = 2, 0, 0, 0
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xD9:  # EOI
            return
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise _too_costly("JPEG marker segments", MAX_JPEG_SEGMENTS)
        if marker == 0xFF or 0xD0 <= marker <= 0xD7 or marker == 0x01:  # fill byte, RSTn, TEM
            pos += 1 if marker == 0xFF else 2
            continue
        if marker in JPEG_FRAMES:
            height, width = struct.unpack_from(">HH", data, pos + 5)
            pixels = width * height
            if pixels > max_pixels:  # the header's pixel count speaks first (image_too_many_pixels)
                return
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:  # SOS: its entropy-coded data runs to the next marker
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise _too_costly("JPEG scans", MAX_JPEG_SCANS)
            if scans * pixels > MAX_JPEG_SCAN_PIXELS:
                raise _too_costly("JPEG scans x pixels", MAX_JPEG_SCAN_PIXELS)
            found = _NEXT_MARKER.search(data, pos)
            if found is None:
                return
            pos = found.start()


def check_png(data: bytes, max_pixels: int) -> None:
    """Bound the filtered data zlib inflates and count chunks (Pillow loops over each in Python)."""
    if data[12:16] == b"IHDR":
        width, height, depth, color = struct.unpack_from(">IIBB", data, 16)
        if width * height > max_pixels:
            return
        raw = width * height * PNG_CHANNELS.get(color, 4) * depth // 8
        if raw > MAX_PNG_RAW_BYTES:
            raise _too_costly(
                "bytes of pixel data in a PNG (width x height x channels x depth)", MAX_PNG_RAW_BYTES
            )
    pos, chunks = 8, 0
    while pos + 8 <= len(data):
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise _too_costly("PNG chunks", MAX_PNG_CHUNKS)
        length = int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4 : pos + 8] == b"IEND":
            return
        pos += 12 + length


def check_gif(data: bytes, max_pixels: int) -> None:
    """Count the blocks and sub-blocks Pillow reads one by one before the first frame."""
    if len(data) < 13:
        return
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    blocks = 0
    while pos < len(data) and data[pos] == 0x21:  # extension: label, then sub-blocks up to a 0
        pos += 2
        while pos < len(data):
            blocks += 1
            if blocks > MAX_GIF_BLOCKS:
                raise _too_costly("GIF blocks", MAX_GIF_BLOCKS)
            size = data[pos]
            pos += 1 + size
            if size == 0:
                break


def check_tiff(data: bytes, max_pixels: int) -> None:
    """Read the first directory's entry count and its strip or tile count (classic and BigTIFF)."""
    if len(data) < 16:
        return
    order = "<" if data[:2] == b"II" else ">"
    big = struct.unpack_from(order + "H", data, 2)[0] == 43
    count_format, entry_size, value_format = ("Q", 20, "Q") if big else ("H", 12, "I")
    offset = struct.unpack_from(order + ("Q" if big else "I"), data, 8 if big else 4)[0]
    count_size = struct.calcsize(count_format)
    if offset + count_size > len(data):
        return
    entries = struct.unpack_from(order + count_format, data, offset)[0]
    if entries > MAX_TIFF_TAGS:
        raise _too_costly("TIFF tags", MAX_TIFF_TAGS)
    start = offset + count_size
    for index in range(entries):
        at = start + index * entry_size
        if at + entry_size > len(data):
            return
        tag = struct.unpack_from(order + "H", data, at)[0]
        if tag in (273, 324):  # StripOffsets, TileOffsets
            count = struct.unpack_from(order + value_format, data, at + 4)[0]
            if count > MAX_TIFF_STRIPS:
                raise _too_costly("TIFF strips or tiles", MAX_TIFF_STRIPS)


def check_bmp(data: bytes, max_pixels: int) -> None:
    """RLE4/RLE8 BMPs decode in pure Python: allow only small ones."""
    if len(data) < 34 or int.from_bytes(data[14:18], "little") < 40:  # OS/2 headers have no compression
        return
    width, height = struct.unpack_from("<ii", data, 18)
    if abs(width) * abs(height) > max_pixels:
        return
    compression = int.from_bytes(data[30:34], "little")
    if compression in (1, 2):
        if abs(width) * abs(height) > MAX_BMP_RLE_PIXELS:
            raise _too_costly("pixels in a run-length-encoded BMP", MAX_BMP_RLE_PIXELS)
        if len(data) > MAX_BMP_RLE_BYTES:
            raise _too_costly("bytes in a run-length-encoded BMP", MAX_BMP_RLE_BYTES)


SIGNATURES = (
    (b"\xff\xd8", check_jpeg),
    (b"\x89PNG\r\n\x1a\n", check_png),
    (b"GIF8", check_gif),
    (b"II", check_tiff),
    (b"MM", check_tiff),
    (b"BM", check_bmp),
)


def check_structure(data: bytes, max_pixels: int) -> None:
    """Refuse (413 ``image_too_costly``) an image whose structure would make its decoder loop.

    A header claiming more than ``max_pixels`` is left to the pixel check, whose answer is clearer.
    """
    for signature, check in SIGNATURES:
        if data.startswith(signature):
            # A truncated structure is the decoder's to report (422), not a cost.
            with contextlib.suppress(struct.error, IndexError):
                check(data, max_pixels)
            return
