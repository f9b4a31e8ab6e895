"""YOLO detection and pose (Ultralytics, Roboflow): `data.yaml` (or `dataset.yaml`) at the root, images
and one `.txt` label file per image.

- `names`: a list, or {index: name} (indices 0..n-1 with no gap); `nc`, when given, must agree.
- Where images are: the yaml's `train:` / `val:` / `test:` (a folder, a list of folders, or a
  `.txt` listing images), relative to the yaml's folder (after its `path:` when that is relative);
  a path that leaves the root (Roboflow's `../train/images`) is tried without its `../`. A split
  the yaml does not place is looked for in the two layouts, `images/<split>/` (Ultralytics) and
  `<split>/images/` (Roboflow, `valid` included). A folder two splits share (`val: images/train`
  beside `train: images/train`) gives its images no split: they are split by hashing.
- An image's label file is Ultralytics' rule: the last `/images/` of its path becomes `/labels/`
  and its suffix `.txt` (`X.txt` beside the image when its path has no `images` folder).
- A line of 5 fields is a box `class cx cy w h`; an odd count of 7 or more a polygon
  `class x1 y1 x2 y2 ...`, stored as its bounding box and the polygon as the object's segment.
  Values stay normalised (`Objects(box_format="cxcywhn")`), converted in the worker. Values outside
  0..1 by more than 0.001 skip the image (within that, left to the worker's clipping).
- An image without a label file, or with an empty one, has zero objects: YOLO's convention for
  background images. A label file without an image is recorded.
- Pose (`kpt_shape: [K, 2 or 3]` in the yaml): a keypoints dataset, each line
  `class cx cy w h` and K keypoints `x y [v]` (normalised; v 0 not labelled, 1 hidden, 2 visible;
  without v a keypoint is labelled, v 2, unless negative, ultralytics' rule). `flip_idx` is the
  dataset's; the keypoints' names are `kpt_names` ({class: [names]}, one list for every class),
  else 0..K-1. A line of another length, or a visibility not 0, 1 or 2, skips the image.
- Labels are fractions of the upright image, EXIF orientation applied, as ultralytics reads them
  (`exif_size`, `cv2.imread`); the worker turns the image, not the labels.

Written (`augpipe export --format yolo`): images/{split}/…, labels/{split}/….txt, data.yaml;
--yolo-task detect writes box lines `class cx cy w h`, segment a polygon line for every object
(never a mix: a YOLO line has one ring, parts joined by seams, holes dropped), pose (the default
for a keypoints dataset) box lines followed by K keypoints `x y v`, with `kpt_shape: [K, 3]`,
`flip_idx` and `kpt_names` in data.yaml.
"""

from __future__ import annotations

import math
import posixpath
from collections import defaultdict

from augpipe.errors import SourceError, UsageError
from augpipe.formats.base import Objects, Option, Scan, SourceFile, is_image, split_of_folder
from augpipe.formats.common import (
    SPLIT_DIR, Flaw, file_name, finish, flaw_problems, join, mask_of, parent, read_files, rings, share, text, usable,
    without_suffix,
)
from augpipe.health.base import Problem

name = "yolo"
kinds = ("detection", "keypoints")
YAMLS = ("data.yaml", "dataset.yaml", "data.yml", "dataset.yml")
SPLIT_KEYS = (("train", "train"), ("val", "validation"), ("valid", "validation"), ("test", "test"))
TOLERANCE = 0.001  # of the image's size: what normalised values may overhang 0..1


def matches(entries: list) -> float | None:
    """The share of the images with a label file, when a data.yaml is at the root (else None)."""
    present = {e.name for e in entries}
    if not any(n in present for n in YAMLS):
        return None
    images = [n for n in present if is_image(n) and "labels" not in n.split("/")[:-1]]
    return share(sum(label_path(i) in present for i in images), len(images)) or 0.0


