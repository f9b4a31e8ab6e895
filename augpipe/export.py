"""`augpipe export`: an expanded dataset written back out as files, for tools that read folders,
by a format's writer (`augpipe.formats`, `formats.WRITERS`: yolo, coco, voc, imagefolder, masks;
each module's docstring says what it writes). This module is the orchestration: claim the folder,
name every file, hand the rows to the format's `write`.

Image bytes are written as the shards hold them. File names are the rows' own (`cat/x.aug1.jpg`),
without the source layout's split and image folders (imagefolder: the path below the class
folder, `{split}/cat/a/x0.png`), so that an export of a YOLO or COCO source expanded with
`--copies 0` gives back the files it came from.

Every row's file names are worked out before anything is written (a pass reading only the columns
names come from). Rows whose files would share a name (`train/a.png` re-encoded as `a.jpg` beside
`train/a.jpg`; `train/sub/b.jpg` beside `train2017/sub/b.jpg`; names that differ only in case, one
file on macOS or Windows) each get a short hash of their source path (`a_1f3a9c2b.jpg`); the other
rows keep their names, and the counts are the files written. A name that would leave `--out`
(`..`, an absolute path, an empty part, NUL) is refused, naming it; so is, for imagefolder, a
class that cannot be one folder (`/` or `\\` in it, `.`, `..`, empty).

`.augpipe-export` in the folder is written first (the dataset, its identity, the format and its
options, `complete: false`) and completed last. An export of the same dataset in the same format
and options is written again into its folder (so an interrupted one is rerun; files of the same
names are replaced); any other non-empty folder is refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import PurePosixPath

from augpipe.errors import OutputError, SkipInput, SourceError, UsageError, one_of
from augpipe.formats import WRITERS, module
from augpipe.formats.base import Header, Item, item_of

MARKER = ".augpipe-export"


def export(location, fmt: str, out, progress: bool = True, **given) -> dict:
    """Write the dataset at `location` to the folder `out` in format `fmt`; returns counts (the
    files written) and how many rows were `renamed` (their names collided).

    `given`: the format's own options (its module's OPTIONS), e.g. yolo_task (`detect` or
    `segment`; by default `segment` when the dataset has instance masks), coco_layout (`images`,
    the default, or `split`), voc_zero_based (0-based corners as the shards hold them, instead of
    the devkit's 1-based whole pixels)."""
    from augpipe.dataset import changed_shards, open_dataset
    from augpipe.store import open_store

    if fmt not in WRITERS:
        raise UsageError(f"--format is one of {', '.join(WRITERS)}, not '{fmt}'")
    writer = module(fmt)
    ds = open_dataset(location)
    header = _header(ds)
    if header.kind not in writer.kinds:
        fits = [f for f in WRITERS if header.kind in module(f).kinds]
        raise UsageError(f"{ds.location} is a {header.kind} dataset: {fmt} holds {one_of(writer.kinds)} "
                         f"(use {' or '.join(fits)})")
    _check_given(fmt, given)
    options = writer.options(given, header, ds.location)
    from augpipe.pipeline import check_not_nested

    check_not_nested(ds.location, str(out), "dataset")  # its readers (pandas, HF) would take the files for rows
    store = open_store(str(out))
    marker = {"from": _where(ds), "identity": _identity(ds), "format": fmt, **options}
    _claim(store, marker)
    renamed = _plan(ds, writer, options)  # every name, before anything is written
    store.write_bytes(MARKER, json.dumps({**marker, "complete": False}).encode())
    at: list[str] = []
    try:
        counts = writer.write(store, _items(ds, writer, renamed, progress, at), header, options)
    except SkipInput as exc:  # a row's stored mask that does not read, met as the writer converts it
        raise SourceError(f"{at[-1] if at else ds.location}: {exc.reason}") from None
    store.write_bytes(MARKER, json.dumps({**marker, "complete": True}).encode())
    return {"format": fmt, "out": store.display(), "notes": [], **counts, "renamed": len(renamed), **options,
            "masks_left_out": header.instance_masks and not writer.keeps_masks(options),
            "changed_shards": changed_shards(ds.store, ds.manifest.shards)}


def _header(ds) -> Header:
    """What the manifest tells a writer (the one place export reads it for them)."""
    m = ds.manifest
    return Header(m.task, ds.classes, m.instance_masks, m.category_ids, ds.kind.manifest_fields(),
                  m.category_supercategories)


def _check_given(fmt: str, given: dict) -> None:
    """An option of another format is refused (`given` holds every format's, None or False when unset)."""
    for owner in WRITERS:
        for key, option in module(owner).OPTIONS.items():
            if given.get(key) not in (None, False) and owner != fmt:
                raise UsageError(f"{option.flag} is an option of --format {owner}, not {fmt}")
    known = {key for owner in WRITERS for key in module(owner).OPTIONS}
    if set(given) - known:
        raise TypeError(f"export() got unknown options: {', '.join(sorted(set(given) - known))}")


def _where(ds) -> str:
    return ds.store.canonical()


def _identity(ds) -> str:
    """The dataset's identity (what expand resumes by), as a sha256."""
    import hashlib

    what = ds.manifest.identity or ds.manifest.shards
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


def _claim(store, marker: dict) -> None:
    """Only a new or empty folder, or an export of the same dataset in the same format (finished
    or not), is written into."""
    problem = store.not_a_folder()  # `--out afile`: said so, not the mkdir's "File exists"
    if problem is not None:
        raise OutputError(f"--out {store.display()}: {problem}: choose a new --out")
    names = store.names()
    if not names:
        return
    if MARKER not in names:
        raise OutputError(f"{store.display()} is not empty and is not an augpipe export: choose a new --out")
    try:
        held = json.loads(store.read_bytes(MARKER))
    except (OSError, ValueError):
        held = None
    if not isinstance(held, dict):
        raise OutputError(f"{store.display()} holds an augpipe export whose {MARKER} cannot be read: choose a new --out")
    if all(held.get(k) == v for k, v in marker.items() if k != "from"):
        return
    same = held.get("identity") == marker["identity"]
    what = "this dataset" if same else (f"{held.get('from')}" if held.get("identity") else
                                        f"{held.get('from')} (by an earlier augpipe, with no identity recorded)")
    state = "" if held.get("complete", True) else ", unfinished"
    if same and held.get("format") == marker["format"]:  # only the format's options differ
        raise OutputError(f"{store.display()} holds an export ({marker['format']}) of this dataset{state} written "
                          f"with {_shown(held)}: choose a new --out for {_shown(marker)}")
    raise OutputError(f"{store.display()} holds an export ({held.get('format')}) of {what}{state}: "
                      f"choose a new --out for {marker['format']}{'' if same else ' of ' + marker['from']}")


def _shown(marker: dict) -> str:
    """A marker's format options as the flags that set them."""
    flags = {key: option for owner in WRITERS for key, option in module(owner).OPTIONS.items()}
    shown = [f"{flags[k].flag}={v}" if not flags[k].choices else f"{flags[k].flag} {v}"
             for k, v in marker.items() if k in flags]
    return ", ".join(shown) or "other options"


def _plan(ds, writer, options: dict) -> dict[tuple, str]:
    """Every row's files, worked out before anything is written, from the columns names come
    from. Returns {(source, path): name} for the rows whose files would collide with another's
    (by name, or by case alone): each gets a short hash of its source path. Anything still
    colliding, or a name that would leave the folder, is refused in one line."""
    rows = []  # (split, key, name)
    classes = ds.classes if ds.manifest.labelled else []
    for split in ds.splits():
        columns = ["image.path", *(c for c in ds.schema(split).names if c != "image")]
        for batch in ds.iter_batches(split, columns):
            for row in batch.to_pylist():
                row["image"] = {"path": row.pop("path")}  # the image's path without its bytes
                _check_target(ds.kind, row, classes)
                rows.append((split, _key(row), writer.image_name(row, ds.classes)))
    owner: dict[str, int] = {}
    folders: set[str] = set()
    clash: set[int] = set()
    for i, (split, key, name) in enumerate(rows):
        _check_inside(name, key[0])
        for dest in writer.files(split, name, options):
            folded = dest.casefold()
            j = owner.setdefault(folded, i)
            if j != i:
                clash.update((i, j))
            parts = folded.split("/")
            folders.update("/".join(parts[:k]) for k in range(1, len(parts)))
    clash.update(i for dest, i in owner.items() if dest in folders)  # a file where another needs a folder
    renamed = {rows[i][1]: _suffixed(rows[i][2], rows[i][1][0]) for i in sorted(clash)}
    final: dict[str, int] = {}
    for i, (split, key, name) in enumerate(rows):
        for dest in writer.files(split, renamed.get(key, name), options):
            _check_inside(dest, key[0])
            j = final.setdefault(dest.casefold(), i)
            if j != i:
                raise SourceError(f"{rows[j][1][0]} and {key[0]} would both be written to {dest}: "
                                  "export cannot name them apart")
    return renamed


def _check_target(kind, row: dict, classes: list[str]) -> None:
    """A row whose target `inspect --verify` lists as damaged is refused before anything is
    written: a writer would index its class list with a category outside it, write a NaN box into
    COCO's JSON or YOLO's lines, or fail half-way (a row without its size is read at its image's
    size as the writer reaches it, and checked there)."""
    from augpipe.inspection import target_problems

    width, height = row.get("width"), row.get("height")
    if not (isinstance(width, int) and isinstance(height, int)):
        return
    if problems := target_problems(kind, row, width, height, classes, decode=False):  # the writers decode masks
        name = row["image"]["path"] or row["source"]
        raise SourceError(f"{name}: {problems[0]} (augpipe inspect --verify lists the damage)")


def _key(row: dict) -> tuple:
    return row["source"], (row.get("image") or {}).get("path")


def _suffixed(name: str, source: str) -> str:
    """`sub/a.jpg` → `sub/a_1f3a9c2b.jpg`: a short hash of the source path."""
    import hashlib

    path = PurePosixPath(name)
    tag = hashlib.sha256(str(source).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return str(path.with_name(f"{path.stem}_{tag}{path.suffix}"))


def _check_inside(dest: str, source: str) -> None:
    """A relative path that stays inside --out, or one line naming the row it came from."""
    if dest.startswith("/") or "\0" in dest or any(p in ("", ".", "..") for p in dest.split("/")):
        raise SourceError(f"{source}: its file name would be written as {dest!r}, which is not a plain path "
                          "inside --out ('..', absolute, an empty part or NUL): refused")


def _items(ds, writer, renamed: dict, progress: bool, at: list[str]) -> Iterator[Item]:
    """Every row as an Item, split by split, a row group at a time; `at` ends with the name of
    the one handed out last."""
    from augpipe.pipeline import progress_bar

    total = sum(s["rows"] for s in ds.shards())
    with progress_bar(total, 0, progress, "export", "row") as bar:
        for split in ds.splits():
            for batch in ds.iter_batches(split):
                for row in batch.to_pylist():
                    at[:] = [renamed.get(_key(row)) or writer.image_name(row, ds.classes)]
                    yield item_of(split, at[0], row)
                    bar.update(1)
