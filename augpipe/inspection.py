"""`inspect` of an expanded dataset: what it holds and how it was made (a source folder's health
report is `augpipe.health`). Plain facts (dicts, for --json) and problems; the CLI formats them.

An expanded dataset's facts (`inspect_output`), every row read once:
    kind, path, augpipe_version, recipe {name, sha256}, seed, source, task, classes
    splits          the manifest's counts: split -> {sources, rows, originals, augmented, by_class
                    (what `counted` says), rows_by_class (detection, keypoints: rows holding a class)}
    shards, bytes   the shard files and their size
    width, height   {min, median, max} over every row
    class_counts    split -> "before" (the originals, copy 0) and "after" (all rows) -> "rows" (rows
                    holding each class) and, where the kind has objects, "objects" (of each class)
                    -> {class: n}; what augmentation changed, counted from the rows themselves
    unread_targets  rows left out of class_counts: their target does not read (a damaged mask)
    unchanged       augmented training rows no transform changed (none fired: each its source again,
                    re-encoded), from the rows' lineage
    counted         what the manifest's by_class counts ("rows", "objects", "images": rows holding it)
    mixing          multi-image step -> {rows, donor_images}: training rows it made, distinct donors
    dropped_by      reason -> class -> objects the recipe dropped (the manifest's)
    balance         the manifest's record of --balance, or None
    skipped, skipped_count
    problems        with --verify: one line each
"""

from __future__ import annotations

import hashlib
import statistics
from collections import Counter, defaultdict

from augpipe.errors import SkipInput
from augpipe.layout import SPLITS, listed

SHOWN = 10  # problems, duplicates or skipped files shown in the text report


def _spread(values: list[int]) -> dict | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median_low(values), "max": max(values)}


# ---------------------------------------------------------------- an expanded dataset

def inspect_output(location, verify: bool = False, source: str | None = None, progress: bool = True) -> dict:
    """The facts of an expanded dataset (module docstring: the keys), every row read once with a
    progress bar; with `verify`, every shard re-read and checked (`problems`)."""
    from augpipe.dataset import open_dataset

    ds = open_dataset(location)
    m = ds.manifest
    census = _census(ds, progress)
    facts = {
        "kind": "expanded dataset",
        "path": ds.location,
        "augpipe_version": m.version,
        "recipe": {"name": m.recipe.get("name"), "sha256": m.recipe.get("sha256", "")},
        "seed": m.seed,
        "source": m.source,
        "task": m.task,
        "classes": m.classes,
        "splits": {s: m.counts[s] for s in SPLITS if s in m.counts},
        "shards": len(m.shards),
        "bytes": sum(s["bytes"] for s in m.shards),
        "width": _spread(census.widths),
        "height": _spread(census.heights),
        "class_counts": census.class_counts(),
        "unread_targets": census.unread,
        "unread_shards": census.unread_shards,
        "unchanged": census.unchanged,
        "skipped": m.skipped,
        "skipped_count": m.total_skipped,
        "counted": ds.kind.counted,
        "mixing": census.mixing(),
        "dropped_by": m.extra.get("dropped_by") or {},
        "balance": m.extra.get("balance"),
    }
    if verify:
        facts["problems"] = verify_output(ds, source, progress)
        if mend := mend_advice(facts["problems"], ds):
            facts["mend"] = mend
        if source is not None:
            facts["verified_against"] = str(source)
    return facts


def rows_bar(ds, desc: str, progress: bool):
    from augpipe.pipeline import progress_bar

    return progress_bar(sum(s["rows"] for s in ds.manifest.shards), 0, progress, desc, "row")


