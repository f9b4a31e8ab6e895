"""Pascal VOC detection: one XML a image, `X.xml` beside `X.jpg` (Roboflow's export, split
folders allowed), or VOC's own `Annotations/X.xml` beside `JPEGImages/X.jpg`.

- Coordinates are read as floats in the devkit's convention: xmin/ymin are 1-based pixel indices,
  xmax/ymax the last pixel inside, so the box's edges are x0 = xmin - 1, y0 = ymin - 1, x1 = xmax,
  y1 = ymax (an object filling a W×H image, 1 1 W H, is [0, 0, W, H]), as the devkit, detectron2
  and supervision read them. `zero_based` (`--voc-zero-based`) reads files written by tools that
  put 0-based edges in the same fields as written: [xmin, ymin, xmax - xmin, ymax - ymin].
- Checked against `<size>` when it gives one, after the convention is applied: within 1 px of the
  image clipped (a 0-based file read as 1-based has edges at -1), further out the image is skipped.
- Class names: every `object/name` of the images kept, sorted.
- `difficult` and `truncated` objects are kept like the others (the flags are not carried).
- Splits: `ImageSets/Main/{train,val,test}.txt` beside `JPEGImages/` when present (an image in
  `trainval.txt` only is split by hashing; an image in none of them is skipped: VOC annotates
  those for other tasks); otherwise a split folder above the image. The XML's `<filename>` is
  not used: the XML and the image pair by name.
- An image without its XML is skipped; an XML without its image is recorded.
- Boxes are on the upright image, EXIF orientation applied (as detectron2 and mmdetection read
  VOC); the worker turns the image, not the boxes.

Written (`augpipe export --format voc`): JPEGImages/…, Annotations/….xml (the devkit's 1-based
whole pixels, or --voc-zero-based), ImageSets/Main/{train,val,test}.txt, labelmap.txt. VOC's
folders are flat: `a/b c.jpg` is written as `a__b_c.jpg`.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import PurePosixPath

from augpipe.formats.base import Objects, Option, Scan, SourceFile, is_image
from augpipe.formats.common import (
    SPLIT_DIR, Flaw, check_box, file_name, finish, flaw_problems, image_size, join, parent, read_files, split_of_path,
    stem, text, usable, without_suffix,
)
from augpipe.health.base import Problem

name = "voc"
kinds = ("detection",)

SETS = (("train", "train"), ("val", "validation"), ("test", "test"))
MASK_FOLDERS = ("SegmentationClass", "SegmentationObject", "SegmentationClassAug")  # VOC's masks: not sources


def matches(entries: list) -> float | None:
    """The share of the images with their XML (None: no image has one)."""
    from augpipe.formats.common import share

    present = {e.name for e in entries}
    images = [n for n in present if is_image(n) and not any(p in MASK_FOLDERS for p in n.split("/")[:-1])]
    return share(sum(any(x in present for x in xml_candidates(i)) for i in images), len(images))


def xml_candidates(image: str) -> list[str]:
    folder = parent(image)
    out = [without_suffix(image) + ".xml"]
    if folder.rsplit("/", 1)[-1] == "JPEGImages":
        out.insert(0, join(join(parent(folder), "Annotations"), stem(image) + ".xml"))
    return out


def read(store, entries: list, layout: str = "auto", zero_based: bool = False) -> Scan:
    skipped: list[tuple[str, str]] = []
    entries = usable(entries, skipped)
    present = {e.name for e in entries}
    images = {e.name: e for e in entries if is_image(e.name)
              and not any(p in MASK_FOLDERS for p in e.name.split("/")[:-1])}
    problems: list[Problem] = []
    xml_of = _annotations_of(images, present, skipped, problems)
    roots = sorted({parent(parent(p)) for p in xml_of if parent(p).rsplit("/", 1)[-1] == "JPEGImages"})
    set_files = [join(r, f"ImageSets/Main/{name}.txt") for r in roots for name in ("train", "val", "test", "trainval")]
    set_files = [n for n in set_files if n in present]
    raw = read_files(store, sorted(set(xml_of.values())) + set_files)
    sets = _image_sets(raw, set_files, skipped)

    parsed: dict[str, list | str] = {}
    sizes: dict[str, tuple[float, float]] = {}
    for path, xml in sorted(xml_of.items()):
        split = _split(path, sets)
        if isinstance(split, str) and split not in ("train", "validation", "test"):
            skipped.append((path, split))
            if split.startswith("in both"):  # one image in two splits: leakage, once it is read
                problems.append(Problem("exact_leak", path, detail=f"listed {split}"))
            continue
        data = raw[xml]
        flaws: list = []
        parsed[path] = (split, Flaw("annotation_unreadable", f"{xml}: {data}") if isinstance(data, str)
                        else _parse(data, xml, zero_based, flaws, sizes))
        problems += flaw_problems(path, xml, flaws)
        if isinstance(parsed[path][1], str) and not flaws:
            problems.append(Problem(parsed[path][1].check, path, xml, parsed[path][1]))
    classes = sorted({name for _, objs in parsed.values() if not isinstance(objs, str) for name, _ in objs})
    index = {name: i for i, name in enumerate(classes)}
    files = []
    for path, (split, objs) in parsed.items():
        if isinstance(objs, str):
            skipped.append((path, objs))
            continue
        e = images[path]
        # <size> as given: only the health report's check of it reads it
        target = Objects(tuple(b for _, b in objs), tuple(index[n] for n, _ in objs), tuple(range(len(objs))),
                         canvas=sizes.get(xml_of[path]))
        files.append(SourceFile(path, split, None, e.size, e.mtime_ns, target))
    used = set(xml_of.values())
    orphans = [(e.name, "no image for this annotation file") for e in entries
               if e.name.endswith(".xml") and e.name not in used]
    skipped += orphans
    problems += [Problem("annotation_unreadable", name, detail=why) for name, why in orphans]
    return finish(store, files, skipped, classes, "detection", "voc",
                  [(n, d) for n, d in raw.items() if isinstance(d, bytes)], problems=problems)


def _annotations_of(images: dict, present: set, skipped: list, problems: list) -> dict[str, str]:
    """image → its XML; each image without one skipped, and an image without labels."""
    xml_of = {}
    for path in images:
        found = next((x for x in xml_candidates(path) if x in present), None)
        if found is None:
            why = f"no annotation file ({xml_candidates(path)[0]})"
            skipped.append((path, why))
            problems.append(Problem("no_labels", path, detail=why))
        else:
            xml_of[path] = found
    return xml_of


def _image_sets(raw: dict, set_files: list[str], skipped: list) -> dict[str, dict[str, set[str]]]:
    """{VOC root: {list name: image ids}} from ImageSets/Main."""
    out: dict[str, dict[str, set[str]]] = {}
    for name in set_files:
        root = parent(parent(parent(name)))
        data = raw[name]
        try:
            if isinstance(data, str):
                raise ValueError(data)
            ids = {line.split()[0] for line in text(data, name).splitlines() if line.strip()}
        except ValueError as exc:
            skipped.append((name, str(exc)))
            ids = set()
        out.setdefault(root, {})[stem(name)] = ids
    return out


def _split(path: str, sets: dict) -> str | None:
    """The split, None (by hashing), or why the image is not used (a sentence)."""
    folder = parent(path)
    lists = sets.get(parent(folder)) if folder.rsplit("/", 1)[-1] == "JPEGImages" else None
    if not lists:
        return split_of_path(path)
    image_id = stem(path)
    found = [(name, split) for name, split in SETS if image_id in lists.get(name, ())]
    if len(found) > 1:
        return f"in both {found[0][0]}.txt and {found[1][0]}.txt of ImageSets/Main"
    if found:
        return found[0][1]
    if image_id in lists.get("trainval", ()):
        return None
    return f"not in ImageSets/Main's lists ({', '.join(f'{n}.txt' for n in sorted(lists))})"


def _parse(data: bytes, name: str, zero_based: bool = False, flaws: list | None = None,
           sizes: dict | None = None) -> list | str:
    """[(class name, box)] or the reason the image is skipped (its first bad object); `flaws`,
    when given, gets ("object k", Flaw) for every bad object and each box within 1 px over the
    image's edge (clipped here); `sizes`, when given, the image's `<size>` under `name`."""
    from xml.etree.ElementTree import ParseError

    from defusedxml import ElementTree

    from augpipe.targets.boxes import overhang

    try:
        root = ElementTree.fromstring(data)
    except ParseError as exc:
        return Flaw("annotation_unreadable", f"{name}: malformed XML ({exc})")
    except ValueError as exc:  # defusedxml: entities, DTDs, external references
        return Flaw("annotation_unreadable", f"{name}: refused XML ({type(exc).__name__})")
    except LookupError as exc:  # <?xml encoding="..."?> that Python does not know
        return Flaw("annotation_unreadable", f"{name}: malformed XML ({exc})")
    if root.tag != "annotation":
        return Flaw("annotation_unreadable", f"{name}: not a Pascal VOC annotation (its root is <{root.tag}>, "
                                             "not <annotation>)")
    size_el = root.find("size")
    size = image_size(size_el.findtext("width"), size_el.findtext("height")) if size_el is not None else None
    if sizes is not None and size is not None:
        sizes[name] = size
    out, first = [], None
    for k, obj in enumerate(root.findall("object")):
        read = _object(k, obj, size, zero_based)
        if isinstance(read, str):
            first = first or read
            if flaws is None:
                return first
            flaws.append((f"object {k}", read))
            continue
        label, box, given = read
        if flaws is not None and size is not None and box != given:
            flaws += [(f"object {k}", Flaw("box_outside", why)) for why in overhang(given, size)]
        out.append((label, box))
    return first or out


def _object(k: int, obj, size, zero_based: bool):
    """(class name, box as clipped, box as given) of an <object>, or the Flaw that skips its image."""
    label = (obj.findtext("name") or "").strip()
    if not label:
        return Flaw("annotation_unreadable", f"box {k}: no <name>")
    bndbox = obj.find("bndbox")
    if bndbox is None:
        return Flaw("annotation_unreadable", f"box {k}: no <bndbox>")
    values = []
    for tag in ("xmin", "ymin", "xmax", "ymax"):
        value = bndbox.findtext(tag)
        if value is None:
            return Flaw("annotation_unreadable", f"box {k}: no <{tag}>")
        try:
            values.append(float(value))
        except ValueError:
            return Flaw("annotation_unreadable", f"box {k}: <{tag}> '{value.strip()[:20]}' is not a number")
    x0, y0, x1, y1 = values
    if not zero_based:  # the devkit's: the first pixel is 1, xmax the last pixel inside
        x0, y0 = x0 - 1, y0 - 1
    given = (x0, y0, x1 - x0, y1 - y0)
    box, why = check_box(k, given, size)
    return why or (label, box, given)


# ---------------------------------------------------------------- writing

OPTIONS = {"voc_zero_based": Option("--voc-zero-based", {}, "0-based corners as the shards hold them (x, y, x+w, y+h), "
                                                            "not the devkit's 1-based whole pixels")}
NAME_COLUMNS = ()


def options(given: dict, header, where: str) -> dict:
    return {"voc_zero_based": bool(given.get("voc_zero_based"))}


def keeps_masks(options: dict) -> bool:
    return False


def image_name(row: dict, classes: list[str]) -> str:
    return file_name(row)


def files(split: str, name: str, options: dict) -> list[str]:
    flat = _flat(name)
    return [f"JPEGImages/{flat}{PurePosixPath(name).suffix}", f"Annotations/{flat}.xml"]


def write(store, items, header, options: dict) -> dict:
    from xml.sax.saxutils import escape

    sets = defaultdict(list)
    for item in items:
        image, annotation = files(item.split, item.name, options)
        store.write_bytes(image, item.data, sync=False)
        objects = "".join(
            f"<object><name>{escape(header.classes[c])}</name><difficult>0</difficult><bndbox>"
            f"<xmin>{x0:g}</xmin><ymin>{y0:g}</ymin><xmax>{x1:g}</xmax><ymax>{y1:g}</ymax></bndbox></object>"
            for box, c in zip(item.target.xywh(), item.target.categories)
            for x0, y0, x1, y1 in [_voc_box(box, item.width, item.height, options["voc_zero_based"])])
        xml = (f"<annotation><filename>{escape(image.rsplit('/', 1)[1])}</filename><size><width>{item.width}</width>"
               f"<height>{item.height}</height><depth>3</depth></size>{objects}</annotation>\n")
        store.write_bytes(annotation, xml.encode("utf-8"), sync=False)
        sets[item.split].append(_flat(item.name))
    for split, stems in sets.items():
        store.write_bytes(f"ImageSets/Main/{SPLIT_DIR[split]}.txt", "".join(f"{s}\n" for s in stems).encode())
    _labels(store, header.classes)
    return {"images": {s: len(v) for s, v in sets.items()}}


def _flat(name: str) -> str:
    """VOC's folders are flat, and ImageSets' lines are split at whitespace by its readers (the
    devkit's, augpipe's): `a/b c.jpg` is `a__b_c`."""
    return re.sub(r"\s", "_", without_suffix(name).replace("/", "__"))


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


def _labels(store, classes: list[str]) -> None:
    """datumaro's labelmap.txt (`name:color:parts:actions`, colour and the rest left empty); a name
    that line cannot carry (a ':', or spaces at its ends, which it strips) goes to datumaro's
    dataset_meta.json instead, which it reads first and which holds any name."""
    if any(":" in c or c != c.strip() or c.startswith("#") for c in classes):
        store.write_bytes("dataset_meta.json", json.dumps({"labels": list(classes)}, ensure_ascii=False).encode())
        return
    store.write_bytes("labelmap.txt", "".join(f"{c}:::\n" for c in classes).encode())
