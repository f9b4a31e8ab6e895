"""What localisation and detection share: boxes read through the dataset's kind's arrays(row),
scaled to the resized image, and the sheet of validation images with true and predicted boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from augpipe.training.data import COMMON, decode_images, lineage, read_row


def read_boxes(ds, split: str, size: int, progress: bool):
    """(images N×3×S×S, boxes, labels, (sources, copies, contents)) or None without the split:
    boxes[i] a K×4 float32 array of [x, y, w, h] as fractions of the image (so the same on the
    size×size image the trainer sees), labels[i] its K classes."""
    table = ds.read(split, columns=[*COMMON, "objects.bbox", "objects.category", "objects.id", "width", "height"])
    if table is None:
        return None
    x = decode_images(table, split, size, progress, ds.shards(split))
    kind = ds.kind
    bbox, category, ids = (table.column(n).to_pylist() for n in ("bbox", "category", "id"))
    widths, heights = table.column("width").to_pylist(), table.column("height").to_pylist()
    boxes, labels = [], []
    for k, (b, c, i, w, h) in enumerate(zip(bbox, category, ids, widths, heights)):
        row = {"objects": {"bbox": b, "category": c, "id": i}, "width": w, "height": h}
        target = read_row(split, k, ds.shards(split), lambda: kind.arrays(row))
        boxes.append((target["boxes"] / np.array([w, h, w, h], np.float32)).astype(np.float32))
        labels.append(target["labels"])
    return x, boxes, labels, lineage(table)


def xywh(cxcywh: np.ndarray) -> np.ndarray:
    b = np.asarray(cxcywh, dtype=np.float64).reshape(-1, 4)
    return np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 2], b[:, 3]], axis=1)


def box_sheet(images: list[np.ndarray], truths: list[tuple], preds: list[tuple], classes: list[str],
              titles: list[str], path: Path, columns: int = 6) -> None:
    """Validation images with the true boxes (green) and the predicted ones (orange, with class
    and score); boxes [x, y, w, h] as fractions of the image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    n = len(images)
    rows = max(1, -(-n // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows))
    axes = np.atleast_1d(axes).reshape(-1)
    for ax in axes:
        ax.axis("off")
    for ax, image, (t_boxes, t_labels), (p_boxes, p_labels, p_scores), title in zip(axes, images, truths, preds,
                                                                                    titles):
        s = image.shape[0]
        ax.imshow(image, interpolation="nearest")
        for (x, y, w, h), c in zip(np.asarray(t_boxes).reshape(-1, 4), t_labels):
            ax.add_patch(Rectangle((x * s - 0.5, y * s - 0.5), w * s, h * s, fill=False, color="lime", lw=1.5))
        for (x, y, w, h), c, score in zip(np.asarray(p_boxes).reshape(-1, 4), p_labels, p_scores):
            ax.add_patch(Rectangle((x * s - 0.5, y * s - 0.5), w * s, h * s, fill=False, color="orangered", lw=1.2,
                                   ls="--"))
            text = classes[int(c)] if score is None else f"{classes[int(c)]} {score:.2f}"
            ax.text(x * s, y * s - 1, text, color="orangered", fontsize=6, va="bottom")
        ax.set_title(title, fontsize=7)
    fig.suptitle("validation: true boxes green, predicted orange (dashed)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
