"""Painted scenes for the multi-image steps: every object a class of its own, drawn in its class's
flat colour on a neutral grey, so that the truth (an object's pixels, its extent) is read off the
picture, never from augpipe."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

import cv2
import numpy as np

from augpipe.mixing import Tile
from augpipe.targets.boxes import Boxes

BACKGROUND = (128, 128, 128)


def _apart(colour, chosen) -> bool:
    """No colour on the way from the grey to another (a linear interpolation's edge pixel of one
    would pass for the other)."""
    for a, b in ((colour, c) for c in chosen):
        for one, other in ((a, b), (b, a)):
            towards, away = np.subtract(one, BACKGROUND), np.subtract(other, BACKGROUND)
            t = towards @ away / (away @ away)
            if 0.05 < t < 1.2 and np.linalg.norm(towards - t * away) < 24:
                return False
    return True


# every class's colour: mixes of 0, 64, 192, 255, no grey, none on the way from the grey to another
COLOURS: list[tuple[int, int, int]] = []
for _c in itertools.product((0, 64, 192, 255), repeat=3):
    if len(set(_c)) > 1 and _apart(_c, COLOURS):
        COLOURS.append(_c)


@dataclass
class Painted:
    image: np.ndarray
    classes: list[int]  # each object's class, in the order drawn

    def state(self, masks: bool, first_id: int = 100) -> Boxes:
        """The objects as drawn: each box the extent of its colour's pixels, its mask those pixels."""
        drawn = [pixels(self.image, c) for c in self.classes]
        boxes = np.array([extent(m) for m in drawn], np.float64).reshape(-1, 4)
        return Boxes(boxes, np.array(self.classes, np.int64), np.arange(first_id, first_id + len(drawn)),
                     [m.astype(np.uint8) for m in drawn] if masks else None)

    def tile(self, masks: bool, first_id: int = 100) -> Tile:
        return Tile(self.image.copy(), self.state(masks, first_id))


def paint(seed: int, height: int, width: int, classes: list[int], rects_only: bool = False) -> Painted:
    """Rectangles and discs (every other one), of sizes from 4 px to a third of the image, some
    flush with an edge, none touching another (a pixel of grey between)."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), BACKGROUND, np.uint8)
    taken = np.zeros((height, width), bool)
    for n, c in enumerate(classes):
        for _ in range(200):
            shape = np.zeros((height, width), np.uint8)
            size = int(rng.integers(4, max(5, min(height, width) // 3)))
            x = int(rng.choice([0, width - size, *rng.integers(0, width - size + 1, 3)]))
            y = int(rng.choice([0, height - size, *rng.integers(0, height - size + 1, 3)]))
            if n % 2 == 0 or rects_only:
                shape[y:y + size, x:x + int(rng.integers(max(2, size // 2), size + 1))] = 1
            else:
                cv2.circle(shape, (x + size // 2, y + size // 2), size // 2, 1, -1)
            if not (cv2.dilate(shape, np.ones((3, 3), np.uint8)).astype(bool) & taken).any():
                break
        taken |= shape.astype(bool)
        image[shape.astype(bool)] = COLOURS[c]
    return Painted(image, list(classes))


def pixels(image: np.ndarray, c: int, blended: bool = False) -> np.ndarray:
    """The pixels of class c's colour; `blended`: also those an interpolation mixed of it and the
    grey, at least half of it."""
    colour = np.array(COLOURS[c], np.float64)
    if not blended:
        return (image == colour.astype(np.uint8)).all(axis=2)
    towards, away = image.astype(np.float64) - BACKGROUND, colour - BACKGROUND
    t = towards @ away / (away @ away)
    off = np.linalg.norm(towards - t[..., None] * away, axis=2)
    return (t >= 0.5) & (off <= 12)


def extent(mask: np.ndarray) -> list[float] | None:
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()), float(ys.max() + 1 - ys.min())]


def _corners(box) -> np.ndarray:
    x, y, w, h = box
    return np.array([x, y, x + w, y + h])


def check_truth(image: np.ndarray, state: Boxes, drops: Counter, classes: list[int], tolerance: float = 0,
                blended: bool = False, least: int = 4) -> None:
    """Every box lies on its object, tight to its colour's extent (within `tolerance` px), never
    of no size; every mask is its colour's pixels (exactly, or within a pixel of their edge); every
    colour showing more than `least` pixels has its object, or was counted as dropped. `blended`:
    an image interpolated linearly, an object's pixels those at least half its colour."""
    dropped = Counter(c for _, c in drops.elements())
    for k, c in enumerate(state.categories):
        box, blob = state.boxes[k], pixels(image, int(c), blended)
        assert box[2] > 0 and box[3] > 0, (c, box)
        truth = extent(blob)
        assert truth is not None, f"class {c}: a box {box} on no pixel of its colour"
        edges = np.abs(_corners(box) - _corners(truth))
        assert edges.max() <= tolerance + 1e-3, (c, box.tolist(), truth)  # float32 round trips
        if state.masks is not None:
            mask = state.masks[k].astype(bool)
            if not blended:
                assert (mask == blob).all(), (c, int((mask != blob).sum()))
            else:
                near = np.ones((3, 3), np.uint8)
                assert not (blob & ~cv2.dilate(mask.astype(np.uint8), near).astype(bool)).any(), c
                assert not (mask & ~cv2.dilate(blob.astype(np.uint8), near).astype(bool)).any(), c
    shown = Counter(int(c) for c in state.categories)
    for c in classes:
        showing = pixels(image, c, blended).sum()
        if showing > least:
            assert shown[c] or dropped[c], f"class {c}: {showing} pixels showing, no box, no drop"
