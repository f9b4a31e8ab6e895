"""The pure jobs every engine runs: writing one shard (and hashing sources: `augpipe.hashing`).

Each is a function of (job, spec, progress) whose result depends only on the job's inputs,
the recipe and the seed: the local pool and Ray run the same functions and write the same bytes.
"""

from __future__ import annotations

import errno
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path

from augpipe.errors import OutputError, SkipInput, StrictSkipError
from augpipe.layout import record_name
from augpipe.manifest import ShardRecord
from augpipe.output import TMP_DIR, RunLock
from augpipe.plan import ShardJob
from augpipe.recipe import Recipe
from augpipe.row import row_spec
from augpipe.sample import DonorReader, augment_sample, make_streams, sample_seed
from augpipe.shards import ShardWriter
from augpipe.store import read_or_skip, read_source, store_for
from augpipe.targets import Target, kind_for


@dataclass(frozen=True)
class RunSpec:
    """What every job of one run shares."""

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


_FULL = {getattr(errno, n) for n in ("ENOSPC", "EFBIG", "EDQUOT") if hasattr(errno, n)}


@dataclass(frozen=True)
class HeldJob:
    """Sources whose extra file `--balance` reads first (segmentation: what classes a mask holds)."""

    files: tuple
    cost: int


def read_held(batch: HeldJob, spec: RunSpec, progress: Callable[[int], None] | None = None) -> list[tuple]:
    """(source as `kind.read_held` gives it, None), or (source, reason) for one that cannot be read."""
    store, kind, out = store_for(spec.source), spec.kind, []
    for f in batch.files:
        try:
            out.append((kind.read_held(f, read_source(store, kind.extra_files(f)[0])), None))
        except SkipInput as exc:
            out.append((f, exc.reason))
        if progress is not None:
            progress(1)
    return out


# ---------------------------------------------------------------- one shard

def write_shard(shard: ShardJob, spec: RunSpec, progress: Callable[[int], None] | None = None) -> ShardRecord:
    """Write one shard, publish it, then its record; returns the record (rows, checksum, counts,
    skipped inputs, copies that failed)."""
    started = time.perf_counter()
    out = store_for(spec.out)
    kind = spec.kind
    writer = ShardWriter(shard.name, out.temp_dir(TMP_DIR), spec.row_spec())
    tally = _Tally()
    donors = DonorReader(partial(read_source, store_for(spec.source)), kind, spec.max_pixels)
    try:
        made = 0  # the sources before this one have their copies' streams made
        for i, (src, data) in enumerate(_read_sources(store_for(spec.source), shard.sources, kind)):
            if i == made:
                made = _make_streams(shard.sources, i, spec.seed)
            tally.add(src, _augmented(src, data, shard, spec, kind, donors), spec, kind, writer)
            if progress is not None:
                progress(len(src.copies))
        rows, digest, size = writer.finish()
        _publish(writer, out, spec)
    except OSError as exc:
        writer.abort()
        if exc.errno in _FULL:  # name the shard: the error alone says neither where nor what to do
            raise OSError(exc.errno, exc.strerror, _full_where(out, shard.name, writer.tmp)) from None
        raise
    except BaseException:
        writer.abort()
        raise
    finally:
        make_streams(())  # the streams of copies that were not made (a source skipped)
    record = tally.record(shard, rows, size, digest, round(time.perf_counter() - started, 3), spec.classes)
    # After the shard: a resume takes a shard as done only when its record agrees with it. The
    # record is not synced: one lost in a crash costs that shard's redo, no more.
    out.write_bytes(record_name(shard.name), record.to_json(), sync=False)
    return record


# the copies whose random streams are made together, at most (3.5-4 KB each)
STREAMS_AHEAD = 256


def _make_streams(sources, first: int, seed: int) -> int:
    """Makes the random streams of the copies of sources[first:end] (`make_streams`), as many
    sources as STREAMS_AHEAD copies allow, one at least; returns end. Of a source with more copies
    (`--balance` can give one 100,000), the first STREAMS_AHEAD: `seeded` makes the rest as asked."""
    end, copies = first, 0
    while end < len(sources) and (end == first or copies + len(sources[end].copies) <= STREAMS_AHEAD):
        copies += len(sources[end].copies)
        end += 1
    seeds = (sample_seed(seed, src.relpath, copy) for src in sources[first:end] for copy in src.copies if copy)
    make_streams(islice(seeds, STREAMS_AHEAD))
    return end


