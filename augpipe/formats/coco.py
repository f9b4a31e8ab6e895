"""COCO object detection and keypoints: `annotations/instances_<split>.json`, or Roboflow's
`<split>/_annotations.coco.json` beside the images of each split folder.

- The split: from the file name (`instances_train2017` → train, `instances_val*` → validation,
  `instances_test*` → test, anything else → decided by hashing), or Roboflow's split folder.
- An image's `file_name` is looked for in the folder the JSON names (`train2017/`,
  `images/train2017/`; Roboflow: the JSON's own folder), then from the root, then as the end of
  any image's path (unique); an absolute path from another machine by its trailing parts.
- Categories sorted by id become indices 0..n-1. Roboflow's placeholder (id 0, supercategory
  `none`) is dropped unless an annotation uses it. Several JSONs share one list of categories.
- `bbox` is [x, y, w, h] in pixels, checked against `images[].width/height` when given: within
  1 px of the image it is clipped, further out the image is skipped.
- `segmentation`: polygons → ("polygon", ...), RLE → ("rle", {"size", "counts"}) as written
  (decoded in the worker); absent or [] → no mask (the worker fills the box).
- `iscrowd` objects are kept like the others: their box, their (RLE) mask, and the flag itself
  (1 when `iscrowd` is 1 or true, else 0), in the shards' `objects.iscrowd`.
- An image in the JSON without annotations has zero objects; an image on disk that no JSON lists
  is skipped, "not in the annotation file".
- An RLE's `size` is two whole numbers of pixels (not NaN, infinity or 2.5); its counts are
  decoded in the worker, bounded by the image's pixels.
- Keypoints (COCO's person keypoints): when a category carries `keypoints` (names) the source
  is a keypoints dataset, its names and `skeleton` (1-based pairs, kept 0-based) the dataset's;
  categories with different keypoints are refused. Each annotation's `keypoints` is
  [x, y, v] × K in pixels (v 0 not labelled, 1 hidden, 2 visible); absent or [] is K keypoints
  not labelled; another length, a value that is not a number, or v not 0, 1 or 2 skips the image,
  saying which box. `num_keypoints` is not read (it is the count of v > 0).
- Boxes, segmentations and keypoints are on the upright image, EXIF orientation applied, as detectron2
  (`read_image`) and mmdetection read COCO; the worker turns the image, not the annotations.

Written (`augpipe export --format coco`): images/{split}/… (--coco-layout split: {split}/…),
annotations/instances_{split}.json, with the source's category ids when it was COCO (else 1..N)
and the objects' own ids when they are unique. Instance masks as polygons traced on their pixels'
edges (every vertex a pixel corner), so that, filled by the pixel-centre rule (pycocotools', and
augpipe's readers'), they give back exactly the mask's pixels when it has no hole; RLE where
polygons would not give the mask back. A keypoints dataset's annotations carry `keypoints`
[x, y, v] × K (pixels, rounded to 0.001) and `num_keypoints`, its categories the keypoints' names
and `skeleton` (1-based).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from augpipe.errors import SourceError, UsageError
from augpipe.formats.base import Objects, Option, Scan, SourceFile, is_image, split_of_folder
from augpipe.formats.common import (
    SPLIT_DIR, Flaw, check_box, file_name, finish, flaw_problems, image_size, join, mask_of, number, parent,
    read_files, rings, size_text, split_of_path, text, usable,
)
from augpipe.health.base import Problem

name = "coco"
kinds = ("detection", "keypoints")

INSTANCES = re.compile(r"^annotations/instances_([^/]+)\.json$")
ROBOFLOW = "_annotations.coco.json"
SPLIT_PREFIXES = (("train", "train"), ("val", "validation"), ("test", "test"))


def annotation_files(entries: list) -> list[str]:
    return [e.name for e in entries if INSTANCES.match(e.name)
            or (e.name.rsplit("/", 1)[-1] == ROBOFLOW and e.name.count("/") <= 1)]


def matches(entries: list) -> bool:
    return bool(annotation_files(entries))


@dataclass
class _File:
    name: str
    split: str | None
    folders: list[str]  # where its images are, most likely first
    images: list = field(default_factory=list)
    annotations: list = field(default_factory=list)
    categories: list = field(default_factory=list)


def read(store, entries: list, layout: str = "auto") -> Scan:
    skipped: list[tuple[str, str]] = []
    entries = usable(entries, skipped)
    names = annotation_files(entries)
    if not names:
        raise SourceError(f"{store.display()}: no COCO annotation file (annotations/instances_<split>.json, or "
                          f"{ROBOFLOW} in a split folder)")
    raw = read_files(store, names)
    read_ok, failed = _parsed(names, raw)
    if not read_ok:
        first = names[0]
        more = f" (and {len(names) - 1} more annotation files)" if len(names) > 1 else ""
        raise SourceError(f"{store.display(first)}: {failed[first]}{more}")
    skipped += failed.items()
    classes, index, supercategories = _categories(read_ok)
    kind_options = _keypoint_options(read_ok)
    count = len(kind_options["keypoint_names"]) if kind_options else None  # keypoints per object
    images = {e.name: e for e in entries if is_image(e.name)}
    problems = [Problem("annotation_unreadable", n, detail=why) for n, why in failed.items()]
    claimed, twice = _claimed(read_ok, index, _Finder(images), skipped, count, problems)
    files = []
    for path, (name, split, objects) in claimed.items():
        if path in twice:
            continue
        if isinstance(objects, str):
            skipped.append((path, objects))
            continue
        e = images[path]
        files.append(SourceFile(path, split, None, e.size, e.mtime_ns, objects))
    unclaimed = _unclaimed(images, claimed, failed)
    skipped += unclaimed
    problems += [Problem("no_labels", p, detail=why) for p, why in unclaimed]
    found = finish(store, files, skipped, classes, "keypoints" if kind_options else "detection", "coco",
                   [(n, d) for n, d in raw.items() if isinstance(d, bytes)], problems=problems)
    found.category_ids = sorted(index, key=index.get)  # the export writes them back, and the supercategories
    found.category_supercategories = supercategories
    found.kind_options = kind_options or {}
    return found


def _parsed(names: list[str], raw: dict) -> tuple[list[_File], dict[str, str]]:
    """The annotation files that parse, and why each other one cannot be read."""
    read_ok: list[_File] = []
    failed: dict[str, str] = {}  # JSON name → why it cannot be read
    for name in names:
        f = _describe(name)
        if isinstance(raw[name], str):
            failed[name] = raw[name]
            continue
        try:
            _parse(f, raw[name])
        except ValueError as exc:
            failed[name] = str(exc)
            continue
        read_ok.append(f)
    return read_ok, failed


def _claimed(read_ok: list[_File], index, finder, skipped: list, count, problems: list):
    """image → (json, split, objects or reason), and the images listed more than once."""
    claimed: dict[str, tuple[str, str | None, Objects | str]] = {}
    twice: set[str] = set()
    for f in read_ok:
        for path, objects in _objects(f, index, finder, skipped, count, problems):
            if path in claimed:
                first = claimed[path][0]
                twice.add(path)
                why = f"listed twice in {f.name}" if first == f.name else f"listed in both {first} and {f.name}"
                skipped.append((path, why))
                problems.append(Problem("conflicting_labels", path, f.name, f"{why}: two sets of annotations"))
                continue
            claimed[path] = (f.name, f.split, objects)
    return claimed, twice


def _unclaimed(images: dict, claimed: dict, failed: dict[str, str]) -> list[tuple[str, str]]:
    """Images no annotation file lists, each with why."""
    failed_folders = [(fo, n) for n in failed for fo in _describe(n).folders]
    out = []
    for path in images:
        if path not in claimed:
            owner = next((n for fo, n in failed_folders if path.startswith(fo + "/") or (not fo and "/" not in path)),
                         None)
            out.append((path, f"its annotation file {owner} cannot be read" if owner else
                        "not in the annotation file"))
    return out


def _describe(name: str) -> _File:
    m = INSTANCES.match(name)
    if m:
        tag = m.group(1)
        split = next((s for prefix, s in SPLIT_PREFIXES if tag.lower().startswith(prefix)), None)
        return _File(name, split, [tag, f"images/{tag}"])
    folder = parent(name)
    return _File(name, split_of_folder(folder) if folder else split_of_path(name), [folder])


def _parse(f: _File, data: bytes) -> None:
    try:
        doc = json.loads(text(data, f.name))
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise ValueError("not valid JSON (nested too deeply)") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise ValueError("not a COCO annotation file (no \"images\" list)")
    for key in ("annotations", "categories"):
        if not isinstance(doc.get(key, []), list):
            raise ValueError(f"not a COCO annotation file (\"{key}\" is not a list)")
    f.images, f.annotations, f.categories = doc["images"], doc.get("annotations", []), doc.get("categories", [])
    for i, c in enumerate(f.categories):
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or isinstance(c.get("id"), bool) \
                or not isinstance(c.get("name"), str):
            raise ValueError(f"categories[{i}] is not {{\"id\": int, \"name\": str}}")


def _categories(files: list[_File]) -> tuple[list[str], dict[int, int], list[str]]:
    """Every JSON's categories, one list: sorted by id, indices 0..n-1; and each one's supercategory
    (as text; "none" where there is none)."""
    known: dict[int, tuple[dict, str]] = {}
    for f in files:
        for c in f.categories:
            seen = known.get(c["id"])
            if seen is not None and seen[0]["name"] != c["name"]:
                raise SourceError(f"category {c['id']} is '{seen[0]['name']}' in {seen[1]} but '{c['name']}' in "
                                  f"{f.name}: the annotation files must share their categories")
            known.setdefault(c["id"], (c, f.name))
    used = {a.get("category_id") for f in files for a in f.annotations
            if isinstance(a, dict) and _hashable(a.get("category_id"))}
    placeholder = known.get(0)
    if placeholder is not None and str(placeholder[0].get("supercategory", "")).lower() == "none" and 0 not in used:
        del known[0]  # Roboflow's dataset-wide category, the parent of the real ones
    ids = sorted(known)
    return ([known[i][0]["name"] for i in ids], {cid: k for k, cid in enumerate(ids)},
            [str(known[i][0].get("supercategory") or "none") for i in ids])


class _Finder:
    """An image file for a `file_name`."""

    def __init__(self, images: dict):
        self.images = images
        self.by_end: dict[str, list[str]] = {}
        self.folders: set[str] = set()
        for path in images:
            parts = path.split("/")
            for i in range(len(parts)):
                self.by_end.setdefault("/".join(parts[i:]), []).append(path)
                if i:
                    self.folders.add("/".join(parts[:i]))

    def find(self, file_name: str, folders: list[str]) -> tuple[str | None, str]:
        """(path, "") or (None, the path it was expected at)."""
        absolute = file_name.startswith("/") or bool(re.match(r"^[A-Za-z]:[\\/]", file_name))
        name = file_name.replace("\\", "/").lstrip("/")
        while name.startswith("./"):
            name = name[2:]
        for folder in [*folders, ""]:
            if join(folder, name) in self.images:
                return join(folder, name), ""
        parts = name.split("/")
        for i in range(len(parts) if absolute else 1):  # another machine's path: its trailing parts
            hits = self.by_end.get("/".join(parts[i:]), [])
            near = [h for h in hits if any(fo and h.startswith(fo + "/") for fo in folders)]
            if len(near) == 1:
                return near[0], ""
            if len(hits) == 1:
                return hits[0], ""
            if hits:
                break
        home = next((fo for fo in folders if fo in self.folders), "")
        return None, join(home, name)


def _objects(f: _File, index: dict[int, int], finder: _Finder, skipped: list, count: int | None, problems: list):
    """(image path, Objects or the reason it is skipped) for each image the JSON lists; every
    problem of its annotations in `problems`."""
    by_image: dict = {}
    info: dict = {}
    order = []

    def bad(where: str, why: str, said: str):
        skipped.append((f.name, said))
        problems.append(Problem("annotation_unreadable", f.name, where, why))

    for i, im in enumerate(f.images):
        if not isinstance(im, dict) or not isinstance(im.get("file_name"), str) or not _hashable(im.get("id")):
            bad(f"images[{i}]", "no id or file_name", f"images[{i}] has no id or file_name")
            continue
        if im["id"] in info:
            bad(f"images[{i}]", f"id {im['id']} repeated", f"images[{i}]: id {im['id']} repeated")
            continue
        info[im["id"]] = im
        by_image[im["id"]] = []
        order.append(im["id"])
    for i, a in enumerate(f.annotations):
        if not isinstance(a, dict) or not _hashable(a.get("image_id")) or a.get("image_id") not in by_image:
            what = a.get("image_id") if isinstance(a, dict) else None
            bad(f"annotations[{i}]", f"image_id {what!r} is not in images",
                f"annotations[{i}]: image_id {what!r} is not in images")
            continue
        by_image[a["image_id"]].append(a)
    for image_id in order:
        im = info[image_id]
        path, expected = finder.find(im["file_name"], f.folders)
        if path is None:
            skipped.append((expected, f"listed in {f.name} but not found"))
            problems.append(Problem("annotation_unreadable", expected, f.name, "listed but not found"))
            continue
        flaws: list = []
        yield path, _image_objects(by_image[image_id], im, index, count, flaws)
        problems += flaw_problems(path, f.name, flaws)


def _hashable(v) -> bool:
    return isinstance(v, (int, str)) and not isinstance(v, bool)


def _image_objects(annotations: list, im: dict, index: dict[int, int], count: int | None,
                   flaws: list | None = None) -> Objects | str:
    """`count`: the keypoints each object has (None: a detection source). The reason an image is
    skipped is its first bad annotation; `flaws` gets ("annotation id N (object k)", Flaw) for
    every one, and for each box within 1 px over the image's edge (the reader clips it)."""
    from augpipe.targets.boxes import overhang

    size = image_size(im.get("width"), im.get("height"))
    boxes, categories, ids, segments, crowd, points = [], [], [], [], [], []
    first = None
    for k, a in enumerate(annotations):
        read = _annotation(k, a, size, index, count)
        at = f"annotation id {_short(a.get('id'))} (object {k})"
        if isinstance(read, str):
            first = first or read
            if flaws is None:
                return first
            flaws.append((at, read))
            continue
        box, segment, keypoints = read
        if flaws is not None and size is not None and box != tuple(a["bbox"]):
            flaws += [(at, Flaw("box_outside", why)) for why in overhang(a["bbox"], size)]
        if count is not None:
            points.append(keypoints)
        boxes.append(box)
        categories.append(index[a["category_id"]])
        ids.append(_whole(a.get("id"), k))
        segments.append(segment)
        crowd.append(1 if a.get("iscrowd") in (1, True) else 0)
    if first is not None:
        return first
    return Objects(tuple(boxes), tuple(categories), tuple(ids),
                   tuple(segments) if any(s is not None for s in segments) else None,
                   iscrowd=tuple(crowd) if any(crowd) else (),
                   fields={} if count is None else {"keypoints": tuple(points)},
                   canvas=None if size is None else (int(size[0]), int(size[1])))


