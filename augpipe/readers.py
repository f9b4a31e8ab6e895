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

`loader` makes the fast feed of either: a DataLoader whose workers make whole batches, or with
`threads=N` a `ThreadLoader` (the batches made by N threads of this process: no batch crosses a
process). A batch's images are decoded into one N×3×H×W tensor, and a segmentation batch's masks
into one N×H×W int64 tensor.
"""

from __future__ import annotations

import atexit
import bisect
import copy
import dataclasses
import functools
import itertools
import math
import numbers
import types
import os
import queue
import random
import threading
import time
import warnings
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.reduction import ForkingPickler

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info
from torch.utils.data._utils.collate import default_collate

from augpipe import worker_memory
from augpipe.dataset import parquet_file, read_group
from augpipe.errors import BadRow, DamagedRow, SkipInput, SourceError
from augpipe.targets.base import row_size
from augpipe.decode import boundary_offset, jpegs_into, jpegs_size, off_boundary, row_image, row_images
from augpipe.headers import jpeg_frame, jpeg_frames

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
    if not isinstance(split, str):  # None was every split's shards: validation read as training
        raise ValueError(f"split {split!r}: one split's name, such as 'train' (its splits are "
                         f"{', '.join(name for name in ds.splits() if ds.shards(name)) or 'none'})")
    names = [s["name"] for s in ds.shards(split)]
    if not names:
        held = [name for name in ds.splits() if ds.shards(name)]
        raise FileNotFoundError(f"no {split} shards in {path}: its splits are {', '.join(held) or 'none'}")
    return (ds, *ds.store.arrow(names), ds.kind, list(ds.classes))


def columns(path: str | os.PathLike) -> list[str]:
    """Every column of the dataset's rows, as its shards hold them."""
    from augpipe.dataset import open_dataset

    ds = open_dataset(path)
    return ds.schema(ds.splits()[0]).names


def decode_rgb(data, reduce: int = 1) -> np.ndarray:
    """Stored bytes (or a uint8 buffer) as H×W×3 RGB, at 1/`reduce` of the size (JPEG DCT scaling)."""
    return row_image(data, reduce)


def to_chw(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))


def to_image(rgb: np.ndarray, convention: str = "augpipe", channels_last: bool = False) -> torch.Tensor:
    """An H×W×3 uint8 array as the convention's image: C×H×W uint8, or float32 in [0, 1] for
    torchvision (what `torchvision.transforms.functional.to_tensor` gives). `channels_last`: a
    C×H×W view of the array's H×W×3 memory, no copy (as torch's `channels_last` memory format)."""
    chw = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1) if channels_last else to_chw(rgb)
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


def _item(reader, group: _Group, i: int) -> object:
    """Row i of a row group as the reader gives it: (image, target), or the row with `return_row`."""
    kind, row, blob = reader.kind, group.row(i), group.blob(i)
    arrays = _named(group, i, kind.arrays, row)
    if not reader.decode:
        image = torch.from_numpy(blob.copy())  # the stored bytes: `decode_images` decodes a batch
    else:
        rgb = _named(group, i, reader.sizing.decode, blob, row)
        if _stored_sizes(reader) and "mask" in arrays:
            _masks_fit([(group, i)], [rgb.shape[:2]], [arrays["mask"].shape[:2]])
        if reader.augment is not None:
            key = row_key(row)
            rgb, arrays = reader.augment.augment_arrays(rgb, arrays, reader.augment.draw_seed(key, reader.epoch), key)
        image = reader.transform(rgb) if reader.transform is not None else \
            to_image(rgb, reader.convention, reader.channels_last)
    target = _named(group, i, to_target, kind, arrays, reader.box_format, reader.convention)
    if reader.return_row:
        return {**row, "image": image, "image_bytes": blob.tobytes(), "target": target}
    return image, target


def _plain(reader) -> bool:
    """Decoded images with neither transform, recipe nor `return_row`: made a batch at a time."""
    return reader.decode and reader.transform is None and reader.augment is None and not reader.return_row


def _items(reader, picks: list[tuple[_Group, int]]) -> list:
    """Rows as the reader gives them, in order. Plain decoded images (`_plain`) are made as one
    batch tensor (in shared memory inside a DataLoader worker, so that `collate` passes it on
    without a copy); each item's image is a view of it."""
    if not _plain(reader):
        return [_item(reader, g, i) for g, i in picks]
    images, targets = _decoded(reader, picks)
    if isinstance(images, list):  # sizes differ
        return list(zip(images, targets))
    return _Batch(images, targets)


def _batch(reader, picks: list[tuple[_Group, int]]):
    """`collate(_items(reader, picks))`, without making the items of a batch tensor."""
    if not _plain(reader):
        return collate(_items(reader, picks))
    images, targets = _decoded(reader, picks, reader._sends)
    return _stack(images) if isinstance(images, list) else images, _collated_targets(targets)


def _decoded(reader, picks: list[tuple[_Group, int]], sent: bool = False) -> tuple[torch.Tensor | list, list]:
    """The rows' images, one N×C×H×W tensor (a list when their sizes differ), and targets
    (`_batch_targets`)."""
    blobs = [g.blob(i) for g, i in picks]
    if reader.sizing.decode_size is None and reader.sizing.resize is None:  # the rows' other columns are not needed
        in_place = reader.channels_last and reader.convention == "augpipe"  # decoded into the batch itself
        rgbs = _jpegs(blobs, [g.frame(i) for g, i in picks], in_place)
        if rgbs is None:  # other formats or sizes: image by image
            try:
                rgbs = row_images(blobs)
            except ValueError:
                rgbs = [_named(g, i, row_image, b) for b, (g, i) in zip(blobs, picks)]
    elif reader.sizing.decode_size is None:
        rgbs = [_named(g, i, reader.sizing.decode, b, None) for b, (g, i) in zip(blobs, picks)]
    else:
        rgbs = [_named(g, i, reader.sizing.decode, b, g.row(i)) for b, (g, i) in zip(blobs, picks)]
    try:
        targets = _batch_targets(reader, picks, sent)
    except _UNREADABLE:  # a row's target does not decode (a mask's PNG): which, each row on its own
        for g, i in picks:
            _named(g, i, _batch_targets, reader, [(g, i)], sent)
        raise
    images = _batch_images(rgbs, reader.convention, reader.channels_last)
    if images is None:
        images = [to_image(rgb, reader.convention, reader.channels_last) for rgb in rgbs]
    if _stored_sizes(reader) and not (isinstance(images, torch.Tensor) and isinstance(targets, torch.Tensor)
                                      and images.shape[-2:] == targets.shape[-2:]):
        _masks_fit(picks, [image.shape[-2:] for image in images], [mask.shape[-2:] for mask in targets])
    return images, targets


def _stored_sizes(reader) -> bool:
    """Whether the reader gives a kind's stacked targets (semantic masks) and images at their stored sizes."""
    return reader.kind.stacked is not None and reader.sizing.decode_size is None and reader.sizing.resize is None


def _masks_fit(picks: list[tuple[_Group, int]], images: list, masks: list) -> None:
    """Each row's mask of its image's size, (height, width) each, or the row named (a reader gave
    both, silently)."""
    for (g, i), (h, w), (mh, mw) in zip(picks, images, masks):
        if (h, w) != (mh, mw):
            raise g.damaged(i, ValueError(f"mask is {mw}×{mh}, the image {w}×{h}"))


def _named(group: _Group, i: int, read: Callable, *args):
    """`read(*args)` of the group's row i (its image's decode, its target's); a row that does not
    read is named by its shard and row, where the decoder's error said neither."""
    try:
        return read(*args)
    except DamagedRow:
        raise
    except _UNREADABLE as exc:
        raise group.damaged(i, exc) from None


_UNREADABLE = (ValueError, SkipInput)  # what a decoder or a kind's reading of a row raises for damaged bytes


def _jpegs(blobs: list, frames: list, in_place: bool = False) -> torch.Tensor | None:
    """The common case: JPEGs of one size, decoded into one N×H×W×3 uint8 tensor (`in_place`:
    one a batch can be, `_empty`'s); else None."""
    size = jpegs_size(frames)
    if size is None:
        return None
    shape = (len(blobs), *size, 3)
    out = _off_boundary(shape, in_place)
    return out if jpegs_into(blobs, out.numpy()) else None


def _off_boundary(shape: tuple, in_place: bool) -> torch.Tensor:
    """A uint8 tensor to decode into whose first byte lies 16 bytes past a 32-byte boundary
    (`decode.off_boundary`): at 64 px a batch that starts on one has every row of 192 bytes start
    on one, each decoded 1.2-1.4× slower, its pixels left out of the cache."""
    n = math.prod(shape)
    if not in_place:
        return torch.from_numpy(off_boundary(n)).view(shape)
    flat = _empty((n + 32,))
    start = boundary_offset(flat.data_ptr())
    return flat[start:start + n].view(shape)