def read(store, entries: list, layout: str = "auto") -> Scan:
    skipped: list[tuple[str, str]] = []
    problems = {e.name: e.problem for e in entries if e.problem}
    entries = usable(entries, skipped)
    by_name = {e.name: e for e in entries}
    config_name = next((n for n in YAMLS if n in by_name), None)
    if config_name is None:
        raise SourceError(f"{store.display()}: no data.yaml or dataset.yaml at the root (YOLO)")
    annotation_files: list[tuple[str, bytes]] = []
    config = _config(store, config_name, annotation_files)
    names = _names(config, store.display(config_name))
    shape, kind_options = _pose(config, store.display(config_name))
    images = {e.name: e for e in entries if is_image(e.name) and "labels" not in e.name.split("/")[:-1]}
    folders, listed, places = _placed(store, config, config_name, images, set(by_name), skipped, annotation_files)
    split_of = _splits(images, listed, folders, places, skipped)
    label_of = {path: label_path(path) for path in split_of}
    present = [lbl for lbl in sorted(set(label_of.values())) if lbl in by_name]
    raw = read_files(store, present)
    annotation_files += [(n, d) for n, d in raw.items() if isinstance(d, bytes)]
    files, found_problems, places = [], [], {}
    for path in sorted(split_of):
        lbl = label_of[path]
        objects = _objects(path, lbl, raw.get(lbl, problems.get(lbl)), len(names), shape, skipped, found_problems,
                           places)
        if objects is not None:
            e = images[path]
            files.append(SourceFile(path, split_of[path], None, e.size, e.mtime_ns, objects))
    orphans = _orphan_labels(entries, images, annotation_files)
    skipped += orphans
    found_problems += [Problem("annotation_unreadable", name, detail=why) for name, why in orphans]
    found = finish(store, files, skipped, names, "keypoints" if shape else "detection", "yolo", annotation_files,
                   problems=found_problems)
    found.warnings += _shared_folders(folders)
    found.kind_options = kind_options
    found.places = places
    return found


def _objects(path: str, lbl: str, data, nc: int, shape, skipped: list, problems: list, places: dict) -> Objects | None:
    """An image's objects from `data`, its label file's bytes (None when it has none: a background
    image) or why that cannot be read; else None, the reason it is skipped in `skipped`. Every bad
    line goes to `problems`."""
    if isinstance(data, str):
        skipped.append((path, f"{lbl}: {data}"))
        problems.append(Problem("annotation_unreadable", path, lbl, data))
        return None
    flaws: list = []
    lines: list = []
    if data is None:
        problems.append(Problem("no_labels", path, lbl, "no label file: read as a background image"))
    try:
        objects = parse(text(data, lbl), nc, shape, flaws, lines) if data is not None else \
            Objects((), (), (), box_format="cxcywhn")
    except ValueError as exc:
        skipped.append((path, str(exc)))
        problems.append(Problem("annotation_unreadable", path, lbl, str(exc)))
        return None
    problems += flaw_problems(path, lbl, flaws)
    if isinstance(objects, str):
        skipped.append((path, f"{lbl} {objects}"))
        return None
    places[path] = tuple(f"{lbl} line {n}" for n in lines)
    return objects


def _splits(images: dict, listed: dict, folders, places, skipped: list) -> dict[str, str | None]:
    """image → its split (None: decided by hashing); an image outside the split folders is skipped."""
    split_of: dict[str, str | None] = {}
    for path in images:
        if path in listed:
            split_of[path] = listed[path]
            continue
        if not places:
            split_of[path] = None
            continue
        found = [(len(fo), s) for fo, s in folders if not fo or path.startswith(fo + "/")]
        if not found:
            skipped.append((path, f"outside the split folders ({', '.join(places)})"))
            continue
        longest = max(n for n, _ in found)
        splits = {s for n, s in found if n == longest}
        split_of[path] = splits.pop() if len(splits) == 1 else None
    return split_of


def _shared_folders(folders: list) -> list[str]:
    """A folder the yaml names for two splits: its images get no split of the yaml's, but expand's by hashing."""
    by_folder: dict = defaultdict(set)
    for folder, split in folders:
        by_folder[folder].add(split)
    return [f"{folder or '.'} is named for {' and '.join(sorted(splits))}: its images are split by hashing "
            "(--val-fraction), not as the yaml says" for folder, splits in sorted(by_folder.items()) if len(splits) > 1]


