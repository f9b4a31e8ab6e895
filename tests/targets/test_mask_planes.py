"""Instance masks through albumentations as bits of uint8 planes: the masks that come back are
the ones albumentations' own per-mask path gives, pixel for pixel, on many seeds."""

from __future__ import annotations

import random

import cv2
import numpy as np
import pytest

from augpipe.recipe import build_compose, parse_recipe
from augpipe.sample import augment_copy
from augpipe.targets.boxes import Boxes, BoxesKind, fill_polygon, mask_extent, pixels_in
from augpipe.targets.masks import PlaneMasks, bit_planes, write_instance_mask

# every step that may pack, with reflecting and constant borders, crops, pads and resizes
PICKING = """\
copies: 1
output: {format: png}
transforms:
  - HorizontalFlip: {p: 0.5}
  - OneOf:
      p: 0.9
      transforms:
        - Rotate: {limit: [-40, 40], border_mode: 4, p: 1.0}
        - Rotate: {limit: [-40, 40], p: 1.0}
        - SafeRotate: {limit: [-30, 30], p: 1.0}
        - Affine: {scale: [0.7, 1.3], rotate: [-20, 20], shear: [-10, 10], translate_percent: [-0.1, 0.1], p: 1.0}
        - ShiftScaleRotate: {p: 1.0}
        - Perspective: {scale: [0.05, 0.15], p: 1.0}
  - D4: {p: 0.3}
  - RandomRotate90: {p: 0.3}
  - RandomBrightnessContrast: {p: 0.5}
  - OneOf:
      p: 0.7
      transforms:
        - RandomResizedCrop: {size: [56, 72], scale: [0.3, 1.0], p: 1.0}
        - RandomCrop: {height: 40, width: 50, p: 1.0}
        - CenterCrop: {height: 44, width: 60, p: 1.0}
        - PadIfNeeded: {min_height: 90, min_width: 90, border_mode: 2, p: 1.0}
        - Resize: {height: 37, width: 83, p: 1.0}
        - LongestMaxSize: {max_size: 101, p: 1.0}
"""


