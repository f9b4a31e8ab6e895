"""`expand`: an image folder becomes augmented Parquet shards. Orchestration only: scan, hash,
plan, run the shard tasks on an engine, write the manifest."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from augpipe import __version__
from augpipe.errors import OutputError, SourceError, StrictSkipError
from augpipe.targets import for_scan
from augpipe.options import ExpandOptions

# The same augmentation error on this many inputs, and on this share of those done, is the
# recipe's fault, not the images': the run stops with it.
SYSTEMATIC_MIN = 5
SYSTEMATIC_SHARE = 0.05


class AugmentationError(SourceError):
    """The recipe fails on many inputs the same way."""


def default_out(source: str | Path) -> str:
    """A sibling of the source folder, named after it (the folder itself when SOURCE is `.`)."""
    text = str(source)
    if "://" in text:
        return text.rstrip("/") + "-expanded"
    resolved = Path(text).resolve()
    return str(resolved.parent / f"{resolved.name}-expanded")


def expand(source: str | Path, recipe, out: str | Path | None = None, options: ExpandOptions = ExpandOptions()) -> dict:
    """Expand `source` with `recipe` into `out`; returns the manifest (also in OUT/_augpipe.json)."""
    from augpipe.engines import make_engine

    started = time.perf_counter()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    from augpipe.store import normalise_location

    source = normalise_location(source)
    out = normalise_location(out if out is not None else default_out(source))
    engine = make_engine(options.engine, options.workers)
    engine.start_early()
    with engine:
        manifest = _expand(source, recipe, out, options, engine, started, started_at)
    import warnings

    from augpipe.errors import ExpandWarning

    for warning in manifest.get("warnings") or ():
        warnings.warn(warning, ExpandWarning, stacklevel=2)
    return manifest


def _expand(source: str, recipe, out: str, options: ExpandOptions, engine, started: float, started_at: str) -> dict:
    from augpipe.recipe import Recipe, load_recipe
    from augpipe.formats import scan

    early = _hash_early(source, options, engine)
    try:
        recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)  # imports albumentations
        if early is not None:
            import augpipe.jobs  # noqa: F401 - the shard task's imports (pyarrow's writer...) while the hashes come
        found, hashed = _early_results(early, options) if early else \
            (scan(source, options.layout, options.format, options.voc_zero_based).within(options.max_pixels), None)
        return _expand_found(source, recipe, out, options, engine, started, started_at, found, hashed)
    finally:
        if early is not None:
            early.close()


def _hash_early(source: str, options: ExpandOptions, engine):
    """The scan and the content hashes in a process forked now, while this one loads the recipe
    (albumentations' imports, most of the set-up): where this process may fork (the command line's
    own, the local engine); None elsewhere, and the pool hashes after the scan."""
    from augpipe.engines.local import Forked, can_fork

    if options.split_by != "content" or engine.name != "local" or not can_fork():
        return None
    return Forked(_scan_and_hash, source, options, engine.workers)


def _scan_and_hash(send, source: str, options: ExpandOptions, workers: int) -> None:
    """`_hash_early`'s process: the scan, then `split_hashes`' results, hashed by as many
    processes or threads as the run has workers; both sent at the end."""
    from augpipe.formats import scan
    from augpipe.hashing import hash_in_processes, hash_in_threads, hash_jobs
    from augpipe.store import store_for

    found = scan(source, options.layout, options.format, options.voc_zero_based).within(options.max_pixels)
    names = _hashed_names(found)
    send("count", len(names))
    store = store_for(source)
    jobs = hash_jobs(names)
    # Reads that wait on nothing leave the digests, CPU alone: threads of one process would
    # contend for the GIL (bench.md), processes do not. Reads that wait overlap in threads.
    if store.in_memory([n for n, _ in names]):
        hashed = hash_in_processes(jobs, store, options.max_pixels, workers, send)
    else:
        hashed = hash_in_threads(jobs, store, options.max_pixels, workers, send)
    send("scan", found)
    send("hashed", hashed)


def _early_results(early, options: ExpandOptions) -> tuple:
    """The scan and `split_hashes`' results from `_hash_early`'s process (a bar while it hashes)."""
    total = early.receive("count")
    done = early.progress_so_far()  # hashed while the recipe loaded: a bar only for what is left
    with progress_bar(total, done, options.progress and done < total, "hash", "file") as bar:
        found = early.receive("scan", bar.update)
        hashed = early.receive("hashed")
    early.close()  # done: the pool forks without it
    return found, hashed


def _expand_found(source: str, recipe, out: str, options: ExpandOptions, engine, started: float, started_at: str,
                  found, hashed) -> dict:
    from augpipe.output import OutputFolder
    from augpipe.plan import make_plan
    from augpipe.dryrun import check_recipe
    from augpipe.recipe import check_for_kind
    from augpipe.store import open_store
    from augpipe.jobs import RunSpec

    check_not_nested(source, out)
    output = OutputFolder(open_store(out))
    output.check_usable()  # before the sources are read: a wrong --out fails at once
    _strict(options, found.skipped)
    copies = recipe.copies if options.copies is None else options.copies
    spec = RunSpec(source, out, recipe, options.seed, options.max_pixels, options.strict, tuple(found.classes),
              found.labelled, kind=for_scan(found))
    kind_warnings = check_for_kind(recipe, spec.kind)
    hashes, sizes = None, None
    if options.split_by == "content":
        hashes, sizes = split_hashes(engine, found, spec, options, hashed)
    warnings = [*found.warnings, *check_recipe(recipe, sizes, spec.kind).warnings, *kind_warnings,
                *_split_folder_leaks(found.files, hashes)]
    if options.balance and spec.kind.reads_to_balance:
        _read_held(engine, found, spec, options)
    plan = make_plan(found, recipe, copies, options.val_fraction, options.balance, options.shard_size, hashes,
                     options.repeat_threshold, seed=options.seed)
    warnings += _no_validation(found, plan, options.val_fraction)
    settings = _settings(copies, options, found)
    identity = _identity(recipe, options.seed, source, found.files, hashes, settings, found.annotations)
    try:
        done = output.prepare(identity, options.overwrite, [s.name for s in plan.shards],
                              {f.relpath for f in found.files})
        if done is not None:
            return {**done, "up_to_date": True, "out": out}
        setup_seconds = time.perf_counter() - started
        spec = dataclasses.replace(spec, lock_token=output.lock.token)
        records = output.finished([s.name for s in plan.shards])
        todo = [s for s in plan.shards if s.name not in records]
        processing = time.perf_counter()
        _write_shards(engine, plan, todo, spec, records, options)
        process_seconds = time.perf_counter() - processing
        rows_written = sum(records[s.name].rows for s in todo)
        all_records = list(records.values())
        if not sum(r.rows for r in all_records):
            output.remove_previous()
            raise _nothing_usable(found.skipped + [tuple(s) for r in all_records for s in r.skipped], source)
        warnings += _label_warnings(all_records, found.format) + _classes_not_validated(all_records, found) \
            + _mostly_skipped(found, all_records)
        seconds = time.perf_counter() - started
        manifest = _manifest(identity, recipe, source, options, settings, found, all_records, warnings, engine,
                             plan.balance, {
            "started": started_at,
            "seconds": round(seconds, 3),
            "setup_seconds": round(setup_seconds, 3),  # recipe, scan, hashing, plan, output checks
            "process_seconds": round(process_seconds, 3),  # the shard tasks, pool start included
            "workers": engine.describe()["workers"],
            "shards_resumed": len(plan.shards) - len(todo),
            "images_per_second": round(rows_written / max(process_seconds, 1e-9), 1),
        })
        output.finish(manifest)
    finally:
        output.release()
    return {**manifest.to_dict(), "out": out, **({"mended": output.mended} if output.mended else {})}


def _settings(copies: int, options: ExpandOptions, found) -> dict:
    """The options that decide the output, as the identity and the manifest record them."""
    settings = {"copies": copies, "val_fraction": options.val_fraction, "balance": options.balance,
                "shard_size": options.shard_size, "max_pixels": options.max_pixels, "layout": options.layout,
                "split_by": options.split_by, "format": found.format, "task": found.task}
    if found.format == "voc":  # the same files read in another convention are other boxes
        settings["voc_zero_based"] = options.voc_zero_based
    if options.repeat_threshold is not None:
        settings["repeat_threshold"] = options.repeat_threshold
    return settings


def _write_shards(engine, plan, todo: list, spec, records: dict, options: ExpandOptions) -> None:
    """The shards still to write, by the engine, their records into `records`; a failure that
    repeats over many inputs stops the run."""
    from augpipe.jobs import write_shard

    total_rows = sum(s.planned_rows for s in plan.shards)
    failures = _Failures()
    with progress_bar(total_rows, total_rows - sum(s.planned_rows for s in todo), options.progress, "expand",
                       "img") as bar:
        for record in engine.map(write_shard, todo, spec, bar.update):
            records[record.name] = record
            failures.add(record)


def _strict(options: ExpandOptions, skipped: list) -> None:
    if options.strict and skipped:
        path, reason = skipped[0]
        raise StrictSkipError(f"{path}: {reason} (--strict stops at the first bad input)")


def split_hashes(engine, found, spec, options: ExpandOptions, hashed: list | None = None) -> tuple[dict, list]:
    """Every source read once, in the workers (or `hashed`: `hash_sources`' results from
    `_hash_early`'s process): its sha256 decides its split (identical files always share one),
    its header gives its size for the recipe's dry run."""
    from augpipe.hashing import hash_jobs, hash_sources

    results = {name: rest for name, *rest in hashed or ()}
    if hashed is None:
        names = _hashed_names(found)
        with progress_bar(len(names), 0, options.progress, "hash", "file") as bar:
            for chunk in engine.map(hash_sources, hash_jobs(names), spec, bar.update):
                results.update({name: rest for name, *rest in chunk})
    hashes, sizes, bad = {}, [], []
    for f in found.files:
        sha, width, height, reason = results[f.relpath]
        mask = getattr(f.target, "path", None)
        if sha is None:
            bad.append((f.relpath, reason))
        elif mask is not None and results[mask][0] is None:
            bad.append((f.relpath, f"mask {mask}: {results[mask][3]}"))
        else:
            hashes[f.relpath] = sha
            sizes.append((width, height))
            if mask is not None:
                hashes[mask] = results[mask][0]
    if bad:
        bad.sort()
        _strict(options, bad)
        found.skipped = sorted(found.skipped + bad)
        skipped = {name for name, _ in bad}
        found.files = [f for f in found.files if f.relpath not in skipped]
        if not found.files:
            raise _nothing_usable(found.skipped, found.root)
    return hashes, sizes


def _hashed_names(found) -> list[tuple[str, int]]:
    """(name, size) of what `split_hashes` reads: every source, and the masks they name."""
    masks = sorted({f.target.path for f in found.files if getattr(f.target, "path", None)})
    return [(f.relpath, f.size) for f in found.files] + [(m, 0) for m in masks]


def _read_held(engine, found, spec, options: ExpandOptions) -> None:
    """What --balance must read of each source before the plan (segmentation: its mask's classes),
    read once in the workers; a source that cannot be read is a recorded skip."""
    from augpipe.jobs import HeldJob, read_held

    files = found.files
    jobs = [HeldJob(tuple(files[i:i + 256]), len(files[i:i + 256])) for i in range(0, len(files), 256)]
    read, bad = {}, []
    with progress_bar(len(files), 0, options.progress, "read masks", "file") as bar:
        for chunk in engine.map(read_held, jobs, spec, bar.update):
            for f, reason in chunk:
                read[f.relpath] = f
                if reason is not None:
                    bad.append((f.relpath, reason))
    _strict(options, sorted(bad))
    skipped = {name for name, _ in bad}
    found.skipped = sorted(found.skipped + bad)
    found.files = [read[f.relpath] for f in files if f.relpath not in skipped]
    if not found.files:
        raise _nothing_usable(found.skipped, found.root)


def _no_validation(found, plan, val_fraction: float) -> list[str]:
    """A warning when --val-fraction asked for a validation split and there is none: the source
    gives every image its split and none is validation (--val-fraction holds out only images
    without one), or it held out none of those it could (each image's share is its content's
    hash: a few images can all fall outside a small fraction)."""
    if val_fraction <= 0 or "validation" in plan.split_sources or not found.files:
        return []
    free = sum(f.split is None for f in found.files)
    if free:
        return [f"--val-fraction {val_fraction:g} held out none of the {free:,} images without a split (each "
                "image's share goes by its content's hash), so there is no validation split: raise --val-fraction "
                "or add a val/ folder"]
    return ["the source gives every image its split and none is validation, so there is no validation split "
            "(--val-fraction holds out only images without one): add a val/ folder or a validation annotation file"]


def _mostly_skipped(found, records: list) -> list[str]:
    """A warning when most inputs were skipped: a run that keeps a quarter of its sources exits 0,
    and its summary's list of reasons can read as a few bad files (a new user's classes.txt
    without the background skipped 30 of 40 masks)."""
    skipped = [*found.skipped, *(tuple(s) for r in records for s in r.skipped)]
    inputs = len(skipped) + sum(r.sources for r in records)
    if not inputs or len(skipped) * 2 <= inputs:
        return []
    path, reason = min(skipped)
    return [f"{len(skipped):,} of {inputs:,} inputs were skipped ({len(skipped) / inputs:.0%}), the first {path}: "
            f"{reason} (all in the manifest's skipped; --strict stops at the first)"]


def _classes_not_validated(records: list, found) -> list[str]:
    """A warning when validation holds no row of a class training holds, from the shards' own
    counts: the split is a hash of each image alone (adding images never moves one), not drawn
    class by class, so a class of a few images can miss it; its scores then say nothing of it."""
    held = {split: set() for split in ("train", "validation")}
    for r in records:
        if r.split in held:
            held[r.split].update(c for c, n in r.by_class.items() if n)
    if not held["validation"]:
        return []
    missing = [c for c in found.classes if c in held["train"] and c not in held["validation"]]
    if not missing:
        return []
    shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
    fix = ("a larger --val-fraction, or a val/ folder that holds each class" if any(f.split is None for f in found.files)
           else "a validation folder or file that holds each class")
    return [f"validation holds no image of {len(missing)} class{'' if len(missing) == 1 else 'es'} ({shown}): its "
            f"scores say nothing of {'it' if len(missing) == 1 else 'them'} ({fix})"]


def _split_folder_leaks(files, hashes: dict | None) -> list[str]:
    """Identical images that split folders put in two splits: augpipe keeps the folders' word, and
    says so (hashing decides the split only where no folder does)."""
    if not hashes:
        return []
    splits: dict[str, dict[str, str]] = {}
    for f in files:
        if f.split is not None:
            splits.setdefault(hashes[f.relpath], {}).setdefault(f.split, f.relpath)
    shared = [by_split for by_split in splits.values() if len(by_split) > 1]
    if not shared:
        return []
    example = " = ".join(shared[0].values())
    return [f"{len(shared)} image{'' if len(shared) == 1 else 's'} in more than one split folder (e.g. {example}): "
            "validation would score images training has seen"]


class _Failures:
    """Copies that failed, by reason: the same failure on many inputs stops the run."""

    def __init__(self):
        self.reasons: Counter = Counter()
        self.sources = 0

    def add(self, record) -> None:
        from augpipe.sample import DONOR_FAILED

        self.sources += record.sources + len(record.skipped)
        # a donor that cannot be used is a bad input, however many rows drew it
        self.reasons.update({reason for _, _, reason in record.failed_copies if not reason.startswith(DONOR_FAILED)})
        for reason, n in self.reasons.most_common(1):
            if n >= SYSTEMATIC_MIN and n > SYSTEMATIC_SHARE * self.sources:
                raise AugmentationError(f"the recipe fails on {n} of {self.sources} images so far: {reason} "
                                        "(a systematic failure, not a bad input: fix the recipe)")


# How each format's labels meet an EXIF orientation tag (README, "Inputs"): the reference tools
# read images upright and the labels on them; a semantic mask is a picture of the stored pixels.
_ORIENTED_LABELS = {
    "yolo": "their labels were read on the upright image, as ultralytics reads them",
    "coco": "their annotations were read on the upright image, as detectron2 and mmdetection read them",
    "voc": "their boxes were read on the upright image, as detectron2 and mmdetection read them",
    "masks": "their masks were turned with them (drawn on the pixels as stored)",
}


def _label_warnings(records: list, fmt: str) -> list[str]:
    """Once a run: labelled images with an EXIF orientation tag (a tool that ignores the tag sees
    their labels elsewhere), and objects left out for an empty mask."""
    out = []
    oriented = sum(r.exif_oriented for r in records)
    if oriented:
        first = min(r.exif_oriented_first for r in records if r.exif_oriented_first)
        how = _ORIENTED_LABELS.get(fmt, "their labels were read on the upright image")
        out.append(f"{oriented} labelled image{'' if oriented == 1 else 's'} carr{'ies' if oriented == 1 else 'y'} an "
                   f"EXIF orientation tag (e.g. {first}): {how}; the shards hold them upright, without the tag")
    dropped = [d for r in records for d in r.dropped_objects]
    if dropped:
        path, reason = min(tuple(d) for d in dropped)
        out.append(f"{len(dropped)} object{'' if len(dropped) == 1 else 's'} left out, their mask empty (e.g. {path}: "
                   f"{reason}); all listed under dropped_objects in the manifest")
    return out


def _nothing_usable(skipped: list, source: str) -> SourceError:
    reasons = Counter(reason for _, reason in skipped)
    shown = "; ".join(f"{reason} ({n})" for reason, n in reasons.most_common(3))
    return SourceError(f"every input in {source} was skipped, nothing to write: {shown}")


def _manifest(identity, recipe, source, options, settings, found, records, warnings, engine, balance, timing) -> dict:
    from augpipe.manifest import build_manifest

    failed = sorted((p, c, r) for rec in records for p, c, r in rec.failed_copies)
    return build_manifest(
        identity=identity, recipe=recipe, source=_shown(source), seed=options.seed, options=settings,
        classes=found.classes, labelled=found.labelled, records=records, scan_skipped=found.skipped,
        timing=timing, engine=engine.describe(), task=found.task,
        extra={"format": found.format, **for_scan(found).for_recipe(recipe).manifest_fields(),  # the flip applied
               **({"category_ids": found.category_ids} if found.category_ids is not None else {}),
               **({"category_supercategories": found.category_supercategories}
                  if found.category_supercategories is not None else {}),
               "dropped_boxes": sum(r.dropped_boxes for r in records),
               "dropped_by": dropped_by(records),
               "dropped_objects": [{"path": p, "reason": r} for p, r in
                                   sorted(tuple(d) for rec in records for d in rec.dropped_objects)],
               "exif_oriented": sum(r.exif_oriented for r in records),
               "warnings": warnings, "failed_copies": [{"path": p, "copy": c, "reason": r} for p, c, r in failed],
               "counted": for_scan(found).counted,
               **({"balance": _balance(balance, records)} if balance is not None else {})},
    )


def dropped_by(records) -> dict:
    """Objects the recipe dropped over every shard: reason -> class -> count."""
    out: dict = {}
    for record in records:
        for reason, by_class in record.dropped_by.items():
            mine = out.setdefault(reason, {})
            for name, n in by_class.items():
                mine[name] = mine.get(name, 0) + n
    return {reason: dict(sorted(by_class.items())) for reason, by_class in sorted(out.items())}


def _balance(balance: dict, records) -> dict:
    """The plan's record of --balance, and what the training rows written hold of each class."""
    after: Counter = Counter()
    for r in records:
        if r.split == "train":
            after.update(r.by_class)
    return {**balance, "objects_after": dict(sorted(after.items()))}


def _shown(location: str) -> str:
    return location if "://" in location else str(Path(location).resolve())


def _identity(recipe, seed: int, source: str, files, hashes: dict | None, settings: dict, annotations: str) -> dict:
    """What decides whether an existing output is this run's (resume) or another's (refuse).

    The sources by content when they were hashed (a file changed in place is noticed), else by
    path, size and modification time; and the annotation files read, by content."""
    h = hashlib.sha256(annotations.encode())
    for f in files:
        what = hashes[f.relpath] if hashes is not None else f"{f.size}\x00{f.mtime_ns}"
        mask = f.target if hasattr(f.target, "path") else None
        if mask is not None:
            what += f"\x00{hashes[mask.path] if hashes is not None else f'{mask.size}:{mask.mtime_ns}'}"
        h.update(f"{f.relpath}\x00{what}\n".encode("utf-8"))
    return {
        "augpipe_version": __version__,
        "recipe": recipe.sha256,
        "seed": seed,
        "source": _shown(source),
        "source_files": h.hexdigest(),
        "options": settings,
    }


def check_not_nested(source: str, out: str, what: str = "source") -> None:
    """An output inside what it is made from is refused (`what`: "source", "dataset"): the next
    read of that would take the output's files for its own."""
    (s_kind, s_place), (o_kind, o_place) = _place(source), _place(out)
    if s_kind != o_kind:
        return
    if s_kind == "local":
        if o_place == s_place or s_place in o_place.parents:
            raise OutputError(f"the output folder {out} is inside the {what} folder {source}: choose another --out")
    elif o_place == s_place or o_place.startswith(s_place + "/"):
        raise OutputError(f"the output {out} is inside the {what} {source}: choose another --out")


def _place(location: str) -> tuple:
    """Where a location is, whatever its spelling: a resolved local path (file:// included), or an
    object store's scheme and bucket/key without its query (`?region=...`)."""
    if location.startswith("file://"):
        location = location[len("file://"):]
    if "://" not in location:
        return "local", Path(location).resolve()
    scheme, _, rest = location.partition("://")
    return scheme.lower(), rest.split("?", 1)[0].rstrip("/")


def progress_bar(total: int, initial: int, enabled: bool, desc: str, unit: str):
    """The one progress bar of long work. A step's bar is wiped at its end on a terminal; written
    to a log (stderr not a terminal), every bar ends on its final count, a line of its own, where
    a wiped one would leave its first line behind."""
    import sys

    from tqdm import tqdm

    tqdm.monitor_interval = 0  # no monitor thread: workers may fork from this process
    terminal = sys.stderr is not None and sys.stderr.isatty()
    return tqdm(total=total, initial=initial, unit=unit, desc=desc, disable=not enabled, smoothing=0.1,
                dynamic_ncols=True, leave=desc == "expand" or not terminal)
