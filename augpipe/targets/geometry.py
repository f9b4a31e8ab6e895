"""The fixed geometry every target shares with its image: EXIF orientation and `output.resize`.

Both go through albumentations, as the recipe does, so that boxes and masks follow the pixels
exactly. No threshold drops a box in an EXIF turn (the source's own geometry); a resize judges
boxes by the recipe's `bbox_params` sizes, as each of its steps does.
"""

from __future__ import annotations

import functools
import threading

import cv2
import numpy as np

# EXIF orientation -> the flips that show the stored pixels upright (what the decoder did to them)
_ORIENT = {
    2: ("HorizontalFlip",),
    3: ("HorizontalFlip", "VerticalFlip"),
    4: ("VerticalFlip",),
    5: ("Transpose",),
    6: ("Transpose", "HorizontalFlip"),
    7: ("Transpose", "HorizontalFlip", "VerticalFlip"),
    8: ("Transpose", "VerticalFlip"),
}


def stored_size(shape: tuple[int, ...], orientation: int | None) -> tuple[int, int]:
    """(width, height) of the pixels as stored in the file, from the decoded (upright) shape."""
    h, w = shape[:2]
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


@functools.lru_cache(maxsize=None)
def _compose(names: tuple[str, ...], resize: tuple[int, int, int] | None, kind: type | None, thread: int = 0,
             limits: tuple[float, float, float] | None = None):
    """The fixed steps, with the kind's own `geometry_options` (boxes: their processor, judging
    boxes by `limits`, (min_area, min_width, min_height), when given); `kind` is the kind's class,
    whose options do not depend on a dataset's. A Compose a thread."""
    from augpipe.recipe import compose_class, import_albumentations

    A = import_albumentations()
    steps = [getattr(A, n)(p=1.0) for n in names]
    if resize is not None:
        h, w, interpolation = resize
        steps.append(A.Resize(h, w, interpolation=interpolation, mask_interpolation=cv2.INTER_NEAREST, p=1.0))
    options = kind.geometry_options() if kind is not None else {}
    if limits is not None and "bbox_params" in options:
        b = options["bbox_params"]
        options["bbox_params"] = A.BboxParams(format=b.format, label_fields=b.label_fields, clip=b.clip,
                                              **dict(zip(("min_area", "min_width", "min_height"), limits)))
    return compose_class()(steps, mask_interpolation=cv2.INTER_NEAREST, p=1.0, **options)


def orient(inputs: dict, stored: tuple[int, int], orientation: int | None, kind: type | None = None) -> dict:
    """Targets given on the stored pixels, turned as the decoder turned the image; `kind` the
    target kind's class, when the inputs need its processors."""
    names = _ORIENT.get(orientation or 1)
    if not names:
        return inputs
    w, h = stored
    out = _compose(names, None, kind, threading.get_ident())(image=np.zeros((h, w, 1), np.uint8), **inputs)
    out.pop("image")
    return out


def resize(image: np.ndarray, inputs: dict, height: int, width: int, kind: type | None = None,
           bbox_params=None) -> tuple[np.ndarray, dict]:
    """`output.resize` of the image and its targets together (area when shrinking); `kind` the
    target kind's class; `bbox_params` the recipe's, whose sizes judge the resized boxes."""
    shrink = height * width < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    limits = None if bbox_params is None else (bbox_params.min_area, bbox_params.min_width, bbox_params.min_height)
    out = _compose((), (height, width, interpolation), kind, threading.get_ident(), limits)(image=image, **inputs)
    return out.pop("image"), out


# Steps that move mask pixels without reading their values: each output pixel is one input pixel
# (nearest neighbour: the recipe's Compose sets mask_interpolation for all) or the fill outside.
_PICKING = frozenset({
    "HorizontalFlip", "VerticalFlip", "Transpose", "RandomRotate90", "D4", "SquareSymmetry",
    "Rotate", "SafeRotate", "Affine", "ShiftScaleRotate", "Perspective",
    "Crop", "CenterCrop", "RandomCrop", "RandomResizedCrop", "RandomSizedCrop",
    "Resize", "LongestMaxSize", "SmallestMaxSize", "PadIfNeeded", "Pad",
})
_ROUTING = frozenset({"OneOf", "SomeOf", "Sequential", "OneOrOther", "RandomOrder"})


def picks_mask_pixels(specs) -> bool:
    """Whether every step of these recipe specs leaves masks alone (image-only steps) or moves
    their pixels by position only, 0 outside: then a mask's bits are moved independently of
    each other, and 0/1 masks can travel as the bits of one plane."""
    from augpipe.recipe import _FULLNAME, allowed_transforms, import_albumentations

    A = import_albumentations()
    for spec in specs:
        name = spec.get(_FULLNAME)
        if name in _ROUTING:
            if not picks_mask_pixels(spec.get("transforms", ())):
                return False
            continue
        cls = allowed_transforms().get(name)
        if cls is None:
            return False
        if issubclass(cls, A.ImageOnlyTransform):
            continue
        if name not in _PICKING or spec.get("fill_mask", 0) != 0 or spec.get("mask_interpolation", 0) != 0:
            return False
    return True