class _Census:
    """What one pass over the rows gathers: their sizes; the classes each split's rows hold,
    originals (copy 0: before augmentation) and all rows (after); each multi-image step's rows
    and donor images in training."""

    def __init__(self, kind, classes: list[str], objects: bool):
        self.kind, self.classes, self.objects = kind, classes, objects
        self.widths: list[int] = []
        self.heights: list[int] = []
        self.counts: dict = {}  # split -> "before"/"after" -> "rows"/"objects" -> Counter
        self.unread = 0  # rows whose target does not read, not counted
        self.unread_shards: dict[str, int] = {}  # a shard that does not read: its rows not read
        self.unchanged = 0  # augmented rows no transform changed (each its source again)
        self.donor_rows: Counter = Counter()
        self.donor_images: dict[str, set] = defaultdict(set)

    def add(self, split: str, batch) -> None:
        import pyarrow.types as pat

        for name in ("width", "height", "copy"):  # a column of another type: a damaged shard
            if not pat.is_integer(batch.schema.field(name).type):
                raise ValueError(f"its {name} column holds {batch.schema.field(name).type}, not whole numbers")
        # a null size (a row edited by hand) is --verify's to list, not a size
        self.widths += [w for w in batch.column("width").to_pylist() if w is not None]
        self.heights += [h for h in batch.column("height").to_pylist() if h is not None]
        if "transforms" in batch.schema.names:
            self._donors(batch.column("transforms"))
            self._unchanged(batch)
        if not self.classes:
            return
        counts = self.counts.setdefault(split, {when: {what: Counter() for what in self._what()}
                                                for when in ("before", "after")})
        for row in batch.drop_columns([c for c in ("width", "height", "transforms") if c in batch.schema.names]
                                      ).to_pylist():
            try:
                held = self.kind.row_classes(row, self.classes)
            except SkipInput:  # a mask that does not read: --verify lists it
                self.unread += 1
                continue
            for when in ("before", "after") if row["copy"] == 0 else ("after",):
                counts[when]["rows"].update(held.keys())
                if self.objects:
                    counts[when]["objects"].update(held)

    def _what(self) -> tuple[str, ...]:
        return ("rows", "objects") if self.objects else ("rows",)

    def _unchanged(self, batch) -> None:
        import pyarrow.compute as pc

        fired = pc.fill_null(pc.not_equal(batch.column("transforms"), "[]"), True)
        self.unchanged += batch.num_rows - pc.sum(pc.or_(fired, pc.equal(batch.column("copy"), 0))).as_py()

    def _donors(self, column) -> None:
        import pyarrow.compute as pc

        for text in column.filter(pc.fill_null(pc.match_substring(column, '"donors"'), False)).to_pylist():
            steps = _row_donors(text)
            self.donor_rows.update({name for name, _ in steps})
            for name, d in steps:
                self.donor_images[name].add(d.get("source"))

    def class_counts(self) -> dict:
        return {split: {when: {what: dict(sorted(n.items())) for what, n in by.items()} for when, by in c.items()}
                for split, c in self.counts.items()}

    def mixing(self) -> dict:
        return {name: {"rows": self.donor_rows[name], "donor_images": len(self.donor_images[name])}
                for name in sorted(self.donor_rows)}


def target_columns(ds) -> list[str]:
    """The columns a dataset's rows hold their targets in (none when unlabelled)."""
    m = ds.manifest
    return [c.name for c in ds.kind.columns(m.classes, m.labelled)] if m.labelled else []


def _census(ds, progress: bool) -> _Census:
    m, kind = ds.manifest, ds.kind
    census = _Census(kind, m.classes if m.labelled else [], kind.counted == "objects")
    targets = target_columns(ds)
    with rows_bar(ds, "inspect", progress) as bar:
        for split in ds.splits():
            columns = ["width", "height", "copy", *targets, *(["transforms"] if split == "train" else [])]
            for position, shard in enumerate(ds.shards(split)):
                read = 0
                try:
                    for batch in ds.iter_batches(split, columns, pieces=[(position, 0, None)]):
                        census.add(split, batch)
                        read += batch.num_rows
                        bar.update(batch.num_rows)
                except Exception:  # noqa: BLE001 - a shard's damage (unreadable, a column of another type):
                    # --verify lists it; the summary counts what reads
                    census.unread_shards[shard["name"]] = max(shard["rows"] - read, 0)
                    bar.update(max(shard["rows"] - read, 0))
    return census


def mixed_steps(applied: list) -> list[tuple[str, dict]]:
    """The multi-image steps among a row's transforms (its lineage): those that name donors."""
    return [(name, params) for name, params in applied if isinstance(params, dict) and "donors" in params]


def _row_donors(text: str | None) -> list[tuple[str, dict]]:
    """(step, donor) of each donor a row's `transforms` column names; nothing when it is not JSON."""
    import json

    if not text or '"donors"' not in text:
        return []
    try:
        applied = json.loads(text)
    except ValueError:
        return []
    return [(name, d) for name, params in mixed_steps(applied) for d in params["donors"] if isinstance(d, dict)]


