"""`OUT/_augpipe.json`: how an output was made and what it holds. Written last, atomically.

`Manifest` is the typed record: `Manifest.load(store)` checks what readers rely on and fills the
defaults of older manifests; `save(store)` writes it back, keys it does not know included and in
their order. `ShardRecord` is what a shard task returns and writes beside its shard.

A leaf module: reading a manifest loads neither OpenCV nor albumentations nor pydantic.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass, field

from augpipe import __version__
from augpipe.errors import SourceError
from augpipe.layout import LEGACY_MANIFEST, MANIFEST, RUN_FILE, SKIPPED, SPLITS, listed, shards_among

SKIPPED_INLINE = 1000  # more skipped inputs than this go to a sidecar file, one JSON line each


def check_finished(store) -> None:
    """One line where the folder is an expand's that has not finished (its run record, no manifest):
    its shards are some of a dataset's, not one (a directory reader would give part of it); and
    where it holds augpipe's shards but no manifest (deleted), not a source folder."""
    if store.exists(RUN_FILE):
        raise SourceError(f"{store.display()} is an augpipe expand that has not finished (running, or stopped before "
                          f"its {MANIFEST}): not a dataset until it has; run the same expand command again to finish it "
                          "(it resumes)")
    shards = unclaimed_shards(store)
    if shards:
        raise SourceError(f"{store.display()} holds augpipe shards ({listed(shards)}) but no {MANIFEST}: augpipe reads "
                          "an expanded dataset by its manifest, and it is gone; put it back, or expand the source "
                          "again into another --out")


def unclaimed_shards(store, names: list[str] | None = None) -> list[str]:
    """augpipe's shards in the folder (`names`: its listing, where the caller has it) that neither
    a manifest nor a run record claims: their manifest was deleted."""
    if has_manifest(store) or store.exists(RUN_FILE):
        return []
    return shards_among(store.names() if names is None else names)


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
_REQUIRED = (("shards", list), ("classes", list), ("counts", dict), ("recipe", dict))
_ALWAYS = ("labelled", "task", "skipped")  # written even at their defaults: `load` fills them in


@dataclass
class ShardRecord:
    """One shard's record: what `jobs.write_shard` returns and writes beside the shard
    (`layout.record_name`; this field order is the JSON's), and what a resumed run reads back."""

    name: str
    split: str
    rows: int
    bytes: int
    sha256: str
    sources: int = 0
    originals: int = 0
    augmented: int = 0
    by_class: dict = field(default_factory=dict)
    conversions: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)  # [path, reason]
    failed_copies: list = field(default_factory=list)  # [path, copy, reason]
    dropped_boxes: int = 0
    dropped_objects: list = field(default_factory=list)  # [path, reason]
    exif_oriented: int = 0
    exif_oriented_first: str | None = None
    seconds: float = 0.0
    dropped_by: dict = field(default_factory=dict)  # reason -> class -> objects the recipe dropped
    rows_by_class: dict = field(default_factory=dict)  # class -> rows holding it, where by_class counts objects

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_dict(cls, d) -> ShardRecord | None:
        """A record read back, or None when it is not one (torn, another version's, hand-made)."""
        if not isinstance(d, dict) or any(not isinstance(d.get(k), t) for k, t in _SHARD_KEYS.items()):
            return None
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in d.items() if k in names})
        except TypeError:
            return None

    def entry(self) -> dict:
        """The shard as the manifest lists it."""
        return {k: getattr(self, k) for k in _SHARD_KEYS}


