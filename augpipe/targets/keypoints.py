"""Keypoints: detection's objects, each with K named keypoints (COCO's person keypoints, YOLO pose).

The column is detection's `objects` with one more per-object field, `keypoints`: the object's K
keypoints as `{x: float32[K], y: float32[K], visibility: int8[K]}` (pixels; COCO's visibility:
0 not labelled, 1 labelled but hidden, 2 visible), a Hugging Face Sequence of length K.
Per dataset the kind knows the keypoints' names, the skeleton (pairs of indices) and `flip_idx`,
the permutation that turns a mirror image's keypoints back into the right ones (YOLO's: the
keypoint at i takes the one at flip_idx[i]); without one it is read from `left_*`/`right_*` names.
A recipe's `keypoint_flip` map (its own top-level key, `recipe_fields`) wins over both.

Through albumentations every object's K keypoints ride in order beside its box, each known by its
index, with three probe points in each object's box: a transform that mirrors the image (a flip,
a transpose, a negative scale) turns the probes' triangles over, and then left and right are
swapped by `flip_idx`. A keypoint pushed out of the image (or that a distortion removed) and one
never labelled come out as (0, 0, 0), in its place; one labelled but hidden (1) stays 1 where it
lands; an object whose box is dropped goes with its keypoints, as boxes do.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from augpipe.errors import SkipInput, SourceError, UsageError
from augpipe.row import Column
from augpipe.targets.base import row_size
from augpipe.targets.boxes import (
    EDGE,
    ROW_SLACK,
    SLACK,
    Boxes,
    BoxesKind,
    field,
    objects_array,
    objects_feature,
    objects_type,
    where,
)

VISIBILITY = (0, 1, 2)  # COCO: not labelled, labelled but hidden, visible
# Transforms that mirror the image; Affine does too with a negative scale
MIRRORS = ("HorizontalFlip", "VerticalFlip", "Transpose", "D4", "SquareSymmetry")
REFLECTING_BORDERS = (2, 4)  # cv2.BORDER_REFLECT, BORDER_REFLECT_101: albumentations copies keypoints
_NAME = "__class_fullname__"  # a transform's name in albumentations' serialized form
LEFT, RIGHT, MIDDLE, OUTLINE = (0, 255, 0), (255, 0, 255), (255, 255, 255), (0, 0, 0)


@dataclass
class Keypoints(Boxes):
    """Objects on the current image, each with its K keypoints."""

    points: np.ndarray | None = None  # (N, K, 3) float64: x, y in pixels, visibility 0/1/2


class KeypointsKind(BoxesKind):
    name = "keypoints"
    audits = (*BoxesKind.audits, "keypoint_outside")
    target_words = {**BoxesKind.target_words, "keypoints": "keypoints"}

    def __init__(self, instance_masks: bool = False, keypoint_names=(), skeleton=(), flip_idx=None):
        super().__init__(instance_masks)
        self.keypoint_names = tuple(str(n) for n in keypoint_names)
        self.skeleton = tuple((int(a), int(b)) for a, b in skeleton)
        self.flip_idx = tuple(int(i) for i in flip_idx) if flip_idx is not None else paired_by_name(self.keypoint_names)
        self.albumentations_targets = (*self.albumentations_targets, "keypoints")

    @property
    def k(self) -> int:
        return len(self.keypoint_names)

    # ------------------------------------------------------------ per dataset

    @classmethod
    def of_scan(cls, scan) -> KeypointsKind:
        return cls(BoxesKind.of_scan(scan).with_masks, **options(scan.kind_options, "the source"))

    @classmethod
    def of_manifest(cls, manifest: dict) -> KeypointsKind:
        return cls(BoxesKind.of_manifest(manifest).with_masks, **options(manifest.get("keypoints") or {},
                                                                         "the manifest"))

    @classmethod
    def variants(cls) -> dict:
        return {"keypoints": cls()}

    def manifest_fields(self) -> dict:
        return {**super().manifest_fields(),
                "keypoints": {"keypoint_names": list(self.keypoint_names), "skeleton": [list(p) for p in self.skeleton],
                              "flip_idx": None if self.flip_idx is None else list(self.flip_idx)}}

    # ------------------------------------------------------------ rows

    def columns(self, classes, labelled):
        k, masks = self.k, self.with_masks
        feature = objects_feature(classes, masks)
        feature["feature"]["keypoints"] = {"feature": {"x": {"dtype": "float32", "_type": "Value"},
                                                       "y": {"dtype": "float32", "_type": "Value"},
                                                       "visibility": {"dtype": "int8", "_type": "Value"}},
                                           "length": k, "_type": "Sequence"}
        return [Column("objects", _objects_type(masks, k), feature, build=lambda values: _objects_array(values, masks, k))]

    def values(self, state: Keypoints, image) -> dict:
        out = super().values(state, image)
        h, w = image.shape[:2]
        points = np.round(inside(state.points, w, h), 3)
        out["objects"]["keypoints"] = [{"x": p[:, 0].astype(np.float32), "y": p[:, 1].astype(np.float32),
                                        "visibility": p[:, 2].astype(np.int8)} for p in points]
        return out

    # ------------------------------------------------------------ sources

    def load(self, src, decoded, extra):
        """The objects as detection loads them, each with its keypoints: given in the boxes'
        coordinates (fractions of the image for YOLO), labelled ones inside the image."""
        objects = src.target
        h, w = decoded.rgb.shape[:2]
        points = _source_points(objects, (w, h), self.k)
        ids = _ids(objects)
        # loaded with each object's position as its id: what comes back says which objects are kept
        by_position = dataclasses.replace(objects, ids=tuple(range(len(points))))
        boxes = BoxesKind(self.with_masks).load(dataclasses.replace(src, target=by_position), decoded, extra)
        state = _joined(boxes, ids, points)
        return dataclasses.replace(state, discarded=tuple(_with_id(r, ids) for r in boxes.discarded))

    def example(self, width: int, height: int) -> Keypoints:
        boxes = super().example(width, height)
        angles = 2 * np.pi * np.arange(self.k) / max(self.k, 1)
        x, y, bw, bh = boxes.boxes[0]
        points = np.stack([x + bw * (0.5 + 0.4 * np.cos(angles)), y + bh * (0.5 + 0.4 * np.sin(angles)),
                           np.full(self.k, 2.0)], axis=1)
        return _with_points(boxes, points[None])

    # ------------------------------------------------------------ albumentations

    def compose_options(self, recipe) -> dict:
        return {**super().compose_options(recipe), "keypoint_params": _keypoint_params()}

    @classmethod
    def geometry_options(cls) -> dict:
        """Detection's, and the keypoints: `output.resize` moves them with the boxes."""
        return {**super().geometry_options(), "keypoint_params": _keypoint_params()}

    @classmethod
    def recipe_fields(cls) -> dict:
        """`keypoint_flip`: {left_eye: right_eye, ...}, the pairs a mirror image swaps."""
        return {"keypoint_flip": (dict[str, str], {})}

    def check_recipe(self, recipe) -> list[str]:
        """Refuses a reflecting border (albumentations copies each keypoint into the mirror images;
        detection only warns of it, so nothing is left to warn of), and a recipe that can mirror the
        image when the keypoints' names say left or right but no flip map says which is which."""
        reflecting = [f"{s[_NAME]}: border_mode {s['border_mode']}" for s in _specs(recipe.transforms)
                      if s.get("border_mode") in REFLECTING_BORDERS]
        if reflecting:  # every such step at once (a new user met the bundled classic's one by one)
            raise UsageError(f"{recipe.path}: {'; '.join(reflecting)}{' ' if len(reflecting) == 1 else ': each '}"
                             "mirrors keypoints into the border; border_mode: 0 fills it instead")
        kind = self.for_recipe(recipe)
        mirror = next((s[_NAME] for s in _specs(recipe.transforms) if _mirrors(s)), None)
        if mirror and kind.flip_idx is None and side_sensitive(self.keypoint_names):
            alone = ", ".join(f"{n} has no {p}" for n, p in unpaired(self.keypoint_names)[:3])
            raise UsageError(f"{recipe.path}: {mirror} mirrors the image, and the keypoints have left and right names "
                             f"but no flip map ({alone}): give flip_idx in data.yaml, left_*/right_* pairs, or "
                             "keypoint_flip in the recipe")
        return []

    def for_recipe(self, recipe) -> KeypointsKind:
        """The kind with the recipe's `keypoint_flip` map ({left_eye: right_eye, ...}: each pair swapped
        in a mirror image), when it has one: it wins over the dataset's flip_idx."""
        mapping = recipe.kind_options.get("keypoint_flip")
        if not mapping or not self.keypoint_names:  # no dataset yet (`augpipe check`): its names are unknown
            return self
        return KeypointsKind(self.with_masks, self.keypoint_names, self.skeleton,
                             flip_from_map(mapping, self.keypoint_names, recipe.path, self.flip_idx))

    def inputs(self, state: Keypoints, pack: bool = True) -> dict:
        inputs = super().inputs(state, pack)
        points = np.concatenate([state.points[:, :, :2].reshape(-1, 2), _probes(state.boxes).reshape(-1, 2)])
        inputs["keypoints"], inputs["keypoint_index"] = points, list(range(len(points)))
        return inputs

    def outputs(self, result: dict, state: Keypoints) -> Keypoints:
        n, k = state.points.shape[:2]
        at = _returned(result, n * k + 3 * n)
        points = np.concatenate([at[:n * k].reshape(n, k, 2), state.points[:, :, 2:]], axis=2)
        points[np.isnan(points).any(axis=2) | (state.points[:, :, 2] == 0)] = 0
        if n and self.flip_idx is not None and _may_mirror(result) and _mirrored(at[n * k:].reshape(n, 3, 2)):
            points = points[:, list(self.flip_idx)]
        if "image" in result:
            points = inside(points, result["image"].shape[1], result["image"].shape[0])
        boxes = super().outputs(result, _by_position(state))
        return _apart(_joined(boxes, state.ids, points), boxes.ids)

    def moved(self, state: Keypoints, bbox_params=None) -> Keypoints:
        return _joined(super().moved(_by_position(state), bbox_params), state.ids, state.points)

    # ------------------------------------------------------------ looking at rows

    def draw(self, rgb, values: dict, classes: list[str]):
        """Detection's boxes, then each object's skeleton and visible keypoints: left ones green,
        right ones magenta (neither a class's colour), the others and a bone across white; each
        outlined in black, to show on any background; a hidden one (visibility 1) a ring."""
        import cv2

        image = super().draw(rgb, values, classes)
        sides = [_side(n) for n in self.keypoint_names]
        thickness = max(1, round(max(image.shape[:2]) / 200))
        for p in points_of(values, self.k):
            for a, b in self.skeleton:
                if a < len(p) and b < len(p) and p[a, 2] > 0 and p[b, 2] > 0:
                    colour = sides[a] if sides[a] == sides[b] else MIDDLE
                    cv2.line(image, _at(p[a]), _at(p[b]), OUTLINE, thickness + 2, cv2.LINE_AA)
                    cv2.line(image, _at(p[a]), _at(p[b]), colour, thickness, cv2.LINE_AA)
            for j in np.flatnonzero(p[:, 2] > 0):
                cv2.circle(image, _at(p[j]), thickness + 3, OUTLINE, -1, cv2.LINE_AA)
                cv2.circle(image, _at(p[j]), thickness + 2, sides[j], -1, cv2.LINE_AA)
                if p[j, 2] == 1:
                    cv2.circle(image, _at(p[j]), thickness, OUTLINE, -1, cv2.LINE_AA)
        return image

    def verify(self, row, width, height, classes, decode=True):
        problems = super().verify(row, width, height, classes, decode)
        given = field(row, "keypoints")
        if len(given) != len(field(row, "bbox")):
            return problems + [f"{len(field(row, 'bbox'))} boxes but {len(given)} objects with keypoints"]
        for i, p in enumerate(given):
            problems += _point_problems(i, p, self.k, width, height)
        return problems

    # ------------------------------------------------------------ health

    def audit(self, src, extra, size, classes):
        """Detection's audit, and each labelled keypoint outside the image."""
        objects = src.target
        found = super().audit(src, extra, size, classes)
        n = len(objects.categories)
        given = objects.fields.get("keypoints") or ((0.0,) * 3 * self.k,) * n
        if len(given) != n or any(len(v) != 3 * self.k for v in given):
            found.problems.append(("annotation_unreadable", "", f"{n} objects but keypoints for {len(given)}, "
                                                                f"{self.k} each"))
            return found
        points = np.asarray(given, dtype=np.float64).reshape(n, self.k, 3)
        if objects.normalised:
            points[:, :, :2] *= size
        return self._audited(found, points, objects.ids or range(n), size, 0.0)

    def audit_row(self, row, classes):
        size = row_size(row)
        points = points_of(row, self.k)
        return self._audited(super().audit_row(row, classes), points, field(row, "id") or range(len(points)), size,
                             ROW_SLACK)

    def _audited(self, found, points: np.ndarray, ids, size, slack_px: float):
        ids = list(ids)
        w, h = size
        x, y, v = points[..., 0], points[..., 1], points[..., 2]
        margin_x, margin_y = max(SLACK * w, slack_px), max(SLACK * h, slack_px)
        out = (v > 0) & ((x < -margin_x) | (y < -margin_y) | (x > w + margin_x) | (y > h + margin_y))
        for i, j in zip(*np.nonzero(out)):
            fate = "expand clips it to the image" if -EDGE <= x[i, j] <= w + EDGE and -EDGE <= y[i, j] <= h + EDGE \
                else "expand skips the image"
            found.problems.append(("keypoint_outside", f"{where(int(i), ids)} keypoint {j} ({self.keypoint_names[j]})",
                                   f"at ({x[i, j]:.6g}, {y[i, j]:.6g}), outside the {w}×{h} image, marked "
                                   f"{'visible' if v[i, j] == 2 else 'labelled'} ({v[i, j]:g}): {fate}"))
        found.facts["keypoints"] = {"visible": int((v == 2).sum()), "hidden": int((v == 1).sum()),
                                    "unlabelled": int((v == 0).sum())}
        shown = np.where(v[..., None] > 0, np.round(points / (w, h, 1), 4), 0)
        found.signature = (found.signature, tuple(map(tuple, shown.reshape(len(points), -1).tolist())))
        return found

    # ------------------------------------------------------------ arrays and torch

    def arrays(self, row):
        """Detection's arrays, and keypoints float32 (N, K, 3): x, y in pixels, visibility."""
        return {**super().arrays(row), "keypoints": points_of(row, self.k).astype(np.float32)}

    def from_arrays(self, arrays: dict, shape) -> Keypoints:
        boxes = super().from_arrays(arrays, shape)
        points = np.asarray(arrays["keypoints"], dtype=np.float64)
        if points.shape != (len(boxes.ids), self.k, 3):
            raise ValueError(f"{len(boxes.ids)} boxes with {self.k} keypoints each, but keypoints of shape "
                             f"{list(points.shape)}")
        return _with_points(boxes, points)

    def to_arrays(self, state: Keypoints, shape) -> dict:
        points = np.round(inside(state.points, shape[1], shape[0]), 3).astype(np.float32)
        return {**super().to_arrays(state, shape), "keypoints": points}

    def torch_target(self, arrays, box_format, convention):
        """Detection's target and "keypoints": float32 [N, K, 3] (x, y in pixels, visibility), as
        torchvision's keypoint R-CNN takes them."""
        import torch

        n = len(arrays["boxes"])
        keypoints = torch.from_numpy(np.array(arrays["keypoints"], dtype=np.float32).reshape(n, self.k, 3))
        return {**super().torch_target(arrays, box_format, convention), "keypoints": keypoints}

    def from_user_target(self, target, shape, box_format, convention):
        import torch

        if "keypoints" not in target:
            raise ValueError(f"a keypoints target has 'keypoints' [N, {self.k}, 3] beside its boxes")
        arrays, restore = super().from_user_target(target, shape, box_format, convention)
        given = target["keypoints"]
        values = given.detach().cpu().numpy() if isinstance(given, torch.Tensor) else np.asarray(given)
        arrays["keypoints"] = np.asarray(values, dtype=np.float64).reshape(len(arrays["boxes"]), self.k, 3)

        def restored(a: dict) -> dict:
            out, points = restore(a), a["keypoints"].astype(np.float32)
            tensors = isinstance(out.get("boxes"), torch.Tensor)
            out["keypoints"] = torch.from_numpy(points).to(given.dtype) if isinstance(given, torch.Tensor) else \
                torch.from_numpy(points) if tensors else points
            return out

        return arrays, restored


