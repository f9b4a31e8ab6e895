"""What the detection steps share: objects as pixel masks, a donor fitted into the row's frame,
new ids for donors' objects, and the recipe's bbox_params judged on each object's visible part."""

from __future__ import annotations

import math
from collections import Counter

import cv2
import numpy as np

from augpipe.mixing.base import Tile
from augpipe.targets.boxes import Boxes, _large_enough, mask_extent


def box_mask(box, shape: tuple[int, int]) -> np.ndarray:
    """A COCO box as a mask: the pixels whose centres lie inside it (as `fill_polygon` fills it)."""
    x, y, w, h = box
    mask = np.zeros(shape, np.uint8)
    rows = slice(max(math.ceil(y - 0.5), 0), max(math.ceil(y + h - 0.5), 0))
    cols = slice(max(math.ceil(x - 0.5), 0), max(math.ceil(x + w - 0.5), 0))
    mask[rows, cols] = 1
    return mask


def masks_of(state: Boxes, shape: tuple[int, int]) -> list[np.ndarray]:
    """Each object's mask; an object of a state without masks, its box's pixels."""
    if state.masks is not None:
        return [np.asarray(m, np.uint8) for m in state.masks]
    return [box_mask(b, shape) for b in state.boxes]


def areas(state: Boxes) -> np.ndarray:
    """Each object's area: its mask's pixels, or its box's when the state has no masks."""
    if state.masks is not None:
        return np.array([float(np.count_nonzero(m)) for m in state.masks])
    return state.boxes[:, 2] * state.boxes[:, 3] if len(state.boxes) else np.zeros(0)


def fresh_ids(taken: np.ndarray, count: int) -> np.ndarray:
    """`count` ids after every id in `taken` (a donor's objects, renumbered to be unique in the row)."""
    start = int(np.max(taken)) + 1 if len(taken) else 0
    return np.arange(start, start + count, dtype=np.int64)


def joined(states: list[Boxes], with_masks: bool, shape: tuple[int, int]) -> Boxes:
    """The objects of several states (on one frame) as one: masks when `with_masks` (an object
    without one gets its box's pixels), else none."""
    masks = [m for s in states for m in masks_of(s, shape)] if with_masks else None
    shaped = np.concatenate([np.ones(len(s.ids), bool) if s.shaped is None else s.shaped for s in states]) \
        if with_masks else None
    crowd = None if all(s.iscrowd is None for s in states) else np.concatenate([s.crowd() for s in states])
    return Boxes(np.concatenate([s.boxes.reshape(-1, 4) for s in states]).astype(np.float64),
                 np.concatenate([s.categories for s in states]).astype(np.int64),
                 np.concatenate([s.ids for s in states]).astype(np.int64), masks, shaped=shaped, iscrowd=crowd)


def fitted(tile: Tile, height: int, width: int, grow: bool = True) -> tuple[np.ndarray, Boxes, list[int], float]:
    """A donor scaled to fit inside a height×width frame, its aspect kept, and centred: its image on
    the frame (black around it), its objects moved with it (a masked object's box its mask's extent),
    where it lies [x1, y1, x2, y2] and its scale. No object is cut; one may shrink to no pixel.
    `grow=False`: a smaller donor keeps its size (its objects are not blown up)."""
    h, w = tile.image.shape[:2]
    scale = min(height / h, width / w)
    scale = scale if grow else min(scale, 1.0)
    nh, nw = min(max(1, round(h * scale)), height), min(max(1, round(w * scale)), width)
    x0, y0 = (width - nw) // 2, (height - nh) // 2
    at = [x0, y0, x0 + nw, y0 + nh]
    image = np.zeros((height, width, 3), np.uint8)
    image[y0:y0 + nh, x0:x0 + nw] = _resized(tile.image, nw, nh, cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    state = tile.state
    boxes = state.boxes.reshape(-1, 4) * [nw / w, nh / h, nw / w, nh / h] + [x0, y0, 0, 0]
    masks = None
    if state.masks is not None:
        masks = []
        for k, m in enumerate(state.masks):
            placed = np.zeros((height, width), np.uint8)
            placed[y0:y0 + nh, x0:x0 + nw] = _resized(np.asarray(m, np.uint8), nw, nh, cv2.INTER_NEAREST)
            extent = mask_extent(placed)
            if extent is not None and (state.shaped is None or state.shaped[k]):
                boxes[k] = extent
            masks.append(placed)
    moved = Boxes(boxes, state.categories, state.ids, masks, shaped=state.shaped, iscrowd=state.iscrowd)
    return image, moved, at, scale


def _resized(array: np.ndarray, width: int, height: int, interpolation: int) -> np.ndarray:
    if array.shape[:2] == (height, width):
        return array
    return cv2.resize(array, (width, height), interpolation=interpolation)


def counted(state: Boxes, drops: Counter) -> Boxes:
    """The state, its `dropped` every object the step dropped."""
    state.dropped = sum(drops.values())
    return state


def judged(step: str, gone: str, state: Boxes, visible: np.ndarray, whole: np.ndarray,
           bbox_params) -> tuple[np.ndarray, Counter]:
    """Which objects stay, by their visible part (`state.boxes`, `visible` its area, `whole` the
    area the object would show uncut, on the same scale), and the others counted by (reason,
    category): nothing left (`gone`), a share under min_visibility, a box under min_area,
    min_width or min_height. A box of no width or height (to the thousandth of a pixel the row is
    written with) is nothing left."""
    keep = np.ones(len(state.ids), bool)
    drops: Counter = Counter()
    for k, box in enumerate(state.boxes):
        # to a millionth: albumentations' float32 round trip leaves 0.4999999 of a box cut in half
        share = round(visible[k] / whole[k], 6) if whole[k] > 0 else 1.0
        if visible[k] <= 0 or round(box[2], 3) <= 0 or round(box[3], 3) <= 0:
            reason = gone
        elif bbox_params is not None and share < bbox_params.min_visibility:
            reason = "below min_visibility"
        elif not _large_enough(box, bbox_params):
            reason = "too small"
        else:
            continue
        keep[k] = False
        drops[(f"{step}: {reason}", int(state.categories[k]))] += 1
    return keep, drops