@dataclass
class Manifest:
    """An output's manifest. Typed fields for what augpipe reads; `extra` keeps every other key, so
    that a manifest loaded and saved again is the same JSON."""

    classes: list
    shards: list  # {"name", "split", "rows", "bytes", "sha256"}, checked by `load`
    counts: dict  # split -> {"sources", "rows", "originals", "augmented", "by_class"[, "rows_by_class"]}
    recipe: dict  # {"name", "path", "sha256", "text"}
    labelled: bool = False
    task: str = "classification"  # the target kind's name, under the manifest's historical key
    skipped: list = field(default_factory=list)  # {"path", "reason"}
    augpipe_version: str | None = None
    identity: dict | None = None
    source: str | None = None
    seed: int | None = None
    options: dict = field(default_factory=dict)
    instance_masks: bool = False
    category_ids: list | None = None
    category_supercategories: list | None = None
    skipped_count: int | None = None  # with `skipped_file`: how many in all
    extra: dict = field(default_factory=dict)
    _order: tuple = field(default=(), repr=False, compare=False)  # the keys as they came

    @property
    def version(self) -> str:
        return self.augpipe_version or "?"

    @property
    def kind(self):
        """The dataset's target kind (`augpipe.targets`)."""
        from augpipe.targets import for_manifest

        return for_manifest(self.to_dict())

    @property
    def total_skipped(self) -> int:
        return len(self.skipped) if self.skipped_count is None else self.skipped_count

    @classmethod
    def from_dict(cls, d: dict) -> Manifest:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra", "_order"}
        return cls(**{k: v for k, v in d.items() if k in names},
                   extra={k: v for k, v in d.items() if k not in names}, _order=tuple(d))

    def to_dict(self) -> dict:
        """The JSON object: the keys it was made from, in their order, then those set since."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("extra", "_order")}
        defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                    for f in dataclasses.fields(self) if f.name in values and
                    (f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING)}
        values = {k: v for k, v in values.items()
                  if k in self._order or k in _ALWAYS or k not in defaults or v != defaults[k]}
        values.update(self.extra)
        return {**{k: values[k] for k in self._order if k in values},
                **{k: v for k, v in values.items() if k not in self._order}}

    @classmethod
    def load(cls, store) -> Manifest:
        """A manifest that readers can rely on, or one line saying what is wrong with it."""
        m = read_manifest(store)
        where = store.display(MANIFEST)
        if m is None and not store.exists():
            raise SourceError(f"{store.display()} does not exist")
        if m is None:
            check_finished(store)
            raise SourceError(f"{store.display()} has no readable {MANIFEST}: not an augpipe dataset "
                              "(augpipe expand makes one)")
        if not isinstance(m, dict):
            raise SourceError(f"{where}: not an augpipe manifest (a JSON object is expected)")
        for key, kind in _REQUIRED:
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
        for key, kind in (("skipped", list), ("options", dict), ("labelled", bool), ("instance_masks", bool)):
            if key in m and not isinstance(m[key], kind):
                raise SourceError(f"{where}: '{key}' is not a {kind.__name__}: the manifest is damaged")
        _check_kind(m["task"], where)
        return cls.from_dict(m)

    def save(self, store) -> None:
        """The manifest last: once it is there, the output is complete. Many skipped inputs go to a
        sidecar (written first) so that the manifest stays small whatever the source's size."""
        manifest = self.to_dict()
        skipped = self.skipped
        if "skipped_file" in manifest:  # loaded with its sidecar: both stay as they are
            pass
        elif len(skipped) > SKIPPED_INLINE:
            lines = "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in skipped)
            store.write_bytes(SKIPPED, lines.encode("utf-8"))
            manifest = {**manifest, "skipped": skipped[:SKIPPED_INLINE], "skipped_file": SKIPPED,
                        "skipped_count": len(skipped)}
        else:
            store.delete(SKIPPED)
        store.write_bytes(MANIFEST, (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def _check_kind(name, where: str) -> None:
    """The manifest's target kind is one augpipe knows, or the manifest is not one it can read."""
    from augpipe.targets import registry

    if not isinstance(name, str) or name not in registry():
        raise SourceError(f"{where}: its target kind {name!r} is none augpipe knows ({', '.join(registry())}): "
                          "the manifest is damaged, or from a newer augpipe")


def build_manifest(*, identity: dict, recipe, source: str, seed: int, options: dict, classes, labelled: bool,
                   records: list[ShardRecord], scan_skipped: list, timing: dict, engine: dict,
                   task: str = "classification", extra: dict | None = None) -> Manifest:
    records = sorted(records, key=lambda r: (SPLITS.index(r.split), r.name))
    conversions: Counter = Counter()
    for r in records:
        conversions.update(r.conversions)
    skipped = sorted([*(tuple(s) for s in scan_skipped), *(tuple(s) for r in records for s in r.skipped)])
    return Manifest.from_dict({
        "augpipe_version": __version__,
        "identity": identity,
        "task": task,
        "source": source,
        "seed": seed,
        "options": options,
        "recipe": {"name": recipe.name, "path": _absolute(recipe.path), "sha256": recipe.sha256, "text": recipe.text},
        "classes": list(classes),
        "labelled": labelled,
        "counts": _counts(records),
        "shards": [r.entry() for r in records],
        "conversions": dict(sorted(conversions.items())),
        "skipped": [{"path": p, "reason": why} for p, why in skipped],
        "engine": engine,
        "timing": timing,
        **(extra or {}),
    })


def _counts(records: list[ShardRecord]) -> dict:
    counts = {}
    for split in SPLITS:
        mine = [r for r in records if r.split == split]
        if not mine:
            continue
        by_class, holding = Counter(), Counter()
        for r in mine:
            by_class.update(r.by_class)
            holding.update(r.rows_by_class)
        counts[split] = {
            "sources": sum(r.sources for r in mine),
            "rows": sum(r.rows for r in mine),
            "originals": sum(r.originals for r in mine),
            "augmented": sum(r.augmented for r in mine),
            "by_class": dict(sorted(by_class.items())),
            **({"rows_by_class": dict(sorted(holding.items()))} if holding else {}),
        }
    return counts


def _absolute(path: str | None) -> str | None:
    """A recipe file's path whatever folder a later command runs in (`inspect --verify` names it
    in the command that mends the output); "<recipe>", a recipe given as text, as it is."""
    import os

    return os.path.abspath(path) if path and not path.startswith("<") else path