class _Seen:
    """What the rows re-read so far say: each content's splits, each source's split and content,
    and each donor's recorded content and the training rows that took it."""

    def __init__(self):
        self.by_sha: dict[str, dict[str, str]] = {}  # source_sha256 -> {split: first source}
        self.by_path: dict[str, tuple[str, str]] = {}  # source -> (split, source_sha256)
        self.donors: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))  # source -> sha -> rows
        self.rows: Counter = Counter()  # split -> rows read
        self.classes: dict[str, Counter] = defaultdict(Counter)  # split -> what by_class counts, as read
        self.uncounted = 0  # rows whose classes did not read (reported as damaged): no class check then

    def count(self, row: dict, split: str, kind, classes: list | None, damaged: bool) -> None:
        """The row in its split's counts; its classes (what by_class counts) where `classes` are
        given (a labelled dataset) and it is not damaged."""
        self.rows[split] += 1
        if damaged:
            self.uncounted += 1
        elif classes is not None:
            try:
                self.classes[split].update(kind.row_classes(row, classes))
            except Exception:  # noqa: BLE001 - a target no check foresaw: no class check then
                self.uncounted += 1

    def row(self, row: dict, split: str, where: str) -> None:
        sha = row.get("source_sha256") or ""
        self.by_sha.setdefault(sha, {}).setdefault(split, row["source"])
        self.by_path.setdefault(row["source"], (split, sha))
        for _, d in _row_donors(row.get("transforms")):
            self.donors[str(d.get("source"))][str(d.get("sha256") or "")].append(where)


def verify_output(ds, source: str | None = None, progress: bool = True) -> list[str]:
    """Every shard re-read: presence, checksum, row count, images, labels, splits; content that
    appears in more than one split; donors of training rows that are held-out images or no
    sources of the dataset; with `source`, every row and donor against its source file now."""
    from augpipe.layout import is_shard_name

    m, store = ds.manifest, ds.store
    problems = []
    listed = {s["name"] for s in m.shards}
    for name in store.names():
        if is_shard_name(name) and name not in listed:
            problems.append(f"{name}: extra shard, not in the manifest")
    seen = _Seen()
    with rows_bar(ds, "verify", progress) as bar:
        for shard in m.shards:
            size = store.size(shard["name"])
            if size is None:
                problems.append(f"{shard['name']}: missing")
                continue
            digest = store.sha256(shard["name"])
            if size != shard["bytes"]:
                problems.append(f"{shard['name']}: {size:,} bytes, the manifest says {shard['bytes']:,}")
            elif digest != shard["sha256"]:
                problems.append(f"{shard['name']}: checksum mismatch (sha256 {digest[:12]}, "
                                f"manifest {shard['sha256'][:12]})")
            problems += _verify_rows(ds, shard, m, seen, bar)
    problems += _shared_across_splits(seen.by_sha)
    problems += _counts_problems(m, seen)
    # a training source whose every copy failed has no row, yet may be another row's donor
    # sources of the run without rows of their own: their copies all failed, or they were skipped
    # (a file changed during the run: donors read before the change were the planned content)
    failed = {f.get("path") for f in m.extra.get("failed_copies") or () if isinstance(f, dict)}
    failed |= {s.get("path") for s in m.skipped if isinstance(s, dict)}
    problems += _donor_problems(seen, failed)
    if source is not None:
        problems += _compare_sources(seen, source)
    return problems


def _counts_problems(m, seen: _Seen) -> list[str]:
    """The manifest's counts against the rows read: a shard rewritten (a label changed, rows
    dropped) with its checksum and rows stamped again in the manifest passed every other check."""
    problems = []
    for split, c in (m.counts or {}).items():
        if not isinstance(c, dict):
            continue
        if c.get("rows") != seen.rows[split]:
            problems.append(f"split {split}: {seen.rows[split]:,} rows read, the manifest's counts say {c.get('rows')}")
        said = {k: v for k, v in (c.get("by_class") or {}).items() if v}
        read = {k: v for k, v in seen.classes[split].items() if v}
        if m.labelled and not seen.uncounted and said != read:
            differ = sorted(set(said) | set(read), key=str)
            shown = ", ".join(f"{k} {read.get(k, 0)} (the counts say {said.get(k, 0)})"
                              for k in differ if said.get(k, 0) != read.get(k, 0))
            problems.append(f"split {split}: by class, read: {shown}")
    return problems


