"""Classification: one class an image, cross-entropy; accuracy against always guessing the majority class."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from augpipe.errors import SourceError
from augpipe.training.base import Task, best, plot_curves
from augpipe.training.bootstrap import mean_scorer
from augpipe.training.data import Split, damaged_row, decode_images, lineage, normalise, plural


def load_split(ds, split: str, size: int, progress: bool = True) -> Split | None:
    import torch

    table = ds.read(split, columns=["image", "label", "source", "copy", "source_sha256"])
    if table is None:
        return None
    x = decode_images(table, split, size, progress, ds.shards(split))
    labels = table.column("label").to_pylist()
    if not ds.classes:
        raise SourceError("this dataset is unlabelled: training needs class folders")
    if (bad := next(((i, why) for i, label in enumerate(labels) if (why := ds.kind.class_problem(label))), None)):
        raise damaged_row(split, bad[0], ds.shards(split), bad[1])
    return Split(x, torch.tensor(labels, dtype=torch.int64), *lineage(table))


def evaluate(model, data: Split, device, batch_size: int = 512) -> tuple[float, float, np.ndarray]:
    """(loss, accuracy, predictions), dropout off."""
    import torch
    import torch.nn.functional as F

    model.eval()
    losses, preds = [], []
    with torch.no_grad():
        for start in range(0, len(data.y), batch_size):
            x = normalise(data.x[start:start + batch_size].to(device))
            y = data.y[start:start + batch_size].to(device)
            logits = model(x)
            losses.append(F.cross_entropy(logits, y, reduction="sum").item())
            preds.append(logits.argmax(1).cpu())
    pred = torch.cat(preds).numpy()
    return sum(losses) / len(data.y), float((pred == data.y.numpy()).mean()), pred


class Classification(Task):
    name = "classification"
    headline, headline_text = "val_acc", "validation accuracy"
    panels = [("loss", [("train_loss", "train"), ("val_loss", "validation")]),
              ("accuracy", [("train_acc", "train"), ("val_acc", "validation")])]
    pictures = ("curves.png", "confusion.png")

    def load(self, ds, split, progress):
        return load_split(ds, split, self.size, progress)

    def loss(self, out, y):
        import torch.nn.functional as F

        return F.cross_entropy(out, y), {"train_acc": (out.argmax(1) == y).sum().item()}

    def evaluate(self, model, data, device, batch_size):
        loss, acc, pred = evaluate(model, data, device, batch_size)
        return {"val_loss": loss, "val_acc": acc}, pred

    def scorer(self, pred, val):
        return mean_scorer(pred == val.y.numpy())

    def epoch_line(self, label, row):
        return (f"{label:>9} epoch {row['epoch']:>3}  train loss {row['train_loss']:.3f} acc {row['train_acc']:.3f}  "
                f"val loss {row['val_loss']:.3f} acc {row['val_acc']:.3f}  {row['images_per_second']:,.0f} img/s")

    def report(self, pred, val, train, history):
        return report(pred, val, train, self.classes, history)

    def draw(self, out, result, val, pred):
        plot_confusion(np.array(result["confusion"]), self.classes, out / "confusion.png")


def at_chance(history: list[dict], classes: int) -> bool:
    """Training accuracy still near 1/classes after the first epochs."""
    return len(history) >= 3 and history[-1]["train_acc"] <= 1.25 / classes


def report(pred: np.ndarray, val: Split, train: Split, classes: list[str], history: list[dict]) -> dict:
    truth = val.y.numpy()
    n = len(classes)
    confusion = np.zeros((n, n), np.int64)
    np.add.at(confusion, (truth, pred), 1)
    majority = int(np.bincount(train.y.numpy(), minlength=n).argmax())
    top = best(history, "val_acc")
    per_class = {c: (float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None)
                 for i, c in enumerate(classes)}
    return {
        "best_epoch": top["epoch"], "best_val_acc": top["val_acc"], "final_val_acc": history[-1]["val_acc"],
        "majority_baseline": float((truth == majority).mean()), "majority_class": classes[majority],
        "per_class_acc": per_class, "confusion": confusion.tolist(),
    }


def summary_lines(result: dict) -> list[str]:
    classes = result["classes"]
    lines = [f"best epoch {result['best_epoch']}: validation accuracy {result['best_val_acc']:.3f} "
             f"(final {result['final_val_acc']:.3f}); always guessing '{result['majority_class']}' scores "
             f"{result['majority_baseline']:.3f}"]
    lines.append("per class: " + ", ".join(f"{c} {a:.2f}" if a is not None else f"{c} -"
                                           for c, a in result["per_class_acc"].items()))
    width = max(len(c) for c in classes)
    lines.append("confusion (rows true, columns predicted):")
    for c, row in zip(classes, result["confusion"]):
        lines.append(f"  {c:>{width}} " + " ".join(f"{v:>4}" for v in row))
    return lines


def plot_confusion(confusion: np.ndarray, classes: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(classes)
    fig, ax = plt.subplots(figsize=(2 + 0.5 * n, 1.5 + 0.5 * n))
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if confusion[i, j] > confusion.max() / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


__all__ = ["Classification", "at_chance", "evaluate", "load_split", "plot_confusion", "plot_curves", "plural",
           "report", "summary_lines"]
