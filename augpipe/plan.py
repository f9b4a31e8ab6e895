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

from augpipe.errors import SourceError, UsageError
from augpipe.layout import SPLITS, shard_name
from augpipe.mixing import DonorPool
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
    balance: dict | None = None  # --balance by repeat factors: what the manifest records of it


@dataclass(frozen=True)
class RepeatFactors:
    """LVIS's repeat-factor sampling (Gupta et al. 2019) over a split's files: a class held by a
    share f of the images has r = max(1, sqrt(threshold / f)); an image's factor is the largest
    of its classes' (1 for an image holding none)."""

    threshold: float
    image_share: dict[str, float]  # class -> the share of the files holding it
    by_class: dict[str, float]
    by_image: dict[str, float]  # relpath -> the image's factor
    objects: Counter  # class -> what the files hold of it (objects), before augmentation

    def record(self) -> dict:
        """What the manifest records (beside the objects written, `objects_after`)."""
        return {"method": "repeat factors", "threshold": float(f"{self.threshold:.6g}"),
                "image_share": {c: round(v, 4) for c, v in sorted(self.image_share.items())},
                "repeat_factor": {c: round(v, 4) for c, v in sorted(self.by_class.items())},
                "objects_before": dict(sorted(self.objects.items()))}


def repeat_factors(files: list[SourceFile], kind, classes, threshold: float | None = None) -> RepeatFactors:
    """The repeat factors of `files` (a split's, say the training files) for a target kind whose
    `held` names the classes a source holds. `threshold`: None for the default, the image share of
    the most common class: it is never repeated, every rarer class is lifted by sqrt(f_max / f)
    (LVIS's fixed 0.001 suits a thousand classes over 100k images; a set of a few classes over a
    few hundred images has no class that rare, and would get no extra rows)."""
    held = {f.relpath: kind.held(f, classes) for f in files}
    images = Counter(c for h in held.values() for c in h)
    share = {c: n / len(files) for c, n in images.items()}
    t = max(share.values(), default=1.0) if threshold is None else threshold
    by_class = {c: max(1.0, math.sqrt(t / f)) for c, f in share.items()}
    by_image = {rel: max((by_class[c] for c in h), default=1.0) for rel, h in held.items()}
    objects: Counter = Counter()
    for h in held.values():
        objects.update(h)
    return RepeatFactors(t, share, by_class, by_image, objects)


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
              hashes: dict[str, str] | None = None, repeat_threshold: float | None = None,
              seed: int = 0) -> Plan:
    """`hashes`: each source's sha256 (split by content), or None (split by path);
    `repeat_threshold`: --balance's by repeat factors (None: `repeat_factors`' default); `seed`:
    the run's, which draws the donors of a recipe's multi-image steps."""
    hashes = hashes or {}
    if not 0 <= val_fraction < 1:
        raise SourceError(f"--val-fraction must be at least 0 and below 1, not {val_fraction}")
    kind = for_scan(scan)
    if balance:
        _check_balance(scan, kind, repeat_threshold)
    if copies == 0 and not recipe.keep_original:
        raise SourceError("nothing to write: copies is 0 and the recipe has keep_original: false")
    label_of = {name: i for i, name in enumerate(scan.classes)}
    by_split: dict[str, list[SourceFile]] = {s: [] for s in SPLITS}
    for f in scan.files:
        by_split[assign_split(f, val_fraction, hashes.get(f.relpath))].append(f)
    factors = repeat_factors(by_split["train"], kind, scan.classes, repeat_threshold) \
        if balance and kind.balancing == "repeat factors" else None
    train_copies = _copies_per_source(by_split["train"], copies, recipe.keep_original,
                                      kind if balance else None, scan.classes, factors)
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
        items = with_donors(items, recipe, seed, kind, scan.classes)
        shards.extend(_cut(split, items, weights, shard_bytes))
    return Plan(
        shards=tuple(shards),
        classes=tuple(scan.classes),
        split_sources={s: len(v) for s, v in by_split.items() if v},
        planned_rows={s: sum(t.planned_rows for t in shards if t.split == s) for s in SPLITS if by_split[s]},
        balance=factors.record() if factors is not None else None,
    )


def with_donors(items: list[SourceItem], recipe: Recipe, seed: int, kind, classes) -> list[SourceItem]:
    """Each copy's donors for the recipe's multi-image steps, drawn by the row's seed from the
    same split (`items`): a validation image never reaches a training row."""
    if not has_mixes(recipe) or not any(c for it in items for c in it.copies):
        return items
    refs = {it.relpath: dataclasses.replace(it, copies=()) for it in items}
    pools = donor_pools(recipe, list(refs.values()), kind, classes)
    wanted = tuple(mix_of(spec).donors() for _, spec in parts(recipe) if spec is not None)
    out = []
    for it in items:
        donors = []
        for copy in it.copies:
            if copy:
                drawn = draw_donors(recipe, pools, sample_seed(seed, it.relpath, copy), donor_key(it), SPARES)
                donors.append((copy, tuple(tuple(refs[name] for name in step) for step in drawn)))
        out.append(dataclasses.replace(it, donors=tuple(donors), donors_wanted=wanted))
    return out