def _scene(seed: int, n: int, h: int = 61, w: int = 77):
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    boxes, masks = [], []
    for _ in range(n):
        bw, bh = int(rng.integers(6, w // 2)), int(rng.integers(6, h // 2))
        x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        mask = np.zeros((h, w), np.uint8)
        angles = np.sort(rng.uniform(0, 2 * np.pi, 9))
        r = rng.uniform(0.5, 1.0, 9)
        fill_polygon(mask, np.stack([x + bw / 2 + np.cos(angles) * r * bw / 2,
                                     y + bh / 2 + np.sin(angles) * r * bh / 2], axis=1))
        bx, by, bw2, bh2 = cv2.boundingRect(mask)
        boxes.append([bx, by, bw2, bh2])
        masks.append(mask)
    state = Boxes(np.array(boxes, np.float64), rng.integers(0, 3, n), np.arange(n, dtype=np.int64), masks,
                  shaped=np.ones(n, bool))
    return rgb, state


@pytest.mark.parametrize("n", [1, 2, 7, 8, 9, 17])
def test_bit_planes_give_the_masks_back(n):
    rng = np.random.default_rng(n)
    masks = [(rng.random((13, 29)) < 0.4).astype(np.uint8) for _ in range(n)]
    planes = bit_planes(masks)
    if n < 2:
        assert planes is None
        return
    assert len(planes) == -(-n // 8) and all(p.dtype == np.uint8 and p.shape == (13, 29) for p in planes)
    back = list(PlaneMasks(planes, range(n)))
    assert all(b.dtype == np.uint8 and np.array_equal(b, m) for b, m in zip(back, masks, strict=True))


def test_masks_not_0_1_or_of_other_shapes_are_not_packed():
    a = np.zeros((5, 6), np.uint8)
    assert bit_planes([a, np.full((5, 6), 255, np.uint8)]) is None
    assert bit_planes([a, np.zeros((6, 5), np.uint8)]) is None
    assert bit_planes([a, np.zeros((5, 6), np.int64)]) is None


@pytest.mark.parametrize("seed", range(250))
def test_packed_masks_are_albumentations_per_mask_warps(seed):
    """One Compose call per way, the same random streams: masks as a list (albumentations warps
    each) against 11 masks as 2 bit planes; image, boxes, transforms applied and every mask equal."""
    recipe = parse_recipe(PICKING)
    kind = BoxesKind(True).for_recipe(recipe)
    assert kind.packs_masks
    rgb, state = _scene(seed, 11)
    results = []
    for masks in (list(state.masks), bit_planes(state.masks)):
        compose = build_compose(recipe, kind)
        compose.set_random_state(np.random.default_rng(seed), random.Random(seed))
        inputs = {**kind.inputs(state), "masks": masks}
        results.append(compose(image=rgb, **inputs))
    own, packed = results
    assert len(packed["masks"]) == 2
    assert np.array_equal(own["image"], packed["image"])
    assert np.array_equal(own["bboxes"], packed["bboxes"])
    assert repr(own["applied_transforms"]) == repr(packed["applied_transforms"])
    back = list(PlaneMasks(packed["masks"], range(11)))
    for k in range(11):
        assert back[k].dtype == np.uint8 and np.array_equal(np.asarray(own["masks"][k]), back[k]), k


@pytest.mark.parametrize("seed", range(60))
def test_a_copy_with_packed_masks_is_the_copy_without(seed):
    """augment_copy (the packing kind) against the same steps with the masks as a list, through
    the kind's own outputs and moved: boxes, ids and masks equal."""
    recipe = parse_recipe(PICKING)
    rgb, state = _scene(seed, 1 + seed % 12)
    image, got, _, _ = augment_copy(rgb, recipe, seed, BoxesKind(True), state)
    plain = BoxesKind(True)  # not made for the recipe: masks as a list
    assert not plain.packs_masks
    compose = build_compose(recipe, plain)
    compose.set_random_state(np.random.default_rng(seed), random.Random(seed))
    result = compose(image=rgb, **plain.inputs(state))
    assert isinstance(result["masks"], list) or len(result["masks"]) == len(state.masks)
    want = plain.moved(plain.outputs(result, state), recipe.bbox_params)
    assert np.array_equal(image, result["image"])
    assert np.array_equal(got.boxes, want.boxes) and np.array_equal(got.ids, want.ids)
    assert len(got.masks) == len(want.masks)
    assert all(np.array_equal(g, np.asarray(w)) for g, w in zip(got.masks, want.masks, strict=True))
    # what is written: the areas and the PNGs, worked out from the planes, to the bit
    written, wanted = BoxesKind(True).values(got, image)["objects"], plain.values(want, image)["objects"]
    assert written["area"].tobytes() == wanted["area"].tobytes()
    assert [m["bytes"] for m in written["mask"]] == [m["bytes"] for m in wanted["mask"]]


@pytest.mark.parametrize("n", [2, 5, 8, 9, 20])
@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (13, 29), (40, 64), (33, 71)])
def test_plane_masks_are_the_masks_they_pack(n, shape):
    """Each mask, its extent, pixel count and PNG from the planes are the unpacked mask's own
    (the unpacking, `mask_extent`, `pixels_in`, `write_instance_mask`), to the byte: empty
    masks, full ones, ones on every edge, widths not a multiple of 8; and after `select`."""
    rng = np.random.default_rng(n * 100 + shape[1])
    h, w = shape
    masks = []
    for k in range(n):
        mask = np.zeros(shape, np.uint8)
        if k % 5 == 1:
            mask[:] = 1
        elif k % 5 == 2:
            y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
            mask[y:, x:] = 1  # to the right and bottom edges
        elif k % 5 == 3:
            mask[:] = rng.random(shape) < 0.05
        elif k % 5 == 4:
            y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
            mask[y0:y0 + int(rng.integers(1, 9)), x0:x0 + int(rng.integers(1, 17))] = 1
        masks.append(mask)  # k % 5 == 0: empty
    packed = PlaneMasks(bit_planes(masks), range(n))
    assert packed.packed() is not None and len(packed) == n
    picks = rng.permutation(n)[:max(1, n // 2)]
    for view, want in ((packed, masks), (packed.select(picks), [masks[k] for k in picks])):
        assert len(view) == len(want)
        for k, mask in enumerate(want):
            assert view[k].dtype == np.uint8 and np.array_equal(view[k], mask)
            extent = mask_extent(mask)
            assert (view.extent(k) is None) == (extent is None)
            assert extent is None or list(view.extent(k)) == extent.tolist()
            assert view.area(k) == pixels_in(mask)
            assert view.png(k) == write_instance_mask(mask)
    assert packed.select(picks).packed() is None or list(picks) == list(range(len(picks)))


@pytest.mark.parametrize("step", [
    "CoarseDropout: {fill_mask: 1, p: 1.0}",
    "Rotate: {fill_mask: 1, p: 1.0}",
    "MaskDropout: {p: 1.0}",
    "ElasticTransform: {p: 1.0}",
    "OneOf: {transforms: [HorizontalFlip, {GridDistortion: {p: 1.0}}]}",
    "Mosaic: {p: 0.5}",
])
def test_a_step_that_reads_or_fills_mask_values_keeps_masks_as_a_list(step):
    """And a multi-image step (its tiles are cut and pasted by augpipe, not albumentations)."""
    recipe = parse_recipe(f"copies: 1\noutput: {{format: png}}\ntransforms:\n  - HorizontalFlip\n  - {step}\n")
    kind = BoxesKind(True).for_recipe(recipe)
    assert not kind.packs_masks
    assert isinstance(kind.inputs(_scene(0, 3)[1])["masks"], list)


def test_the_bench_recipe_packs_and_a_kind_without_masks_does_not():
    recipe = parse_recipe(PICKING)
    assert BoxesKind(True).for_recipe(recipe).packs_masks
    assert not BoxesKind(False).for_recipe(recipe).packs_masks


def test_a_copy_of_a_copy_whose_crop_kept_a_few_of_many_masks_keeps_them():
    """A hostile tester's: 10 objects (2 planes), a crop keeps the first 2, and that state goes
    through a second packing recipe: its 2 masks (not its 2 planes taken for masks) come back."""
    h = w = 40
    masks, boxes = [], []
    for k in range(10):
        mask = np.zeros((h, w), np.uint8)
        if k < 2:
            mask[2 + 5 * k:6 + 5 * k, 2:8] = 1  # top left: kept by the crop
        else:
            mask[25 + k:27 + k, 20 + k:24 + k] = 1  # bottom right: cut off
        boxes.append(list(cv2.boundingRect(mask)))
        masks.append(mask)
    state = Boxes(np.array(boxes, float), np.zeros(10, np.int64), np.arange(10, dtype=np.int64), masks,
                  shaped=np.ones(10, bool))
    rgb = np.zeros((h, w, 3), np.uint8)
    crop = parse_recipe("copies: 1\noutput: {format: png}\ntransforms:\n"
                        "  - Crop: {x_min: 0, y_min: 0, x_max: 20, y_max: 20, p: 1.0}\n")
    flip = parse_recipe("copies: 1\noutput: {format: png}\ntransforms:\n  - HorizontalFlip: {p: 1.0}\n")
    image, cropped, _, _ = augment_copy(rgb, crop, 0, BoxesKind(True), state)
    assert cropped.ids.tolist() == [0, 1]
    _, flipped, _, _ = augment_copy(image, flip, 1, BoxesKind(True), cropped)
    assert flipped.ids.tolist() == [0, 1]
    assert flipped.boxes.tolist() == [[12, 2, 6, 4], [12, 7, 6, 4]]
    assert [int(np.asarray(m).max()) for m in flipped.masks] == [1, 1]
    assert BoxesKind(True).values(flipped, image)["objects"]["area"].tolist() == [24.0, 24.0]
