"""Multi-image transforms (Mosaic, CopyPaste, MixUp), one a module: each module here defining
`MIX` (a `Mix` subclass, see base.py for the contract) is registered by its name."""

from __future__ import annotations

import bisect
import functools
import hashlib
import importlib
import itertools
import pkgutil
import random
from collections import Counter
from collections.abc import Sequence

from augpipe.mixing.base import Mix, Mixed, MixParams, Tile

__all__ = ["DonorPool", "Mix", "MixParams", "Mixed", "Tile", "registry", "donor_seed"]


@functools.lru_cache(maxsize=None)
def registry() -> dict[str, type[Mix]]:
    mixes = {}
    for module in pkgutil.iter_modules(__path__):
        cls = getattr(importlib.import_module(f"{__name__}.{module.name}"), "MIX", None)
        if cls is not None:
            mixes[cls.name] = cls
    return dict(sorted(mixes.items()))


def _rng(row_seed: int, label: str) -> random.Random:
    digest = hashlib.sha256(f"{label}\x00{row_seed}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


class DonorPool:
    """The sources one step draws its donors from, in their sorted order, each with its key (its
    content's sha256 when known, else its path) and its weight (None: all alike)."""

    TRIES = 32  # draws before a rejection sampler falls back to listing what is left

    def __init__(self, names: Sequence[str], keys: Sequence[str] | None = None,
                 weights: Sequence[float] | None = None):
        self.names, self.keys = list(names), list(keys if keys is not None else names)
        self.cumulative = list(itertools.accumulate(weights)) if weights is not None else None
        self.per_key = Counter(self.keys)

    def pick(self, row_seed: int, step: int, count: int, own: frozenset = frozenset(),
             taken: set | None = None, repeats: bool = False) -> list[str]:
        """Up to `count` donors for step `step` of a row, by the row's seed: never one whose key is
        in `own` (the row's own content), none twice nor one in `taken` (the row's earlier steps');
        with `repeats`, taken ones again once the fresh are used up (a mosaic's cells), else fewer.
        The same arguments give the same donors on every machine. `taken` gets the keys drawn."""
        taken = set() if taken is None else taken
        if count <= 0 or sum(self.per_key[k] for k in own) >= len(self.names):
            return []
        rng = _rng(row_seed, f"donors {step}")
        out = []
        for _ in range(count):
            i = self._draw(rng, lambda k: k not in own and k not in taken) \
                or (repeats and self._draw(rng, lambda k: k not in own))
            if not i:
                break
            out.append(self.names[i - 1])
            taken.add(self.keys[i - 1])
        return out

    def _draw(self, rng: random.Random, fits) -> int:
        """1 + the index of a draw whose key fits, or 0 when there is none."""
        for _ in range(self.TRIES):
            i = self._index(rng, len(self.names))
            if fits(self.keys[i]):
                return i + 1
        left = [i for i, k in enumerate(self.keys) if fits(k)]
        if not left:
            return 0
        if self.cumulative is None:
            return left[rng.randrange(len(left))] + 1
        weights = [self.cumulative[i] - (self.cumulative[i - 1] if i else 0) for i in left]
        return rng.choices(left, weights=weights)[0] + 1

    def _index(self, rng: random.Random, n: int) -> int:
        if self.cumulative is None:
            return rng.randrange(n)
        return min(bisect.bisect_right(self.cumulative, rng.random() * self.cumulative[-1]), n - 1)


def donor_seed(row_seed: int, step: int, slot: int) -> int:
    """The seed of a donor's own transforms (those before the step) in one row."""
    digest = hashlib.sha256(f"donor\x00{row_seed}\x00{step}\x00{slot}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
