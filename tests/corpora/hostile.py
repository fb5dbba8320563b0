"""Hostile inputs: small files that cost a decoder far more than their size (dev and tests only).

Each builder returns the bytes an attacker would send. ``make hostile`` measures what each costs
the service (``bench/hostile.py``); the tests assert each is refused before its expensive decode,
or classified when it is legitimate. Built in memory, deterministic, no photos needed.
"""

from __future__ import annotations

import functools
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


# --- Differentials: files the structure walk once read differently from the decoder. Each hid
# its cost from the walk: the walk now reads them as the decoder does (``formats``).


def _before_first_scan(data: bytes, gap: bytes) -> bytes:
    """``data`` with ``gap`` inserted right before its first SOS marker."""
    first = next(start for start, _ in _jpeg_segments(data) if data[start + 1] == 0xDA)
    return data[:first] + gap + data[first:]


# What libjpeg's next_marker and Pillow's parser step over before a marker, and what a walk that
# stopped at the first byte it did not expect never looked past.
JPEG_GAPS = {
    "junk": b"\x00",  # "Corrupt JPEG data: 1 extraneous bytes before marker 0xda"
    "ff00": b"\xff\x00",  # a stuffed zero outside entropy-coded data: discarded
    "zero-length-com": b"\xff\xfe\x00\x00",  # a length under 2: both read it as no payload
}


def jpeg_scans_behind(gap: str = "junk", size: int = 6_000, scans: int = 3_000) -> bytes:
    """A progressive 36 MP JPEG whose ``scans`` follow a byte sequence (``JPEG_GAPS``) before its
    first scan. libjpeg skips it and decodes every scan: 38 s for 3,000 before the walk skipped
    what libjpeg skips."""
    return _before_first_scan(progressive_jpeg_scans(size, scans), JPEG_GAPS[gap])


def jpeg_comments_after(marker: bytes = b"\xff\xd9", count: int = 500_000) -> bytes:
    """``jpeg_comments`` behind a bare EOI (or SOI) marker: Pillow's parser reads on through both
    (one Python turn per segment) where a walk stopped at EOI or read SOI as a length."""
    data = _encode(Image.new("L", (8, 8), 128), "JPEG")
    return data[:2] + marker + b"\xff\xfe\x00\x02" * count + data[2:]


def _tiff(entries: list[tuple[int, int, int, object]], blobs: list[bytes]) -> bytes:
    """A little-endian TIFF of one directory. A value is an int, a list of ints (SHORT or LONG),
    or bytes; ``("blob", i)`` in place of an int is the offset of ``blobs[i]``, each written once
    after the directory (many strips may point at the same one)."""
    entries = sorted(entries, key=lambda entry: entry[0])

    def pack(kind: int, value: object, offsets: list[int]) -> bytes:
        if isinstance(value, bytes):
            return value
        values = [
            offsets[v[1]] if isinstance(v, tuple) else v
            for v in (value if isinstance(value, list) else [value])
        ]
        return struct.pack(f"<{len(values)}{'H' if kind == 3 else 'I'}", *values)

    ifd_size = 2 + 12 * len(entries) + 4
    sizes = [len(pack(kind, value, [0] * len(blobs))) for _, kind, _, value in entries]
    position = 8 + ifd_size + sum(size for size in sizes if size > 4)
    offsets = []
    for blob in blobs:
        offsets.append(position)
        position += len(blob)
    ifd, extra = struct.pack("<H", len(entries)), b""
    for tag, kind, count, value in entries:
        packed = pack(kind, value, offsets)
        if len(packed) > 4:
            field = struct.pack("<I", 8 + ifd_size + len(extra))
            extra += packed
        else:
            field = packed.ljust(4, b"\x00")
        ifd += struct.pack("<HHI", tag, kind, count) + field
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + extra + b"".join(blobs)


def _progressive(width: int, height: int, scans: int) -> bytes:
    """A progressive grayscale JPEG whose last scan repeats up to ``scans`` scans in all."""
    data = _encode(Image.new("L", (width, height), 128), "JPEG", progressive=True, quality=50)
    spans = _jpeg_segments(data)
    have = sum(data[start + 1] == 0xDA for start, _ in spans)
    start, end = spans[-1]
    return data[:end] + data[start:end] * max(0, scans - have) + b"\xff\xd9"


