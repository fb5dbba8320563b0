"""Cheap walks over an image's structure that refuse what would make a decoder loop for seconds.

Pixel counts bound memory, not work: Pillow parses JPEG markers, PNG chunks, GIF blocks and TIFF
strips one Python loop turn at a time, libjpeg walks the whole image once per progressive scan,
and Pillow's BMP RLE decoder is pure Python. Each walk here reads only the structure (lengths and
markers, never pixel data), stops at its limit, and so costs milliseconds whatever the file
claims. The limits sit far above what real encoders write; docs/reports/reliability.md gives each
format's worst case that still passes, measured.

A walk is only as good as its agreement with the decoder: wherever the two read a file
differently, what the walk did not see is not counted. So each walk reads the way its decoder
does, and where it cannot know, it keeps counting rather than stopping: it skips the bytes
libjpeg and Pillow skip between JPEG markers, reads every PNG header chunk before the data, walks
the JPEG data inside TIFF strips and tiles, and counts WebP animation frames. The decode worker's
OS limits (deadline, memory cap) remain the guarantee; this is the fast, explained refusal.
"""

from __future__ import annotations

import contextlib
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

from handler.errors import Code, PayloadTooLarge, too_costly

# libjpeg's progressive encoders write about 10 scans; jpegtran scripts rarely exceed 20.
MAX_JPEG_SCANS = 32
# libjpeg walks every block of the image once per scan: scans x pixels bounds the work (measured
# here: about 22 ms per scan of a 40 MP photo). 400 M is 10 scans at 40 MP, 32 scans at 12 MP.
# JPEG data inside a TIFF shares the budget: the sum over its strips and tiles.
MAX_JPEG_SCAN_PIXELS = 400_000_000
# Start-of-frame markers (SOF0-SOF15 but DHT, JPG and DAC): they carry the height and width.
JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
JPEG_PROGRESSIVE_FRAMES = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
# Lossless frames (what `cjpeg -lossless` writes): no DCT, so no reduced-size decode.
JPEG_LOSSLESS_FRAMES = frozenset({0xC3, 0xC7, 0xCB, 0xCF})
# SOI..EOI segments: a JPEG has about 10, plus one DHT per progressive scan, plus APPn metadata.
MAX_JPEG_SEGMENTS = 256
# Before its first scan Pillow steps over bytes that are not a marker (junk, 0xFF fill) one Python
# loop turn each (about 0.3 us): real files have none or a few.
MAX_JPEG_SKIPPED_BYTES = 65_536
# libpng writes 8 KB IDAT chunks: a 20 MB upload is 2,560 of them.
MAX_PNG_CHUNKS = 8_192
# Inflating and unfiltering PNG data runs about 250 MB/s here (Paeth rows): 80 MB is a 26 MP RGB
# photo, 20 MP RGBA, 10 MP 16-bit RGBA. TIFF data (LZW, deflate, JPEG, 16-bit, float) too.
MAX_RAW_BYTES = 80_000_000
MAX_PNG_RAW_BYTES = MAX_RAW_BYTES
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# PNG chunks never used to classify, dropped before Pillow parses them: text (Pillow inflates up
# to 64 MB of it and refuses a photo over one malformed chunk) and ICC profiles (not applied).
PNG_DROPPED_CHUNKS = frozenset({b"tEXt", b"zTXt", b"iTXt", b"iCCP"})
# Extension blocks and their sub-blocks before the first image (XMP's trailer alone is 257).
MAX_GIF_BLOCKS = 65_536
# Pillow makes one Python tile per strip or tile; scanners write one row per strip (6,000 rows).
MAX_TIFF_STRIPS = 16_384
MAX_TIFF_TAGS = 1_024
# JPEG segments over all strips and tiles of a JPEG-compressed TIFF (libjpeg reads each strip's
# header anew): 4 per strip at the strip limit; real files write 2 to 8 per strip.
MAX_TIFF_JPEG_SEGMENTS = 65_536
# Pillow's BMP RLE decoder is pure Python: only small RLE files decode within the work budget.
MAX_BMP_RLE_PIXELS = 1_000_000
MAX_BMP_RLE_BYTES = 256 * 1024
# RIFF chunks of a WebP (an animation has one per frame; stickers have tens to hundreds).
MAX_WEBP_CHUNKS = 16_384
# ISOBMFF (AVIF, HEIC): boxes walked, and items (a phone's HEIC is a grid of 48 tiles plus a few
# thumbnails and metadata items; each tile is a decoder run).
MAX_HEIF_BOXES = 4_096
MAX_HEIF_ITEMS = 1_024

