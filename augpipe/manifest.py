"""`OUT/augpipe.json`: how an output was made and what it holds. Written last, atomically."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

from augpipe import __version__
from augpipe.errors import OutputError
from augpipe.plan import SPLITS
from augpipe.shards import shard_pattern
from augpipe.tasks import WORK_DIR, work_dir, write_json_atomic

MANIFEST = "augpipe.json"
RUN_FILE = "run.json"


def source_fingerprint(files) -> str:
    """The source listing: relative paths and sizes (contents are not re-read)."""
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relpath}\x00{f.size}\n".encode("utf-8"))
    return h.hexdigest()


def read_manifest(out: str | Path) -> dict | None:
    path = Path(out) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def prepare_output(out: Path, identity: dict, overwrite: bool) -> dict | None:
    """Make OUT ready for this run. Returns a finished manifest of this very run, if there is one.

    Refuses another run's output unless overwrite, and never touches a folder that holds
    anything but augpipe output.
    """
    if out.exists() and not out.is_dir():
        raise OutputError(f"output path exists and is not a folder: {out}")
    previous = _previous_identity(out)
    if out.is_dir() and previous is None and any(out.iterdir()):
        raise OutputError(f"output folder {out} is not empty and holds no augpipe output: choose another --out")
    if previous is not None and previous != identity:
        if not overwrite:
            what = ", ".join(k for k in identity if identity.get(k) != previous.get(k)) or "settings"
            raise OutputError(
                f"{out} holds output made with another {what}: use --overwrite to replace it, or another --out"
            )
        _remove_output(out)
    done = read_manifest(out)
    if done is not None and done.get("identity") == identity and all((out / s["name"]).is_file() for s in done["shards"]):
        return done
    try:
        (work_dir(out) / "tmp").mkdir(parents=True, exist_ok=True)
        (work_dir(out) / "done").mkdir(exist_ok=True)
        for stale in (work_dir(out) / "tmp").iterdir():
            stale.unlink()
        (out / MANIFEST).unlink(missing_ok=True)
        write_json_atomic(work_dir(out) / RUN_FILE, identity)
    except OSError as exc:
        raise OutputError(f"cannot write to {out}: {exc.strerror or exc}") from None
    return None


def _previous_identity(out: Path) -> dict | None:
    for path in (work_dir(out) / RUN_FILE, out / MANIFEST):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        return data.get("identity", data) if path.name == MANIFEST else data
    return None


def _remove_output(out: Path) -> None:
    for split in SPLITS:
        for shard in out.glob(shard_pattern(split)):
            shard.unlink()
    (out / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(out / WORK_DIR, ignore_errors=True)


def finished_records(out: Path, shard_names: list[str]) -> dict[str, dict]:
    """Records of the shards an interrupted run already finished: the file and its record both
    there, and the file the size its record says."""
    records = {}
    for name in shard_names:
        path = work_dir(out) / "done" / f"{name}.json"
        if (out / name).is_file() and path.is_file():
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                continue
            if record.get("bytes") == (out / name).stat().st_size:
                records[name] = record
    return records


def build_manifest(*, identity: dict, recipe, root: Path, seed: int, options: dict, classes, labelled: bool,
                   records: list[dict], scan_skipped: list, timing: dict) -> dict:
    records = sorted(records, key=lambda r: (SPLITS.index(r["split"]), r["name"]))
    counts = {}
    for split in SPLITS:
        mine = [r for r in records if r["split"] == split]
        if not mine:
            continue
        by_class: Counter = Counter()
        for r in mine:
            by_class.update(r["by_class"])
        counts[split] = {
            "sources": sum(r["sources"] for r in mine),
            "rows": sum(r["rows"] for r in mine),
            "originals": sum(r["originals"] for r in mine),
            "augmented": sum(r["augmented"] for r in mine),
            "by_class": dict(sorted(by_class.items())),
        }
    conversions: Counter = Counter()
    for r in records:
        conversions.update(r["conversions"])
    skipped = sorted([*scan_skipped, *(tuple(s) for r in records for s in r["skipped"])])
    return {
        "augpipe_version": __version__,
        "identity": identity,
        "source": str(root),
        "seed": seed,
        "options": options,
        "recipe": {"name": recipe.name, "path": recipe.path, "sha256": recipe.sha256, "text": recipe.text},
        "classes": list(classes),
        "labelled": labelled,
        "counts": counts,
        "shards": [{k: r[k] for k in ("name", "split", "rows", "bytes", "sha256")} for r in records],
        "conversions": dict(sorted(conversions.items())),
        "skipped": [{"path": p, "reason": why} for p, why in skipped],
        "timing": timing,
    }


def write_manifest(out: Path, manifest: dict) -> None:
    write_json_atomic(out / MANIFEST, manifest)
    shutil.rmtree(work_dir(out), ignore_errors=True)
