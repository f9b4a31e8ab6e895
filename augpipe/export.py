"""`augpipe export`: an expanded dataset written back out as files, for tools that read folders.

    yolo         images/{split}/…, labels/{split}/….txt, data.yaml (--yolo-task detect: box lines
                 `class cx cy w h`; segment: a polygon line for every object; never a mix)
    coco         images/{split}/… (--coco-layout split: {split}/…), annotations/instances_{split}.json
    voc          JPEGImages/…, Annotations/….xml (the devkit's 1-based whole pixels, or
                 --voc-zero-based), ImageSets/Main/{train,val,test}.txt, labelmap.txt
    imagefolder  {split}/{class}/… (classification)
    masks        {split}/images/…, {split}/masks/….png, classes.txt (segmentation)

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

Instance masks are traced on their pixels' edges (every vertex a pixel corner), so a polygon
spans exactly its mask's extent and, filled by the pixel-centre rule (pycocotools', and augpipe's
readers'), gives back exactly its pixels when the mask has no hole. COCO gets RLE where polygons
would not give the mask back; a YOLO line has one ring (parts joined by seams, holes dropped).

`.augpipe-export` in the folder is written first (the dataset, its identity, the format and its
options, `complete: false`) and completed last. An export of the same dataset in the same format
and options is written again into its folder (so an interrupted one is rerun; files of the same
names are replaced); any other non-empty folder is refused.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import PurePosixPath

from augpipe.errors import OutputError, SourceError, UsageError

FORMATS = {"yolo": "detection", "coco": "detection", "voc": "detection", "imagefolder": "classification",
           "masks": "segmentation"}
SPLIT_DIR = {"train": "train", "validation": "val", "test": "test"}
MARKER = ".augpipe-export"
# Folders of a source layout, not of the dataset: `images/`, `train/`, COCO's `val2017/`
_LAYOUT_DIR = re.compile(r"(images|jpegimages|imgs|(train|val|valid|validation|test)(\d{4})?)", re.IGNORECASE)


YOLO_TASKS = ("detect", "segment")
COCO_LAYOUTS = ("images", "split")


def export(location, fmt: str, out, progress: bool = True, *, yolo_task: str | None = None,
           coco_layout: str | None = None, voc_zero_based: bool = False) -> dict:
    """Write the dataset at `location` to the folder `out` in format `fmt`; returns counts (the
    files written) and how many rows were `renamed` (their names collided).

    yolo_task: `detect` (box lines) or `segment` (a polygon line for every object); by default
    `segment` when the dataset has instance masks. coco_layout: `images` (images/{split}/…, the
    default) or `split` ({split}/…). voc_zero_based: 0-based corners as the shards hold them,
    instead of the devkit's 1-based whole pixels."""
    from augpipe.dataset import open_dataset
    from augpipe.store import open_store

    if fmt not in FORMATS:
        raise UsageError(f"--format is one of {', '.join(FORMATS)}, not '{fmt}'")
    ds = open_dataset(location)
    task = ds.manifest.task
    if FORMATS[fmt] != task:
        raise UsageError(f"{ds.location} is a {task} dataset: {fmt} holds {FORMATS[fmt]} "
                         f"(use {' or '.join(f for f, t in FORMATS.items() if t == task)})")
    options = _options(ds, fmt, yolo_task, coco_layout, voc_zero_based)
    store = open_store(str(out))
    marker = {"from": _where(ds), "identity": _identity(ds), "format": fmt, **options}
    _claim(store, marker)
    if fmt == "imagefolder":
        _check_classes(ds.classes)
    renamed = _plan(ds, fmt, options)  # every name, before anything is written
    store.write_bytes(MARKER, json.dumps({**marker, "complete": False}).encode())
    rows = _rows(ds, fmt, renamed, progress)
    if fmt == "yolo":
        counts = _yolo(ds, store, rows, options["yolo_task"])
    elif fmt == "coco":
        counts = _coco(ds, store, rows, options["coco_layout"])
    elif fmt == "voc":
        counts = _voc(ds, store, rows, options["voc_zero_based"])
    else:
        counts = {"imagefolder": _imagefolder, "masks": _masks}[fmt](ds, store, rows)
    store.write_bytes(MARKER, json.dumps({**marker, "complete": True}).encode())
    masks_left = ds.manifest.instance_masks and (fmt == "voc" or options.get("yolo_task") == "detect")
    return {"format": fmt, "out": store.display(), **counts, "renamed": len(renamed), **options,
            "masks_left_out": masks_left}