def _annotation(k: int, a: dict, size, index: dict[int, int], count: int | None):
    """(box, segment, keypoints) of one annotation, or the Flaw that skips its image."""
    cid = a.get("category_id")
    if not _hashable(cid) or cid not in index:
        return Flaw("unknown_class", f"box {k}: category_id {cid!r} is not in categories")
    bbox = a.get("bbox")
    values = [number(v) for v in bbox] if isinstance(bbox, list) else []
    if len(values) != 4 or any(v is None for v in values):
        return Flaw("annotation_unreadable", f"box {k}: bbox is not 4 numbers ({_short(bbox)})")
    box, why = check_box(k, tuple(values), size)
    if why:
        return why
    segment = _segment(a.get("segmentation"), size)
    if isinstance(segment, str):
        return Flaw("annotation_unreadable", f"box {k}: {segment}")
    keypoints = None
    if count is not None:
        keypoints = _keypoints(a.get("keypoints"), count)
        if isinstance(keypoints, str):
            return Flaw("annotation_unreadable", f"box {k}: {keypoints}")
    return box, segment, keypoints


def _keypoints(values, count: int) -> tuple[float, ...] | str:
    """An annotation's `keypoints` as a flat (x, y, v) × count tuple in pixels, or why it cannot
    be used; absent or [] is `count` keypoints not labelled (v 0)."""
    if values is None or values == []:
        return (0.0,) * 3 * count
    numbers = [number(v) for v in values] if isinstance(values, list) else []
    if len(numbers) != 3 * count:
        return f"keypoints is not 3 × {count} numbers, x y v ({_short(values)})"
    for j in range(count):
        x, y, v = numbers[3 * j:3 * j + 3]
        if x is None or y is None or v is None or (v and not (math.isfinite(x) and math.isfinite(y))):
            return f"keypoint {j} is not numbers ({_short(values[3 * j:3 * j + 3])})"
        if v not in (0, 1, 2):
            return f"keypoint {j}: visibility {_short(values[3 * j + 2])}, not 0, 1 or 2"
    return tuple(numbers)


