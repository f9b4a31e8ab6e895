"""Drawing targets on preview tiles: boxes with class names, masks as translucent colour."""

from __future__ import annotations

import cv2
import numpy as np

# Distinct colours (Tableau 10), one a class, cycling
PALETTE = np.array([(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)], np.uint8)
ALPHA = 0.45


_SPELLED = str.maketrans({"×": "x", "≤": "<=", "≥": ">=", "−": "-", "–": "-", "—": "-", "→": "->", "…": "...",
                          "·": ".", "’": "'", "‘": "'", "“": '"', "”": '"', "ß": "ss", "æ": "ae", "ø": "o"})


def drawable(text: str) -> str:
    """Text in the ASCII that OpenCV's Hershey fonts draw: signs spelled out (× x, ≤ <=), accents
    dropped (grün: grun), anything else '?' (OpenCV's own drew '?' for each: `width ? 0` read as
    the opposite of `width ≤ 0`)."""
    import unicodedata

    spelled = unicodedata.normalize("NFKD", text.translate(_SPELLED))
    return "".join(c for c in spelled if not unicodedata.combining(c)).encode("ascii", "replace").decode()


def colour(index: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in PALETTE[index % len(PALETTE)])


def overlay(rgb: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Each pixel with a class (>= 0) tinted with its class's colour, each region outlined."""
    out = rgb.copy()
    where = classes >= 0
    if not where.any():
        return out
    tint = PALETTE[classes[where] % len(PALETTE)].astype(np.float32)
    out[where] = (out[where] * (1 - ALPHA) + tint * ALPHA).astype(np.uint8)
    thickness = max(1, round(max(out.shape[:2]) / 160))
    for c in np.unique(classes[where]):
        contours, _ = cv2.findContours((classes == c).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, colour(int(c)), thickness, cv2.LINE_AA)
    return out


def draw_boxes(rgb: np.ndarray, boxes, categories, classes: list[str], scale: float = 1.0) -> np.ndarray:
    """Rectangles and class names; `scale` maps the boxes' pixels to the drawn image's."""
    out = np.ascontiguousarray(rgb).copy()
    side = max(out.shape[:2])  # about a pixel, and a readable name, once the tile is 128 px wide
    thickness = max(1, round(side / 128))
    corners = []
    for box, c in zip(boxes, categories):
        x, y, w, h = (float(v) * scale for v in box)
        p0, p1 = (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h)))
        cv2.rectangle(out, p0, p1, colour(int(c)), thickness, cv2.LINE_AA)
        corners.append((p0, int(c)))
    placed: list[tuple[int, int, int, int]] = []
    for p0, c in corners:  # the names over every box, none over another name (two made "cicat")
        name = drawable(classes[c] if 0 <= c < len(classes) else str(c))
        size = max(0.3, side / 350)
        (tw, th), _ = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, size, 1)
        left, top = _label_place(p0, tw + 2, th + 2, out.shape, placed)
        placed.append((left, top - th - 2, left + tw + 2, top))
        if top - th - 2 > p0[1]:  # moved down past other names, off its box's corner: a line to it
            cv2.line(out, p0, (left, top - th - 2), colour(c), 1, cv2.LINE_AA)
        cv2.rectangle(out, (left, top - th - 2), (left + tw + 2, top), colour(c), -1)
        cv2.putText(out, name, (left + 1, top - 2), cv2.FONT_HERSHEY_SIMPLEX, size, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _label_place(corner: tuple[int, int], width: int, height: int, shape, placed: list) -> tuple[int, int]:
    """(left, bottom) of a box's name: on its top edge, inside the picture (a name cut at its right
    edge read "ca"), moved down a line at a time past the names placed before, where that fits."""
    left = max(0, min(corner[0], shape[1] - width))
    first = max(corner[1], height)
    for top in range(first, shape[0] + 1, height + 1):
        if not any(left < r and top - height < b and left + width > lft and top > t for lft, t, r, b in placed):
            return left, top
    return left, first