# Decoders that are slow per pixel get a lower pixel limit than MAX_IMAGE_PIXELS (measured here:
# a 40 MP lossless WebP takes 1.4 s in libwebp alone).
MAX_PIXELS = {"WEBP": 16_000_000}
# The longest side any image may have (JPEG's own maximum). Pillow feeds its raw decoder one
# whole row at a time, growing the buffer 64 KB per read: a 94-byte WebP animation whose canvas
# is 16,000,000 x 1 took 15 s that way, though its pixel count passed.
MAX_SIDE = 65_535
# Pillow's own guard, set once: above any pixel limit a deployment may configure.
PILLOW_MAX_PIXELS = 200_000_000

# The next marker, as libjpeg's next_marker and Pillow's header parser find it: skip anything but
# 0xFF, swallow 0xFF fill bytes, skip a stuffed 0xFF00. In entropy-coded data RSTn markers are
# part of the scan, so the second pattern steps over them too. (Written with a literal first byte,
# which re searches for at C speed: about 2 ms for 6 MB of entropy-coded data, 10 times faster.)
_MARKER = re.compile(rb"\xff\xff*([^\x00\xff])")
_MARKER_IN_SCAN = re.compile(rb"\xff\xff*([^\x00\xff\xd0-\xd7])")
# Markers followed by a 2-byte length as libjpeg reads them (jdmarker.c): frames, DHT, DAC, SOS,
# DQT, DNL, DRI, APPn, COM. It takes RSTn and TEM as bare markers, stops at EOI, fails on the rest.
_LIBJPEG_SEGMENTS = JPEG_FRAMES | {0xC4, 0xCC, 0xDA, 0xDB, 0xDC, 0xDD, 0xFE} | frozenset(range(0xE0, 0xF0))
# Pillow's header parser (JpegImagePlugin.MARKER) reads DHP and EXP by length too, takes JPG,
# RSTn, SOI, EOI and JPGn as bare markers, and refuses any other.
_PILLOW_SEGMENTS = _LIBJPEG_SEGMENTS | {0xDE, 0xDF}
_PILLOW_BARE = frozenset({0xC8, *range(0xD0, 0xDA), *range(0xF0, 0xFE)})
_SOS, _EOI = 0xDA, 0xD9

# ISOBMFF brands: which decoder a file is for.
AVIF_BRANDS = frozenset({b"avif", b"avis"})
HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
UNKNOWN = "unknown"  # an ISOBMFF file of no brand decoded here (video, JPEG XL, camera raw)


@dataclass(frozen=True)
class Structure:
    """What a walk learnt that the decoder's header does not say."""

    jpeg_lossless: bool = False  # no DCT scaling: decode at full size (``draft`` would break it)
    jpeg_buffered: bool = False  # libjpeg keeps every coefficient (progressive or several scans)
    drop: tuple[tuple[int, int], ...] = ()  # byte spans to remove before Pillow parses the file
    decoder: str | None = None  # the one Pillow plugin for this file ("AVIF", "HEIF", ``UNKNOWN``)


def more_than(what: str, limit: int) -> PayloadTooLarge:
    """The refusal of an image whose structure holds more ``what`` than ``limit``."""
    return too_costly(f"The image has more {what} than this service decodes (the limit is {limit})")


def check_pixels(width: int, height: int, kind: str, limit: int) -> None:
    """Refuse (413 ``image_too_many_pixels``) an image of more than ``limit`` pixels or too long a side."""
    # Raised without binding the exception to a local: a frame holding its own exception is a
    # reference cycle that keeps the caller's half-open image (and its decoder's buffers) alive.
    if width * height > limit:
        raise PayloadTooLarge(
            f"Image is {width}x{height} = {width * height} pixels; the limit for {kind} is {limit}.",
            Code.IMAGE_TOO_MANY_PIXELS,
        )
    if max(width, height) > MAX_SIDE:
        raise PayloadTooLarge(
            f"Image is {width}x{height} pixels; the longest side this service decodes is {MAX_SIDE} pixels.",
            Code.IMAGE_TOO_MANY_PIXELS,
        )