def _keypoint_options(files: list[_File]) -> dict | None:
    """The keypoints' names and skeleton (0-based) that the categories carry (COCO's person
    keypoints), or None when none does; categories with different keypoints are refused."""
    found: dict[tuple, str] = {}  # (names, skeleton) → the first category carrying them
    for f in files:
        for c in f.categories:
            if c.get("keypoints") not in (None, []):
                found.setdefault(_category_keypoints(c, f.name), f"category {c['id']} of {f.name}")
    if not found:
        return None
    if len(found) > 1:
        (_, first), (_, second) = list(found.items())[:2]
        raise SourceError(f"{first} and {second} have different keypoints: augpipe reads one list of keypoints "
                          "for the whole dataset")
    names, skeleton = next(iter(found))
    return {"keypoint_names": list(names), "skeleton": [list(p) for p in skeleton], "flip_idx": None}


def _category_keypoints(c: dict, where: str) -> tuple[tuple[str, ...], tuple[tuple[int, int], ...]]:
    names, skeleton = c.get("keypoints"), c.get("skeleton") or []
    what = f"{where}: category {c['id']}"
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(set(names)) < len(names):
        raise SourceError(f"{what}: keypoints is not a list of different names ({_short(names)})")
    pairs = []
    for pair in skeleton if isinstance(skeleton, list) else [skeleton]:
        if not (isinstance(pair, list) and len(pair) == 2 and all(_whole(i, 0) == i and 1 <= _whole(i, 0) <= len(names)
                                                                   for i in pair)):
            raise SourceError(f"{what}: skeleton pair {_short(pair)} is not two keypoints' numbers, 1 to {len(names)}")
        pairs.append((_whole(pair[0], 0) - 1, _whole(pair[1], 0) - 1))
    return tuple(names), tuple(pairs)