def _batch_targets(reader, picks: list[tuple[_Group, int]], sent: bool = False) -> list | torch.Tensor:
    """The rows' targets, a batch's own: dict targets as `_Targets` (`sent`: as `_Sent`, for a
    batch pickled as soon as it is made), gathered from their row groups' `_Columns` where the
    kind has them, else converted and joined."""
    joined = _Sent if sent else _Targets
    gathered = _gathered(reader, picks)
    if gathered is not None:
        return joined(*gathered, None)
    return _one_storage(_targets(reader, picks), joined)


def _gathered(reader, picks: list[tuple[_Group, int]]) -> tuple[tuple, dict] | None:
    """`_Targets`' keys and fields for the rows, each field a numpy concatenation of the rows'
    slices of their row groups' `_Columns` (a tenth of `torch.cat`'s time for 64 tensors); None
    for a kind that has none (`Target.torch_columns`)."""
    first = picks[0][0].columns(reader)
    if first is None:
        return None
    parts, counts = [[] for _ in first.keys], []
    for g, i in picks:
        columns = g.columns(reader)
        start, stop = columns.spans[i]
        counts.append(stop - start)
        for part, array in zip(parts, columns.arrays):
            part.append(array[start:stop])
    return first.keys, {key: (torch.from_numpy(np.concatenate(part)), counts) for key, part in zip(first.keys, parts)}


def _targets(reader, picks: list[tuple[_Group, int]]) -> list | torch.Tensor:
    """The rows' targets as the reader gives them, in order: those kept from an earlier batch, the
    others converted a row group at a time by the kind (`Target.torch_targets`); a kind's that
    stack (`Target.stacked`: semantic masks) as one tensor."""
    if reader.kind.stacked is not None:
        return _stacked_targets(reader.kind, picks)
    out, wanted = [], {}
    for k, (g, i) in enumerate(picks):
        out.append(g.targets.get(i))
        if out[-1] is None:
            wanted.setdefault(id(g), (g, []))[1].append(k)
    for g, ks in wanted.values():
        for k, target in zip(ks, g.convert([picks[k][1] for k in ks], reader)):
            out[k] = target
    return out


def _stacked_targets(kind, picks: list[tuple[_Group, int]]) -> torch.Tensor | list:
    """The rows' arrays (`Target.stacked_array`, decoded from the stored bytes) as one N×... tensor
    of the kind's dtype, each cast as it is copied in (a list of tensors where their shapes differ)."""
    column, dtype = kind.stacked
    arrays = [kind.stacked_array(g.bytes_of(column)[i]) for g, i in picks]
    if len({a.shape for a in arrays}) != 1:
        return [torch.from_numpy(a.astype(dtype)) for a in arrays]
    out = _empty((len(arrays), *arrays[0].shape), torch.from_numpy(np.empty(0, dtype)).dtype)
    np.stack(arrays, out=out.numpy())
    return out


def _one_storage(targets: list, joined: type = None) -> list:
    """Dict targets (detection's boxes, labels, masks) as `_Targets` (or `joined`): each field's
    tensors views of one tensor for the batch, a copy (a kept target is never handed out as it is)."""
    if isinstance(targets, torch.Tensor) or not targets or not isinstance(targets[0], dict):
        return targets
    keys, fields, others = list(targets[0]), {}, []
    for key in keys:
        values = [t.get(key) for t in targets]
        whole = _joined(values)
        if whole is not None:
            fields[key] = (whole, [v.shape[0] for v in values])  # len() of a tensor: 3× slower
        else:
            others.append(key)
    rest = [{k: _copied(t.get(k)) for k in others} for t in targets] if others or not fields else None
    return (joined or _Targets)(keys, fields, rest)


def _copied(value):
    return value.clone() if isinstance(value, torch.Tensor) else value


def _joined(values: list) -> torch.Tensor | None:
    """Tensors of one dtype and one shape but their first dimension's, joined; else None. One
    dtype and one number of dimensions are checked (a set: a row's cost), `torch.cat` refuses
    any other difference."""
    first = values[0]
    if not isinstance(first, torch.Tensor) or first.ndim == 0:
        return None
    try:
        if {(v.dtype, v.ndim) for v in values} != {(first.dtype, first.ndim)}:
            return None
        return torch.cat(values)
    except (AttributeError, TypeError, RuntimeError):  # a value that is not a tensor; other sizes
        return None


class _Targets(list):
    """A batch's dict targets whose fields' tensors are views of one tensor a field (`rest`: the
    other fields, row by row, or None). Pickled as those tensors and the rows' counts, so that a
    worker sends one shared-memory handle a field and the main process makes the views again: at
    5 boxes an image, a handle a tensor (128 a batch of 64) cost the main process more than the
    images did."""

    def __init__(self, keys: list, fields: dict, rest: list[dict] | None):
        columns = [fields[k][0].split_with_sizes(fields[k][1]) if k in fields else None for k in keys]
        if rest is None:
            super().__init__(dict(zip(keys, row)) for row in zip(*columns))
        else:
            super().__init__({k: c[i] if c is not None else r[k] for k, c in zip(keys, columns)}
                             for i, r in enumerate(rest))
        self._state = (keys, fields, rest)

    def __reduce__(self):
        """A copy or a pickle (`copy.deepcopy`, `torch.save`) holds the rows as they are now, a
        plain list; a feed's transport (`ForkingPickler`) sends the batch as made (`_sent_as_made`)."""
        return list, (list(self),)


def _sent_as_made(targets: _Targets | _Sent):
    """`_Targets` as a worker's batch crosses to the main process: the fields' tensors and the
    rows' counts (a shared-memory handle a field, not one a row's tensor); its views are made
    again there. In-place changes to the tensors travel; a change to the rows' dicts made in the
    worker's own `collate_fn` would not."""
    return _Targets, targets._state


ForkingPickler.register(_Targets, _sent_as_made)


class _Sent:
    """`_Targets` not made yet: a feed process's batch, pickled as soon as it is made, becomes
    `_Targets` in the process that takes it (making the rows' dicts and views there only halves
    their cost)."""

    def __init__(self, keys: list, fields: dict, rest: list[dict] | None):
        self._state = (keys, fields, rest)

    __reduce__ = _sent_as_made


class _Batch(list):
    """(image, target) items whose images are views of one N×C×H×W tensor, `images`: `collate`
    takes that tensor as it is; `default_collate` stacks the views as it would any items."""

    def __init__(self, images: torch.Tensor, targets: list):
        super().__init__(zip(images, targets))
        self.images, self.targets = images, targets


def _empty(shape: tuple, dtype=torch.uint8) -> torch.Tensor:
    """A tensor to fill: inside a DataLoader worker, shared memory (`worker_memory.empty`), so that
    sending it to the main process copies nothing. Elsewhere numpy's memory: numpy asks the kernel
    for huge pages for large arrays, torch does not, and a batch's first writes then fault a page
    every 4 KB (at 224 px, a quarter of the time decoding took)."""
    if get_worker_info() is None and not worker_memory.enabled():
        return torch.from_numpy(np.empty(shape, _numpy_dtype(dtype)))
    return worker_memory.empty(shape, dtype)


@functools.cache
def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    return torch.empty(0, dtype=dtype).numpy().dtype


SPLIT_BYTES = 256 * 2**10  # images split into planes by one OpenCV call, at most (see _batch_images)