def _orphan_labels(entries, images: dict, annotation_files) -> list[tuple[str, str]]:
    """Label files no image has."""
    used = {label_path(path) for path in images}
    lists = {n for n, _ in annotation_files}
    return [(e.name, "no image for this label file") for e in entries
            if e.name.endswith(".txt") and "labels" in e.name.split("/")[:-1] and e.name not in used
            and e.name not in lists and e.name.rsplit("/", 1)[-1] != "classes.txt"]


def label_path(image: str) -> str:
    """Ultralytics' rule: the last `/images/` becomes `/labels/`, the suffix `.txt`."""
    full = "/" + image
    if "/images/" in full:
        head, tail = full.rsplit("/images/", 1)
        full = f"{head}/labels/{tail}"
    return posixpath.splitext(full)[0][1:] + ".txt"


def _config(store, name: str, annotation_files: list) -> dict:
    try:
        data = store.read_bytes(name)
    except OSError as exc:
        raise SourceError(f"{store.display(name)}: cannot read: {exc.strerror or exc}") from None
    annotation_files.append((name, data))
    if len(data) > MAX_YAML_BYTES:
        raise SourceError(f"{store.display(name)}: {len(data):,} bytes: a dataset file is at most {MAX_YAML_BYTES:,}")
    import yaml

    try:
        config = yaml.safe_load(text(data, name))
    except (yaml.YAMLError, ValueError) as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise SourceError(f"{store.display(name)}: not valid YAML{at}: "
                          f"{getattr(exc, 'problem', None) or exc}") from None
    except RecursionError:
        raise SourceError(f"{store.display(name)}: not valid YAML (nested too deeply)") from None
    if not isinstance(config, dict):
        raise SourceError(f"{store.display(name)}: not a YOLO dataset file (expected keys names, train, val)")
    return config


MAX_KEYPOINTS = 10_000


def _pose(config: dict, where: str) -> tuple[tuple[int, int] | None, dict]:
    """A pose dataset's kpt_shape (K, 2 or 3) and the kind's options (keypoint names: the yaml's
    `kpt_names`, else 0..K-1; flip_idx), or (None, {}) when the yaml has no kpt_shape."""
    shape = config.get("kpt_shape")
    if shape is None:
        return None, {}
    if not (isinstance(shape, list) and len(shape) == 2 and all(_count(v) for v in shape)
            and shape[0] <= MAX_KEYPOINTS and shape[1] in (2, 3)):
        raise SourceError(f"{where}: kpt_shape is [K, 2 or 3] (K keypoints of x y, or x y visibility), not {shape!r}")
    count = shape[0]
    flip_idx = config.get("flip_idx")
    if flip_idx is not None and not (isinstance(flip_idx, list) and all(type(i) is int for i in flip_idx)
                                     and sorted(flip_idx) == list(range(count))):
        raise SourceError(f"{where}: flip_idx is not a permutation of 0..{count - 1} ({str(flip_idx)[:60]})")
    return (count, shape[1]), {"keypoint_names": _keypoint_names(config.get("kpt_names"), count, where),
                               "skeleton": [], "flip_idx": flip_idx}


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _keypoint_names(given, count: int, where: str) -> list[str]:
    """`kpt_names` (ultralytics: {class: [names]}, the same list for every class; or one list),
    else the keypoints' indices."""
    if given is None:
        return [str(i) for i in range(count)]
    lists = list(given.values()) if isinstance(given, dict) else [given]
    first = lists[0] if lists else None
    if not (isinstance(first, list) and len(first) == count and all(isinstance(n, (str, int)) for n in first)
            and len({str(n) for n in first}) == count):
        raise SourceError(f"{where}: kpt_names is not {count} different names (one per keypoint of kpt_shape)")
    if any(names != first for names in lists):
        raise SourceError(f"{where}: kpt_names differ between classes: augpipe reads one list of keypoints "
                          "for the whole dataset")
    return [str(n) for n in first]