def _segment(seg, size):
    """None, ("polygon", ...), ("rle", {...}), or the reason it cannot be used."""
    if seg is None or seg == [] or seg == {}:
        return None
    if isinstance(seg, list):
        polygons = []
        for p in seg:
            values = [number(v) for v in p] if isinstance(p, list) else [None]
            if any(v is None or not math.isfinite(v) for v in values) or len(values) < 6 or len(values) % 2:
                return f"segmentation polygon is not 3 or more (x, y) numbers ({_short(p)})"
            polygons.append(tuple(values))
        return ("polygon", tuple(polygons))
    if isinstance(seg, dict) and "counts" in seg and isinstance(seg.get("size"), list) and len(seg["size"]) == 2:
        h, w = (_side(v) for v in seg["size"])
        if not isinstance(seg["counts"], (str, list)) or h is None or w is None:
            return f"segmentation RLE is not {{size: [h, w], counts}} ({_short(seg)})"
        if size is not None and (float(w), float(h)) != size:
            return f"segmentation RLE is {size_text(w, h)}, the image {size_text(*size)}"
        return ("rle", {"size": [h, w], "counts": seg["counts"]})
    return f"segmentation is neither polygons nor RLE ({_short(seg)})"


MAX_SIDE = 1 << 31  # pixels: no image augpipe can decode is wider or taller


