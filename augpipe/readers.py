"""PyTorch readers for augpipe shards (needs the `train` extra: pip install 'augpipe[train]').

`ShardDataset` is map-style with random access through the Parquet row-group index;
`ShardIterable` streams rows, split across distributed ranks (the same count on each) and then
DataLoader workers: every row once an epoch, but for the few repeated (or with `drop_last` left
out) to even out the ranks. Both take a local folder or any pyarrow filesystem URI.

Both give `(image, target)`, the target by the dataset's target kind (see `to_target`), in augpipe's
convention (uint8 images, labels from 0) or, with `convention="torchvision"`, in the one
torchvision's detection models take (float images in [0, 1], labels from 1, 0 the background);
both can apply a recipe at read time (`RecipeTransform`): epoch e of an original row is what `expand --seed S`
writes as that source's copy e+1. `collate` batches any kind for a DataLoader.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import types
import os
import random
from collections import OrderedDict
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info
from torch.utils.data._utils.collate import default_collate

BOX_FORMATS = ("xyxy", "xywh")
# augpipe: CHW uint8 images, class indices from 0. torchvision: CHW float32 images in [0, 1] and
# detection labels from 1, since torchvision's detection models keep 0 for the background
CONVENTIONS = ("augpipe", "torchvision")


def check_layout(box_format: str, convention: str) -> None:
    """Refuses a box format or convention that is not one, and torchvision's with xywh boxes."""
    if box_format not in BOX_FORMATS:
        raise ValueError(f"box_format {box_format!r}: one of {', '.join(BOX_FORMATS)}")
    if convention not in CONVENTIONS:
        raise ValueError(f"convention {convention!r}: one of {', '.join(CONVENTIONS)}")
    if convention == "torchvision" and box_format != "xyxy":
        raise ValueError("convention 'torchvision' has xyxy boxes (what its detection models take): "
                         "leave box_format out")

# ---------------------------------------------------------------- locating shards

def _locate(path, split: str):
    """(the dataset, pyarrow filesystem, the split's shards' full paths in the manifest's order, the
    dataset's target kind, its class names), one manifest read."""
    from augpipe.dataset import open_dataset

    ds = open_dataset(path)
    names = [s["name"] for s in ds.shards(split)]
    if not names:
        raise FileNotFoundError(f"no {split} shards in {path}")
    return (ds, *ds.store.arrow(names), ds.kind, list(ds.classes))


def columns(path: str | os.PathLike) -> list[str]:
    """Every column of the dataset's rows, as its shards hold them."""
    from augpipe.dataset import open_dataset

    ds = open_dataset(path)
    return ds.schema(ds.splits()[0]).names


def decode_rgb(data: bytes) -> np.ndarray:
    from augpipe.decode import row_image

    return row_image(data)


def to_chw(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))


def to_image(rgb: np.ndarray, convention: str = "augpipe") -> torch.Tensor:
    """An H×W×3 uint8 array as the convention's image: C×H×W uint8, or float32 in [0, 1] for
    torchvision (what `torchvision.transforms.functional.to_tensor` gives)."""
    chw = to_chw(rgb)
    return chw.to(torch.float32).div_(255) if convention == "torchvision" else chw


def to_target(kind, arrays: dict, box_format: str = "xyxy", convention: str = "augpipe"):
    """A target kind's arrays (`Target.arrays`) as torch takes them (`Target.torch_target`):

        classification  the label, an int (-1 when unlabelled)
        detection       {"boxes": float32 [N, 4] in pixels, xyxy (torchvision's) or xywh (COCO's),
                         "labels": int64 [N], and with instance masks "masks": uint8 [N, H, W] of 0/1}
        segmentation    the mask, int64 [H, W] of class indices

    With `convention="torchvision"` detection labels are the class indices plus one (1 to C: its
    detection models keep 0 for the background); labels and masks of the other kinds are as above.
    """
    check_layout(box_format, convention)
    return kind.torch_target(arrays, box_format, convention)


