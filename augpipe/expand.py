"""`expand`: an image folder becomes augmented Parquet shards. Orchestration only: scan, plan,
run the shard tasks, write the manifest."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from augpipe import __version__
from augpipe.engine import default_workers
from augpipe.errors import OutputError, StrictSkipError
from augpipe.manifest import build_manifest, finished_records, prepare_output, source_fingerprint, write_manifest
from augpipe.plan import make_plan
from augpipe.recipe import Recipe, load_recipe
from augpipe.sources import scan
from augpipe.tasks import Job


@dataclass(frozen=True)
class ExpandOptions:
    copies: int | None = None  # None: the recipe's
    workers: int | None = None  # None: the machine's cores
    seed: int = 0
    val_fraction: float = 0.1
    balance: bool = False
    shard_size: int = 256 * 2**20
    max_pixels: int = 100_000_000
    strict: bool = False
    overwrite: bool = False
    progress: bool = True


def default_out(source: str | Path) -> Path:
    source = Path(source)
    return source.parent / f"{source.resolve().name}-expanded"


def expand(source: str | Path, recipe: str | Path | Recipe, out: str | Path | None = None,
           options: ExpandOptions = ExpandOptions()) -> dict:
    """Expand `source` with `recipe` into `out`; returns the manifest (also in OUT/augpipe.json)."""
    started = time.perf_counter()
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    workers = max(1, options.workers or default_workers())
    if workers > 1:
        from augpipe.engine import start_workers_early

        start_workers_early()
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    root = Path(source)
    out = Path(out) if out is not None else default_out(root)
    found = scan(root)
    _check_not_nested(root, out)
    if options.strict and found.skipped:
        path, reason = found.skipped[0]
        raise StrictSkipError(f"{path}: {reason} (--strict stops at the first bad input)")
    copies = recipe.copies if options.copies is None else options.copies
    if copies < 0:
        raise OutputError("--copies must be 0 or more")
    plan = make_plan(found, recipe, copies, options.val_fraction, options.balance, options.shard_size)
    settings = {
        "copies": copies, "val_fraction": options.val_fraction, "balance": options.balance,
        "shard_size": options.shard_size, "max_pixels": options.max_pixels,
    }
    identity = _identity(recipe, options.seed, root, found.files, settings)
    done = prepare_output(out, identity, options.overwrite)
    if done is not None:
        done["up_to_date"] = True
        done["out"] = str(out)
        return done
    setup_seconds = time.perf_counter() - started
    job = Job(str(root), str(out), recipe, options.seed, options.max_pixels, options.strict, plan.classes,
              found.labelled)
    records = finished_records(out, [s.name for s in plan.shards])
    todo = [s for s in plan.shards if s.name not in records]
    total_rows = sum(s.planned_rows for s in plan.shards)
    resumed_rows = total_rows - sum(s.planned_rows for s in todo)
    from augpipe.engine import run_local  # the pool and OpenCV load only when there is work

    processing = time.perf_counter()
    with _progress_bar(total_rows, resumed_rows, options.progress) as bar:
        for record in run_local(todo, job, workers, bar.update):
            records[record["name"]] = record
    process_seconds = time.perf_counter() - processing
    seconds = time.perf_counter() - started
    rows_written = sum(records[s.name]["rows"] for s in todo)
    manifest = build_manifest(
        identity=identity, recipe=recipe, root=root.resolve(), seed=options.seed, options=settings,
        classes=plan.classes, labelled=found.labelled, records=list(records.values()),
        scan_skipped=found.skipped,
        timing={
            "started": started_at,
            "seconds": round(seconds, 3),
            "setup_seconds": round(setup_seconds, 3),  # recipe, scan, plan, output checks
            "process_seconds": round(process_seconds, 3),  # the shard tasks, pool start included
            "workers": min(workers, max(len(todo), 1)),
            "shards_resumed": len(plan.shards) - len(todo),
            "images_per_second": round(rows_written / max(process_seconds, 1e-9), 1),
        },
    )
    write_manifest(out, manifest)
    manifest["out"] = str(out)
    return manifest


def _identity(recipe: Recipe, seed: int, root: Path, files, settings: dict) -> dict:
    """What decides whether an existing output is this run's (resume) or another's (refuse)."""
    return {
        "augpipe_version": __version__,
        "recipe": recipe.sha256,
        "seed": seed,
        "source": str(root.resolve()),
        "source_files": source_fingerprint(files),
        "options": settings,
    }


def _check_not_nested(root: Path, out: Path) -> None:
    r, o = root.resolve(), out.resolve()
    if o == r or r in o.parents:
        raise OutputError(f"the output folder {out} is inside the source folder {root}: choose another --out")


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm import tqdm

    tqdm.monitor_interval = 0  # no monitor thread: workers may fork from this process

    return tqdm(total=total, initial=initial, unit="img", desc="expand", disable=not enabled, smoothing=0.1,
                dynamic_ncols=True)