def _verify_rows(ds, shard: dict, m, seen: _Seen, bar) -> list[str]:
    import pyarrow.parquet as pq

    name = shard["name"]
    try:
        reader = pq.ParquetFile(ds.open(name))
        rows = reader.metadata.num_rows
    except Exception as exc:  # noqa: BLE001 - any damage is a problem to report, not a crash
        return [f"{name}: cannot be read as Parquet ({_said(exc)})"]
    problems = []
    if rows != shard["rows"]:
        problems.append(f"{name}: {rows} rows, the manifest says {shard['rows']}")
    kind = ds.kind
    classes = m.classes if m.labelled else []
    wanted = ("image", "copy", "source", "source_sha256", "width", "height", "split", "transforms",
              *(c.name for c in kind.columns(m.classes, m.labelled)))
    columns = [c for c in wanted if c in reader.schema_arrow.names]
    position = [s["name"] for s in ds.shards(shard["split"])].index(name)
    index = 0
    try:
        for batch in ds.iter_batches(shard["split"], columns, pieces=[(position, 0, None)]):
            for row in batch.to_pylist():
                where = f"{name} row {index} ({row['source']})"
                seen.row(row, shard["split"], where)
                row_problems = _row_problems(row, shard["split"], kind, classes)
                problems += [f"{where}: {p}" for p in row_problems]
                seen.count(row, shard["split"], kind, m.classes if m.labelled else None, bool(row_problems))
                index += 1
            bar.update(batch.num_rows)
    except Exception as exc:  # noqa: BLE001
        problems.append(f"{name}: unreadable after row {index} ({_said(exc)})")
    return problems


def _said(exc: BaseException) -> str:
    """An error in a problem's line: its first line, whole words; of a shard that does not read,
    the cause alone (its line already names the shard)."""
    text = getattr(exc, "reason", None) or f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
    return text if len(text) <= 160 else text[:160].rsplit(" ", 1)[0] + " ..."


def _donor_problems(seen: _Seen, failed: set) -> list[str]:
    """A donor that is a validation or test image (by path or by content): it leaks into training;
    a donor that is no source of the dataset (nor one whose copies all `failed`); a donor whose
    content is not its rows'."""
    out = []
    for path, by_sha in sorted(seen.donors.items()):
        for sha, rows in sorted(by_sha.items()):
            took = f"a donor of {plural(len(rows), 'row')} (first {rows[0]})"
            split, own = seen.by_path.get(path, (None, None))
            twins = [(s, src) for s, src in seen.by_sha.get(sha, {}).items() if s != "train"]
            if split not in (None, "train"):
                out.append(f"leakage: {split} source {path} is {took}")
            elif twins:
                out.append(f"leakage: donor {path} has the content of {twins[0][0]} source {twins[0][1]}: it is {took}")
            if split is None:
                out += [] if path in failed else [f"donor {path} is no source of this dataset: it is {took}"]
            elif sha != own:
                out.append(f"donor {path}: its rows say sha256 {own[:12]}, {took} says {sha[:12]}")
    return out


def target_problems(kind, row: dict, width: int, height: int, classes: list[str], decode: bool = True) -> list[str]:
    """The kind's `verify` of a row's target; one that fails on what it finds (a type no check
    foresaw) is that row's problem, and the rows after it are still checked."""
    try:
        return kind.verify(row, width, height, classes, decode)
    except Exception as exc:  # noqa: BLE001 - a stored row's damage, whatever it is
        return [f"its target cannot be checked ({_said(exc)})"]


def _row_problems(row: dict, split: str, kind, classes: list[str]) -> list[str]:
    import numpy as np

    from augpipe.decode import row_image_warned

    problems = []
    width, height = row.get("width"), row.get("height")
    data = (row["image"] or {}).get("bytes") or b""
    try:
        rgb, warning = row_image_warned(data)
    except ValueError:
        problems.append("image does not decode")
    else:
        if warning and not _sources_own_bytes(row, data):
            problems.append(f"{DAMAGED_IMAGE} ({warning}): it decodes to a partly wrong picture")
        if (width, height) != (rgb.shape[1], rgb.shape[0]):
            problems.append(f"image is {rgb.shape[1]}×{rgb.shape[0]}, the row says {width}×{height}")
            width, height = rgb.shape[1], rgb.shape[0]  # the target is checked against the image itself
        if row["copy"] != 0 and np.ptp(rgb) == 0:
            problems.append(f"copy {row['copy']} is a single flat colour (a degenerate transform?)")
    if isinstance(width, int) and isinstance(height, int):
        problems += target_problems(kind, row, width, height, classes)
    else:
        problems.append(f"the row's size is {width}×{height}: its target cannot be checked")
    if row.get("split", split) != split:
        problems.append(f"a {row['split']} row in a {split} shard")
    if split != "train" and row["copy"] != 0:
        problems.append(f"augmented row (copy {row['copy']}) in {split}")
    return problems


