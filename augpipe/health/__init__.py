"""Dataset health: what is wrong with a source before it trains, as `augpipe inspect SOURCE` reports it.

`check_source` reads the source once, as `expand` would (the same scan, the same reading of each
file, the same loading of its target), and asks three parts what is wrong, each in its own module:

- the target kind, `Target.audit`: one image's labels as the format read them (before any clipping);
- `health.labels`: labels across files (one image under two labels, classes that never occur, ...)
  and the report's label figures (`summarise`);
- `health.images`: each image's pixels (`measure`), then the dataset's outliers and duplicates (`judge`).

Each answers with `Problem`s (health/base.py). The report (health/report.py) is the one-screen text,
--json and --fail-on; health/html.py writes --html DIR.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from augpipe.errors import SkipInput
from augpipe.health.base import CHECKS, GROUPS, Check, Problem

__all__ = ["CHECKS", "GROUPS", "Check", "Problem", "SourceHealth", "check_source", "source_health"]


@dataclass(frozen=True)
class Examined:
    """One source file as read: its image's figures, its labels' audit, and why expand would skip it."""

    path: str
    split: str | None
    stats: Any = None  # health.images.ImageStats; None when the image does not decode
    audit: Any = None  # the kind's Audit; None when it could not be made
    skip: str | None = None  # why expand would skip this file
    problems: tuple[Problem, ...] = ()
    loose: bool = False  # an image the scan left out for its labels: its pixels are still checked


@dataclass(frozen=True)
class SourceHealth:
    """A source's health report: its facts (JSON-able, see health/report.py), and the scan, kind
    and store they came from (the page draws each problem's image with its labels)."""

    facts: dict
    scan: Any
    kind: Any
    store: Any

    def picture(self, path: str, k: int | None = None):
        """A file's image with its labels drawn, object k ringed (health/drawing.py)."""
        from augpipe.health.drawing import source_picture

        return source_picture(self, path, k)

    def page(self) -> dict:
        """What the --html page shows: its overview lines, problems, the plots' facts, the skips, and
        the checks it does not make."""
        from augpipe.health.report import source_lines

        f = self.facts
        return {"path": f["path"], "overview": source_lines(f)[:1] + list(f.get("warnings", ())),
                "problems": f["problems"], "figures": f, "skipped": f["skipped"],
                "unasked": ("no_validation",)}  # expand holds validation out of a source without it


def check_source(root: str, format: str = "auto", layout: str = "auto", max_pixels: int | None = None,
                 progress: bool = False) -> dict:
    """The health report's facts of a source folder (or URI): JSON-able, see health/report.py."""
    return source_health(root, format, layout, max_pixels, progress).facts


def source_health(root: str, format: str = "auto", layout: str = "auto", max_pixels: int | None = None,
                  progress: bool = False) -> SourceHealth:
    """`check_source`, keeping what the facts came from."""
    from augpipe.formats import scan
    from augpipe.formats.base import EverySkipped, SourceFile, is_image
    from augpipe.formats.common import split_of_path
    from augpipe.health import images, labels
    from augpipe.options import DEFAULT_MAX_PIXELS
    from augpipe.store import open_store
    from augpipe.targets import for_scan

    try:
        found = scan(str(root), layout, format)
    except EverySkipped as exc:  # a source whose every image is skipped is all the more worth a report
        found = exc.scan
    kind = for_scan(found)
    store = open_store(str(root))
    # an image left out for its labels is still measured: its leak or darkness is there once they are fixed
    loose = [SourceFile(p, split_of_path(p), None, 0) for p, _ in found.skipped if is_image(p)]
    found = found.within(max_pixels or DEFAULT_MAX_PIXELS)  # listed as unreadable, not read whole
    examined = _examine_all(store, found, kind, loose, max_pixels or DEFAULT_MAX_PIXELS, progress)
    stats = [e.stats for e in examined if e.stats is not None]
    # the label figures are of what expand will use: not an image whose target will not load (a mask
    # of values past the classes counted its classes, a hostile tester's), whose problems are listed
    audited = [(e.split, e.audit) for e in examined if e.audit is not None and not e.loose and not e.skip]
    # the same picture in any file format is one content: its labels are compared
    seen = [(e.path, e.split, e.stats.pixels, e.audit) for e in examined
            if e.stats is not None and e.audit is not None and not e.loose]
    judged = images.judge(stats)
    problems = _gathered(found, examined, judged, labels.across, seen, kind)
    # "scan": left out while the annotations were read; "load": its image or target does not load
    skipped = [{"path": p, "reason": r, "stage": "scan"} for p, r in found.skipped]
    skipped += [{"path": e.path, "reason": e.skip, "stage": "load"} for e in examined if e.skip]
    facts = {
        "kind": "source folder",
        "path": str(root),
        "format": found.format,
        "task": found.task,
        "labelled": found.labelled,
        "split_folders": found.split_folders,
        "images": len(found.files),
        "image_files": len(found.files) + sum(is_image(p) for p, _ in found.skipped),
        "splits": _split_counts(examined),
        "class_names": list(found.classes),
        "warnings": list(found.warnings),
        "labels": labels.summarise(audited, found.classes),
        "pictures": images.facts(stats, judged),
        "problems": [p.as_dict() for p in _ordered(problems)],
        "skipped": sorted(skipped, key=lambda s: s["path"]),
    }
    return SourceHealth(facts, found, kind, store)


def _gathered(found, examined: list[Examined], judged: list[Problem], across, seen: list, kind) -> list[Problem]:
    """Every part's problems: the format's, each file's, the images', and the labels' across files
    (a format's word on a file beats the general one; a label that does not read is not "no label")."""
    problems = list(found.problems) + [p for e in examined for p in e.problems] + judged
    said = {(p.check, p.path) for p in found.problems}
    said |= {("no_labels", p.path) for p in problems if p.check == "annotation_unreadable"}
    alike = [(p.path, *p.related) for p in judged if p.check in ("near_duplicate", "near_leak")]
    return problems + [p for p in across(seen, found.classes, kind, alike) if (p.check, p.path) not in said]


def _examine_all(store, found, kind, loose: list, max_pixels: int, progress: bool) -> list[Examined]:
    """Every file of the scan examined, then the loose ones, in order: threads, since decoding and
    the figures' OpenCV calls release the GIL."""
    from tqdm import tqdm

    def one(job):
        f, labelled = job
        if not labelled:
            return examine_pixels(store, f, max_pixels)
        return examine(store, f, kind, found.classes, max_pixels, found.places.get(f.relpath, ()))

    todo = [(f, True) for f in found.files] + [(f, False) for f in loose]
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool, tqdm(total=len(todo), unit="image", desc="inspect",
                                                    disable=not progress, dynamic_ncols=True, leave=False) as bar:
        out = []
        for e in pool.map(one, todo):
            out.append(e)
            bar.update()
    return out


def examine(store, f, kind, classes: list[str], max_pixels: int, places: tuple[str, ...] = ()) -> Examined:
    """One source file: read once, decoded once (as expand's worker decodes it), measured and audited."""
    from augpipe.health import images
    from augpipe.sample import SourceItem
    from augpipe.store import read_source

    item = SourceItem(f.relpath, None, (), target=f.target)
    try:
        data = read_source(store, f.relpath)
    except SkipInput as exc:
        return _unusable(f, "unreadable_image", f.relpath, exc.reason)
    try:
        extra = next((read_source(store, name) for name in kind.extra_files(item)), None)
    except SkipInput as exc:
        return _unusable(f, "annotation_unreadable", kind.extra_files(item)[0], exc.reason)
    try:
        decoded, _, skip = loaded(data, f, kind, max_pixels, extra)
    except SkipInput as why:
        return _unusable(f, "unreadable_image", f.relpath, why.reason)
    rgb = decoded.rgb
    audit = kind.audit(f, extra, (rgb.shape[1], rgb.shape[0]), classes)
    found = tuple(Problem(check, f.relpath, _placed(where, places), detail, f.split)
                  for check, where, detail in audit.problems)
    return Examined(f.relpath, f.split, images.measure(f.relpath, f.split, data, rgb), audit, skip, found)


def loaded(data: bytes, f, kind, max_pixels: int, extra: bytes | None):
    """(decoded, its target's state, why expand would skip it or None): the file loaded as expand's
    worker loads it, or, where its target does not load, decoded alone; SkipInput when it does not decode."""
    from augpipe import decode as codec
    from augpipe.sample import SourceItem, load_sample

    try:
        sample = load_sample(data, SourceItem(f.relpath, None, (), target=f.target), kind, max_pixels, extra)
    except SkipInput as exc:
        return codec.decode(data, max_pixels), None, exc.reason
    return sample.decoded, sample.target, None


def examine_pixels(store, f, max_pixels: int) -> Examined:
    """An image without its labels: read, decoded and measured."""
    from augpipe import decode as codec
    from augpipe.health import images
    from augpipe.store import read_source

    try:
        data = read_source(store, f.relpath)
        rgb = codec.decode(data, max_pixels).rgb
    except SkipInput as exc:
        return Examined(f.relpath, f.split, loose=True,
                        problems=(Problem("unreadable_image", f.relpath, detail=exc.reason, split=f.split),))
    return Examined(f.relpath, f.split, images.measure(f.relpath, f.split, data, rgb), loose=True)


def _placed(where: str, places: tuple[str, ...]) -> str:
    """`object 2` as `labels/x.txt line 3 (object 2)` where the format said where object 2 was read."""
    import re

    named = re.match(r"object (\d+)\b", where)
    if not named or int(named.group(1)) >= len(places):
        return where
    return f"{places[int(named.group(1))]} ({where})"


def _unusable(f, check: str, path: str, reason: str, skip: str | None = None) -> Examined:
    return Examined(f.relpath, f.split, skip=skip or reason, problems=(Problem(check, path, detail=reason, split=f.split),))


def _split_counts(examined: list[Examined]) -> dict[str, int]:
    """The usable images of each split."""
    from collections import Counter

    counts = Counter(e.split or "unsplit" for e in examined if not e.loose and not e.skip)
    order = ("train", "validation", "test", "unsplit")
    return {s: counts[s] for s in order if counts[s]}


def _ordered(problems: list[Problem]) -> list[Problem]:
    """By group, check (in CHECKS' order), then file: the report's order; a group of files (a
    duplicate, a leak, a conflict) once, under its first file."""
    rank = {name: k for k, name in enumerate(CHECKS)}
    out, groups = [], set()
    for p in sorted(problems, key=lambda p: (GROUPS.index(p.group), rank[p.check], p.path, p.where)):
        if p.related:
            group = (p.check, frozenset((p.path, *p.related)))
            if group in groups:
                continue
            groups.add(group)
        out.append(p)
    return out


def failing(problems: list[dict], names: list[str]) -> list[str]:
    """The checks of `names` (groups or checks) that found something: --fail-on's verdict."""
    wanted = set()
    for name in names:
        if name == "all":
            wanted |= set(CHECKS)
        elif name in GROUPS:
            wanted |= {c for c, check in CHECKS.items() if check.group == name}
        else:
            wanted.add(name)
    found = {p["check"] for p in problems}
    return [c for c in CHECKS if c in wanted and c in found]


def fail_on_names(text: str | None) -> list[str]:
    """--fail-on's comma-separated groups and checks, each known, or a one-line UsageError."""
    from augpipe.errors import UsageError
    from augpipe.errors import one_of

    if not text:
        return []
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if name != "all" and name not in GROUPS and name not in CHECKS:
            raise UsageError(f"--fail-on: unknown check '{name}': name groups ({one_of(['all', *GROUPS])}) "
                             f"or checks ({', '.join(CHECKS)})")
    return names
