"""Preview: what a recipe does to a few images, or what an expanded dataset holds.

From a source folder, tiles come from the same per-sample function and seeds as `expand`, and
are the decoded bytes `expand` would write; from shards, they are the rows themselves.
"""

from __future__ import annotations

import html
import io
import json
import math
import os
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from augpipe.errors import SkipInput, SourceError
from augpipe.inspection import mixed_steps
from augpipe.targets.drawing import colour, drawable

BACKGROUND = (238, 238, 238)
TILE_BACKGROUND = (128, 128, 128)
INK = (30, 30, 30)
_SHORT = {
    "HorizontalFlip": "hflip", "VerticalFlip": "vflip", "Transpose": "transpose", "RandomRotate90": "rot90",
    "D4": "d4", "SquareSymmetry": "d4", "ToGray": "gray", "ToSepia": "sepia", "ColorJitter": "jitter",
    "RandomBrightnessContrast": "bright/contrast", "HueSaturationValue": "hsv", "RGBShift": "rgb-shift",
    "RandomGamma": "gamma", "CLAHE": "clahe", "Equalize": "equalize", "InvertImg": "invert",
    "Posterize": "posterize", "Solarize": "solarize", "ChannelShuffle": "ch-shuffle",
    "RandomResizedCrop": "crop", "RandomSizedCrop": "crop", "RandomCrop": "crop", "CenterCrop": "crop",
    "Crop": "crop", "GaussianBlur": "blur", "Blur": "blur", "MedianBlur": "blur", "MotionBlur": "motion-blur",
    "GaussNoise": "noise", "ISONoise": "noise", "MultiplicativeNoise": "noise", "CoarseDropout": "dropout",
    "GridDropout": "dropout", "Perspective": "perspective", "ElasticTransform": "elastic",
    "Sharpen": "sharpen", "ImageCompression": "jpeg", "Downscale": "downscale", "CopyPaste": "copy-paste",
    "ShiftScaleRotate": "ssr", "SafeRotate": "safe-rot",
}


@dataclass
class DonorTile:
    """A donor of a tile's multi-image step: its source and own transforms (as the row's lineage
    records them), and its image with its target drawn when at hand (as read, before them)."""

    step: str
    source: str
    transforms: list
    rgb: np.ndarray | None


@dataclass
class Tile:
    copy: int
    rgb: np.ndarray  # the decoded row image, full size
    caption: str
    applied: list  # [[transform, parameters], ...] as in the `transforms` column
    donors: list[DonorTile] = field(default_factory=list)
    data: bytes = b""  # the row's image as written (the studio serves it)
    path: str = ""  # its name, as the row's `image.path`


@dataclass
class PreviewRow:
    source: str
    class_name: str | None  # its label on the sheet: its class, or its objects' classes
    tiles: list[Tile]
    held: tuple[str, ...] = ()  # detection: its original's objects' classes, each once


@dataclass
class Preview:
    title: str
    rows: list[PreviewRow]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how the sheet was made, under it
    legend: list[tuple[str, int]] = field(default_factory=list)  # (class, its colour's index) drawn on the sheet


# ---------------------------------------------------------------- captions

def caption(applied: list, copy: int = 1) -> str:
    """Short names of the transforms that fired, e.g. `hflip rot-12° jitter`."""
    if copy == 0:
        return "original"
    words = [_short(name, params) for name, params in applied]
    return " ".join(w for w in words if w) or "no change (nothing fired)"


def donor_caption(applied: list) -> str:
    """Each multi-image step that fired and its donors, briefly: `Mosaic +3: scene_004, scene_011, …`."""
    return "; ".join(f"{name} +{len(params['donors'])}: " + ", ".join(_stem(d["source"]) for d in params["donors"])
                     for name, params in mixed_steps(applied))


def _stem(path: str) -> str:
    return path.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def _short(name: str, params: dict) -> str:
    if name == "Rotate" and "matrix" in params:
        return f"rot{round(_angle(params['matrix'])) + 0}°"
    if name in ("Affine", "ShiftScaleRotate", "SafeRotate"):  # SafeRotate scales the turned image to fit
        return " ".join(["affine"] * (name == "Affine") + _affine_words(params)) or _SHORT[name]
    return _SHORT.get(name, name.lower())


def _affine_words(params: dict) -> list[str]:
    """An affine step's rotation, scale, shear and shift, each when it shows:
    `rot-12° x1.10/0.95 shear8° shift+4%/-2%`."""
    words = []
    if abs(params.get("rotate", 0)) >= 0.5:
        words.append(f"rot{round(params['rotate']) + 0}°")
    scale = params.get("scale") or {}
    if any(abs(v - 1) >= 0.01 for v in scale.values()):
        words.append("x" + "/".join(f"{v:.2f}" for v in dict.fromkeys(scale.values())))
    shear = _shear(params.get("matrix"))
    if shear >= 0.5:
        words.append(f"shear{round(shear)}°")
    shift = _shift(params)
    if any(abs(v) >= 0.01 for v in shift):
        words.append("shift" + "/".join(f"{round(100 * v) + 0:+d}%" for v in dict.fromkeys(shift)))
    return words