def tiff_jpeg_progressive(
    width: int = 6_000, height: int = 6_000, tile: int = 0, rows: int = 400, scans: int = 99
) -> bytes:
    """A JPEG-compressed TIFF (new style) whose every strip (or ``tile`` x ``tile`` tile) is the
    same progressive JPEG of ``scans`` scans (libtiff allows 99): libjpeg walks each strip once per
    scan, and nothing counted scans inside a TIFF. 6000 x 6000 in 15 strips: 3.6 G block visits."""
    if tile:
        across, down = -(-width // tile), -(-height // tile)
        jpeg = _progressive(tile, tile, scans)
        layout = [(322, 3, 1, tile), (323, 3, 1, tile)]
        count = across * down
        places = [(324, 4, count, [("blob", 0)] * count), (325, 4, count, [len(jpeg)] * count)]
    else:
        jpeg = _progressive(width, rows, scans)
        count = -(-height // rows)
        layout = [(278, 3, 1, rows)]
        places = [(273, 4, count, [("blob", 0)] * count), (279, 4, count, [len(jpeg)] * count)]
    if count == 1:
        places = [(tag, kind, 1, value[0]) for tag, kind, _, value in places]
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 7),  # new-style JPEG
        (262, 3, 1, 1),  # black is zero
        (277, 3, 1, 1),
        *layout,
        *places,
    ]
    return _tiff(entries, [jpeg])


def tiff_old_jpeg_progressive(size: int = 4_000, scans: int = 99) -> bytes:
    """An old-style JPEG TIFF (compression 6) whose JPEGInterchangeFormat stream is a progressive
    JPEG of ``scans`` scans (libtiff's own parser refuses it; the walk counts it first anyway)."""
    jpeg = _encode(Image.new("RGB", (size, size), (90, 120, 200)), "JPEG", progressive=True, quality=50)
    spans = _jpeg_segments(jpeg)
    start, end = spans[-1]
    jpeg = jpeg[:end] + jpeg[start:end] * scans + b"\xff\xd9"
    entries = [
        (256, 4, 1, size),
        (257, 4, 1, size),
        (258, 3, 3, [8, 8, 8]),
        (259, 3, 1, 6),  # old-style JPEG
        (262, 3, 1, 6),  # YCbCr
        (273, 4, 1, ("blob", 0)),
        (277, 3, 1, 3),
        (278, 4, 1, size),
        (279, 4, 1, len(jpeg)),
        (512, 3, 1, 1),  # JPEGProc: baseline
        (513, 4, 1, ("blob", 0)),  # JPEGInterchangeFormat
        (514, 4, 1, len(jpeg)),
    ]
    return _tiff(entries, [jpeg])


def tiff_deep(width: int = 6_000, height: int = 6_000, samples: int = 1, bits: int = 32) -> bytes:
    """A deflate-compressed TIFF of ``samples`` samples of ``bits`` bits (32: float): 150 KB to
    216 KB that inflate to 144 MB (float) or 216 MB (16-bit RGB) of pixel data, where nothing
    bounded a TIFF's raw bytes."""
    row = b"\x00" * (width * samples * bits // 8)
    compressor = zlib.compressobj(9)
    strip = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, samples, [bits] * samples),
        (259, 3, 1, 8),  # Adobe deflate
        (262, 3, 1, 2 if samples == 3 else 1),
        (273, 4, 1, ("blob", 0)),
        (277, 3, 1, samples),
        (278, 4, 1, height),
        (279, 4, 1, len(strip)),
    ]
    if bits == 32:
        entries.append((339, 3, 1, 3))  # SampleFormat: IEEE float
    return _tiff(entries, [strip])


def _riff_chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("<I", len(payload)) + payload + (b"\x00" if len(payload) % 2 else b"")


