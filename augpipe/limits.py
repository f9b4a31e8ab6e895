"""What a recipe may ask of augpipe: bounds checked before a transform runs.

A recipe is untrusted text. Everything here looks only at the parsed YAML and the transforms'
parameters (no image), so that a hostile recipe fails in one line and in milliseconds.
"""

from __future__ import annotations

import inspect
import math
from types import SimpleNamespace
from typing import Any, Callable, Iterator

from augpipe.errors import RecipeError

MAX_TEXT_CHARS = 1_000_000
# Counted with YAML aliases expanded: a 3 KB file of nested aliases can name millions of transforms.
MAX_TRANSFORMS = 200
MAX_DEPTH = 8  # levels of transforms: a top-level OneOf of OneOfs of flips is 3
MAX_VALUES = 10_000  # list items and mapping values in the whole recipe
MAX_VALUE_DEPTH = 8  # lists and mappings nested in one parameter
# No parameter needs more (pixels, degrees, factors and sigmas are all far below); past it float
# maths degenerates (the sine of 1e308) and sizes overflow.
MAX_MAGNITUDE = 1e6
# Each transform applied to a copy is at least one pass over the image; SomeOf(n, replace=True)
# applies a child n times.
MAX_APPLICATIONS = 200
# What the transforms together may do to an image of side s: make it at most MAX_GROWTH·s +
# MAX_ADDED pixels a side (scales, pads, fixed output sizes).
MAX_GROWTH = 4.0
MAX_SIDE = 8192  # an 8192×8192 RGB image is 192 MB
MAX_ADDED = 2 * MAX_SIDE
MAX_KERNEL = 255
MAX_SIGMA = 100

# What augpipe can pass a transform, over every task (classification: the image; detection: boxes
# and instance masks too; segmentation: a mask). What one dataset gives is its target kind's.
PROVIDED_TARGETS = frozenset({"image", "bboxes", "masks", "mask"})

_FULLNAME = "__class_fullname__"


# ---------------------------------------------------------------- the recipe's size

def check_size(data: dict, where: str) -> None:
    """Bound the parsed YAML before anything recursive or costly walks it: count transforms,
    nesting and values as if aliases were copies, and stop at the first limit passed."""
    budget = _Budget(where)
    for key, value in data.items():
        if key == "transforms" and isinstance(value, list):
            budget.transforms(value, 1, "")
        else:
            budget.values(value, 1, f"field '{key}'")


class _Budget:
    def __init__(self, where: str):
        self.where = where
        self.n_transforms = 0
        self.n_values = 0

    def transforms(self, items: list, depth: int, prefix: str) -> None:
        for i, item in enumerate(items, start=1):
            self.n_transforms += 1
            name, params = _name_and_params(item)
            here = f"transform {prefix}{i} {name}"
            if self.n_transforms > MAX_TRANSFORMS:
                raise RecipeError(f"{self.where}: {here}: more than {MAX_TRANSFORMS} transforms "
                                  "(YAML aliases counted as copies)")
            if not isinstance(params, dict):
                self.values(params, 1, here)
                continue
            for key, value in params.items():
                if key != "transforms" or not isinstance(value, list):
                    self.values(value, 1, f"{here}: field '{key}'")
                elif depth == MAX_DEPTH:
                    raise RecipeError(f"{self.where}: {here}: transforms nest more than {MAX_DEPTH} levels deep")
                else:
                    self.transforms(value, depth + 1, f"{prefix}{i}.")

    def values(self, value: Any, depth: int, here: str) -> None:
        self.n_values += 1
        if self.n_values > MAX_VALUES:
            raise RecipeError(f"{self.where}: {here}: the recipe holds more than {MAX_VALUES} values "
                              "(YAML aliases counted as copies)")
        if depth > MAX_VALUE_DEPTH:
            raise RecipeError(f"{self.where}: {here}: nested more than {MAX_VALUE_DEPTH} levels deep")
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        for child in children:
            self.values(child, depth + 1, here)


def _name_and_params(item: Any) -> tuple[str, Any]:
    if isinstance(item, dict) and _FULLNAME in item:
        return str(item[_FULLNAME]).rsplit(".", 1)[-1], item
    if isinstance(item, dict) and len(item) == 1:
        name, params = next(iter(item.items()))
        return str(name), params
    return (item if isinstance(item, str) else "?"), item