def _batch_images(rgbs: list[np.ndarray] | torch.Tensor, convention: str,
                  channels_last: bool = False) -> torch.Tensor | None:
    """H×W×3 arrays of one size (a list, or one N×H×W×3 tensor) as an N×3×H×W batch (float in
    [0, 1] for torchvision's convention), channels-last where asked; None when their sizes differ."""
    if channels_last:
        return _channels_last(rgbs, convention)
    joined = isinstance(rgbs, torch.Tensor)
    if joined:
        rgbs = rgbs.numpy()
    elif len({rgb.shape for rgb in rgbs}) != 1:
        return None
    h, w, c = rgbs[0].shape
    out = _empty((len(rgbs), c, h, w))
    planes = out.numpy().reshape(len(rgbs), c, h * w)
    # OpenCV splits into the batch's planes (6× numpy's strided copy at 224 px): small images
    # stacked and split by one call (its cost is mostly the call's at 64 px), large ones one by
    # one (a large span of planes written at once is slower)
    step = max(1, SPLIT_BYTES // rgbs[0].nbytes)
    for k in range(0, len(rgbs), step):
        if joined:
            chunk = rgbs[k:k + step]
        elif step == 1:
            chunk = rgbs[k]
        else:
            chunk = np.concatenate(rgbs[k:k + step])  # np.stack: the same, in more Python
        cv2.split(chunk.reshape(-1, h * w, c), [planes[k:k + step, channel] for channel in range(c)])
    if convention == "torchvision":
        return _empty(tuple(out.shape), torch.float32).copy_(out).div_(255)
    return out


def _channels_last(rgbs: list[np.ndarray] | torch.Tensor, convention: str) -> torch.Tensor | None:
    """`_batch_images` in torch's channels_last memory format: N×3×H×W over N×H×W×3 memory, the
    decoded pixels as they are (a tensor decoded in place is the batch), no split into planes."""
    if isinstance(rgbs, torch.Tensor):
        if convention == "augpipe":
            return rgbs.permute(0, 3, 1, 2)
    elif len({rgb.shape for rgb in rgbs}) != 1:
        return None
    else:
        rgbs = torch.from_numpy(np.stack(rgbs))
    out = _empty(tuple(rgbs.shape), torch.float32 if convention == "torchvision" else torch.uint8).copy_(rgbs)
    return (out.div_(255) if convention == "torchvision" else out).permute(0, 3, 1, 2)


class _Bytes:
    """A struct<bytes, path> column's bytes as views of its Arrow buffer (no Python bytes a row)."""

    def __init__(self, column):
        # one chunk but where a table spans batches: combining copies
        data = pc.struct_field(column.chunk(0) if column.num_chunks == 1 else column.combine_chunks(), "bytes")
        _, offsets, values = data.buffers()
        wide = pa.types.is_large_binary(data.type)
        # Python ints: a row's slice costs less than with numpy's
        self.offsets = np.frombuffer(offsets, np.int64 if wide else np.int32)[data.offset:data.offset + len(data) + 1].tolist()
        self.data = np.frombuffer(values, np.uint8) if values is not None else np.zeros(0, np.uint8)
        self.valid = data.is_valid().to_numpy(zero_copy_only=False) if data.null_count else None

    def __getitem__(self, i: int) -> np.ndarray:
        if self.valid is not None and not self.valid[i]:
            return self.data[:0]
        return self.data[self.offsets[i]:self.offsets[i + 1]]

    def frames(self) -> list:
        """Every row's `jpeg_frame` (None for a null)."""
        if self.valid is None:
            return jpeg_frames(self.data, self.offsets)
        return [jpeg_frame(self[i]) if self.valid[i] else None for i in range(len(self.offsets) - 1)]


_PID = [os.getpid()]  # this process's, kept by a fork's child: a look costs no system call a row group
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


def _pid() -> int:
    return _PID[0]


class _ByteCache:
    """What a reader keeps (row groups, a stream's whole shards) up to `limit` bytes in this
    process, the least recently used dropped first (one at least stays). A feed's threads share
    it under its lock; a worker process starts it empty (each fills its own)."""

    def __init__(self, limit: int):
        check_count("cache_bytes", limit, 0, " of bytes")
        self.limit = limit
        self._clear()

    def _clear(self) -> None:
        self.lock, self._items, self._bytes, self._pid = threading.Lock(), OrderedDict(), 0, _pid()
        self.full = self.limit <= 0  # something was dropped, or did not fit
        self.first_epoch: int | None = None  # the epoch of a stream's first pass in this process (`again`)
        self.reading: set = set()  # the shards a pass is reading now
        self.ahead: str | None = None  # a stream's read-ahead (`ShardIterable._read_ahead`): "busy" in a thread, or "done"

    def again(self, epoch: int) -> bool:
        """Whether a stream's pass of another epoch began in this process before, and everything
        offered since has been kept (a process that reads one epoch never reads more than it needs;
        the threads of one feed share an epoch)."""
        if self._pid != _pid():
            self._clear()
        with self.lock:
            if self.first_epoch is None:
                self.first_epoch = epoch
            return epoch != self.first_epoch and not self.full

    def fits(self, nbytes: float) -> bool:
        return self._bytes + nbytes <= self.limit

    def __getstate__(self) -> dict:
        return {"limit": self.limit}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["limit"])

    def get_or_make(self, key, make: Callable[[], tuple[object, int]] | None = None):
        """The value kept under `key`; else, with `make`, the one it makes (value, its bytes), kept,
        made under the lock (threads asking for one key read it once); else None."""
        if self._pid != _pid():  # a lock or a copy forked from another process is not this one's
            self._clear()
        with self.lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
            if make is None:
                return None
            value, nbytes = make()
            self._put(key, value, nbytes)
            return value

    def put(self, key, value, nbytes: int) -> None:
        with self.lock:
            self._put(key, value, nbytes)

    def _put(self, key, value, nbytes: int) -> None:
        if key in self._items:
            return
        self._items[key] = (value, nbytes)
        self._bytes += nbytes
        while self._bytes > self.limit and len(self._items) > 1:
            self._bytes -= self._items.popitem(last=False)[1][1]
            self.full = True

    def __bool__(self) -> bool:
        return bool(self._items)


_UNREAD = object()


class _Group:
    """A row group as the readers take it: the stored image bytes as views of one Arrow buffer
    (no Python bytes an image), the other columns as Python rows, made the first time one is asked for."""

    def __init__(self, table, where: tuple[str, int] = ("a shard", 0)):
        self.where = where  # (its shard's name, its first row there): what a row that fails is named by
        self._images = _Bytes(table.column("image"))
        self.blob = self._images.__getitem__
        self.rest, self.rows, self.nbytes, self.num_rows = table.drop_columns(["image"]), None, table.nbytes, len(table)
        self.targets: dict[int, object] = {}
        self.small: bool | None = None  # whether the first targets converted were all small enough to keep
        self._columns: _Columns | None | object = _UNREAD
        self._bytes: dict[str, _Bytes] = {}
        self._frames: list | None = None
        self._parsing = threading.Lock()  # a feed's threads that share the group parse it once

    def frame(self, i: int) -> tuple | None:
        """Row i's image's `jpeg_frame`. The group's rows are parsed together when one is first
        asked for (`jpeg_frames`: a third of the cost a row) and kept: a kept row group's next
        epochs parse no header (at 64 px the parse one by one was an eighth of a batch's time)."""
        if self._frames is None:
            with self._parsing:
                if self._frames is None:
                    self._frames = self._images.frames()
        return self._frames[i]

    def bytes_of(self, column: str) -> _Bytes:
        """Another struct<bytes, path> column's bytes (a semantic mask's), as the image's."""
        if column not in self._bytes:
            self._bytes[column] = _Bytes(self.rest.column(column))
        return self._bytes[column]

    def damaged(self, i: int, exc: Exception) -> DamagedRow:
        """Row i's error, named by its shard and its row there (inspect --verify's numbering)."""
        return DamagedRow(f"{self.where[0]} row {self.where[1] + i}: {exc} (augpipe inspect --verify lists the damage)")

    def row(self, i: int) -> dict:
        if self.rows is None:
            self.rows = self.rest.to_pylist()
        return self.rows[i]

    def convert(self, rows: list[int], reader) -> list:
        """Rows' targets as the reader gives them, converted together by the kind (`Target.torch_targets`).
        Small targets (a few boxes, not a mask) are kept for the next batches, which copy them
        into their own tensors (`_one_storage`), never hand them out; once a group's first ones
        were all small, the rest of the group is converted in one go (a call per batch cost more
        than the conversion)."""
        whole = bool(self.small)
        try:
            targets = reader.kind.torch_targets(self.rest, reader.box_format, reader.convention, None if whole else rows)
        except BadRow as exc:
            raise self.damaged(exc.row, exc) from None
        kept = [self._keep(i, target) for i, target in enumerate(targets)] if whole else \
            [self._keep(i, target) for i, target in zip(rows, targets)]
        if self.small is None:
            self.small = all(kept)
        return [targets[i] for i in rows] if whole else targets

    def columns(self, reader) -> _Columns | None:
        """The group's targets as one array a field, converted the first time (None for a kind
        without `torch_columns`)."""
        if self._columns is _UNREAD:
            try:
                made = reader.kind.torch_columns(self.rest, reader.box_format, reader.convention)
            except BadRow as exc:
                raise self.damaged(exc.row, exc) from None
            self._columns = None if made is None else _Columns(*made)
        return self._columns

    def _keep(self, i: int, target) -> bool:
        if isinstance(target, int) or isinstance(target, dict) and \
                sum(v.nbytes for v in target.values() if isinstance(v, torch.Tensor)) <= 2048:
            self.targets[i] = target
            return True
        return False


