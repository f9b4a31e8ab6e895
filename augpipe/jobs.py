"""The pure tasks every engine runs: hashing sources, and writing one shard.

Each is a function of (task, job, progress) whose result depends only on the task's inputs,
the recipe and the seed: the local pool and Ray run the same functions and write the same bytes.
"""

from __future__ import annotations

import errno
import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from augpipe.errors import OutputError, SkipInput, StrictSkipError
from augpipe.layout import record_name
from augpipe.output import TMP_DIR, RunLock
from augpipe.plan import ShardJob
from augpipe.recipe import Recipe
from augpipe.row import row_spec
from augpipe.sample import augment_sample
from augpipe.shards import ShardWriter
from augpipe.store import open_store, read_source
from augpipe.targets import Target, kind_for


@dataclass(frozen=True)
class RunSpec:
    """What every task of one run shares."""

    source: str  # a path or URI
    out: str
    recipe: Recipe
    seed: int
    max_pixels: int
    strict: bool
    classes: tuple[str, ...]
    labelled: bool
    lock_token: str | None = None  # a shard is published only while the run still owns OUT
    kind: Target = field(default_factory=lambda: kind_for("classification"))  # the sources' target kind

    def row_spec(self):
        return row_spec(self.kind, self.classes, self.labelled)


_STORES: dict[str, object] = {}
_FULL = {getattr(errno, n) for n in ("ENOSPC", "EFBIG", "EDQUOT") if hasattr(errno, n)}


def store_for(location: str):
    """One store per location per process (an S3 client is worth keeping)."""
    if location not in _STORES:
        _STORES[location] = open_store(location)
    return _STORES[location]


# ---------------------------------------------------------------- hashing

@dataclass(frozen=True)
class HashJob:
    names: tuple[str, ...]
    cost: int  # bytes to read


def hash_sources(task: HashJob, job: RunSpec, progress: Callable[[int], None] | None = None) -> list[tuple]:
    """(name, sha256, width, height, None) for each source, or (name, None, 0, 0, reason) for
    one that cannot be used. The content decides the split; the sizes size the recipe's dry run."""
    from augpipe.decode import oriented_size

    store = store_for(job.source)
    out = []
    for name, data in prefetched(store, task.names):
        try:
            if isinstance(data, SkipInput):
                raise data
            width, height = oriented_size(data, job.max_pixels)
            out.append((name, hashlib.sha256(data).hexdigest(), width, height, None))
        except SkipInput as exc:
            out.append((name, None, 0, 0, exc.reason))
        if progress is not None:
            progress(1)
    return out


def hash_jobs(names: list[tuple[str, int]], per_task: int = 256) -> list[HashJob]:
    """(name, size) pairs in tasks of `per_task` files."""
    return [HashJob(tuple(n for n, _ in names[i:i + per_task]), sum(s for _, s in names[i:i + per_task]))
            for i in range(0, len(names), per_task)]


# ---------------------------------------------------------------- one shard

def write_shard(task: ShardJob, job: RunSpec, progress: Callable[[int], None] | None = None) -> dict:
    """Write one shard, publish it, then its record; returns the record (rows, checksum, counts,
    skipped inputs, copies that failed)."""
    started = time.perf_counter()
    source, out = store_for(job.source), store_for(job.out)
    kind = job.kind
    writer = ShardWriter(task.name, out.temp_dir(TMP_DIR), job.row_spec())
    by_class: Counter = Counter()
    conversions: Counter = Counter()
    copies = Counter()
    skipped, failed, discarded = [], [], []
    oriented: list[str] = []  # labelled sources with an EXIF orientation tag
    names = [n for src in task.sources for n in (src.relpath, *kind.extra_files(src))]
    reads = prefetched(source, names)
    try:
        for src in task.sources:
            try:
                data = [next(reads)[1] for _ in range(1 + len(kind.extra_files(src)))]
                for part in data:
                    if isinstance(part, SkipInput):
                        raise part
                result = augment_sample(data[0], src, job.recipe, job.seed, job.max_pixels, task.split, kind,
                                        data[1] if len(data) > 1 else None)
            except SkipInput as exc:
                if job.strict:
                    raise StrictSkipError(f"{src.relpath}: {exc.reason} (--strict stops at the first bad input)") from None
                skipped.append([src.relpath, exc.reason])
            else:
                if result.failures and job.strict:
                    copy, reason = result.failures[0]
                    raise StrictSkipError(f"{src.relpath} copy {copy}: {reason}")
                failed += [[src.relpath, copy, reason] for copy, reason in result.failures]
                for row in result.rows:
                    writer.write(row)
                    copies["originals" if row["copy"] == 0 else "augmented"] += 1
                by_class.update(kind.count(result.rows, job.classes, src))
                copies["sources"] += 1
                copies["dropped"] += result.dropped
                discarded += [[src.relpath, reason] for reason in result.discarded]
                if result.orientation not in (None, 1) and kind.spatial:
                    oriented.append(src.relpath)
                if result.conversion:
                    conversions[result.conversion] += 1
            if progress is not None:
                progress(len(src.copies))
        rows, digest, size = writer.finish()
        if job.lock_token is not None and not RunLock(out, job.lock_token).owned():
            raise OutputError(f"{out.display()}: another run took over this output; this run stops")
        writer.publish(out)
    except OSError as exc:
        writer.abort()
        if exc.errno in _FULL:  # name the shard: the error alone says neither where nor what to do
            raise OSError(exc.errno, exc.strerror, out.display(task.name)) from None
        raise
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
        "failed_copies": failed,
        "dropped_boxes": copies["dropped"],
        "dropped_objects": discarded,
        "exif_oriented": len(oriented),
        "exif_oriented_first": oriented[0] if oriented else None,
        "seconds": round(time.perf_counter() - started, 3),
    }
    # After the shard: a resume takes a shard as done only when its record agrees with it. The
    # record is not synced: one lost in a crash costs that shard's redo, no more.
    out.write_bytes(record_name(task.name), json.dumps(record, ensure_ascii=False).encode("utf-8"), sync=False)
    return record


# Object stores answer each read after a round trip: a worker keeps this many in flight while it
# works on the images already read. Local files are read when they are needed.
PREFETCH = 8


def prefetched(store, names: list[str]):
    """(name, bytes or the SkipInput saying why not) for each name, in order."""
    if store.local:
        for name in names:
            try:
                yield name, read_source(store, name)
            except SkipInput as exc:
                yield name, exc
        return
    from concurrent.futures import ThreadPoolExecutor

    def read(name: str):
        try:
            return read_source(store, name)
        except SkipInput as exc:
            return exc

    with ThreadPoolExecutor(PREFETCH) as pool:
        pending = [(n, pool.submit(read, n)) for n in names[:PREFETCH]]
        for i in range(len(names)):
            name, future = pending.pop(0)
            if i + PREFETCH < len(names):
                pending.append((names[i + PREFETCH], pool.submit(read, names[i + PREFETCH])))
            yield name, future.result()
