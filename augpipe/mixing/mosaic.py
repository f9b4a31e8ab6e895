"""Mosaic: albumentations 2.0.8's own `A.Mosaic`, the row's image and its donors as the cells of a
grid, the output a crop of `target_size` around a random centre.

Each tile's objects reach albumentations with a key unique over the tiles (each output box maps
back to its object and tile) and, for detection with instance masks, their masks packed as bits
along the channels of the tile's `mask`, 16 a uint16 channel, bit `key` for each object, every
tile with the same channels (A.Mosaic takes no `masks`; nearest interpolation keeps the bits, and
albumentations resizes a mask of any number of channels, 4 at a time). A first mask channel
holds each tile's number, which tells where albumentations put it. albumentations filters
nothing: the recipe's bbox_params are applied here to each object's visible part, its area now
against its area in its tile scaled as the cell scaled the tile (`_scale`).
"""

from __future__ import annotations

import functools
import math
import random
import threading
from typing import Literal

import cv2
import numpy as np
from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from augpipe.mixing.base import Mix, Mixed, MixParams, Tile
from augpipe.mixing.objects import areas, counted, fresh_ids, joined, judged, masks_of
from augpipe.targets.boxes import Boxes, mask_extent
from augpipe.targets.semantic import Mask

NEAREST = (cv2.INTER_NEAREST, cv2.INTER_NEAREST_EXACT)
BITS = 16  # objects a mask channel holds: uint16 (a tile's number and 48 objects resize in one cv2 call)


