"""Labels across a dataset: the report's label figures (`summarise`), and what only shows across
files (`across`): one image content under two labels, images without labels, classes that never
occur. One image's labels are its kind's (`Target.audit`, an `Audit`).

`summarise(audits, classes)` gives, JSON-able (a split None is "unsplit"; every count by split):

    images              {split: images}
    objects             {split: objects} (classification: labelled images; segmentation: the
                        classes each mask holds past the background)
    images_per_class    {class: {split: images holding it}}, every class of `classes` (0 when it
                        never occurs) and any other name an audit gave ("class 7", a mask value)
    objects_per_class   {class: {split: objects}}
    objects_per_image   {"0": images, "1": images, ...}: images by their number of objects
    empty_images        {split: images without any object or label}
    boxes               (detection, keypoints) {"count", "width", "height", "aspect"}: the boxes'
                        width and height relative to the image's, aspect their width / height in
                        pixels, each {"min", "p05", "median", "p95", "max"}; and "sample": at most
                        SAMPLE boxes [width, height, aspect, class index], every n-th in the audits'
                        order (the same data, the same sample), for a scatter
    mask_pixels         (segmentation) {class or value: pixels}, and mask_share {class or value:
                        share of all mask pixels}
    keypoints           (keypoints) {"visible": n, "hidden": n, "unlabelled": n}
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np

from augpipe.health.base import Problem

SAMPLE = 2000  # boxes in the scatter's sample, at most
UNSPLIT = "unsplit"


def summarise(audits: list, classes: list[str]) -> dict:
    """The label figures of (split, Audit) pairs: the keys in this module's docstring."""
    images, objects, empty = Counter(), Counter(), Counter()
    per_image = Counter()
    holding: dict = defaultdict(Counter)
    counted: dict = defaultdict(Counter)
    pixels, points = Counter(), Counter()
    boxes: list = []
    for split, audit in audits:
        split, facts = split or UNSPLIT, audit.facts
        n = int(facts.get("objects", 0))
        images[split] += 1
        objects[split] += n
        per_image[n] += 1
        empty[split] += n == 0
        for name, count in facts.get("classes", {}).items():
            holding[name][split] += 1
            counted[name][split] += count
        pixels.update(facts.get("mask_pixels", {}))
        points.update(facts.get("keypoints", {}))
        w, h = facts.get("size", (1, 1))
        boxes += [(bw, bh, bw * w / (bh * h) if bh > 0 else math.inf, c) for c, bw, bh in facts.get("boxes", ())]
    names = list(classes) + sorted(set(holding) - set(classes))
    out = {"images": dict(images), "objects": dict(objects),
           "images_per_class": {c: dict(holding[c]) for c in names},
           "objects_per_class": {c: dict(counted[c]) for c in names},
           "objects_per_image": {str(n): per_image[n] for n in sorted(per_image)},
           "empty_images": {s: empty[s] for s in images}}
    if boxes:
        out["boxes"] = _boxes(boxes)
    if pixels:
        total = sum(pixels.values())
        out["mask_pixels"] = dict(pixels)
        out["mask_share"] = {k: round(v / total, 6) for k, v in pixels.items()}
    if points:
        out["keypoints"] = {k: points[k] for k in ("visible", "hidden", "unlabelled")}
    return out


def _boxes(boxes: list) -> dict:
    a = np.asarray(boxes, dtype=np.float64)
    step = math.ceil(len(a) / SAMPLE)
    sample = [[round(w, 6), round(h, 6), round(r, 4) if math.isfinite(r) else None, int(c)]
              for w, h, r, c in a[::step].tolist()]
    return {"count": len(a), "width": _spread(a[:, 0]), "height": _spread(a[:, 1]),
            "aspect": _spread(a[np.isfinite(a[:, 2]), 2]), "sample": sample}


def _spread(values: np.ndarray) -> dict:
    if not len(values):
        return {}
    q = np.quantile(values, [0, 0.05, 0.5, 0.95, 1])
    return dict(zip(("min", "p05", "median", "p95", "max"), (round(float(v), 6) for v in q)))


def across(seen: list, classes: list[str], kind, alike: list[tuple[str, ...]] = ()) -> list[Problem]:
    """What shows only across files, from (path, split, content sha256, Audit) of every image:
    one content under different labels (saying when across splits; `alike`: groups of paths that
    look the same, whose classes are compared), images without labels, and classes that never
    occur, or occur in some splits and not another."""
    return (_conflicts(seen, kind) + _alike_conflicts(seen, alike, kind) + _unlabelled(seen, classes, kind)
            + _absent(seen, classes, kind))


