"""MixUp on painted scenes: each object a class of its own in its own colour (painted.py)."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
from pydantic import ValidationError

from augpipe.mixing import registry
from augpipe.recipe import BboxSpec
from augpipe.targets import kind_for
from augpipe.targets.boxes import Boxes
from painted import BACKGROUND, COLOURS, check_truth, paint

MixUp = registry()["MixUp"]
SEEDS = range(5)


def run(tiles, seed: int, bbox=None, masks: bool = True, **params):
    bbox = bbox or BboxSpec()
    mix = MixUp(MixUp.Params(**{"p": 1, **params}))
    kind = kind_for("detection", instance_masks=masks)
    return mix.apply(tiles[0], tiles[1:], np.random.default_rng(seed), random.Random(seed), kind, bbox)


@pytest.mark.parametrize("masks", [True, False])
@pytest.mark.parametrize("seed", SEEDS)
def test_the_blend_and_both_sets_of_objects(seed, masks):
    row, donor = paint(seed, 110, 150, list(range(8))), paint(seed + 50, 110, 150, list(range(8, 16)))
    a, b = row.tile(masks), donor.tile(masks)  # the same ids: the donor's must be renumbered
    out = run([a, b], seed, masks=masks)
    weight = out.record["weight"]
    assert weight == np.random.default_rng(seed).beta(32, 32)  # λ, drawn from the generator given
    expected = weight * row.image.astype(np.float64) + (1 - weight) * donor.image
    assert out.image.dtype == np.uint8 and out.image.flags.c_contiguous
    assert np.abs(out.image - expected).max() <= 0.5 + 1e-9  # the blend, rounded
    assert isinstance(out.state, Boxes) and not out.drops
    n = len(a.state.ids)
    assert np.array_equal(out.state.boxes, np.concatenate([a.state.boxes, b.state.boxes]))
    assert out.state.categories.tolist() == row.classes + donor.classes
    assert out.state.ids[:n].tolist() == a.state.ids.tolist() and len(set(out.state.ids.tolist())) == 16
    assert out.state.ids[n:].min() > a.state.ids.max()
    if masks:
        assert all(np.array_equal(m, t) for m, t in zip(out.state.masks, [*a.state.masks, *b.state.masks]))
    else:
        assert out.state.masks is None
    # each box on its colour: the blend of its colour with whatever the other image has there
    for k, c in enumerate(out.state.categories):
        x, y, w, h = out.state.boxes[k].astype(int)
        own = row if k < n else donor
        mine = (own.image[y:y + h, x:x + w] == COLOURS[c]).all(axis=2)
        assert mine.any(axis=0).all() and mine.any(axis=1).all()  # tight: every row and column


@pytest.mark.parametrize("size", [(55, 75), (220, 150), (110, 300)])
def test_a_donor_of_another_size_is_fitted_whole_and_centred(size):
    h, w = size
    row, donor = paint(1, 110, 150, list(range(6))), paint(2, h, w, list(range(6, 14)))
    out = run([row.tile(True), donor.tile(True, 200)], 7)
    x1, y1, x2, y2 = out.record["at"]
    assert (x2 - x1 == 150 or y2 - y1 == 110) and abs((x2 - x1) / (y2 - y1) - w / h) < 0.03
    assert abs((x1 + x2) / 2 - 75) <= 1 and abs((y1 + y2) / 2 - 55) <= 1
    weight = out.record["weight"]
    outside = np.ones((110, 150), bool)
    outside[y1:y2, x1:x2] = False
    assert np.array_equal(out.image[outside], row.image[outside])  # the row's own pixels around the donor
    # the donor as the blend shows it: (image − λ·row) / (1 − λ), to a few levels
    seen = (out.image[y1:y2, x1:x2] - weight * row.image[y1:y2, x1:x2].astype(np.float64)) / (1 - weight)
    assert np.abs(np.median(seen.reshape(-1, 3), axis=0) - BACKGROUND).max() <= 3
    view = np.full((110, 150, 3), BACKGROUND, np.uint8)
    view[y1:y2, x1:x2] = np.clip(np.rint(seen), 0, 255)
    check_truth(view, out.state.kept(slice(6, None)), Counter(), donor.classes, tolerance=1, blended=True, least=6)


def test_a_donor_object_scaled_to_nothing_is_dropped():
    row, donor = paint(3, 60, 60, [0]), paint(4, 300, 300, list(range(1, 7)))
    tile = donor.tile(True)
    tile.state.masks[0][:] = 0
    tile.state.masks[0][5, 5] = 1  # one pixel: a fifth of the scale leaves none
    tile.state.boxes[0] = [5, 5, 1, 1]
    out = run([row.tile(True), tile], 0, BboxSpec(min_area=2))
    assert out.drops[("mixup: too small", donor.classes[0])] == 1
    assert all(b[2] * b[3] >= 2 for b in out.state.boxes)
    assert sum(out.drops.values()) + len(out.state.ids) == 7


@pytest.mark.parametrize("masks", [True, False])
def test_scenes_without_objects(masks):
    empty, full = paint(5, 80, 80, []), paint(6, 80, 80, list(range(4)))
    for tiles, n in (([empty.tile(masks), full.tile(masks)], 4), ([full.tile(masks), empty.tile(masks)], 4),
                     ([empty.tile(masks), empty.tile(masks)], 0)):
        out = run(tiles, 1, masks=masks)
        assert len(out.state.ids) == n and (out.state.masks is not None) == masks and out.image.shape == (80, 80, 3)


def test_masks_in_the_row_boxes_in_the_donor():
    row, donor = paint(7, 80, 100, list(range(3))), paint(8, 80, 100, list(range(3, 6)), rects_only=True)
    out = run([row.tile(True), donor.tile(False, 50)], 2)
    assert len(out.state.masks) == 6
    for k in range(3, 6):
        x, y, w, h = out.state.boxes[k].astype(int)
        assert out.state.masks[k].sum() == w * h == out.state.masks[k][y:y + h, x:x + w].sum()


def test_same_seeds_same_blend():
    row, donor = paint(9, 90, 90, list(range(4))), paint(10, 120, 70, list(range(4, 8)))
    outs = [run([row.tile(True), donor.tile(True)], 11, alpha=0.7) for _ in range(2)]
    assert np.array_equal(outs[0].image, outs[1].image) and outs[0].record == outs[1].record
    assert np.array_equal(outs[0].state.boxes, outs[1].state.boxes)


def test_alpha():
    assert MixUp.Params().alpha == 32
    weights = [run([paint(0, 20, 20, []).tile(False)] * 2, s, masks=False).record["weight"] for s in range(50)]
    assert 0.3 < min(weights) and max(weights) < 0.7  # Beta(32, 32): both images plainly visible
    for bad in ({"alpha": 0}, {"alpha": -1}, {"beta": 1}):
        with pytest.raises(ValidationError):
            MixUp.Params.model_validate(bad)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_objects_of_an_image_blended_in_too_faintly_are_dropped(seed):
    row, donor = paint(seed, 90, 120, list(range(5))), paint(seed + 50, 90, 120, list(range(5, 10)))
    out = run([row.tile(True), donor.tile(True)], seed, alpha=0.02)  # λ all but 0 or 1
    weight = out.record["weight"]
    faint, shown = (row, donor) if weight < 0.2 else (donor, row)
    assert min(weight, 1 - weight) < 0.2
    assert out.state.categories.tolist() == shown.classes
    assert out.drops == Counter({("mixup: faint", c): 1 for c in faint.classes})
    assert out.state.dropped == len(faint.classes)
