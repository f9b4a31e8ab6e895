"""CopyPaste on painted scenes: each object a class of its own in its own colour (painted.py)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from pydantic import ValidationError

from augpipe.mixing import Tile, registry
from augpipe.recipe import BboxSpec
from augpipe.targets import kind_for
from augpipe.targets.boxes import Boxes
from painted import COLOURS, check_truth, paint, pixels

CopyPaste = registry()["CopyPaste"]
SEEDS = range(5)


def step(**params):
    return CopyPaste(CopyPaste.Params(**{"p": 1, **params}))


def run(mix, tiles, seed: int, bbox=None, masks: bool = True):
    bbox = bbox or BboxSpec()
    kind = kind_for("detection", instance_masks=masks)
    return mix.apply(tiles[0], tiles[1:], np.random.default_rng(seed), random.Random(seed), kind, bbox)


@pytest.mark.parametrize("masks", [True, False])
@pytest.mark.parametrize("seed", SEEDS)
def test_every_box_lies_on_its_object_and_every_object_has_its_box(seed, masks):
    # the row and two donors of its size: nothing is scaled, every check is exact
    painted = [paint(seed * 10 + k, 120, 160, list(range(k * 8, k * 8 + 8)), rects_only=not masks) for k in range(3)]
    out = run(step(donors=2), [p.tile(masks, 100 * (k + 1)) for k, p in enumerate(painted)], seed, masks=masks)
    assert out.image.shape == (120, 160, 3) and out.image.dtype == np.uint8 and out.image.flags.c_contiguous
    assert isinstance(out.state, Boxes) and (out.state.masks is not None) == masks
    check_truth(out.image, out.state, out.drops, list(range(24)))
    assert len(set(out.state.ids.tolist())) == len(out.state.ids)
    assert {reason for reason, _ in out.drops} <= {"copypaste: hidden"}
    for (_, c), n in out.drops.items():  # a hidden object shows no pixel
        assert n == 1 and not pixels(out.image, c).any()
    pasted = out.record["pasted"]
    assert [p["donor"] for p in pasted] == [1, 2] and all(p["objects"] for p in pasted)
    for entry, p in zip(pasted, painted[1:]):
        for old, new in zip(entry["objects"], entry["ids"]):
            category = p.classes[old - 100 * entry["donor"] - 100]
            assert new not in set(p.tile(masks).state.ids.tolist()) or new > 300
            if new in out.state.ids:
                assert out.state.categories[list(out.state.ids).index(new)] == category
    # the row's objects stay, but those the pastes hid
    row = set(painted[0].classes)
    assert row - set(out.state.categories.tolist()) == {c for _, c in out.drops if c in row}


def scene(masks: bool):
    """The row: A (class 0) at 20..40 × 20..40, B (class 1) at 60..80 × 20..40. The donor: P (class
    2) covering all of A, Q (class 3) the left half of B."""
    row = np.full((100, 120, 3), 128, np.uint8)
    row[20:40, 20:40], row[20:40, 60:80] = COLOURS[0], COLOURS[1]
    donor = np.full((100, 120, 3), 128, np.uint8)
    donor[15:45, 15:45], donor[10:50, 55:70] = COLOURS[2], COLOURS[3]

    def state(boxes, classes):
        mask = [_rect(b) for b in boxes] if masks else None
        return Boxes(np.array(boxes, np.float64), np.array(classes), np.array(classes) + 1, mask)

    return [Tile(row, state([[20, 20, 20, 20], [60, 20, 20, 20]], [0, 1])),
            Tile(donor, state([[15, 15, 30, 30], [55, 10, 15, 40]], [2, 3]))]


def _rect(box) -> np.ndarray:
    x, y, w, h = box
    mask = np.zeros((100, 120), np.uint8)
    mask[y:y + h, x:x + w] = 1
    return mask


@pytest.mark.parametrize("masks", [True, False])
def test_a_covered_object_is_dropped_and_a_half_covered_one_reduced(masks):
    out = run(step(objects=2), scene(masks), 0, masks=masks)
    assert sorted(out.state.categories.tolist()) == [1, 2, 3]
    assert out.drops == {("copypaste: hidden", 0): 1}
    b = list(out.state.categories).index(1)
    assert out.state.boxes[b].tolist() == [70, 20, 10, 20]
    if masks:
        assert np.array_equal(out.state.masks[b], _rect([70, 20, 10, 20]))
    check_truth(out.image, out.state, out.drops, [0, 1, 2, 3])
    assert out.record["pasted"] == [{"donor": 1, "objects": [3, 4], "ids": [3, 4], "at": [0, 0, 120, 100],
                                     "scale": 1.0}]


@pytest.mark.parametrize("masks", [True, False])
def test_an_object_under_min_visibility_is_dropped(masks):
    out = run(step(objects=2), scene(masks), 0, BboxSpec(min_visibility=0.6), masks)
    assert sorted(out.state.categories.tolist()) == [2, 3]
    assert out.drops == {("copypaste: hidden", 0): 1, ("copypaste: below min_visibility", 1): 1}
    out = run(step(objects=2), scene(masks), 0, BboxSpec(min_width=12), masks)
    assert out.drops == {("copypaste: hidden", 0): 1, ("copypaste: too small", 1): 1}


@pytest.mark.parametrize("size", [(60, 80), (200, 150), (240, 320)])
def test_a_donor_of_another_size_is_fitted_whole_and_never_blown_up(size):
    h, w = size
    row = paint(1, 120, 160, list(range(6)))
    donor = paint(2, h, w, list(range(6, 14)))
    out = run(step(), [row.tile(True), donor.tile(True, 200)], 3)
    entry = out.record["pasted"][0]
    x1, y1, x2, y2 = entry["at"]
    if h <= 120 and w <= 160:  # a smaller donor keeps its size
        assert (x2 - x1, y2 - y1, entry["scale"]) == (w, h, 1.0)
    else:
        assert (x2 - x1 == 160 or y2 - y1 == 120) and x2 <= 160 and y2 <= 120
    assert abs((x2 - x1) / (y2 - y1) - w / h) < 0.03  # its aspect kept
    assert abs((x1 + x2) / 2 - 80) <= 1 and abs((y1 + y2) / 2 - 60) <= 1  # centred
    # the donor's pixels are resampled, its masks nearest: within a pixel at the edges
    check_truth(out.image, out.state, out.drops, list(range(14)), tolerance=1, blended=True, least=6)
    assert len(out.state.ids) == 6 - sum(out.drops.values()) + len(entry["ids"])


@pytest.mark.parametrize("masks", [True, False])
def test_scenes_without_objects(masks):
    row, donor = paint(3, 100, 100, []), paint(4, 100, 100, list(range(5)))
    out = run(step(), [row.tile(masks), donor.tile(masks)], 0, masks=masks)
    check_truth(out.image, out.state, out.drops, list(range(5)))
    assert len(out.state.ids) == len(out.record["pasted"][0]["objects"]) >= 1
    out = run(step(), [donor.tile(masks), row.tile(masks)], 0, masks=masks)
    assert np.array_equal(out.image, donor.image) and out.record["pasted"][0]["objects"] == []
    assert out.state.ids.tolist() == donor.tile(masks).state.ids.tolist() and not out.drops


def test_boxes_in_the_row_masks_in_the_donor():
    row, donor = paint(5, 100, 120, list(range(4)), rects_only=True), paint(6, 100, 120, list(range(4, 10)))
    out = run(step(objects=6), [row.tile(False), donor.tile(True, 200)], 0, masks=False)
    assert out.state.masks is None
    check_truth(out.image, out.state, out.drops, list(range(10)))


def test_objects_caps_what_a_donor_gives():
    row, donor = paint(7, 100, 120, [0]), paint(8, 100, 120, list(range(1, 9)))
    def pasted(mix, seed: int) -> int:
        return len(run(mix, [row.tile(True), donor.tile(True)], seed).record["pasted"][0]["ids"])

    assert {pasted(step(objects=3), s) for s in SEEDS} == {3}
    counts = {pasted(step(), s) for s in range(20)}
    assert len(counts) > 3 and counts <= set(range(1, 9))  # the paper's random subset: any size


def test_crowd_regions_are_not_pasted():
    row, donor = paint(7, 100, 120, [0]), paint(8, 100, 120, list(range(1, 5)))
    tile = donor.tile(True)
    tile.state.iscrowd = np.array([1, 0, 1, 0])
    for s in SEEDS:
        out = run(step(objects=4), [row.tile(True), tile], s)
        assert out.record["pasted"][0]["objects"] == [101, 103]


def test_blend_softens_the_edge_only():
    row, donor = paint(9, 100, 120, list(range(3))), paint(10, 100, 120, list(range(3, 9)))
    hard = run(step(objects=6), [row.tile(True), donor.tile(True)], 0)
    soft = run(step(objects=6, blend=1.5), [row.tile(True), donor.tile(True)], 0)
    assert all(np.array_equal(a, b) for a, b in zip(hard.state.masks, soft.state.masks))
    changed = (hard.image != soft.image).any(axis=2)
    cover = np.any([m for m, c in zip(hard.state.masks, hard.state.categories) if c >= 3], axis=0)
    assert changed.any() and not (changed & ~cover).any()


@pytest.mark.parametrize("masks", [True, False])
def test_same_seeds_same_paste(masks):
    painted = [paint(11 + k, 100, 120, list(range(k * 6, k * 6 + 6))) for k in range(3)]
    outs = [run(step(donors=2, blend=1), [p.tile(masks) for p in painted], 4, masks=masks) for _ in range(2)]
    assert np.array_equal(outs[0].image, outs[1].image) and outs[0].record == outs[1].record
    assert np.array_equal(outs[0].state.boxes, outs[1].state.boxes) and outs[0].drops == outs[1].drops


def test_its_parameters():
    mix = step(donors=3, rare_classes=True)
    assert mix.donors() == 3 and mix.needs_objects() and mix.rare_weighted() and not step().rare_weighted()
    for bad in ({"objects": 0}, {"donors": 0}, {"blend": -1}, {"colour": 1}):
        with pytest.raises(ValidationError):
            CopyPaste.Params.model_validate(bad)