# Donors drawn beyond a step's own, each step, for a copy to take in their order where one of its
# donors cannot be read (found only as the work reads it): a bad image cost every copy drawing it.
SPARES = 2


def donor_key(item) -> str:
    """What tells sources apart as donors: the content's sha256 when the run hashed it, else the
    path (identical files are one donor, and never a donor to each other)."""
    return getattr(item, "sha256", None) or item.relpath


def donor_pools(recipe: Recipe, items: list, kind, classes) -> list[DonorPool]:
    """For each multi-image step, in order, the sources it draws from. `items`: the split's
    sources (anything with `relpath`, `target` as `kind.held` reads it, and `sha256`)."""
    ordered = sorted(items, key=lambda it: it.relpath)
    return [donor_pool(mix_of(spec), ordered, kind, classes) for _, spec in parts(recipe) if spec is not None]


def draw_donors(recipe: Recipe, pools: list[DonorPool], row_seed: int, own: str,
                spares: int = 0) -> tuple[tuple[str, ...], ...]:
    """One row's donors, a tuple a step (what `SourceItem.donors` lists for the copy): never the
    row's own content, and no donor twice in the row (but a mosaic's cells, once the split has
    no other: two copies of one donor pasted or blended in place would label its objects twice).
    `spares`: that many more a step after its own, drawn once every step has its own (so that
    the own are the same with or without them), for a copy to take where one of its own cannot be
    read."""
    steps = [mix_of(spec) for _, spec in parts(recipe) if spec is not None]
    taken: set = set()
    drawn = [pool.pick(row_seed, k, mix.donors(), frozenset({own}), taken, mix.repeats_donors)
             for k, (mix, pool) in enumerate(zip(steps, pools))]
    if spares:
        for k, (mix, pool) in enumerate(zip(steps, pools)):
            if len(drawn[k]) == mix.donors():  # short: the split has no other to draw
                drawn[k] += pool.pick(row_seed, f"{k} spares", spares, frozenset({own}), taken, mix.repeats_donors)
    return tuple(tuple(step) for step in drawn)


def donor_pool(mix, items: list, kind, classes) -> DonorPool:
    """The sources a step may draw donors from (a paste prefers those with objects) and their
    weights (each image's repeat factor, toward rare classes, when the step asks)."""
    if mix.needs_objects():
        items = [it for it in items if kind.held(it, classes)] or items
    names = [it.relpath for it in items]
    weights = None
    if mix.rare_weighted():
        factors = repeat_factors(items, kind, classes).by_image
        weights = [factors[name] for name in names]
    return DonorPool(names, [donor_key(it) for it in items], weights)


def _check_balance(scan: Scan, kind, repeat_threshold: float | None) -> None:
    if kind.balancing is None:
        raise SourceError(kind.balance_refusal)
    if not scan.labelled:
        raise SourceError("--balance needs class folders: this source has no labels")
    if repeat_threshold is not None and kind.balancing != "repeat factors":
        raise UsageError(f"--repeat-threshold is for the repeat factors of --balance on detection and segmentation; "
                         f"{kind.name}'s --balance evens out its classes' images instead")


def _copies_per_source(files: list[SourceFile], copies: int, keep_original: bool, kind, classes,
                       factors: RepeatFactors | None) -> dict[str, tuple]:
    originals = (0,) if keep_original else ()
    rows = _rows_per_source(files, copies + len(originals), len(originals), kind, classes, factors)
    return {rel: originals + tuple(range(1, n - len(originals) + 1)) for rel, n in rows.items()}


def _rows_per_source(files: list[SourceFile], rows: int, originals: int, kind, classes,
                     factors: RepeatFactors | None) -> dict[str, int]:
    """Each training file's rows: `rows` each (originals included), or as --balance says (`kind`
    not None): the file's repeat factor times `rows`, rounded up or down by the file's own stable
    draw; or, one class an image, as many rows a class as the largest class has."""
    if kind is None:
        return {f.relpath: rows for f in files}
    if factors is not None:
        return {rel: _stochastic_round(rows * r, rel) for rel, r in factors.by_image.items()}
    groups = {f.relpath: next(iter(kind.held(f, classes))) for f in files}
    counts = Counter(groups.values())
    target = max(counts.values(), default=0) * rows
    out = {}
    for cls, n in counts.items():
        members = sorted((rel for rel, g in groups.items() if g == cls), key=_stable_rank)
        base, more = divmod(max(target - n * originals, 0), n)
        for i, rel in enumerate(members):
            out[rel] = originals + base + (1 if i < more else 0)
    return out


def _stochastic_round(x: float, relpath: str) -> int:
    """x down or up, up with probability its fraction, by the file's stable draw in [0, 1): the
    expected rows are x, and the same file gets the same rows in every run."""
    whole = math.floor(x)
    draw = int.from_bytes(_stable_rank(relpath)[:8], "big") / 2**64
    return whole + (draw < x - whole)


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