def _shear(matrix) -> float:
    """How far from square the image's axes lean, in degrees: turning and scaling keep them
    square, only a shear does not (albumentations records no shear of its own)."""
    if not matrix:
        return 0.0
    (a, b), (c, d) = matrix[0][:2], matrix[1][:2]
    lengths = math.hypot(a, c) * math.hypot(b, d)
    if lengths == 0:
        return 0.0
    return abs(90 - math.degrees(math.acos(max(-1.0, min(1.0, (a * b + c * d) / lengths)))))


def _shift(params: dict) -> tuple[float, ...]:
    """Where the image's centre moves, as fractions of its width and height (the matrix's
    translation less what turning and scaling about the centre gives)."""
    matrix, shape = params.get("matrix"), params.get("shape")
    if not matrix or not shape or len(shape) < 2:
        return ()
    if list(params.get("output_shape") or shape[:2]) != list(shape[:2]):
        return ()  # a canvas grown around the image (fit_output): it is placed, not shifted
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    dx = matrix[0][0] * cx + matrix[0][1] * cy + matrix[0][2] - cx
    dy = matrix[1][0] * cx + matrix[1][1] * cy + matrix[1][2] - cy
    return tuple(0.0 if abs(d) < 1 else d / side for d, side in ((dx, shape[1]), (dy, shape[0])))  # under a pixel: none


def _angle(matrix: list) -> float:
    # OpenCV's rotation matrix [[cos, sin, ·], [-sin, cos, ·]] for a counter-clockwise angle
    return -math.degrees(math.atan2(matrix[1][0], matrix[0][0]))


def _tiles(rows: list[dict], kind, classes: list[str], look=None, original: dict | None = None) -> list[Tile]:
    """A source's rows as expand writes them (or wrote them): each decoded image with its target
    drawn, a caption (the transforms that fired, what became of the target), the lineage and the
    donors. `look(source)`: a donor's picture, or None when it is not at hand."""
    original = next((r for r in rows if r["copy"] == 0), original)
    tiles = [_tile(r, kind, classes, original if r is not original else None) for r in rows]
    for t in tiles:
        t.donors = [DonorTile(name, d["source"], d.get("transforms") or [], look(d["source"]) if look else None)
                    for name, params in mixed_steps(t.applied) for d in params["donors"]]
    return tiles


def _lineage(row: dict) -> list:
    """The row's `transforms` column read, or nothing when it is not JSON."""
    try:
        return json.loads(row["transforms"] or "[]")
    except ValueError:
        return []


def _tile(row: dict, kind, classes: list[str], original: dict | None) -> Tile:
    from augpipe.decode import row_image

    applied = _lineage(row)
    image = row["image"] or {}
    data, path = image.get("bytes") or b"", image.get("path") or ""
    try:
        rgb = row_image(data)
    except ValueError:
        return Tile(row["copy"], np.full((8, 8, 3), TILE_BACKGROUND, np.uint8), "does not decode", applied,
                    data=data, path=path)
    text = caption(applied, row["copy"])
    target = kind.caption(row, original)
    return Tile(row["copy"], kind.draw(rgb, row, classes), f"{text} | {target}" if target else text, applied,
                data=data, path=path)


# ---------------------------------------------------------------- choosing sources

def _class_queues(by_class: dict, seed: int) -> list[list]:
    """Each class's items in a seeded random order, the classes in name order."""
    rng = random.Random(seed)
    queues = []
    for name in sorted(by_class, key=lambda c: (c is None, c or "")):
        items = sorted(by_class[name])
        rng.shuffle(items)
        queues.append(items)
    return queues


def _round_robin(queues: list[list], rows: int, make) -> list:
    """Up to `rows` of `make(item)`'s results, every class before any class twice: a class whose
    item gives None (skipped, or held out for validation) offers its next one, up to
    `TRIES_A_TURN` a turn."""
    made = []
    while queues and len(made) < rows:
        for queue in queues:
            for _ in range(min(TRIES_A_TURN, len(queue))):
                result = make(queue.pop(0))
                if result is not None:
                    made.append(result)
                    break
            if len(made) == rows:
                break
        queues = [q for q in queues if q]
    return made


TRIES_A_TURN = 8


