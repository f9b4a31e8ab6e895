"""The health report's plots (matplotlib, Agg): each a function of the report's facts that gives a
figure, or None when the source has nothing to show there. `FIGURES` is the page's order."""

from __future__ import annotations

SPLIT_COLOURS = {"train": "#4c78a8", "validation": "#f58518", "test": "#54a24b", "unsplit": "#9d9d9d"}
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
        ax.legend(fontsize=8)
    return fig


def histogram(title: str, values: dict[str, list[float]], xlabel: str, integers: bool = False):
    """One histogram a series (stacked), over shared bins."""
    import numpy as np

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.2))
    every = [v for vs in values.values() for v in vs]
    if integers:
        bins = np.arange(min(every), max(every) + 2) - 0.5
    else:
        bins = np.histogram_bin_edges(every, bins=min(40, max(5, len(set(every)))))
    ax.hist(list(values.values()), bins=bins, stacked=True, label=list(values),
            color=[SPLIT_COLOURS.get(s, "#4c78a8") for s in values])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("images")
    ax.set_title(title)
    if len(values) > 1:
        ax.legend(fontsize=8)
    return fig


def scatter(title: str, xs: list[float], ys: list[float], xlabel: str, ylabel: str, log: bool = False,
            colours: list[str] | None = None):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.scatter(xs, ys, s=6, alpha=0.5, c=colours or "#4c78a8", linewidths=0)
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return fig