def row_key(row: dict) -> str:
    """The name a row's on-the-fly draws are seeded by: its source for an original, so that epoch e
    equals expand's copy e+1; the source and the copy for an augmented copy, so that copies of one
    source do not draw the same parameters in the same epoch (a NUL cannot be in a path)."""
    copy = int(row.get("copy") or 0)
    return row["source"] if copy == 0 else f"{row['source']}\x00{copy}"


def _item(row: dict, reader) -> object:
    """A row as the reader gives it: (image, target), or the row with `return_row`."""
    kind = reader.kind
    rgb = decode_rgb(row["image"]["bytes"])
    arrays = kind.arrays(row)
    if reader.augment is not None:
        key = row_key(row)
        rgb, arrays = reader.augment.augment_arrays(rgb, arrays, reader.augment.draw_seed(key, reader.epoch), key)
    image = reader.transform(rgb) if reader.transform is not None else to_image(rgb, reader.convention)
    target = to_target(kind, arrays, reader.box_format, reader.convention)
    if reader.return_row:
        return {**row, "image": image, "image_bytes": row["image"]["bytes"], "target": target}
    return image, target


def _recipe_transform(recipe, seed: int, kind, epoch_seed: bool, donors=None):
    if recipe is None:
        return None
    if isinstance(recipe, RecipeTransform):  # its own seed; the reader's epoch
        if recipe.kind.name != kind.name:
            raise ValueError(f"{recipe!r} is for {recipe.kind.name}, the dataset is {kind.name}")
        return recipe
    return RecipeTransform(recipe, seed=seed, kind=kind, epoch_seed=epoch_seed, donors=donors)


class _Epoch:
    """The epoch, in shared memory: `set_epoch` in the main process reaches DataLoader workers
    that persist across epochs (`persistent_workers=True`), forked or spawned."""

    def __init__(self):
        self.value = torch.zeros((), dtype=torch.int64).share_memory_()

    def get(self) -> int:
        return int(self.value)

    def set(self, epoch: int) -> None:
        self.value.fill_(int(epoch))


class _WithEpoch:
    """`epoch` and `set_epoch`, over an `_Epoch` in `self._epoch`."""

    @property
    def epoch(self) -> int:
        return self._epoch.get()

    @epoch.setter
    def epoch(self, epoch: int) -> None:
        self._epoch.set(epoch)

    def set_epoch(self, epoch: int) -> None:
        """The epoch the recipe's draws are seeded by (it reaches persistent DataLoader workers)."""
        self._epoch.set(epoch)


# ---------------------------------------------------------------- the recipe on the fly