# --- JPEG ------------------------------------------------------------------------------------


@dataclass
class JpegWalk:
    segments: int = 0
    scans: int = 0
    pixels: int = 0  # of the first frame header (the one libjpeg decodes)
    lossless: bool = False
    progressive: bool = False


def walk_jpeg(data: bytes, start: int, end: int, max_pixels: int, pillow: bool) -> JpegWalk:
    """Count the segments and scans libjpeg reads from ``data[start:end]``, refusing past a limit.

    ``pillow``: the stream is also parsed by Pillow's Python header parser up to its first scan
    (a JPEG file; not the JPEG data inside a TIFF strip, which only libjpeg reads). Never stops
    early where a decoder would go on: a marker it does not know is stepped over, not an end.
    """
    walk = JpegWalk()
    pos, skipped, header, seen_frame = start, 0, pillow, False
    while True:
        found = (_MARKER if header else _MARKER_IN_SCAN).search(data, pos, end)
        if found is None:
            return walk
        at = found.start(1)
        marker = data[at]
        if header:
            skipped += at - 1 - pos  # junk and extra fill bytes: one Python loop turn each
            if skipped > MAX_JPEG_SKIPPED_BYTES:
                raise more_than("bytes between JPEG markers", MAX_JPEG_SKIPPED_BYTES)
            if marker not in _PILLOW_SEGMENTS and marker not in _PILLOW_BARE:
                return walk  # Pillow refuses the file here ("no marker found"): nothing is decoded
        elif marker == _EOI:
            return walk  # libjpeg stops here (an MPO's next frame is never decoded)
        elif marker not in _LIBJPEG_SEGMENTS:
            pos = at + 1  # RSTn, TEM, or a marker libjpeg rejects: keep looking
            continue
        pos = at + 1
        walk.segments += 1
        if walk.segments > MAX_JPEG_SEGMENTS:
            raise more_than("JPEG marker segments", MAX_JPEG_SEGMENTS)
        if header and marker in _PILLOW_BARE:
            continue
        if pos + 2 > end:
            return walk
        length = int.from_bytes(data[pos : pos + 2], "big")
        if marker in JPEG_FRAMES and not seen_frame and pos + 7 <= end:
            seen_frame = True  # libjpeg decodes the first frame header and fails on a second
            height, width = struct.unpack_from(">HH", data, pos + 3)
            walk.pixels = width * height
            walk.lossless = marker in JPEG_LOSSLESS_FRAMES
            walk.progressive = marker in JPEG_PROGRESSIVE_FRAMES
        pos += max(length, 2)  # libjpeg and Pillow both read a length under 2 as no payload
        if marker == _SOS:  # its entropy-coded data runs to the next marker
            header = False
            walk.scans += 1
            if walk.scans > MAX_JPEG_SCANS:
                raise more_than("JPEG scans", MAX_JPEG_SCANS)
            # A header over the pixel limit is refused by the pixel check, whose answer is clearer.
            if walk.pixels <= max_pixels and walk.scans * walk.pixels > MAX_JPEG_SCAN_PIXELS:
                raise more_than("JPEG scans x pixels", MAX_JPEG_SCAN_PIXELS)


def check_jpeg(data: bytes, max_pixels: int) -> Structure:
    """Count marker segments and scans the way Pillow's parser and libjpeg read them."""
    walk = walk_jpeg(data, 2, len(data), max_pixels, pillow=True)
    return Structure(jpeg_lossless=walk.lossless, jpeg_buffered=walk.progressive or walk.scans > 1)


# --- PNG -------------------------------------------------------------------------------------


def check_png(data: bytes, max_pixels: int) -> Structure:
    """Bound the filtered data zlib inflates and count chunks (Pillow loops over each in Python).

    Pillow takes the last IHDR before the image data, wherever it is: every IHDR is checked (a
    real file has one, first). Text and ICC chunks are marked for removal.
    """
    pos, chunks, drop = 8, 0, []
    while pos + 8 <= len(data):
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise more_than("PNG chunks", MAX_PNG_CHUNKS)
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if kind == b"IEND":
            break
        if kind == b"IHDR" and length >= 13 and pos + 21 <= len(data):
            width, height, depth, color = struct.unpack_from(">IIBB", data, pos + 8)
            # A header over the pixel limit is left to the pixel check (if Pillow reports it).
            if width * height <= max_pixels:
                raw = width * height * PNG_CHANNELS.get(color, 4) * depth // 8
                if raw > MAX_RAW_BYTES:
                    raise more_than(
                        "bytes of pixel data in a PNG (width x height x channels x depth)", MAX_RAW_BYTES
                    )
        elif kind in PNG_DROPPED_CHUNKS:
            drop.append((pos, pos + 12 + length))
        pos += 12 + length
    return Structure(drop=tuple(drop))