def _sources_own_bytes(row: dict, data: bytes) -> bool:
    """An original that holds its source's bytes as they were (libjpeg's warnings on them are the
    source's own). Any other row's image is augpipe's encoding, whole when written, so a warning
    on it is damage since: a copy, an original re-encoded (turned, converted, resized), or one
    whose bytes no longer match its source's sha256."""
    if row["copy"] != 0:
        return False
    sha = row.get("source_sha256")
    return not sha or hashlib.sha256(data).hexdigest() == sha  # without its sha256 (hand-made), trusted


def _shared_across_splits(seen: dict) -> list[str]:
    """The same source content in two splits: validation would score what training has seen."""
    out = []
    for sha, by_split in sorted(seen.items()):
        if sha and len(by_split) > 1:
            where = ", ".join(f"{split}: {src}" for split, src in by_split.items())
            out.append(f"leakage: identical source content in {' and '.join(by_split)} ({where})")
    return out


def _compare_sources(seen: _Seen, source: str) -> list[str]:
    """Each row's source_sha256, and each donor's recorded sha256, against the file as it is now."""
    from augpipe.store import open_store, read_source

    store = open_store(source)
    problems = []
    for path in sorted(set(seen.by_path) | set(seen.donors)):
        role = "source" if path in seen.by_path else "donor"
        try:
            now = hashlib.sha256(read_source(store, path)).hexdigest()
        except SkipInput as exc:
            problems.append(f"{role} {path}: {exc.reason}")
            continue
        sha = seen.by_path.get(path, (None, now))[1]
        if now != sha:
            problems.append(f"source {path}: changed since it was expanded (sha256 {now[:12]}, rows say {sha[:12]})")
        problems += [f"donor {path}: changed since it was expanded (sha256 {now[:12]}, "
                     f"{plural(len(rows), 'row')} took it with {recorded[:12]})"
                     for recorded, rows in sorted(seen.donors.get(path, {}).items()) if recorded != now]
    return problems


def output_report(f: dict) -> list[str]:
    lines = [
        f"{f['path']}: expanded dataset, augpipe {f['augpipe_version']}",
        f"  recipe    {f['recipe']['name']} (sha256 {f['recipe']['sha256'][:12]}), seed {f['seed']}",
        f"  source    {f['source']}",
    ]
    for split, c in f["splits"].items():
        unchanged = f.get("unchanged") if split == "train" else 0
        same = f" ({unchanged:,} unchanged: no transform fired)" if unchanged else ""
        lines.append(f"  {split:<9} {c['rows']:,} rows: {c['originals']:,} originals, {c['augmented']:,} augmented{same}")
    size = f"{f['bytes'] / 1e6:.1f} MB"
    lines.append(f"  shards    {f['shards']} file{'' if f['shards'] == 1 else 's'}, {size}")
    lines += _unread_shards_line(f)
    lines += _sizes_line(f)
    lines += _class_table(f)
    lines += _balance_lines(f.get("balance"))
    lines += _mixing_lines(f.get("mixing") or {})
    lines += _dropped_lines(f.get("dropped_by") or {})
    lines.append(f"  skipped   {f.get('skipped_count', len(f['skipped'])):,} inputs")
    lines += [f"    {s['path']}: {s['reason']}" for s in f["skipped"][:SHOWN]]
    if "problems" in f:
        mixed = bool(f.get("mixing"))
        rows = "every row and donor" if mixed else "every row"
        against = f", {rows} against its file in {f['verified_against']}" if f.get("verified_against") else ""
        checked = "checksums, images, labels, splits and donors" if mixed else "checksums, images, labels and splits"
        lines += _problem_lines(f["problems"], f"verify: every shard re-read, {checked} checked{against}")
        lines += [f"  mend      {f['mend']}"] if f.get("mend") else []
    return lines