# A data.yaml is untrusted text: bounded before anything walks it (a YAML alias bomb in `names`
# expands to millions of entries; `nc: 2000000000` would name two billion classes).
MAX_YAML_BYTES = 1_000_000
MAX_CLASSES = 100_000


def _names(config: dict, where: str) -> list[str]:
    names, nc = config.get("names"), config.get("nc")
    if nc is not None and (isinstance(nc, bool) or not isinstance(nc, int) or not 0 <= nc <= MAX_CLASSES):
        raise SourceError(f"{where}: nc must be a whole number from 0 to {MAX_CLASSES:,}, not {nc!r}")
    if isinstance(names, (list, dict)):
        if len(names) > MAX_CLASSES:
            raise SourceError(f"{where}: {len(names):,} names: at most {MAX_CLASSES:,} classes")
        values = names.values() if isinstance(names, dict) else names
        if any(not isinstance(v, (str, int, float)) or isinstance(v, bool) for v in values):
            raise SourceError(f"{where}: every class name must be a plain text or number")
    if isinstance(names, dict):
        try:
            by_index = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise SourceError(f"{where}: names' keys must be class indices 0, 1, ...") from None
        missing = [i for i in range(len(by_index)) if i not in by_index]
        if missing:
            raise SourceError(f"{where}: names has no class {missing[0]} (indices must be 0..{len(by_index) - 1})")
        out = [by_index[i] for i in range(len(by_index))]
    elif isinstance(names, list):
        out = [str(n) for n in names]
    elif names is None and nc is not None:
        out = [f"class{i}" for i in range(nc)]  # what Ultralytics names them
    else:
        raise SourceError(f"{where}: no names (a list, or {{index: name}})")
    if nc is not None and nc != len(out):
        raise SourceError(f"{where}: nc is {nc} but names has {len(out)}")
    return out


def _all_folders(images: dict) -> set[str]:
    out = {""}
    for path in images:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            out.add("/".join(parts[:i]))
    return out


def _candidates(value: str, config: dict, base: str) -> list[str]:
    """Where a yaml path may point, relative to the root, most likely first."""
    out = []
    root = config.get("path")
    value = value.replace("\\", "/")
    if value.startswith("/") or (len(value) > 1 and value[1] == ":"):  # another machine's absolute path
        parts = value.strip("/").split("/")
        return [posixpath.join(*parts[i:]) for i in range(1, len(parts))]
    if isinstance(root, str) and root and not root.startswith("/"):
        out.append(posixpath.join(base, root, value))
    out.append(posixpath.join(base, value))
    stripped = value
    while stripped.startswith(("../", "./")):
        stripped = stripped.split("/", 1)[1]
    out.append(stripped)
    normal = []
    for c in out:
        c = posixpath.normpath(c) if c else "."
        c = "" if c == "." else c
        if not c.startswith("../") and c != ".." and c not in normal:
            normal.append(c)
    return normal


def _placed(store, config, config_name, images, present, skipped, annotation_files):
    """Where the splits are: [(folder, split)] from the yaml or a known layout, {image: split}
    from `.txt` lists, and the places' names (for messages); nothing placed: no splits."""
    base = parent(config_name)
    folders, listed, places, done = [], {}, [], set()
    all_folders = _all_folders(images)
    for key, split in SPLIT_KEYS:
        value = config.get(key)
        if split in done or value in (None, ""):
            continue
        for v in value if isinstance(value, list) else [value]:
            if not isinstance(v, str):
                continue
            for c in _candidates(v, config, base):
                if c.endswith(".txt") and c in present:
                    for path in _listed(store, c, images, skipped, annotation_files):
                        listed.setdefault(path, split)
                elif c in all_folders:
                    folders.append((c, split))
                else:
                    continue
                places.append(c or ".")
                done.add(split)
                break
    for folder in sorted(all_folders):  # the two layouts, for the splits the yaml did not place
        parts = folder.split("/")
        if len(parts) == 2 and "images" in (parts[0].lower(), parts[1].lower()):
            split = split_of_folder(parts[1] if parts[0].lower() == "images" else parts[0])
            if split is not None and split not in done:
                folders.append((folder, split))
                places.append(folder)
    return folders, listed, places