class RecipeTransform(_WithEpoch):
    """A recipe applied at read time to an image and its target (boxes, masks), through the very
    function `expand` uses (`augpipe.sample.apply_recipe`), then the recipe's `output.resize`.

    Use it in any torch Dataset: `t(image)` gives the image, `t(image, target)` (image, target).
    `image`: an H×W×3 uint8 RGB array, a C×H×W uint8 tensor or a PIL image (the same comes back);
    `target` by `kind` (a kind's name, with `instance_masks` for detection, or a kind of
    `augpipe.targets`): a label (passed through), a detection dict {"boxes" [N, 4] in `box_format`,
    "labels" [N], optional "masks" [N, H, W]} (arrays or tensors, the same come back; other
    per-object fields, "iscrowd", "area", are kept as they were for the boxes the recipe keeps),
    or a segmentation mask [H, W] of class indices 0..255.

    `convention="torchvision"`: the image may also be a C×H×W float tensor in [0, 1] (taken to
    uint8 for the recipe, rounded), and comes back as one whatever it was given as; detection
    targets come back as tensors (boxes float32 xyxy, labels int64 as given, masks uint8).

    Seeds: with `key=` (a row's name, a file name, an index) the draw is
    `sample_seed(seed, str(key), epoch + 1)`, reproducible, a different one each epoch
    (`set_epoch`); that is expand's seed of copy epoch+1 of source `key`. Without a key, or with
    `epoch_seed=False`, the seed is drawn from torch's generator, like torchvision's transforms.

    A recipe with steps that take other images (Mosaic, CopyPaste, MixUp) needs `donors`: an
    expanded dataset (or its location) whose training originals they are drawn from, by the
    draw's seed as `expand` draws them (the readers give their own dataset); `key` is then the
    row's source, never its own donor.
    """

    def __init__(self, recipe, seed: int = 0, kind="classification", instance_masks: bool = False,
                 epoch_seed: bool = True, box_format: str = "xyxy", convention: str = "augpipe", donors=None):
        from augpipe.recipe import Recipe, check_for_kind, has_mixes, load_recipe
        from augpipe.targets import kind_for

        check_layout(box_format, convention)
        self.recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
        if isinstance(kind, str):
            kind = kind_for(kind, instance_masks=True) if instance_masks else kind_for(kind)
        self.kind, self.seed = kind, int(seed)
        self.epoch_seed, self.box_format, self.convention = epoch_seed, box_format, convention
        self._epoch = _Epoch()
        check_for_kind(self.recipe, self.kind)
        if has_mixes(self.recipe) and donors is None:
            raise ValueError(f"recipe {self.recipe.name!r} has steps that take other images: give donors= (an "
                             "expanded dataset, or its location, whose training originals they are drawn from)")
        self.donors = DatasetDonors(donors, self.recipe) if has_mixes(self.recipe) else None

    def draw_seed(self, key=None, epoch: int | None = None) -> int:
        """The seed of one draw: from (seed, key, epoch), or torch's generator without a key."""
        from augpipe.sample import sample_seed

        if key is None or not self.epoch_seed:
            return int(torch.randint(0, 2**62, ()).item())
        return sample_seed(self.seed, str(key), (self.epoch if epoch is None else int(epoch)) + 1)

    def augment_arrays(self, rgb: np.ndarray, arrays: dict, seed: int, key=None) -> tuple[np.ndarray, dict]:
        """The recipe at `seed` on an RGB array and a target in the kind's `arrays()` layout
        (COCO xywh boxes): both, augmented and resized as `output.resize` says. `key`: the row's
        source, never its own donor."""
        from augpipe.sample import apply_recipe, resize as resize_with_target

        kind = self.kind
        state = kind.from_arrays(arrays, rgb.shape)
        donors = self.donors.draw(seed, None if key is None else str(key).split("\x00")[0]) if self.donors else ()
        image, state, _ = apply_recipe(rgb, self.recipe, seed, kind, state, donors)
        size = self.recipe.output.resize
        if size is not None:
            image, state = resize_with_target(image, state, kind, size.height, size.width)
        return image, kind.to_arrays(state, image.shape)

    def __call__(self, image, target=None, *, key=None, epoch: int | None = None):
        rgb, back = _as_rgb(image, self.convention)
        seed = self.draw_seed(key, epoch)
        if target is None:
            from augpipe.sample import apply_recipe

            out, _, _ = apply_recipe(rgb, self.recipe, seed)  # the image alone, as classification
            resize = self.recipe.output.resize
            if resize is not None:
                from augpipe.decode import resize as resize_image

                out = resize_image(out, resize.height, resize.width)
            return back(out)
        arrays, restore = self.kind.from_user_target(target, rgb.shape, self.box_format, self.convention)
        out, arrays = self.augment_arrays(rgb, arrays, seed, key)
        return back(out), restore(arrays)

    def __repr__(self) -> str:
        return f"RecipeTransform({self.recipe.name!r}, seed={self.seed}, kind={self.kind.name!r})"


DONORS_CACHED = 256  # decoded donors a reader keeps