# ---------------------------------------------------------------- inputs a transform needs

# Transforms that read inputs without declaring them in `targets_as_params`: without them they
# fail, or (ConstrainedCoarseDropout) do nothing.
_UNDECLARED_TARGETS = {
    "BBoxSafeRandomCrop": "bboxes",
    "RandomSizedBBoxSafeCrop": "bboxes",
    "CropNonEmptyMaskIfExists": "mask",
    "ConstrainedCoarseDropout": "mask",  # or bboxes, when given bbox_labels
}


def required_targets(cls: type, params: dict | None = None) -> set[str]:
    """The inputs a transform needs, named as albumentations names them: the image (or what it
    works on instead, a volume), and every key its `targets_as_params` declares (a mask,
    'mosaic_metadata', 'fda_metadata'...). A compose needs what its children need."""
    from albumentations.core.type_definitions import Targets

    params = params or {}
    works_on = getattr(cls, "_targets", None)
    if works_on is None:
        return set()
    works_on = works_on if isinstance(works_on, tuple) else (works_on,)
    needs = {"image" if Targets.IMAGE in works_on else works_on[0].name.lower()}
    needs.update(_declared_targets(cls, params))
    extra = _UNDECLARED_TARGETS.get(cls.__name__)
    if extra:
        needs.add("bboxes" if params.get("bbox_labels") is not None else extra)
    return needs


def _declared_targets(cls: type, params: dict) -> list[str]:
    """`targets_as_params` is a property of an instance (Mosaic's names its `metadata_key`): read it
    off the defaults and the given parameters, without building the transform."""
    prop = inspect.getattr_static(cls, "targets_as_params", None)
    if not isinstance(prop, property):
        return []
    defaults = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    try:
        return [str(key) for key in prop.fget(SimpleNamespace(**{**defaults, **params}))]
    except Exception:  # reads something else of the instance: the dry run will tell
        return []


def missing_targets(cls: type, params: dict | None = None, provided: frozenset = PROVIDED_TARGETS) -> set[str]:
    return required_targets(cls, params) - provided


# ---------------------------------------------------------------- numbers

def check_numbers(value: Any, here: str, key: str) -> None:
    """Refuse infinities, NaN and absurd magnitudes anywhere in a parameter."""
    for number in _numbers(value):
        if isinstance(number, float) and not math.isfinite(number):
            raise RecipeError(f"{here}: field '{key}': {number} is not a finite number")
        if abs(number) > MAX_MAGNITUDE:
            raise RecipeError(f"{here}: field '{key}': {float(number):g} is out of range "
                              f"(no parameter needs more than ±{MAX_MAGNITUDE:g})")


def _numbers(value: Any) -> Iterator[int | float]:
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield value
    elif isinstance(value, str):
        try:
            yield float(value)  # pydantic reads "inf" and "1e400" as numbers
        except ValueError:
            pass
    elif isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _numbers(v)


# ---------------------------------------------------------------- parameters that size work