def preview_source(root: str | Path, recipe, rows: int = 6, copies: int | None = None, seed: int = 0,
                   val_fraction: float = 0.1, max_pixels: int | None = None, layout: str = "auto",
                   split_by: str = "content", format: str = "auto", voc_zero_based: bool = False) -> Preview:
    """Originals and augmented copies of a few training images, exactly as `expand` makes them
    (with a recipe's multi-image steps, their donors drawn as its plan draws them)."""
    from augpipe.formats import scan
    from augpipe.options import DEFAULT_MAX_PIXELS, ExpandOptions
    from augpipe.recipe import check_for_kind, has_mixes, load_recipe
    from augpipe.sample import DonorReader
    from augpipe.store import open_store, read_source
    from augpipe.targets import for_scan

    recipe = load_recipe(recipe) if isinstance(recipe, (str, Path)) else recipe
    max_pixels = max_pixels or DEFAULT_MAX_PIXELS
    found = scan(str(root), layout, format, voc_zero_based).within(max_pixels)
    kind = for_scan(found)
    check_for_kind(recipe, kind)
    store = open_store(str(root))
    copies = recipe.copies if copies is None else copies
    options = ExpandOptions(progress=False, val_fraction=val_fraction, split_by=split_by, max_pixels=max_pixels)
    planned, notes = None, []
    if has_mixes(recipe) and copies:
        planned, note = _planned_training(root, found, recipe, kind, copies, seed, options)
        notes.append(note)
    maker = RowMaker(found, store, recipe, kind, copies, seed, options, planned,
                      DonorReader(partial(read_source, store), kind, max_pixels))
    skipped = list(found.skipped)

    def make(rel):
        try:
            made = maker.row(rel)
        except SkipInput as exc:
            skipped.append((rel, exc.reason))
            return None
        if made is None:
            return None
        skipped.extend(made[1])
        return made[0]

    out_rows = _round_robin(_class_queues(_training_by_class(found, planned, kind), seed), rows, make)
    if not out_rows:
        raise SourceError(f"nothing to preview in {root}: every image tried was skipped "
                          f"({skipped[-1][1] if skipped else 'no training images'})")
    return Preview(f"recipe {recipe.name} | seed {seed}", out_rows, sorted(skipped), notes,
                   legend(out_rows, found.classes, kind))


def _training_by_class(found, planned: dict | None, kind) -> dict:
    """The training candidates by class: those the plan holds, or (without one) every file the
    source does not put in another split (each is checked as it is read). An image of several
    classes (detection's objects) counts for the rarest it holds, so that rare classes show."""
    files = [f for f in found.files
             if ((f.relpath in planned) if planned is not None else f.split in (None, "train"))]
    held = {f.relpath: kind.held(f, found.classes) for f in files}
    images = Counter(c for h in held.values() for c in h)
    by_class = defaultdict(list)
    for f in files:
        rarest = min(held[f.relpath], key=lambda c: (images[c], c), default=None)
        by_class[f.class_name if f.class_name is not None else rarest].append(f.relpath)
    if not by_class:
        raise SourceError(f"no training images in {found.root} to preview")
    return by_class


_NOT_READ = object()


@dataclass(frozen=True)
class LoadedSource:
    """A source read and loaded once: its bytes (an original's payload) and `load_sample`'s result."""

    data: bytes
    loaded: object  # sample.LoadedSample


@dataclass
class RowMaker:
    """A source's tiles, made as expand makes its rows. `planned`: the training sources as
    expand's plan holds them (with their donors), or None: each source's split is decided as it
    is read. `sources`: relpath -> LoadedSource, None (held out for validation) or SkipInput,
    shared by makers of other recipes and seeds (the studio's)."""

    found: object
    store: object
    recipe: object
    kind: object
    copies: int
    seed: int
    options: object  # options.ExpandOptions: the split and the largest image, as expand's
    planned: dict | None
    donors: object  # sample.DonorReader
    sources: dict = field(default_factory=dict)

    def __post_init__(self):
        self.files = {f.relpath: f for f in self.found.files}

    def row(self, rel: str, copies: tuple[int, ...] | None = None):
        """(the row, the copies that failed), or None for an image expand holds out for
        validation. Raises SkipInput for an unusable source."""
        from augpipe.sample import augment_loaded

        f, item = self._item(rel, copies)
        source = self.source(rel)
        if source is None:
            return None
        result = augment_loaded(source.loaded, source.data, item, self.recipe, self.seed, kind=self.kind,
                                donors=self.donors)
        classes = self.found.classes
        original = None if 0 in item.copies else self.kind.values(source.loaded.target, source.loaded.decoded.rgb)
        tiles = _tiles(result.rows, self.kind, classes, self._donor_looks(item), original)
        failed = [(f"{rel} copy {copy}", reason) for copy, reason in result.failures]
        return _preview_row(rel, f.class_name, result.rows, classes, tiles), failed

    def source(self, rel: str) -> LoadedSource | None:
        """The source read and loaded, once; None when expand holds it out for validation."""
        found = self.sources.get(rel, _NOT_READ)
        if found is _NOT_READ:
            found = self.sources[rel] = self._loaded(rel)
        if isinstance(found, SkipInput):
            raise found
        return found

    def _loaded(self, rel: str):
        from augpipe.sample import load_sample
        from augpipe.store import read_source

        f, item = self._item(rel)
        try:  # loaded before its split is decided: a file expand skips is said so, not held out
            data = read_source(self.store, rel)
            extra = [read_source(self.store, name) for name in self.kind.extra_files(item)]
            loaded = load_sample(data, item, self.kind, self.options.max_pixels, extra[0] if extra else None)
        except SkipInput as exc:
            return exc
        return None if self.planned is None and self._held_out(f, data) else LoadedSource(data, loaded)

    def _item(self, rel: str, copies: tuple[int, ...] | None = None):
        import dataclasses

        from augpipe.sample import SourceItem

        f = self.files[rel]
        wanted = tuple(range(self.copies + 1)) if copies is None else copies
        if self.planned is not None:
            return f, dataclasses.replace(self.planned[rel], copies=wanted)
        label = self.found.classes.index(f.class_name) if f.class_name is not None else None
        return f, SourceItem(rel, label, wanted, target=f.target)

    def _held_out(self, f, data: bytes) -> bool:
        """Whether expand holds this source out for validation (it is never augmented)."""
        import hashlib

        from augpipe.plan import assign_split

        content = hashlib.sha256(data).hexdigest() if self.options.split_by == "content" else None
        return assign_split(f, self.options.val_fraction, content) != "train"

    def _donor_looks(self, item):
        """A donor's source path -> its image with its target drawn (as read, before its own
        transforms), from the reader that served the row's copies."""
        refs = {ref.relpath: ref for _, steps in item.donors for step in steps for ref in step}

        def look(source: str):
            from augpipe.sample import DonorError

            try:
                d = self.donors.load(refs[source])
            except DonorError:
                return None
            return self.kind.draw(d.rgb, self.kind.values(d.state, d.rgb), self.found.classes)

        return look


