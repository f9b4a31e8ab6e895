"""The contract of a multi-image transform: a recipe step that takes other images (donors).

A recipe names it like any transform (`Mosaic: {p: 1}`), at its top level. The plan chooses
each row's donors from the same split (`augpipe.mixing.donors`) and lists them in the job, so
that any worker reads them itself; `sample.apply_recipe` runs the single-image transforms before
the step on the row's image and, with their own seeds, on each donor, then the step, then the
transforms after it. Everything a step draws comes from the generators it is given.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


@dataclass
class Tile:
    """One image and the kind's state on it (`targets.boxes.Boxes`, `targets.semantic.Mask`)."""

    image: np.ndarray  # H×W×3 uint8
    state: Any


@dataclass
class Mixed:
    """What a step made: the image, its state, what it drew and which objects it dropped."""

    image: np.ndarray
    state: Any
    record: dict  # JSON-able: placements, weights, pasted objects (the row's lineage keeps it)
    # (reason, category index) -> objects dropped; a reason names the step ("mosaic: cut off")
    drops: Counter = field(default_factory=Counter)


class MixParams(BaseModel):
    """Parameters every step takes; a step's own model adds its fields."""

    model_config = ConfigDict(extra="forbid")
    p: float = Field(0.5, ge=0, le=1)


class Mix:
    """A multi-image step. A subclass is registered by being in a module of augpipe/mixing that
    defines `MIX` (see `augpipe.mixing.registry`)."""

    name: ClassVar[str] = ""
    kinds: ClassVar[tuple[str, ...]] = ()  # the target kinds (Target.name) it works on
    Params: ClassVar[type[MixParams]] = MixParams

    def __init__(self, params: MixParams):
        self.params = params

    @property
    def p(self) -> float:
        return self.params.p

    needs_donors: ClassVar[bool] = True  # without a donor (a split of one image) the step does not fire
    repeats_donors: ClassVar[bool] = False  # a donor again in one row once the split has no other

    def donors(self) -> int:
        """How many donor images one row takes."""
        return 1

    def needs_objects(self) -> bool:
        """Donors only among images with objects (a paste needs something to paste)."""
        return False

    def rare_weighted(self) -> bool:
        """Donors drawn with weights toward images holding rare classes (repeat factors)."""
        return False

    def apply(self, primary: Tile, donors: list[Tile], rng: np.random.Generator, py_rng: random.Random,
              kind, bbox_params) -> Mixed:
        """The step on the row's tile and its donors' (already through the transforms before the
        step), always: the caller draws `p`. `kind`: the dataset's Target; `bbox_params`: the
        recipe's `BboxSpec` (min_visibility, min_area, min_width, min_height apply to each object's
        visible part). The image comes back H×W×3 uint8, the state of the primary's type; a donor's
        objects get new ids, unique in the row. Fewer donors than `donors()` (a split too small)
        is no error."""
        raise NotImplementedError