def _side(v) -> int | None:
    """An RLE mask's height or width: a whole number of pixels (7 or 7.0), else None (NaN,
    infinity, 2.5, a 400-digit integer)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if isinstance(v, float) and not (math.isfinite(v) and v.is_integer()):
        return None
    return int(v) if 0 < v < MAX_SIDE else None


def _short(v) -> str:
    t = json.dumps(v) if not isinstance(v, float) or math.isfinite(v) else str(v)
    return t if len(t) <= 60 else t[:57] + "..."


def _whole(value, default: int) -> int:
    """An annotation's id as an int: 7 and 7.0 alike; anything else, its position."""
    if isinstance(value, bool):
        return default
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) else default


# ---------------------------------------------------------------- writing

# --coco-layout: where each layout puts the images
LAYOUTS = {"images": "images/<split>/…", "split": "<split>/…"}
OPTIONS = {"coco_layout": Option("--coco-layout", LAYOUTS, "images is the default (datumaro's layout)")}
NAME_COLUMNS = ()


def options(given: dict, header, where: str) -> dict:
    layout = given.get("coco_layout") or "images"
    if layout not in LAYOUTS:
        raise UsageError(f"--coco-layout is {OPTIONS['coco_layout'].text()}, not '{layout}'")
    return {"coco_layout": layout}


