"""The health report as one screen of text: what the source holds, then what is wrong with it.

The facts are `check_source`'s dict (health/__init__.py); --json prints them as they are:
  kind, path, format, task, labelled, split_folders, images, splits {split: images},
  class_names, warnings, labels (health.labels.summarise), pictures (health.images.facts),
  problems [Problem.as_dict()], skipped [{path, reason}].
"""

from __future__ import annotations

from collections import Counter

from augpipe.health.base import CHECKS, GROUPS

EXAMPLES = 3  # files shown under each check
FORMAT_NAMES = {"coco": "COCO", "yolo": "YOLO", "voc": "Pascal VOC", "masks": "mask folders",
                "imagefolder": "class folders", "labelfiles": "label files"}


def source_lines(f: dict) -> list[str]:
    from augpipe.health.labels import summary_lines

    splits = ", ".join(f"{s} {n:,}" for s, n in f["splits"].items())
    fmt = FORMAT_NAMES.get(f["format"], f["format"])
    lines = [f"{f['path']}: source folder, {fmt} ({f['task']}), {f['images']:,} images ({splits})"]
    lines += [f"  note      {w}" for w in f.get("warnings", ())]
    lines += summary_lines(f["labels"], f["class_names"], f["labelled"])
    lines += picture_lines(f["pictures"])
    lines += problem_lines(f["problems"])
    lines += skipped_lines(f["skipped"])
    return lines


def picture_lines(p: dict) -> list[str]:
    from augpipe.health.images import summary_lines

    return summary_lines(p)


def problem_lines(problems: list[dict]) -> list[str]:
    """A line a group, a line a check with its count, then its first files."""
    if not problems:
        return ["  health    no problems found (labels, coverage, images, duplicates, leakage checked)"]
    groups = Counter(p["group"] for p in problems)
    lines = [f"  health    {_count(len(problems), 'problem')}: "
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


def skipped_lines(skipped: list[dict]) -> list[str]:
    if not skipped:
        return []
    lines = [f"  expand will skip {_count(len(skipped), 'file')}"]
    lines += [f"    {s['path']}: {s['reason']}" for s in skipped[:EXAMPLES * 3]]
    if len(skipped) > EXAMPLES * 3:
        lines.append(f"    ... {len(skipped) - EXAMPLES * 3:,} more (--json lists all)")
    return lines


def _line(p: dict) -> str:
    where = f" {p['where']}" if p.get("where") else ""
    split = f" [{p['split']}]" if p.get("split") else ""
    others = p.get("related") or []
    related = f" (= {', '.join(others[:3])}{', ...' if len(others) > 3 else ''})" if others else ""
    return f"{p['path']}{where}{split}: {p.get('detail') or CHECKS[p['check']].title}{related}"


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"