def webp_animation_canvas(width: int = 16_000_000, height: int = 1, frames: int = 1) -> bytes:
    """An animated WebP of about 90 bytes: a huge, thin canvas (its pixel count passes) holding
    1x1 frames. libwebp allocates the canvas twice; Pillow then feeds its one 64 MB row to its raw
    decoder 64 KB at a time, copying what it has each time: 15 s and 520 MB."""
    still = _encode(Image.new("RGBA", (1, 1)), "WEBP", lossless=True)
    vp8l = still[12:]  # the VP8L chunk
    flags = 0x02 | 0x10  # animation, alpha
    vp8x = _riff_chunk(
        b"VP8X",
        bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little"),
    )
    anim = _riff_chunk(b"ANIM", b"\x00\x00\x00\x00\x00\x00")
    frame = _riff_chunk(
        b"ANMF", b"\x00" * 6 + b"\x00\x00\x00" * 2 + (100).to_bytes(3, "little") + b"\x00" + vp8l
    )
    body = b"WEBP" + vp8x + anim + frame * frames
    return b"RIFF" + struct.pack("<I", len(body)) + body


def apng_thin(width: int = 16_000_000, height: int = 1) -> bytes:
    """An animated PNG of one RGBA row 16,000,000 pixels long (64 MB of pixel data, within the raw
    limit): resizing it to 224 x 224 makes Pillow build 380 MB of filter coefficients."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    actl = struct.pack(">II", 1, 0)
    fctl = struct.pack(">IIIIIHHBB", 0, width, height, 0, 0, 1, 10, 0, 0)
    compressor = zlib.compressobj(9)
    idat = compressor.compress(b"\x00" + b"\x00" * (width * 4)) * height + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"acTL", actl)
        + _png_chunk(b"fcTL", fctl)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def gif_frame_beyond_screen(width: int = 8_000, height: int = 6_000) -> bytes:
    """A GIF whose logical screen is 1x1 and whose first frame claims ``width`` x ``height``:
    Pillow grows the image to the frame, and the pixel check refuses it at the header."""
    header = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return header + image + b"\x3b"


def _png_data(width: int, height: int, channels: int, depth: int) -> bytes:
    row = b"\x00" + b"\x00" * (width * channels * depth // 8)
    compressor = zlib.compressobj(9)
    return b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()


def png_decoy_header(
    width: int = 8_000, height: int = 5_000, depth: int = 16, color: int = 6, decoy: bool = True
) -> bytes:
    """A PNG whose real IHDR is not its first chunk: after a decoy 1x1 IHDR (``decoy``) or after a
    text chunk. Pillow takes the last IHDR before the data: 8000 x 5000 16-bit RGBA is 320 MB of
    pixel data past an 80 MB limit that read only the first chunk."""
    real = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0))
    first = (
        _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
        if decoy
        else _png_chunk(b"tEXt", b"Comment\x00the header comes next")
    )
    channels = PNG_CHANNELS[color]
    return (
        b"\x89PNG\r\n\x1a\n"
        + first
        + real
        + _png_chunk(b"IDAT", _png_data(width, height, channels, depth))
        + _png_chunk(b"IEND", b"")
    )


PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def _isobmff_patch(data: bytes, box: bytes, offset: int, value: bytes) -> bytes:
    """Overwrite ``value`` at ``offset`` into the body of every ``box`` of an AVIF or HEIC file."""
    out = bytearray(data)
    at = out.find(box)
    while at != -1:
        out[at + 4 + offset : at + 4 + offset + len(value)] = value
        at = out.find(box, at + 4)
    return bytes(out)


def avif_photo(width: int = 640, height: int = 480, quality: int = 60) -> bytes:
    """A real AVIF photo-like image (Pillow's own AVIF plugin encodes it)."""
    return _encode(_photo(width, height), "AVIF", quality=quality, speed=10)


def heic_photo(width: int = 640, height: int = 480, quality: int = 50) -> bytes:
    """A real HEIC photo-like image (``pillow-heif``, a test dependency, encodes it: the service
    ships the decode-only ``pi-heif``)."""
    import pillow_heif

    buffer = io.BytesIO()
    heif = pillow_heif.from_pillow(_photo(width, height))
    heif.save(buffer, format="HEIF", quality=quality, enc_params={"preset": "ultrafast"})
    return buffer.getvalue()


def heif_header_bomb(kind: str = "heic", width: int = 65_535, height: int = 65_535) -> bytes:
    """A small AVIF or HEIC whose image header (``ispe``) claims ``width`` x ``height``."""
    data = heic_photo(64, 64) if kind == "heic" else avif_photo(64, 64)
    return _isobmff_patch(data, b"ispe", 4, struct.pack(">II", width, height))


def heif_items(kind: str = "heic", items: int = 60_000) -> bytes:
    """A HEIC (or AVIF) whose item list claims ``items`` items (a grid tile is an item each)."""
    data = heic_photo(64, 64) if kind == "heic" else avif_photo(64, 64)
    at = data.find(b"iinf")
    version = data[at + 4]
    count = struct.pack(">H", items) if version == 0 else struct.pack(">I", items)
    return data[: at + 8] + count + data[at + 8 + len(count) :]


# --- Real photos the service once refused: they must classify.


def _photo(width: int, height: int) -> Image.Image:
    """A deterministic photo-like RGB image: smooth colour noise, the same on every call."""
    import numpy as np

    grid = np.random.default_rng(7).integers(0, 256, (max(2, height // 32), max(2, width // 32), 3), np.uint8)
    return Image.fromarray(grid, "RGB").resize((width, height), Image.Resampling.BICUBIC)


def jpeg_lossless(image: Image.Image | None = None) -> bytes:
    """A lossless JPEG (SOF3, predictor 1, one Huffman table), as ``cjpeg -lossless`` writes:
    libjpeg-turbo 3 decodes it, but not at a reduced size (``draft``)."""
    import numpy as np

    image = image if image is not None else _photo(800, 600)
    pixels = np.asarray(image, dtype=np.int64)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    height, width, components = pixels.shape
    predicted = np.empty_like(pixels)
    predicted[:, 1:] = pixels[:, :-1]  # predictor 1: the sample on the left
    predicted[1:, 0] = pixels[:-1, 0]  # first column: the sample above
    predicted[0, 0] = 128  # first sample: half the range
    difference = (pixels - predicted).reshape(-1)  # in MCU order: pixel by pixel, component by component
    category = np.zeros(difference.shape, np.int64)  # SSSS: bits of |difference|
    while (more := (np.abs(difference) >> category) > 0).any():
        category += more
    extra = np.where(difference >= 0, difference, difference + (1 << category) - 1)
    # Huffman table: categories 0-8 get the 4-bit codes 0000-1000, so code = category.
    value, length = (category << category) | extra, 4 + category
    start = np.concatenate(([0], np.cumsum(length)[:-1]))
    bits = np.ones(-(-int(length.sum()) // 8) * 8, np.uint8)  # padded with ones
    for bit in range(int(length.max())):
        used = length > bit
        bits[start[used] + bit] = (value[used] >> (length[used] - 1 - bit)) & 1
    entropy = np.packbits(bits).tobytes().replace(b"\xff", b"\xff\x00")
    ids = b"RGB" if components == 3 else bytes(range(1, components + 1))

    def segment(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload

    frame = struct.pack(">BHHB", 8, height, width, components) + b"".join(bytes([i, 0x11, 0]) for i in ids)
    table = bytes([0x00, 0, 0, 0, 9] + [0] * 12) + bytes(range(9))
    scan = bytes([components]) + b"".join(bytes([i, 0x00]) for i in ids) + bytes([1, 0, 0])
    return (
        b"\xff\xd8"
        + segment(0xC3, frame)
        + segment(0xC4, table)
        + segment(0xDA, scan)
        + entropy
        + b"\xff\xd9"
    )


def _png_with(chunks: list[bytes], image: Image.Image | None = None) -> bytes:
    """A real PNG with ``chunks`` inserted after its IHDR."""
    data = _encode(image if image is not None else _photo(320, 240), "PNG")
    ihdr_end = 8 + 12 + 13
    return data[:ihdr_end] + b"".join(chunks) + data[ihdr_end:]


# PNGs whose only flaw is a metadata chunk Pillow cannot parse (each once refused, 422).
PNG_BROKEN_METADATA = {
    "exif-not-tiff": [_png_chunk(b"eXIf", b"this is not a TIFF header")],
    "exif-truncated": [_png_chunk(b"eXIf", b"MM\x00\x2a\x00\x00\x00\x08\x00\x05\x01\x12")],
    "raw-profile-exif-not-hex": [
        _png_chunk(b"tEXt", b"Raw profile type exif\x00\nexif\n   20\nnot hex at all, sorry")
    ],
    "text-keyed-exif": [_png_chunk(b"tEXt", b"exif\x00garbage")],
    "ztxt-unknown-compression": [_png_chunk(b"zTXt", b"Comment\x00\x07xyz")],
    "itxt-over-1mb": [
        _png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x01\x00\x00\x00" + zlib.compress(b" " * 2_000_000, 9))
    ],
    "iccp-unknown-compression": [_png_chunk(b"iCCP", b"icc\x00\x05xyz")],
    "text-after-data": [],  # built below: a malformed zTXt after IDAT
}


def png_broken_metadata(kind: str = "raw-profile-exif-not-hex") -> bytes:
    if kind == "text-after-data":
        data = _encode(_photo(320, 240), "PNG")
        return data[:-12] + _png_chunk(b"zTXt", b"Comment\x00\x07xyz") + data[-12:]
    return _png_with(PNG_BROKEN_METADATA[kind])


def json_big_integer(digits: int = 5_000) -> bytes:
    return b'{"image": ' + b"9" * digits + b"}"


def json_deep(depth: int = 100_000) -> bytes:
    return b'{"image": ' + b"[" * depth + b"]" * depth + b"}"


@dataclass(frozen=True)
class Hostile:
    """One hostile input: how to build it, its media type, and what the service must answer.

    ``walk``: refused by the structure walk (``formats``) before Pillow parses the file; otherwise
    by the pixel check right after Pillow reads the header.
    """

    name: str
    build: Callable[[], bytes]
    content_type: str
    status: int
    code: str
    what: str
    walk: bool = True

    def __post_init__(self) -> None:
        # Built once per process: several tests and both event versions send the same bytes.
        object.__setattr__(self, "build", functools.cache(self.build))


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
    # --- Differentials: the structure walk once read each differently from its decoder.
    *(
        Hostile(
            f"jpeg-36mp-3000-scans-behind-{gap}",
            lambda gap=gap: jpeg_scans_behind(gap),
            "image/jpeg",
            413,
            "image_too_costly",
            f"progressive JPEG 6000x6000, 3,000 scans behind a {gap} gap that libjpeg skips",
        )
        for gap in JPEG_GAPS
    ),
    Hostile(
        "jpeg-500000-comments-after-eoi",
        jpeg_comments_after,
        "image/jpeg",
        413,
        "image_too_costly",
        "500,000 COM segments after a bare EOI (Pillow's parser reads on)",
    ),
    Hostile(
        "jpeg-500000-comments-after-soi",
        lambda: jpeg_comments_after(b"\xff\xd8"),
        "image/jpeg",
        413,
        "image_too_costly",
        "500,000 COM segments after a second SOI",
    ),
    Hostile(
        "tiff-jpeg-15-strips-99-scans",
        tiff_jpeg_progressive,
        "image/tiff",
        413,
        "image_too_costly",
        "JPEG TIFF 6000x6000, 15 strips sharing one progressive JPEG of 99 scans",
    ),
    Hostile(
        "tiff-jpeg-144-tiles-99-scans",
        lambda: tiff_jpeg_progressive(6_144, 6_144, tile=512),
        "image/tiff",
        413,
        "image_too_costly",
        "JPEG TIFF 6144x6144, 144 tiles sharing one progressive JPEG of 99 scans",
    ),
    Hostile(
        "tiff-jpeg-15-strips-30-scans",
        lambda: tiff_jpeg_progressive(scans=30),
        "image/tiff",
        413,
        "image_too_costly",
        "JPEG TIFF 6000x6000: each strip within the scan limit, the file over scans x pixels",
    ),
    Hostile(
        "tiff-old-jpeg-99-scans",
        tiff_old_jpeg_progressive,
        "image/tiff",
        413,
        "image_too_costly",
        "old-style JPEG TIFF 4000x4000, a progressive JPEG of 99 scans",
    ),
    Hostile(
        "tiff-float-6000x6000-deflate",
        tiff_deep,
        "image/tiff",
        413,
        "image_too_costly",
        "float TIFF, 144 MB of pixel data in 140 KB",
    ),
    Hostile(
        "tiff-16-bit-rgb-6000x6000-deflate",
        lambda: tiff_deep(samples=3, bits=16),
        "image/tiff",
        413,
        "image_too_costly",
        "16-bit RGB TIFF, 216 MB of pixel data in 210 KB",
    ),
    Hostile(
        "webp-animation-16000000x1-canvas",
        webp_animation_canvas,
        "image/webp",
        413,
        "image_too_many_pixels",
        "90-byte animated WebP, canvas 16,000,000 x 1",
    ),
    Hostile(
        "apng-16000000x1",
        apng_thin,
        "image/png",
        413,
        "image_too_many_pixels",
        "animated PNG, one RGBA row of 16,000,000 pixels",
        walk=False,
    ),
    Hostile(
        "gif-8000x6000-frame-on-1x1-screen",
        gif_frame_beyond_screen,
        "image/gif",
        413,
        "image_too_many_pixels",
        "GIF whose first frame is larger than its 1x1 screen",
        walk=False,
    ),
    Hostile(
        "png-decoy-ihdr-320mb",
        png_decoy_header,
        "image/png",
        413,
        "image_too_costly",
        "PNG, a 1x1 IHDR first, then 8000x5000 16-bit RGBA (320 MB of pixel data)",
    ),
    Hostile(
        "png-ihdr-after-text-320mb",
        lambda: png_decoy_header(decoy=False),
        "image/png",
        413,
        "image_too_costly",
        "PNG whose IHDR follows a text chunk, 8000x5000 16-bit RGBA",
    ),
    Hostile(
        "avif-65535x65535-header",
        lambda: heif_header_bomb("avif"),
        "image/avif",
        413,
        "image_too_many_pixels",
        "AVIF whose image header claims 65535x65535",
    ),
    Hostile(
        "heic-65535x65535-header",
        heif_header_bomb,
        "image/heic",
        413,
        "image_too_many_pixels",
        "HEIC whose image header claims 65535x65535",
    ),
    Hostile(
        "heic-60000-items",
        heif_items,
        "image/heic",
        413,
        "image_too_costly",
        "HEIC whose item list claims 60,000 items (grid tiles)",
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


def tiff_jpeg_at_limit(width: int = 6_000, height: int = 4_400) -> bytes:
    """A 26 MP JPEG-compressed TIFF as libtiff writes it (baseline strips, shared tables): RGB at
    the raw-bytes limit."""
    return _encode(_photo(width, height), "TIFF", compression="jpeg", quality=70)


def tiff_jpeg_scans_at_limit(width: int = 4_000, height: int = 3_000, scans: int = 32) -> bytes:
    """A 12 MP JPEG TIFF of one strip holding a progressive JPEG at the scan limit (384 M)."""
    return tiff_jpeg_progressive(width, height, rows=height, scans=scans)


# At the limits (the most expensive inputs that still pass), and real files the service once
# refused: each must classify.
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
    ("webp-animation-16mp-canvas", lambda: webp_animation_canvas(4_000, 4_000), "image/webp"),
    ("tiff-jpeg-26mp-strips", tiff_jpeg_at_limit, "image/tiff"),
    ("tiff-jpeg-12mp-32-scans", tiff_jpeg_scans_at_limit, "image/tiff"),
    # AVIF's and HEIC's decoders (dav1d, libde265, with their threads) need ~450 MB of address space
    # at 40 MP: more than the local default cap (400 MB); 24 MP fits. The stack's caps (1.5 GB and
    # more) take 40 MP.
    ("avif-24mp", lambda: avif_photo(6_000, 4_000, quality=50), "image/avif"),
    ("heic-24mp", lambda: heic_photo(6_000, 4_000), "image/heic"),
    ("jpeg-lossless-800x600", jpeg_lossless, "image/jpeg"),
    *(
        (f"png-broken-metadata-{kind}", lambda kind=kind: png_broken_metadata(kind), "image/png")
        for kind in PNG_BROKEN_METADATA
    ),
)
