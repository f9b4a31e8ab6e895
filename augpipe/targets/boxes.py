"""Detection: boxes with classes, and instance masks when the source has them.

The column is Hugging Face's object-detection layout (cppe-5's):
`objects: struct<bbox: list<fixed_size_list<float32>[4]>, category: list<int64>, area: list<float32>,
id: list<int64>, iscrowd: list<int64>[, mask: list<struct<bytes, path>>]>`, boxes COCO [x, y, w, h]
in pixels; `iscrowd` is COCO's flag as read (0 for every other source).
Instance masks ride through albumentations beside their boxes; a box the recipe drops takes its
mask with it (albumentations keeps every mask: they are reselected by each box's position in
the list it came from, carried as a label field; the objects' own ids may repeat or be anything).
After a step that moves pixels, every object with an instance mask (a polygon, an RLE, or its
filled box when it has no segment) takes its mask's extent as its box: albumentations moves the
box's corners, which after a rotation or at an edge is not the shape's extent (albumentations#746,
#1845). The readers' on-the-fly recipe, which sees only the stored masks, does the same.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import pyarrow as pa

from augpipe.errors import BadRow, SkipInput, bad_row
from augpipe.row import IMAGE_TYPE, Column, _bytes_array, _image_array
from augpipe.targets.base import Audit, Target, row_size
from augpipe.targets.masks import PlaneMasks, bit_planes, read_instance_mask, write_instance_mask

BBOX = pa.list_(pa.float32(), 4)
MAX_POINTS_PER_PIXEL = 4  # an object's polygon points, at most, per pixel of its image
# A box may overhang the image by this many pixels and is clipped: the rounding of the tool that
# wrote it, or Pascal VOC's 1-based xmax = width. Further out, the image is skipped.
EDGE = 1.0
# Health (`audit`): a box with a side under TINY pixels is tiny (ultralytics' box_candidates drops
# such boxes after augmenting, wh_thr=2); two boxes of one class overlapping by more than
# DUPLICATE_IOU are one object labelled twice; an edge over the image by more than SLACK of its
# side is outside (below the 6 decimals YOLO files hold), a row's by more than ROW_SLACK pixels
# (its boxes are rounded to 0.001 px).
TINY = 2.0
DUPLICATE_IOU = 0.9
SLACK = 1e-6
ROW_SLACK = 0.002
FEW_BOXES = 16  # up to this many, a source's boxes are checked and clipped in Python floats


@dataclass
class Boxes:
    """Objects on the current image: COCO boxes in pixels."""

    boxes: np.ndarray  # (N, 4) float64
    categories: np.ndarray  # (N,) int64
    ids: np.ndarray  # (N,) int64
    masks: Sequence | None  # N arrays H×W uint8 (0/1) (a list, or PlaneMasks), or None: no instance masks
    dropped: int = 0  # boxes the last transform dropped
    # per object: its box follows its mask (a mask with pixels); None with masks: worked out
    shaped: np.ndarray | None = None
    iscrowd: np.ndarray | None = None  # (N,) int64, COCO's flag; None: 0 for every object
    discarded: tuple[str, ...] = ()  # why each object left out on loading was (an empty mask)

    def __post_init__(self):
        if self.shaped is None and self.masks is not None:
            self.shaped = np.array([_has_pixels(self.masks, k) for k in range(len(self.masks))], bool)

    @functools.cached_property
    def planes(self) -> list[np.ndarray] | None:
        """`bit_planes` of the masks, packed once: every copy of a source starts from the state it
        loaded (masks are never changed in place; a changed state is a new Boxes)."""
        if isinstance(self.masks, PlaneMasks) and (planes := self.masks.packed()) is not None:
            return planes  # as albumentations gave them back
        return bit_planes(self.masks)

    def crowd(self) -> np.ndarray:
        return np.zeros(len(self.ids), np.int64) if self.iscrowd is None else np.asarray(self.iscrowd, np.int64)

    def kept(self, keep: np.ndarray, boxes: np.ndarray | None = None) -> "Boxes":
        """The objects at `keep` (indices or a mask), the others counted as dropped."""
        masks = None if self.masks is None else _select(self.masks, np.arange(len(self.ids))[keep])
        ids = self.ids[keep]
        return Boxes((self.boxes if boxes is None else boxes)[keep], self.categories[keep], ids, masks,
                     self.dropped + len(self.ids) - len(ids), _picked(self.shaped, keep), _picked(self.iscrowd, keep))


def _categories(row: dict) -> list[int]:
    categories = (row.get("objects") or {}).get("category")
    if categories is None:
        return []
    return categories.tolist() if isinstance(categories, np.ndarray) else categories


def _named(counts: Counter, classes: list[str]) -> Counter:
    named = Counter()
    for c, n in counts.items():
        named[_class_name(c, classes)] += n
    return named


def _class_name(c: int | None, classes: list[str]) -> str:
    return classes[c] if c is not None and 0 <= c < len(classes) else str(c)


def _picked(values: np.ndarray | None, keep) -> np.ndarray | None:
    return None if values is None else np.asarray(values)[keep]


def objects_type(masks: bool) -> pa.DataType:
    fields = [pa.field("bbox", pa.list_(BBOX)), pa.field("category", pa.list_(pa.int64())),
              pa.field("area", pa.list_(pa.float32())), pa.field("id", pa.list_(pa.int64())),
              pa.field("iscrowd", pa.list_(pa.int64()))]
    if masks:
        fields.append(pa.field("mask", pa.list_(IMAGE_TYPE)))
    return pa.struct(fields)


def objects_feature(classes: list[str], masks: bool) -> dict:
    # "Sequence", not "List": datasets 3.x cannot read the newer name
    feature = {
        "bbox": {"feature": {"dtype": "float32", "_type": "Value"}, "length": 4, "_type": "Sequence"},
        "category": {"names": list(classes), "_type": "ClassLabel"},
        "area": {"dtype": "float32", "_type": "Value"},
        "id": {"dtype": "int64", "_type": "Value"},
        "iscrowd": {"dtype": "int64", "_type": "Value"},
    }
    if masks:
        feature["mask"] = {"_type": "Image"}
    return {"feature": feature, "_type": "Sequence"}


def objects_column(classes: list[str], masks: bool) -> Column:
    return Column("objects", objects_type(masks), objects_feature(classes, masks),
                  build=lambda values: objects_array(values, masks))


def objects_array(values: list[dict], masks: bool) -> pa.Array:
    """The column from buffers (pa.array on nested lists imports pandas in every worker)."""
    counts = np.array([len(v["category"]) for v in values], dtype=np.int32)
    offsets = pa.Array.from_buffers(pa.int32(), len(values) + 1, [None, pa.py_buffer(np.concatenate(
        [[0], np.cumsum(counts)]).astype(np.int32))])

    def flat(key: str, dtype) -> np.ndarray:
        parts = [np.asarray(_per_object(v, key), dtype=dtype).reshape(-1) for v in values]
        return np.concatenate(parts) if parts else np.zeros(0, dtype)

    def arrow(data: np.ndarray, kind: pa.DataType) -> pa.Array:
        return pa.Array.from_buffers(kind, len(data), [None, pa.py_buffer(np.ascontiguousarray(data))])

    bbox = pa.FixedSizeListArray.from_arrays(arrow(flat("bbox", np.float32), pa.float32()), 4)
    children = [pa.ListArray.from_arrays(offsets, bbox),
                pa.ListArray.from_arrays(offsets, arrow(flat("category", np.int64), pa.int64())),
                pa.ListArray.from_arrays(offsets, arrow(flat("area", np.float32), pa.float32())),
                pa.ListArray.from_arrays(offsets, arrow(flat("id", np.int64), pa.int64())),
                pa.ListArray.from_arrays(offsets, arrow(flat("iscrowd", np.int64), pa.int64()))]
    if masks:
        images = [m for v in values for m in v["mask"]]
        children.append(pa.ListArray.from_arrays(offsets, _image_array(images) if images else
                                                 pa.StructArray.from_arrays([_bytes_array([], pa.binary()),
                                                                             _bytes_array([], pa.string())],
                                                                            fields=list(IMAGE_TYPE))))
    return pa.StructArray.from_arrays(children, fields=list(objects_type(masks)))


def _per_object(values: dict, key: str):
    """One field of a row's objects; a row that does not give `iscrowd` has 0 for every object."""
    value = values.get(key) if key == "iscrowd" else values[key]
    return np.zeros(len(values["category"])) if value is None else value


