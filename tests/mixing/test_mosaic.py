"""Mosaic on painted scenes: each object a class of its own in its own colour (painted.py)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from pydantic import ValidationError

from augpipe.mixing import Tile, registry
from augpipe.recipe import BboxSpec
from augpipe.targets import kind_for
from augpipe.targets.boxes import Boxes
from augpipe.targets.semantic import Mask
from painted import COLOURS, check_truth, paint, pixels

Mosaic = registry()["Mosaic"]
SIZES = [(100, 100), (80, 130), (140, 90), (60, 60)]  # (h, w) of the row's image and its three donors
SEEDS = range(4)


def mosaic(**params):
    return Mosaic(Mosaic.Params(**{"p": 1, "target_size": (150, 150), "cell_shape": (100, 100), "interpolation": 0,
                                   **params}))


def scenes(seed: int, sizes=SIZES, per: int = 6, rects_only: bool = False):
    return [paint(seed * 10 + k, h, w, list(range(k * per, (k + 1) * per)), rects_only)
            for k, (h, w) in enumerate(sizes)]


def run(step, tiles, seed: int, bbox=None, masks: bool = True):
    bbox = bbox or BboxSpec()
    kind = kind_for("detection", instance_masks=masks)
    return step.apply(tiles[0], tiles[1:], np.random.default_rng(seed), random.Random(seed), kind, bbox)


def shown(out) -> set[int]:
    """The tiles the record says got a cell."""
    return {c["tile"] for c in out.record["cells"]}


@pytest.mark.parametrize("fit_mode", ["cover", "contain"])
@pytest.mark.parametrize("masks", [True, False])
@pytest.mark.parametrize("seed", SEEDS)
def test_every_box_lies_on_its_object_and_every_object_has_its_box(seed, masks, fit_mode):
    # without masks a box cut by a cell's edge keeps its full height or width: a disc's would be
    # looser than its colour, so rectangles only
    painted = scenes(seed, rects_only=not masks)
    tiles = [p.tile(masks, 100 * (k + 1)) for k, p in enumerate(painted)]
    out = run(mosaic(fit_mode=fit_mode), tiles, seed, masks=masks)
    assert out.image.shape == (150, 150, 3) and out.image.dtype == np.uint8 and out.image.flags.c_contiguous
    assert isinstance(out.state, Boxes) and (out.state.masks is not None) == masks
    everyone = [c for p in painted for c in p.classes]
    # with masks the box is the mask's extent; without, albumentations' box, within a pixel of the colour
    check_truth(out.image, out.state, out.drops, everyone, tolerance=0 if masks else 1)
    assert len(set(out.state.ids.tolist())) == len(out.state.ids)
    assert {reason for reason, _ in out.drops} <= {"mosaic: cut off"}
    # every object of a tile that got a cell is kept or counted; none of another tile's shows
    used = [c for k in shown(out) for c in painted[k].classes]
    assert len(out.state.ids) + sum(out.drops.values()) == len(used)
    assert set(out.state.categories.tolist()) <= set(used)
    for (_, c), n in out.drops.items():
        assert n == 1 and pixels(out.image, c).sum() == 0, c


@pytest.mark.parametrize("seed", SEEDS)
def test_the_record_says_which_tile_filled_which_cell(seed):
    painted = scenes(seed)
    tiles = [p.tile(True, 100 * (k + 1)) for k, p in enumerate(painted)]
    out = run(mosaic(), tiles, seed)
    cells = out.record["cells"]
    assert sorted(c["tile"] for c in cells) == [0, 1, 2, 3]  # a 150 px crop of 100 px cells shows all four
    assert len(out.record["centre"]) == 2
    for cell in cells:
        x1, y1, x2, y2 = cell["cell"]
        inside = out.image[y1:y2, x1:x2]
        colours = {c for c in range(len(COLOURS)) if pixels(inside, c).any()}
        assert colours <= set(painted[cell["tile"]].classes)
        # a donor's objects are numbered from its first new id, in its own order
        for k, c in zip(out.state.ids, out.state.categories):
            if c in painted[cell["tile"]].classes and cell["tile"]:
                assert k == cell["first_id"] + painted[cell["tile"]].classes.index(c)
    assert min(c.get("first_id", 10**9) for c in cells) > max(tiles[0].state.ids)


@pytest.mark.parametrize("seed", range(8))
def test_a_crop_smaller_than_a_cell_shows_some_tiles_only(seed):
    painted = scenes(seed)
    tiles = [p.tile(True, 100 * (k + 1)) for k, p in enumerate(painted)]
    out = Mosaic(Mosaic.Params(p=1, target_size=(70, 90), cell_shape=(100, 100), center_range=(0, 1),
                               interpolation=0)).apply(tiles[0], tiles[1:], np.random.default_rng(seed),
                                                       random.Random(seed), kind_for("detection"), BboxSpec())
    used = shown(out)
    assert 0 in used and len(used) == len(out.record["cells"])  # the row's image always shows
    assert sum(x2 - x1 for x1, _, x2, y2 in (c["cell"] for c in out.record["cells"]) if y2 == 70) == 90
    check_truth(out.image, out.state, out.drops, [c for p in painted for c in p.classes])
    # the objects of the tiles not shown are neither kept nor counted
    hidden = {c for k, p in enumerate(painted) if k not in used for c in p.classes}
    assert not hidden & ({c for _, c in out.drops} | set(out.state.categories.tolist()))
    assert len(out.state.ids) + sum(out.drops.values()) == sum(len(painted[k].classes) for k in used)


@pytest.mark.parametrize("masks", [True, False])
@pytest.mark.parametrize("seed", SEEDS)
def test_min_visibility_drops_exactly_the_objects_cut_to_under_half(seed, masks):
    # tiles the cells' size: nothing is scaled, a share is its pixels out over its pixels in;
    # without masks the share is the box's, so only rectangles
    painted = scenes(seed, sizes=[(100, 100)] * 4, per=8, rects_only=not masks)
    out = run(mosaic(), [p.tile(masks) for p in painted], seed, BboxSpec(min_visibility=0.5), masks)
    kept = set(out.state.categories.tolist())
    for p in painted:
        for c in p.classes:
            share = pixels(out.image, c).sum() / pixels(p.image, c).sum()
            if share == 0:
                assert out.drops[("mosaic: cut off", c)] == 1 and c not in kept
            elif share < 0.5:
                assert out.drops[("mosaic: below min_visibility", c)] == 1 and c not in kept, (c, share)
            else:
                assert c in kept, (c, share)


@pytest.mark.parametrize("seed", SEEDS)
def test_min_visibility_on_scaled_tiles(seed):
    # tiles twice the cells' size: an object shows a quarter of its pixels when whole
    painted = scenes(seed, sizes=[(200, 200)] * 4, per=8)
    out = run(mosaic(), [p.tile(True) for p in painted], seed, BboxSpec(min_visibility=0.5))
    kept = set(out.state.categories.tolist())
    for p in painted:
        for c in p.classes:
            share = pixels(out.image, c).sum() / (pixels(p.image, c).sum() / 4)
            if share > 0.6:
                assert c in kept, (c, share)
            elif share < 0.4:
                assert c not in kept and sum(n for (_, k), n in out.drops.items() if k == c) == 1, (c, share)


def test_too_small_a_visible_part_is_dropped():
    painted = scenes(1, sizes=[(100, 100)] * 4, per=8)
    out = run(mosaic(), [p.tile(True) for p in painted], 1, BboxSpec(min_area=150))
    for box in out.state.boxes:
        assert box[2] * box[3] >= 150
    small = {c for (reason, c) in out.drops if reason == "mosaic: too small"}
    assert small
    for c in small:
        box = [np.flatnonzero(pixels(out.image, c).any(axis=a)) for a in (0, 1)]
        assert (box[0][-1] + 1 - box[0][0]) * (box[1][-1] + 1 - box[1][0]) < 150


@pytest.mark.parametrize("masks", [True, False])
def test_tiles_without_objects(masks):
    painted = [paint(5, 100, 100, []), paint(6, 90, 120, list(range(6)), not masks), paint(7, 100, 100, []),
               paint(8, 100, 100, [])]
    out = run(mosaic(), [p.tile(masks) for p in painted], 0, masks=masks)
    check_truth(out.image, out.state, out.drops, list(range(6)), tolerance=0 if masks else 1)
    empty = run(mosaic(), [painted[0].tile(masks)] * 4, 0, masks=masks)
    assert len(empty.state.ids) == 0 and not empty.drops and (empty.state.masks == []) == masks


def test_masks_in_the_row_boxes_in_a_donor():
    # a donor's boxes become masks of their rectangles: its objects rectangles, every mask is exact
    painted = scenes(2, rects_only=True)
    painted[0] = scenes(2)[0]
    tiles = [painted[0].tile(True), *[p.tile(False, 100 * (k + 2)) for k, p in enumerate(painted[1:])]]
    out = run(mosaic(), tiles, 2)
    assert len(out.state.masks) == len(out.state.ids)
    check_truth(out.image, out.state, out.drops, [c for p in painted for c in p.classes])


def test_fewer_donors_than_cells_fill_with_the_row():
    painted = scenes(3)
    out = run(mosaic(), [painted[0].tile(True), painted[1].tile(True, 200)], 3)
    tiles = [c["tile"] for c in out.record["cells"]]
    assert sorted(set(tiles)) == [0, 1] and tiles.count(0) == 3
    assert len(set(out.state.ids.tolist())) == len(out.state.ids)
    for k, c in enumerate(out.state.categories):
        mask = out.state.masks[k].astype(bool)
        assert mask.any() and not (mask & ~pixels(out.image, int(c))).any()


def test_many_objects_pack_into_many_channels():
    # 600 objects, 2 px squares each in a colour of its own: 75 mask channels a tile
    rng = np.random.default_rng(0)

    def colour(c: int) -> tuple[int, int, int]:
        return c % 256, 20 + 40 * (c // 256), 200

    tiles = []
    for k in range(4):
        image = np.full((120, 120, 3), 128, np.uint8)
        boxes = np.array([[3 * (s % 40), 3 * (s // 40), 2, 2] for s in rng.choice(1600, 150, replace=False)], float)
        masks = []
        for j, (x, y, _, _) in enumerate(boxes.astype(int)):
            image[y:y + 2, x:x + 2] = colour(150 * k + j)
            masks.append((image == colour(150 * k + j)).all(axis=2).astype(np.uint8))
        tiles.append(Tile(image, Boxes(boxes, np.arange(150 * k, 150 * k + 150), np.arange(150), masks)))
    out = run(Mosaic(Mosaic.Params(p=1, target_size=(200, 200), cell_shape=(120, 120))), tiles, 0)
    assert len(out.state.ids) + sum(out.drops.values()) == 600
    for k, c in enumerate(out.state.categories):
        assert np.array_equal(out.state.masks[k], (out.image == colour(c)).all(axis=2)), c
    showing = {c for c in range(600) if (out.image == colour(c)).all(axis=2).any()}
    assert showing == set(out.state.categories.tolist())


@pytest.mark.parametrize("fit_mode", ["cover", "contain"])
def test_segmentation_masks_follow_the_pixels(fit_mode):
    painted = scenes(4)
    tiles = [Tile(p.image, Mask(_classes(p), None)) for p in painted]
    out = Mosaic(Mosaic.Params(p=1, target_size=(150, 150), cell_shape=(100, 100), interpolation=0, fill=7,
                               fill_mask=255, fit_mode=fit_mode)).apply(
        tiles[0], tiles[1:], np.random.default_rng(4), random.Random(4), kind_for("segmentation"), BboxSpec())
    assert isinstance(out.state, Mask) and out.state.mask.shape == (150, 150) and not out.drops
    for p in painted:
        for c in p.classes:
            assert (out.state.mask[pixels(out.image, c)] == c + 1).all()
    grey = (out.image == 128).all(axis=2)
    assert (out.state.mask[grey] == 0).all()
    padding = (out.image == 7).all(axis=2)
    assert (out.state.mask[padding] == 255).all() and (padding.any() == (fit_mode == "contain"))


def _classes(p) -> np.ndarray:
    mask = np.zeros(p.image.shape[:2], np.uint8)
    for c in p.classes:
        mask[pixels(p.image, c)] = c + 1
    return mask


@pytest.mark.parametrize("masks", [True, False])
def test_same_seeds_same_mosaic(masks):
    painted = scenes(5)
    outs = [run(mosaic(interpolation=1), [p.tile(masks) for p in painted], 9, masks=masks) for _ in range(2)]
    assert np.array_equal(outs[0].image, outs[1].image) and outs[0].record == outs[1].record
    assert np.array_equal(outs[0].state.boxes, outs[1].state.boxes) and outs[0].drops == outs[1].drops
    assert all(np.array_equal(a, b) for a, b in zip(outs[0].state.masks or [], outs[1].state.masks or []))


def test_linear_interpolation_keeps_boxes_within_a_pixel():
    painted = scenes(6)
    out = run(mosaic(interpolation=1), [p.tile(True) for p in painted], 6)
    check_truth(out.image, out.state, out.drops, [c for p in painted for c in p.classes], tolerance=1,
                blended=True, least=8)


def test_donors_are_the_cells_but_one():
    assert Mosaic(Mosaic.Params()).donors() == 3
    assert Mosaic(Mosaic.Params(grid_yx=(2, 3), target_size=(300, 300), cell_shape=(200, 200))).donors() == 5


@pytest.mark.parametrize("params, words", [
    ({"target_size": [900, 900], "cell_shape": [400, 400]},
     "albumentations' Mosaic refuses it: Target size should be smaller"),
    ({"mask_interpolation": 1}, "mask_interpolation\n  must be nearest"),
    ({"grid_yx": [16, 17]}, "1 to 255 cells"),
    ({"fit_mode": "stretch"}, "fit_mode"),
    ({"metadata_key": "x"}, "metadata_key"),
    ({"center_range": [0.8, 0.2]}, "refuses it: field 'center_range'"),
])
def test_bad_parameters_are_refused_in_a_line(params, words):
    with pytest.raises(ValidationError) as caught:
        Mosaic.Params.model_validate(params)
    assert words in str(caught.value)


@pytest.mark.parametrize("fit_mode", ["cover", "contain"])
def test_a_tiles_scale_is_the_one_albumentations_resizes_it_by(fit_mode):
    from augpipe.mixing.mosaic import _scale
    from augpipe.recipe import import_albumentations

    A = import_albumentations()
    fit = A.SmallestMaxSize if fit_mode == "cover" else A.LongestMaxSize
    params = Mosaic.Params(target_size=(100, 100), cell_shape=(97, 131), fit_mode=fit_mode)
    for h, w in [(37, 53), (97, 131), (200, 71), (1, 300), (333, 1), (64, 64)]:
        resized = fit(max_size_hw=(97, 131), p=1)(image=np.zeros((h, w, 3), np.uint8))["image"]
        assert _scale((h, w), params) == (resized.shape[1] / w, resized.shape[0] / h)