# ---------------------------------------------------------------- per-dataset options

def options(given: dict, where: str) -> dict:
    """The kind's options from a format's `kind_options` or the manifest's `keypoints`: names,
    skeleton (pairs of indices) and flip_idx (a permutation of 0..K-1, or None)."""
    names = [str(n) for n in given.get("keypoint_names") or ()]
    k = len(names)
    skeleton = [tuple(p) for p in given.get("skeleton") or ()]
    for pair in skeleton:
        if len(pair) != 2 or not all(isinstance(i, int) and 0 <= i < k for i in pair):
            raise SourceError(f"{where}: skeleton pair {list(pair)} is not two of the {k} keypoints' indices")
    flip_idx = given.get("flip_idx")
    if flip_idx is not None and sorted(flip_idx) != list(range(k)):
        raise SourceError(f"{where}: flip_idx {list(flip_idx)} is not a permutation of 0..{k - 1}")
    return {"keypoint_names": names, "skeleton": skeleton, "flip_idx": flip_idx}


_SIDE = re.compile(r"(?:^|[^a-z])(left|right)(?:$|[^a-z])", re.IGNORECASE)


def side_sensitive(names) -> bool:
    return any(_SIDE.search(n) for n in names)


def _partner(name: str) -> str | None:
    """The name on the other side (left_eye: right_eye), or None for a name of no side."""
    m = _SIDE.search(name)
    if not m:
        return None
    other = "right" if m.group(1).lower() == "left" else "left"
    return name[:m.start(1)] + other + name[m.end(1):]