def mend_advice(problems: list[str], ds) -> str | None:
    """How to mend a shard of the manifest's damaged since it was written (its checksum, its row
    count, its Parquet, gone, an image's data): the expand that made it, again. Not for a row's own
    problem, which a rerun writes again as it was (a copy of one flat colour), nor for a shard the
    manifest does not list, which the run never wrote."""
    from augpipe.layout import is_shard_name

    if not any((is_shard_name(p.split(":", 1)[0]) and not p.endswith("not in the manifest"))
               or DAMAGED_IMAGE in p for p in problems):
        return None
    command, why = expand_command(ds)
    gone = f" ({why}: write this manifest's recipe.text to a file and give that as --recipe)" if why else ""
    return f"run the expand that made it again, which writes the output anew: {command}{gone}"


def expand_command(ds) -> tuple[str, str | None]:
    """The `augpipe expand` command that writes this dataset again, byte for byte, as its manifest
    records the source, recipe, seed and options; and why RECIPE.yaml stands for its recipe, where
    no file holds it now. A bucket's output with --overwrite: its shards are checked
    by size only, so one damaged at its size would be kept."""
    import shlex

    from augpipe.options import expand_arguments
    from augpipe.store.local import LocalStore

    m = ds.manifest
    recipe, gone = _recipe_argument(m.recipe)
    args = ["augpipe", "expand", str(m.source), "--recipe", recipe, "--out", ds.location]
    args += ["--seed", str(m.seed)] if m.seed else []
    args += expand_arguments(m.options or {})
    args += [] if isinstance(ds.store, LocalStore) else ["--overwrite"]
    return " ".join(shlex.quote(a) for a in args), gone


def _recipe_argument(recipe: dict) -> tuple[str, str | None]:
    """A bundled recipe by its name; a file by its path while it holds the recipe the manifest
    records (its sha256); else RECIPE.yaml, and why."""
    from pathlib import Path

    from augpipe.bundled import bundled_dir

    path = str(recipe.get("path") or "")
    if not path or path.startswith("<"):  # parse_recipe's "<recipe>": given as text
        return "RECIPE.yaml", "the recipe was given as text, not as a file"
    bundled = bundled_dir() / Path(path).name
    named = Path(path).parent == bundled_dir()  # this augpipe's bundled recipe of that name, if unchanged
    try:
        text = (bundled if named else Path(path)).read_text(encoding="utf-8")
        same = hashlib.sha256(text.encode("utf-8")).hexdigest() == recipe.get("sha256")
    except (OSError, UnicodeDecodeError):
        same = False
    if same:
        return (Path(path).stem if named else path), None
    what = f"the bundled recipe {Path(path).stem} of this augpipe" if named else f"the recipe file {path}"
    return "RECIPE.yaml", f"{what} is gone or changed since"


DAMAGED_IMAGE = "image data is damaged"


def _balance_lines(balance: dict | None) -> list[str]:
    """--balance by repeat factors: the threshold and each repeated class's factor."""
    if not balance or "repeat_factor" not in balance:
        return []
    lifted = sorted(((c, r) for c, r in balance["repeat_factor"].items() if r > 1), key=lambda cr: -cr[1])
    shown = ", ".join(f"{c} ×{r:.2f}" for c, r in lifted[:SHOWN]) or "no class repeated"
    return [f"  balance   repeat factors, t {balance['threshold']:.3g}: {shown}"]


def _class_table(f: dict) -> list[str]:
    """A line a class: in each split the rows holding it (and its objects), originals -> all rows
    where the split was augmented; the classes no row holds on a line of their own."""
    if not f["classes"]:
        return ["  classes   none (unlabelled)"]
    counts = f.get("class_counts") or {}
    columns = [(split, what) for split, c in counts.items() for what in c["after"]]
    held = [c for c in f["classes"] if any(counts[s]["after"][w].get(c) for s, w in columns)]
    table = [["class", *(f"{split} {what}" for split, what in columns)]]
    table += [[c, *(_cell(counts[s], f["splits"].get(s, {}), w, c) for s, w in columns)] for c in held[:SHOWN * 2]]
    width = [max(len(row[k]) for row in table) for k in range(len(table[0]))]
    objects = " (and its objects)" if any(w == "objects" for _, w in columns) else ""
    lines = [f"  classes   {len(f['classes'])}: the rows holding each{objects}, originals -> all rows where augmented"]
    lines += ["    " + "  ".join(cell.ljust(width[0]) if k == 0 else cell.rjust(width[k]) for k, cell in enumerate(row))
              for row in table]
    if len(held) > SHOWN * 2:
        lines.append(f"    ... {len(held) - SHOWN * 2} more (--json lists all)")
    absent = [c for c in f["classes"] if c not in held]
    if f.get("task") == "segmentation":  # value 0, the background, is no class a row holds: never counted
        absent = [c for c in absent if c != f["classes"][0]]
    if absent:
        lines.append(f"    in no row: {', '.join(absent[:SHOWN])}{', ...' if len(absent) > SHOWN else ''}")
    if f.get("unread_targets"):
        lines.append(f"    not counted: {plural(f['unread_targets'], 'row')} whose target does not read (--verify lists them)")
    return lines + _outside_line(f, columns)


