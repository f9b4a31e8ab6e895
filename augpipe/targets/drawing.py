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
    for box, c in zip(boxes, categories):
        x, y, w, h = (float(v) * scale for v in box)
        p0, p1 = (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h)))
        cv2.rectangle(out, p0, p1, colour(int(c)), thickness, cv2.LINE_AA)
        name = drawable(classes[int(c)] if 0 <= int(c) < len(classes) else str(int(c)))
        size = max(0.3, side / 350)
        (tw, th), _ = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, size, 1)
        top = max(p0[1], th + 2)
        cv2.rectangle(out, (p0[0], top - th - 2), (p0[0] + tw + 2, top), colour(int(c)), -1)
        cv2.putText(out, name, (p0[0] + 1, top - 2), cv2.FONT_HERSHEY_SIMPLEX, size, (255, 255, 255), 1, cv2.LINE_AA)
    return out