def _options(ds, fmt: str, yolo_task: str | None, coco_layout: str | None, voc_zero_based: bool) -> dict:
    """The format's own options, checked and defaulted; one given for another format is refused."""
    given = {"yolo": yolo_task is not None, "coco": coco_layout is not None, "voc": voc_zero_based}
    flag = {"yolo": "--yolo-task", "coco": "--coco-layout", "voc": "--voc-zero-based"}
    for owner, was_given in given.items():
        if was_given and owner != fmt:
            raise UsageError(f"{flag[owner]} is an option of --format {owner}, not {fmt}")
    masks = ds.manifest.instance_masks
    if fmt == "yolo":
        task = yolo_task or ("segment" if masks else "detect")
        if task not in YOLO_TASKS:
            raise UsageError(f"--yolo-task is detect or segment, not '{task}'")
        if task == "segment" and not masks:
            raise UsageError(f"{ds.location} has no instance masks: --yolo-task segment needs them (use detect)")
        return {"yolo_task": task}
    if fmt == "coco":
        layout = coco_layout or "images"
        if layout not in COCO_LAYOUTS:
            raise UsageError(f"--coco-layout is images (images/<split>/…) or split (<split>/…), not '{layout}'")
        return {"coco_layout": layout}
    if fmt == "voc":
        return {"voc_zero_based": voc_zero_based}
    return {}


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
        raise OutputError(f"{store.display()} holds a {marker['format']} export of this dataset{state} written "
                          f"with {_shown(held)}: choose a new --out for {_shown(marker)}")
    raise OutputError(f"{store.display()} holds a {held.get('format')} export of {what}{state}: "
                      f"choose a new --out for {marker['format']}{'' if same else ' of ' + marker['from']}")


def _shown(marker: dict) -> str:
    flags = {"yolo_task": "--yolo-task {}", "coco_layout": "--coco-layout {}", "voc_zero_based": "--voc-zero-based={}"}
    return ", ".join(f.format(marker[k]) for k, f in flags.items() if k in marker) or "other options"


def _check_classes(classes: list[str]) -> None:
    """imagefolder writes one folder a class: a class that is not one folder name is refused."""
    for c in classes:
        if c in ("", ".", "..") or any(ch in c for ch in "/\\\0"):
            raise SourceError(f"class {c!r} cannot be a folder name (imagefolder writes one folder a class; "
                              "a name without '/' or '\\' and not '.' or '..'): rename it in the source's labels")


def _read_names(ds, shard: dict, columns: list[str]):
    import pyarrow.parquet as pq

    try:
        with ds.open(shard["name"]) as fh:
            return pq.ParquetFile(fh).read(columns=columns).to_pylist()
    except OSError as exc:
        raise SourceError(f"{shard['name']} cannot be read ({str(exc).splitlines()[0][:100]}): "
                          "augpipe inspect --verify lists the damage") from None


def _plan(ds, fmt: str, options: dict) -> dict[tuple, str]:
    """Every row's files, worked out before anything is written, from the columns names come
    from. Returns {(source, path): name} for the rows whose files would collide with another's
    (by name, or by case alone): each gets a short hash of its source path. Anything still
    colliding, or a name that would leave the folder, is refused in one line."""
    columns = ["image.path", "source", *(["label"] if fmt == "imagefolder" else [])]
    rows = []  # (split, key, name)
    for shard in ds.manifest.shards:
        for row in _read_names(ds, shard, columns):
            rows.append((shard["split"], _key(row), _name(fmt, row, ds.classes)))
    owner: dict[str, int] = {}
    folders: set[str] = set()
    clash: set[int] = set()
    for i, (split, key, name) in enumerate(rows):
        _check_inside(name, key[0])
        for dest in _dests(fmt, split, name, options):
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
        for dest in _dests(fmt, split, renamed.get(key, name), options):
            _check_inside(dest, key[0])
            j = final.setdefault(dest.casefold(), i)
            if j != i:
                raise SourceError(f"{rows[j][1][0]} and {key[0]} would both be written to {dest}: "
                                  "export cannot name them apart")
    return renamed


