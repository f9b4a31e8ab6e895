"""What a recipe may ask of augpipe: bounds checked before a transform runs.

A recipe is untrusted text. Everything here looks only at the parsed YAML and the transforms'
parameters (no image), so that a hostile recipe fails in one line and in milliseconds.
"""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any

from augpipe.errors import RecipeError

MAX_TEXT_CHARS = 1_000_000
# Counted with YAML aliases expanded: a 3 KB file of nested aliases can name millions of transforms.
MAX_TRANSFORMS = 200
MAX_DEPTH = 8  # levels of transforms: a top-level OneOf of OneOfs of flips is 3
MAX_VALUES = 10_000  # list items and mapping values in the whole recipe
MAX_VALUE_DEPTH = 8  # lists and mappings nested in one parameter

PROVIDED_TARGETS = frozenset({"image"})  # what augpipe passes each transform

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


def missing_targets(cls: type, params: dict | None = None) -> set[str]:
    return required_targets(cls, params) - PROVIDED_TARGETS