def _planned_training(root, found, recipe, kind, copies: int, seed: int, options) -> tuple[dict, str]:
    """The training sources as `expand` plans them, their donors drawn from the whole training
    split as its plan draws them ({relpath: SourceItem}), and a note saying so for the sheet.
    Split by content, every source is read once to hash it (as expand does)."""
    hashes = content_hashes(root, found, recipe, kind, options)
    items = planned_training(found, recipe, copies, seed, options, hashes)
    how = "each source hashed once to split it by content" if options.split_by == "content" else "split by path"
    return items, f"donors drawn as expand draws them, from the {len(items):,} training images ({how})"


def content_hashes(root, found, recipe, kind, options) -> dict | None:
    """Each source's sha256 as expand's split by content reads it (those that cannot be read
    leave `found`, as they leave expand's run), or None split by path."""
    from augpipe.engines import make_engine
    from augpipe.jobs import RunSpec
    from augpipe.pipeline import split_hashes

    if options.split_by != "content":
        return None
    spec = RunSpec(str(root), "", recipe, 0, options.max_pixels, False, tuple(found.classes), found.labelled,
                   kind=kind)
    with make_engine("local", options.workers) as engine:
        return split_hashes(engine, found, spec, options)[0]


def planned_training(found, recipe, copies: int, seed: int, options, hashes: dict | None) -> dict:
    """{relpath: SourceItem} of the training split as expand's plan makes it, donors drawn."""
    from augpipe.plan import make_plan

    plan = make_plan(found, recipe, copies, options.val_fraction, False, 2**62, hashes=hashes, seed=seed)
    return {s.relpath: s for shard in plan.shards if shard.split == "train" for s in shard.sources}


def _shard_sources_by_class(ds, labelled: bool) -> dict:
    """The training sources by their class, or (objects) by the rarest class their original holds."""
    objects = "objects" in ds.kind.reader_columns()
    columns = ["source", "copy", *(["label"] if labelled else []), *(["objects"] if objects else [])]
    held = {}
    for batch in ds.iter_batches("train", columns):
        for r in batch.to_pylist():
            if labelled or not objects:
                held.setdefault(r["source"], [_class_name(ds.classes, r.get("label"))])
            elif r["copy"] == 0 or r["source"] not in held:
                held[r["source"]] = [ds.classes[c] for c in (r["objects"] or {}).get("category") or ()]
    images = Counter(c for classes in held.values() for c in set(classes))
    by_class = defaultdict(set)
    for source, classes in held.items():
        by_class[min(classes, key=lambda c: (images[c], c or ""), default=None)].add(source)
    return by_class


