"""From a scan to shard jobs: splits, copies per source, balance, shard boundaries.

Everything here depends only on the sources, the recipe and the options, never on the
worker count, so that any engine cuts the same shards.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import math
from collections import Counter
from dataclasses import dataclass

from augpipe.errors import SourceError
from augpipe.layout import SPLITS, shard_name
from augpipe.mixing import pick_donors
from augpipe.recipe import Recipe, has_mixes, mix_of, parts
from augpipe.sample import SourceItem, sample_seed
from augpipe.formats.base import Scan, SourceFile
from augpipe.targets import for_scan

# Cut a split into at least this many shards when it has rows enough, so that workers have
# work to share; a fixed number, never the worker count, keeps shard files reproducible.
PARALLEL_SHARDS = 16
MIN_ROWS_PER_SHARD = 256


@dataclass(frozen=True)
class ShardJob:
    split: str
    index: int
    count: int
    sources: tuple[SourceItem, ...]

    @property
    def name(self) -> str:
        return shard_name(self.split, self.index, self.count)

    @property
    def planned_rows(self) -> int:
        return sum(len(s.copies) for s in self.sources)

    @property
    def cost(self) -> int:
        return self.planned_rows


@dataclass(frozen=True)
class Plan:
    shards: tuple[ShardJob, ...]
    classes: tuple[str, ...]
    split_sources: dict[str, int]
    planned_rows: dict[str, int]


def is_validation(key: str, fraction: float) -> bool:
    """A stable hash of the key alone (the file's content, or its path): adding files never
    moves an existing one, and identical files always share a split."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split_key(f: SourceFile, content_sha256: str | None) -> str:
    """What decides a file's split: its content's sha256 when known, else its path."""
    return f"sha256:{content_sha256}" if content_sha256 is not None else f.relpath


def assign_split(f: SourceFile, val_fraction: float, content_sha256: str | None = None) -> str:
    if f.split is not None:
        return f.split
    return "validation" if is_validation(split_key(f, content_sha256), val_fraction) else "train"


def make_plan(scan: Scan, recipe: Recipe, copies: int, val_fraction: float, balance: bool, shard_bytes: int,
              hashes: dict[str, str] | None = None, seed: int = 0) -> Plan:
    """`hashes`: each source's sha256 (split by content), or None (split by path); `seed`: the
    run's, which draws the donors of a recipe's multi-image steps."""
    hashes = hashes or {}
    if not 0 <= val_fraction < 1:
        raise SourceError(f"--val-fraction must be at least 0 and below 1, not {val_fraction}")
    grouping = for_scan(scan).balance_group(scan.classes)
    if balance and grouping is None:
        raise SourceError("--balance needs a class an image, or classes of objects: a segmentation dataset has neither")
    if balance and not scan.labelled:
        raise SourceError("--balance needs class folders: this source has no labels")
    if copies == 0 and not recipe.keep_original:
        raise SourceError("nothing to write: copies is 0 and the recipe has keep_original: false")
    label_of = {name: i for i, name in enumerate(scan.classes)}
    by_split: dict[str, list[SourceFile]] = {s: [] for s in SPLITS}
    for f in scan.files:
        by_split[assign_split(f, val_fraction, hashes.get(f.relpath))].append(f)
    group = grouping(by_split["train"]) if balance else None
    train_copies = _copies_per_source(by_split["train"], copies, recipe.keep_original, balance, group)
    shards: list[ShardJob] = []
    for split in SPLITS:
        items, weights = [], []
        for f in by_split[split]:
            wanted = train_copies[f.relpath] if split == "train" else (0,)
            label = label_of[f.class_name] if f.class_name is not None else None
            mask = getattr(f.target, "path", None)
            items.append(SourceItem(f.relpath, label, wanted, hashes.get(f.relpath), f.target,
                                    hashes.get(mask) if mask else None))
            weights.append(max(f.size, 1) * len(wanted))
        items = with_donors(items, recipe, seed)
        shards.extend(_cut(split, items, weights, shard_bytes))
    return Plan(
        shards=tuple(shards),
        classes=tuple(scan.classes),
        split_sources={s: len(v) for s, v in by_split.items() if v},
        planned_rows={s: sum(t.planned_rows for t in shards if t.split == s) for s in SPLITS if by_split[s]},
    )


def with_donors(items: list[SourceItem], recipe: Recipe, seed: int) -> list[SourceItem]:
    """Each copy's donors for the recipe's multi-image steps, drawn by the row's seed from the
    same split (`items`): a validation image never reaches a training row."""
    if not has_mixes(recipe) or not any(c for it in items for c in it.copies):
        return items
    refs = {it.relpath: dataclasses.replace(it, copies=()) for it in items}
    pools = donor_pools(recipe, list(refs.values()))
    out = []
    for it in items:
        donors = tuple((copy, tuple(refs[name] for name in draw_donors(recipe, pools, sample_seed(seed, it.relpath, copy),
                                                                       it.relpath)))
                       for copy in it.copies if copy)
        out.append(dataclasses.replace(it, donors=donors))
    return out


def donor_pools(recipe: Recipe, items: list) -> list[tuple[list[str], list[float] | None]]:
    """For each multi-image step, in order, the sources it draws from and their weights."""
    ordered = sorted(items, key=lambda it: it.relpath)
    return [donor_pool(mix_of(spec), ordered) for _, spec in parts(recipe) if spec is not None]


def draw_donors(recipe: Recipe, pools: list, row_seed: int, own: str) -> list[str]:
    """One row's donors, every step's in order (what `SourceItem.donors` lists for the copy)."""
    steps = [mix_of(spec) for _, spec in parts(recipe) if spec is not None]
    return [name for k, (mix, (names, weights)) in enumerate(zip(steps, pools))
            for name in pick_donors(names, row_seed, k, mix.donors(), own, weights)]


def donor_pool(mix, items: list[SourceItem]) -> tuple[list[str], list[float] | None]:
    """The sources a step may draw donors from (for a paste, those with objects) and their
    weights (toward rare classes, when the step asks; else None: all alike)."""
    if mix.needs_objects():
        with_objects = [it for it in items if _categories(it)]
        items = with_objects or items
    names = [it.relpath for it in items]
    if not mix.rare_weighted():
        return names, None
    return names, rare_weights(items)


def _categories(item: SourceItem) -> tuple[int, ...]:
    return tuple(getattr(item.target, "categories", ()) or ())


def rare_weights(items: list[SourceItem]) -> list[float]:
    """Each source's repeat factor (LVIS) over these sources: images with rare classes weigh more."""
    share = Counter(c for it in items for c in set(_categories(it)))
    top = max(share.values(), default=0)
    return [max((math.sqrt(top / share[c]) for c in set(_categories(it))), default=1.0) for it in items]


def _copies_per_source(files: list[SourceFile], copies: int, keep_original: bool, balance: bool,
                       group) -> dict[str, tuple]:
    originals = (0,) if keep_original else ()
    if not balance:
        return {f.relpath: originals + tuple(range(1, copies + 1)) for f in files}
    groups = {f.relpath: group(f) for f in files}
    counts = Counter(groups.values())
    target = max(counts.values(), default=0) * (copies + len(originals))
    out = {}
    for cls, n in counts.items():
        members = sorted((rel for rel, g in groups.items() if g == cls), key=_stable_rank)
        extra = max(target - n * len(originals), 0)
        base, more = divmod(extra, n)
        for i, rel in enumerate(members):
            k = base + (1 if i < more else 0)
            out[rel] = originals + tuple(range(1, k + 1))
    return out


def _stable_rank(relpath: str) -> bytes:
    return hashlib.sha256(b"balance\x00" + relpath.encode("utf-8")).digest()


def _cut(split: str, items: list[SourceItem], weights: list[int], shard_bytes: int) -> list[ShardJob]:
    """Contiguous shards of about equal estimated size, each at most about shard_bytes, and a
    tail of smaller ones (see `_cut_points`)."""
    if not items:
        return []
    rows = sum(len(t.copies) for t in items)
    total = sum(weights)
    count = max(math.ceil(total / shard_bytes), min(PARALLEL_SHARDS, rows // MIN_ROWS_PER_SHARD), 1)
    cuts = _cut_points(min(count, len(items)))
    groups: list[list[SourceItem]] = [[] for _ in range(len(cuts) + 1)]
    running = 0
    for item, weight in zip(items, weights):
        # the shard this item's midpoint falls in
        groups[bisect.bisect_right(cuts, (running + weight / 2) / total)].append(item)
        running += weight
    groups = [g for g in groups if g]
    return [ShardJob(split, i, len(groups), tuple(g)) for i, g in enumerate(groups)]


# The last share is cut again into 1/2, 1/4, 1/8 and 1/8: run last (largest first), they let
# workers that would finish at different times finish together, whatever their number.
TAIL = (0.5, 0.75, 0.875)
TAIL_FROM_SHARDS = 4  # a split of fewer shards keeps them whole


def _cut_points(count: int) -> list[float]:
    """Where shards end, as fractions of the split's total weight."""
    cuts = [i / count for i in range(1, count)]
    if count >= TAIL_FROM_SHARDS:
        cuts += [(count - 1 + f) / count for f in TAIL]
    return cuts
