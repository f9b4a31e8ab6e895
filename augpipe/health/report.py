"""The health report as one screen of text: what the source holds, then what is wrong with it.

The facts are `check_source`'s dict (health/__init__.py); --json prints them as they are:
  kind, path, format, task, labelled, split_folders, images (the scan's), image_files (with those
  it left out), splits {split: images}, skipped [{path, reason, stage: scan or load}],
  class_names, warnings, labels (health.labels.summarise), pictures (health.images.facts),
  problems [Problem.as_dict()].
"""

from __future__ import annotations

from collections import Counter

from augpipe.health.base import CHECKS, GROUPS
from augpipe.inspection import bar, plural

EXAMPLES = 3  # files shown under each check
MOST_CLASSES = 20  # class lines shown
FORMAT_NAMES = {"coco": "COCO", "yolo": "YOLO", "voc": "Pascal VOC", "masks": "mask folders",
                "imagefolder": "class folders", "labelfiles": "label files"}


def source_lines(f: dict) -> list[str]:
    splits = ", ".join(f"{s} {n:,}" for s, n in f["splits"].items())
    fmt = FORMAT_NAMES.get(f["format"], f["format"])
    usable = sum(f["splits"].values())
    lines = [f"{f['path']}: source folder, {fmt} ({f['task']}), {plural(f['image_files'], 'image file')}: "
             f"{usable:,} usable{f' ({splits})' if splits else ''}"
             + (f", {plural(len(f['skipped']), 'file')} expand will skip" if f["skipped"] else "")]
    lines += [f"  note      {w}" for w in f.get("warnings", ())]
    lines += label_lines(f["labels"], f["task"], f["labelled"], f["class_names"])
    lines += picture_lines(f["pictures"])
    lines += problem_lines(f["problems"])
    lines += skipped_lines(f["skipped"], f["problems"])
    return lines


def label_lines(labels: dict, task: str, labelled: bool, names: list[str]) -> list[str]:
    """Classes with their images (and objects) by split; objects per image; boxes; masks; keypoints."""
    if not labelled and not labels.get("mask_share"):
        return ["  classes   none (unlabelled)"]
    lines = _class_lines(labels, task, names) if labelled else ["  classes   none named (no classes file): mask values below"]
    lines += _per_image_line(labels, task)
    lines += _box_lines(labels.get("boxes"))
    share = labels.get("mask_share") or {}
    if share:
        shown = sorted(share.items(), key=lambda kv: -kv[1])
        lines.append("  masks     pixels a class or value: " + ", ".join(f"{c} {100 * v:.1f}%" for c, v in shown[:8])
                     + (", ..." if len(shown) > 8 else ""))
    points = labels.get("keypoints")
    if points:
        lines.append(f"  keypoints {points['visible']:,} visible, {points['hidden']:,} hidden, "
                     f"{points['unlabelled']:,} not labelled")
    return lines


def _class_lines(labels: dict, task: str, names: list[str]) -> list[str]:
    """A line a class held, by split; the classes no image holds in one line; a value that is no
    class (a stray mask value, an unknown id) marked so."""
    objects = task not in ("classification", "segmentation")
    images, counted = labels["images_per_class"], labels["objects_per_class"]
    splits = [s for s in ("train", "validation", "test", "unsplit") if s in labels["images"]]
    if not images:
        return ["  classes   none found in the labels"]
    if not splits:
        return [f"  classes   {len(images)} named, none in a usable image: {', '.join(list(images)[:MOST_CLASSES])}"]
    totals = {c: sum((counted if objects else images)[c].values()) for c in images}
    held = sorted((c for c in images if totals[c]), key=lambda c: -totals[c])
    shown = {c: c if c in names else f"{c} (no class)" for c in held}
    top, width = max(totals.values()) or 1, max((len(c) for c in shown.values()), default=0)
    what = "objects (images holding it)" if objects else "images"
    lines = [f"  classes   {len(names)}, {what} a class   ({' / '.join(splits)})"]
    for c in held[:MOST_CLASSES]:
        cells = [f"{counted[c].get(s, 0):,} ({images[c].get(s, 0):,})" if objects else f"{images[c].get(s, 0):,}"
                 for s in splits]
        lines.append(f"    {shown[c]:<{width}}  {bar(totals[c], top, 20)} {' / '.join(cells)}")
    if len(held) > MOST_CLASSES:
        lines.append(f"    ... {len(held) - MOST_CLASSES} more classes (--json lists all)")
    background = names[:1] if task == "segmentation" else []  # what a mask is where no class is: never counted
    never = [c for c in names if not totals.get(c) and c not in background]
    if never:
        lines.append(f"    in no image: {', '.join(never[:MOST_CLASSES])}{', ...' if len(never) > MOST_CLASSES else ''}")
    return lines