def unpaired(names) -> list[tuple[str, str]]:
    """(name, its missing partner) for each name of a side whose other side is not a keypoint."""
    index = {n.lower() for n in names}
    return [(n, p) for n in names if (p := _partner(n)) is not None and p.lower() not in index]


def paired_by_name(names: tuple[str, ...]) -> tuple[int, ...] | None:
    """The flip permutation from names in left/right pairs (left_eye and right_eye), or None when
    a name says a side whose partner is missing, or no name says one."""
    if not side_sensitive(names) or unpaired(names):
        return None
    index = {n.lower(): i for i, n in enumerate(names)}
    return tuple(index[p.lower()] if (p := _partner(n)) is not None else i for i, n in enumerate(names))


def flip_from_map(mapping: dict[str, str], names: tuple[str, ...], where: str,
                  base: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """A recipe's `keypoint_flip` ({a: b}: a and b swap places in a mirror image; b: a may be given
    too; a: a, a stays) as flip_idx, over `base` (the dataset's flip_idx, or its left_*/right_*
    pairs): the names the map gives are paired as it says, the rest as before, but for one whose
    partner the map took (it then stays). A map of one pair left every other pair unswapped."""
    given: dict[int, int] = {}
    for a, b in mapping.items():
        for n in (a, b):
            if n not in names:
                raise UsageError(f"{where}: keypoint_flip names {n!r}, not one of the keypoints ({', '.join(names)})")
        i, j = names.index(a), names.index(b)
        for x, y in ((i, j), (j, i)):
            if given.get(x, y) != y:
                raise UsageError(f"{where}: keypoint_flip pairs {names[x]!r} with two keypoints; each swaps with one")
            given[x] = y
    flip = list(base if base is not None else range(len(names)))
    for i, j in given.items():
        if flip[i] not in given:  # its former partner, whom the map does not name, stays
            flip[flip[i]] = flip[i]
        flip[i] = j
    return tuple(flip)


# ---------------------------------------------------------------- the column

def _objects_type(masks: bool, k: int) -> pa.DataType:
    point = pa.struct([pa.field("x", pa.list_(pa.float32(), k)), pa.field("y", pa.list_(pa.float32(), k)),
                       pa.field("visibility", pa.list_(pa.int8(), k))])
    return pa.struct([*objects_type(masks), pa.field("keypoints", pa.list_(point))])


def _objects_array(values: list[dict], masks: bool, k: int) -> pa.Array:
    """Detection's column with each object's keypoints beside its box."""
    base = objects_array(values, masks)
    points = np.concatenate([points_of({"objects": v}, k) for v in values] or [np.zeros((0, k, 3))])

    def fixed(data: np.ndarray, kind: pa.DataType) -> pa.Array:
        flat = pa.Array.from_buffers(kind, data.size, [None, pa.py_buffer(np.ascontiguousarray(data.reshape(-1)))])
        return pa.FixedSizeListArray.from_arrays(flat, k)

    kind = _objects_type(masks, k)
    point_type = kind.field("keypoints").type.value_type
    per_object = pa.StructArray.from_arrays(
        [fixed(points[:, :, 0].astype(np.float32), pa.float32()), fixed(points[:, :, 1].astype(np.float32), pa.float32()),
         fixed(points[:, :, 2].astype(np.int8), pa.int8())], fields=list(point_type))
    offsets = base.field("category").offsets
    return pa.StructArray.from_arrays([*(base.field(i) for i in range(base.type.num_fields)),
                                       pa.ListArray.from_arrays(offsets, per_object)], fields=list(kind))


def points_of(row: dict, k: int) -> np.ndarray:
    """A row's keypoints as (N, K, 3) float64: x, y, visibility."""
    given = field(row, "keypoints")
    if not given:
        return np.zeros((0, k, 3))
    return np.stack([np.stack([np.asarray(p["x"], np.float64), np.asarray(p["y"], np.float64),
                               np.asarray(p["visibility"], np.float64)], axis=1).reshape(k, 3) for p in given])


# ---------------------------------------------------------------- through the transforms

def _keypoint_params():
    """Every keypoint back, by its index, wherever it lands (`outputs` says which left the image)."""
    from augpipe.recipe import import_albumentations

    return import_albumentations().KeypointParams(format="xy", label_fields=["keypoint_index"],
                                                  remove_invisible=False)


def inside(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """The keypoints with each one outside the image, or not visible, as (0, 0, 0)."""
    x, y, v = points[..., 0], points[..., 1], points[..., 2]
    out = (v == 0) | ~np.isfinite(x) | ~np.isfinite(y) | (x < 0) | (y < 0) | (x > width) | (y > height)
    points = points.copy()
    points[out] = 0
    return points


def _probes(boxes: np.ndarray) -> np.ndarray:
    """(N, 3, 2): in each object's box, a right-angled triangle half the box's size, counter-clockwise
    on screen; inside the image, where the distortions (elastic, grid...) keep keypoints."""
    x, y, w, h = (np.asarray(boxes, dtype=np.float64).reshape(-1, 4).T[:, :, None])
    return np.stack([x + w * np.array([0.25, 0.75, 0.25]), y + h * np.array([0.25, 0.25, 0.75])], axis=2)


def _returned(result: dict, count: int) -> np.ndarray:
    """(count, 2): where each keypoint went, by its index; NaN for one a transform removed (the
    distortions remove those they push out of the image, whatever remove_invisible says)."""
    index = np.asarray(result["keypoint_index"], dtype=np.float64).astype(np.int64)
    if len(set(index.tolist())) < len(index):
        raise ValueError("a transform copied keypoints (a reflecting border): each keypoint must come back once")
    at = np.full((count, 2), np.nan)
    at[index] = np.asarray(result["keypoints"], dtype=np.float64).reshape(-1, 2)[:, :2]
    return at


def _may_mirror(result: dict) -> bool:
    """Whether a transform that can mirror the image fired (all may, when the compose does not say
    which fired): the distortions never mirror it, but can fold a small triangle over."""
    applied = result.get("applied_transforms")
    return applied is None or any(name in (*MIRRORS, "Affine") for name, *_ in applied)


def _mirrored(triangles: np.ndarray) -> bool:
    """Whether most of the probes' triangles that came back whole are turned over (their
    orientation reversed): the image was mirrored an odd number of times."""
    whole = triangles[~np.isnan(triangles).any(axis=(1, 2))]
    if not len(whole):
        raise ValueError("every object's probe points left the image: which side is left is not known")
    a, b, c = whole[:, 0], whole[:, 1], whole[:, 2]
    turned = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]) < 0
    return 2 * int(turned.sum()) > len(whole)


