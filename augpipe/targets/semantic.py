"""Semantic segmentation: a mask a row, its pixel values the class indices.

The column is `annotation: struct<bytes, path>`, a Hugging Face Image() holding a PNG whose
values are the indices as they were (mode L, or P with the source's palette). Masks are read
with PIL: OpenCV expands palette PNGs into colours even with IMREAD_UNCHANGED. There is no
`label` column beside it (`rename_columns` would make two).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from augpipe.errors import SkipInput
from augpipe.row import image_column
from augpipe.targets import Target
from augpipe.targets.geometry import orient, stored_size


@dataclass
class Mask:
    mask: np.ndarray  # H×W uint8 class indices
    palette: bytes | None  # the source PNG's palette, kept for the output


IGNORE = 255  # the value many datasets give pixels that belong to no class (VOC's borders)


class Semantic(Target):
    task = "segmentation"
    albumentations_targets = ("mask",)

    def __init__(self, classes: int = 0):
        self.classes = classes  # named classes: a mask value past them is a recorded skip

    def columns(self, classes, labelled):
        return [image_column("annotation")]

    def load(self, src, decoded, extra):
        if extra is None:
            raise SkipInput(f"no mask ({src.target.path})")
        mask, palette = read_mask(extra, src.target.path)
        stored = stored_size(decoded.rgb.shape, decoded.orientation)
        if mask.shape[::-1] != stored:
            raise SkipInput(f"mask {src.target.path} is {mask.shape[1]}×{mask.shape[0]}, the image "
                            f"{stored[0]}×{stored[1]}")
        if self.classes:
            present = np.flatnonzero(np.bincount(mask.ravel(), minlength=256))  # np.unique sorts: 3× slower
            extra = sorted(set(present.tolist()) - set(range(self.classes)) - {IGNORE})
            if extra:
                raise SkipInput(f"mask {src.target.path} has values {extra[:5]} past the {self.classes} named "
                                f"classes (0–{self.classes - 1}, and {IGNORE} for none)")
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
        return {"annotation": {"bytes": write_mask(state.mask, state.palette), "path": None}}

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
        return {"mask": mask_array(row)}

    def verify(self, row, width, height, classes):
        data = (row.get("annotation") or {}).get("bytes")
        try:
            mask, _ = read_mask(data or b"", "annotation")
        except SkipInput:
            return ["mask does not decode"]
        problems = []
        if mask.shape != (height, width):
            problems.append(f"mask is {mask.shape[1]}×{mask.shape[0]}, the image {width}×{height}")
        if classes:
            extra = sorted(set(np.unique(mask).tolist()) - set(range(len(classes))) - {IGNORE})
            if extra:
                problems.append(f"mask values {extra[:5]} outside the {len(classes)} classes")
        return problems


def mask_array(row: dict) -> np.ndarray:
    """A row's mask as class indices, uint8 (H, W)."""
    return read_mask((row.get("annotation") or {}).get("bytes") or b"", "annotation")[0]


def read_mask(data: bytes, name: str) -> tuple[np.ndarray, bytes | None]:
    """Class indices as stored (a palette PNG's indices, not its colours), and the palette."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            palette = bytes(im.getpalette() or []) if im.mode == "P" else None
            if im.mode in ("P", "L"):
                mask = np.asarray(im, dtype=np.uint8)
            elif im.mode in ("1", "I", "I;16", "I;16B", "I;16L"):
                values = np.asarray(im)
                low, high = int(values.min(initial=0)), int(values.max(initial=0))
                if low < 0 or high > 255:  # a 32-bit −2 would wrap to 254, another class
                    raise SkipInput(f"mask {name} has values outside 0..255 ({low}..{high})")
                mask = values.astype(np.uint8)
            else:
                raise SkipInput(f"mask {name} is {im.mode}, not class indices (mode L or P)")
    except (UnidentifiedImageError, OSError, ValueError):
        raise SkipInput(f"mask {name} is not a readable image") from None
    return np.ascontiguousarray(mask), palette


def write_mask(mask: np.ndarray, palette: bytes | None) -> bytes:
    from PIL import Image

    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    im = Image.frombytes("P" if palette else "L", (mask.shape[1], mask.shape[0]), mask.tobytes())
    if palette:
        im.putpalette(palette)
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=1)  # a third of level 6's time; masks are small either way
    return buf.getvalue()


KIND = Semantic
