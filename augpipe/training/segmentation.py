"""Semantic segmentation: a fully convolutional net, a class for every pixel.

The backbone (no global pooling), a 1×1 classifier on its feature map, upsampled bilinearly to the
input size; cross-entropy per pixel (255 in a mask means "ignore", as in VOC). Masks are resized to
the input size by nearest neighbour, so their values stay class indices. A detection dataset with
instance masks is trained as one: each object's mask painted with its class (background 0, the
dataset's classes from 1; larger objects first, so a small one on top of a large one stays).
Reported: pixel accuracy and IoU per class with their mean, against always predicting the
training split's most common pixel class.
"""

from __future__ import annotations

import numpy as np

from augpipe.errors import SourceError
from augpipe.training.base import Task, batches, best, image_of
from augpipe.training.data import COMMON, Split, decode_images, lineage, normalise, read_row
from augpipe.training.metrics import class_iou, confusion, mean_of_known, segmentation_scores

IGNORE = 255


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)


def paint(instances: np.ndarray, labels: np.ndarray, h: int, w: int) -> np.ndarray:
    """Instance masks (N×H×W, N may be 0) as one class mask: background 0, class c as c + 1,
    larger objects first so that a small one on top of a large one stays."""
    painted = np.zeros((h, w), np.uint8)
    for k in np.argsort(-instances.sum(axis=(1, 2)), kind="stable"):  # N×H×W, N may be 0
        painted[instances[k] > 0] = int(labels[k]) + 1
    return painted


def read_masks(ds, split: str, size: int, progress: bool, classes: int):
    """(images, masks uint8 N×S×S, lineage) or None without the split."""
    kind = ds.kind
    semantic = kind.name == "segmentation"
    table = ds.read(split, columns=[*COMMON, *kind.reader_columns(), "width", "height"])
    if table is None:
        return None
    shards = ds.shards(split)
    x = decode_images(table, split, size, progress, shards)
    masks = np.zeros((len(x), size, size), np.uint8)
    if semantic:
        rows = zip(table.column("annotation").to_pylist(), table.column("width").to_pylist(),
                   table.column("height").to_pylist())
        for i, (annotation, w, h) in enumerate(rows):  # the row's size: a mask of another is named, not stretched
            row = {"annotation": annotation, "width": w, "height": h}
            masks[i] = read_row(split, i, shards, lambda: resize_mask(kind.arrays(row)["mask"], size))
    else:
        rows = zip(table.column("objects").to_pylist(), table.column("width").to_pylist(),
                   table.column("height").to_pylist())
        for i, (objects, w, h) in enumerate(rows):
            target = read_row(split, i, shards, lambda: kind.arrays({"objects": objects, "width": w, "height": h}))
            masks[i] = resize_mask(paint(target["masks"], target["labels"], h, w), size)
    bad = sorted(set(np.unique(masks).tolist()) - set(range(classes)) - {IGNORE})
    if bad:
        raise SourceError(f"{split}: mask values {bad[:5]} outside the {classes} classes "
                          f"(augpipe inspect --verify lists the rows)")
    return x, masks, lineage(table)


def image_confusions(truth: np.ndarray, pred: np.ndarray, classes: int) -> np.ndarray:
    """metrics.confusion of each image (N×H×W masks): N×classes×classes."""
    n = len(truth)
    keep = truth != IGNORE
    image = np.broadcast_to(np.arange(n).reshape(n, *[1] * (truth.ndim - 1)), truth.shape)
    cell = (image[keep].astype(np.int64) * classes + truth[keep]) * classes + pred[keep]
    return np.bincount(cell, minlength=n * classes * classes).reshape(n, classes, classes)