# --- GIF -------------------------------------------------------------------------------------


def check_gif(data: bytes, max_pixels: int) -> Structure:
    """Count the blocks and sub-blocks Pillow reads one by one before the first frame.

    The first frame may be larger than the logical screen: Pillow then reports the union, which
    the pixel check bounds; Pillow reads no later frame.
    """
    if len(data) < 13:
        return Structure()
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    blocks = 0
    while pos < len(data) and data[pos] == 0x21:  # extension: label, then sub-blocks up to a 0
        pos += 2
        while pos < len(data):
            blocks += 1
            if blocks > MAX_GIF_BLOCKS:
                raise more_than("GIF blocks", MAX_GIF_BLOCKS)
            size = data[pos]
            pos += 1 + size
            if size == 0:
                break
    return Structure()


# --- TIFF ------------------------------------------------------------------------------------

# TIFF field types -> struct format (BYTE, ASCII, SHORT, LONG, SBYTE, UNDEFINED, SSHORT, SLONG,
# IFD, LONG8, SLONG8, IFD8).
_TIFF_TYPES = {
    1: "B",
    2: "B",
    3: "H",
    4: "I",
    6: "b",
    7: "B",
    8: "h",
    9: "i",
    13: "I",
    16: "Q",
    17: "q",
    18: "Q",
}
_TIFF_JPEG = (6, 7)  # old-style and new-style JPEG compression


class _Ifd:
    """The first directory of a TIFF: every entry of each tag (Pillow keeps the last of duplicates,
    libtiff the first; the walk takes the costlier)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.order = "<" if data[:2] == b"II" else ">"
        self.big = struct.unpack_from(self.order + "H", data, 2)[0] == 43
        self.inline = 8 if self.big else 4
        self.entries: dict[int, list[tuple[int, int, int]]] = {}
        count_format, entry_size = ("Q", 20) if self.big else ("H", 12)
        offset = struct.unpack_from(self.order + ("Q" if self.big else "I"), data, 8 if self.big else 4)[0]
        count_size = struct.calcsize(count_format)
        if offset + count_size > len(data):
            return
        entries = struct.unpack_from(self.order + count_format, data, offset)[0]
        if entries > MAX_TIFF_TAGS:
            raise more_than("TIFF tags", MAX_TIFF_TAGS)
        start = offset + count_size
        for index in range(entries):
            at = start + index * entry_size
            if at + entry_size > len(data):
                break
            tag, kind = struct.unpack_from(self.order + "HH", data, at)
            count = struct.unpack_from(self.order + ("Q" if self.big else "I"), data, at + 4)[0]
            self.entries.setdefault(tag, []).append((kind, count, at + (12 if self.big else 8)))

    def counts(self, tag: int) -> list[int]:
        return [count for _, count, _ in self.entries.get(tag, ())]

    def values(self, tag: int) -> list[list[int]]:
        """Each readable entry's values (an entry pointing outside the file is left out, as libtiff
        ignores it)."""
        found = []
        for kind, count, field_at in self.entries.get(tag, ()):
            fmt = _TIFF_TYPES.get(kind)
            if fmt is None or count > len(self.data):
                continue
            size = struct.calcsize(fmt) * count
            at = field_at
            if size > self.inline:
                at = struct.unpack_from(self.order + ("Q" if self.big else "I"), self.data, field_at)[0]
            if at + size > len(self.data):
                continue
            found.append(list(struct.unpack_from(f"{self.order}{count}{fmt}", self.data, at)))
        return found

    def largest(self, tag: int, default: int) -> int:
        return max((max(values) for values in self.values(tag) if values), default=default)


def check_tiff(data: bytes, max_pixels: int) -> Structure:
    """Bound strips, tags, raw bytes and, when compressed as JPEG, the scans of every strip's data."""
    if len(data) < 16:
        return Structure()
    version = struct.unpack_from(("<" if data[:2] == b"II" else ">") + "H", data, 2)[0]
    if version not in (42, 43):  # classic TIFF, BigTIFF
        return Structure()
    ifd = _Ifd(data)
    if any(count > MAX_TIFF_STRIPS for tag in (273, 324) for count in ifd.counts(tag)):
        raise more_than("TIFF strips or tiles", MAX_TIFF_STRIPS)
    width, height = ifd.largest(256, 0), ifd.largest(257, 0)
    check_pixels(width, height, "TIFF", max_pixels)  # the largest of duplicate tags
    samples = ifd.largest(277, 1)
    bits = [value for values in ifd.values(258) for value in values] or [1]
    raw = width * height * max(samples, len(bits)) * max(bits) // 8
    if raw > MAX_RAW_BYTES:
        raise more_than("bytes of pixel data in a TIFF (width x height x samples x bits)", MAX_RAW_BYTES)
    if any(value in _TIFF_JPEG for values in ifd.values(259) for value in values):
        return Structure(jpeg_buffered=_check_tiff_jpeg(ifd, width, height, max_pixels))
    return Structure()