def _outside_line(f: dict, columns: list[tuple[str, str]]) -> list[str]:
    """Labels or categories no class of the manifest has (a row edited by hand): counted under
    their own value, which the table above leaves out."""
    counts, known = f.get("class_counts") or {}, set(f["classes"])
    outside = Counter()
    for split, what in columns:
        if what == "rows":
            outside.update({c: n for c, n in counts[split]["after"][what].items() if c not in known})
    if not outside:
        return []
    values = ", ".join(f"{c} in {plural(n, 'row')}" for c, n in outside.most_common(SHOWN))
    return [f"    not a class: {values}{', ...' if len(outside) > SHOWN else ''} (--verify lists them)"]


def _unread_shards_line(f: dict) -> list[str]:
    """The shards whose rows (or the rest of them) could not be read: left out of the sizes and classes."""
    unread = f.get("unread_shards") or {}
    if not unread:
        return []
    return [f"  unread    {plural(len(unread), 'shard')} ({listed(list(unread), 3)}): {plural(sum(unread.values()), 'row')} left out of "
            "the sizes and classes below; --verify lists the damage"]


def _cell(counts: dict, split: dict, what: str, c: str) -> str:
    after = counts["after"][what].get(c, 0)
    if not (split.get("augmented") and split.get("originals")):
        return f"{after:,}"
    return f"{counts['before'][what].get(c, 0):,} -> {after:,}"


def _mixing_lines(mixing: dict) -> list[str]:
    """`Mosaic: 120 rows, 37 donor images`, a line a multi-image step."""
    return [f"  {'donors' if k == 0 else '':<9} {name}: {plural(v['rows'], 'row')}, "
            f"{plural(v['donor_images'], 'donor image')}" for k, (name, v) in enumerate(mixing.items())]


def _dropped_lines(dropped_by: dict) -> list[str]:
    """Objects the recipe dropped: their number, then a line a reason, by class."""
    total = sum(n for by_class in dropped_by.values() for n in by_class.values())
    if not total:
        return []
    lines = [f"  dropped   {plural(total, 'object')} by the recipe"]
    width = max(len(reason) for reason in dropped_by)
    for reason, by_class in dropped_by.items():
        classes = ", ".join(f"{c} {n:,}" for c, n in sorted(by_class.items(), key=lambda kv: (-kv[1], kv[0])))
        lines.append(f"    {reason:<{width}}  {sum(by_class.values()):,} ({classes})")
    return lines


def plural(n: int, word: str) -> str:
    """`1 object`, `2 objects`: the reports' counts."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def bar(n: int, top: int, width: int = 24) -> str:
    """A text bar of n against the largest, `top`."""
    return ("#" * max(1, round(width * n / top)) if n else "").ljust(width)


def _sizes_line(f: dict) -> list[str]:
    if not f["width"]:
        return []
    w, h = f["width"], f["height"]
    return [f"  sizes     width {w['min']}/{w['median']}/{w['max']}, height {h['min']}/{h['median']}/{h['max']}"
            " (min/median/max)"]


def _problem_lines(problems: list[str], ok: str) -> list[str]:
    if not problems:
        return [f"  {ok}: all is well"]
    lines = [f"  problems  {len(problems)}"]
    lines += [f"    {p}" for p in problems[: SHOWN * 5]]
    if len(problems) > SHOWN * 5:
        lines.append(f"    ... {len(problems) - SHOWN * 5} more (--json lists all)")
    return lines