class _Columns:
    """A row group's targets as the kind lays them end to end (`Target.torch_columns`), as numpy
    arrays, and each row's (start, stop) in them."""

    def __init__(self, fields: dict, counts: list[int]):
        self.keys = tuple(fields)
        self.arrays = [value.numpy() for value in fields.values()]
        ends = list(itertools.accumulate(counts))
        self.spans = list(zip([0, *ends], ends))


class _Sizing:
    """How a reader decodes: whole, or reduced by JPEG DCT scaling (1/2, 1/4, 1/8) to the
    smallest size that still covers `decode_size` (height, width), then resized to exactly
    `resize` (height, width) when asked (OpenCV, area when shrinking)."""

    def __init__(self, kind, decode_size=None, resize=None):
        self.decode_size, self.resize = _size(decode_size, "decode_size"), _size(resize, "resize")
        if self.decode_size is None:
            self.decode_size = self.resize
        if self.decode_size is not None and kind.spatial:
            raise ValueError(f"decode_size and resize are for images whose target does not move with them: a "
                             f"{kind.name} dataset's would have to: use a recipe with output.resize")

    def columns(self) -> list[str]:
        return ["width", "height"] if self.decode_size else []

    def reduce(self, height: int, width: int) -> int:
        """The largest of 8, 4, 2 that still leaves the image at least `decode_size`, else 1."""
        if self.decode_size is None:
            return 1
        h, w = self.decode_size
        return next((s for s in (8, 4, 2) if height // s >= h and width // s >= w), 1)

    def _scale(self, blob, row: dict) -> int:
        """`reduce` by the row's size; a row without one (a null, by hand) by its JPEG's header."""
        try:
            width, height = row_size(row)
        except SkipInput:
            frame = jpeg_frame(blob)
            if frame is None:  # not a JPEG: no DCT scaling either way
                return 1
            width, height = frame[:2]
        return self.reduce(height, width)

    def decode(self, blob, row: dict) -> np.ndarray:
        rgb = decode_rgb(blob, self._scale(blob, row) if self.decode_size else 1)
        if self.resize is not None:
            from augpipe.decode import resize

            rgb = resize(rgb, *self.resize)
        return rgb


def _check_undecoded(reader) -> None:
    """`decode=False` gives the stored bytes: nothing that works on pixels can come with it."""
    given = [name for name, on in (("transform", reader.transform is not None), ("recipe", reader.augment is not None),
                                   ("decode_size or resize", reader.sizing.decode_size is not None)) if on]
    if not reader.decode and given:
        raise ValueError(f"decode=False gives the stored bytes: {', '.join(given)} cannot apply to them")


def _size(value, name: str) -> tuple[int, int] | None:
    """A size given as an int (square) or (height, width)."""
    if value is None:
        return None
    try:
        size = (value, value) if isinstance(value, (numbers.Number, str)) else tuple(value)
    except TypeError:
        size = ()
    if len(size) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in size):
        raise ValueError(f"{name} {value!r}: a positive int or (height, width)")
    if max(size) > MAX_SIDE:  # past any image a decode makes: a typo (OpenCV asked for 30 GB)
        raise ValueError(f"{name} {value!r}: at most {MAX_SIDE:,} pixels a side")
    return size


MAX_SIDE = 65_535  # JPEG's own limit on a side


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

    def __init__(self, shared: bool = True):
        self.value = torch.zeros((), dtype=torch.int64)
        if shared:
            self.value.share_memory_()

    def get(self) -> int:
        return int(self.value)

    def set(self, epoch: int) -> None:
        check_count("epoch", epoch, 0)
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
            try:
                rgb = decode_rgb(row["image"]["bytes"] or b"")
                state = self.kind.from_arrays(self.kind.arrays(row), rgb.shape)
            except _UNREADABLE as exc:
                name = self.ds.shards("train")[shard]["name"]
                raise DamagedRow(f"{name} row {index} (a donor, the original of {source}): {exc} "
                                 "(augpipe inspect --verify lists the damage)") from None
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
    same-size masks stacked as `default_collate` does. Rows (`return_row`) come as a list. A
    batch the readers made whole (`__getitems__`) keeps its image tensor: no copy."""
    if not batch or not isinstance(batch[0], (tuple, list)):
        return list(batch)
    if isinstance(batch, _Batch):
        images, targets = batch.images, batch.targets
    else:
        images, targets = _stack([b[0] for b in batch]), [b[1] for b in batch]
    return images, _collated_targets(targets)


def _collated_targets(targets: list):
    if isinstance(targets, (_Targets, _Sent, torch.Tensor)):
        return targets
    return list(targets) if isinstance(targets[0], dict) else _stack(targets)


def _stack(items: list):
    if all(type(item) is int for item in items):  # labels: default_collate's int64 tensor, in a third of its time
        try:
            return torch.from_numpy(np.array(items, np.int64))
        except OverflowError:  # past int64: default_collate's error
            pass
    if isinstance(items[0], torch.Tensor):
        if len({tuple(t.shape) for t in items}) != 1:
            return list(items)
        if _channels_last_image(items[0]):  # stacked channels-last too
            return torch.stack([t.permute(1, 2, 0) for t in items]).permute(0, 3, 1, 2)
        return torch.stack(items)
    try:
        return default_collate(items)
    except (RuntimeError, TypeError):
        return list(items)


def _channels_last_image(t: torch.Tensor) -> bool:
    """A C×H×W tensor over H×W×C memory (`channels_last=True`'s items), C > 1."""
    return t.ndim == 3 and t.shape[0] > 1 and t.stride() == (1, t.shape[2] * t.shape[0], t.shape[0])


def decode_images(encoded: list[torch.Tensor], device="cuda") -> torch.Tensor | list[torch.Tensor]:
    """Stored images (1-D uint8 tensors of their bytes, as a reader with `decode=False` gives
    them) decoded on `device`: JPEGs by `torchvision.io.decode_jpeg` in one call (nvJPEG on a
    CUDA device, which decodes a list as a batch), others and JPEGs with an EXIF orientation by
    augpipe's decode on the CPU, then moved. C×H×W uint8, stacked when they share a size. Without
    torchvision, augpipe's decode takes them all on the CPU; a CUDA decode needs it."""
    from augpipe.headers import read_header

    _check_encoded(encoded)
    device = checked_device(device)
    encoded = [e.contiguous() for e in encoded]  # a view with strides (a column of a 2-D tensor) decodes too
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:
        if device.type == "cuda":
            raise ValueError(f"decoding on {device} needs torchvision: pip install torchvision") from None
        decode_jpeg = None
    out: list = [None] * len(encoded)
    jpegs = [k for k, e in enumerate(encoded) if decode_jpeg is not None and _plain_jpeg(e, read_header)]
    # torchvision decodes on a CUDA device, and on the CPU for any other it is given: moved after
    decode_on = device if device.type == "cuda" else torch.device("cpu")
    if jpegs:
        def decoded(ks):
            return decode_jpeg([encoded[k] for k in ks], mode=ImageReadMode.RGB, device=decode_on)
        try:
            images = decoded(jpegs)
        except RuntimeError as refused:
            images = _one_by_one(jpegs, decoded, encoded, refused, decode_on)
        for k, image in zip(jpegs, images):
            out[k] = image
    for k, e in enumerate(encoded):
        if out[k] is None:
            out[k] = _on_cpu(k, e)
    return _stack([image.to(device) for image in out])


def checked_device(device) -> torch.device:
    """`device` as torch names it, or one line: one torch does not know, or CUDA where this
    PyTorch sees none (torchvision's nvJPEG printed pages of C++ frames before its own error)."""
    try:
        on = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r}: not a device torch knows ({str(exc).splitlines()[0][:120]})") from None
    if on.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: this PyTorch sees no CUDA device (torch.cuda.is_available() is False)")
    return on


def _check_encoded(encoded) -> None:
    """A list of 1-D uint8 tensors (a `decode=False` batch's images, `batch[0]`), or one line."""
    if isinstance(encoded, torch.Tensor) or not isinstance(encoded, (list, tuple)) or not all(
            isinstance(e, torch.Tensor) and e.dtype == torch.uint8 and e.dim() == 1 for e in encoded):
        if isinstance(encoded, (list, tuple)):
            what = f"a {type(encoded).__name__} holding {', '.join(sorted({_described(e) for e in encoded}))}"
        else:
            what = f"one {_described(encoded).removesuffix('s')}" if isinstance(encoded, torch.Tensor) else \
                type(encoded).__name__
        raise ValueError(f"decode_images takes a list of 1-D uint8 tensors, each an image's stored bytes (a "
                         f"decode=False batch's images: batch[0]), not {what}")


def _described(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dim()}-D {str(value.dtype).removeprefix('torch.')} tensors"
    return type(value).__name__


def _one_by_one(ks: list[int], decoded: Callable, encoded: list[torch.Tensor], refused: RuntimeError, device) -> list:
    """The batch's JPEGs one at a time, once torchvision refused them together: one it refuses is
    decoded as a reader with decode=True decodes it (augpipe's decoder, on the CPU; a damaged row
    where that fails too). Where it refuses every one and augpipe's decoder takes them all, the
    error is the device's or torchvision's, not the images': raised as it came."""
    out, cpu = [], 0
    for k in ks:
        try:
            out.append(decoded([k])[0])
        except RuntimeError:
            out.append(_on_cpu(k, encoded[k]).to(device))
            cpu += 1
    if cpu == len(ks):
        raise refused
    return out


def _on_cpu(k: int, encoded: torch.Tensor) -> torch.Tensor:
    return _in_batch(k, lambda: to_chw(decode_rgb(encoded.numpy())))


def _in_batch(k: int, decode: Callable):
    """`decode()` of a batch's image k by augpipe's decoder; one that does not decode is a
    damaged row, whichever decoder refused it first."""
    try:
        return decode()
    except (ValueError, SkipInput) as exc:
        raise DamagedRow(f"image {k} of the batch does not decode ({str(exc).splitlines()[0][:120]}): a reader with "
                         "decode=True, or augpipe inspect --verify, names its shard and row") from None


def _plain_jpeg(encoded: torch.Tensor, read_header) -> bool:
    """A JPEG that decodes upright without its EXIF orientation applied (nvJPEG applies none)."""
    try:
        head = encoded[:2].tolist() == [0xFF, 0xD8] and read_header(encoded.numpy().tobytes())
    except SkipInput:  # a header cut short: augpipe's decode says so
        return False
    return bool(head) and head.orientation in (None, 1)


class DeviceLoader:
    """Batches of a DataLoader on a device: images decoded there when the reader gives stored bytes
    (`decode=False`: `decode_images`), else moved (without blocking, from pinned memory); targets'
    tensors moved too. `len` and `set_epoch` are the loader's and its dataset's."""

    def __init__(self, loader, device):
        self.loader, self.device = loader, checked_device(device)

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.loader.dataset.set_epoch(epoch)

    def __iter__(self):
        decode = not getattr(self.loader.dataset, "decode", True)
        for images, targets in self.loader:
            images = decode_images(images, self.device) if decode else _to(images, self.device)
            yield images, _to(targets, self.device)


def _to(value, device):
    return _each_tensor(value, lambda t: t.to(device, non_blocking=True))


def _each_tensor(value, fn):
    """`fn` on every tensor of a batch, nested in dicts, tuples and lists (a list comes back a list)."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, dict):
        return {k: _each_tensor(v, fn) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_each_tensor(v, fn) for v in value)
    if isinstance(value, list):
        return [_each_tensor(v, fn) for v in value]
    return value


def _as_made(batch):
    """A batch the stream collated in its worker."""
    return batch


def loader(dataset, batch_size: int | None = None, *, shuffle: bool | None = None, num_workers: int | None = None,
           pin_memory: bool | None = None, persistent_workers: bool | None = None, device=None,
           seed: int | None = None, threads: int = 0, processes: int = 0, **kwargs):
    """A `torch.utils.data.DataLoader` over a `ShardDataset` or `ShardIterable` with the defaults a
    fast feed wants; any other DataLoader argument passes through (`kwargs`):

    - `num_workers` 2, and `collate`, which keeps the batch tensor the workers made (no copy in
      the main process);
    - a `ShardIterable` yields whole batches from its workers (`batched`; its own `shuffle`), a
      `ShardDataset` is shuffled by the loader (`shuffle`, default True; `seed` seeds the order);
    - `persistent_workers` when there are workers (they keep their row-group cache between
      epochs, and `set_epoch` reaches them), `pin_memory` when CUDA is there.

    With `device`, what comes back yields batches on that device (`DeviceLoader`): moved, or, for
    a reader made with `decode=False`, decoded there by `decode_images` (nvJPEG on CUDA). Without
    it, the DataLoader itself.

    `threads=N` makes the batches in N threads of this process instead of worker processes
    (`ThreadLoader`; the decoders and Arrow let go of the GIL): no batch crosses a process boundary. A
    `ShardIterable` gives there what N workers would give, in the same order; a `ShardDataset` the
    same rows each epoch, in an order of its own drawn from `seed` (as reproducible, not the
    DataLoader's: its draws from the generator are its own).

    `processes=N` makes them in N processes of augpipe's own instead of a DataLoader's workers
    (`process_feed.ProcessLoader`): the batches and order of `threads=N`, a recipe or transform
    allowed, none of a DataLoader's messages a batch; they live as long as the loader.

    `threads=0` and `processes=0` (the defaults): the DataLoader.

    `batch_size`: 64, or a `ShardIterable`'s own where it was made with one."""
    batch_size = _batch_size(dataset, batch_size)
    check_seed(seed)
    if threads and processes:
        raise ValueError("threads= and processes= are two feeds: give one or the other")
    if threads or processes:
        if num_workers is not None or persistent_workers is not None:
            raise ValueError(f"{'threads' if threads else 'processes'}= is a feed of its own: num_workers= and "
                             "persistent_workers= are a DataLoader's; give one or the other")
        pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        if threads:
            out = ThreadLoader(dataset, batch_size, threads=threads, shuffle=shuffle, seed=seed, pin_memory=pin_memory,
                               **kwargs)
        else:
            from augpipe.process_feed import ProcessLoader

            out = ProcessLoader(dataset, batch_size, processes=processes, shuffle=shuffle, seed=seed,
                                pin_memory=pin_memory, **kwargs)
        return out if device is None else DeviceLoader(out, device)
    num_workers = 2 if num_workers is None else num_workers
    persistent_workers = num_workers > 0 if persistent_workers is None else persistent_workers
    pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
    options = {"num_workers": num_workers, "pin_memory": pin_memory, "persistent_workers": persistent_workers,
               "collate_fn": collate, **kwargs}
    if num_workers > 0:
        options["worker_init_fn"] = functools.partial(_start_worker, kwargs.get("worker_init_fn"))
    if isinstance(dataset, IterableDataset):
        if shuffle is not None:
            raise ValueError("a ShardIterable shuffles itself: ShardIterable(..., shuffle=True, seed=...)")
        if seed is not None and isinstance(dataset, ShardIterable):  # as threads= and processes= refuse it
            raise ValueError("a ShardIterable seeds itself: ShardIterable(..., seed=...)")
        if isinstance(dataset, ShardIterable):
            if kwargs.get("drop_last"):
                raise ValueError(_NO_DROP_LAST)
            dataset, options["batch_size"] = dataset.batched(batch_size, num_workers), None
            options["collate_fn"] = kwargs.get("collate_fn", _as_made)
        else:
            options["batch_size"] = batch_size
    else:
        options["batch_size"], options["shuffle"] = batch_size, True if shuffle is None else shuffle
        if seed is not None:
            options["generator"] = torch.Generator().manual_seed(seed)
    out = _Loader(dataset, **options)
    return out if device is None else DeviceLoader(out, device)


_NO_DROP_LAST = ("drop_last= does not apply to a ShardIterable's batches: each worker's share ends with a short "
                 "batch of its own, which len() counts; ShardIterable(..., drop_last=True) drops the rows past "
                 "an even share of the ranks")


def _batch_size(dataset, asked: int | None) -> int:
    own = getattr(dataset, "batch_size", None) if isinstance(dataset, ShardIterable) else None
    if asked is not None and own is not None and asked != own:
        raise ValueError(f"batch_size={asked}, where the stream makes batches of {own} (ShardIterable(..., "
                         f"batch_size={own})): give one or the other")
    return asked if asked is not None else own if own is not None else 64


class _Loader(DataLoader):
    """`loader`'s DataLoader: once an iterator's workers have ended, this process lets go of the
    shared memory they sent batches in (`worker_memory.forget_gone`; torch has joined them by
    then, in the iterator's `__del__`)."""

    def set_epoch(self, epoch: int) -> None:
        """The reader's epoch, as `threads=` and `processes=` feeds take it; persistent workers see
        it: a `ShardIterable`'s shuffle and a `recipe=`'s draws. A `ShardDataset`'s order is the
        loader's own (its generator, seeded by `seed=`, moves on each epoch)."""
        self.dataset.set_epoch(epoch)

    def _get_iterator(self):
        iterator = super()._get_iterator()
        if self.num_workers > 0:
            weakref.finalize(iterator, worker_memory.forget_gone)
        return iterator


def _start_worker(then: Callable | None, worker_id: int) -> None:
    """A loader's worker sends its batches by shared-memory file name, not file descriptor
    (torch's "file_system" sharing): the main process opens each by name, where it asked the
    worker for a descriptor over a socket, a connection a tensor (at 64 px, 1.27× the images a
    second through 2 workers; the same at 224 px). torch's torch_shm_manager unlinks the files
    once every process using them is gone, killed or not.

    A worker a fork server started lets go of the server's "alive" pipe: else the server, the
    worker's parent, outlives a killed main process, and torch's watchdog, which watches the
    parent, keeps the worker (and its shared files) alive. It dies with the server: torch's
    watchdog takes its parent's pid only after the worker_init_fns, and a main process killed
    before then left the workers to init, watched by nobody (a hostile tester's, with a slow
    worker_init_fn). Then the caller's worker_init_fn."""
    import multiprocessing

    import torch.multiprocessing

    from augpipe.engines.local import release_fork_server
    from augpipe.processes import die_with_parent

    release_fork_server()
    main = multiprocessing.parent_process()  # the process that asked for this worker
    if main is not None and main.pid != os.getppid():  # started by a fork server, one thread: its death signal is safe
        die_with_parent(os.getppid())
        if not main.is_alive():
            os._exit(1)
    if "file_system" in torch.multiprocessing.get_all_sharing_strategies():
        torch.multiprocessing.set_sharing_strategy("file_system")
        worker_memory.enable()
    if then is not None:
        then(worker_id)


class ThreadLoader:
    """Batches made by N threads of this process, in order, a few ahead (the decoders and Arrow let go of
    the GIL), which reach the training loop without crossing a process (a DataLoader's workers send
    every batch through shared memory, which costs about what decoding it does at small sizes):

    - of a `ShardDataset`: thread k makes batches k, k+N, k+2N... of the epoch's order (`shuffle`,
      default True, draws it from a generator seeded by `seed`), `drop_last` as a DataLoader's;
    - of a `ShardIterable`: thread k streams what DataLoader worker k of N would (its share of the
      rank's rows, its shuffle buffer seeded alike), batches of `batch_size`, taken in turn as a
      DataLoader takes its workers': the batches and order of `loader(stream, num_workers=N)`.

    The same items as the reader gives. For readers without `recipe=` or `transform=` (their code
    is not ours to run on several threads at once)."""

    def __init__(self, dataset, batch_size: int = 64, *, threads: int = 2, shuffle: bool | None = None,
                 seed: int | None = None, drop_last: bool = False, pin_memory: bool = False):
        if not isinstance(dataset, (ShardDataset, ShardIterable)):
            raise ValueError("threads= reads a ShardDataset or a ShardIterable")
        self._allowed(dataset)
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in (threads, batch_size)):
            raise ValueError(f"threads and batch_size are whole numbers, 1 or more, not {threads!r} and {batch_size!r}")
        if isinstance(dataset, ShardIterable):
            if seed is not None:
                raise ValueError("a ShardIterable seeds itself: ShardIterable(..., seed=...)")
            if shuffle is not None:
                raise ValueError("a ShardIterable shuffles itself: ShardIterable(..., shuffle=True, seed=...)")
            if drop_last:
                raise ValueError(_NO_DROP_LAST)
            dataset = dataset.batched(batch_size)
        if pin_memory and not torch.cuda.is_available():  # as a DataLoader does
            warnings.warn("pin_memory=True, but no accelerator is found: memory is not pinned", stacklevel=2)
            pin_memory = False
        self.dataset, self.batch_size, self.threads = dataset, batch_size, threads
        self.shuffle, self.drop_last, self.pin_memory = shuffle is not False, drop_last, pin_memory
        self.generator = torch.Generator()
        self.generator.manual_seed(seed if seed is not None else int(torch.empty((), dtype=torch.int64).random_()))

    def _allowed(self, dataset) -> None:
        if dataset.augment is not None or dataset.transform is not None:
            raise ValueError("threads= reads without recipe= or transform=: use processes= or worker processes for "
                             "those")

    def __len__(self) -> int:
        if isinstance(self.dataset, ShardIterable):
            return self.dataset.batches(self.batch_size, self.threads)
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def _batches(self) -> list[list[int]]:
        n = len(self.dataset)
        order = torch.randperm(n, generator=self.generator).tolist() if self.shuffle else list(range(n))
        return [order[i:i + self.batch_size] for i in range(0, len(self) * self.batch_size, self.batch_size)]

    def _sources(self) -> list[Iterator]:
        """Each thread's batches, in its order."""
        if isinstance(self.dataset, ShardIterable):
            return [self.dataset._stream(k, self.threads) for k in range(self.threads)]
        batches = self._batches()
        return [map(self.dataset._collated, batches[k::self.threads]) for k in range(self.threads)]

    def __iter__(self):
        sources, stop = self._sources(), threading.Event()
        queues = [queue.Queue(2) for _ in sources]
        threads = [threading.Thread(target=_produce, args=(source, made, stop), name=f"augpipe-feed-{k}", daemon=True)
                   for k, (source, made) in enumerate(zip(sources, queues))]
        for thread in threads:
            thread.start()
        feeds = _FEEDS  # still this dict when the interpreter's end has emptied the module
        feeds[id(stop)] = (stop, threads)
        try:
            turns = deque(queues)  # in turn, each till its thread has no more
            while turns:
                made = turns.popleft()
                batch, error = made.get()
                if error is not None:
                    raise error
                if batch is not _DONE:
                    turns.append(made)
                    yield _each_tensor(batch, torch.Tensor.pin_memory) if self.pin_memory else batch
        finally:
            stop.set()
            # gone from feeds: the interpreter's end stopped and joined them (`_stop_feeds`), and
            # this generator is closed after it has emptied the module
            if feeds.pop(id(stop), None) is not None:
                for thread in threads:
                    thread.join()
                    _ended(thread)


def _ended(thread: threading.Thread, timeout: float = 2.0) -> None:
    """Waits till a joined thread's OS thread has gone too (on Linux it leaves /proc/self/task).
    `join` returns once Python is done with a thread, before C libraries' thread-exit handlers run
    (OpenCV releases a thread's data under a lock of its own): a DataLoader that forked its workers
    in that moment gave them the lock held, and a worker hung in its first OpenCV call."""
    if thread.native_id is None or not os.path.isdir("/proc/self/task"):
        return
    task, deadline = f"/proc/self/task/{thread.native_id}", time.monotonic() + timeout
    while os.path.exists(task) and time.monotonic() < deadline:
        time.sleep(0.0002)


_DONE = object()
_FEEDS: dict[int, tuple[threading.Event, list[threading.Thread]]] = {}  # the feeds whose threads run


@atexit.register
def _stop_feeds() -> None:
    """At exit, a feed still held (an iterator kept past its last step) has its threads stopped
    and waited for: a thread still in OpenCV or torch as the interpreter ends aborts the process."""
    for stop, _ in list(_FEEDS.values()):
        stop.set()
    for _, threads in list(_FEEDS.values()):
        for thread in threads:
            thread.join(timeout=10)
    _FEEDS.clear()


def _produce(source: Iterator, made: queue.Queue, stop: threading.Event) -> None:
    """A `ThreadLoader` thread: its batches into `made`, then `_DONE` or the error, till `stop`."""
    try:
        for batch in source:
            if not _put(made, (batch, None), stop):
                return
        _put(made, (_DONE, None), stop)
    except BaseException as error:  # noqa: BLE001 - raised again in the loop that reads
        _put(made, (None, error), stop)


def _put(made: queue.Queue, item: tuple, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            made.put(item, timeout=0.1)
            return True
        except queue.Full:
            pass
    return False


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
    once, and decoding happens in the DataLoader's workers. A DataLoader asks for a batch at once
    (`__getitems__`): its images are decoded into one tensor, in shared memory in a worker, which
    `collate` passes on as it is (`loader` makes such a DataLoader).

    `decode_size` (an int, or (height, width)) decodes each image at the largest JPEG DCT scale,
    1/2, 1/4 or 1/8, that still covers it, `resize` then resizes to exactly that size (either
    for a dataset whose targets do not move with the pixels: classification). `decode=False`
    gives the stored bytes as a 1-D uint8 tensor in place of the image, for `decode_images` (on
    the GPU) in the main process.

    `channels_last=True` gives the images in torch's channels_last memory format: C×H×W (a
    batch N×C×H×W) over H×W×C memory, as FFCV can. A batch's JPEGs are then decoded straight into
    it, with no split into planes. The values are the same, the strides differ: `.contiguous()`
    gives the usual layout (`.view` needs it); convolutional models take it as it is, and often
    run faster so (`model.to(memory_format=torch.channels_last)`). A `transform`'s output is its own.
    """

    _sends = False  # in a `processes=` feed's process: its batches are pickled as soon as made

    def __init__(self, path: str | os.PathLike, split: str = "train", transform: Callable | None = None,
                 return_row: bool = False, cache_bytes: int = 256 * 2**20, box_format: str = "xyxy",
                 recipe=None, seed: int = 0, epoch_seed: bool = True, convention: str = "augpipe",
                 decode_size=None, resize=None, decode: bool = True, channels_last: bool = False):
        self.path, self.split, self.transform, self.return_row = str(path), split, transform, return_row
        check_layout(box_format, convention)
        self.ds, self.fs, self.files, self.kind, self.classes = _locate(path, split)
        self.box_format, self.seed, self.convention = box_format, seed, convention
        self.sizing, self.decode, self.channels_last = _Sizing(self.kind, decode_size, resize), decode, channels_last
        self.augment = _recipe_transform(recipe, seed, self.kind, epoch_seed, donors=self.ds)
        _check_undecoded(self)
        self._epoch = _Epoch()
        self._groups: list[tuple[int, int]] = []  # (file index, row group) for each row group
        self._starts: list[int] = []  # first row of each row group
        self._in_file: list[int] = []  # first row of each row group in its file
        total = 0
        held = {}  # each shard's columns
        for f, (shard, name) in enumerate(zip(self.ds.shards(split), self.files)):
            meta = footer(self.ds, shard["name"], self.fs, name)
            held[shard["name"]] = meta.schema.to_arrow_schema().names
            for g in range(meta.num_row_groups):
                self._groups.append((f, g))
                self._starts.append(total)
                self._in_file.append(total - self._starts[len(self._starts) - 1 - g])
                total += meta.row_group(g).num_rows
        self._len = total
        if return_row:
            self._columns = self.ds.schema(split).names
        else:  # what the target and the recipe's seed need, not the lineage
            self._columns = ["image", *self.kind.reader_columns()]
            if self.augment is not None:
                self._columns += ["source", "copy"]
            self._columns = list(dict.fromkeys(self._columns + self.sizing.columns()))
            for shard, names in held.items():
                self.ds.check_columns(shard, names, self._columns)
        self._cache_bytes = cache_bytes
        self._reset()

    def _reset(self) -> None:
        self._cache = _ByteCache(self._cache_bytes)  # its lock guards the file handles too
        self._handles: dict = {}
        self._pid = _pid()

    def __getstate__(self) -> dict:
        """Pickled without its open files (a reader that has read a row goes to spawned workers
        too); the copy opens its own."""
        return {**self.__dict__, "_handles": {}}

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int):
        return _item(self, *self._locate(index))

    def __getitems__(self, indices: list[int]) -> list:
        """A batch of rows, as a DataLoader (torch 2.2 and later) asks for them: see `_items`."""
        return _items(self, self._picks(indices))

    def _collated(self, indices: list[int]):
        """`collate(self.__getitems__(indices))`, as a `ThreadLoader` makes it."""
        return _batch(self, self._picks(indices))

    def _picks(self, indices: list[int]) -> list[tuple[_Group, int]]:
        """(row group, row) of each index, each row group looked up once."""
        groups, out = {}, []
        for index in indices:
            if not -self._len <= index < self._len:
                raise IndexError(index)
            index %= self._len
            g = bisect.bisect_right(self._starts, index) - 1
            if g not in groups:
                groups[g] = self._row_group(g)
            out.append((groups[g], index - self._starts[g]))
        return out

    def _locate(self, index: int) -> tuple[_Group, int]:
        if not -self._len <= index < self._len:
            raise IndexError(index)
        index %= self._len
        g = bisect.bisect_right(self._starts, index) - 1
        return self._row_group(g), index - self._starts[g]

    def _row_group(self, g: int):
        if self._pid != _pid():  # file handles and caches do not cross a fork into workers
            self._reset()
        return self._cache.get_or_make(g, lambda: self._read_group(g))

    def _read_group(self, g: int) -> tuple[_Group, int]:
        """Row group g; a shard gone or damaged since the reader was made is one line naming it
        (a page that does not decode was pyarrow's OSError, "Couldn't deserialize thrift")."""
        from augpipe.dataset import _unreadable

        f, group = self._groups[g]
        try:
            if f not in self._handles:
                self._handles[f] = parquet_file(self.fs, self.fs.open_input_file(self.files[f]))
            read = read_group(self._handles[f], group, self._columns)
        except (OSError, pa.ArrowException) as exc:
            raise _unreadable(self.ds.location, _shard_name(self.files[f]), exc) from None
        table = _Group(read, (_shard_name(self.files[f]), self._in_file[g]))
        return table, table.nbytes

    def labels(self) -> list[int | None]:
        """Every row's label, in order, without decoding an image (classification)."""
        if "label" not in self.kind.reader_columns():
            raise ValueError(f"a {self.kind.name} dataset's rows have no label")
        return [v for batch in self.ds.iter_batches(self.split, ["label"]) for v in batch.column(0).to_pylist()]


# ---------------------------------------------------------------- streaming

Piece = tuple[int, int, int]  # (shard index, first row, end row): a contiguous run of one shard's rows


def _check_batches(batch_size, workers) -> None:
    check_count("batch_size", batch_size, 1, " of rows")
    check_count("workers", workers, 0, "", " (a DataLoader's num_workers)")


def check_seed(seed) -> None:
    """A seed torch's generators take: a whole number of 64 bits (or None)."""
    if seed is not None and not (_whole(seed) and -2**63 <= seed < 2**64):
        raise ValueError(f"seed {seed!r}: a whole number of 64 bits")


def check_count(name: str, value, least: int, of: str = "", why: str = "") -> None:
    """`value` a whole number from `least` (0 or 1) up, under 2**63 (a torch int64), or one line."""
    if not (_whole(value) and least <= value < 2**63):
        raise ValueError(f"{name} {value!r}: a whole number{of}, {'at least 1' if least else '0 or more'}{why}")


def _whole(n) -> bool:
    return isinstance(n, numbers.Real) and not isinstance(n, bool) and math.isfinite(n) and int(n) == n


def _shard_name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def row_counts(ds, split: str, fs: pafs.FileSystem, files: list[str]) -> list[int]:
    """Each shard's rows, from its Parquet footer; a shard missing or damaged is one line."""
    return [footer(ds, shard["name"], fs, path).num_rows for shard, path in zip(ds.shards(split), files)]


def footer(ds, name: str, fs: pafs.FileSystem, path: str):
    """A shard's Parquet metadata; a shard missing or damaged is one line naming it."""
    from augpipe.dataset import _unreadable

    try:
        with fs.open_input_file(path) as fh:
            return pq.ParquetFile(fh).metadata
    except FileNotFoundError:
        raise SourceError(f"{ds.location}: shard {name} is missing: augpipe inspect --verify lists the damage") from None
    except (OSError, pa.ArrowException) as exc:
        raise _unreadable(ds.location, name, exc) from None


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
    return pieces if info is None else _share(pieces, info.id, info.num_workers)


def _share(pieces: list[Piece], worker: int, workers: int) -> list[Piece]:
    """Worker `worker` of `workers`'s contiguous share of the rows."""
    total = _total(pieces)
    return _slice(pieces, total * worker // workers, total * (worker + 1) // workers)


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

    Items, `transform`, `box_format`, `convention`, `return_row`, `recipe`, `decode_size`, `resize`,
    `decode` and `channels_last` as `ShardDataset`'s; the recipe's draws are seeded by (`seed`, the row, the epoch)
    whatever the shuffle. With `batch_size` (or `batched(n)`) it yields collated batches, each
    decoded into one tensor in the worker: give the DataLoader batch_size=None, and for its `len()`
    `batched(n, workers=num_workers)` (each worker's share ends with a short batch; `loader` does this).

    Each process keeps the shards it read whole, up to `cache_bytes`, for the next epochs (their
    rows and converted targets; 0 reads every epoch again); from its second epoch on, while all it
    read has fitted, a shard it needs part of is read whole and kept too, and a shuffled stream
    reads ahead the split's shards it has not kept, one a batch, while each fits (`_read_ahead`).
    """

    _sends = False  # as ShardDataset's
    _workers = 1  # the streams its batches are counted over (`batched`)
    _row_bytes = 0.0  # the most bytes a row has taken in a row group read here (`_read`'s estimate of a shard)

    def __init__(self, path: str | os.PathLike, split: str = "train", transform: Callable | None = None,
                 shuffle: bool = False, buffer_size: int = 1000, seed: int = 0, return_row: bool = False,
                 rank: int | None = None, world_size: int | None = None, drop_last: bool = False,
                 box_format: str = "xyxy", recipe=None, epoch_seed: bool = True, convention: str = "augpipe",
                 decode_size=None, resize=None, decode: bool = True, batch_size: int | None = None,
                 cache_bytes: int = 256 * 2**20, channels_last: bool = False):
        self.path, self.split, self.transform, self.return_row = str(path), split, transform, return_row
        self._cache = _ByteCache(cache_bytes)
        check_layout(box_format, convention)
        check_count("buffer_size", buffer_size, 1, " of rows")  # 0 drew from an empty buffer, forever
        self.shuffle, self.buffer_size, self.seed, self.box_format = shuffle, int(buffer_size), seed, box_format
        self.convention, self.decode, self.channels_last = convention, decode, channels_last
        if batch_size is not None:
            _check_batches(batch_size, 1)
        self.batch_size = None if batch_size is None else int(batch_size)
        self._epoch = _Epoch()
        check_ranks(rank, world_size)
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.ds, self.fs, self.files, self.kind, self.classes = _locate(path, split)
        self.augment = _recipe_transform(recipe, seed, self.kind, epoch_seed, donors=self.ds)
        self.sizing = _Sizing(self.kind, decode_size, resize)
        _check_undecoded(self)
        self.rows = row_counts(self.ds, split, self.fs, self.files)
        if return_row:
            self._columns = None
        else:
            extra = ["source", "copy"] if self.augment is not None else []
            self._columns = list(dict.fromkeys(["image", *self.kind.reader_columns(), *extra, *self.sizing.columns()]))

    def batched(self, batch_size: int, workers: int = 1) -> ShardIterable:
        """This stream yielding collated batches of `batch_size` rows (give the DataLoader
        batch_size=None): a batch is decoded into one tensor in the worker and crosses to the main
        process as it is. It shares this one's epoch (`set_epoch`). `workers`: the DataLoader's
        (`loader` gives it), for `len`: each worker's share ends with a short batch of its own."""
        _check_batches(batch_size, workers)
        out = copy.copy(self)
        out.batch_size, out._workers = int(batch_size), max(int(workers), 1)
        return out

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
        """This rank's rows an epoch, or its batches when the stream yields batches (as many as
        `batched`'s `workers` yield: a learning-rate schedule sized by it meets every step)."""
        if self.batch_size is None:
            return _total(self._my_pieces())
        return self.batches(self.batch_size, self._workers)

    def batches(self, batch_size: int, workers: int = 1) -> int:
        """This rank's batches of `batch_size` rows an epoch, read by `workers` streams (0: one,
        a DataLoader's own process)."""
        _check_batches(batch_size, workers)
        batch_size, workers = int(batch_size), max(int(workers), 1)
        pieces = self._my_pieces()
        return sum(-(-_total(_share(pieces, k, workers)) // batch_size) for k in range(workers))

    def _read(self, pieces: list[Piece], whole: bool = False) -> Iterator[tuple[_Group, int]]:
        """The pieces' rows as (row group, index in it), from the shard kept whole when an earlier
        epoch read it, else read (and kept, when it fits). `whole`: a piece of a shard is read as
        the whole shard, and kept (a share's first and last shards change hands each epoch: a
        process that reads several epochs, while all it read has fitted the cache)."""
        for shard, first, stop in pieces:
            groups = self._cache.get_or_make(shard)
            piece = (first, stop) != (0, self.rows[shard])
            # a piece read whole where the shard should fit, as far as the rows read so far say
            if groups is None and (not piece or whole and self._cache.fits(self._row_bytes * self.rows[shard])):
                groups = self._read_piece(shard, 0, self.rows[shard], keep=True)
            if groups is None:
                groups, first, stop = self._read_piece(shard, first, stop, keep=False), 0, stop - first
            yield from _rows_between(groups, first, stop)

    def _read_piece(self, shard: int, first: int, stop: int, keep: bool) -> Iterator[_Group]:
        kept, size, read = [], 0, 0
        name = self.ds.shards(self.split)[shard]["name"]
        self._cache.reading.add(shard)  # the pass's batches go on meanwhile: not to be read ahead too
        try:
            for batch in self.ds.iter_batches(self.split, self._columns, pieces=[(shard, first, stop)]):
                group = _Group(pa.Table.from_batches([batch]), (name, first + read))
                read += group.num_rows
                self._row_bytes = max(self._row_bytes, group.nbytes / max(group.num_rows, 1))
                if keep and size + group.nbytes <= self._cache.limit:
                    kept.append(group)
                    size += group.nbytes
                elif keep:
                    keep, self._cache.full = False, True
                yield group
            if read < stop - first:  # a shard replaced since the stream counted its rows: not a short epoch
                raise SourceError(f"{self.ds.location}: shard {name} has {first + read} rows where it had "
                                  f"{self.rows[shard]} when the stream was opened: open it again, or augpipe "
                                  "inspect --verify lists the damage")
            if keep:
                self._cache.put(shard, kept, size)
        finally:
            self._cache.reading.discard(shard)

    def __iter__(self):
        info = get_worker_info()
        return self._stream(*((info.id, info.num_workers) if info else (0, 1)))

    def _stream(self, worker: int, workers: int) -> Iterator:
        """What DataLoader worker `worker` of `workers` yields (a `ThreadLoader`'s thread too)."""
        again = self._cache.again(self.epoch)
        rows = self._read(_share(self._my_pieces(), worker, workers), again)
        if self.shuffle:
            rank = self._rank_and_world()[0]
            rows = _buffer_shuffle(rows, self.buffer_size, random.Random(f"{self.seed}/{self.epoch}/{rank}/{worker}"))
        # a share moves each epoch when shuffled: from a second pass on, one shard not kept yet is read
        # ahead a step (`_read_ahead`), so later epochs meet none
        ahead = self._read_ahead() if again and self.shuffle else _NOTHING_AHEAD()
        try:
            if self.batch_size is None:
                for k, (group, i) in enumerate(rows):
                    if k % 16 == 0:
                        next(ahead, None)
                    yield _item(self, group, i)
            else:
                for picks in _chunks(rows, self.batch_size):
                    yield _batch(self, picks)
                    next(ahead, None)
        finally:
            ahead.close()

    def _read_ahead(self) -> Iterator[None]:
        """Reads and keeps, one a step, the split's shards this process has not kept, while each
        fits the room left (none is dropped for one), pass after pass till done; one thread at a
        time. A shard that cannot be read is left to the pass whose rows it holds (it fails naming it)."""
        cache = self._cache
        with cache.lock:
            if cache.ahead is not None:
                return
            cache.ahead = "busy"
        try:
            for shard in self._not_kept():
                if not self._keep_whole(shard):
                    break
                yield
            cache.ahead = "done"
        finally:
            if cache.ahead == "busy":
                cache.ahead = None  # a pass ended first: the next goes on

    def _not_kept(self) -> Iterator[int]:
        for shard, rows in enumerate(self.rows):
            if rows and shard not in self._cache.reading and self._cache.get_or_make(shard) is None:
                yield shard

    def _keep_whole(self, shard: int) -> bool:
        """Reads a shard whole and keeps it, if it fits the room left: whether it did."""
        rows = self.rows[shard]
        made = self.ds.shards(self.split)[shard].get("bytes", 0)
        if self._cache.full or not self._cache.fits(max(self._row_bytes * rows, made)):
            return False
        try:
            groups = list(self._read_piece(shard, 0, rows, keep=False))
        except (SourceError, OSError, pa.ArrowException):
            return False
        size = sum(group.nbytes for group in groups)
        if not self._cache.fits(size):
            return False
        if self.decode:
            for group in groups:
                if group.num_rows:
                    group.frame(0)  # the headers parsed now too, not in a later epoch's batches
        self._cache.put(shard, groups, size)
        return True


def _NOTHING_AHEAD() -> Iterator[None]:
    yield from ()


def _rows_between(groups: Iterable[_Group], first: int, stop: int) -> Iterator[tuple[_Group, int]]:
    """Rows first..stop of the groups laid end to end, as (group, index in it); every group is
    gone through (a shard read whole is kept at its end)."""
    position = 0
    for group in groups:
        lo, hi = max(first - position, 0), min(stop - position, group.num_rows)
        if lo < hi:
            yield from zip(itertools.repeat(group), range(lo, hi))
        position += group.num_rows


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    items = iter(items)
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def _buffer_shuffle(rows: Iterator[dict], size: int, rng: random.Random) -> Iterator[dict]:
    buffer: list = []
    draw = rng._randbelow  # what rng.randrange(size) returns, without its checks: a row's cost
    for row in rows:
        if len(buffer) < size:
            buffer.append(row)
            continue
        k = draw(size)
        yield buffer[k]
        buffer[k] = row
    rng.shuffle(buffer)
    yield from buffer