def _check_tiff_jpeg(ifd: _Ifd, width: int, height: int, max_pixels: int) -> bool:
    """Walk the JPEG data of every strip or tile (and the old-style JPEG stream): libtiff hands each
    to libjpeg, which walks the strip once per scan. Scans x pixels add up over the whole file.
    True when some strip is progressive or multi-scan (libjpeg then keeps its coefficients)."""
    data = ifd.data
    rows = min(ifd.largest(278, height) or height, height)
    tile = ifd.largest(322, 0) * ifd.largest(323, 0)
    regions: list[tuple[int, int | None, int]] = []  # (offset, byte count or None, pixels)
    for offsets_tag, counts_tag, pixels in ((273, 279, width * rows), (324, 325, tile or width * rows)):
        counts = [value for values in ifd.values(counts_tag) for value in values]
        for values in ifd.values(offsets_tag):
            for index, offset in enumerate(values):
                # No byte count: libtiff estimates one, up to the end of the file.
                count = counts[index] if index < len(counts) and counts[index] else None
                regions.append((offset, count, pixels))
    lengths = [value for values in ifd.values(514) for value in values]
    for values in ifd.values(513):  # JPEGInterchangeFormat: a whole JPEG stream (old-style JPEG)
        regions.extend((offset, max(lengths, default=0) or None, width * height) for offset in values)
    segments = sum(
        walk_jpeg(bytes(tables), 0, len(tables), max_pixels, pillow=False).segments
        for tables in ifd.values(347)  # JPEGTables
    )
    walked: dict[tuple[int, int], JpegWalk] = {}
    cost = walked_bytes = 0
    for offset, count, pixels in regions:
        end = len(data) if count is None else min(len(data), offset + count)
        if offset >= end:
            continue
        walk = walked.get((offset, end))
        if walk is None:  # strips that share their data are walked once, counted each time
            walked_bytes += end - offset
            if walked_bytes > 2 * len(data):  # overlapping strips: no real file has them
                raise more_than("bytes of JPEG data in a TIFF", 2 * len(data))
            walk = walked[offset, end] = walk_jpeg(data, offset, end, max_pixels, pillow=False)
        segments += walk.segments
        if segments > MAX_TIFF_JPEG_SEGMENTS:
            raise more_than("JPEG marker segments in a TIFF", MAX_TIFF_JPEG_SEGMENTS)
        cost += walk.scans * max(walk.pixels, pixels)
        if cost > MAX_JPEG_SCAN_PIXELS:
            raise more_than("JPEG scans x pixels", MAX_JPEG_SCAN_PIXELS)
    return any(walk.progressive or walk.scans > 1 for walk in walked.values())


# --- BMP -------------------------------------------------------------------------------------