class DatasetDonors:
    """Donors for the on-the-fly mode, drawn as `expand` draws them (`plan.draw_donors`): from the
    training originals of an expanded dataset (its rows of copy 0), which stand for its sources.
    The same donors as expand's when every training source became a row."""

    def __init__(self, location, recipe):
        from augpipe.dataset import Dataset, open_dataset
        from augpipe.plan import donor_key, donor_pools

        self.ds = location if isinstance(location, Dataset) else open_dataset(location)
        self.kind, self.recipe = self.ds.kind, recipe
        by_content = self.ds.manifest.options.get("split_by", "content") == "content"  # as the plan keyed them
        self.at, self.keys, items = {}, {}, []
        for shard in range(len(self.ds.shards("train"))):
            start = 0
            for batch in self.ds.iter_batches("train", ["source", "source_sha256", "copy", *self._classes_column()],
                                              pieces=[(shard, 0, None)]):
                for i, row in enumerate(batch.to_pylist()):
                    if row["copy"] == 0:
                        self.at[row["source"]] = (shard, start + i)
                        original = _Original(row["source"], types.SimpleNamespace(categories=self._categories(row)),
                                             row["source_sha256"] if by_content else None)
                        self.keys[row["source"]] = donor_key(original)
                        items.append(original)
                start += batch.num_rows
        if not items:
            raise ValueError(f"{self.ds.location} has no training originals to draw donors from "
                             "(expand with keep_original: true)")
        self.pools = donor_pools(recipe, items, self.kind, list(self.ds.classes))
        self.cache: dict = {}

    def _classes_column(self) -> list[str]:
        return ["objects"] if "objects" in self.kind.reader_columns() else []

    @staticmethod
    def _categories(row: dict) -> tuple:
        return tuple((row.get("objects") or {}).get("category") or ())

    def draw(self, row_seed: int, own: str | None) -> list[list]:
        """Each step's donors for a row of source `own`."""
        from augpipe.plan import draw_donors

        key = self.keys.get(own, own)
        return [[self.load(name) for name in step] for step in draw_donors(self.recipe, self.pools, row_seed, key)]

    def load(self, source: str):
        from augpipe.sample import Donor

        if source not in self.cache:
            if len(self.cache) >= DONORS_CACHED:
                self.cache.pop(next(iter(self.cache)))
            shard, index = self.at[source]
            columns = ["image", "source", "source_sha256", *self.kind.reader_columns()]
            row = next(self.ds.iter_batches("train", list(dict.fromkeys(columns)),
                                            pieces=[(shard, index, index + 1)])).to_pylist()[0]
            rgb = decode_rgb(row["image"]["bytes"])
            state = self.kind.from_arrays(self.kind.arrays(row), rgb.shape)
            self.cache[source] = Donor(source, row["source_sha256"], rgb, state)
        return self.cache[source]


@dataclasses.dataclass(frozen=True)
class _Original:
    """A training original as the donor pools take a source: its path, its objects' classes and,
    when the run split by content, its content's sha256."""

    relpath: str
    target: object
    sha256: str | None = None


def _as_rgb(image, convention: str = "augpipe"):
    """An H×W×3 uint8 array from an array, a CHW tensor or a PIL image, and how to give one back:
    as it came, or torchvision's float tensor."""
    rgb, back = _rgb_of(image, convention)
    if convention == "torchvision":
        return rgb, functools.partial(to_image, convention=convention)
    return rgb, back


def _rgb_of(image, convention: str):
    if isinstance(image, torch.Tensor):
        if convention == "torchvision" and image.ndim == 3 and image.is_floating_point():
            image = (image.detach().clamp(0, 1) * 255).round().to(torch.uint8)
        if image.ndim != 3 or image.dtype != torch.uint8:
            floats = " or float in [0, 1]" if convention == "torchvision" else ""
            raise ValueError(f"a C×H×W uint8{floats} tensor is expected, not {image.dtype} {tuple(image.shape)}")
        rgb = image.permute(1, 2, 0).cpu().numpy()
        if rgb.shape[2] == 1:
            rgb = np.repeat(rgb, 3, axis=2)
        return np.ascontiguousarray(rgb), to_chw
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL
        from PIL import Image

        return np.asarray(image.convert("RGB")), Image.fromarray
    rgb = np.asarray(image)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"an H×W×3 uint8 RGB array is expected, not {rgb.dtype} {rgb.shape}")
    return rgb, lambda a: a