class MosaicParams(MixParams):
    """A.Mosaic's own parameters (albumentations validates them too), but `metadata_key`: the
    donors are augpipe's. Masks are class indices or packed bits, so only a nearest
    `mask_interpolation` keeps them; `fill_mask` is the class index a segmentation mask is padded
    with (`fit_mode: contain`)."""

    grid_yx: tuple[int, int] = (2, 2)
    target_size: tuple[int, int] = (512, 512)
    cell_shape: tuple[int, int] = (512, 512)
    center_range: tuple[float, float] = (0.3, 0.7)
    fit_mode: Literal["cover", "contain"] = "cover"
    interpolation: int = cv2.INTER_LINEAR
    mask_interpolation: int = cv2.INTER_NEAREST
    fill: float | tuple[float, ...] = 0
    fill_mask: int = Field(0, ge=0, le=255)

    @field_validator("mask_interpolation")
    @classmethod
    def _nearest(cls, value: int) -> int:
        if value not in NEAREST:
            raise PydanticCustomError("nearest", f"must be nearest ({' or '.join(map(str, NEAREST))}): masks are class "
                                      "indices or instance bits, which no other interpolation keeps")
        return value

    @field_validator("grid_yx")
    @classmethod
    def _few_enough_cells(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not 1 <= value[0] * value[1] <= 255:
            raise PydanticCustomError("cells", "1 to 255 cells (each tile is numbered in a mask channel)")
        return value

    @model_validator(mode="after")
    def _albumentations_accepts(self) -> MosaicParams:
        try:
            _mosaic_class()(**self.mosaic_args())
        except (TypeError, ValueError) as exc:
            raise PydanticCustomError("albumentations", "albumentations' Mosaic refuses it: {why}",
                                      {"why": _refusal(exc)}) from None
        return self

    def mosaic_args(self) -> dict:
        return {k: v for k, v in self.model_dump().items() if k not in ("p", "fill_mask")}


def _refusal(exc: Exception) -> str:
    """albumentations' reason in a line (it re-raises its pydantic errors as ValueError(str(error)))."""
    from pydantic import ValidationError

    from augpipe.recipe import _field_message

    if not isinstance(exc.__cause__, ValidationError):
        return str(exc).splitlines()[0]
    return _field_message(exc.__cause__).replace("Value error, ", "")


@functools.lru_cache(maxsize=None)
def _mosaic_class():
    """A.Mosaic, unchanged, that also keeps the centre it drew and which item went to which cell
    (replayed with albumentations' own functions on a copy of its random state)."""
    from augpipe.recipe import import_albumentations

    A = import_albumentations()  # first: albumentations without its torch helpers
    from albumentations.augmentations.mixing import functional as fmixing

    class RecordingMosaic(A.Mosaic):
        def _calculate_geometry(self, data):
            self.centre = fmixing.calculate_mosaic_center_point(self.grid_yx, self.cell_shape, self.target_size,
                                                                self.center_range, _copy(self.py_random))
            self.placements = super()._calculate_geometry(data)
            return self.placements

        def _prepare_final_items(self, primary, additional_items, num_needed):
            items = super()._prepare_final_items(primary, additional_items, num_needed)
            cells = fmixing.assign_items_to_grid_cells(len(items), self.placements, _copy(self.py_random))
            self.cells = {cell: int(items[i]["mask"][0, 0, 0]) - 1 for cell, i in cells.items()}  # -> tile
            return items

        def get_params_dependent_on_data(self, params, data):
            # albumentations 2.0.8's own, but each cell's pipeline (a resize and a crop, no
            # randomness) built once, not for every cell of every row: building it was half the time
            cell_placements = self._calculate_geometry(data)
            num_additional_needed = max(0, len(cell_placements) - 1)
            additional_items = self._select_additional_items(data, num_additional_needed)
            preprocessed_additional = self._preprocess_additional_items(additional_items, data)
            primary = self.get_primary_data(data)
            final_items = self._prepare_final_items(primary, preprocessed_additional, num_additional_needed)
            placement_to_item_index = fmixing.assign_items_to_grid_cells(
                num_items=len(final_items), cell_placements=cell_placements, py_random=self.py_random)
            processed_cells = {
                placement: _cell(self, final_items[i], placement)
                for placement, i in placement_to_item_index.items()}
            if "bboxes" in data or "keypoints" in data:
                processed_cells = fmixing.shift_all_coordinates(processed_cells, canvas_shape=self.target_size)
            result = {"processed_cells": processed_cells, "target_shape": self._get_target_shape(data["image"].shape)}
            if "mask" in data:
                result["target_mask_shape"] = self._get_target_shape(data["mask"].shape)
            return result

    return RecordingMosaic


def _cell(mosaic, item: dict, placement: tuple[int, int, int, int]) -> dict:
    """albumentations' `process_cell_geometry` for one cell, its pipeline from `_cell_pipeline`."""
    from albumentations.augmentations.mixing import functional as fmixing

    x1, y1, x2, y2 = placement
    target_shape = (y2 - y1, x2 - x1)
    position = fmixing.get_cell_relative_position(placement, mosaic.target_size)
    crop = fmixing.get_opposite_crop_coords(mosaic.cell_shape, target_shape, position)
    fill_mask = mosaic.fill_mask if mosaic.fill_mask is not None else mosaic.fill
    pipeline = _cell_pipeline(threading.get_ident(), tuple(mosaic.cell_shape), mosaic.fit_mode, mosaic.interpolation,
                              mosaic.mask_interpolation, _hashable(mosaic.fill), _hashable(fill_mask),
                              item.get("bboxes") is not None, item.get("keypoints") is not None)
    # the crop differs cell by cell; A.Crop reads its corners from these at each call
    pipeline.transforms[1].x_min, pipeline.transforms[1].y_min, pipeline.transforms[1].x_max, \
        pipeline.transforms[1].y_max = crop
    given = {"image": item["image"], **{k: item[k] for k in ("mask", "bboxes", "keypoints") if item.get(k) is not None}}
    out = pipeline(**given)
    return {"image": out["image"], "mask": out.get("mask"), "bboxes": out.get("bboxes"),
            "keypoints": out.get("keypoints")}


def _hashable(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


@functools.lru_cache(maxsize=64)
def _cell_pipeline(thread: int, cell_shape, fit_mode, interpolation, mask_interpolation, fill, fill_mask,
                   boxes: bool, keypoints: bool):
    """The pipeline albumentations 2.0.8's `process_cell_geometry` builds for a cell, built once a
    thread (its crop's corners set for each cell by `_cell`: the studio's threads share none)."""
    from augpipe.recipe import import_albumentations

    A = import_albumentations()
    kwargs = {"p": 1.0}
    if boxes:
        kwargs["bbox_params"] = {"format": "albumentations"}
    if keypoints:
        kwargs["keypoint_params"] = {"format": "albumentations"}
    x_min, y_min, x_max, y_max = 0, 0, 1, 1  # set for each cell
    if fit_mode == "cover":
        steps = [A.SmallestMaxSize(max_size_hw=cell_shape, interpolation=interpolation,
                                   mask_interpolation=mask_interpolation, p=1.0),
                 A.Crop(x_min=x_min, y_min=y_min, x_max=x_max, y_max=y_max)]
    else:
        steps = [A.LongestMaxSize(max_size_hw=cell_shape, interpolation=interpolation,
                                  mask_interpolation=mask_interpolation, p=1.0),
                 A.Crop(x_min=x_min, y_min=y_min, x_max=x_max, y_max=y_max, pad_if_needed=True, fill=fill,
                        fill_mask=fill_mask, p=1.0)]
    return A.Compose(steps, **kwargs)


def _copy(py_random: random.Random) -> random.Random:
    replay = random.Random()
    replay.setstate(py_random.getstate())
    return replay


class Mosaic(Mix):
    """The row's image and `grid_yx` cells − 1 donors in a mosaic (see the module)."""

    name = "Mosaic"
    kinds = ("detection", "segmentation")
    Params = MosaicParams
    needs_donors = False  # a split of one image: the row's own image fills the other cells
    repeats_donors = True  # a donor twice lands in two cells, at two places

    def __init__(self, params: MosaicParams):
        super().__init__(params)
        self._composes: dict = {}

    def donors(self) -> int:
        rows, cols = self.params.grid_yx
        return rows * cols - 1

    def apply(self, primary: Tile, donors: list[Tile], rng: np.random.Generator, py_rng: random.Random,
              kind, bbox_params) -> Mixed:
        # fewer donors than cells (a split of one image): the row's own image fills the rest, as a
        # tile of its own, so that each tile's objects stay its own
        tiles = [primary, *donors, *[primary] * (self.donors() - len(donors))]
        if isinstance(primary.state, Mask):
            items = [{"image": t.image, "mask": np.dstack([_numbered(t.image, k), t.state.mask])}
                     for k, t in enumerate(tiles)]
            result, mosaic = self._run(items, False, rng, py_rng)
            state = Mask(np.ascontiguousarray(result["mask"][..., 1]), primary.state.palette)
            return Mixed(np.ascontiguousarray(result["image"]), state, _record(mosaic, len(donors), {}))
        return self._detection(tiles, len(donors), rng, py_rng, bbox_params)

    def _run(self, items: list[dict], with_boxes: bool, rng, py_rng) -> tuple[dict, object]:
        """albumentations' Mosaic on the tiles' items (the first the row's): its result and itself."""
        from augpipe.recipe import import_albumentations

        A = import_albumentations()
        if with_boxes not in self._composes:  # built once a process, as recipe.build_compose does
            fill_mask = 0 if with_boxes else (0, self.params.fill_mask)  # the tile's number, then the class
            mosaic = _mosaic_class()(**self.params.mosaic_args(), fill_mask=fill_mask, p=1)
            options = {"bbox_params": A.BboxParams(format="coco", label_fields=["categories", "keys"], clip=True)} \
                if with_boxes else {}
            self._composes[with_boxes] = A.Compose([mosaic], **options), mosaic
        compose, mosaic = self._composes[with_boxes]
        compose.set_random_state(rng, py_rng)
        return compose(**items[0], mosaic_metadata=items[1:]), mosaic

    def _detection(self, tiles: list[Tile], given: int, rng, py_rng, bbox_params) -> Mixed:
        with_masks = tiles[0].state.masks is not None
        states = [t.state for t in tiles]
        starts = np.cumsum([0, *[len(s.ids) for s in states]])  # tile k's objects: keys starts[k]...
        channels = 1 + (math.ceil(starts[-1] / BITS) if with_masks else 0)
        items = [_item(t, k, starts[k], channels, with_masks) for k, t in enumerate(tiles)]
        result, mosaic = self._run(items, True, rng, py_rng)
        everyone = joined(states, False, (0, 0))
        fresh = fresh_ids(states[0].ids, starts[-1] - starts[1])
        everyone.ids = np.concatenate([states[0].ids, fresh])  # a donor's objects: new ids after the row's
        whole = np.concatenate([areas(s) * np.prod(_scale(t.image.shape[:2], self.params))
                                for s, t in zip(states, tiles)])
        keys = np.asarray(result["keys"], np.float64).astype(np.int64)
        state, visible = _visible(result, keys, everyone, with_masks)
        keep, drops = judged("mosaic", "cut off", state, visible, whole[keys], bbox_params)
        lost = np.zeros(starts[-1], bool)
        for k in mosaic.cells.values():
            lost[starts[k]:starts[k + 1]] = True  # the objects of the tiles that have a cell...
        lost[keys] = False  # ...that albumentations did not keep
        for k in np.flatnonzero(lost):
            drops[("mosaic: cut off", int(everyone.categories[k]))] += 1
        firsts = {k: int(fresh[starts[k] - starts[1]]) for k in range(1, len(tiles)) if starts[k + 1] > starts[k]}
        return Mixed(np.ascontiguousarray(result["image"]), counted(state.kept(keep), drops),
                     _record(mosaic, given, firsts), drops)


def _numbered(image: np.ndarray, k: int) -> np.ndarray:
    """A mask channel holding tile k's number (1 up: 0 is padding)."""
    return np.full(image.shape[:2], k + 1, np.uint8)


def _item(tile: Tile, k: int, start: int, channels: int, with_masks: bool) -> dict:
    """A tile as albumentations takes it: its boxes keyed from `start`, and a uint16 mask of
    `channels`: its number, then (with masks) each object's mask as bit `key` of the channels after
    (planes first: a plane's bits are set in one pass over contiguous memory)."""
    state = tile.state
    shape = tile.image.shape[:2]
    planes = np.zeros((channels, *shape), np.uint16)
    planes[0] = k + 1
    if with_masks:
        for key, m in enumerate(masks_of(state, shape), start=int(start)):
            planes[1 + key // BITS] |= (m > 0).astype(np.uint16) << np.uint16(key % BITS)
    mask = np.ascontiguousarray(planes.transpose(1, 2, 0))
    return {"image": tile.image, "mask": mask, "bboxes": state.boxes.reshape(-1, 4),
            "categories": list(state.categories), "keys": list(range(start, start + len(state.ids)))}


def _visible(result: dict, keys: np.ndarray, everyone: Boxes, with_masks: bool) -> tuple[Boxes, np.ndarray]:
    """The objects albumentations kept, each with its visible part and that part's area: with
    masks its mask and the mask's extent as box; without, albumentations' box (each cell's own
    filter clips it to the cell)."""
    boxes = np.asarray(result["bboxes"], np.float64).reshape(-1, 4)
    masks = None
    if with_masks:
        planes = np.ascontiguousarray(result["mask"][..., 1:].transpose(2, 0, 1))
        masks = [((planes[key // BITS] >> np.uint16(key % BITS)) & np.uint16(1)).astype(np.uint8) for key in keys]
        for n, mask in enumerate(masks):
            extent = mask_extent(mask)
            boxes[n] = (0, 0, 0, 0) if extent is None else extent
    visible = np.array([float(np.count_nonzero(m)) for m in masks]) if with_masks else boxes[:, 2] * boxes[:, 3]
    crowd = None if everyone.iscrowd is None else everyone.iscrowd[keys]
    return Boxes(boxes, everyone.categories[keys], everyone.ids[keys], masks,
                 shaped=visible > 0 if with_masks else None, iscrowd=crowd), visible


def _scale(shape: tuple[int, int], params: MosaicParams) -> tuple[float, float]:
    """How a cell scales a tile (x, y): albumentations' SmallestMaxSize (cover) or LongestMaxSize
    (contain) to the cell shape, sizes rounded as it rounds them."""
    h, w = shape
    ch, cw = params.cell_shape
    scale = (max if params.fit_mode == "cover" else min)(ch / h, cw / w)
    return max(1, round(w * scale)) / w, max(1, round(h * scale)) / h


def _record(mosaic, given: int, firsts: dict) -> dict:
    """Which tile (0 the row's image, k donor k) filled which cell [x1, y1, x2, y2] of the output,
    a donor's first new id (its objects, in its order, numbered from it), and the centre drawn (in
    the full grid, as albumentations draws it)."""
    cells = []
    for cell, k in mosaic.cells.items():
        entry = {"tile": k if k <= given else 0, "cell": [int(v) for v in cell]}
        if k in firsts:
            entry["first_id"] = firsts[k]
        cells.append(entry)
    return {"cells": cells, "centre": [int(v) for v in mosaic.centre]}


MIX = Mosaic