def _key(row: dict) -> tuple:
    return row["source"], (row.get("image") or {}).get("path")


def _name(fmt: str, row: dict, classes: list[str]) -> str:
    """A row's name in the format's image folder; imagefolder's begins with the class folder."""
    name = file_name(row)
    if fmt == "imagefolder":
        label = row.get("label")
        folder = classes[label] if label is not None else "(unlabelled)"
        parts = name.split("/")
        if len(parts) > 1 and parts[0] == folder:  # the source's own class folder
            parts.pop(0)
        name = "/".join([folder, *parts])
    return name


def _dests(fmt: str, split: str, name: str, options: dict) -> list[str]:
    """The files a row's name becomes, relative to --out: the image first."""
    s = SPLIT_DIR[split]
    if fmt == "yolo":
        return [f"images/{s}/{name}", f"labels/{s}/{_stem(name)}.txt"]
    if fmt == "voc":
        flat = _flat(name)
        return [f"JPEGImages/{flat}{PurePosixPath(name).suffix}", f"Annotations/{flat}.xml"]
    if fmt == "masks":
        return [f"{s}/images/{name}", f"{s}/masks/{_stem(name)}.png"]
    if fmt == "coco":
        return [_coco_image(options["coco_layout"], split, name)]
    return [f"{s}/{name}"]  # imagefolder


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


def _rows(ds, fmt: str, renamed: dict, progress: bool) -> Iterator[tuple[str, dict, str]]:
    """(split, row, name) for every row, a row group at a time."""
    import pyarrow.parquet as pq
    from tqdm import tqdm

    total = sum(s["rows"] for s in ds.manifest.shards)
    with tqdm(total=total, unit="row", desc="export", disable=not progress, leave=False) as bar:
        for shard in ds.manifest.shards:
            try:
                reader = pq.ParquetFile(ds.open(shard["name"]))
                for group in range(reader.metadata.num_row_groups):
                    for row in reader.read_row_group(group).to_pylist():
                        yield shard["split"], row, renamed.get(_key(row)) or _name(fmt, row, ds.classes)
                        bar.update(1)
            except OSError as exc:
                raise SourceError(f"{shard['name']} cannot be read ({str(exc).splitlines()[0][:100]}): "
                                  "augpipe inspect --verify lists the damage") from None


def file_name(row: dict) -> str:
    """The row's file name, without the source layout's split and image folders."""
    parts = list(PurePosixPath(row["image"]["path"] or f"{row['source']}").parts)
    while len(parts) > 1 and _LAYOUT_DIR.fullmatch(parts[0]):
        parts.pop(0)
    return "/".join(parts)


def _stem(name: str) -> str:
    return str(PurePosixPath(name).with_suffix(""))


def _flat(name: str) -> str:
    """VOC's folders are flat, and ImageSets' lines are split at whitespace by its readers (the
    devkit's, augpipe's): `a/b c.jpg` is `a__b_c`."""
    return re.sub(r"\s", "_", _stem(name).replace("/", "__"))


def _objects(row: dict) -> list[tuple[list[float], int, bytes | None]]:
    objects = row.get("objects") or {}
    masks = objects.get("mask") or [None] * len(objects.get("bbox") or [])
    return [(list(b), int(c), (m or {}).get("bytes")) for b, c, m in
            zip(objects.get("bbox") or [], objects.get("category") or [], masks)]


def _mask(mask_png: bytes):
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(mask_png)) as im:
        return (np.asarray(im) > 0).astype(np.uint8)