def keeps_masks(options: dict) -> bool:
    return True


def image_name(row: dict, classes: list[str]) -> str:
    return file_name(row)


def files(split: str, name: str, options: dict) -> list[str]:
    return [f"images/{SPLIT_DIR[split]}/{name}" if options["coco_layout"] == "images" else f"{SPLIT_DIR[split]}/{name}"]


def _info() -> dict:
    """COCO's `info` block (pycocotools' `COCO.info()` reads it): who wrote the file, no date, so
    that the same shards give the same file."""
    from augpipe import __version__

    return {"description": "exported by augpipe", "version": __version__, "contributor": "augpipe"}


def write(store, items, header, options: dict) -> dict:
    ids_of = _category_ids(header)
    parents = _supercategories(header)
    categories = [{"id": ids_of[i], "name": n, "supercategory": parents[i], **_category_fields(header)}
                  for i, n in enumerate(header.classes)]
    books: dict[str, dict] = {}
    for item in items:
        book = books.setdefault(item.split, {"info": _info(), "licenses": [], "images": [], "annotations": [],
                                             "categories": categories})
        store.write_bytes(files(item.split, item.name, options)[0], item.data, sync=False)
        image_id = len(book["images"]) + 1
        book["images"].append({"id": image_id, "file_name": item.name, "width": item.width, "height": item.height})
        book["annotations"] += _annotations(item.target, image_id, ids_of)
    for split, book in books.items():
        _number(book["annotations"])
        store.write_bytes(f"annotations/instances_{SPLIT_DIR[split]}.json",
                          json.dumps(book, ensure_ascii=False).encode())
    return {"images": {s: len(b["images"]) for s, b in books.items()}}


def _supercategories(header) -> list[str]:
    """The source's supercategories when expand recorded them (a COCO source), else "none"."""
    given = header.category_supercategories
    if isinstance(given, list) and len(given) == len(header.classes) and all(isinstance(s, str) for s in given):
        return given
    return ["none"] * len(header.classes)