def _by_position(state: Keypoints) -> Keypoints:
    """The state with each object's position as its id: the ids a boxes step keeps say which
    objects (and so which keypoints) are kept."""
    return dataclasses.replace(state, ids=np.arange(len(state.ids)))


def _joined(boxes: Boxes, ids: np.ndarray, points: np.ndarray) -> Keypoints:
    """`boxes`, whose ids are positions in `ids` and `points`, with those objects' own ids and keypoints."""
    keys = np.asarray(boxes.ids, dtype=np.int64)
    return _with_points(dataclasses.replace(boxes, ids=np.asarray(ids, dtype=np.int64)[keys]), points[keys])


def _apart(state: Keypoints, keys: np.ndarray) -> Keypoints:
    """An object albumentations cut in pieces (a box for each, RandomGridShuffle's tiles) keeps
    in each piece the keypoints inside that piece's box."""
    repeated = [r for r, key in enumerate(keys) if (keys == key).sum() > 1]
    for r in repeated:
        x, y, w, h = state.boxes[r]
        p = state.points[r]
        away = (p[:, 0] < x - EDGE) | (p[:, 0] > x + w + EDGE) | (p[:, 1] < y - EDGE) | (p[:, 1] > y + h + EDGE)
        p[away] = 0
    return state


def _with_points(boxes: Boxes, points: np.ndarray) -> Keypoints:
    fields = {f.name: getattr(boxes, f.name) for f in dataclasses.fields(Boxes)}
    return Keypoints(**fields, points=np.asarray(points, dtype=np.float64))