def _rings(mask) -> list:
    """The outer outline of each 8-connected part of a mask, on the pixels' edges: (N, 2) int
    arrays of pixel corners, one vertex a turn. Traced at twice the size, where a contour point
    on a left or top edge is even and one on a right or bottom edge odd, so ceil(p / 2) is the
    pixel corner it stands for (diagonal steps, at inner corners and where parts touch
    diagonally, fall on one corner)."""
    import cv2
    import numpy as np

    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return []
    part = np.pad(mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1], 1)  # the mask's extent, and a margin
    double = np.repeat(np.repeat(part, 2, axis=0), 2, axis=1)
    contours, _ = cv2.findContours(double, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    rings = []
    for contour in contours:
        p = (contour.reshape(-1, 2) + 1) // 2 + [cols[0] - 1, rows[0] - 1]
        p = p[np.any(p != np.roll(p, 1, axis=0), axis=1)]
        before, after = np.roll(p, 1, axis=0), np.roll(p, -1, axis=0)
        turn = (p - before)[:, 0] * (after - p)[:, 1] - (p - before)[:, 1] * (after - p)[:, 0]
        p = p[turn != 0]
        if len(p) >= 4:
            rings.append(p)
    return rings


def _filled(rings, shape):
    """The pixels the rings cover, filled as pycocotools and augpipe's readers fill polygons
    (by the pixels' centres)."""
    import numpy as np

    from augpipe.targets.boxes import fill_polygon

    out = np.zeros(shape, np.uint8)
    for ring in rings:
        part = np.zeros(shape, np.uint8)
        fill_polygon(part, ring.astype(np.float64))
        out |= part
    return out


def _coco_segmentation(mask) -> list[list[int]] | dict:
    """COCO polygons when they give back exactly the mask's pixels, else compressed RLE (a mask
    with a hole, or an empty one)."""
    rings = _rings(mask)
    if rings and (_filled(rings, mask.shape) == mask).all():
        return [ring.reshape(-1).tolist() for ring in rings]
    return {"size": list(mask.shape), "counts": _rle_string(mask)}


def _rle_string(mask) -> str:
    """A mask as COCO's compressed RLE (pycocotools' rleToString): runs column by column,
    background first; from the fourth run on each is written as the change from the run two
    before, in 5-bit groups from character 48, 0x20 marking that another group follows."""
    import numpy as np

    flat = np.asarray(mask, np.uint8).T.reshape(-1)
    edges = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate([[0], edges, [len(flat)]])).tolist()
    if flat[0]:
        counts.insert(0, 0)
    text = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            text.append(chr((c | 0x20 if more else c) + 48))
    return "".join(text)


def _is_box(mask, box) -> bool:
    """The mask is just its box filled (as a reader fills the box of an object without a
    segment), to within a pixel of the box's edges."""
    import numpy as np

    ys, xs = np.nonzero(mask)
    if not len(xs):
        return False
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    x, y, w, h = box
    return len(xs) == (x1 - x0) * (y1 - y0) and max(abs(x0 - x), abs(x1 - x - w), abs(y0 - y), abs(y1 - y - h)) <= 1


def _yolo_polygon(mask, box) -> list[float]:
    """One polygon for a YOLO segment line, in pixels: the box's corners for a mask that is its
    box (exactly the box again), else the mask's outline on its pixels' edges. A mask of several
    parts has its outlines joined, largest first, each by a seam there and back between their
    nearest corners (as ultralytics joins COCO's parts): the seam covers no pixel, and the
    polygon's extent is the mask's. Holes are not carried (a YOLO line has one ring)."""
    import numpy as np

    x, y, w, h = box
    rings = _rings(mask) if mask is not None and not _is_box(mask, box) else []
    if not rings:
        return [x, y, x + w, y, x + w, y + h, x, y + h]
    rings.sort(key=lambda r: -_area(r))
    joined = rings[0]
    for ring in rings[1:]:
        gaps = ((joined[:, None, :] - ring[None, :, :]) ** 2).sum(axis=2)
        i, j = np.unravel_index(int(gaps.argmin()), gaps.shape)
        part = np.concatenate([ring[j:], ring[:j + 1]])
        joined = np.concatenate([joined[:i + 1], part, joined[i:]])
    return joined.reshape(-1).astype(float).tolist()


def _area(ring) -> float:
    x, y = ring[:, 0].astype(float), ring[:, 1].astype(float)
    return abs(float((x * (y.take(range(1, len(y) + 1), mode="wrap")) -
                      y * (x.take(range(1, len(x) + 1), mode="wrap"))).sum())) / 2