class BoxesKind(Target):
    name = "detection"
    spatial = True
    counted = "objects"
    balancing = "repeat factors"
    audits = ("box_outside", "box_degenerate", "box_tiny", "box_duplicate")

    target_words = {"bboxes": "boxes", "masks": "instance masks"}

    @classmethod
    def geometry_options(cls) -> dict:
        from augpipe.recipe import import_albumentations

        return {"bbox_params": import_albumentations().BboxParams(format="coco", label_fields=["categories", "keys"],
                                                                  clip=True)}

    # the row's 0/1 instance masks go through albumentations as bits of uint8 planes, 8 a plane
    # (one warp for 8 masks): set by `for_recipe` when the recipe's steps only pick mask pixels
    packs_masks = False

    def __init__(self, instance_masks: bool = False):
        self.with_masks = instance_masks
        self.albumentations_targets = ("bboxes", "masks") if instance_masks else ("bboxes",)
        self.train_tasks = ("localisation", "detection", "segmentation") if instance_masks else \
            ("localisation", "detection")

    @classmethod
    def of_scan(cls, scan) -> BoxesKind:
        """Instance masks when any object has a segment."""
        return cls(any(f.target is not None and f.target.segments and any(s is not None for s in f.target.segments)
                       for f in scan.files))

    @classmethod
    def of_manifest(cls, manifest: dict) -> BoxesKind:
        return cls(bool(manifest.get("instance_masks", False)))

    @classmethod
    def variants(cls) -> dict[str, Target]:
        return {"detection": cls(), "detection-masks": cls(True)}

    def manifest_fields(self) -> dict:
        return {"instance_masks": self.with_masks}

    def columns(self, classes, labelled):
        return [objects_column(classes, self.with_masks)]

    def reader_columns(self) -> list[str]:
        return ["objects", "width", "height"]

    def count(self, rows, classes, src) -> Counter:
        """Objects a class."""
        indices = Counter()
        for row in rows:
            indices.update(_categories(row))  # counted by index in C, named once a class
        return _named(indices, classes)

    def row_classes(self, row, classes) -> Counter:
        return _named(Counter(_categories(row)), classes)

    def object_classes(self, state: Boxes) -> list[int]:
        return [] if state is None else state.categories.tolist()

    def held(self, src, classes) -> Counter:
        """Objects a class, as annotated."""
        return Counter(classes[c] for c in src.target.categories) if src.target is not None else Counter()

    def compose_transforms(self, recipe) -> list[dict]:
        """Rotations default to the recipe's `rotate_method`."""
        from augpipe.recipe import with_rotate_method

        return [with_rotate_method(s, recipe.rotate_method) for s in recipe.transforms]

    def check_recipe(self, recipe) -> list[str]:
        from augpipe.recipe import mirror_warnings

        return mirror_warnings(recipe)

    def compose_options(self, recipe) -> dict:
        from augpipe.recipe import import_albumentations

        A = import_albumentations()
        b = recipe.bbox_params
        return {"bbox_params": A.BboxParams(format="coco", label_fields=["categories", "keys"], clip=True,
                                            min_area=b.min_area, min_visibility=b.min_visibility,
                                            min_width=b.min_width, min_height=b.min_height)}

    # ------------------------------------------------------------ in

    def load(self, src, decoded, extra):
        """The objects on the decoded image. Boxes and polygons are taken as drawn on the upright
        image, EXIF orientation applied, as the formats' reference tools read them (ultralytics for
        YOLO, detectron2 and mmdetection for COCO and VOC): they are not turned with the pixels."""
        objects = src.target
        size = (decoded.rgb.shape[1], decoded.rgb.shape[0])
        boxes = _checked(_absolute(objects, size), size)
        categories = np.asarray(objects.categories, dtype=np.int64)
        try:
            ids = np.asarray(objects.ids or range(len(categories)), dtype=np.int64)
        except (OverflowError, ValueError, TypeError):
            raise SkipInput("an annotation id is not a whole number that fits in 64 bits") from None
        masks = _masks(objects, size) if self.with_masks else None
        iscrowd = np.asarray(objects.iscrowd, dtype=np.int64) if objects.iscrowd else None
        state = _without_empty(Boxes(boxes, categories, ids, masks, iscrowd=iscrowd), objects)
        # the form a copy's objects take (no packing: its planes would only be unpacked)
        loaded = self.outputs(self.inputs(state, pack=False), state)
        return dataclasses.replace(loaded, discarded=state.discarded) if state.discarded else loaded

    def example(self, width: int, height: int) -> Boxes:
        box = np.array([[width / 4, height / 4, width / 2, height / 2]])
        masks = None
        if self.with_masks:
            mask = np.zeros((height, width), np.uint8)
            mask[height // 4:3 * height // 4, width // 4:3 * width // 4] = 1
            masks = [mask]
        return Boxes(box, np.zeros(1, np.int64), np.zeros(1, np.int64), masks)

    def for_recipe(self, recipe) -> BoxesKind:
        """With instance masks and a recipe whose steps move mask pixels by position only (or
        leave them), the kind that packs them (`packs_masks`)."""
        transforms, kind = getattr(self, "_for", (None, self))  # the last recipe's
        if transforms is not recipe.transforms:
            from augpipe.targets.geometry import picks_mask_pixels

            kind = self
            if self.with_masks and picks_mask_pixels(recipe.transforms):
                kind = copy.copy(self)
                kind.packs_masks = True
                kind._for = (recipe.transforms, kind)
            self._for = (recipe.transforms, kind)
        return kind

    def inputs(self, state: Boxes, pack: bool = True) -> dict:
        inputs = {"bboxes": np.asarray(state.boxes, dtype=np.float64).reshape(-1, 4),
                  "categories": np.asarray(state.categories).tolist(), "keys": list(range(len(state.boxes)))}
        if state.masks is not None and len(state.masks):
            inputs["masks"] = (pack and self.packs_masks and state.planes) or list(state.masks)
        return inputs

    def _masks_out(self, result: dict, state: Boxes) -> list:
        """The masks albumentations gave back, one an object: unpacked when `inputs` packed them
        (then fewer came back than went in: 2 or more masks make fewer planes)."""
        masks = result.get("masks", [])
        n = len(state.masks)
        return PlaneMasks(list(masks), range(n)) if self.packs_masks and 0 < len(masks) < n else masks

    def outputs(self, result: dict, state: Boxes) -> Boxes:
        boxes = np.asarray(result["bboxes"], dtype=np.float64).reshape(-1, 4)
        # label fields come back as floats; a box of no width or height (a mirror image at the edge
        # of a reflecting border) is no object
        keys = np.asarray(result["keys"], dtype=np.float64).astype(np.int64)
        categories = np.asarray(result["categories"], dtype=np.float64).astype(np.int64)
        # as written: to 0.001 px (np.round(v, 3) > 0 is rint(v * 1000) > 0: v * 1000 > 0.5)
        if not all(w * 1000.0 > 0.5 and h * 1000.0 > 0.5 for w, h in boxes[:, 2:4].tolist()):
            kept = (boxes[:, 2:4].round(3) > 0).all(axis=1)
            boxes, keys, categories = boxes[kept], keys[kept], categories[kept]
        masks = None
        if state.masks is not None:
            masks = _reselect(self._masks_out(result, state), boxes, keys)
        return Boxes(boxes, categories, state.ids[keys], masks, dropped=len(state.ids) - len(set(keys.tolist())),
                     shaped=_picked(state.shaped, keys), iscrowd=_picked(state.iscrowd, keys))

    def moved(self, state: Boxes, bbox_params=None) -> Boxes:
        """After a step that moved pixels: each object whose mask has pixels takes its mask's extent
        as its box; one whose mask has no pixel left, or whose box falls under the recipe's
        min_area, min_width or min_height (albumentations checked its own, looser box), is dropped
        with it. min_visibility stays albumentations' judgement (a share of the moved box)."""
        if state.masks is None or state.shaped is None or not state.shaped.any():
            return state
        boxes = state.boxes.copy()
        keep = np.ones(len(boxes), bool)
        for k in np.flatnonzero(state.shaped):
            extent = _extent(state.masks, k)
            keep[k] = extent is not None and _large_enough(extent, bbox_params)
            if keep[k]:
                boxes[k] = extent
        return state.kept(keep, boxes)

    # ------------------------------------------------------------ out

    def values(self, state: Boxes, image) -> dict:
        masks = state.masks
        if masks is not None:
            areas = [_area(masks, k) for k in range(len(masks))]
        else:
            areas = (state.boxes[:, 2] * state.boxes[:, 3]).astype(np.float64)  # w * h in the boxes' type
        # to a thousandth of a pixel: albumentations' normalised round trip leaves 60.0000038 for 60
        objects = {"bbox": np.round(state.boxes, 3).astype(np.float32), "category": state.categories,
                   "area": np.round(areas, 3), "id": state.ids, "iscrowd": state.crowd()}
        if masks is not None:
            objects["mask"] = [{"bytes": _png(masks, k), "path": None} for k in range(len(masks))]
        return {"objects": objects}

    def caption(self, values: dict, original: dict | None) -> str:
        ids = field(values, "id")
        text = f"{len(ids)} box{'' if len(ids) == 1 else 'es'}"
        before = field(original or {}, "id")
        dropped = len(set(before) - set(ids))
        return text + (f", {dropped} dropped" if dropped else "")

    def draw(self, rgb, values: dict, classes: list[str]):
        from augpipe.targets.drawing import draw_boxes, overlay

        image = rgb
        for m, c in zip(field(values, "mask"), field(values, "category")):
            if m and m.get("bytes"):
                image = overlay(image, read_instance_mask(m["bytes"]).astype(np.int64) * (int(c) + 1) - 1)
        return draw_boxes(image, field(values, "bbox"), field(values, "category"), classes)

    def arrays(self, row):
        out = arrays(row, self.with_masks)
        if found := self._category_outside(out["labels"]):
            raise ValueError(f"box {found[0]}: {found[1]}")
        return out

    def _category_outside(self, labels: np.ndarray) -> tuple[int, str] | None:
        """The first of these categories outside the dataset's classes (its place, and why), or None."""
        n = self.known_classes
        if n is None or not len(labels) or (labels.min() >= 0 and labels.max() < n):
            return None
        k = int(np.flatnonzero((labels < 0) | (labels >= n))[0])
        return k, self.class_problem(int(labels[k])).replace("label", "category", 1)

    def from_arrays(self, arrays: dict, shape) -> Boxes:
        """Instance masks when the kind has them or the arrays give them."""
        boxes = np.asarray(arrays["boxes"], dtype=np.float64).reshape(-1, 4)
        n = len(boxes)
        labels = np.asarray(arrays["labels"], dtype=np.int64).reshape(n)
        ids = np.asarray(arrays.get("ids", np.arange(n)), dtype=np.int64).reshape(n)
        if len(set(ids.tolist())) < n:  # masks are paired with boxes by id: make them unique
            ids = np.arange(n, dtype=np.int64)
        masks = None
        if self.with_masks or "masks" in arrays:
            given = arrays.get("masks")
            masks = [] if given is None else [np.ascontiguousarray(m, dtype=np.uint8) for m in given]
            if len(masks) != n:
                raise ValueError(f"{n} boxes but {len(masks)} instance masks")
        crowd = arrays.get("iscrowd")
        crowd = None if crowd is None else np.asarray(crowd, np.int64).reshape(n)
        return Boxes(boxes, labels, ids, masks, iscrowd=crowd)

    def to_arrays(self, state: Boxes, shape) -> dict:
        """As `expand` would write them: boxes to a thousandth of a pixel, in float32."""
        out = {"boxes": np.round(state.boxes, 3).astype(np.float32).reshape(-1, 4),
               "labels": np.asarray(state.categories, dtype=np.int64),
               "ids": np.asarray(state.ids, dtype=np.int64)}
        if state.iscrowd is not None:
            out["iscrowd"] = state.crowd()
        if state.masks is not None:
            h, w = shape[:2]
            out["masks"] = (np.stack([(np.asarray(m) > 0) for m in state.masks]).astype(np.uint8)
                            if len(state.masks) else np.zeros((0, h, w), np.uint8))
        return out

    def torch_target(self, arrays, box_format, convention):
        """{"boxes": float32 [N, 4] in pixels, xyxy (torchvision's) or xywh (COCO's), "labels":
        int64 [N] (from 1 with the torchvision convention: 0 is its background), and with
        instance masks "masks": uint8 [N, H, W] of 0/1}."""
        import torch

        boxes = torch.from_numpy(np.array(arrays["boxes"], dtype=np.float32).reshape(-1, 4))
        if box_format == "xyxy":
            boxes[:, 2:] += boxes[:, :2]
        labels = torch.from_numpy(np.asarray(arrays["labels"], dtype=np.int64).reshape(-1))
        out = {"boxes": boxes, "labels": labels + 1 if convention == "torchvision" else labels}
        if "masks" in arrays:
            out["masks"] = torch.from_numpy(np.ascontiguousarray(arrays["masks"], dtype=np.uint8))
        return out

    def torch_targets(self, table, box_format, convention, rows=None):
        """`torch_target` of each row, the boxes and labels of all rows converted at once (each
        row's tensors views of one tensor a field); with instance masks, or for a kind whose rows
        hold more (keypoints), row by row."""
        if not self._joined_targets():
            return super().torch_targets(table, box_format, convention, rows)
        try:
            fields, counts = self.torch_columns(table if rows is None else table.select(["objects"]).take(rows),
                                               box_format, convention)
        except BadRow as exc:
            raise bad_row(exc.row if rows is None else rows[exc.row], str(exc)) from None
        boxes, labels = fields["boxes"], fields["labels"]
        return [{"boxes": b, "labels": c} for b, c in zip(boxes.split(counts), labels.split(counts))]

    def _joined_targets(self) -> bool:
        return not self.with_masks and type(self).torch_target is BoxesKind.torch_target

    def torch_columns(self, table, box_format, convention):
        """Every row's boxes and labels, one tensor each (None with instance masks, or for a kind
        whose rows hold more: keypoints)."""
        if not self._joined_targets():
            return None
        import pyarrow.compute as pc
        import torch

        objects = table.column("objects")
        bbox, category = pc.struct_field(objects, "bbox"), pc.struct_field(objects, "category")
        counts = pc.fill_null(pc.list_value_length(bbox), 0).to_numpy()
        _check_counts(counts, pc.fill_null(pc.list_value_length(category), 0).to_numpy(), bbox, category)
        counts = counts.tolist()
        # copies: the tensors are changed in place and handed out; Arrow's buffers are read-only
        values = pc.list_flatten(pc.list_flatten(bbox)).to_numpy(zero_copy_only=False)  # a null as NaN
        if (k := not_finite(values)) is not None:
            raise bad_row(int(pc.list_parent_indices(bbox).to_numpy()[k]), f"box {_in_row(bbox, k)} {NOT_FINITE}")
        boxes = torch.from_numpy(values.astype(np.float32).reshape(-1, 4))
        if box_format == "xyxy":
            boxes[:, 2:] += boxes[:, :2]
        labels = torch.from_numpy(pc.list_flatten(category).to_numpy().astype(np.int64))
        if found := self._category_outside(labels.numpy()):
            k, why = found
            raise bad_row(int(pc.list_parent_indices(category).to_numpy()[k]), f"box {_in_row(category, k)}: {why}")
        if convention == "torchvision":
            labels += 1
        return {"boxes": boxes, "labels": labels}, counts

    def from_user_target(self, target, shape, box_format, convention):
        import torch

        boxes = np.array(_numpy(target["boxes"]), dtype=np.float64).reshape(-1, 4)
        if box_format == "xyxy":
            boxes[:, 2:] -= boxes[:, :2]
        n = len(boxes)
        # objects are known by their position in here: the boxes that survive say which they are
        arrays = {"boxes": boxes, "labels": np.asarray(_numpy(target["labels"]), dtype=np.int64).reshape(n),
                  "ids": np.arange(n, dtype=np.int64)}
        if "masks" in target:
            arrays["masks"] = (np.asarray(_numpy(target["masks"])) > 0).astype(np.uint8).reshape(n, *shape[:2])
        tensors = isinstance(target["boxes"], torch.Tensor) or convention == "torchvision"
        return arrays, lambda a: _restored(target, a, n, box_format, tensors)

    def verify(self, row, width, height, classes, decode=True):
        problems = []
        boxes, categories = field(row, "bbox"), field(row, "category")
        if len(boxes) != len(categories):
            problems.append(f"{len(boxes)} boxes but {len(categories)} categories")
        for k, box in enumerate(boxes):
            if box is None or len(box) != 4 or None in box:
                problems.append(f"box {k} {box}: not 4 numbers")
                continue
            why = box_problem(box, (width, height))
            if why is not None and why.startswith("outside"):
                problems.append(f"box {k} {[round(v, 1) for v in box]}: {why}")
            elif why is not None:
                problems.append(f"box {k} {list(box)}: {why}")
        for k, c in enumerate(categories):
            if c is None:
                problems.append(f"box {k}: no category (null)")
            elif not 0 <= c < len(classes):
                problems.append(f"box {k}: category {c} outside the {len(classes)} classes")
        for name, what in (("id", "ids"), ("iscrowd", "iscrowd flags")):  # what the readers pair with the boxes
            values = (row.get("objects") or {}).get(name)
            if values is not None and len(values) != len(boxes):
                problems.append(f"{len(boxes)} boxes but {len(values)} {what}")
        stored = field(row, "mask")
        if self.with_masks and (why := masks_unpaired(stored, len(boxes))):
            problems.append(why)
        for k, m in enumerate(stored):
            if not m or m.get("bytes") is None:
                continue
            try:
                _instance_mask(k, m["bytes"], (width, height)) if decode else _mask_header(k, m["bytes"], (width, height))
            except ValueError as exc:
                problems.append(str(exc))
        return problems

    # ------------------------------------------------------------ health

    def audit(self, src, extra, size, classes) -> Audit:
        """The boxes as the format read them, before expand clips them: each problem with its
        object, and the image's figures."""
        objects = src.target
        ids = objects.ids or tuple(range(len(objects.categories)))
        found = audit_boxes(_absolute(objects, size), objects.categories, ids, size, classes)
        found.problems += _over_one(objects, ids, {w for c, w, _ in found.problems if c == "box_outside"})
        declared = None if objects.normalised else objects.canvas
        if declared is not None and tuple(declared) != tuple(size):
            found.problems.append(("annotation_unreadable", "", "the annotation gives the image's size as "
                                   f"{_number(declared[0])}×{_number(declared[1])}, the image is "
                                   f"{size[0]}×{size[1]}"))
        if self.with_masks:
            found.problems += _mask_problems(objects, size, ids)
        return found

    def audit_row(self, row, classes) -> Audit:
        size = row_size(row)
        boxes = np.asarray(field(row, "bbox"), dtype=np.float64).reshape(-1, 4)
        return audit_boxes(boxes, field(row, "category"), field(row, "id") or range(len(boxes)), size, classes,
                           ROW_SLACK)


def _over_one(objects, ids, flagged: set) -> list[tuple[str, str, str]]:
    """Normalised values over 1 that no edge shows (a width of 1.0000001 about the centre):
    ultralytics refuses the file for them."""
    if not objects.normalised:
        return []
    return [("box_outside", where(k, ids), f"normalised cx, cy, w, h [{', '.join(f'{v:.10g}' for v in box)}]: a value "
             "over 1, which ultralytics refuses") for k, box in enumerate(objects.boxes)
            if any(v > 1 for v in box) and where(k, ids) not in flagged]


def box_check(why: str) -> str:
    """The health check of a `box_problem` reason."""
    return "annotation_unreadable" if why == "not a number" else "box_outside" if why.startswith("outside") \
        else "box_degenerate"


def where(k: int, ids) -> str:
    """An object in a problem's `where`: its position, and its own id when that differs."""
    return f"object {k}" if int(ids[k]) == k else f"object {k} (id {ids[k]})"


def audit_boxes(boxes: np.ndarray, categories, ids, size: tuple[int, int], classes: list[str],
                slack_px: float = 0.0) -> Audit:
    """Boxes COCO [x, y, w, h] in pixels, unclipped, on an image of `size`: unknown classes, boxes
    that are no numbers, of no size, over the image's edge, tiny, or labelled twice."""
    problems = []
    w, h = size
    categories, ids = [int(c) for c in categories], list(ids)
    if not len(boxes) == len(categories) == len(ids):  # a row edited by hand: as --verify says it
        return Audit([("annotation_unreadable", "objects", f"{len(boxes)} boxes but {len(categories)} categories "
                       f"and {len(ids)} ids")], {"size": [w, h], "objects": 0, "classes": {}, "boxes": []}, ())
    named = [0 <= c < len(classes) for c in categories]
    for k, box in enumerate(boxes):
        if not named[k]:
            problems.append(("unknown_class", where(k, ids), f"class {categories[k]}: not one of the "
                                                            f"{len(classes)} classes"))
        why = box_problem(box)
        if why is not None:
            problems.append((box_check(why), where(k, ids), f"box [{_shown(box)}]: {why}"))
            continue
        problems += [(check, where(k, ids), detail) for check, detail in _box_notes(box, size, slack_px)]
    good = np.array([box_problem(b) is None for b in boxes], bool)
    clipped = _clipped(boxes, size)
    problems += _duplicates(clipped, categories, good, ids)
    kept = [k for k in range(len(boxes)) if good[k]]
    facts = {"size": [w, h], "objects": len(categories),
             "classes": dict(Counter(classes[c] if named[k] else f"class {c}" for k, c in enumerate(categories))),
             "boxes": [[categories[k], round(float(clipped[k, 2]) / w, 6), round(float(clipped[k, 3]) / h, 6)]
                       for k in kept]}
    # to 1% of the image: the same boxes redrawn by hand, or rounded by a tool, are the same labels
    signature = tuple(sorted((categories[k], *(round(float(v), 2) for v in clipped[k] / (w, h, w, h))) for k in kept))
    return Audit(problems, facts, signature)


def _shown(box) -> str:
    return ", ".join(f"{float(v):.6g}" for v in box)


def _box_notes(box, size: tuple[int, int], slack_px: float) -> list[tuple[str, str]]:
    """A real box's overhang of each edge (which expand clips, or skips the image for beyond
    EDGE), and whether, clipped, it is tiny."""
    x, y, bw, bh = (float(v) for v in box)
    w, h = size
    out = [("box_outside", why) for why in overhang(box, size, slack_px)]
    cw = min(x + bw, w) - max(x, 0.0)
    ch = min(y + bh, h) - max(y, 0.0)
    if 0 < min(cw, ch) < TINY:
        out.append(("box_tiny", f"box [{_shown(box)}] is {cw:.3g}×{ch:.3g} px in the image: a side under {TINY:g} px"))
    return out


def overhang(box, size: tuple[float, float], slack_px: float = 0.0) -> list[str]:
    """Each edge of a COCO box in pixels over the image's edge, by how much and what expand does."""
    x, y, bw, bh = (float(v) for v in box)
    w, h = size
    over = {"left": -x, "top": -y, "right": x + bw - w, "bottom": y + bh - h}
    out = []
    for edge, by in over.items():
        side = w if edge in ("left", "right") else h
        if by > max(SLACK * side, slack_px):
            fate = "expand clips it to the image" if by <= EDGE else "expand skips the image"
            out.append(f"box [{_shown(box)}] over the {edge} edge by {by:.4g} px "
                       f"({by / side:.4g} of the {'width' if edge in ('left', 'right') else 'height'}): {fate}")
    return out


def _clipped(boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    b = np.nan_to_num(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    x0, y0 = np.clip(b[:, 0], 0, w), np.clip(b[:, 1], 0, h)
    x1, y1 = np.clip(b[:, 0] + b[:, 2], 0, w), np.clip(b[:, 1] + b[:, 3], 0, h)
    return np.stack([x0, y0, np.maximum(x1 - x0, 0), np.maximum(y1 - y0, 0)], axis=1)


def _duplicates(boxes: np.ndarray, categories: list[int], good: np.ndarray, ids) -> list[tuple[str, str, str]]:
    """Each box of a class that overlaps an earlier one of that class by IoU > DUPLICATE_IOU (rows
    of IoU a chunk at a time: a crowd of 10,000 boxes is no 10,000² matrix)."""
    out = []
    cats = np.asarray(categories, dtype=np.int64)
    for c in sorted(set(categories)):
        index = np.flatnonzero((cats == c) & good)
        for start in range(1, len(index), 256):
            rows = index[start:start + 256]
            iou = _iou(boxes[rows], boxes[index[:start + len(rows)]])
            iou[np.arange(len(rows))[:, None] + start <= np.arange(iou.shape[1])] = 0  # earlier boxes only
            for r, j in enumerate(rows):
                i = int(np.argmax(iou[r]))
                if iou[r, i] > DUPLICATE_IOU:
                    out.append(("box_duplicate", where(int(j), ids),
                                f"the same class as {where(int(index[i]), ids)}, IoU {iou[r, i]:.3f}"))
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of each COCO box of `a` with each of `b`, (len(a), len(b))."""
    iw = np.minimum(a[:, None, 0] + a[:, None, 2], b[:, 0] + b[:, 2]) - np.maximum(a[:, None, 0], b[:, 0])
    ih = np.minimum(a[:, None, 1] + a[:, None, 3], b[:, 1] + b[:, 3]) - np.maximum(a[:, None, 1], b[:, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + b[:, 2] * b[:, 3] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _mask_problems(objects, size: tuple[int, int], ids) -> list[tuple[str, str, str]]:
    """Instance masks that cannot be drawn (expand skips the image), or cover no pixel (expand
    leaves the object out)."""
    try:
        masks = _masks(objects, size)
    except SkipInput as exc:
        return [("annotation_unreadable", "", exc.reason)]
    segments = objects.segments or (None,) * len(masks)
    return [("box_degenerate", where(k, ids), f"its {_described(segments[k])} covers no pixel: expand leaves the "
                                              "object out")
            for k, m in enumerate(masks) if not m.any()]


def arrays(row: dict, masks: bool) -> dict:
    """boxes float32 (N, 4) COCO [x, y, w, h] in pixels, labels and ids int64 (N,), iscrowd int64
    (N,) when the row has it, and with instance masks, masks uint8 (N, H, W) of 0/1. A row whose
    fields do not hold together (a box of 3 numbers, more categories than boxes, an object without
    its mask: expand writes one for each) is a ValueError."""
    categories = field(row, "category")
    if None in categories:
        raise ValueError(f"box {categories.index(None)} has no category (null)")
    given = field(row, "bbox")
    if (k := next((k for k, b in enumerate(given) if b is None or len(b) != 4), None)) is not None:
        raise ValueError(f"box {k} is not 4 numbers ({given[k]})")
    out = {"boxes": np.asarray(given, dtype=np.float32).reshape(-1, 4),
           "labels": np.asarray(categories, dtype=np.int64),
           "ids": np.asarray(field(row, "id"), dtype=np.int64)}
    if "iscrowd" in (row.get("objects") or {}):
        out["iscrowd"] = np.asarray(field(row, "iscrowd"), dtype=np.int64)
    n = len(out["boxes"])
    if (k := not_finite(out["boxes"])) is not None:  # a null read as NaN too
        raise ValueError(f"box {k} {NOT_FINITE}")
    if masks and "mask" in (row.get("objects") or {}):  # a reader of the boxes alone (a trainer's) leaves the masks out
        w, h = row_size(row)
        stored = field(row, "mask")
        if why := masks_unpaired(stored, n):
            raise ValueError(why)
        decoded = [_instance_mask(k, m["bytes"], (w, h)) for k, m in enumerate(stored)]
        out["masks"] = np.stack(decoded) if n else np.zeros((0, h, w), np.uint8)
    for name, what in (("labels", "categories"), ("ids", "ids"), ("iscrowd", "iscrowd flags")):
        if name in out and len(out[name]) != n:
            raise ValueError(f"{n} boxes but {len(out[name])} {what}")
    return out


NOT_FINITE = "holds a number that is not finite (NaN, infinite or null)"


def not_finite(values: np.ndarray) -> int | None:
    """The first box (4 numbers a box, end to end) holding a number that is not finite, or None."""
    bad = ~np.isfinite(values.reshape(-1, 4)).all(axis=1)
    return int(np.argmax(bad)) if bad.any() else None


def _in_row(bbox, k: int) -> int:
    """Box k of a column's boxes end to end, counted within its row."""
    import pyarrow.compute as pc

    parents = pc.list_parent_indices(bbox).to_numpy()
    return int(k - np.searchsorted(parents, parents[k]))


def masks_unpaired(stored: list, n: int) -> str | None:
    """Why a row's instance masks do not pair with its n boxes (their count, a mask missing)."""
    if len(stored) != n:
        return f"{n} box{'' if n == 1 else 'es'} but {len(stored)} instance mask{'' if len(stored) == 1 else 's'}"
    missing = [k for k, m in enumerate(stored) if not m or m.get("bytes") is None]
    return f"instance mask {missing[0]} is missing" if missing else None


def _instance_mask(k: int, data: bytes, size: tuple[int, int]) -> np.ndarray:
    """A row's instance mask k, its image's size (w, h), or a ValueError saying what it is."""
    try:
        mask = read_instance_mask(data)
    except Exception:  # noqa: BLE001 - any failure to decode is the damage reported
        raise ValueError(f"instance mask {k} does not decode") from None
    if mask.shape[:2] != (size[1], size[0]):
        raise ValueError(f"instance mask {k} is {mask.shape[1]}×{mask.shape[0]}, the row's size {size[0]}×{size[1]}")
    return mask


def _mask_header(k: int, data: bytes, size: tuple[int, int]) -> None:
    """`_instance_mask`'s size check from the mask's header alone (a ValueError when it is not
    the row's size); one whose header does not read is left to its decode."""
    from augpipe.headers import read_header

    try:
        header = read_header(data)
    except SkipInput:
        return
    if (header.width, header.height) != size:
        raise ValueError(f"instance mask {k} is {header.width}×{header.height}, the row's size {size[0]}×{size[1]}")


def _check_counts(boxes, categories, bbox, category) -> None:
    """Each row's boxes of 4 numbers, as many as its categories, none of them null; else `BadRow`
    naming the first row that is not (its batch's labels would go to the next rows' boxes)."""
    import pyarrow.compute as pc

    flat = pc.list_flatten(category)
    if flat.null_count:
        first = int(np.flatnonzero(pc.is_null(flat).to_numpy(zero_copy_only=False))[0])
        raise bad_row(int(pc.list_parent_indices(category).to_numpy()[first]), "a box has no category (null)")

    if not np.array_equal(boxes, categories):
        k = int(np.flatnonzero(boxes != categories)[0])
        raise bad_row(k, f"{boxes[k]} boxes but {categories[k]} categories")
    sides = pc.fill_null(pc.list_value_length(pc.list_flatten(bbox)), 0).to_numpy(zero_copy_only=False)
    if len(sides) and (sides != 4).any():
        box = int(np.flatnonzero(sides != 4)[0])
        raise bad_row(int(pc.list_parent_indices(bbox).to_numpy()[box]), "a box that is not 4 numbers")


def _numpy(value):
    return value.detach().cpu().numpy() if hasattr(value, "detach") else value


def _restored(target: dict, a: dict, n: int, box_format: str, tensors: bool) -> dict:
    """The user's target's own keys: boxes, labels, masks augmented; any other per-object field
    ("ids", "area", "iscrowd"...) kept, as it was, for the objects that survived; as tensors when
    the boxes came as one (or for torchvision), a tensor given keeping its dtype."""
    import torch

    out = {}
    for k, v in target.items():
        if k == "boxes":
            value = a["boxes"].astype(np.float32).copy()
            if box_format == "xyxy":
                value[:, 2:] += value[:, :2]
        elif k in ("labels", "masks"):
            value = a[k]
        elif np.ndim(_numpy(v)) >= 1 and len(v) == n:
            value = np.asarray(_numpy(v))[a["ids"]]
        else:
            out[k] = v
            continue
        if tensors or isinstance(v, torch.Tensor):
            out[k] = torch.from_numpy(np.ascontiguousarray(value))
            if isinstance(v, torch.Tensor):
                out[k] = out[k].to(v.dtype)
        else:
            out[k] = value
    return out


def field(row: dict, name: str) -> list:
    """One field of a row's objects as a list (rows read back hold lists; fresh ones arrays)."""
    value = (row.get("objects") or {}).get(name)
    return [] if value is None else list(value)


def mask_extent(mask: np.ndarray) -> np.ndarray | None:
    """The COCO box [x, y, w, h] around a mask's pixels (pixel edges), None when it has none."""
    mask = np.asarray(mask)
    if mask.dtype != np.uint8 or mask.ndim != 2:
        mask = (mask != 0).astype(np.uint8).reshape(mask.shape[-2:])
    x, y, w, h = cv2.boundingRect(mask)  # of the non-zero pixels
    return None if w == 0 else np.array([x, y, w, h], dtype=np.float64)


# An object's mask among a state's masks (a list of arrays, or PlaneMasks: worked out from the
# planes albumentations gave back, the same to the byte)

def _extent(masks, k: int) -> np.ndarray | None:
    """`mask_extent` of masks[k]."""
    if not isinstance(masks, PlaneMasks):
        return mask_extent(masks[k])
    extent = masks.extent(k)
    return None if extent is None else np.array(extent, dtype=np.float64)


def _has_pixels(masks, k: int) -> bool:
    return masks.extent(k) is not None if isinstance(masks, PlaneMasks) else any_pixel(masks[k])


def _area(masks, k: int) -> float:
    """`pixels_in` of masks[k]."""
    return masks.area(k) if isinstance(masks, PlaneMasks) else pixels_in(masks[k])


def _png(masks, k: int) -> bytes:
    """`write_instance_mask` of masks[k]."""
    return masks.png(k) if isinstance(masks, PlaneMasks) else write_instance_mask(masks[k])


def _select(masks, picks):
    return masks.select(picks) if isinstance(masks, PlaneMasks) else [masks[k] for k in picks]


def pixels_in(mask: np.ndarray) -> float:
    """The sum of a mask's values (its pixels, for a 0/1 mask), as float(mask.sum()) gives it."""
    mask = np.asarray(mask)
    return float(cv2.sumElems(mask)[0]) if mask.dtype == np.uint8 and mask.ndim == 2 else float(mask.sum())


def any_pixel(mask: np.ndarray) -> bool:
    mask = np.asarray(mask)
    return cv2.countNonZero(mask) > 0 if mask.dtype == np.uint8 and mask.ndim == 2 else bool(mask.any())


def _large_enough(box: np.ndarray, bbox_params) -> bool:
    if bbox_params is None:
        return True
    _, _, w, h = box
    return w * h >= bbox_params.min_area and w >= bbox_params.min_width and h >= bbox_params.min_height


def _reselect(masks, boxes: np.ndarray, keys: np.ndarray):
    """The instance masks of the boxes that survived, by their key (albumentations keeps every
    mask). A reflecting border mirrors an object into the border and albumentations adds a box
    for the mirror image, with the same key: each such box gets the part of the mask inside it."""
    repeated = {k for k, n in Counter(keys.tolist()).items() if n > 1}  # not np.unique: a few keys, 20× its time
    if not repeated and isinstance(masks, PlaneMasks):
        return masks.select(keys.tolist())
    out = []
    for box, k in zip(boxes, keys):
        mask = np.asarray(masks[int(k)], dtype=np.uint8)
        if int(k) in repeated:
            x, y, w, h = box
            inside = np.zeros_like(mask)
            rows, cols = slice(int(y), int(math.ceil(y + h))), slice(int(x), int(math.ceil(x + w)))
            inside[rows, cols] = mask[rows, cols]
            mask = inside
        out.append(mask)
    return out


def box_problem(box, size: tuple[float, float] | None = None) -> str | None:
    """Why a COCO [x, y, w, h] box is no box (None when it is one): not a number, no width or
    height, or (given the image's width and height) over its edge by more than EDGE. Every
    reader, the worker and `--verify` check boxes here."""
    x, y, w, h = box
    if not all(math.isfinite(v) for v in box):
        return "not a number"
    if w <= 0 or h <= 0:
        return f"{'width' if w <= 0 else 'height'} ≤ 0"
    if size is not None:
        width, height = size
        if x < -EDGE or y < -EDGE or x + w > width + EDGE or y + h > height + EDGE:
            return f"outside the {_number(width)}×{_number(height)} image"
    return None


def _number(v) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _absolute(objects, size: tuple[int, int]) -> np.ndarray:
    boxes = np.asarray(objects.boxes, dtype=np.float64).reshape(-1, 4)
    if objects.normalised:  # YOLO: centre and size, fractions of the image
        w, h = size
        boxes = np.stack([(boxes[:, 0] - boxes[:, 2] / 2) * w, (boxes[:, 1] - boxes[:, 3] / 2) * h,
                          boxes[:, 2] * w, boxes[:, 3] * h], axis=1)
    return boxes


def _checked(boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Boxes inside the image, or SkipInput naming the first that is not (in pixels); clipped to it."""
    rows = boxes.tolist()  # Python floats: numpy's scalars cost 10 times as much
    for k, box in enumerate(rows):
        why = box_problem(box, size)
        if why is not None:
            raise SkipInput(f"box {k} [{', '.join(f'{v:.1f}' for v in box)}]: {why}")
    if not len(boxes):
        return boxes
    w, h = size
    if len(rows) <= FEW_BOXES:  # np.clip's rule with scalar bounds (-0.0 stays), on Python floats
        w, h = float(w), float(h)
        out = []
        for x, y, bw, bh in rows:
            x0, y0, x1, y1 = (0.0 if v < 0.0 else side if v > side else v
                              for v, side in ((x, w), (y, h), (x + bw, w), (y + bh, h)))
            out.append([x0, y0, x1 - x0, y1 - y0])
        return np.array(out, dtype=np.float64)
    # the corners x0, x1 and y0, y1 by scalar bounds (array bounds turn -0.0 into 0.0)
    xs = np.clip(boxes[:, 0::2].cumsum(axis=1), 0, w)
    ys = np.clip(boxes[:, 1::2].cumsum(axis=1), 0, h)
    return np.stack([xs[:, 0], ys[:, 0], xs[:, 1] - xs[:, 0], ys[:, 1] - ys[:, 0]], axis=1)


def _masks(objects, size: tuple[int, int]) -> list[np.ndarray]:
    """Each object's instance mask: polygons filled (all of them at once), RLE decoded; an object
    without one gets its box, filled."""
    w, h = size
    segments = objects.segments or (None,) * len(objects.categories)
    # a mask an array: one stack of them, over 4 MB, gets huge pages from numpy, each of which a
    # small object's fill would zero whole (2 MB): 120 ms for 100 objects at 1333 × 800
    masks = [np.zeros((h, w), np.uint8) for _ in segments]
    polygons = []
    for k, (box, segment) in enumerate(zip(_absolute(objects, size), segments)):
        if segment is None:
            x, y, bw, bh = box
            polygons.append((k, np.array([[x, y], [x + bw, y], [x + bw, y + bh], [x, y + bh]])))
        elif segment[0] == "polygon":
            scale = np.array([w, h], dtype=np.float64) if objects.normalised else 1.0
            points = sum(len(p) for p in segment[1]) // 2
            if points > MAX_POINTS_PER_PIXEL * w * h + 64:
                # more corners than the image has pixel corners draw nothing more, and cost a fill each
                raise SkipInput(f"box {k}: its polygons have {points:,} points, more than a {w}×{h} image can show")
            polygons.extend((k, _polygon(k, np.asarray(p, dtype=np.float64).reshape(-1, 2) * scale, size))
                            for p in segment[1])
        else:
            masks[k] = _rle(segment[1], (h, w))
    fill_polygons(masks, polygons)
    return masks


def _polygon(k: int, points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A polygon's points, or SkipInput: numbers, and none further outside the image than the
    image is wide or high (a point at 1e300 is no drawing; filling it would overflow)."""
    w, h = size
    if not np.isfinite(points).all():
        raise SkipInput(f"box {k}: a polygon point is not a number")
    far = (np.abs(points[:, 0] - w / 2) > 1.5 * w) | (np.abs(points[:, 1] - h / 2) > 1.5 * h)
    if far.any():
        x, y = points[np.flatnonzero(far)[0]]
        raise SkipInput(f"box {k}: a polygon point ({x:.6g}, {y:.6g}) lies far outside the {w}×{h} image")
    return points


def _without_empty(state: Boxes, objects) -> Boxes:
    """The objects whose mask covers a pixel; each other one (a polygon of fewer than 3 distinct
    points, on one line or thinner than a pixel, an RLE of zeros) is left out with its reason:
    an object of no area is no instance to learn."""
    if state.masks is None or state.shaped.all():
        return state
    kinds = objects.segments or (None,) * len(state.ids)
    reasons = tuple(f"box {k} (id {state.ids[k]}): its {_described(kinds[k])} covers no pixel"
                    for k in np.flatnonzero(~state.shaped))
    return dataclasses.replace(state.kept(state.shaped), dropped=state.dropped, discarded=reasons)


def _described(segment) -> str:
    return "box" if segment is None else "polygon" if segment[0] == "polygon" else "RLE mask"


def fill_polygon(mask: np.ndarray, points: np.ndarray) -> None:
    """Set the pixels whose centres lie inside the polygon (even-odd rule): a rectangle from 10
    to 37 and 5 to 39 covers 27 × 34 pixels, as in pycocotools, not the 28 × 35 of cv2.fillPoly
    (on random polygons the two differ in about 2% of the pixels, all on the edge)."""
    fill_polygons([mask], [(0, points)])


def fill_polygons(masks: list[np.ndarray], polygons: list[tuple[int, np.ndarray]]) -> None:
    """`fill_polygon` of each (k, points) into masks[k] (H × W arrays of one shape), edge by edge:
    each edge's crossings of the rows' centre lines (work in proportion to what is filled, not to
    rows × edges), sorted by polygon, row and place, then filled between pairs; in bands of rows
    of at most FILL_CELLS crossings. A polygon of no point fills nothing; a point that is not a
    number is a ValueError (`_polygon` turns a source's into a recorded skip first)."""
    polygons = [(k, points) for k, points in polygons if len(points)]
    if not polygons:
        return
    h, w = masks[0].shape
    sizes = np.array([len(points) for _, points in polygons])
    x, y = np.concatenate([points for _, points in polygons]).astype(np.float64, copy=False).T
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("a polygon point is not a number")
    after, ends = np.arange(1, len(x) + 1), np.cumsum(sizes)  # each point's next, the last's its polygon's first
    after[ends - 1] = ends - sizes
    edges = (x, y, x[after], y[after])
    polygon = np.repeat(np.arange(len(polygons)), sizes)
    owners = [k for k, _ in polygons]
    # the rows whose centre r + 0.5 an edge crosses: low <= r + 0.5 < high (none for a level edge)
    first, last = _first_row_at(np.minimum(y, edges[3]), h), _first_row_at(np.maximum(y, edges[3]), h)
    total = int((last - first).sum())
    if total <= FILL_CELLS:
        _fill_band(masks, owners, edges, polygon, first, last)
        return
    crossings = np.cumsum(np.bincount(first, minlength=h + 1) - np.bincount(last, minlength=h + 1))[:h]
    done = np.cumsum(crossings)  # crossings in the rows up to each
    cuts = sorted({0, h, *(np.searchsorted(done, np.arange(FILL_CELLS, total, FILL_CELLS)) + 1).tolist()})
    for top, bottom in zip(cuts, cuts[1:]):
        near = np.flatnonzero((first < bottom) & (last > top))
        if len(near):
            _fill_band(masks, owners, tuple(v[near] for v in edges), polygon[near],
                       np.maximum(first[near], top), np.minimum(last[near], bottom))


FILL_CELLS = 1 << 18  # crossings, and pixels, worked out at once


def _first_row_at(v: np.ndarray, h: int) -> np.ndarray:
    """The first row r whose centre r + 0.5 is at or past v, within 0..h: ceil(v - 0.5), put right
    where the subtraction rounded."""
    r = np.ceil(v - 0.5)
    r -= r - 0.5 >= v
    r += r + 0.5 < v
    return np.minimum(np.maximum(r, 0), h).astype(np.intp)


def _fill_band(masks, owners: list[int], edges, polygon: np.ndarray, first: np.ndarray, last: np.ndarray) -> None:
    """The crossings of rows first[e] to last[e] of each edge e, filled into their polygons' masks."""
    x, y, x2, y2 = edges
    counts = last - first
    total = int(counts.sum())
    if not total:
        return
    edge = np.repeat(np.arange(len(counts)), counts)
    row = first[edge] + np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    xa, ya = x[edge], y[edge]
    xs = xa + (row + 0.5 - ya) * (x2[edge] - xa) / (y2[edge] - ya)  # as the row-by-row fill worked it out
    h, w = masks[0].shape
    line = polygon[edge] * h + row  # a polygon's row: an even number of crossings, paired in order
    order = np.lexsort((xs, line))
    xs = np.ceil(xs[order] - 0.5)
    line, xs = line[order], np.minimum(np.maximum(xs, 0, out=xs), w, out=xs).astype(np.intp)
    starts, lengths = xs[0::2], xs[1::2] - xs[0::2]
    owner, row = np.divmod(line[0::2], h)
    _fill_spans(masks, owners, owner, row * w + starts, lengths)


def _fill_spans(masks, owners: list[int], owner: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> None:
    """Set `lengths` pixels from each flat index in `starts`, in masks[owners[owner]] (the spans
    ordered by owner), at most FILL_CELLS pixels a pass."""
    ends = np.cumsum(lengths)
    cuts = [0, len(ends)] if ends[-1] <= FILL_CELLS else \
        [0, *np.searchsorted(ends, np.arange(FILL_CELLS, int(ends[-1]), FILL_CELLS), side="right").tolist(), len(ends)]
    for a, b in zip(cuts, cuts[1:]):
        if b <= a or ends[b - 1] == ends[a] - lengths[a]:
            continue
        begin = ends[a:b] - lengths[a:b] - (ends[a] - lengths[a])  # each span's first pixel among the pass's
        pixels = np.repeat(starts[a:b] - begin, lengths[a:b]) + np.arange(ends[b - 1] - ends[a] + lengths[a])
        bounds = np.searchsorted(owner[a:b], np.arange(len(owners) + 1)).tolist()
        for p, (i, j) in enumerate(zip(bounds, bounds[1:])):
            if j > i:
                mask, at = masks[owners[p]], pixels[begin[i]:begin[j - 1] + lengths[a + j - 1]]
                if mask.flags.c_contiguous:
                    mask.reshape(-1)[at] = 1
                else:
                    mask.put(at, 1)


def _rle(rle: dict, shape: tuple[int, int]) -> np.ndarray:
    """A COCO run-length mask (counts as a list, or compressed as a string), checked before it
    is decoded: of the image's size, and runs that cover it exactly (pycocotools leaves the rest
    of a short mask as whatever memory held)."""
    h, w = shape
    size = rle.get("size") if isinstance(rle, dict) else None
    if not isinstance(size, (list, tuple)) or [_int(v) for v in size] != [h, w]:
        raise SkipInput(f"an RLE mask's size {_short_text(size)} is not the image's [{h}, {w}]")
    counts = rle.get("counts")
    if isinstance(counts, (str, bytes)):
        counts = _rle_counts(counts.encode() if isinstance(counts, str) else counts, h * w)
    if not isinstance(counts, list) or any(_int(c) is None or c < 0 for c in counts):
        raise SkipInput("an RLE mask's counts are not a list of whole numbers of pixels, nor COCO's compressed string")
    covered = _covered(counts, h * w)
    if covered != h * w:
        raise SkipInput(f"an RLE mask's runs cover {covered:,} pixels, the {w}×{h} image has {h * w:,}")
    values = np.zeros(len(counts), np.uint8)
    values[1::2] = 1  # runs alternate, background first
    return np.ascontiguousarray(np.repeat(values, counts).reshape(w, h).T)  # column by column


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _short_text(value) -> str:
    """A value for a message, never more than 60 characters (nor an integer's thousands of digits)."""
    try:
        text = repr(value)
    except ValueError:  # an integer past Python's limit on digits
        return "(a huge number)"
    return text if len(text) <= 60 else text[:57] + "..."


def _over(pixels: int) -> SkipInput:
    return SkipInput(f"an RLE mask's runs cover more than the image's {pixels:,} pixels")


def _covered(counts: list[int], pixels: int) -> int:
    """The pixels the runs cover, stopping at the first run past the image's pixels (the sum of
    a list of huge numbers would cost time and make a message of thousands of digits)."""
    total = 0
    for c in counts:
        if c > pixels - total:
            raise _over(pixels)
        total += c
    return total


def _rle_counts(text: bytes, pixels: int) -> list[int]:
    """COCO's compressed counts (pycocotools' rleFrString): 5 bits a character from 48, a
    continuation bit, the last character's sign bit; from the fourth count on, each is a change
    from the count two before. Bounded by the image: no run, and no total, beyond its pixels
    (which caps each number at a few characters, so the time is linear in the text)."""
    width = int(pixels).bit_length() + 1  # bits of a signed number of at most `pixels`
    counts: list[int] = []
    total = 0
    p = 0
    while p < len(text):
        x = k = 0
        more = True
        while more:
            if p >= len(text) or len(counts) > pixels:
                raise SkipInput("an RLE mask's compressed counts are cut short or too long")
            if 5 * k > width:
                raise _over(pixels)
            c = text[p] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        if x < 0 or x > pixels - total:
            raise _over(pixels) if x > 0 else SkipInput("an RLE mask's compressed counts give a negative run")
        total += x
        counts.append(x)
    return counts


KIND = BoxesKind