"""PyTorch readers for augpipe shards (needs the `train` extra: pip install 'augpipe[train]').

`ShardDataset` is map-style with random access through the Parquet row-group index;
`ShardIterable` streams shards, split across distributed ranks and DataLoader workers so that
every row is read once an epoch. Both take a local folder or any pyarrow filesystem URI.
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

def split_by_rank(items: list, rank: int, world_size: int) -> list:
    """This rank's share; refuses fewer items than ranks (a rank with nothing would stall)."""
    if world_size > len(items):
        raise ValueError(f"{len(items)} shards cannot feed {world_size} ranks: expand with a smaller --shard-size")
    return items[rank::world_size]


def split_by_worker(items: list) -> list:
    """This DataLoader worker's share of the rank's items (all of them outside a worker)."""
    info = get_worker_info()
    return items if info is None else items[info.id::info.num_workers]


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class ShardIterable(IterableDataset):
    """Streams a split, shards split across ranks then DataLoader workers: each row once an epoch.

    With `shuffle`, the shard order and a buffer of `buffer_size` rows are shuffled, seeded by
    (seed, epoch): call `set_epoch` each epoch for a new order that every rank agrees on.
    """

    def __init__(self, path: str | os.PathLike, split: str = "train", transform: Callable | None = None,
                 shuffle: bool = False, buffer_size: int = 1000, seed: int = 0, return_row: bool = False,
                 rank: int | None = None, world_size: int | None = None):
        self.path, self.split, self.transform, self.return_row = str(path), split, transform, return_row
        self.shuffle, self.buffer_size, self.seed, self.epoch = shuffle, buffer_size, seed, 0
        self.rank, self.world_size = rank, world_size
        self.fs, self.files = shard_files(path, split)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _my_files(self) -> list[str]:
        files = list(self.files)
        if self.shuffle:
            random.Random(f"{self.seed}/{self.epoch}").shuffle(files)  # the same order on every rank
        rank, world = (self.rank, self.world_size) if self.world_size is not None else _rank_and_world()
        return split_by_worker(split_by_rank(files, rank, world))

    def _rows(self, files: list[str]) -> Iterator[dict]:
        for name in files:
            with self.fs.open_input_file(name) as fh:
                reader = pq.ParquetFile(fh)
                for g in range(reader.metadata.num_row_groups):
                    yield from reader.read_row_group(g).to_pylist()

    def __iter__(self):
        files = self._my_files()
        rows = self._rows(files)
        if self.shuffle:
            info = get_worker_info()
            rows = _buffer_shuffle(rows, self.buffer_size,
                                   random.Random(f"{self.seed}/{self.epoch}/{files[:1]}/{info.id if info else 0}"))
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