# ---------------------------------------------------------------- batching

def collate(batch: list):
    """A DataLoader `collate_fn` for any kind: images stacked when they share one size, else a
    list; detection targets (dicts of a varying number of boxes) as a list of dicts; labels and
    same-size masks stacked as `default_collate` does. Rows (`return_row`) come as a list."""
    if not batch or not isinstance(batch[0], (tuple, list)):
        return list(batch)
    images, targets = [b[0] for b in batch], [b[1] for b in batch]
    return _stack(images), (list(targets) if isinstance(targets[0], dict) else _stack(targets))


def _stack(items: list):
    if isinstance(items[0], torch.Tensor):
        shapes = {tuple(t.shape) for t in items}
        return torch.stack(items) if len(shapes) == 1 else list(items)
    try:
        return default_collate(items)
    except (RuntimeError, TypeError):
        return list(items)


# ---------------------------------------------------------------- map-style

class ShardDataset(_WithEpoch, Dataset):
    """Random access to one split's rows: (CHW uint8 tensor, target), or the row with `return_row`
    (its "image" the tensor, "target" the target, "image_bytes" the stored bytes).

    The target by the dataset's kind: the label; {"boxes", "labels"[, "masks"]} with boxes in
    `box_format` (see `to_target`); the mask. `convention="torchvision"` gives float32 images in
    [0, 1] and detection labels from 1 (see the module's docstring). `transform` takes the decoded
    H×W×3 RGB array and returns the image in place of the convention's (it sees no target:
    geometric transforms belong in `recipe`). `recipe` (a
    bundled name, a path, a Recipe or a RecipeTransform) is applied at read time to the image
    and its target, seeded by (`seed`, the row, the epoch: `set_epoch`); see `RecipeTransform`.

    `classes` holds the dataset's class names (index i is label i; with the torchvision
    convention a detection label is i + 1).

    Only the row-group index is read up front. An access reads its row group (64 rows) unless it
    is cached: each process keeps row groups up to `cache_bytes`, so a dataset that fits is read
    once, and decoding happens in the DataLoader's workers.
    """

    def __init__(self, path: str | os.PathLike, split: str = "train", transform: Callable | None = None,
                 return_row: bool = False, cache_bytes: int = 256 * 2**20, box_format: str = "xyxy",
                 recipe=None, seed: int = 0, epoch_seed: bool = True, convention: str = "augpipe"):
        self.path, self.split, self.transform, self.return_row = str(path), split, transform, return_row
        check_layout(box_format, convention)
        self.ds, self.fs, self.files, self.kind, self.classes = _locate(path, split)
        self.box_format, self.seed, self.convention = box_format, seed, convention
        self.augment = _recipe_transform(recipe, seed, self.kind, epoch_seed, donors=self.ds)
        self._epoch = _Epoch()
        self._groups: list[tuple[int, int]] = []  # (file index, row group) for each row group
        self._starts: list[int] = []  # first row of each row group
        total = 0
        for f, name in enumerate(self.files):
            with self.fs.open_input_file(name) as fh:
                meta = pq.ParquetFile(fh).metadata
            for g in range(meta.num_row_groups):
                self._groups.append((f, g))
                self._starts.append(total)
                total += meta.row_group(g).num_rows
        self._len = total
        if return_row:
            self._columns = self.ds.schema(split).names
        else:  # what the target and the recipe's seed need, not the lineage
            self._columns = ["image", *self.kind.reader_columns()]
            if self.augment is not None:
                self._columns += ["source", "copy"]
        self._cache_bytes = cache_bytes
        self._reset()

    def _reset(self) -> None:
        self._cache: OrderedDict = OrderedDict()
        self._cached_bytes = 0
        self._handles: dict = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int):
        if not -self._len <= index < self._len:
            raise IndexError(index)
        index %= self._len
        g = bisect.bisect_right(self._starts, index) - 1
        table = self._row_group(g)
        i = index - self._starts[g]
        return _item(table.slice(i, 1).to_pylist()[0], self)

    def _row_group(self, g: int):
        if self._pid != os.getpid():  # file handles and caches do not cross a fork into workers
            self._reset()
        if g in self._cache:
            self._cache.move_to_end(g)
            return self._cache[g]
        f, group = self._groups[g]
        if f not in self._handles:
            self._handles[f] = pq.ParquetFile(self.fs.open_input_file(self.files[f]))
        table = self._handles[f].read_row_group(group, columns=self._columns).combine_chunks()
        self._cache[g] = table
        self._cached_bytes += table.nbytes
        while self._cached_bytes > self._cache_bytes and len(self._cache) > 1:
            self._cached_bytes -= self._cache.popitem(last=False)[1].nbytes
        return table

    def labels(self) -> list[int | None]:
        """Every row's label, in order, without decoding an image (classification)."""
        if "label" not in self.kind.reader_columns():
            raise ValueError(f"a {self.kind.name} dataset's rows have no label")
        return [v for batch in self.ds.iter_batches(self.split, ["label"]) for v in batch.column(0).to_pylist()]


