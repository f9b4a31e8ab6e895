"""MixUp for detection (Zhang et al., "Bag of Freebies for Training Object Detection Neural
Networks", 2019): the row's image and one donor's blended, λ·row + (1 − λ)·donor with λ drawn
from Beta(α, α), and the objects of both kept (the donor's with new ids, after the row's).

A donor of another size is scaled to fit inside the row's frame, its aspect kept, and centred
(`objects.fitted`): no donor object is cut or distorted, so every object both images had is
still whole in the blend; outside the donor the row's pixels stay as they are (a grey border
blended in would be a band no real image has). A donor object scaled to no pixel, or under the
recipe's min_area, min_width or min_height, is dropped and counted; so are the objects of an
image blended in at a weight under `min_weight` ("mixup: faint"): barely there, they are no
longer what their boxes say.
"""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
from pydantic import Field

from augpipe.mixing.base import Mix, Mixed, MixParams, Tile
from augpipe.mixing.objects import areas, counted, fitted, fresh_ids, joined, judged


class MixUpParams(MixParams):
    """`alpha`: Beta(α, α)'s parameter. The default 32 is YOLOv5's: λ lies within 0.38–0.62 99%
    of the time, so both images stay plainly visible, which matters here because every box of both
    is kept at full weight (a dataset has no per-box weight to carry λ); a small α (1, the
    classification paper's) often all but hides one image under boxes still labelled.
    `min_weight`: an image blended in at less than this loses its objects (they are barely there)."""

    alpha: float = Field(32.0, gt=0)
    min_weight: float = Field(0.2, ge=0, lt=0.5)


class MixUp(Mix):
    """The row's image and one donor's, blended (see the module)."""

    name = "MixUp"
    kinds = ("detection",)
    Params = MixUpParams

    def apply(self, primary: Tile, donors: list[Tile], rng: np.random.Generator, py_rng: random.Random,
              kind, bbox_params) -> Mixed:
        if not donors:
            return Mixed(primary.image, primary.state, {"weight": 1.0})
        weight = float(rng.beta(self.params.alpha, self.params.alpha))
        height, width = primary.image.shape[:2]
        image, state, at, _ = fitted(donors[0], height, width)
        keep, drops = judged("mixup", "too small", state, areas(state), areas(state), bbox_params)
        state = state.kept(keep)
        state.ids = fresh_ids(primary.state.ids, len(state.ids))
        x1, y1, x2, y2 = at
        out = primary.image.copy()
        blend = weight * primary.image[y1:y2, x1:x2] + (1 - weight) * image[y1:y2, x1:x2].astype(np.float64)
        out[y1:y2, x1:x2] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
        own, drops = self._faint(primary.state, weight, drops)
        state, drops = self._faint(state, 1 - weight, drops)
        mixed = joined([own, state], primary.state.masks is not None, (height, width))
        return Mixed(out, counted(mixed, drops), {"weight": weight, "at": at}, drops)

    def _faint(self, state, weight: float, drops: Counter) -> tuple:
        """The objects of an image blended in at `weight`: none when it is under min_weight."""
        if weight >= self.params.min_weight or not len(state.ids):
            return state, drops
        gone = Counter(("mixup: faint", int(c)) for c in state.categories)
        return state.kept(np.zeros(len(state.ids), bool)), drops + gone


MIX = MixUp