def preview_shards(location, rows: int = 6, copies: int | None = None, seed: int = 0) -> Preview:
    """Originals grouped with their augmented copies, read back from an expanded dataset."""
    from augpipe.dataset import open_dataset

    ds = open_dataset(location)
    names = ds.classes
    kind = ds.kind
    labelled = "label" in kind.reader_columns()
    index = ds.read("train", columns=["source", "label"] if labelled else ["source"])
    if index is None or index.num_rows == 0:
        raise SourceError(f"{ds.location} has no training rows to preview")
    by_class = _shard_sources_by_class(ds, labelled)
    if not by_class:
        raise SourceError(f"{ds.location} has no training rows to preview")
    chosen = _round_robin(_class_queues(by_class, seed), rows, lambda source: source)
    target_columns = [c.name for c in kind.columns(names, ds.manifest.labelled)]
    grouped = defaultdict(list)
    for batch in ds.iter_batches("train", ["image", "source", "copy", "transforms", *target_columns],
                                 where=("source", chosen)):
        for r in batch.to_pylist():
            grouped[r["source"]].append(r)
    out_rows = []
    look = _shard_donors(ds, grouped, target_columns)
    most = max((len(grouped[s]) - 1 for s in chosen), default=0)
    shown = ""
    if copies is None and most > SHARD_COPIES:  # --balance's rows: 30 copies made a sheet 18,080 px wide
        copies, shown = SHARD_COPIES, f" | {SHARD_COPIES} of up to {most} copies a row (--copies for more)"
    for source in chosen:
        found = sorted(grouped[source], key=lambda r: r["copy"])[: (copies + 1) if copies is not None else None]
        label = found[0].get("label") if found else None
        out_rows.append(_preview_row(source, _class_name(names, label), found, names, _tiles(found, kind, names, look)))
    skipped = [(s["path"], s["reason"]) for s in ds.manifest.skipped]
    title = ds.location.rstrip("/").rsplit("/", 1)[-1]
    return Preview(f"{title}: recipe {ds.manifest.recipe.get('name')} | seed {ds.manifest.seed}{shown}",
                   out_rows, skipped, legend=legend(out_rows, names, kind))


SHARD_COPIES = 8  # a shards' preview's copies a row, unless asked for more


def _shard_donors(ds, grouped: dict, target_columns: list[str]):
    """A donor's source path -> its original row's image with its target drawn (the source as
    read), or None when the dataset keeps no original of it."""
    from augpipe.decode import row_image

    wanted = {d["source"] for rows in grouped.values() for r in rows
              for _, params in mixed_steps(_lineage(r)) for d in params["donors"]}
    originals = {}
    if wanted:
        for batch in ds.iter_batches("train", ["image", "source", "copy", *target_columns],
                                     where=("source", sorted(wanted))):
            originals.update({r["source"]: r for r in batch.to_pylist() if r["copy"] == 0})

    def look(source: str):
        row = originals.get(source)
        try:
            return ds.kind.draw(row_image(row["image"]["bytes"]), row, ds.classes) if row else None
        except ValueError:  # an original that does not decode: its row's tile says so
            return None

    return look


def _preview_row(source: str, class_name: str | None, rows: list[dict], classes: list[str], tiles) -> PreviewRow:
    """A sheet's row; labelled by its class, or for detection by its objects' classes, for
    segmentation by those its first row's mask holds (each row said "mask", a new user's)."""
    held = _objects_classes(rows, classes) if class_name is None else None
    if held is not None:
        return PreviewRow(source, ", ".join(held) or "(no objects)", tiles, held)
    held = _mask_classes(rows, classes) if class_name is None else None
    if held is not None:
        return PreviewRow(source, ", ".join(held) or "(background only)", tiles, held)
    return PreviewRow(source, class_name, tiles)


def _mask_classes(rows: list[dict], classes: list[str]) -> tuple[str, ...] | None:
    """The named classes the first row's mask holds, in their order, as segmentation counts them
    (None: rows without masks, or one that does not read)."""
    from augpipe.targets import kind_for

    if not (rows and (rows[0].get("annotation") or {}).get("bytes")):
        return None
    try:
        return tuple(kind_for("segmentation").row_classes(rows[0], classes))
    except (SkipInput, ValueError):
        return None


def legend(rows: list[PreviewRow], classes: list[str], kind) -> list[tuple[str, int]]:
    """The classes drawn on the sheet's tiles, each with its colour's index (a mask's value less
    one: its 0 is the background; a box's class index), in their order."""
    shift = 1 if kind.name == "segmentation" else 0
    names = dict.fromkeys(c for r in rows for c in r.held if c in classes)
    return [(name, classes.index(name) - shift) for name in names]


def _objects_classes(rows: list[dict], classes: list[str]) -> tuple[str, ...] | None:
    """The classes of the first row's objects, each once (None: rows without objects)."""
    from augpipe.targets.boxes import field

    if not (rows and "objects" in rows[0]):
        return None
    present = sorted({int(c) for c in field(rows[0], "category")})
    return tuple(classes[c] if 0 <= c < len(classes) else str(c) for c in present)


def _class_name(names: list[str], label) -> str | None:
    if label is None:
        return None
    return names[label] if 0 <= label < len(names) else f"label {label}?"


# ---------------------------------------------------------------- the contact sheet

@dataclass(frozen=True)
class Layout:
    tile: int
    label_width: int = 120
    header: int = 30
    caption: int = 30
    gap: int = 8
    line: int = 16

    def size(self, rows: int, columns: int, footer_lines: int) -> tuple[int, int]:
        width = self.label_width + columns * (self.tile + self.gap) + self.gap
        height = self.header + rows * (self.tile + self.caption + self.gap) + self.gap + footer_lines * self.line
        return height, width

    def tile_origin(self, row: int, column: int) -> tuple[int, int]:
        return (self.label_width + self.gap + column * (self.tile + self.gap),
                self.header + row * (self.tile + self.caption + self.gap))