def _mirrors(spec: dict) -> bool:
    name = spec[_NAME]
    if name == "Affine":
        scale = spec.get("scale", 1.0)
        values = scale.values() if isinstance(scale, dict) else [scale]
        return any(min(np.ravel(v)) < 0 for v in values)
    return name in MIRRORS and spec.get("p", 1.0) != 0


def _specs(specs):
    for spec in specs:
        yield spec
        yield from _specs(spec.get("transforms", ()))


# ---------------------------------------------------------------- sources

def _ids(objects) -> np.ndarray:
    try:
        return np.asarray(objects.ids or range(len(objects.categories)), dtype=np.int64)
    except (OverflowError, ValueError, TypeError):
        raise SkipInput("an annotation id is not a whole number that fits in 64 bits") from None


def _with_id(reason: str, ids: np.ndarray) -> str:
    """A reason detection gave about an object loaded by position, with the object's own id."""
    return re.sub(r"^box (\d+) \(id \d+\)", lambda m: f"box {m.group(1)} (id {ids[int(m.group(1))]})", reason)


def _source_points(objects, size: tuple[int, int], k: int) -> np.ndarray:
    """Each object's keypoints from the source, (N, K, 3) in pixels, or SkipInput: K of them, x and
    y numbers, visibility 0, 1 or 2, a labelled one inside the image (or within EDGE, clipped)."""
    n = len(objects.categories)
    given = objects.fields.get("keypoints") or ((0.0,) * 3 * k,) * n
    if len(given) != n:
        raise SkipInput(f"{n} objects but keypoints for {len(given)}")
    w, h = size
    points = np.zeros((n, k, 3))
    for i, values in enumerate(given):
        if len(values) != 3 * k:
            raise SkipInput(f"box {i}: {len(values)} keypoint values, not 3 × {k}")
        p = np.asarray(values, dtype=np.float64).reshape(k, 3)
        if objects.normalised:
            p[:, :2] *= (w, h)
        _check_points(i, p, size)
        points[i] = p
    points[..., 0] = np.clip(points[..., 0], 0, w)
    points[..., 1] = np.clip(points[..., 1], 0, h)
    return inside(points, w, h)