def _listed(store, name, images, skipped, annotation_files) -> list[str]:
    """The images a split's `.txt` lists (one path a line, relative to the list's folder)."""
    try:
        data = store.read_bytes(name)
        lines = text(data, name).splitlines()
    except (OSError, ValueError) as exc:
        skipped.append((name, f"cannot read: {getattr(exc, 'strerror', None) or exc}"))
        return []
    annotation_files.append((name, data))
    out = []
    for line in lines:
        line = line.strip().replace("\\", "/")
        if not line:
            continue
        rel = line[2:] if line.startswith("./") else line
        options = [posixpath.normpath(join(parent(name), rel)), posixpath.normpath(rel.lstrip("/"))]
        hit = next((o for o in options if o in images), None)
        if hit is None:
            skipped.append((options[0], f"listed in {name} but not found"))
        else:
            out.append(hit)
    return out


def parse(content: str, nc: int, shape: tuple[int, int] | None = None, flaws: list | None = None,
          lines: list | None = None) -> Objects | str:
    """A label file's objects, or the reason the image is skipped (its first bad line); `shape`:
    a pose dataset's (K, 2 or 3), its lines a box and K keypoints. `flaws`, when given, gets
    ("line N", Flaw) for every bad line; `lines` each object's line number."""
    boxes, categories, segments, points = [], [], [], []
    first = None
    for lineno, line in enumerate(content.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        read = _line(fields, len(boxes), nc, shape)
        if isinstance(read, str):
            first = first or f"line {lineno}: {read}"
            if flaws is None:
                return first
            flaws.append((f"line {lineno}", read))
            continue
        box, cls, polygon, keypoints = read
        if lines is not None:
            lines.append(lineno)
        boxes.append(box)
        categories.append(cls)
        segments.append(("polygon", (polygon,)) if polygon is not None else None)
        points.append(keypoints)
    if first is not None:
        return first
    if flaws is not None and None in segments and any(s is not None for s in segments):
        flaws.append(("", Flaw("annotation_unreadable", "box lines and polygon lines in one file: augpipe reads "
                                                        "both, ultralytics refuses the file")))
    return Objects(tuple(boxes), tuple(categories), tuple(range(len(boxes))),
                   tuple(segments) if any(s is not None for s in segments) else None, box_format="cxcywhn",
                   fields={} if shape is None else {"keypoints": tuple(points)})


def _line(fields: list[str], k: int, nc: int, shape: tuple[int, int] | None):
    """A label line as (box, class, polygon or None, keypoints or None), or why it cannot be used."""
    if shape is not None and len(fields) != 5 + shape[0] * shape[1]:
        return Flaw("annotation_unreadable", f"{len(fields)} fields (a pose line is {5 + shape[0] * shape[1]}, "
                    f"class cx cy w h and {shape[0]} keypoints of {shape[1]} values, the yaml's kpt_shape)")
    if shape is None and not (len(fields) == 5 or (len(fields) >= 7 and len(fields) % 2 == 1)):
        return Flaw("annotation_unreadable", f"{len(fields)} fields (a box is 5, class cx cy w h; a polygon an odd "
                    "number of 7 or more, class x1 y1 x2 y2 x3 y3 ...)")
    try:
        cls = float(fields[0])
        values = [float(v) for v in fields[1:]]
    except ValueError:
        bad = next(f for f in fields if not _is_float(f))
        return Flaw("annotation_unreadable", f"'{bad[:20]}' is not a number")
    if not cls.is_integer() or not 0 <= cls < nc:
        return Flaw("unknown_class", f"class {fields[0]} is not one of the {nc} classes of the yaml's names")
    polygon = keypoints = None
    if shape is not None:
        box, keypoints = tuple(values[:4]), _keypoints(values[4:], shape)
        if isinstance(keypoints, str):
            return Flaw("annotation_unreadable", f"box {k}: {keypoints}")
        values = values[:4]
    elif len(values) == 4:
        box = tuple(values)
    else:
        xs, ys = values[0::2], values[1::2]
        box = ((min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys))
        polygon = tuple(values)
    return _problem(k, box, values) or (box, int(cls), polygon, keypoints)


def _keypoints(values: list[float], shape: tuple[int, int]) -> tuple[float, ...] | str:
    """A pose line's keypoints as a flat (x, y, v) × K tuple, normalised; without visibilities
    (kpt_shape [K, 2]) one is labelled unless negative (ultralytics' rule), v 2."""
    count, dims = shape
    out = []
    for j in range(count):
        x, y = values[j * dims:j * dims + 2]
        v = values[j * dims + 2] if dims == 3 else (0.0 if x < 0 or y < 0 else 2.0)
        if v not in (0, 1, 2):
            return f"keypoint {j}: visibility {v:g}, not 0, 1 or 2"
        if v and not (math.isfinite(x) and math.isfinite(y)):
            return f"keypoint {j}: not a number"
        out += (x, y, v) if v else (0.0, 0.0, 0.0)
    return tuple(out)


def _problem(k: int, box: tuple, values: list[float]) -> Flaw | None:
    from augpipe.targets.boxes import box_check, box_problem

    shown = f"box {k} [{', '.join(f'{v:.4f}' for v in box)}] (normalised cx, cy, w, h)"
    if not all(math.isfinite(v) for v in values):
        return Flaw("annotation_unreadable", f"{shown}: not a number")
    why = box_problem(box)  # its width and height; the edges in fractions of the image below
    if why is not None:
        return Flaw(box_check(why), f"{shown}: {why}")
    cx, cy, w, h = box
    edges = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2) if len(values) == 4 else values
    if any(v < -TOLERANCE or v > 1 + TOLERANCE for v in edges):
        return Flaw("box_outside", f"{shown}: outside the image (beyond 0..1)")
    return None


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------- writing

