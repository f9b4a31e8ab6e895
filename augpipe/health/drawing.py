"""The pictures of a health report: an image the report names, with its labels drawn by its kind
and the object a problem names ringed in red."""

from __future__ import annotations

import numpy as np


def source_picture(health, path: str, k: int | None) -> np.ndarray | None:
    """A source image with its labels as expand would load them (where they do not load, none but
    the ring, from the annotation as given); None when it does not decode."""
    import dataclasses

    from augpipe.decode import decode
    from augpipe.errors import SkipInput
    from augpipe.formats.base import Objects, is_image
    from augpipe.health import loaded
    from augpipe.options import DEFAULT_MAX_PIXELS
    from augpipe.sample import SourceItem
    from augpipe.store import read_source

    if not is_image(path):
        return None
    kind, f = health.kind, next((f for f in health.scan.files if f.relpath == path), None)
    try:
        data = read_source(health.store, path)
        if f is None:
            return decode(data, DEFAULT_MAX_PIXELS).rgb
        extra = _extra(health.store, kind.extra_files(SourceItem(f.relpath, None, (), target=f.target)))
        decoded, state, _ = loaded(data, f, kind, DEFAULT_MAX_PIXELS, extra)
    except SkipInput:
        return None
    rgb = decoded.rgb
    drawn = kind.draw(rgb, kind.values(state, rgb), health.scan.classes) if state is not None else rgb
    if k is None or not isinstance(f.target, Objects) or k >= len(f.target.boxes):
        return drawn
    return ringed(drawn, dataclasses.replace(f.target, canvas=(rgb.shape[1], rgb.shape[0])).xywh()[k])


def _extra(store, names: tuple[str, ...]) -> bytes | None:
    """The file a target needs beside its image (a mask), or None when it does not read."""
    from augpipe.errors import SkipInput
    from augpipe.store import read_source

    try:
        return next((read_source(store, n) for n in names), None)
    except SkipInput:
        return None


def row_picture(kind, row: dict, classes: list[str], k: int | None) -> np.ndarray | None:
    """A row's image with its target drawn, object k of its boxes ringed."""
    from augpipe.decode import row_image

    try:
        rgb = row_image((row.get("image") or {}).get("bytes") or b"")
    except ValueError:
        return None
    drawn = kind.draw(rgb, row, classes)
    boxes = (row.get("objects") or {}).get("bbox") or []
    return ringed(drawn, boxes[k]) if k is not None and k < len(boxes) else drawn


def ringed(rgb: np.ndarray, box) -> np.ndarray:
    """A red ring around a COCO [x, y, w, h] box in pixels (clipped to show), at least a twentieth
    of the image across, so that a tiny box shows on a thumbnail."""
    import cv2

    h, w = rgb.shape[:2]
    x, y, bw, bh = (float(v) for v in box)
    least = max(h, w) / 20
    if bw < least or bh < least:
        cx, cy = x + bw / 2, y + bh / 2
        bw, bh = max(bw, least), max(bh, least)
        x, y = cx - bw / 2, cy - bh / 2
    out = np.ascontiguousarray(rgb).copy()
    p0 = (int(min(max(x, 0), w - 1)), int(min(max(y, 0), h - 1)))
    p1 = (int(min(max(x + bw, 0), w - 1)), int(min(max(y + bh, 0), h - 1)))
    cv2.rectangle(out, p0, p1, (255, 0, 0), max(2, round(max(h, w) / 100)))
    return out
