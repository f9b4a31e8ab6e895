"""The names inside an output folder: a leaf module, so that anything may import it cheaply."""

from __future__ import annotations

import re

SPLITS = ("train", "validation", "test")
# Directory readers (pyarrow, pandas, DuckDB, Polars, Ray) skip names that start with '_' or '.':
# the folder reads as one table of its shards.
MANIFEST = "_augpipe.json"
LEGACY_MANIFEST = "augpipe.json"  # augpipe 0.2 and earlier
WORK_DIR = ".augpipe"  # records and temporary files of a run in progress
RUN_FILE = f"{WORK_DIR}/run.json"  # the run's identity and planned shards: a run that has not finished
LOCK = ".augpipe.lock"  # the run that owns the folder
SKIPPED = "_augpipe_skipped.jsonl"  # skipped inputs, once there are too many for the manifest

SHARD_NAME = re.compile(r"(train|validation|test)-(\d{5,})-of-(\d{5,})\.parquet")


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.parquet"


def is_shard_name(name: str, split: str | None = None) -> bool:
    """Exactly augpipe's shard names: `train-curated-of-alice.parquet` is not one of ours."""
    m = SHARD_NAME.fullmatch(name)
    return m is not None and (split is None or m.group(1) == split)


def shards_among(names) -> list[str]:
    """The names among these that are augpipe's shard names."""
    return [n for n in names if is_shard_name(n)]


def listed(names: list[str], shown: int = 2) -> str:
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


def record_name(shard: str) -> str:
    return f"{WORK_DIR}/done/{shard}.json"