def _check_points(i: int, p: np.ndarray, size: tuple[int, int]) -> None:
    w, h = size
    for j, (x, y, v) in enumerate(p):
        if v not in VISIBILITY:
            raise SkipInput(f"box {i} keypoint {j}: visibility {v:g}, not 0, 1 or 2")
        if v and not (math.isfinite(x) and math.isfinite(y)):
            raise SkipInput(f"box {i} keypoint {j}: not a number")
        if v and (x < -EDGE or y < -EDGE or x > w + EDGE or y > h + EDGE):
            raise SkipInput(f"box {i} keypoint {j} ({x:.1f}, {y:.1f}): outside the {w}×{h} image")


# ---------------------------------------------------------------- looking at rows

def _point_problems(i: int, p: dict, k: int, width: int, height: int) -> list[str]:
    xs, ys, vs = (list(p.get(key) if p.get(key) is not None else ()) for key in ("x", "y", "visibility"))
    if not len(xs) == len(ys) == len(vs) == k:
        return [f"object {i}: {len(vs)} keypoints, not {k}"]
    problems = []
    for j, (x, y, v) in enumerate(zip(xs, ys, vs)):
        if v not in VISIBILITY:
            problems.append(f"object {i} keypoint {j}: visibility {v}, not 0, 1 or 2")
        elif v and not (math.isfinite(x) and math.isfinite(y) and 0 <= x <= width and 0 <= y <= height):
            problems.append(f"object {i} keypoint {j} ({x:.1f}, {y:.1f}): outside the {width}×{height} image")
    return problems


def _side(name: str) -> tuple[int, int, int]:
    m = _SIDE.search(name)
    return MIDDLE if m is None else LEFT if m.group(1).lower() == "left" else RIGHT


def _at(point: np.ndarray) -> tuple[int, int]:
    return int(round(point[0])), int(round(point[1]))


KIND = KeypointsKind