MAX_FOOTER = 8
CAPTION_LINES = 4  # at most, under a tile


def sheet_title(preview: Preview) -> str:
    """The sheet's title: what made it, and its rows' classes (detection: their objects'), each once."""
    if any(r.held for r in preview.rows):
        classes = "classes: " + ", ".join(dict.fromkeys(c for r in preview.rows for c in r.held))
    else:
        classes = "rows: " + ", ".join(dict.fromkeys(str(r.class_name) for r in preview.rows))
    return f"{preview.title} | {classes}"


def render_sheet(preview: Preview, tile: int = 128) -> np.ndarray:
    """The contact sheet as an RGB array: a row a source, the original first, captions below."""
    import cv2

    mixed = any(t.donors for r in preview.rows for t in r.tiles)
    said = caption_lines(preview, tile)
    layout = Layout(tile, caption=6 + 12 * said + 24 * mixed, header=30 + 16 * bool(preview.legend))
    columns = max((len(r.tiles) for r in preview.rows), default=1)
    footer = _footer_lines(preview, layout.size(0, columns, 0)[1] - 16)
    height, width = layout.size(len(preview.rows), columns, len(footer))
    sheet = np.full((height, width, 3), BACKGROUND, np.uint8)
    _text(sheet, _fit(sheet_title(preview), width - 16, 0.5), (8, 20), 0.5)
    _legend(sheet, preview.legend, 38, width - 16)
    for i, row in enumerate(preview.rows):
        y = layout.tile_origin(i, 0)[1]
        _text(sheet, _fit(str(row.class_name or "(unlabelled)"), layout.label_width - 12, 0.45), (8, y + tile // 2), 0.45)
        _text(sheet, _fit(row.source.rsplit("/", 1)[-1], layout.label_width - 12, 0.35), (8, y + tile // 2 + 16), 0.35)
        for j, t in enumerate(row.tiles):
            x, y = layout.tile_origin(i, j)
            sheet[y:y + tile, x:x + tile] = _fit_tile(t.rgb, tile, cv2)
            lines = _clipped(t.caption, tile, 0.35, said)
            if t.donors:
                lines += _clipped(donor_caption(t.applied), tile, 0.35, 2)
            for k, line in enumerate(lines):
                _text(sheet, line, (x, y + tile + 12 + 12 * k), 0.35)
    base = height - len(footer) * layout.line
    for k, line in enumerate(footer):
        _text(sheet, _fit(line, width - 16, 0.4), (8, base + 12 + k * layout.line), 0.4)
    return sheet


def caption_lines(preview: Preview, tile: int) -> int:
    """Lines under each tile: as many as the longest caption needs, 2 to CAPTION_LINES (the --html
    page has every caption whole)."""
    said = max((len(_wrap(t.caption, tile, 0.35)) for r in preview.rows for t in r.tiles), default=1)
    return min(CAPTION_LINES, max(2, said))


def _legend(sheet: np.ndarray, entries: list[tuple[str, int]], y: int, width: int) -> None:
    """A swatch of each class's colour and its name, on one line, as many as fit."""
    import cv2

    x = 8
    for name, index in entries:
        shown = drawable(name)
        step = 16 + _text_width(shown, 0.4) + 14
        if x + step > width:
            break
        cv2.rectangle(sheet, (x, y - 10), (x + 11, y + 1), colour(index), -1)
        _text(sheet, shown, (x + 16, y), 0.4)
        x += step


def _footer_lines(preview: Preview, width: int) -> list[str]:
    notes = [line for note in preview.notes for line in _wrap(note, width, 0.4)]
    if not preview.skipped:
        return notes
    lines = [*notes, f"skipped {len(preview.skipped)}:"]
    lines += [f"  {path}: {reason}" for path, reason in preview.skipped[: MAX_FOOTER - 1]]
    if len(preview.skipped) > MAX_FOOTER - 1:
        lines.append(f"  ... {len(preview.skipped) - MAX_FOOTER + 1} more")
    return lines


def _fit_tile(rgb: np.ndarray, tile: int, cv2) -> np.ndarray:
    """Scaled to fit, aspect kept, centred on a neutral background; small images stay crisp."""
    small = scaled(rgb, tile)
    nh, nw = small.shape[:2]
    canvas = np.full((tile, tile, 3), TILE_BACKGROUND, np.uint8)
    y, x = (tile - nh) // 2, (tile - nw) // 2
    canvas[y:y + nh, x:x + nw] = small
    return canvas


def scaled(rgb: np.ndarray, size: int) -> np.ndarray:
    """Scaled to fit size × size, aspect kept; small images stay crisp (nearest when enlarged 2× or more)."""
    import cv2

    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    interpolation = cv2.INTER_NEAREST if scale >= 2 else (cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interpolation)


def _text_width(text: str, scale: float) -> int:
    import cv2

    plain = drawable(text.replace("°", "o"))
    return cv2.getTextSize(plain, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0]


def _fit(text: str, width: int, scale: float) -> str:
    """Cut to the width, with an ellipsis."""
    if _text_width(text, scale) <= width:
        return text
    while text and _text_width(text + "...", scale) > width:
        text = text[:-1]
    return text + "..."


def _wrap(text: str, width: int, scale: float) -> list[str]:
    """Lines of whole words; a number stays with the word after it ("2 boxes"); a word wider than
    a line is broken after a '/' (`shift-14%/` `-18%`), or cut with an ellipsis."""
    lines, current = [], ""
    for word in (piece for unit in _units(text.split()) for piece in _narrow(unit, width, scale)):
        trial = f"{current} {word}".strip()
        if current and _text_width(trial, scale) > width:
            lines.append(current)
            current = word
        else:
            current = trial
    return [*lines, current] if current else lines


def _narrow(word: str, width: int, scale: float) -> list[str]:
    if _text_width(word, scale) <= width:
        return [word]
    pieces = [p + "/" for p in word.split("/")[:-1]] + [word.split("/")[-1]]
    return [_fit(p, width, scale) for p in pieces if p]


def _units(words: list[str]) -> list[str]:
    out: list[str] = []
    for word in words:
        if out and out[-1].replace(",", "").isdigit():
            out[-1] += f" {word}"
        else:
            out.append(word)
    return out


def _clipped(text: str, width: int, scale: float, lines: int) -> list[str]:
    """Wrapped to at most `lines` lines, the last cut with an ellipsis when more would follow."""
    wrapped = _wrap(text, width, scale)
    if len(wrapped) <= lines:
        return wrapped
    return [*wrapped[:lines - 1], _fit(" ".join(wrapped[lines - 1:]), width, scale)]


def _text(img: np.ndarray, text: str, origin: tuple[int, int], scale: float) -> None:
    """OpenCV's Hershey fonts are ASCII: the degree sign is drawn as a small circle."""
    import cv2

    x, y = origin
    parts = text.split("°")
    for k, part in enumerate(parts):
        ascii_part = drawable(part)
        cv2.putText(img, ascii_part, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, INK, 1, cv2.LINE_AA)
        x += cv2.getTextSize(ascii_part, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0]
        if k < len(parts) - 1:
            radius = max(1, round(scale * 4))
            cv2.circle(img, (x + radius + 1, y - round(scale * 22)), radius, INK, 1, cv2.LINE_AA)
            x += 2 * radius + 3


SHEET_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
# In every sheet: PNG's tEXt Software, JPEG's comment, WebP's EXIF Software. Only a new file or a
# sheet that carries it is overwritten (`--out data/cat/001.png` must not replace a source image).
SHEET_MARK = "augpipe preview"


DEFAULT_SHEET = "preview.png"


def check_sheet_path(path: str | Path) -> None:
    path = Path(path)
    if path.is_dir():
        raise SourceError(f"--out {path} is a folder: give the sheet a file name, e.g. {path / 'preview.png'}")
    if path.suffix.lower() not in SHEET_SUFFIXES:
        raise SourceError(f"--out {path}: the sheet is an image, name it .png or .jpg")
    if os.path.lexists(path) and not is_sheet(path):
        what = "--out" if path.name != DEFAULT_SHEET or path.parent != Path() else "the contact sheet's default, --out"
        raise SourceError(f"{what} {path} exists and is not a contact sheet augpipe wrote: "
                          "choose another file name with --out (it is left as it is)")


def is_sheet(path: str | Path) -> bool:
    """A regular file carrying the sheet's mark (its header only is read)."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():  # a folder, a pipe, a dangling link
        return False
    try:
        with Image.open(path) as im:
            return (im.info.get("Software") == SHEET_MARK or im.info.get("comment") == SHEET_MARK.encode()
                    or (im.format == "WEBP" and im.getexif().get(0x0131) == SHEET_MARK))
    except Exception:  # noqa: BLE001 - whatever does not open as an image is not a sheet
        return False


def write_sheet(preview: Preview, path: str | Path, tile: int = 128) -> Path:
    """The sheet, marked as augpipe's, written beside the file it replaces and renamed over it."""
    check_sheet_path(path)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = _encode_sheet(render_sheet(preview, tile), path.suffix.lower())
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SourceError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _encode_sheet(sheet: np.ndarray, suffix: str) -> bytes:
    """OpenCV's encoders (faster than PIL's PNG), the mark put in by hand; WebP through PIL."""
    import struct
    import zlib

    import cv2

    mark = SHEET_MARK.encode()
    if suffix == ".webp":
        from PIL import Image

        exif = Image.Exif()
        exif[0x0131] = SHEET_MARK  # Software
        buf = io.BytesIO()
        Image.fromarray(sheet).save(buf, "WEBP", quality=90, exif=exif)
        return buf.getvalue()
    ok, encoded = cv2.imencode(suffix, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    if not ok:
        raise SourceError(f"cannot encode the sheet as {suffix}")
    data = encoded.tobytes()
    if suffix == ".png":  # a tEXt chunk after the signature (8 bytes) and IHDR (25)
        body = b"tEXtSoftware\0" + mark
        chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
        return data[:33] + chunk + data[33:]
    at = 2  # JPEG: a comment after SOI and JFIF's APP0
    if data[2:4] == b"\xff\xe0":
        at = 4 + struct.unpack(">H", data[4:6])[0]
    return data[:at] + b"\xff\xfe" + struct.pack(">H", len(mark) + 2) + mark + data[at:]


# ---------------------------------------------------------------- the HTML gallery

_CSS = """
body{font:14px system-ui,sans-serif;margin:1.5em;background:#f4f4f4;color:#222}
h1{font-size:1.2em} .row{display:flex;gap:12px;align-items:flex-start;margin:0 0 18px}
.label{width:150px;flex:none;word-break:break-all} .label b{display:block}
figure{margin:0;width:180px;background:#fff;padding:6px;border-radius:4px}
figure img{width:168px;height:168px;object-fit:contain;background:#808080;image-rendering:pixelated;display:block}
figcaption{font-size:12px;margin:4px 0} pre{font-size:10px;white-space:pre-wrap;max-height:240px;overflow:auto}
.donors{list-style:none;padding:0;margin:6px 0 0;font-size:11px;overflow-wrap:anywhere}
.donors li{margin:0 0 6px} .donors img{width:56px;height:56px;float:left;margin:0 6px 2px 0}
.donors li::after{content:"";display:block;clear:both} .note{font-size:12px;color:#555}
"""


GALLERY_MARK = "<!-- augpipe preview gallery -->"


def _donors_html(t: Tile, folder: Path, stem: str) -> str:
    """A tile's donors: each one's step, source and own transforms, and its picture (as read)."""
    import cv2

    if not t.donors:
        return ""
    items, slots = [], defaultdict(int)
    for k, d in enumerate(t.donors):
        slots[d.step] += 1
        picture = ""
        if d.rgb is not None:
            name = f"{stem}-d{k:02d}.png"
            cv2.imwrite(str(folder / name), cv2.cvtColor(d.rgb, cv2.COLOR_RGB2BGR))
            picture = f"<img src='{name}' alt='{html.escape(d.source)}'>"
        own = "none"
        if d.transforms:
            own = (f"{html.escape(caption(d.transforms))}<details><summary>parameters</summary>"
                   f"<pre>{html.escape(json.dumps(d.transforms, indent=1))}</pre></details>")
        items.append(f"<li>{picture}{html.escape(d.step)} donor {slots[d.step]}: <b>{html.escape(d.source)}</b>; "
                     f"its own transforms: {own}</li>")
    return f"<ul class='donors'>{''.join(items)}</ul>"


def write_html(preview: Preview, folder: str | Path) -> Path:
    """A static page (no server, no external assets): every tile with its full lineage."""
    import cv2

    from augpipe.pages import claim_folder

    folder = Path(folder)
    claim_folder(folder, GALLERY_MARK, "--html", "a gallery", (("tiles", "r*-c*.png"),))
    (folder / "tiles").mkdir(parents=True, exist_ok=True)
    parts = [f"<!doctype html>{GALLERY_MARK}<html><head><meta charset='utf-8'><title>{html.escape(preview.title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(preview.title)}</h1>"]
    for i, row in enumerate(preview.rows):
        parts.append(f"<div class='row'><div class='label'><b>{html.escape(str(row.class_name))}</b>"
                     f"{html.escape(row.source)}</div>")
        for t in row.tiles:
            name = f"tiles/r{i:03d}-c{t.copy:03d}.png"
            cv2.imwrite(str(folder / name), cv2.cvtColor(t.rgb, cv2.COLOR_RGB2BGR))
            params = html.escape(json.dumps(t.applied, indent=1))
            parts.append(f"<figure><img src='{name}' alt='copy {t.copy}'><figcaption>copy {t.copy}: "
                         f"{html.escape(t.caption)}</figcaption><details><summary>parameters</summary>"
                         f"<pre>{params}</pre></details>{_donors_html(t, folder, name[:-4])}</figure>")
        parts.append("</div>")
    parts += [f"<p class='note'>{html.escape(note)}</p>" for note in preview.notes]
    if preview.skipped:
        items = "".join(f"<li>{html.escape(p)}: {html.escape(r)}</li>" for p, r in preview.skipped)
        parts.append(f"<h2>skipped</h2><ul>{items}</ul>")
    parts.append("</body></html>")
    page = folder / "index.html"
    page.write_text("\n".join(parts), encoding="utf-8")
    return page
