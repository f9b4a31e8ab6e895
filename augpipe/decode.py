"""Bytes to an 8-bit RGB array and back: the only place that decodes or encodes images."""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from augpipe.errors import SkipInput

# augpipe checks the pixel count itself, against --max-pixels, from the header alone.
Image.MAX_IMAGE_PIXELS = None

SUPPORTED_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_FORMATS = {"JPEG": "jpeg", "PNG": "png", "BMP": "bmp", "WEBP": "webp", "TIFF": "tiff", "MPO": "jpeg"}
_ENCODE = {"jpeg": ".jpg", "png": ".png", "webp": ".webp"}


@dataclass(frozen=True)
class Decoded:
    rgb: np.ndarray  # H×W×3 uint8, EXIF orientation applied
    format: str  # jpeg, png, bmp, webp, tiff
    conversion: str | None  # what was done to reach 8-bit RGB, for the summary
    oriented: bool  # EXIF orientation rotated or flipped the pixels


def decode(data: bytes, max_pixels: int) -> Decoded:
    if not data:
        raise SkipInput("empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            width, height = im.size
            fmt, mode, info = im.format, im.mode, dict(im.info)
            orientation = _orientation(im)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise SkipInput("not a readable image (unknown format or corrupt header)") from None
    if width * height > max_pixels:
        raise SkipInput(f"too large: {width}×{height} = {width * height:,} pixels, over --max-pixels {max_pixels:,}")
    if fmt not in _FORMATS:
        raise SkipInput(f"unsupported image format {fmt}")
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if pixels is None:
        raise SkipInput("corrupt or truncated image data")
    rgb, conversion = _to_rgb8(pixels, mode, info)
    return Decoded(rgb=rgb, format=_FORMATS[fmt], conversion=conversion, oriented=orientation not in (None, 1))


def _orientation(im: Image.Image) -> int | None:
    try:
        return im.getexif().get(0x0112)
    except Exception:  # a broken EXIF block is no reason to lose the image
        return None


def _to_rgb8(pixels: np.ndarray, mode: str, info: dict) -> tuple[np.ndarray, str | None]:
    notes = []
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
        notes.append("16-bit")
    elif pixels.dtype != np.uint8:
        raise SkipInput(f"unsupported pixel type {pixels.dtype}")
    if pixels.ndim == 2:
        rgb = cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB)
        notes.append("grayscale")
    elif pixels.shape[2] == 4:
        rgb = cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGB)
    else:
        rgb = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    if "A" in mode or (mode == "P" and "transparency" in info):
        notes.append("alpha dropped")
    elif mode == "P":
        notes.append("palette")
    elif mode == "CMYK":
        notes.append("CMYK")
    if mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F") and "grayscale" not in notes:
        notes.append("grayscale")
    return rgb, (", ".join(notes) if notes else None)


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