_PIXELS = "pixels: an 8192×8192 image is 192 MB"
# Parameters that size an allocation or a loop, by name (a name means the same thing across
# albumentations' transforms, except those in _CAPS_FOR). Each cap keeps one transform within
# about 5 s and 1 GB on a 1024×1024 image (albumentations 2.0.8, one core); defaults are far below.
_CAPS: dict[str, tuple[float, str]] = {
    **dict.fromkeys((
        "height", "width", "size", "min_max_height", "max_size", "max_size_hw", "min_height", "min_width",
        "pad_height_divisor", "pad_width_divisor", "padding", "px", "x_min", "y_min", "x_max", "y_max",
        "plasma_size", "src_radius", "drop_length", "drop_width", "mask_x_length", "mask_y_length",
        "freq_mask_param", "time_mask_param", "hole_height_range", "hole_width_range", "unit_size_range",
        "shift_xy", "target_size", "cell_shape",
    ), (MAX_SIDE, _PIXELS)),
    **dict.fromkeys(("blur_limit", "kernel_size", "blur_value", "radius", "max_delta"),
                    (MAX_KERNEL, "a kernel size in pixels")),
    **dict.fromkeys(("sigma", "sigma_limit", "sigma_x_limit", "sigma_y_limit", "gauss_sigma", "alias_blur"),
                    (MAX_SIGMA, "a blur's kernel is about 6 sigma wide")),
    "num_grid_xy": (16, "each grid cell warps the whole image"),
    "num_steps": (100, "grid steps a side"),
    "nb_rows": (16, "grid points a side"),
    "nb_cols": (16, "grid points a side"),
    "num_control_points": (8, "memory grows as the pixels times the points squared: 1.2 GB a megapixel at 8"),
    "num_holes_range": (10_000, "holes"),
    "holes_number_xy": (256, "holes a side"),
    "num_masks_x": (1000, "masks"),
    "num_masks_y": (1000, "masks"),
    "grid": (100, "cells a side"),
    "tile_grid_size": (256, "tiles a side"),
    "number_of_patches": (1000, "patches"),
    "num_shadows_limit": (100, "each shadow is a pass over the image"),
    "shadow_dimension": (100, "corners of each shadow"),
    "num_flare_circles_range": (1000, "circles"),
    "n_segments": (1000, "each segment is a pass over the image"),
    "iterations": (10, "each iteration is a pass over the image"),
    "num_output_channels": (3, "augpipe writes grey or RGB images"),
}
_CAPS_FOR: dict[tuple[str, str], tuple[float, str]] = {
    ("Superpixels", "max_size"): (256, "the segmentation runs at this size, one pass a segment"),
    ("Morphological", "scale"): (MAX_KERNEL, "a kernel size in pixels"),
}
MAX_ZOOM_STEPS = 100


def check_caps(name: str, params: dict, here: str) -> None:
    """Refuse a parameter, as given, past the cap of what it sizes."""
    for key, value in params.items():
        cap = _CAPS_FOR[(name, key)] if (name, key) in _CAPS_FOR else _CAPS.get(key)
        if cap is None:
            continue
        limit, why = cap
        largest = max((abs(n) for n in _numbers(value)), default=0)
        if largest > limit:
            raise RecipeError(f"{here}: field '{key}': {largest:g} is more than {limit:g}, "
                              f"the most augpipe allows ({why})")


def check_built(transform: Any, here: str) -> None:
    """Ranges albumentations accepts but that make unbounded work or an empty image."""
    name = type(transform).__name__
    if name == "ZoomBlur":
        low_step, high_factor = transform.step_factor[0], transform.max_factor[1]
        if low_step <= 0 or (high_factor - 1) / low_step > MAX_ZOOM_STEPS:
            least = (high_factor - 1) / MAX_ZOOM_STEPS
            raise RecipeError(f"{here}: field 'step_factor': a step as small as {low_step:g} makes more than "
                              f"{MAX_ZOOM_STEPS} zoom steps, each a pass over the image: give a range "
                              f"[lo, hi] with lo at least {least:.3g}")
    if name == "RandomScale" and transform.scale_limit[0] <= -1:
        raise RecipeError(f"{here}: field 'scale_limit': the scale factor can reach {1 + transform.scale_limit[0]:g}, "
                          "which must stay above 0: give a range [lo, hi] with lo above -1")


# ---------------------------------------------------------------- what the transforms add up to

def check_cost(built: list[tuple[str, Any]], where: str) -> None:
    """Bound what one copy costs over the whole recipe: the transforms applied to it, and how much
    they can grow the image (five RandomScale(×4) in a row make a 256 px image 262144 px a side).
    `built`: (label, transform) for each top-level transform, in order."""
    total = _Bound(0, 1.0, 0.0)
    for label, transform in built:
        total = total.then(_bound(transform, lambda leaf: 1))
        if total.cost > MAX_APPLICATIONS:
            raise RecipeError(f"{where}: {label}: the transforms up to here apply up to {total.cost:g} "
                              f"transforms to each copy (at most {MAX_APPLICATIONS})")
        if total.growth > MAX_GROWTH:
            raise RecipeError(f"{where}: {label}: the transforms up to here can grow an image "
                              f"{total.growth:g}× a side (at most {MAX_GROWTH:g}×)")
        if total.added > MAX_ADDED:
            raise RecipeError(f"{where}: {label}: the transforms up to here can add up to {total.added:g} "
                              f"pixels a side (at most {MAX_ADDED})")


