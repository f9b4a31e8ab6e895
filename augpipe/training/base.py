"""What a task is to the shared loop and the command, and the plots they share."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class Task:
    """One trainer: how its targets are read, scored and shown. The loop (loop.py) calls load,
    loss and evaluate; the command calls the rest."""

    name = ""
    headline = "val_acc"  # the history key that picks the best epoch and --compare's lift
    headline_text = "validation accuracy"
    min_classes = 2
    # curves.png: one panel a title, each a list of (history key, label[, line style]); by default
    # "train_" keys dashed, the others solid
    panels: list[tuple[str, list[tuple]]] = []
    pictures = ("curves.png",)  # what _write_outputs draws beside model.pt and metrics.json

    def __init__(self, classes: list[str], size: int, rows: list):
        self.classes, self.size, self.rows = classes, size, rows

    def load(self, ds, split: str, progress: bool):
        raise NotImplementedError

    def prepare(self, train, val, log) -> None:
        """After the checks, before training: whatever the loss needs precomputed."""

    def loss(self, out, y):
        """(the batch's mean loss, {history key: sum over the batch's rows})"""
        raise NotImplementedError

    def evaluate(self, model, data, device, batch_size: int) -> tuple[dict, object]:
        """({history key: value}, predictions), dropout off."""
        raise NotImplementedError

    def scorer(self, predictions, val):
        """The headline figure of `predictions` on resamples of `val`'s images: a function of
        weights (B×N) to B values (bootstrap.py)."""
        raise NotImplementedError

    def epoch_line(self, label: str, row: dict) -> str:
        raise NotImplementedError

    def report(self, predictions, val, train, history: list[dict]) -> dict:
        raise NotImplementedError

    def draw(self, out: Path, result: dict, val, predictions) -> None:
        """The task's pictures beside curves.png."""


def batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


def best(history: list[dict], key: str) -> dict:
    return max(history, key=lambda h: h[key])


def plot_curves(result: dict, panels, path: Path) -> None:
    """One panel a figure: each run (expanded, and with --compare originals only) in its colour,
    training dashed, validation solid, against optimiser steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {"expanded": result["history"]}
    if "compare" in result:
        runs["originals only"] = result["compare"]["originals"]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    axes = np.atleast_1d(axes)
    for ax, (title, keys) in zip(axes, panels):
        for (name, history), colour in zip(runs.items(), ("tab:blue", "tab:orange")):
            steps = [h["step"] for h in history]
            for key, label, *style in keys:
                if key in history[0]:
                    line = style[0] if style else "--" if key.startswith("train_") else "-"
                    ax.plot(steps, [h[key] for h in history], line, color=colour, label=f"{name} {label}")
        ax.set_xlabel("optimiser steps")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def image_of(x) -> np.ndarray:
    """A uint8 3×S×S tensor as an H×W×3 array for matplotlib."""
    return x.permute(1, 2, 0).numpy()
