"""Bytes to an 8-bit RGB array and back: the only place that decodes or encodes images."""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np
import simplejpeg
from PIL import Image

from augpipe.errors import SkipInput
from augpipe.headers import Header, jpeg_frame, read_header

# augpipe checks the pixel count itself, against --max-pixels, from the header alone.
Image.MAX_IMAGE_PIXELS = None
# A truncated file is a recorded skip, not a warning from libpng or libjpeg on stderr.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

SUPPORTED_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_READABLE = ("jpeg", "png", "bmp", "webp", "tiff")
_ENCODE = {"jpeg": ".jpg", "png": ".png", "webp": ".webp"}
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV 4.10 and later


@dataclass(frozen=True)
class Decoded:
    rgb: np.ndarray  # H×W×3 uint8, EXIF orientation applied
    format: str  # jpeg, png, bmp, webp, tiff
    conversion: str | None  # what was done to reach 8-bit RGB, for the summary
    oriented: bool  # EXIF orientation rotated or flipped the pixels
    orientation: int | None = None  # the EXIF orientation value (a semantic mask is turned the same way)


def usable_header(data: bytes, max_pixels: int) -> Header:
    """The header of an image augpipe can decode, or SkipInput saying why not."""
    if not data:
        raise SkipInput("empty file (0 bytes)")
    head = read_header(data)
    if head.width <= 0 or head.height <= 0:
        raise SkipInput(f"no pixels: its header says {head.width}×{head.height}")
    if head.width * head.height > max_pixels:
        raise SkipInput(
            f"too large: {head.width}×{head.height} = {head.width * head.height:,} pixels, "
            f"over --max-pixels {max_pixels:,}"
        )
    if head.format not in _READABLE:
        raise SkipInput(f"unsupported image format {head.format}")
    return head


def oriented_size(data: bytes, max_pixels: int) -> tuple[int, int]:
    """(width, height) as decoded, EXIF orientation applied, from the header alone."""
    head = usable_header(data, max_pixels)
    return (head.height, head.width) if head.orientation in (5, 6, 7, 8) else (head.width, head.height)


def decode(data: bytes, max_pixels: int) -> Decoded:
    head = usable_header(data, max_pixels)
    buffer = np.frombuffer(data, np.uint8)
    plain = head.format == "jpeg" and head.mode == "RGB"  # the common case: RGB written directly, no conversion pass
    rgb = _libjpeg(data, (head.width, head.height, 3, head.orientation)) if plain else None
    if rgb is not None:
        conversion = None
    elif plain and _IMREAD_RGB is not None:
        rgb, conversion = cv2.imdecode(buffer, _IMREAD_RGB), None
        if rgb is None:
            raise SkipInput("corrupt or truncated image data")
    else:
        pixels = cv2.imdecode(buffer, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
        if pixels is None:
            raise SkipInput("corrupt or truncated image data")
        rgb, conversion = _to_rgb8(pixels, head)
    return Decoded(rgb=rgb, format=head.format, conversion=conversion, oriented=head.orientation not in (None, 1),
                   orientation=head.orientation)


def _to_rgb8(pixels: np.ndarray, head: Header) -> tuple[np.ndarray, str | None]:
    notes = []
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
        notes.append("16-bit")
    elif pixels.dtype != np.uint8:
        raise SkipInput(f"unsupported pixel type {pixels.dtype}")
    if pixels.ndim == 2:
        rgb = cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB)
    elif pixels.shape[2] == 4:
        rgb = cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGB)
    else:
        rgb = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    if pixels.ndim == 2 or head.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
        notes.append("grayscale")
    if head.alpha:
        notes.append("alpha dropped")
    elif head.mode == "P":
        notes.append("palette")
    elif head.mode == "CMYK":
        notes.append("CMYK")
    return rgb, (", ".join(notes) if notes else None)