def worst_cost(transforms: list, leaf_cost: Callable[[Any], float]) -> float:
    """The most one copy can cost when each transform applied costs `leaf_cost(transform)`; it is
    called once a transform, in the order the recipe names them (composes' children included)."""
    return _Bound.chain([_bound(t, leaf_cost) for t in transforms]).cost


class _Bound:
    """At most `cost` (transforms applied, or their seconds); an image of side s comes out at most
    growth·s + added pixels a side. growth >= 1: any transform may not fire."""

    def __init__(self, cost: float, growth: float, added: float):
        self.cost, self.growth, self.added = cost, growth, added

    def then(self, other: _Bound) -> _Bound:
        return _Bound(self.cost + other.cost, self.growth * other.growth, self.added * other.growth + other.added)

    @staticmethod
    def worst(bounds: list[_Bound]) -> _Bound:
        return _Bound(max(b.cost for b in bounds), max(b.growth for b in bounds), max(b.added for b in bounds))

    @staticmethod
    def chain(bounds: list[_Bound]) -> _Bound:
        total = _Bound(0, 1.0, 0.0)
        for b in bounds:
            total = total.then(b)
        return total


def _bound(transform: Any, leaf_cost: Callable[[Any], float]) -> _Bound:
    from albumentations.core.composition import BaseCompose, OneOf, OneOrOther, SomeOf

    if not isinstance(transform, BaseCompose):  # ColorJitter has `transforms` too: functions
        growth, added = _leaf_growth(transform)
        return _Bound(leaf_cost(transform), max(growth, 1.0), added)
    bounds = [_bound(c, leaf_cost) for c in transform.transforms]
    if isinstance(transform, (OneOf, OneOrOther)):
        return _Bound.worst(bounds)
    if isinstance(transform, SomeOf) and transform.replace:  # the worst child, n times
        worst = _Bound.worst(bounds)
        chained = _Bound.chain([worst] * min(transform.n, MAX_APPLICATIONS + 1))
        return _Bound(transform.n * worst.cost, chained.growth, chained.added)
    total = _Bound.chain(bounds)
    if isinstance(transform, SomeOf):  # n distinct children
        total.cost = sum(sorted((b.cost for b in bounds), reverse=True)[:transform.n])
    return total


def _leaf_growth(t: Any) -> tuple[float, float]:
    """(growth, added) for one transform, an upper bound. albumentations declares no output size,
    so the transforms that can make an image larger are named here; the rest keep or shrink it.
    A fixed output size counts as added pixels: growth is at least 1 since it may not fire."""
    name = type(t).__name__
    if name == "RandomScale":
        return 1 + max(t.scale_limit[1], 0.0), 0.0
    if name == "Affine" and t.fit_output:  # a rotation and shear at most double the bounding box
        return 2 * _largest(t.scale), 0.0
    if name == "Perspective" and t.fit_output and not t.keep_size:
        return 1 + 2 * t.scale[1], 0.0
    if name == "CropAndPad" and not t.keep_size:
        return 1 + 2 * max(_largest(t.percent), 0.0), 2 * max(_largest(t.px), 0.0)
    if name == "Pad":
        return 1.0, 2 * _largest(t.padding)
    if name == "PadIfNeeded":
        return 1.0, _largest((t.min_height, t.min_width)) + _largest((t.pad_height_divisor, t.pad_width_divisor))
    if name in ("RandomCrop", "CenterCrop") and t.pad_if_needed:
        return 1.0, float(max(t.height, t.width))
    if name == "Crop" and t.pad_if_needed:
        return 1.0, float(max(t.x_max, t.y_max))
    if name == "Resize":
        return 1.0, float(max(t.height, t.width))
    if name in ("RandomResizedCrop", "RandomSizedCrop"):
        return 1.0, _largest(t.size)
    # SmallestMaxSize makes the short side max_size: the long side grows further on long, thin
    # images (a 10:1 image ten times further), which no parameter bounds.
    if name in ("LongestMaxSize", "SmallestMaxSize", "MaxSizeTransform"):
        return 1.0, _largest((t.max_size, t.max_size_hw))
    return 1.0, 0.0


def _largest(value: Any) -> float:
    return float(max((n for n in _numbers(value)), default=0.0))