def _alike_conflicts(seen: list, alike: list[tuple[str, ...]], kind) -> list[Problem]:
    """Images that look the same (a re-encoded or resized copy) holding different classes: a
    resized copy's boxes differ by rounding, so only the classes held are compared."""
    by_path = {path: (split, audit) for path, split, _, audit in seen}
    out = []
    for group in alike:
        members = sorted((p, *by_path[p]) for p in group if p in by_path and by_path[p][1].signature is not None)
        if len({frozenset(a.facts.get("classes", {})) for _, _, a in members}) < 2:
            continue
        labels = "; ".join(f"{_labels(a, kind)} ({s or UNSPLIT})" for _, s, a in members)
        path, split, _ = members[0]
        out.append(Problem("conflicting_labels", path, detail=f"{len(members)} images that look the same (near "
                                                             f"duplicates) under different classes: {labels}",
                           split=split, related=tuple(m[0] for m in members[1:])))
    return out


def _conflicts(seen: list, kind) -> list[Problem]:
    groups = defaultdict(list)
    for path, split, sha, audit in seen:
        if audit.signature is not None:
            groups[sha].append((path, split, audit))
    out = []
    for members in groups.values():
        if len({repr(a.signature) for _, _, a in members}) < 2:
            continue
        members.sort(key=lambda m: m[0])
        splits = sorted({s or UNSPLIT for _, s, _ in members})
        labels = "; ".join(f"{_labels(a, kind)} ({s or UNSPLIT})" for _, s, a in members)
        where = f"across splits ({', '.join(splits)})" if len(splits) > 1 else f"within {splits[0]}"
        path, split, _ = members[0]
        out.append(Problem("conflicting_labels", path, detail=f"the same image under {len(members)} labels, {where}: "
                                                             f"{labels}", split=split,
                           related=tuple(m[0] for m in members[1:])))
    return out


def _labels(audit, kind) -> str:
    """An image's labels in a few words: its class, or its objects by class."""
    held = audit.facts.get("classes", {})
    if kind.name == "classification":
        return next(iter(held), "no class")
    what = "mask holding" if kind.name == "segmentation" else f"{audit.facts.get('objects', 0)} objects:"
    return f"{what} {', '.join(f'{c} ×{n}' if n > 1 else c for c, n in sorted(held.items())) or 'none'}"


def _unlabelled(seen: list, classes: list[str], kind) -> list[Problem]:
    if not classes:  # an unlabelled dataset: nothing is missing
        return []
    detail = {"classification": "no class", "segmentation": "its mask holds no class (only 0 and 255)"}.get(
        kind.name, "no objects (an empty label file, or none listed)")
    return [Problem("no_labels", path, detail=detail, split=split)
            for path, split, _, audit in seen if int(audit.facts.get("objects", 0)) == 0]


def coverage(audits: list, classes: list[str], kind) -> list[Problem]:
    """`across`'s classes that never occur, or not in every split, from (split, Audit) pairs: an
    expanded dataset's originals (its rows before augmentation)."""
    return _absent([(None, split, None, audit) for split, audit in audits], classes, kind)


def validation(splits: list[str]) -> list[Problem]:
    """An expanded dataset without a validation split: training on it scores nothing held out
    (augpipe's trainers refuse it)."""
    if "validation" in splits:
        return []
    return [Problem("no_validation", "validation", "(split)",
                    f"the dataset holds only {' and '.join(splits) or 'no split'}: expand again from a source "
                    "with a val/ folder or validation annotations, or, where its images have no split, with a "
                    "--val-fraction that holds some out")]


def _absent(seen: list, classes: list[str], kind) -> list[Problem]:
    """Classes that never occur; with two or more splits, each split a class occurs in others but not in."""
    counts: dict = defaultdict(Counter)
    images = Counter()
    for _, split, _, audit in seen:
        images[split or UNSPLIT] += 1
        for name, n in audit.facts.get("classes", {}).items():
            counts[name][split or UNSPLIT] += n
    named = classes[1:] if kind.name == "segmentation" else classes  # 0 is the background
    splits = [s for s in images if s != UNSPLIT]
    out = []
    for name in named:
        held = counts[name]
        if not held:
            out.append(Problem("class_absent", name, "(class)", f"never occurs in the {sum(images.values())} images"))
            continue
        if len(splits) < 2:
            continue
        present = ", ".join(f"{s} ({n})" for s, n in sorted(held.items()))
        out += [Problem("class_absent", name, "(class)", f"occurs in {present} but not in {s} "
                                                          f"({images[s]} images)", split=s)
                for s in sorted(splits) if not held[s]]
    return out