# --yolo-task: what each task's label lines hold
TASKS = {"detect": "box lines", "segment": "a polygon line for every object",
         "pose": "box lines with the keypoints"}
OPTIONS = {"yolo_task": Option("--yolo-task", TASKS, "default pose for a keypoints dataset, else segment when the "
                                                     "dataset has instance masks, else detect")}
NAME_COLUMNS = ()


def options(given: dict, header, where: str) -> dict:
    keypoints = "keypoints" in header.kind_options
    task = given.get("yolo_task") or ("pose" if keypoints else "segment" if header.instance_masks else "detect")
    if task not in TASKS:
        raise UsageError(f"--yolo-task is {OPTIONS['yolo_task'].names()}, not '{task}'")
    if task == "segment" and not header.instance_masks:
        raise UsageError(f"{where} has no instance masks: --yolo-task segment needs them (use detect)")
    if task == "pose" and not keypoints:
        raise UsageError(f"{where} has no keypoints: --yolo-task pose needs them (use detect)")
    return {"yolo_task": task}


def keeps_masks(options: dict) -> bool:
    return options["yolo_task"] == "segment"


def image_name(row: dict, classes: list[str]) -> str:
    return file_name(row)


def files(split: str, name: str, options: dict) -> list[str]:
    return [f"images/{SPLIT_DIR[split]}/{name}", f"labels/{SPLIT_DIR[split]}/{without_suffix(name)}.txt"]