# ---------------------------------------------------------------- streaming

Piece = tuple[int, int, int]  # (shard index, first row, end row): a contiguous run of one shard's rows


def row_counts(fs: pafs.FileSystem, files: list[str]) -> list[int]:
    """Each shard's rows, from its Parquet footer."""
    counts = []
    for name in files:
        with fs.open_input_file(name) as fh:
            counts.append(pq.ParquetFile(fh).metadata.num_rows)
    return counts


def _total(pieces: list[Piece]) -> int:
    return sum(stop - first for _, first, stop in pieces)


def _slice(pieces: list[Piece], lo: int, hi: int) -> list[Piece]:
    """Rows lo..hi of the pieces laid end to end."""
    out, position = [], 0
    for shard, first, stop in pieces:
        a, b = max(lo - position, 0), min(hi - position, stop - first)
        if a < b:
            out.append((shard, first + a, first + b))
        position += stop - first
    return out


def _take(pieces: list[Piece], start: int, count: int) -> list[Piece]:
    """`count` rows from row `start` of the pieces laid end to end, wrapping round to the first row."""
    total, out = _total(pieces), []
    while count > 0:
        lo = start % total
        hi = min(lo + count, total)
        out += _slice(pieces, lo, hi)
        count, start = count - (hi - lo), start + (hi - lo)
    return out


def split_by_node(pieces: list[Piece], rank: int, world_size: int, drop_last: bool = False) -> list[Piece]:
    """This rank's contiguous share of the epoch's rows, the same count on every rank (a rank with
    fewer rows would hang the others at their last collective): ceil(N/world) rows, the last ranks
    padded with rows from the start, or with `drop_last` floor(N/world), the tail dropped."""
    check_ranks(rank, world_size)
    total = _total(pieces)
    if world_size > total:
        raise ValueError(f"{total} rows cannot feed {world_size} ranks: every rank needs at least one row")
    per = total // world_size if drop_last else -(-total // world_size)
    return _take(pieces, rank * per, per)


