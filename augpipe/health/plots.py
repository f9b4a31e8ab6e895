"""The health report's plots (matplotlib, Agg): each a function of the report's facts that gives a
figure, or None when the source has nothing to show there. `FIGURES` is the page's order."""

from __future__ import annotations

SPLIT_COLOURS = {"train": "#4c78a8", "validation": "#f58518", "test": "#54a24b", "unsplit": "#9d9d9d",
                 "before (originals)": "#9d9d9d", "after (every row)": "#4c78a8"}
PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d")
MOST_CLASSES = 40  # a bar chart shows the most frequent classes beyond this


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def close(fig) -> None:
    _pyplot().close(fig)


def bars(title: str, names: list[str], series: dict[str, list[float]], xlabel: str):
    """Horizontal bars, a group a name, a bar a series (a split), the names top to bottom."""
    import numpy as np

    plt = _pyplot()
    names = names[:MOST_CLASSES]
    fig, ax = plt.subplots(figsize=(5.6, 0.9 + 0.28 * len(names) * max(1, len(series)) ** 0.5))
    height = 0.8 / max(1, len(series))
    y = np.arange(len(names))
    for k, (label, values) in enumerate(series.items()):
        ax.barh(y + k * height, values[:len(names)], height, label=label, color=SPLIT_COLOURS.get(label))
    ax.set_yticks(y + height * (len(series) - 1) / 2, names)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def scatter(title: str, groups: dict[str, tuple[list[float], list[float]]], xlabel: str, ylabel: str,
            log: bool = False):
    """Points, a colour a group (named in the legend)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    for k, (name, (xs, ys)) in enumerate(groups.items()):
        ax.scatter(xs, ys, s=7, alpha=0.6, color=PALETTE[k % len(PALETTE)], linewidths=0, label=name)
    if len(groups) > 1:
        ax.legend(fontsize=8, markerscale=2)
    if log:
        from matplotlib.ticker import NullFormatter

        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):  # over a narrow range the minor labels run into each other
            axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return fig


def columns(title: str, names: list[str], values: list[float], xlabel: str, ylabel: str = "images"):
    """Vertical bars, one a name, in the given order."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    ax.bar(range(len(names)), values, color="#4c78a8")
    step = max(1, len(names) // 20)
    ax.set_xticks(range(0, len(names), step), names[::step])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return fig


# ---------------------------------------------------------------- the page's figures

def _splits_of(by_class: dict) -> list[str]:
    order = ("train", "validation", "test", "unsplit")
    present = {s for counts in by_class.values() for s in counts}
    return [s for s in order if s in present]


def classes(facts: dict):
    labels = facts["labels"]
    objects = facts["task"] not in ("classification", "segmentation")
    by_class = labels["objects_per_class" if objects else "images_per_class"]
    if not by_class:
        return None
    key = "objects_per_class" if objects else "images_per_class"
    names = sorted(by_class, key=lambda c: -sum(by_class[c].values()))
    what = "objects" if objects else "images"
    if "labels_before" in facts:  # an expanded dataset: what augmentation changed, all splits together
        before = facts["labels_before"][key]
        series = {"before (originals)": [sum(before.get(c, {}).values()) for c in names],
                  "after (every row)": [sum(by_class[c].values()) for c in names]}
        counted = what if objects else "rows"
        return bars(f"{counted} a class, before and after augmentation", names, series, counted)
    series = {s: [by_class[c].get(s, 0) for c in names] for s in _splits_of(by_class)}
    return bars(f"{what} a class", names, series, what)


def objects_per_image(facts: dict):
    per_image = facts["labels"].get("objects_per_image") or {}
    if facts["task"] == "classification" or not per_image:
        return None
    counts = {int(n): v for n, v in per_image.items()}
    names = list(range(0, max(counts) + 1))
    what = "classes a mask holds" if facts["task"] == "segmentation" else "objects in the image"
    counted = "rows (every row)" if "labels_before" in facts else "images"  # an expanded dataset's
    return columns(f"{what}, a bar a number", [str(n) for n in names], [counts.get(n, 0) for n in names], what,
                   counted)


def boxes(facts: dict):
    found = facts["labels"].get("boxes")
    if not found or not found.get("sample"):
        return None
    sample = [s for s in found["sample"] if s[0] > 0 and s[1] > 0]
    names = facts["class_names"]
    groups: dict[str, tuple[list[float], list[float]]] = {}
    for w, h, _, c in sample:
        xs, ys = groups.setdefault(names[c] if 0 <= c < len(names) else f"class {c}", ([], []))
        xs.append(w)
        ys.append(h)
    shown = f"{found['count']:,} boxes{', a sample' if len(sample) < found['count'] else ''}"
    return scatter(f"box sizes ({shown})", dict(sorted(groups.items())), "width / image width",
                   "height / image height", log=True)


def image_sizes(facts: dict):
    """A histogram of the originals' longest sides on a pixel axis (a label a bin ran together)."""
    from matplotlib.ticker import MaxNLocator

    hist = facts["pictures"].get("long_sides") or {}
    if not hist.get("counts"):
        return None
    edges, counts = hist["edges"], hist["counts"]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    widths = [max(b - a, 1.0) for a, b in zip(edges, edges[1:])]
    ax.bar(edges[:-1], counts, widths, align="edge", color="#4c78a8", edgecolor="white", linewidth=0.5)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("longest side, in pixels")
    ax.set_ylabel("images (originals)")
    ax.set_title(f"image sizes ({sum(counts):,} images)")
    return fig


def mask_shares(facts: dict):
    share = facts["labels"].get("mask_share")
    if not share:
        return None
    names = sorted(share, key=lambda c: -share[c])
    return bars("mask pixels a class", names, {"share": [100 * share[c] for c in names]}, "% of all mask pixels")


def keypoint_visibility(facts: dict):
    points = facts["labels"].get("keypoints")
    if not points:
        return None
    return columns("keypoints", list(points), list(points.values()), "visibility", "keypoints")


def dropped(facts: dict):
    """An expanded dataset's objects the recipe dropped, a bar a reason."""
    by_reason = facts.get("dropped_by") or {}
    if not any(sum(c.values()) for c in by_reason.values()):
        return None
    names = sorted(by_reason, key=lambda r: -sum(by_reason[r].values()))
    return bars("objects the recipe dropped", names, {"dropped": [sum(by_reason[r].values()) for r in names]},
                "objects")


FIGURES = (("classes", classes), ("objects_per_image", objects_per_image), ("boxes", boxes),
           ("image_sizes", image_sizes), ("dropped", dropped), ("mask_shares", mask_shares), ("keypoints", keypoint_visibility))