def check_bmp(data: bytes, max_pixels: int) -> Structure:
    """RLE4/RLE8 BMPs decode in pure Python: allow only small ones."""
    if len(data) < 34 or int.from_bytes(data[14:18], "little") < 40:  # OS/2 headers have no compression
        return Structure()
    width, height = struct.unpack_from("<ii", data, 18)
    if abs(width) * abs(height) > max_pixels:
        return Structure()
    compression = int.from_bytes(data[30:34], "little")
    if compression in (1, 2):
        if abs(width) * abs(height) > MAX_BMP_RLE_PIXELS:
            raise more_than("pixels in a run-length-encoded BMP", MAX_BMP_RLE_PIXELS)
        if len(data) > MAX_BMP_RLE_BYTES:
            raise more_than("bytes in a run-length-encoded BMP", MAX_BMP_RLE_BYTES)
    return Structure()


# --- WebP ------------------------------------------------------------------------------------


def _webp_size(kind: bytes, data: bytes, body: int) -> tuple[int, int] | None:
    """Width and height from a VP8X (canvas), VP8L or VP8 (key frame) chunk header."""
    if kind == b"VP8X" and body + 10 <= len(data):
        return (
            1 + int.from_bytes(data[body + 4 : body + 7], "little"),
            1 + int.from_bytes(data[body + 7 : body + 10], "little"),
        )
    if kind == b"VP8L" and body + 5 <= len(data) and data[body] == 0x2F:
        bits = int.from_bytes(data[body + 1 : body + 5], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if kind == b"VP8 " and body + 10 <= len(data) and data[body + 3 : body + 6] == b"\x9d\x01\x2a":
        return (
            int.from_bytes(data[body + 6 : body + 8], "little") & 0x3FFF,
            int.from_bytes(data[body + 8 : body + 10], "little") & 0x3FFF,
        )
    return None


def check_webp(data: bytes, max_pixels: int) -> Structure:
    """Bound the canvas and count RIFF chunks and animation frames; frames must fit the canvas.

    Pillow opens every WebP with libwebp's animation decoder, which allocates the whole canvas
    twice when the file is opened, before any pixel check could run: the canvas (or the still
    image's size) is checked here. Pillow decodes the first frame only.
    """
    if data[8:12] != b"WEBP":
        return Structure()
    pos, chunks = 12, 0
    canvas: tuple[int, int] | None = None
    limit = min(max_pixels, MAX_PIXELS["WEBP"])
    while pos + 8 <= len(data):
        chunks += 1
        if chunks > MAX_WEBP_CHUNKS:
            raise more_than("WebP chunks or animation frames", MAX_WEBP_CHUNKS)
        kind = data[pos : pos + 4]
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = pos + 8
        if canvas is None and (found := _webp_size(kind, data, body)) is not None:
            canvas = found
            check_pixels(*canvas, "WEBP", limit)
        elif kind == b"ANMF" and body + 12 <= len(data):
            x, y = (2 * int.from_bytes(data[body + i : body + i + 3], "little") for i in (0, 3))
            w, h = (1 + int.from_bytes(data[body + i : body + i + 3], "little") for i in (6, 9))
            if canvas is None or x + w > canvas[0] or y + h > canvas[1]:
                return Structure()  # libwebp refuses a frame outside its canvas
        pos = body + size + (size & 1)
    return Structure()


# --- ISOBMFF: AVIF and HEIC --------------------------------------------------------------------

_HEIF_CONTAINERS = {b"meta": 4, b"iprp": 0, b"ipco": 0, b"dinf": 0, b"moov": 0, b"trak": 0, b"mdia": 0}


def check_heif(data: bytes, max_pixels: int) -> Structure:
    """Walk the boxes of an AVIF or HEIC: bound boxes, items and every image's spatial extent
    (``ispe``), and name the decoder from the brands. Nothing is decoded by libavif or libheif
    before this passes."""
    size = int.from_bytes(data[0:4], "big")
    brands = {data[8:12]} | {data[i : i + 4] for i in range(16, min(size, len(data), 4096), 4)}
    if brands & AVIF_BRANDS:
        decoder = "AVIF"
    elif brands & HEIF_BRANDS:
        decoder = "HEIF"
    else:
        return Structure(decoder=UNKNOWN)
    boxes = 0
    stack = [(0, len(data))]
    while stack:
        pos, end = stack.pop()
        while pos + 8 <= end:
            boxes += 1
            if boxes > MAX_HEIF_BOXES:
                raise more_than("boxes in an AVIF or HEIC file", MAX_HEIF_BOXES)
            length = int.from_bytes(data[pos : pos + 4], "big")
            kind = data[pos + 4 : pos + 8]
            header = 8
            if length == 1 and pos + 16 <= end:
                length, header = int.from_bytes(data[pos + 8 : pos + 16], "big"), 16
            elif length == 0:
                length = end - pos
            if length < header:
                break  # the decoder refuses a box shorter than its header
            box_end = min(pos + length, end)
            body = pos + header
            if kind in _HEIF_CONTAINERS:
                stack.append((body + _HEIF_CONTAINERS[kind], box_end))
            elif kind == b"iinf" and body + 6 <= box_end:
                version = data[body]
                items = (
                    int.from_bytes(data[body + 4 : body + 6], "big")
                    if version == 0
                    else int.from_bytes(data[body + 4 : body + 8], "big")
                )
                if items > MAX_HEIF_ITEMS:
                    raise more_than("items in an AVIF or HEIC file", MAX_HEIF_ITEMS)
            elif kind == b"ispe" and body + 12 <= box_end:
                width, height = struct.unpack_from(">II", data, body + 4)
                # libavif and libheif refuse huge headers with an error of their own: answer first.
                check_pixels(width, height, decoder, max_pixels)
            pos = pos + length
    return Structure(decoder=decoder)


@dataclass(frozen=True)
class Signature:
    """One image format as its first 16 bytes say: the extension and content type a stored copy
    gets (capture), and the structure walk it gets before any decoder sees it."""

    extension: str
    content_type: str
    matches: Callable[[bytes], bool]
    check: Callable[[bytes, int], Structure]


# The one table of signatures, first match wins. A walk runs for anything its decoder might take
# (TIFF by its byte order alone, any RIFF), so the matches are as wide as the decoders' own.
SIGNATURES = (
    Signature("jpg", "image/jpeg", lambda head: head.startswith(b"\xff\xd8"), check_jpeg),
    Signature("png", "image/png", lambda head: head.startswith(b"\x89PNG\r\n\x1a\n"), check_png),
    Signature("gif", "image/gif", lambda head: head.startswith(b"GIF8"), check_gif),
    Signature("tiff", "image/tiff", lambda head: head[:2] in (b"II", b"MM"), check_tiff),
    Signature("bmp", "image/bmp", lambda head: head.startswith(b"BM"), check_bmp),
    Signature("webp", "image/webp", lambda head: head.startswith(b"RIFF"), check_webp),
    Signature("avif", "image/avif", lambda head: head[4:8] == b"ftyp" and head[8:11] == b"avi", check_heif),
    Signature("heic", "image/heic", lambda head: head[4:8] == b"ftyp", check_heif),
)


def signature_of(data: bytes) -> Signature | None:
    """The format ``data``'s first bytes name, if any."""
    head = bytes(data[:16])  # ``data`` may be a mapped file (a decode worker's image): no ``startswith``
    return next((signature for signature in SIGNATURES if signature.matches(head)), None)


def check_structure(data: bytes, max_pixels: int) -> Structure:
    """Refuse (413 ``image_too_costly``) an image whose structure would make its decoder loop, and
    say what the decoder's header will not (see ``Structure``).

    A header claiming more than ``max_pixels`` is left to the pixel check, whose answer is clearer
    (AVIF and HEIC excepted: their decoders refuse huge headers first).
    """
    head = bytes(data[:16])  # ``data`` may be a mapped file (a decode worker's image): no ``startswith``
    # Every walk whose signature matches, in order, until one reads the file: a file that is two
    # formats at once (TIFF's byte order and HEIF's "ftyp") gets the second walk when the first
    # cannot read it, as either decoder might take it.
    for check in dict.fromkeys(signature.check for signature in SIGNATURES if signature.matches(head)):
        # A truncated structure is the decoder's to report (422), not a cost. Each walk checks its
        # bounds itself, so this only catches what a truncated header makes unreadable.
        with contextlib.suppress(struct.error, IndexError):
            return check(data, max_pixels)
    return Structure()


def without(data: bytes, spans: tuple[tuple[int, int], ...]) -> bytes:
    """``data`` with the byte ``spans`` (in order, not overlapping) removed."""
    if not spans:
        return data
    pieces, pos = [], 0
    for start, end in spans:
        pieces.append(data[pos:start])
        pos = end
    pieces.append(data[pos:])
    return b"".join(pieces)
