"""`OUT/_augpipe.json`: how an output was made and what it holds. Written last, atomically.

A leaf module: reading a manifest loads neither OpenCV nor albumentations nor pydantic.
"""

from __future__ import annotations

import json
from collections import Counter

from augpipe import __version__
from augpipe.errors import SourceError
from augpipe.layout import LEGACY_MANIFEST, MANIFEST, SKIPPED, SPLITS

SKIPPED_INLINE = 1000  # more skipped inputs than this go to a sidecar file, one JSON line each


def read_manifest(store) -> dict | None:
    """The manifest's JSON, or None when there is none (or it is not JSON)."""
    for name in (MANIFEST, LEGACY_MANIFEST):
        try:
            return json.loads(store.read_text(name))
        except FileNotFoundError:
            continue
        except (OSError, ValueError, RecursionError):  # RecursionError: JSON nested beyond reason
            return None
    return None


def has_manifest(store) -> bool:
    return any(store.is_file(name) for name in (MANIFEST, LEGACY_MANIFEST))


_SHARD_KEYS = {"name": str, "split": str, "rows": int, "bytes": int, "sha256": str}


def load_manifest(store) -> dict:
    """A manifest that readers can rely on, or one line saying what is wrong with it."""
    m = read_manifest(store)
    where = store.display(MANIFEST)
    if m is None:
        raise SourceError(f"{store.display()} has no readable {MANIFEST}: not an augpipe dataset (augpipe expand makes one)")
    if not isinstance(m, dict):
        raise SourceError(f"{where}: not an augpipe manifest (a JSON object is expected)")
    for key, kind in (("shards", list), ("classes", list), ("counts", dict), ("recipe", dict)):
        if not isinstance(m.get(key), kind):
            raise SourceError(f"{where}: '{key}' is missing or not a {kind.__name__}: the manifest is damaged")
    for i, shard in enumerate(m["shards"]):
        if not isinstance(shard, dict) or any(not isinstance(shard.get(k), t) for k, t in _SHARD_KEYS.items()):
            raise SourceError(f"{where}: shard {i} lacks {', '.join(_SHARD_KEYS)}: the manifest is damaged")
        if shard["split"] not in SPLITS or "/" in shard["name"]:
            raise SourceError(f"{where}: shard {i} ({shard['name']!r}) is not an augpipe shard")
    m.setdefault("labelled", bool(m["classes"]))
    m.setdefault("skipped", [])
    m.setdefault("task", "classification")
    return m


def build_manifest(*, identity: dict, recipe, source: str, seed: int, options: dict, classes, labelled: bool,
                   records: list[dict], scan_skipped: list, timing: dict, engine: dict, task: str = "classification",
                   extra: dict | None = None) -> dict:
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
    skipped = sorted([*(tuple(s) for s in scan_skipped), *(tuple(s) for r in records for s in r["skipped"])])
    return {
        "augpipe_version": __version__,
        "identity": identity,
        "task": task,
        "source": source,
        "seed": seed,
        "options": options,
        "recipe": {"name": recipe.name, "path": recipe.path, "sha256": recipe.sha256, "text": recipe.text},
        "classes": list(classes),
        "labelled": labelled,
        "counts": counts,
        "shards": [{k: r[k] for k in ("name", "split", "rows", "bytes", "sha256")} for r in records],
        "conversions": dict(sorted(conversions.items())),
        "skipped": [{"path": p, "reason": why} for p, why in skipped],
        "engine": engine,
        "timing": timing,
        **(extra or {}),
    }


def write_manifest(store, manifest: dict) -> None:
    """The manifest last: once it is there, the output is complete. Many skipped inputs go to a
    sidecar (written first) so that the manifest stays small whatever the source's size."""
    skipped = manifest["skipped"]
    if len(skipped) > SKIPPED_INLINE:
        lines = "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in skipped)
        store.write_bytes(SKIPPED, lines.encode("utf-8"))
        manifest = {**manifest, "skipped": skipped[:SKIPPED_INLINE], "skipped_file": SKIPPED,
                    "skipped_count": len(skipped)}
    else:
        store.delete(SKIPPED)
    store.write_bytes(MANIFEST, (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