def _category_ids(header) -> list[int]:
    """The source's COCO category ids when expand recorded them (a COCO source), else 1..N."""
    ids = header.category_ids
    if isinstance(ids, list) and len(ids) == len(header.classes) and len(set(ids)) == len(ids) \
            and all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        return ids
    return list(range(1, len(header.classes) + 1))


def _annotations(objects: Objects, image_id: int, ids_of: list[int]) -> list[dict]:
    out = []
    segments = objects.segments or (None,) * len(objects.categories)
    for k, (box, c, segment) in enumerate(zip(objects.xywh(), objects.categories, segments)):
        annotation = {"id": objects.ids[k] if k < len(objects.ids) else None, "image_id": image_id,
                      "category_id": ids_of[c], "bbox": [round(v, 3) for v in box], "area": round(box[2] * box[3], 3),
                      "iscrowd": objects.iscrowd[k] if k < len(objects.iscrowd) else 0}
        if segment is not None:
            mask = mask_of(segment)
            annotation["area"] = int(mask.sum())
            annotation["segmentation"] = segmentation(mask)
        else:
            annotation["segmentation"] = []
        if "keypoints" in objects.fields:
            annotation.update(_keypoint_fields(objects.fields["keypoints"][k]))
        out.append(annotation)
    return out


def _category_fields(header) -> dict:
    """A keypoints dataset's category: its keypoints' names and skeleton (COCO's pairs count from 1)."""
    given = header.kind_options.get("keypoints")
    if not given:
        return {}
    return {"keypoints": list(given["keypoint_names"]), "skeleton": [[a + 1, b + 1] for a, b in given["skeleton"]]}


def _keypoint_fields(point: dict) -> dict:
    """An object's keypoints as the shards hold them ({x, y, visibility} lists) in COCO's
    [x, y, v] × K, with num_keypoints the labelled ones."""
    flat = [value for x, y, v in zip(point["x"], point["y"], point["visibility"])
            for value in (round(float(x), 3), round(float(y), 3), int(v))]
    return {"keypoints": flat, "num_keypoints": sum(1 for v in point["visibility"] if v > 0)}


def _number(annotations: list[dict]) -> None:
    """The objects' own ids when they are unique and positive in the file (COCOeval takes id 0
    for no match), else 1, 2, 3, … (an expanded copy repeats its original's ids)."""
    ids = [a["id"] for a in annotations]
    if all(isinstance(i, int) and i > 0 for i in ids) and len(set(ids)) == len(ids):
        return
    for k, annotation in enumerate(annotations, start=1):
        annotation["id"] = k


def segmentation(mask) -> list[list[int]] | dict:
    """COCO polygons when they give back exactly the mask's pixels, else compressed RLE (a mask
    with a hole, or an empty one)."""
    outlines = rings(mask)
    if outlines and (_filled(outlines, mask.shape) == mask).all():
        return [ring.reshape(-1).tolist() for ring in outlines]
    return {"size": list(mask.shape), "counts": rle_string(mask)}


def _filled(outlines, shape):
    """The pixels the rings cover, filled as pycocotools and augpipe's readers fill polygons
    (by the pixels' centres)."""
    import numpy as np

    from augpipe.targets.boxes import fill_polygon

    out = np.zeros(shape, np.uint8)
    for ring in outlines:
        part = np.zeros(shape, np.uint8)
        fill_polygon(part, ring.astype(np.float64))
        out |= part
    return out


def rle_string(mask) -> str:
    """A mask as COCO's compressed RLE (pycocotools' rleToString): runs column by column,
    background first; from the fourth run on each is written as the change from the run two
    before, in 5-bit groups from character 48, 0x20 marking that another group follows."""
    import numpy as np

    flat = np.asarray(mask, np.uint8).T.reshape(-1)
    edges = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate([[0], edges, [len(flat)]])).tolist()
    if flat[0]:
        counts.insert(0, 0)
    chars = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            chars.append(chr((c | 0x20 if more else c) + 48))
    return "".join(chars)