# ---------------------------------------------------------------- the formats

def _yolo(ds, store, rows, task: str) -> dict:
    counts = defaultdict(int)
    for split, row, name in rows:
        store.write_bytes(f"images/{SPLIT_DIR[split]}/{name}", row["image"]["bytes"], sync=False)
        w, h = row["width"], row["height"]
        lines = []
        for (x, y, bw, bh), c, mask in _objects(row):
            if task == "segment":
                points = _yolo_polygon(None if mask is None else _mask(mask), (x, y, bw, bh))
                lines.append(f"{c} " + " ".join(f"{v / (w if i % 2 == 0 else h):.6f}" for i, v in enumerate(points)))
            else:
                lines.append(f"{c} {(x + bw / 2) / w:.6f} {(y + bh / 2) / h:.6f} {bw / w:.6f} {bh / h:.6f}")
        store.write_bytes(f"labels/{SPLIT_DIR[split]}/{_stem(name)}.txt", "".join(f"{ln}\n" for ln in lines).encode(),
                          sync=False)
        counts[split] += 1
    import yaml

    # no `path`: ultralytics then resolves these against the yaml's own folder, from any directory
    splits = {SPLIT_DIR[s]: f"images/{SPLIT_DIR[s]}" for s in counts}
    # ultralytics requires train: and val: entries: a split the dataset lacks names another's images
    first = next(iter(splits.values()), "images/train")
    train = splits.pop("train", first)
    splits = {"train": train, "val": splits.pop("val", train), **splits}
    data = {**splits, "names": dict(enumerate(ds.classes)), "nc": len(ds.classes)}
    store.write_bytes("data.yaml", yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode())
    return {"images": dict(counts)}


def _category_ids(ds) -> list[int]:
    """The source's COCO category ids when expand recorded them (a COCO source), else 1..N."""
    ids = ds.manifest.category_ids
    if isinstance(ids, list) and len(ids) == len(ds.classes) and len(set(ids)) == len(ids) \
            and all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        return ids
    return list(range(1, len(ds.classes) + 1))


def _coco(ds, store, rows, layout: str) -> dict:
    ids_of = _category_ids(ds)
    categories = [{"id": ids_of[i], "name": n, "supercategory": "none"} for i, n in enumerate(ds.classes)]
    books: dict[str, dict] = {}
    for split, row, name in rows:
        book = books.setdefault(split, {"images": [], "annotations": [], "categories": categories})
        store.write_bytes(_coco_image(layout, split, name), row["image"]["bytes"], sync=False)
        image_id = len(book["images"]) + 1
        book["images"].append({"id": image_id, "file_name": name, "width": row["width"], "height": row["height"]})
        crowd = (row.get("objects") or {}).get("iscrowd") or []
        ids = (row.get("objects") or {}).get("id") or []
        for k, (box, c, mask_png) in enumerate(_objects(row)):
            annotation = {"id": ids[k] if k < len(ids) else None, "image_id": image_id, "category_id": ids_of[c],
                          "bbox": [round(v, 3) for v in box], "area": round(box[2] * box[3], 3),
                          "iscrowd": int(crowd[k]) if k < len(crowd) and crowd[k] is not None else 0}
            if mask_png is not None:
                mask = _mask(mask_png)
                annotation["area"] = int(mask.sum())
                annotation["segmentation"] = _coco_segmentation(mask)
            else:
                annotation["segmentation"] = []
            book["annotations"].append(annotation)
    for split, book in books.items():
        _number(book["annotations"])
        store.write_bytes(f"annotations/instances_{SPLIT_DIR[split]}.json",
                          json.dumps(book, ensure_ascii=False).encode())
    return {"images": {s: len(b["images"]) for s, b in books.items()}}


def _number(annotations: list[dict]) -> None:
    """The objects' own ids when they are unique and positive in the file (COCOeval takes id 0
    for no match), else 1, 2, 3, … (an expanded copy repeats its original's ids)."""
    ids = [a["id"] for a in annotations]
    if all(isinstance(i, int) and i > 0 for i in ids) and len(set(ids)) == len(ids):
        return
    for k, annotation in enumerate(annotations, start=1):
        annotation["id"] = k


