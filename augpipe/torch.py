"""PyTorch readers for augpipe shards (needs the `train` extra: pip install 'augpipe[train]').

`ShardDataset` is map-style with random access through the Parquet row-group index;
`ShardIterable` streams rows, split across distributed ranks (the same count on each) and then
DataLoader workers: every row once an epoch, but for the few repeated (or with `drop_last` left
out) to even out the ranks. Both take a local folder or any pyarrow filesystem URI.
"""

from __future__ import annotations

import bisect
import json
import os
import random
from collections import OrderedDict
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

# ---------------------------------------------------------------- locating shards

def shard_files(path: str | os.PathLike, split: str = "train") -> tuple[pafs.FileSystem, list[str]]:
    """The split's shards, in the manifest's order, as (pyarrow filesystem, full paths)."""
    from augpipe.dataset import open_dataset

    ds = open_dataset(path)
    names = [s["name"] for s in ds.shards(split)]
    if not names:
        raise FileNotFoundError(f"no {split} shards in {path}")
    return ds.paths(names)


def columns(path: str | os.PathLike) -> list[str]:
    """Every column of the dataset's rows, as its shards hold them."""
    fs, files = shard_files(path, _any_split(path))
    with fs.open_input_file(files[0]) as fh:
        return pq.ParquetFile(fh).schema_arrow.names


def _any_split(path) -> str:
    from augpipe.dataset import open_dataset

    return open_dataset(path).splits()[0]


def decode_rgb(data: bytes) -> np.ndarray:
    from augpipe.decode import row_image

    return row_image(data)


def to_chw(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))


def _item(row: dict, transform: Callable | None, return_row: bool):
    rgb = decode_rgb(row["image"]["bytes"])
    image = transform(rgb) if transform is not None else to_chw(rgb)
    if return_row:
        return {**row, "image": image, "image_bytes": row["image"]["bytes"]}
    return image, (-1 if row["label"] is None else row["label"])


# ---------------------------------------------------------------- map-style

class ShardDataset(Dataset):
    """Random access to one split's rows: (CHW uint8 tensor, label), or the row with `return_row`.

    Only the row-group index is read up front. An access reads its row group (64 rows) unless it
    is cached: each process keeps row groups up to `cache_bytes`, so a dataset that fits is read
    once, and decoding happens in the DataLoader's workers.
    """

    def __init__(self, path: str | os.PathLike, split: str = "train", transform: Callable | None = None,
                 return_row: bool = False, cache_bytes: int = 256 * 2**20):
        self.path, self.split, self.transform, self.return_row = str(path), split, transform, return_row
        self.fs, self.files = shard_files(path, split)
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
        self._columns = columns(path) if return_row else ["image", "label"]
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
        if self.return_row:
            return _item(table.slice(i, 1).to_pylist()[0], self.transform, True)
        data = table.column("image").chunk(0).field("bytes")[i].as_py()
        label = table.column("label")[i].as_py()
        return _item({"image": {"bytes": data}, "label": label}, self.transform, False)

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
        """Every row's label, in order, without decoding an image."""
        out = []
        for name in self.files:
            with self.fs.open_input_file(name) as fh:
                out += pq.read_table(fh, columns=["label"]).column("label").to_pylist()
        return out


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


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class ShardIterable(IterableDataset):
    """Streams a split, its rows split across ranks then DataLoader workers.

    Every rank gets the same number of rows an epoch, as DistributedSampler does: ceil(N/world),
    padded by repeating rows from the start of the epoch's order, or with `drop_last` floor(N/world),
    the tail left out. Each rank reads a contiguous run of rows, so few shards. With `shuffle`, the
    shard order (the same on every rank) and a buffer of `buffer_size` rows are shuffled, seeded by
    (seed, epoch): call `set_epoch` each epoch for a new order.
    """

    def __init__(self, path: str | os.PathLike, split: str = "train", transform: Callable | None = None,
                 shuffle: bool = False, buffer_size: int = 1000, seed: int = 0, return_row: bool = False,
                 rank: int | None = None, world_size: int | None = None, drop_last: bool = False):
        self.path, self.split, self.transform, self.return_row = str(path), split, transform, return_row
        self.shuffle, self.buffer_size, self.seed, self.epoch = shuffle, buffer_size, seed, 0
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.fs, self.files = shard_files(path, split)
        self.rows = row_counts(self.fs, self.files)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

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
        for shard, lo, hi in pieces:
            with self.fs.open_input_file(self.files[shard]) as fh:
                reader = pq.ParquetFile(fh)
                start = 0
                for g in range(reader.metadata.num_row_groups):
                    n = reader.metadata.row_group(g).num_rows
                    a, b = max(lo - start, 0), min(hi - start, n)
                    if a < b:
                        yield from reader.read_row_group(g).slice(a, b - a).to_pylist()
                    start += n

    def __iter__(self):
        rows = self._read(split_by_worker(self._my_pieces()))
        if self.shuffle:
            info = get_worker_info()
            rank = self._rank_and_world()[0]
            rows = _buffer_shuffle(rows, self.buffer_size,
                                   random.Random(f"{self.seed}/{self.epoch}/{rank}/{info.id if info else 0}"))
        for row in rows:
            yield _item(row, self.transform, self.return_row)


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