def split_by_worker(pieces: list[Piece]) -> list[Piece]:
    """This DataLoader worker's contiguous share of the rank's rows (all of them outside a worker)."""
    info = get_worker_info()
    if info is None:
        return pieces
    total = _total(pieces)
    return _slice(pieces, total * info.id // info.num_workers, total * (info.id + 1) // info.num_workers)


def check_ranks(rank, world_size) -> None:
    """rank and world_size given together, as whole numbers with 0 <= rank < world_size; or
    neither (torch.distributed's, else 0 of 1)."""
    if rank is None and world_size is None:
        return
    if rank is None or world_size is None:
        raise ValueError(f"rank={rank}, world_size={world_size}: give both, or neither "
                         "(torch.distributed's are used then)")
    import numbers

    for name, value in (("rank", rank), ("world_size", world_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{name} must be a whole number, not {value!r}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank={rank}, world_size={world_size}: world_size must be at least 1 and "
                         "0 <= rank < world_size")


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class ShardIterable(_WithEpoch, IterableDataset):
    """Streams a split, its rows split across ranks then DataLoader workers.

    Every rank gets the same number of rows an epoch, as DistributedSampler does: ceil(N/world),
    padded by repeating rows from the start of the epoch's order, or with `drop_last` floor(N/world),
    the tail left out. Each rank reads a contiguous run of rows, so few shards. With `shuffle`, the
    shard order (the same on every rank) and a buffer of `buffer_size` rows are shuffled, seeded by
    (seed, epoch): call `set_epoch` each epoch for a new order.

    Items, `transform`, `box_format`, `convention`, `return_row` and `recipe` as `ShardDataset`'s;
    the recipe's draws are seeded by (`seed`, the row, the epoch) whatever the shuffle.
    """

    def __init__(self, path: str | os.PathLike, split: str = "train", transform: Callable | None = None,
                 shuffle: bool = False, buffer_size: int = 1000, seed: int = 0, return_row: bool = False,
                 rank: int | None = None, world_size: int | None = None, drop_last: bool = False,
                 box_format: str = "xyxy", recipe=None, epoch_seed: bool = True, convention: str = "augpipe"):
        self.path, self.split, self.transform, self.return_row = str(path), split, transform, return_row
        check_layout(box_format, convention)
        self.shuffle, self.buffer_size, self.seed, self.box_format = shuffle, buffer_size, seed, box_format
        self.convention = convention
        self._epoch = _Epoch()
        check_ranks(rank, world_size)
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.ds, self.fs, self.files, self.kind, self.classes = _locate(path, split)
        self.augment = _recipe_transform(recipe, seed, self.kind, epoch_seed, donors=self.ds)
        self.rows = row_counts(self.fs, self.files)

    def set_epoch(self, epoch: int) -> None:
        """The epoch the shuffle and the recipe's draws are seeded by (it reaches persistent
        DataLoader workers)."""
        self._epoch.set(epoch)

    def __getstate__(self) -> dict:
        # DataLoader workers that spawn (not fork) have no process group: settle the rank while
        # pickling, in the rank's own process
        state = dict(self.__dict__)
        if state["world_size"] is None:
            state["rank"], state["world_size"] = _rank_and_world()
        return state

    def _rank_and_world(self) -> tuple[int, int]:
        return (self.rank, self.world_size) if self.world_size is not None else _rank_and_world()

    def _epoch_pieces(self) -> list[Piece]:
        order = list(range(len(self.files)))
        if self.shuffle:
            random.Random(f"{self.seed}/{self.epoch}").shuffle(order)  # the same order on every rank
        return [(i, 0, self.rows[i]) for i in order if self.rows[i]]

    def _my_pieces(self) -> list[Piece]:
        return split_by_node(self._epoch_pieces(), *self._rank_and_world(), self.drop_last)

    def __len__(self) -> int:
        """This rank's rows an epoch."""
        return _total(self._my_pieces())

    def _read(self, pieces: list[Piece]) -> Iterator[dict]:
        for batch in self.ds.iter_batches(self.split, pieces=pieces):
            yield from batch.to_pylist()

    def __iter__(self):
        rows = self._read(split_by_worker(self._my_pieces()))
        if self.shuffle:
            info = get_worker_info()
            rank = self._rank_and_world()[0]
            rows = _buffer_shuffle(rows, self.buffer_size,
                                   random.Random(f"{self.seed}/{self.epoch}/{rank}/{info.id if info else 0}"))
        for row in rows:
            yield _item(row, self)


def _buffer_shuffle(rows: Iterator[dict], size: int, rng: random.Random) -> Iterator[dict]:
    buffer: list = []
    for row in rows:
        if len(buffer) < size:
            buffer.append(row)
            continue
        k = rng.randrange(size)
        yield buffer[k]
        buffer[k] = row
    rng.shuffle(buffer)
    yield from buffer