# OpenCV refuses larger images before it allocates (its CV_IO_MAX_IMAGE_PIXELS, 2^30 unless set):
# simplejpeg would decode them first, so they go to OpenCV
_MAX_PIXELS = int(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", 1 << 30))
_BATCH_PIXELS = 1 << 24  # larger images are decoded one by one, not into one batch array


def _libjpeg(data, frame: tuple[int, int, int, int | None]) -> np.ndarray | None:
    """A JPEG's RGB pixels by libjpeg-turbo's own API (simplejpeg), which gives OpenCV's pixels
    (the same libjpeg-turbo, its default DCT and upsampling) 1.2-1.8× faster. None where OpenCV
    decodes it: not a grey or YCbCr JPEG (CMYK), an EXIF orientation to apply (OpenCV turns the
    pixels), over OpenCV's pixel limit, or data libjpeg-turbo warns about (simplejpeg refuses
    what OpenCV may decode in part). `frame`: `headers.jpeg_frame`'s."""
    if not _plain(frame):
        return None
    width, height = frame[:2]
    try:
        return simplejpeg.decode_jpeg(data, "rgb", buffer=off_boundary(height * width * 3))
    except ValueError:
        return None


def off_boundary(nbytes: int) -> np.ndarray:
    """`nbytes` of uint8 memory starting 16 bytes past a 32-byte boundary, to decode into:
    libjpeg-turbo's SIMD code writes an output row that starts on such a boundary with
    non-temporal stores, which go around the cache (bench/align.py: 1.1-1.45× slower), and an
    array numpy allocates lands on one or not as the heap falls."""
    raw = np.empty(nbytes + 32, np.uint8)
    start = boundary_offset(raw.__array_interface__["data"][0])
    return raw[start:start + nbytes]


def boundary_offset(address: int) -> int:
    """Bytes from `address` to the next address 16 bytes past a 32-byte boundary."""
    return (16 - address) % 32


def _plain(frame) -> bool:
    width, height, components, orientation = frame
    return components in (1, 3) and orientation in (None, 1) and width * height <= _MAX_PIXELS


def jpegs_size(frames: list) -> tuple[int, int] | None:
    """(height, width) shared by JPEGs that `jpegs_into` decodes (grey or YCbCr, no EXIF
    orientation to apply, 16 megapixels at most), given their `jpeg_frame`s; None if any is not
    one or their sizes differ."""
    size = frames[0][:2] if frames and frames[0] is not None else None
    if size is None or size[0] * size[1] > _BATCH_PIXELS or not all(f is not None and f[:2] == size and _plain(f)
                                                                      for f in frames):
        return None
    return size[1], size[0]


def jpegs_into(blobs: list, out: np.ndarray) -> bool:
    """JPEGs of `jpegs_size` decoded by libjpeg-turbo straight into `out`, one N×H×W×3 uint8
    array: no array an image, no copy to join them. False if one raises or is not the size its
    header said to augpipe (`row_images` then decodes them, giving what OpenCV gives)."""
    try:
        for blob, pixels in zip(blobs, out):
            if simplejpeg.decode_jpeg(blob, "rgb", buffer=pixels).shape != pixels.shape:
                return False
    except ValueError:
        return False
    return True


def row_image(data, reduce: int = 1) -> np.ndarray:
    """A shard row's image as H×W×3 RGB: every reader of shards decodes through here. `data`:
    bytes or a uint8 buffer. `reduce` 2, 4 or 8 decodes at that fraction of the size (JPEG's DCT
    scaling, OpenCV's IMREAD_REDUCED_COLOR_*: far less work; other formats are decoded, then shrunk)."""
    if len(data) == 0:
        raise ValueError("image has no bytes")
    frame = jpeg_frame(data) if reduce == 1 else None
    if frame is not None and (rgb := _libjpeg(data, frame)) is not None:
        return rgb
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), _flag(reduce))
    except cv2.error:  # past OpenCV's pixel limit
        pixels = None
    if pixels is None:
        raise ValueError("image does not decode")
    return pixels if _IMREAD_RGB is not None else cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)


def row_image_warned(data) -> tuple[np.ndarray, str | None]:
    """`row_image`, and libjpeg-turbo's warning on a JPEG it decodes only with one ("Corrupt JPEG
    data: ...", "Premature end of JPEG file"): its data changed, the picture partly wrong, though
    it decodes all the same; None for any other image."""
    frame = jpeg_frame(data)
    if frame is None or not _plain(frame):
        return row_image(data), None
    try:
        return simplejpeg.decode_jpeg(data, "rgb", buffer=off_boundary(frame[0] * frame[1] * 3)), None
    except ValueError as exc:
        warning = (str(exc).splitlines() or [""])[0] or "libjpeg-turbo refused it"
    try:  # what it decodes all the same (OpenCV's pixels), without libjpeg's line on stderr
        return simplejpeg.decode_jpeg(data, "rgb", strict=False), warning
    except ValueError:
        return row_image(data), warning


def row_images(blobs: list, reduce: int = 1) -> list[np.ndarray]:
    """`row_image` of each uint8 buffer, with one flag for all: a batch's decode holds the GIL for
    little more than the decoder's call (a bad one raises as `row_image` does)."""
    if reduce == 1:
        return [row_image(blob) for blob in blobs]
    flag = _flag(reduce)
    try:
        out = [cv2.imdecode(blob, flag) for blob in blobs]
    except cv2.error:  # an empty buffer
        out = [None]
    if any(pixels is None for pixels in out):
        out = [row_image(blob, reduce) for blob in blobs]  # the error row_image gives
    return out if _IMREAD_RGB is not None else [cv2.cvtColor(p, cv2.COLOR_BGR2RGB) for p in out]


def _flag(reduce: int) -> int:
    if reduce not in _REDUCED:
        raise ValueError(f"reduce {reduce}: one of {', '.join(map(str, _REDUCED))}")
    return (_REDUCED[reduce] & ~cv2.IMREAD_COLOR | _IMREAD_RGB) if _IMREAD_RGB is not None else _REDUCED[reduce]


_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}


def encode(rgb: np.ndarray, fmt: str, quality: int) -> bytes:
    params: list[int] = []
    if fmt == "jpeg":
        params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    elif fmt == "webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, quality]
    ok, buf = cv2.imencode(_ENCODE[fmt], cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise SkipInput(f"could not encode as {fmt}")
    return buf.tobytes()


def resize(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    if rgb.shape[:2] == (height, width):
        return rgb
    shrink = height * width < rgb.shape[0] * rgb.shape[1]
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def extension(fmt: str) -> str:
    return _ENCODE[fmt]
