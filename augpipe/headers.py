"""Image headers without decoding: size (for --max-pixels), format, colour mode, EXIF orientation.

JPEG and PNG, the common cases, are read here directly (PIL's parser costs as much as decoding a
64×64 image); every other format goes through PIL, which reads only the header too.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from augpipe.errors import SkipInput

_PIL_FORMATS = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "BMP": "bmp", "WEBP": "webp", "TIFF": "tiff"}
# start-of-frame markers: every 0xC0-0xCF except DHT (C4), JPG (C8) and DAC (CC)
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PNG_MODES = {0: "L", 2: "RGB", 3: "P", 4: "LA", 6: "RGBA"}


@dataclass(frozen=True)
class Header:
    format: str  # jpeg, png, bmp, webp, tiff, or PIL's name of an unsupported one
    width: int
    height: int
    mode: str  # PIL's mode names: RGB, L, P, RGBA, CMYK, ...
    alpha: bool
    orientation: int | None


def read_header(data: bytes) -> Header:
    header = None
    if data[:2] == b"\xff\xd8":
        header = _jpeg(data)
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        header = _png(data)
    return header or _pil(data)


def jpeg_frame(data) -> tuple[int, int, int, int | None] | None:
    """(width, height, components, EXIF orientation) of a JPEG in any uint8 buffer (a numpy view
    of a shard's bytes, without a copy); None if it is not a JPEG or its header does not parse."""
    view = memoryview(data)
    return _frame(view) if view[:2] == b"\xff\xd8" else None


def jpeg_frames(data, offsets) -> list:
    """`jpeg_frame` of each image laid end to end in one uint8 buffer (image k is
    data[offsets[k]:offsets[k + 1]]). JPEGs written alike (one encoder, one quality) share their
    run of marker segments up to the scan: the images whose markers and lengths all sit where the
    first one's do are read at once, where `_frame`'s walk would go the same way (the others, and
    a first one with EXIF, fill bytes or standalone markers, one by one)."""
    import numpy as np

    data = data if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)
    starts = np.asarray(offsets[:-1], np.int64)
    ends = np.asarray(offsets[1:], np.int64)
    frames = [None] * len(starts)
    walk = _walk(data[starts[0]:ends[0]]) if len(starts) >= _AT_ONCE else None
    if walk is not None:
        checked, sof = walk
        same = ends - starts > checked.max() + 10  # `_frame`'s bounds, met on every step
        rows = np.flatnonzero(same)
        same[rows] = (data[starts[rows, None] + checked] == data[starts[0] + checked]).all(axis=1)
        at = starts[same] + sof
        widths = (data[at + 7].astype(np.int64) << 8 | data[at + 8]).tolist()
        heights = (data[at + 5].astype(np.int64) << 8 | data[at + 6]).tolist()
        for k, width, height, components in zip(np.flatnonzero(same).tolist(), widths, heights, data[at + 9].tolist()):
            frames[k] = (width, height, components, None)
        left = np.flatnonzero(~same).tolist()
    else:
        left = range(len(starts))
    for k in left:
        frames[k] = jpeg_frame(data[starts[k]:ends[k]])
    return frames


_AT_ONCE = 8  # fewer images: one by one costs as little
_MOST_SEGMENTS = 64  # an encoder's header has about ten: a longer walk is read image by image


def _walk(data):
    """The byte positions `_frame` reads the markers and lengths of on its way to the scan, and
    the frame header's position, where the walk meets only plain segments (no EXIF block, fill
    byte or standalone marker) and one frame header; else None."""
    import numpy as np

    view = memoryview(data)
    if view[:2] != b"\xff\xd8":
        return None
    i, n, positions, sof = 2, len(view), [0, 1], None
    while i + 4 <= n and view[i] == 0xFF and len(positions) < 4 * _MOST_SEGMENTS:
        marker = view[i + 1]
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD7 or marker == 0xE1:
            return None
        positions += [i, i + 1]
        if marker == 0xDA:
            return (np.array(positions), sof) if sof is not None else None
        positions += [i + 2, i + 3]
        if marker in _SOF:
            if sof is not None:
                return None
            sof = i
        i += 2 + (view[i + 2] << 8 | view[i + 3])
    return None


def _jpeg(data: bytes) -> Header | None:
    frame = _frame(data)
    if frame is None:
        return None
    width, height, components, orientation = frame
    mode = {1: "L", 3: "RGB", 4: "CMYK"}.get(components)
    return Header("jpeg", width, height, mode, False, orientation) if mode else None


def _frame(data) -> tuple[int, int, int, int | None] | None:
    """The first frame header's fields and the first EXIF block's orientation, read up to the scan
    (OpenCV reads EXIF so, wherever before the scan it is: a block after the frame header counts,
    a second one does not)."""
    i, n, frame, orientation, exif = 2, len(data), None, None, False
    while i + 2 <= n:
        if data[i] != 0xFF:
            break
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM and RSTn stand alone: no length
            i += 2
            continue
        if marker == 0xDA or i + 4 > n:  # the scan: image data follows
            break
        length = data[i + 2] << 8 | data[i + 3]
        if marker == 0xE1 and not exif and data[i + 4:i + 10] == b"Exif\0\0":
            orientation, exif = _exif_orientation(bytes(data[i + 10:i + 2 + length])), True
        elif marker in _SOF and frame is None and i + 10 <= n:
            frame = data[i + 7] << 8 | data[i + 8], data[i + 5] << 8 | data[i + 6], data[i + 9]
        i += 2 + length
    return (*frame, orientation) if frame is not None else None


def _exif_orientation(tiff: bytes) -> int | None:
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return None
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return None
    for k in range(int.from_bytes(tiff[ifd:ifd + 2], order)):
        entry = ifd + 2 + 12 * k
        if entry + 12 > len(tiff):
            return None
        if int.from_bytes(tiff[entry:entry + 2], order) == 0x0112:
            return int.from_bytes(tiff[entry + 8:entry + 10], order)
    return None


def _png(data: bytes) -> Header | None:
    if data[12:16] != b"IHDR" or len(data) < 33:
        return None
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    mode = _PNG_MODES.get(data[25])
    if mode is None:
        return None
    alpha = mode in ("LA", "RGBA")
    i = 33
    while not alpha and i + 8 <= len(data):  # a tRNS chunk, if any, comes before the image data
        kind = data[i + 4:i + 8]
        if kind in (b"IDAT", b"IEND"):
            break
        alpha = kind == b"tRNS"
        i += 12 + int.from_bytes(data[i:i + 4], "big")
    return Header("png", width, height, mode, alpha, None)


def _pil(data: bytes) -> Header:
    try:
        with Image.open(io.BytesIO(data)) as im:
            orientation = None
            try:
                orientation = im.getexif().get(0x0112)
            except Exception:  # a broken EXIF block is no reason to lose the image
                pass
            alpha = "A" in im.mode or "transparency" in im.info
            return Header(_PIL_FORMATS.get(im.format, im.format), *im.size, im.mode, alpha, orientation)
    # ImportError: ultralytics, once imported, patches Image.open to load a HEIF plugin on an image
    # PIL cannot identify, and raises that where the plugin is not installed
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, ImportError):
        raise SkipInput("not a readable image (unknown format or corrupt header)") from None
