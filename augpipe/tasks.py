"""A shard task: a pure function of (its sources, the recipe, the seed) that writes one shard.

`write_shard` is what every engine runs: the local process pool here, Ray later.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from augpipe.errors import SkipInput, StrictSkipError
from augpipe.plan import ShardTask
from augpipe.recipe import Recipe
from augpipe.sample import augment_sample
from augpipe.shards import ShardWriter, schema

WORK_DIR = ".augpipe"  # hidden: readers of OUT never see it


@dataclass(frozen=True)
class Job:
    """What every shard task of one run shares."""

    source_root: str
    out_dir: str
    recipe: Recipe
    seed: int
    max_pixels: int
    strict: bool
    classes: tuple[str, ...]
    labelled: bool


def work_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / WORK_DIR


def record_path(out_dir: str | Path, shard_name: str) -> Path:
    return work_dir(out_dir) / "done" / f"{shard_name}.json"


def write_shard(task: ShardTask, job: Job, progress: Callable[[int], None] | None = None) -> dict:
    """Write one shard; returns its record (rows, checksum, counts, skipped inputs)."""
    started = time.perf_counter()
    out = Path(job.out_dir)
    writer = ShardWriter(out / task.name, work_dir(out) / "tmp", schema(job.classes, job.labelled))
    by_class: Counter = Counter()
    conversions: Counter = Counter()
    copies = Counter()
    skipped = []
    try:
        for src in task.sources:
            try:
                result = augment_sample(_read(f"{job.source_root}/{src.relpath}"), src, job.recipe, job.seed,
                                        job.max_pixels)
            except SkipInput as exc:
                if job.strict:
                    raise StrictSkipError(f"{src.relpath}: {exc.reason} (--strict stops at the first bad input)") from None
                skipped.append([src.relpath, exc.reason])
            except Exception as exc:  # a transform that fails on one odd image must not stop the run
                if job.strict:
                    raise StrictSkipError(f"{src.relpath}: {type(exc).__name__}: {exc}") from None
                skipped.append([src.relpath, f"augmentation failed: {type(exc).__name__}: {exc}"])
            else:
                for row in result.rows:
                    writer.write(row)
                    copies["originals" if row["copy"] == 0 else "augmented"] += 1
                name = job.classes[src.label] if src.label is not None else "(unlabelled)"
                by_class[name] += len(result.rows)
                copies["sources"] += 1
                if result.conversion:
                    conversions[result.conversion] += 1
            if progress is not None:
                progress(len(src.copies))
        rows, digest, size = writer.finish()
    except BaseException:
        writer.abort()
        raise
    record = {
        "name": task.name,
        "split": task.split,
        "rows": rows,
        "bytes": size,
        "sha256": digest,
        "sources": copies["sources"],
        "originals": copies["originals"],
        "augmented": copies["augmented"],
        "by_class": dict(sorted(by_class.items())),
        "conversions": dict(sorted(conversions.items())),
        "skipped": skipped,
        "seconds": round(time.perf_counter() - started, 3),
    }
    # The record lands before the shard, so a finished shard always has one. Only the shard is
    # synced to disk: a record lost or torn by a crash makes a resume redo that shard, no more.
    write_json_atomic(record_path(out, task.name), record, sync=False)
    writer.publish()
    return record


def _read(path: str) -> bytes:
    # os.open/os.read: a third of what open().read() costs, which counts for small images
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            parts = [os.read(fd, os.fstat(fd).st_size + 1)]
            while parts[-1]:  # a file that grew since fstat, or a short read
                parts.append(os.read(fd, 1 << 20))
        finally:
            os.close(fd)
    except IsADirectoryError:
        raise SkipInput("is a folder, not a file") from None
    except OSError as exc:
        raise SkipInput(f"cannot read: {exc.strerror or exc}") from None
    return parts[0] if len(parts) == 2 else b"".join(parts)


def write_json_atomic(path: Path, data: dict, sync: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
        fh.flush()
        if sync:
            os.fsync(fh.fileno())
    os.replace(tmp, path)
