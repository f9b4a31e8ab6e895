"""The splits in memory: images decoded once at size×size, each task's targets beside them, and
the checks every trainer makes before it trains (leakage, empty splits)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from augpipe.errors import DamagedRow, SkipInput, SourceError

MEAN, STD = 0.5, 0.25
COMMON = ["image", "source", "copy", "source_sha256"]


@dataclass
class Split:
    x: object  # uint8 tensor N×3×S×S
    y: object  # the task's targets: classification an int64 tensor N; the others a tensor or a dict (see take)
    sources: list[str]
    copies: list[int]
    contents: list[str] = field(default_factory=list)  # each row's source_sha256

    def __len__(self) -> int:
        return len(self.sources)


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "es" if word.endswith("s") else "s")


def take(y, index):
    """Rows `index` (an int64 tensor or a list) of a target: a tensor, a list, or a dict of them."""
    if isinstance(y, dict):
        return {k: take(v, index) for k, v in y.items()}
    if isinstance(y, list):
        return [y[int(i)] for i in index]
    return y[index]


def subset(split: Split, keep: list[int]) -> Split:
    import torch

    index = torch.tensor(keep, dtype=torch.int64)
    return Split(split.x[index], take(split.y, index), [split.sources[i] for i in keep],
                 [split.copies[i] for i in keep], [split.contents[i] for i in keep] if split.contents else [])


def decode_images(table, split: str, size: int, progress: bool = True, shards: list[dict] | None = None):
    """The table's images, decoded and resized to size×size: a uint8 tensor N×3×S×S. `shards`: the
    split's, in the table's order (`ds.shards(split)`): a row that does not decode is named by its
    shard and its row there, as the readers and `inspect --verify` name it."""
    import torch
    from tqdm import tqdm

    from augpipe.decode import resize, row_image

    images = table.column("image").combine_chunks().field("bytes").to_pylist()
    x = np.empty((len(images), size, size, 3), np.uint8)
    for i, data in enumerate(tqdm(images, desc=f"decode {split}", unit="img", disable=not progress, leave=False)):
        x[i] = read_row(split, i, shards, lambda: resize(row_image(data), size, size))
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()


def read_row(split: str, i: int, shards: list[dict] | None, read):
    """`read()` of row i of a split read whole; a row whose image or target does not read is named
    by its shard and its row there (`shards`: the split's, in the table's order), as the readers
    and `inspect --verify` name it."""
    try:
        return read()
    except (ValueError, SkipInput) as exc:
        raise damaged_row(split, i, shards, str(exc)) from None


def damaged_row(split: str, i: int, shards: list[dict] | None, why: str) -> DamagedRow:
    return DamagedRow(f"{_row_named(split, i, shards)}: {why} (augpipe inspect --verify lists the damage)")


def _row_named(split: str, i: int, shards: list[dict] | None) -> str:
    """Row i of a split read whole, named by its shard and its row there (else by the split)."""
    for shard in shards or ():
        if i < shard["rows"]:
            return f"{shard['name']} row {i}"
        i -= shard["rows"]
    return f"{split} row {i}"


def lineage(table) -> tuple[list[str], list[int], list[str]]:
    return (table.column("source").to_pylist(), table.column("copy").to_pylist(),
            table.column("source_sha256").to_pylist())


def check_dataset(train: Split | None, val: Split | None, classes: list[str], min_classes: int = 2) -> None:
    """Refuses what no trainer should train on: a missing or empty split, too few classes, and
    leakage (a validation source, or an identical copy of one, also in training)."""
    if train is None:
        raise SourceError("no training split (train-*.parquet)")
    if val is None:
        raise SourceError("no validation split: expand with --val-fraction above 0 from images without a split, "
                          "or give the source a validation split (a val/ folder or annotation file)")
    if len(classes) < min_classes:
        least = "two" if min_classes == 2 else str(min_classes)
        raise SourceError(f"{plural(len(classes), 'class')}: training needs at least {least}")
    for name, split in (("training", train), ("validation", val)):
        if len(split) == 0:
            raise SourceError(f"the {name} split has no rows: were all inputs skipped? (augpipe inspect lists why)")
    leaked = set(train.sources) & set(val.sources)
    if leaked:
        example = sorted(leaked)[0]
        raise SourceError(f"leakage: {plural(len(leaked), 'validation source')} also in training (e.g. {example})")
    same = set(train.contents) & set(val.contents)
    if same:
        example, content = next((s, c) for s, c in zip(val.sources, val.contents) if c in same)
        twin = next(s for s, c in zip(train.sources, train.contents) if c == content)
        raise SourceError(f"leakage: {plural(len(same), 'validation image')} with identical copies in training "
                          f"(e.g. {example} = {twin}): remove one of each pair from the source (augpipe inspect "
                          "SOURCE lists them all as exact_leak) and expand again")


def normalise(x):
    return (x.float() / 255 - MEAN) / STD
