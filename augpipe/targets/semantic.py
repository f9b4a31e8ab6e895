"""Semantic segmentation: a mask a row, its pixel values the class indices.

The column is `annotation: struct<bytes, path>`, a Hugging Face Image() holding a PNG whose
values are the indices as they were (mode L, or P with the source's palette; see masks.py).
There is no `label` column beside it (`rename_columns` would make two).
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from dataclasses import dataclass

import cv2
import numpy as np

from augpipe.errors import SkipInput
from augpipe.row import image_column
from augpipe.targets.base import Audit, Target, row_size
from augpipe.targets.geometry import orient, stored_size
from augpipe.targets.masks import checked_indices, grey_png_pixels, read_mask, write_mask


@dataclass
class Mask:
    mask: np.ndarray  # H×W uint8 class indices
    palette: bytes | None  # the source PNG's palette, kept for the output


IGNORE = 255  # the value many datasets give pixels that belong to no class (VOC's borders)


FEW_VALUES = 16  # a mask whose values span at most this many: each value inside looked for


def values_of(mask: np.ndarray) -> tuple[int, ...]:
    """The values a uint8 mask holds, in order: its least and greatest (OpenCV's minMaxLoc), and
    each value between them found by a comparison when they are few (a tenth of OpenCV's
    histogram's time for a handful of classes), else by the histogram (np.bincount widens every
    pixel first; np.unique sorts, slower still)."""
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    if mask.size and mask.ndim == 2:
        low, high, *_ = cv2.minMaxLoc(mask)
        low, high = int(low), int(high)
        if high - low <= FEW_VALUES:
            inside = [v for v in range(low + 1, high) if cv2.countNonZero(cv2.compare(mask, v, cv2.CMP_EQ))]
            return (low, *inside, high) if high > low else (low,)
    counts = cv2.calcHist([mask], [0], None, [256], [0, 256])
    return tuple(np.flatnonzero(counts.ravel()).tolist())


# The values of the masks this process wrote last, by their PNG: a shard counts its rows' classes
# (`row_classes`) right after they are made, and decoding each mask again cost a fifth of the time.
_WRITTEN: dict[bytes, tuple[int, ...]] = {}
MAX_WRITTEN = 64
_WRITING = threading.Lock()


def _written(mask: np.ndarray, palette: bytes | None) -> bytes:
    data, values = write_mask(mask, palette), values_of(mask)
    with _WRITING:  # the studio writes on threads
        if len(_WRITTEN) >= MAX_WRITTEN:
            _WRITTEN.pop(next(iter(_WRITTEN)))
        _WRITTEN[data] = values
    return data


def _values_of_png(data: bytes) -> tuple[int, ...]:
    found = _WRITTEN.get(data)
    return found if found is not None else values_of(read_mask(data, "annotation")[0])


def background_hint(past: list[int], classes: int) -> str:
    """Where the values past the names stop one short (3 names, values up to 3): the names were
    likely given without the background, which value 0 is."""
    return (f": the names are of values 0–{classes - 1}, the first the background (0); a list without it "
            "names one class too few") if past and max(past) == classes else ""


def _named(values, classes) -> Counter:
    """A class a value, past the background (0) and IGNORE."""
    return Counter(classes[v] for v in values if 0 < v < len(classes) and v != IGNORE)


class Semantic(Target):
    name = "segmentation"
    albumentations_targets = ("mask",)
    target_words = {"mask": "masks"}
    spatial = True
    train_tasks = ("segmentation",)
    counted = "images"
    balancing = "repeat factors"
    audits = ("mask_values",)
    reads_to_balance = True

    def __init__(self, classes: int = 0):
        self.classes = classes  # named classes: a mask value past them is a recorded skip

    @classmethod
    def of_scan(cls, scan) -> Semantic:
        return cls(len(scan.classes))

    @classmethod
    def of_manifest(cls, manifest: dict) -> Semantic:
        return cls(len(manifest.get("classes", ())))

    def manifest_fields(self) -> dict:
        return {"instance_masks": False}  # what every 0.3 manifest records

    def columns(self, classes, labelled):
        return [image_column("annotation")]

    def count(self, rows, classes, src) -> Counter:
        """Rows a class: those whose mask holds it (the background, value 0, and 255 are no class)."""
        return sum((self.row_classes(row, classes) for row in rows), Counter())

    def row_classes(self, row, classes) -> Counter:
        return _named(_values_of_png(row["annotation"]["bytes"]), classes)

    def held(self, src, classes) -> Counter:
        """The classes its mask holds, once `read_held` has read them."""
        return _named(src.target.values or (), classes)

    def read_held(self, src, extra: bytes):
        """The source with the values its mask holds (SkipInput when it cannot be read)."""
        import dataclasses

        return dataclasses.replace(src, target=dataclasses.replace(
            src.target, values=values_of(read_mask(extra, src.target.path)[0])))

    def extra_files(self, src) -> tuple[str, ...]:
        return (src.target.path,)

    def load(self, src, decoded, extra):
        if extra is None:
            raise SkipInput(f"no mask ({src.target.path})")
        mask, palette = read_mask(extra, src.target.path)
        stored = stored_size(decoded.rgb.shape, decoded.orientation)
        if mask.shape[::-1] != stored:
            raise SkipInput(f"mask {src.target.path} is {mask.shape[1]}×{mask.shape[0]}, the image "
                            f"{stored[0]}×{stored[1]}")
        if self.classes:
            extra = sorted(set(values_of(mask)) - set(range(self.classes)) - {IGNORE})
            if extra:
                raise SkipInput(f"mask {src.target.path} has values {extra[:5]} past the {self.classes} named "
                                f"classes (0–{self.classes - 1}, and {IGNORE} for none){background_hint(extra, self.classes)}")
        return Mask(orient({"mask": mask}, stored, decoded.orientation)["mask"], palette)

    def example(self, width: int, height: int) -> Mask:
        mask = np.zeros((height, width), np.uint8)
        mask[height // 4:3 * height // 4, width // 4:3 * width // 4] = 1
        return Mask(mask, None)

    def inputs(self, state: Mask) -> dict:
        return {"mask": state.mask}

    def outputs(self, result: dict, state: Mask) -> Mask:
        return Mask(np.ascontiguousarray(result["mask"], dtype=np.uint8), state.palette)

    def values(self, state: Mask, image) -> dict:
        return {"annotation": {"bytes": _written(state.mask, state.palette), "path": None}}

    def caption(self, values: dict, original: dict | None) -> str:
        return "mask"

    def draw(self, rgb, values: dict, classes: list[str]):
        from augpipe.targets.drawing import overlay

        data = (values.get("annotation") or {}).get("bytes")
        if not data:
            return rgb
        mask, _ = read_mask(data, "annotation")
        return overlay(rgb, mask.astype(np.int64) - 1)  # 0 is the background: not drawn

    def arrays(self, row):
        """The mask, of the row's size (a ValueError where it is not: a reader gave both, silently)."""
        mask = mask_array(row)
        try:
            width, height = row_size(row)
        except SkipInput:  # a row without its size (edited by hand): the image's, which the reader decodes
            return {"mask": mask}
        if mask.shape[:2] != (height, width):
            raise ValueError(f"mask is {mask.shape[1]}×{mask.shape[0]}, the row's size {width}×{height}")
        return {"mask": mask}

    def from_arrays(self, arrays, shape) -> Mask:
        return Mask(np.ascontiguousarray(arrays["mask"], dtype=np.uint8), None)

    def to_arrays(self, state: Mask, shape) -> dict:
        return {"mask": state.mask}

    stacked = ("annotation", np.int64)

    def stacked_array(self, data) -> np.ndarray:
        return decode_mask(data)

    def torch_target(self, arrays, box_format, convention):
        """The mask, int64 [H, W] of class indices."""
        import torch

        return torch.from_numpy(np.asarray(arrays["mask"], dtype=np.int64))

    def torch_targets(self, table, box_format, convention, rows=None):
        """`torch_target` of each row, the masks' bytes taken from the column, not its rows."""
        import pyarrow.compute as pc
        import torch

        data = pc.struct_field(table.column("annotation"), "bytes")
        data = data.to_pylist() if rows is None else [data[i].as_py() for i in rows]
        return [torch.from_numpy(decode_mask(d or b"").astype(np.int64)) for d in data]

    def from_user_target(self, target, shape, box_format, convention):
        import torch

        tensor = isinstance(target, torch.Tensor)
        dtype = target.dtype
        mask = np.asarray(target.cpu() if tensor else target)
        return ({"mask": checked_indices(mask)},
                lambda a: torch.from_numpy(a["mask"]).to(dtype) if tensor else a["mask"].astype(mask.dtype))

    def verify(self, row, width, height, classes, decode=True):
        data = (row.get("annotation") or {}).get("bytes")
        try:
            mask, _ = read_mask(data or b"", "annotation")
        except SkipInput:
            return ["mask does not decode"]
        problems = []
        if mask.shape != (height, width):
            problems.append(f"mask is {mask.shape[1]}×{mask.shape[0]}, the image {width}×{height}")
        if classes:
            extra = sorted(set(values_of(mask)) - set(range(len(classes))) - {IGNORE})
            if extra:
                problems.append(f"mask values {extra[:5]} outside the {len(classes)} classes")
        return problems


    # ------------------------------------------------------------ health

    def audit(self, src, extra, size, classes) -> Audit:
        """The mask: readable, of the image's size (or its transpose: `size` is the upright
        image's, the mask is stored as the file is), its values among the classes."""
        name = src.target.path
        if extra is None:
            return Audit([("annotation_unreadable", name, "no mask")])
        try:
            mask, _ = read_mask(extra, name)
        except SkipInput as exc:
            return Audit([("annotation_unreadable", name, exc.reason)])
        found = audit_mask(mask, classes, name)
        w, h = size
        if mask.shape not in ((h, w), (w, h)):
            found.problems.append(("annotation_unreadable", name, f"the mask is {mask.shape[1]}×{mask.shape[0]}, "
                                                                  f"the image {w}×{h}"))
        return found

    def audit_row(self, row, classes) -> Audit:
        try:
            mask = mask_array(row)
        except SkipInput as exc:
            return Audit([("annotation_unreadable", "annotation", exc.reason)])
        found = audit_mask(mask, classes, "annotation")
        if mask.shape != row_size(row)[::-1]:
            found.problems.append(("annotation_unreadable", "annotation", f"the mask is {mask.shape[1]}×"
                                   f"{mask.shape[0]}, the image {row['width']}×{row['height']}"))
        return found


def audit_mask(mask: np.ndarray, classes: list[str], name: str) -> Audit:
    """A mask's values past the classes (IGNORE allowed), and its figures: pixels per class
    (a value without a name by its number), the classes it holds past the background."""
    pixels = np.bincount(mask.ravel(), minlength=256)
    values = np.flatnonzero(pixels).tolist()
    problems = []
    past = [v for v in values if classes and v >= len(classes) and v != IGNORE]
    if past:
        problems.append(("mask_values", name, f"values {past[:5]}{' …' if len(past) > 5 else ''} "
                                              f"({int(pixels[past].sum()):,} pixels) past the {len(classes)} classes "
                                              f"(0–{len(classes) - 1}, and {IGNORE} for none)"
                                              f"{background_hint(past, len(classes))}"))
    held = Counter(classes[v] if v < len(classes) else str(v) for v in values if v not in (0, IGNORE))
    facts = {"size": [int(mask.shape[1]), int(mask.shape[0])], "objects": len(held), "classes": dict(held),
             "mask_pixels": {(classes[v] if v < len(classes) else str(v)): int(pixels[v]) for v in values}}
    return Audit(problems, facts, hashlib.sha256(np.ascontiguousarray(mask).tobytes() + bytes(str(mask.shape), "ascii"))
                 .hexdigest())


def mask_array(row: dict) -> np.ndarray:
    """A row's mask as class indices, uint8 (H, W)."""
    return decode_mask((row.get("annotation") or {}).get("bytes") or b"")


def decode_mask(data) -> np.ndarray:
    """A stored mask's class indices, as `read_mask` gives them. `data`: bytes or a uint8 buffer
    (an 8-bit grey PNG, as expand writes them, is decoded from it by OpenCV without a copy)."""
    grey = grey_png_pixels(data)
    return grey if grey is not None else read_mask(bytes(data), "annotation")[0]


KIND = Semantic