def write(store, items, header, options: dict) -> dict:
    counts = defaultdict(int)
    for item in items:
        image, labels = files(item.split, item.name, options)
        store.write_bytes(image, item.data, sync=False)
        lines = _lines(item.target, options["yolo_task"])
        store.write_bytes(labels, "".join(f"{ln}\n" for ln in lines).encode(), sync=False)
        counts[item.split] += 1
    # no `path`: ultralytics then resolves these against the yaml's own folder, from any directory
    splits = {SPLIT_DIR[s]: f"images/{SPLIT_DIR[s]}" for s in counts}
    # ultralytics requires train: and val: entries: a split the dataset lacks names another's images
    first = next(iter(splits.values()), "images/train")
    notes = [f"no {word} split: data.yaml's {key}: names {first} (ultralytics requires one), so it "
             f"{does} images it {also}" for key, word, does, also in
             (("train", "training", "trains on", "validates on" if "val" in splits else "tests on"),
              ("val", "validation", "validates on", "trains on")) if key not in splits]
    train = splits.pop("train", first)
    splits = {"train": train, "val": splits.pop("val", train), **splits}
    data = {**splits, "names": dict(enumerate(header.classes)), "nc": len(header.classes)}
    if options["yolo_task"] == "pose":
        data.update(_pose_yaml(header))
    import yaml

    store.write_bytes("data.yaml", yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode())
    return {"images": dict(counts), "notes": notes}


def _pose_yaml(header) -> dict:
    """kpt_shape, flip_idx (when known; the identity when no name says a side) and kpt_names."""
    from augpipe.targets.keypoints import side_sensitive

    given = header.kind_options["keypoints"]
    names = list(given["keypoint_names"])
    flip_idx = given["flip_idx"]
    if flip_idx is None and not side_sensitive(names):
        flip_idx = list(range(len(names)))
    out = {"kpt_shape": [len(names), 3]}
    if flip_idx is not None:
        out["flip_idx"] = list(flip_idx)
    return {**out, "kpt_names": {i: names for i in range(len(header.classes))}}


def _lines(objects: Objects, task: str) -> list[str]:
    w, h = objects.canvas
    segments = objects.segments or (None,) * len(objects.categories)
    points = objects.fields.get("keypoints") or (None,) * len(objects.categories)
    lines = []
    for (x, y, bw, bh), c, segment, point in zip(objects.xywh(), objects.categories, segments, points):
        if task == "segment":
            outline = polygon(None if segment is None else mask_of(segment), (x, y, bw, bh))
            lines.append(f"{c} " + " ".join(f"{v / (w if i % 2 == 0 else h):.6f}" for i, v in enumerate(outline)))
        else:
            line = f"{c} {(x + bw / 2) / w:.6f} {(y + bh / 2) / h:.6f} {bw / w:.6f} {bh / h:.6f}"
            lines.append(line + _keypoint_text(point, w, h) if task == "pose" else line)
    return lines


def _keypoint_text(point: dict, w: int, h: int) -> str:
    """An object's keypoints as the shards hold them ({x, y, visibility} lists), normalised: ` x y v` each."""
    return "".join(f" {x / w:.6f} {y / h:.6f} {int(v)}" for x, y, v in zip(point["x"], point["y"], point["visibility"]))


def polygon(mask, box) -> list[float]:
    """One polygon for a YOLO segment line, in pixels: the box's corners for a mask that is its
    box (exactly the box again), else the mask's outline on its pixels' edges. A mask of several
    parts has its outlines joined, largest first, each by a seam there and back between their
    nearest corners (as ultralytics joins COCO's parts): the seam covers no pixel, and the
    polygon's extent is the mask's. Holes are not carried (a YOLO line has one ring)."""
    import numpy as np

    x, y, w, h = box
    parts = rings(mask) if mask is not None and not _is_box(mask, box) else []
    if not parts:
        return [x, y, x + w, y, x + w, y + h, x, y + h]
    parts.sort(key=lambda r: -_area(r))
    joined = parts[0]
    for ring in parts[1:]:
        gaps = ((joined[:, None, :] - ring[None, :, :]) ** 2).sum(axis=2)
        i, j = np.unravel_index(int(gaps.argmin()), gaps.shape)
        part = np.concatenate([ring[j:], ring[:j + 1]])
        joined = np.concatenate([joined[:i + 1], part, joined[i:]])
    return joined.reshape(-1).astype(float).tolist()


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


def _area(ring) -> float:
    x, y = ring[:, 0].astype(float), ring[:, 1].astype(float)
    return abs(float((x * (y.take(range(1, len(y) + 1), mode="wrap")) -
                      y * (x.take(range(1, len(x) + 1), mode="wrap"))).sum())) / 2