class Segmentation(Task):
    name = "segmentation"
    headline, headline_text = "val_miou", "validation mean IoU"
    panels = [("loss", [("train_loss", "train"), ("val_loss", "validation")]),
              ("pixel accuracy", [("train_pixel_acc", "train"), ("val_pixel_acc", "validation")]),
              ("mean IoU", [("val_miou", "validation")])]
    pictures = ("curves.png", "predictions.png")

    def load(self, ds, split, progress):
        import torch

        found = read_masks(ds, split, self.size, progress, len(self.classes))
        if found is None:
            return None
        x, masks, lineage_ = found
        return Split(x, torch.from_numpy(masks), *lineage_)

    def loss(self, out, y):
        import torch.nn.functional as F

        y = y.long()
        logits = out["logits"]
        valid = y != IGNORE
        right = ((logits.argmax(1) == y) & valid).sum((1, 2)).float() / valid.sum((1, 2)).clamp(min=1)
        return F.cross_entropy(logits, y, ignore_index=IGNORE), {"train_pixel_acc": right.sum().item()}

    def evaluate(self, model, data, device, batch_size):
        import torch

        model.eval()
        total, preds = 0.0, []
        with torch.no_grad():
            for part in batches(len(data), batch_size):
                out = model(normalise(data.x[part].to(device)))
                total += self.loss(out, data.y[part].to(device))[0].item() * (part.stop - part.start)
                preds.append(out["logits"].argmax(1).to(torch.uint8).cpu())
        pred = torch.cat(preds).numpy()
        scores = segmentation_scores(confusion(data.y.numpy(), pred, len(self.classes), IGNORE))
        return {"val_loss": total / len(data), "val_pixel_acc": scores["pixel_acc"],
                "val_miou": scores["mean_iou"]}, pred

    def scorer(self, pred, val):
        n = len(self.classes)
        matrices = image_confusions(val.y.numpy(), pred, n).reshape(len(pred), n * n).astype(np.float64)
        return lambda weights: mean_of_known(class_iou((weights @ matrices).reshape(-1, n, n)))

    def epoch_line(self, label, row):
        return (f"{label:>9} epoch {row['epoch']:>3}  train loss {row['train_loss']:.3f} pixel acc "
                f"{row['train_pixel_acc']:.3f}  val loss {row['val_loss']:.3f} pixel acc {row['val_pixel_acc']:.3f} "
                f"mean IoU {row['val_miou']:.3f}  {row['images_per_second']:,.0f} img/s")

    def report(self, pred, val, train, history):
        n = len(self.classes)
        truth = val.y.numpy()
        final = segmentation_scores(confusion(truth, pred, n, IGNORE))
        counts = np.bincount(train.y.numpy().reshape(-1), minlength=256)[:n]
        majority = int(counts.argmax())
        baseline = segmentation_scores(confusion(truth, np.full_like(truth, majority), n, IGNORE))
        top = best(history, "val_miou")

        def named(iou):
            return {c: (None if np.isnan(v) else float(v)) for c, v in zip(self.classes, iou)}

        return {"best_epoch": top["epoch"], "best_val_miou": top["val_miou"], "final_val_miou": final["mean_iou"],
                "final_pixel_acc": final["pixel_acc"], "per_class_iou": named(final["iou"]),
                "baseline": {"class": self.classes[majority], "pixel_acc": baseline["pixel_acc"],
                             "mean_iou": baseline["mean_iou"]}}

    def draw(self, out, result, val, pred):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.colors import ListedColormap
        from matplotlib.patches import Patch

        n, k = min(len(val), 8), len(self.classes)
        colours = plt.get_cmap("tab10" if k <= 10 else "tab20")(np.arange(k) % (10 if k <= 10 else 20))
        colours[0] = (0.1, 0.1, 0.1, 1.0)  # the first class (background, usually) dark
        cmap = ListedColormap(colours)
        truth = val.y.numpy()
        fig, axes = plt.subplots(3, n, figsize=(1.8 * n, 6), squeeze=False)
        for i in range(n):
            shown = np.where(truth[i] == IGNORE, 0, truth[i])
            iou = segmentation_scores(confusion(truth[i], pred[i], k, IGNORE))["mean_iou"]
            for row, (picture, title) in enumerate(((image_of(val.x[i]), "image"), (shown, "true"),
                                                    (pred[i], f"predicted, IoU {iou:.2f}"))):
                ax = axes[row, i]
                if row == 0:
                    ax.imshow(picture, interpolation="nearest")
                else:
                    ax.imshow(picture, cmap=cmap, vmin=-0.5, vmax=k - 0.5, interpolation="nearest")
                ax.set_title(title, fontsize=7)
                ax.axis("off")
        fig.legend(handles=[Patch(color=colours[c], label=name) for c, name in enumerate(self.classes)],
                   loc="lower center", ncol=min(k, 8), fontsize=8)
        fig.suptitle("validation: image, true mask, predicted mask (mean IoU over the classes in either)", fontsize=9)
        fig.tight_layout(rect=(0, 0.05, 1, 1))
        fig.savefig(out / "predictions.png", dpi=100)
        plt.close(fig)


def summary_lines(result: dict) -> list[str]:
    b = result["baseline"]
    per = result["per_class_iou"]
    return [f"best epoch {result['best_epoch']}: validation mean IoU {result['best_val_miou']:.3f} "
            f"(final {result['final_val_miou']:.3f}, pixel accuracy {result['final_pixel_acc']:.3f}); always "
            f"predicting '{b['class']}' scores mean IoU {b['mean_iou']:.3f}, pixel accuracy {b['pixel_acc']:.3f}",
            "IoU per class: " + ", ".join(f"{c} {v:.2f}" if v is not None else f"{c} -" for c, v in per.items())]
