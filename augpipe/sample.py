"""The pure per-sample function: source bytes + recipe + seed -> output rows.

No file or process state: a multiprocessing pool, a distributed engine or a preview all call
`augment_sample` and get the same rows for the same arguments. Its first step, `load_sample`
(checked, decoded, the target loaded), is also what `inspect` asks of a source.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from augpipe import decode as codec
from augpipe.errors import SkipInput
from augpipe.mixing import Tile, donor_seed
from augpipe.recipe import Recipe, before_step, build_compose, has_mixes, mix_of, parts
from augpipe.targets import Target, kind_for


@dataclass(frozen=True)
class SourceItem:
    """One source image and the copies to make of it (0 = the original)."""

    relpath: str
    label: int | None
    copies: tuple[int, ...]
    sha256: str | None = None  # the content the run planned with, when it was hashed
    target: Any = None  # detection's Objects, segmentation's MaskRef (see augpipe.formats.base)
    extra_sha256: str | None = None  # likewise for the file the target needs (a semantic mask)
    # (copy, its donors: a tuple for each of the recipe's multi-image steps): see augpipe.mixing
    donors: tuple[tuple[int, tuple[tuple[SourceItem, ...], ...]], ...] = ()
    # how many donors each step takes; the rest of a step's are spares (`plan.SPARES`), taken in
    # their order where one cannot be read. () when each step takes all it lists.
    donors_wanted: tuple[int, ...] = ()

    def donors_of(self, copy: int) -> tuple[tuple[SourceItem, ...], ...]:
        return next((d for c, d in self.donors if c == copy), ())


@dataclass(frozen=True)
class Donor:
    """A donor as a multi-image step takes it: its decoded image and target, and its identity."""

    source: str
    sha256: str
    rgb: np.ndarray
    state: Any


DONOR_FAILED = "its donor"  # how a copy's failure for its donor begins


class DonorError(Exception):
    """A donor that cannot be used: the copy that needs it fails, with this reason."""


@dataclass(frozen=True)
class SampleResult:
    rows: list[dict]
    conversion: str | None
    failures: tuple[tuple[int, str], ...] = ()  # (copy, reason): copies that could not be made
    dropped: int = 0  # boxes the recipe dropped, over every copy
    drops: Counter = field(default_factory=Counter)  # (reason, class index) -> objects dropped, every copy
    discarded: tuple[str, ...] = ()  # objects left out on loading, each with its reason
    orientation: int | None = None  # the source's EXIF orientation tag


CHANGED = ("changed during the run (its content differs from when the run started): expand again with "
           "--overwrite to take the new content")


def sample_seed(run_seed: int, relpath: str, copy: int) -> int:
    """The seed of one output row: from the run seed, the source's path and the copy index only."""
    digest = hashlib.sha256(f"{run_seed}\x00{relpath}\x00{copy}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # fits a signed int64 column


@dataclass(frozen=True)
class LoadedSample:
    decoded: codec.Decoded
    target: Any  # the kind's state (None for classification)
    sha256: str  # of the source's bytes


def load_sample(data: bytes, item: SourceItem, kind: Target, max_pixels: int,
                extra: bytes | None = None) -> LoadedSample:
    """A source as the worker takes it, before any copy: its content checked against the one the
    run planned with (a file changed since is skipped), decoded (orientation applied, at most
    `max_pixels`), and its target loaded on the decoded image. `extra`: the bytes of a file the
    target needs (a semantic mask). Raises SkipInput, with the reason, for an unusable source."""
    source_sha = hashlib.sha256(data).hexdigest()
    if item.sha256 is not None and source_sha != item.sha256:
        raise SkipInput(CHANGED)
    if extra is not None and item.extra_sha256 is not None and hashlib.sha256(extra).hexdigest() != item.extra_sha256:
        raise SkipInput(f"its mask {CHANGED}")
    decoded = codec.decode(data, max_pixels)
    return LoadedSample(decoded, _loaded(kind, item, decoded, extra), source_sha)


def augment_sample(data: bytes, item: SourceItem, recipe: Recipe, run_seed: int, max_pixels: int,
                   split: str = "train", kind: Target | None = None, extra: bytes | None = None,
                   donors: Any = None) -> SampleResult:
    """Load once (`load_sample`), then make each requested copy. `kind` is the target kind
    (classification when None); `donors(item, copy)`: the copy's donors as `Donor`s, a sequence
    that may load them as they are asked for (only a recipe with multi-image steps asks). Raises
    SkipInput for an unusable source; a copy that fails is left out and reported, never the
    original with it."""
    kind = kind or kind_for("classification")
    return augment_loaded(load_sample(data, item, kind, max_pixels, extra), data, item, recipe, run_seed, split,
                          kind, donors)


def augment_loaded(loaded: LoadedSample, data: bytes, item: SourceItem, recipe: Recipe, run_seed: int,
                   split: str = "train", kind: Target | None = None, donors: Any = None) -> SampleResult:
    """`augment_sample` after its `load_sample`: the copies of a source loaded once (the studio
    keeps sources loaded across edits). `data`: the source's bytes, an original's payload."""
    kind = kind or kind_for("classification")
    decoded, state = loaded.decoded, loaded.target
    rows, failures, dropped, drops = [], [], 0, Counter()
    for copy in item.copies:
        seed = sample_seed(run_seed, item.relpath, copy)
        try:
            image, target, applied, lost, n = _made(decoded, state, recipe, copy, seed, kind,
                                                    donors(item, copy) if donors and copy and item.donors else ())
        except DonorError as exc:
            failures.append((copy, str(exc)))
            continue
        except _CopyFailed as exc:
            failures.append((copy, exc.reason))
            continue
        dropped += n
        if lost:
            drops.update(lost)
        payload = data if copy == 0 and _can_keep_bytes(decoded, recipe) else \
            codec.encode(image, recipe.output.format, recipe.output.quality)
        rows.append({
            "image": {"bytes": payload, "path": _row_path(item.relpath, copy, recipe, payload is data)},
            **kind.values(target, image),
            "source": item.relpath,
            "source_sha256": loaded.sha256,
            "copy": copy,
            "seed": seed,
            "transforms": applied,
            "width": int(image.shape[1]),
            "height": int(image.shape[0]),
            "split": split,
        })
    return SampleResult(rows=rows, conversion=decoded.conversion, failures=tuple(failures), dropped=dropped, drops=drops,
                        discarded=getattr(state, "discarded", ()), orientation=decoded.orientation)


class _CopyFailed(Exception):
    def __init__(self, reason: str):
        self.reason = reason


def _made(decoded: codec.Decoded, state, recipe: Recipe, copy: int, seed: int, kind: Target, donors):
    """One row's (image, target, lineage, drops by reason and class, boxes dropped): the original,
    or an augmented copy (_CopyFailed when its transforms fail), then `output.resize`."""
    image, target, applied, dropped = decoded.rgb, state, "[]", 0
    lost = Counter() if not copy else None
    if copy:
        try:
            image, target, applied, lost = augment_copy(decoded.rgb, recipe, seed, kind, state, donors)
        except DonorError:
            raise
        except Exception as exc:  # noqa: BLE001 - any transform's failure on one image
            if type(exc).__name__ == "CropSizeError":
                h, w = decoded.rgb.shape[:2]
                raise SkipInput(f"too small for the recipe ({w}×{h}): {_first_line(exc)}") from None
            raise _CopyFailed(f"augmentation failed: {type(exc).__name__}: {_first_line(exc)}") from None
        dropped = sum(lost.values()) if has_mixes(recipe) else getattr(target, "dropped", 0)
    size = recipe.output.resize
    if size is not None:
        before = target
        image, target = resize(image, target, kind, size.height, size.width, recipe.bbox_params)
        dropped += getattr(target, "dropped", 0)
        lost = lost + _lost("resize", kind, before, target)
    return image, target, applied, lost, dropped


class DonorReader:
    """A job's donors, each read and loaded once while the job runs (a donor serves many rows),
    the most recently used kept up to `budget` bytes of decoded pixels and masks.
    `read(name) -> bytes` raises SkipInput for a file that cannot be read."""

    def __init__(self, read, kind: Target, max_pixels: int, budget: int = 512 << 20):
        self.read, self.kind, self.max_pixels, self.budget = read, kind, max_pixels, budget
        self.cache: dict[str, Donor | DonorError] = {}
        self.used = 0

    def __call__(self, item: SourceItem, copy: int) -> list[Sequence[Donor]]:
        steps = item.donors_of(copy)
        wanted = item.donors_wanted or [len(step) for step in steps]
        return [_Donors(self, step, min(n, len(step))) for step, n in zip(steps, wanted)]

    def load(self, ref: SourceItem) -> Donor:
        found = self.cache.pop(ref.relpath, None)
        if found is None:
            found = self._loaded(ref)
            self.used += _weight(found)
            while self.used > self.budget and self.cache:
                self.used -= _weight(self.cache.pop(next(iter(self.cache))))
        self.cache[ref.relpath] = found  # the most recent last
        if isinstance(found, DonorError):
            raise found
        return found

    def _loaded(self, ref: SourceItem) -> Donor | DonorError:
        try:
            data = self.read(ref.relpath)
            extra = [self.read(name) for name in self.kind.extra_files(ref)]
            loaded = load_sample(data, ref, self.kind, self.max_pixels, extra[0] if extra else None)
        except SkipInput as exc:
            return DonorError(f"{DONOR_FAILED} {ref.relpath} cannot be used: {exc.reason}")
        return Donor(ref.relpath, loaded.sha256, loaded.decoded.rgb, loaded.target)


class _Donors(Sequence):
    """One step's donors of a copy, each loaded when the step asks for it (a step that does not
    fire reads none): `wanted` of them, from `refs` in their order, one that cannot be read passed
    over for the next (the spares after the step's own)."""

    def __init__(self, reader: DonorReader, refs: tuple[SourceItem, ...], wanted: int):
        self.reader, self.refs, self.wanted = reader, refs, wanted
        self.chosen: list[Donor] = []
        self.tried, self.failed = 0, None

    def __len__(self) -> int:
        return self.wanted

    def __getitem__(self, k):
        if not 0 <= k < self.wanted:
            raise IndexError(k)
        while len(self.chosen) <= k:
            if self.tried == len(self.refs):
                raise self.failed
            self.tried += 1
            try:
                self.chosen.append(self.reader.load(self.refs[self.tried - 1]))
            except DonorError as exc:
                self.failed = self.failed or exc
        return self.chosen[k]


def _weight(found) -> int:
    if isinstance(found, DonorError):
        return 0
    masks = getattr(found.state, "masks", None) or ()
    return found.rgb.nbytes + sum(np.asarray(m).nbytes for m in masks) + getattr(getattr(found.state, "mask", None), "nbytes", 0)


def _loaded(kind: Target, item: SourceItem, decoded: codec.Decoded, extra: bytes | None):
    """The source's target on its image. Annotations are the user's input: whatever else one of
    them makes fail (an overflow, a case no check foresaw) skips this source, never the run."""
    try:
        return kind.load(item, decoded, extra)
    except SkipInput:
        raise
    except Exception as exc:  # noqa: BLE001 - one input's annotation, whatever its failure
        raise SkipInput(f"its annotation cannot be used: {type(exc).__name__}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def resize(image: np.ndarray, target, kind: Target, height: int, width: int, bbox_params=None):
    """`output.resize` of an image and its target together; boxes judged by `bbox_params`'s sizes
    (the recipe's) as after any of its steps."""
    if not kind.spatial:
        return codec.resize(image, height, width), target
    from augpipe.targets.geometry import resize

    moves = image.shape[:2] != (height, width)
    image, result = resize(image, kind.inputs(target), height, width, type(kind), bbox_params)
    target = kind.outputs(result, target)
    return image, kind.moved(target, bbox_params) if moves else target


def apply_recipe(rgb: np.ndarray, recipe: Recipe, seed: int, kind: Target | None = None, target=None,
                 donors: Sequence[Sequence[Donor]] = ()):
    """One augmented copy: (image, target, JSON of the transforms that fired with their parameters)."""
    return augment_copy(rgb, recipe, seed, kind, target, donors)[:3]


def augment_copy(rgb: np.ndarray, recipe: Recipe, seed: int, kind: Target | None, target,
                 donors: Sequence[Sequence[Donor]] = ()):
    """(image, target, lineage JSON, Counter of objects dropped by (reason, class index)).
    `donors`: each multi-image step's donors, in their order (`SourceItem.donors`); a step that
    needs one and has none (a split of one image) does not fire."""
    kind = (kind or kind_for("classification")).for_recipe(recipe)
    rng, py_rng = seeded(seed)
    if not has_mixes(recipe):
        image, state, applied = _run_part(rgb, recipe, kind, target, rng, py_rng)
        return image, state, lineage_json(applied) if applied else "[]", _lost("transforms", kind, target, state)
    image, state, applied, drops = rgb, target, [], Counter()
    for step, (part, spec) in enumerate(parts(recipe)):
        if part is not None:
            before = state
            image, state, done = _run_part(image, part, kind, state, rng, py_rng)
            applied += done
            drops += _lost("transforms", kind, before, state)
        if spec is None:
            break
        mix = mix_of(spec)
        mine = donors[step] if step < len(donors) else ()
        if py_rng.random() >= mix.p or (mix.needs_donors and not len(mine)):
            continue
        tiles, lineage = _donor_tiles(recipe, step, seed, kind, [mine[k] for k in range(len(mine))])
        mixed = mix.apply(Tile(image, state), tiles, rng, py_rng, kind, recipe.bbox_params)
        image, state = _rgb8(mixed.image), mixed.state
        drops += Counter({(reason, c): n for (reason, c), n in mixed.drops.items()})
        applied.append([spec["__class_fullname__"], {**mixed.record, "donors": lineage}])
    return image, state, lineage_json(applied) if applied else "[]", drops


def seeded(seed: int) -> tuple[np.random.Generator, random.Random]:
    """A copy's random streams: numpy's `default_rng(seed)` (a PCG64 Generator, the same state)
    without its wrapper's cost (16 µs of 27, a copy), and Python's. Made by `make_streams` ahead,
    where a shard task did; each is handed out once."""
    made = _MADE.pop(seed, None)
    return made if made is not None else (np.random.Generator(np.random.PCG64(seed)), random.Random(seed))


_MADE: dict[int, tuple[np.random.Generator, random.Random]] = {}


def make_streams(seeds: Iterable[int]) -> None:
    """Makes these copies' random streams (`seeded`) now, in one loop, in place of any made
    before and not taken. Made one at a time between images, a copy's cost three times as much
    (35 µs against 12 at 320 px: seeding's code and tables out of the CPU's caches each time)."""
    _MADE.clear()
    for seed in seeds:
        _MADE[seed] = np.random.Generator(np.random.PCG64(seed)), random.Random(seed)


def _run_part(rgb: np.ndarray, recipe: Recipe, kind: Target, target, rng, py_rng):
    """Single-image transforms, the random streams shared with the rest of the copy."""
    compose = build_compose(recipe, kind)
    # One shared stream for every child: albumentations' own seeding gives each child the same
    # seed, which makes independent transforms fire together.
    compose.set_random_state(rng, py_rng)
    result = compose(image=rgb, **kind.inputs(target))
    image = _rgb8(result["image"])
    applied = result.get("applied_transforms", [])
    target = kind.outputs(result, target)
    # a kind whose targets derive nothing (the base's `moved`: a label) skips the look at each step
    if type(kind).moved is not Target.moved and any(moves_pixels(name) for name, *_ in applied):
        target = kind.moved(target, recipe.bbox_params)
    return image, target, list(applied)


def _rgb8(image: np.ndarray) -> np.ndarray:
    image = np.ascontiguousarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    return image


def _donor_tiles(recipe: Recipe, step: int, seed: int, kind: Target, donors: list[Donor]):
    """Each donor through the single-image transforms before the step, with its own seed; and
    what the row's lineage records of it."""
    own = before_step(recipe, step)
    tiles, lineage = [], []
    for slot, d in enumerate(donors):
        image, state, applied = d.rgb, d.state, []
        if own is not None:
            s = donor_seed(seed, step, slot)
            image, state, applied = _run_part(d.rgb, own, kind, d.state, *seeded(s))
        tiles.append(Tile(image, state))
        lineage.append({"source": d.source, "sha256": d.sha256, "transforms": applied})
    return tiles, lineage


def _lost(reason: str, kind: Target, before, after) -> Counter:
    """Objects a step dropped, by class: those before less those after."""
    if before is after:  # untouched (classification's label, a step that moved nothing)
        return Counter()
    classes_before, classes_after = kind.object_classes(before), kind.object_classes(after)
    if classes_before == classes_after:  # the same objects kept (in the same order)
        return Counter()
    gone = Counter(classes_before) - Counter(classes_after)
    return Counter({(reason, c): n for c, n in gone.items()})


@functools.lru_cache(maxsize=None)
def moves_pixels(name: str) -> bool:
    """Whether a transform (by class name) can move pixels: any but albumentations' image-only
    ones (colour, blur, noise)."""
    from albumentations.core.transforms_interface import ImageOnlyTransform

    from augpipe.recipe import allowed_transforms

    cls = allowed_transforms().get(name)
    return cls is None or not issubclass(cls, ImageOnlyTransform)


def lineage_json(applied: list) -> str:
    """Compact JSON of the applied transforms (orjson: a tenth of the json module's time, the
    same text; NaN and infinity become null)."""
    try:
        return orjson.dumps(applied, default=_jsonable, option=orjson.OPT_NON_STR_KEYS).decode("utf-8")
    except orjson.JSONEncodeError:  # what orjson refuses (an integer over 64 bits), json writes
        return json.dumps(applied, separators=(",", ":"), default=_jsonable)


def _can_keep_bytes(decoded: codec.Decoded, recipe: Recipe) -> bool:
    """An original is stored as the source's own bytes, in its own format, unless its pixels had
    to change: a conversion to 8-bit RGB, an EXIF turn (the boxes are on the turned pixels), a resize."""
    return decoded.conversion is None and not decoded.oriented and recipe.output.resize is None


def _row_path(relpath: str, copy: int, recipe: Recipe, kept: bool) -> str:
    if copy == 0 and kept:
        return relpath
    stem = relpath.rsplit(".", 1)[0] if "." in relpath.rsplit("/", 1)[-1] else relpath
    return f"{stem}{'' if copy == 0 else f'.aug{copy}'}{codec.extension(recipe.output.format)}"


# An array parameter bigger than this (ElasticTransform's per-pixel maps) is recorded by shape
# and checksum: written out it would outweigh the image, and the row's seed reproduces it.
MAX_ARRAY_VALUES = 64


def _jsonable(value: Any) -> Any:
    """What json cannot write by itself: numpy arrays and scalars."""
    if isinstance(value, np.ndarray):
        if value.size > MAX_ARRAY_VALUES:
            digest = hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
            return {"array": list(value.shape), "dtype": str(value.dtype), "sha256": digest}
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)
