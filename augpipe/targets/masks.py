"""Mask PNGs, the one place they are decoded and encoded: semantic masks (class indices, mode L
or P with the source's palette) and instance masks (mode L, 255 inside). Read with PIL: OpenCV
expands palette PNGs into colours even with IMREAD_UNCHANGED."""

from __future__ import annotations

import io

import numpy as np

from augpipe.errors import SkipInput


def read_mask(data: bytes, name: str) -> tuple[np.ndarray, bytes | None]:
    """Class indices as stored (a palette PNG's indices, not its colours), and the palette."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            palette = bytes(im.getpalette() or []) if im.mode == "P" else None
            if im.mode in ("P", "L"):
                mask = np.asarray(im, dtype=np.uint8)
            elif im.mode in ("1", "I", "I;16", "I;16B", "I;16L"):
                values = np.asarray(im)
                low, high = int(values.min(initial=0)), int(values.max(initial=0))
                if low < 0 or high > 255:  # a 32-bit −2 would wrap to 254, another class
                    raise SkipInput(f"mask {name} has values outside 0..255 ({low}..{high})")
                mask = values.astype(np.uint8)
            else:
                raise SkipInput(f"mask {name} is {im.mode}, not class indices (mode L or P)")
    except (UnidentifiedImageError, OSError, ValueError):
        raise SkipInput(f"mask {name} is not a readable image") from None
    return np.ascontiguousarray(mask), palette


def write_mask(mask: np.ndarray, palette: bytes | None) -> bytes:
    from PIL import Image

    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    im = Image.frombytes("P" if palette else "L", (mask.shape[1], mask.shape[0]), mask.tobytes())
    if palette:
        im.putpalette(palette)
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=1)  # a third of level 6's time; masks are small either way
    return buf.getvalue()


def read_instance_mask(data: bytes) -> np.ndarray:
    """An instance mask as uint8 0/1 (H, W)."""
    return (read_mask(data, "instance mask")[0] > 0).astype(np.uint8)


def write_instance_mask(mask: np.ndarray) -> bytes:
    """An instance mask as a grey PNG, 255 inside (viewable as it is), 0 outside."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.where(np.asarray(mask) > 0, 255, 0).astype(np.uint8), "L").save(buf, "PNG", compress_level=1)
    return buf.getvalue()
