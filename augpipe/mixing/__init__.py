"""Multi-image transforms (Mosaic, CopyPaste, MixUp), one a module: each module here defining
`MIX` (a `Mix` subclass, see base.py for the contract) is registered by its name."""

from __future__ import annotations

import functools
import hashlib
import importlib
import pkgutil
import random
from collections.abc import Sequence

from augpipe.mixing.base import Mix, Mixed, MixParams, Tile

__all__ = ["Mix", "MixParams", "Mixed", "Tile", "registry", "pick_donors", "donor_seed"]


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


def pick_donors(candidates: Sequence[str], row_seed: int, step: int, count: int, exclude: str | None = None,
                weights: Sequence[float] | None = None) -> list[str]:
    """`count` donors for one step of one row, drawn (with replacement) by the row's seed from
    `candidates` (the split's sources, in their sorted order), never the row's own source while
    there is another. The same arguments give the same donors on every machine."""
    pool = [(c, 1.0 if weights is None else float(w)) for c, w in zip(candidates, weights or candidates)]
    others = [(c, w) for c, w in pool if c != exclude and w > 0]
    pool = others or [(c, w) for c, w in pool if w > 0]
    if not pool or count <= 0:
        return []
    rng = _rng(row_seed, f"donors {step}")
    names = [c for c, _ in pool]
    if weights is None:
        return [names[rng.randrange(len(names))] for _ in range(count)]
    return rng.choices(names, weights=[w for _, w in pool], k=count)


def donor_seed(row_seed: int, step: int, slot: int) -> int:
    """The seed of a donor's own transforms (those before the step) in one row."""
    digest = hashlib.sha256(f"donor\x00{row_seed}\x00{step}\x00{slot}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