def _per_image_line(labels: dict, task: str) -> list[str]:
    if task == "classification":
        return []
    per_image = [int(n) for n, k in labels["objects_per_image"].items() for _ in range(k)]
    if not per_image:
        return []
    per_image.sort()
    empty = labels.get("empty_images", {})
    what = "classes a mask" if task == "segmentation" else "an image"
    none = ", ".join(f"{s} {n:,}" for s, n in empty.items() if n)
    return [f"  {'labels' if task == 'segmentation' else 'objects':<9} {per_image[0]}/{per_image[len(per_image) // 2]}/"
            f"{per_image[-1]} {what} (min/median/max); {plural(sum(empty.values()), 'image')} without any"
            f"{f' ({none})' if none else ''}"]


def _box_lines(boxes: dict | None) -> list[str]:
    if not boxes:
        return []
    w, h, a = boxes["width"], boxes["height"], boxes["aspect"]
    return [f"  boxes     {boxes['count']:,}: width {_pct(w['min'])}/{_pct(w['median'])}/{_pct(w['max'])} of the "
            f"image, height {_pct(h['min'])}/{_pct(h['median'])}/{_pct(h['max'])}, aspect (w/h) "
            f"{a['min']:.2g}/{a['median']:.2g}/{a['max']:.2g} (min/median/max)"]


def picture_lines(p: dict) -> list[str]:
    if not p["images"]:
        return []
    sizes = p["sizes"]
    m = p["medians"]
    common = ", ".join(f"{w}×{h} {n:,}" for w, h, n in sizes[:3]) + (", ..." if len(sizes) > 3 else "")
    lines = [f"  sizes     {plural(len(sizes), 'size')}, median {round(m['width'])}×{round(m['height'])}: {common}"]
    extra = [f"{p[k]:,} {word}" for k, word in (("grayscale", "grayscale"), ("exif_rotated", "EXIF-turned")) if p[k]]
    lines.append(f"  pixels    median brightness {m['brightness']:.2f} (0-1)" + (f"; {', '.join(extra)}" if extra else ""))
    return lines


def _pct(v) -> str:
    return "?" if v is None else f"{100 * v:.0f}%" if v >= 0.01 else f"{100 * v:.2f}%"


def problem_lines(problems: list[dict]) -> list[str]:
    """A line a group, a line a check with its count, then its first files."""
    if not problems:
        return ["  health    no problems found (labels, coverage, images, duplicates, leakage checked)"]
    groups = Counter(p["group"] for p in problems)
    lines = [f"  health    {plural(len(problems), 'problem')}: "
             + ", ".join(f"{g} {groups[g]:,}" for g in GROUPS if groups[g])]
    by_check: dict[str, list[dict]] = {}
    for p in problems:
        by_check.setdefault(p["check"], []).append(p)
    for check, found in by_check.items():
        lines.append(f"    {CHECKS[check].group:<10} {CHECKS[check].title}: {len(found):,}  [{check}]")
        lines += [f"      {_line(p)}" for p in found[:EXAMPLES]]
        if len(found) > EXAMPLES:
            lines.append(f"      ... {len(found) - EXAMPLES:,} more (--json or --html lists all)")
    return lines


def skipped_lines(skipped: list[dict], problems: list[dict]) -> list[str]:
    """The files expand will skip, those the problems above do not name first."""
    if not skipped:
        return []
    named = {p["path"] for p in problems}
    rest = [s for s in skipped if s["path"] not in named]
    above = f" ({len(skipped) - len(rest):,} of them for a problem above)" if len(rest) < len(skipped) else ""
    lines = [f"  expand will skip {plural(len(skipped), 'file')}{above}"]
    lines += [f"    {s['path']}: {s['reason']}" for s in rest[:EXAMPLES * 3]]
    if len(rest) > EXAMPLES * 3:
        lines.append(f"    ... {len(rest) - EXAMPLES * 3:,} more (--json lists all)")
    return lines


def _line(p: dict) -> str:
    where = f" {p['where']}" if p.get("where") else ""
    split = f" [{p['split']}]" if p.get("split") else ""
    others = p.get("related") or []
    related = f" (= {', '.join(others[:3])}{', ...' if len(others) > 3 else ''})" if others else ""
    return f"{p['path']}{where}{split}: {p.get('detail') or CHECKS[p['check']].title}{related}"
