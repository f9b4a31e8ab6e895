"""What a recipe may ask of augpipe: bounds checked before a transform runs.

A recipe is untrusted text. Everything here looks only at the parsed YAML and the transforms'
parameters (no image), so that a hostile recipe fails in one line and in milliseconds.
"""

from __future__ import annotations

from typing import Any

from augpipe.errors import RecipeError

MAX_TEXT_CHARS = 1_000_000
# Counted with YAML aliases expanded: a 3 KB file of nested aliases can name millions of transforms.
MAX_TRANSFORMS = 200
MAX_DEPTH = 8  # levels of transforms: a top-level OneOf of OneOfs of flips is 3
MAX_VALUES = 10_000  # list items and mapping values in the whole recipe
MAX_VALUE_DEPTH = 8  # lists and mappings nested in one parameter

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