def _full_where(out, name: str, tmp: Path) -> str:
    """Where the space ran out: the shard, or, for an output that is not a local folder (a bucket),
    the local copy the shard is finished in before its upload."""
    shown = out.display(name)
    local = Path(shown).parent
    inside = local.is_dir() and tmp.resolve().is_relative_to(local.resolve())
    return shown if inside else f"{tmp} (the local copy of {shown})"


def _read_sources(store, sources, kind):
    """(source, [its bytes, its extra files' bytes], each a SkipInput where it cannot be read), read
    ahead as the store finds best."""
    names = [n for src in sources for n in (src.relpath, *kind.extra_files(src))]
    reads = store.read_many(names, partial(read_or_skip, store))
    for src in sources:
        yield src, [next(reads)[1] for _ in range(1 + len(kind.extra_files(src)))]


def _augmented(src, data: list, shard: ShardJob, spec: RunSpec, kind, donors: DonorReader):
    """The source's rows, or the SkipInput (returned) saying why it has none; --strict raises."""
    try:
        for part in data:
            if isinstance(part, SkipInput):
                raise part
        return augment_sample(data[0], src, spec.recipe, spec.seed, spec.max_pixels, shard.split, kind,
                              data[1] if len(data) > 1 else None, donors)
    except SkipInput as exc:
        if spec.strict:
            raise StrictSkipError(f"{src.relpath}: {exc.reason} (--strict stops at the first bad input)") from None
        return exc


def _publish(writer: ShardWriter, out, spec: RunSpec) -> None:
    if spec.lock_token is not None and not RunLock(out, spec.lock_token).owned():
        raise OutputError(f"{out.display()}: another run took over this output; this run stops")
    writer.publish(out)


class _Tally:
    """What a shard's record counts, source by source."""

    def __init__(self):
        self.by_class: Counter = Counter()
        self.holding: Counter = Counter()  # rows holding each class
        self.drops: Counter = Counter()  # (reason, class index)
        self.conversions: Counter = Counter()
        self.copies: Counter = Counter()
        self.skipped, self.failed, self.discarded = [], [], []
        self.oriented: list[str] = []  # labelled sources with an EXIF orientation tag

    def add(self, src, result, spec: RunSpec, kind, writer: ShardWriter) -> None:
        if isinstance(result, SkipInput):
            self.skipped.append([src.relpath, result.reason])
            return
        if result.failures and spec.strict:
            copy, reason = result.failures[0]
            raise StrictSkipError(f"{src.relpath} copy {copy}: {reason}")
        self.failed += [[src.relpath, copy, reason] for copy, reason in result.failures]
        for row in result.rows:
            writer.write(row)
            self.copies["originals" if row["copy"] == 0 else "augmented"] += 1
        self.by_class.update(kind.count(result.rows, spec.classes, src))
        if kind.counted == "objects":  # elsewhere by_class already counts the rows holding a class
            self.holding.update(c for row in result.rows for c in kind.row_classes(row, spec.classes))
        self.copies["sources"] += 1
        self.copies["dropped"] += result.dropped
        self.drops.update(result.drops)
        self.discarded += [[src.relpath, reason] for reason in result.discarded]
        if result.orientation not in (None, 1) and kind.spatial:
            self.oriented.append(src.relpath)
        if result.conversion:
            self.conversions[result.conversion] += 1

    def record(self, shard: ShardJob, rows: int, size: int, digest: str, seconds: float, classes) -> ShardRecord:
        dropped_by: dict = {}
        for (reason, c), n in sorted(self.drops.items()):
            name = classes[c] if 0 <= c < len(classes) else str(c)
            dropped_by.setdefault(reason, {})[name] = dropped_by.get(reason, {}).get(name, 0) + n
        return ShardRecord(
            name=shard.name, split=shard.split, rows=rows, bytes=size, sha256=digest,
            sources=self.copies["sources"], originals=self.copies["originals"], augmented=self.copies["augmented"],
            by_class=dict(sorted(self.by_class.items())), conversions=dict(sorted(self.conversions.items())),
            skipped=self.skipped, failed_copies=self.failed, dropped_boxes=self.copies["dropped"],
            dropped_objects=self.discarded, exif_oriented=len(self.oriented),
            exif_oriented_first=self.oriented[0] if self.oriented else None, seconds=seconds,
            dropped_by=dropped_by, rows_by_class=dict(sorted(self.holding.items())))