def _coco_image(layout: str, split: str, name: str) -> str:
    return f"images/{SPLIT_DIR[split]}/{name}" if layout == "images" else f"{SPLIT_DIR[split]}/{name}"


def _voc_box(box, width: int, height: int, zero_based: bool) -> tuple:
    """The devkit's convention: pixels numbered from 1, xmax the last pixel inside, so xmin =
    x0 + 1 and xmax = x1, rounded to the nearest pixel (at least one pixel wide); or 0-based,
    the shards' own values (x0, y0, x1, y1)."""
    x, y, w, h = box
    if zero_based:
        return x, y, x + w, y + h
    # a box of less than a pixel at the right or bottom edge rounds to that edge: kept a pixel
    # wide inside the image, never xmin > xmax
    x0, y0 = min(max(_nearest(x), 0), width - 1), min(max(_nearest(y), 0), height - 1)
    x1, y1 = min(max(_nearest(x + w), x0 + 1), width), min(max(_nearest(y + h), y0 + 1), height)
    return x0 + 1, y0 + 1, x1, y1


def _nearest(v: float) -> int:
    return math.floor(v + 0.5)  # halves up: 10.5 → 11


def _voc(ds, store, rows, zero_based: bool) -> dict:
    from xml.sax.saxutils import escape

    sets = defaultdict(list)
    for split, row, name in rows:
        stem = _flat(name)
        suffix = PurePosixPath(name).suffix
        store.write_bytes(f"JPEGImages/{stem}{suffix}", row["image"]["bytes"], sync=False)
        objects = "".join(
            f"<object><name>{escape(ds.classes[c])}</name><difficult>0</difficult><bndbox>"
            f"<xmin>{x0:g}</xmin><ymin>{y0:g}</ymin><xmax>{x1:g}</xmax><ymax>{y1:g}</ymax></bndbox></object>"
            for box, c, _ in _objects(row)
            for x0, y0, x1, y1 in [_voc_box(box, row["width"], row["height"], zero_based)])
        xml = (f"<annotation><filename>{escape(stem + suffix)}</filename><size><width>{row['width']}</width>"
               f"<height>{row['height']}</height><depth>3</depth></size>{objects}</annotation>\n")
        store.write_bytes(f"Annotations/{stem}.xml", xml.encode("utf-8"), sync=False)
        sets[split].append(stem)
    for split, stems in sets.items():
        store.write_bytes(f"ImageSets/Main/{SPLIT_DIR[split]}.txt", "".join(f"{s}\n" for s in stems).encode())
    _voc_labels(store, ds.classes)
    return {"images": {s: len(v) for s, v in sets.items()}}


def _voc_labels(store, classes: list[str]) -> None:
    """datumaro's labelmap.txt (`name:color:parts:actions`, colour and the rest left empty); a name
    that line cannot carry (a ':', or spaces at its ends, which it strips) goes to datumaro's
    dataset_meta.json instead, which it reads first and which holds any name."""
    if any(":" in c or c != c.strip() or c.startswith("#") for c in classes):
        store.write_bytes("dataset_meta.json", json.dumps({"labels": list(classes)}, ensure_ascii=False).encode())
        return
    store.write_bytes("labelmap.txt", "".join(f"{c}:::\n" for c in classes).encode())


def _imagefolder(ds, store, rows) -> dict:
    counts = defaultdict(int)
    for split, row, name in rows:  # name: {class}/{the path below the class folder}
        store.write_bytes(f"{SPLIT_DIR[split]}/{name}", row["image"]["bytes"], sync=False)
        counts[split] += 1
    return {"images": dict(counts)}


def _masks(ds, store, rows) -> dict:
    counts = defaultdict(int)
    for split, row, name in rows:
        store.write_bytes(f"{SPLIT_DIR[split]}/images/{name}", row["image"]["bytes"], sync=False)
        store.write_bytes(f"{SPLIT_DIR[split]}/masks/{_stem(name)}.png", row["annotation"]["bytes"], sync=False)
        counts[split] += 1
    if ds.classes:
        store.write_bytes("classes.txt", "".join(f"{c}\n" for c in ds.classes).encode())
    return {"images": dict(counts)}
