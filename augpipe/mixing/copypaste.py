"""CopyPaste (Ghiasi et al., "Simple Copy-Paste is a Strong Data Augmentation Method for Instance
Segmentation", CVPR 2021): a random subset of each donor's objects, cut out by their instance
masks, pasted onto the row's image with their boxes and masks. The objects under a paste lose the
pixels it covers: their masks shrink and their boxes are recomputed from what stays visible; an
object left with nothing is dropped ("copypaste: hidden"), one whose visible share falls under
the recipe's min_visibility, or whose box falls under min_area, min_width or min_height, too.

An object with no instance mask (a dataset without them) is cut by its box's rectangle: the
paste brings the donor's background inside the box with it, and the row's objects are judged on
the part of their rectangles left uncovered.

A larger donor is scaled down to fit inside the row's frame, its aspect kept, and centred; a
smaller one keeps its size, centred (`objects.fitted`): the paper pastes objects where they were
in the donor's frame (both images jittered to one size first), and this keeps every object whole,
undistorted and never blown up (after a Mosaic, the row's image is larger than any donor); the
transforms the recipe runs on the donor before the step give the jitter. Crowd regions (COCO's iscrowd) are
never pasted: they are no single object.
"""

from __future__ import annotations

import random
from collections import Counter

import cv2
import numpy as np
from pydantic import Field

from augpipe.mixing.base import Mix, Mixed, MixParams, Tile
from augpipe.mixing.objects import areas, counted, fitted, fresh_ids, joined, judged, masks_of
from augpipe.targets.boxes import Boxes, _large_enough, mask_extent


class CopyPasteParams(MixParams):
    """`donors`: how many images the objects come from, pasted in turn (a later one over an earlier).
    `objects`: how many of a donor's objects to paste, at most; None (the default) is the paper's
    random subset: a size drawn uniformly from 1 to all of them, then that many at random, so that
    a row gets anywhere from one extra object to a crowded scene. `rare_classes`: donors drawn
    with weights toward images holding rare classes (repeat factors). `blend`: the sigma, in
    pixels, of a Gaussian that softens a paste's edge inward (the masks stay as they are); 0, the
    default, pastes hard edges, which the paper found as good as blending."""

    donors: int = Field(1, ge=1, le=16)
    objects: int | None = Field(None, ge=1)
    rare_classes: bool = False
    blend: float = Field(0.0, ge=0, le=32)


class CopyPaste(Mix):
    """Objects of donors pasted onto the row's image (see the module)."""

    name = "CopyPaste"
    kinds = ("detection",)
    Params = CopyPasteParams

    def donors(self) -> int:
        return self.params.donors

    def needs_objects(self) -> bool:
        return True

    def rare_weighted(self) -> bool:
        return self.params.rare_classes

    def apply(self, primary: Tile, donors: list[Tile], rng: np.random.Generator, py_rng: random.Random,
              kind, bbox_params) -> Mixed:
        height, width = primary.image.shape[:2]
        image = primary.image.copy()
        layers = [_Layer(primary.state, (height, width))]
        record = []
        for k, donor in enumerate(donors, start=1):
            canvas, state, at, scale = fitted(donor, height, width, grow=False)
            chosen = self._chosen(state, bbox_params, rng)
            pasted = state.kept(chosen)
            pasted.ids = fresh_ids(np.concatenate([layer.state.ids for layer in layers]), len(chosen))
            record.append({"donor": k, "objects": state.ids[chosen].tolist(), "ids": pasted.ids.tolist(),
                           "at": at, "scale": scale})
            if not len(chosen):
                continue
            layer = _Layer(pasted, (height, width))
            cover = np.any(layer.masks, axis=0)
            image = _pasted(image, canvas, cover, self.params.blend)
            for below in layers:
                below.covered_by(cover)
            layers.append(layer)
        state, drops = _visible(layers, primary.state.masks is not None, (height, width), bbox_params)
        return Mixed(image, state, {"pasted": record}, drops)

    def _chosen(self, state: Boxes, bbox_params, rng: np.random.Generator) -> np.ndarray:
        """The donor's objects to paste, in its own order: a random subset of those with pixels to
        paste, no crowd region, and a box the recipe keeps."""
        area, crowd = areas(state), state.crowd()
        fit = [k for k in range(len(state.ids))
               if area[k] > 0 and crowd[k] == 0 and _large_enough(state.boxes[k], bbox_params)]
        if not fit:
            return np.zeros(0, np.int64)
        wanted = self.params.objects
        count = int(rng.integers(1, len(fit) + 1)) if wanted is None else min(wanted, len(fit))
        return np.sort(rng.choice(np.array(fit), count, replace=False))


class _Layer:
    """The objects one paste (or the row itself) brought, as pixel masks, and what of them a later
    paste covered."""

    def __init__(self, state: Boxes, shape: tuple[int, int]):
        self.state = state
        self.masks = np.array(masks_of(state, shape), np.uint8).reshape(-1, *shape)
        self.whole = self.masks.sum(axis=(1, 2), dtype=np.float64)
        self.touched = np.zeros(len(self.masks), bool)

    def covered_by(self, cover: np.ndarray) -> None:
        hit = (self.masks & cover).any(axis=(1, 2))
        self.masks[hit] &= ~cover
        self.touched |= hit


def _pasted(image: np.ndarray, canvas: np.ndarray, cover: np.ndarray, blend: float) -> np.ndarray:
    """The donor's pixels under `cover` over the image; with `blend`, an edge softened inward."""
    if blend <= 0:
        out = image.copy()
        out[cover] = canvas[cover]
        return out
    alpha = np.minimum(cv2.GaussianBlur(cover.astype(np.float32), (0, 0), blend), cover)[..., None]
    return np.rint(alpha * canvas + (1 - alpha) * image).astype(np.uint8)


def _visible(layers: list[_Layer], with_masks: bool, shape: tuple[int, int], bbox_params) -> tuple[Boxes, Counter]:
    """Every layer's objects with what is left of them: a covered object's box the extent of its
    visible pixels; and the objects dropped, by (reason, category)."""
    state = joined([layer.state for layer in layers], with_masks, shape)
    masks = [m for layer in layers for m in layer.masks]
    touched = np.concatenate([layer.touched for layer in layers])
    whole = np.concatenate([layer.whole for layer in layers])
    visible = np.array([float(np.count_nonzero(m)) for m in masks])
    # an object no paste touched keeps its box and its area (a box under a pixel has no pixel)
    visible[~touched] = whole[~touched] = areas(state)[~touched]
    for k in np.flatnonzero(touched):
        extent = mask_extent(masks[k])
        state.boxes[k] = (0, 0, 0, 0) if extent is None else extent
    if with_masks:
        state.masks = masks
        state.shaped = visible > 0
    keep, drops = judged("copypaste", "hidden", state, visible, whole, bbox_params)
    return counted(state.kept(keep), drops), drops


MIX = CopyPaste
