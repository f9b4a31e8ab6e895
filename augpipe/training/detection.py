"""Detection: a tiny single-scale anchor-free head in the manner of CenterNet (Zhou et al. 2019,
"Objects as Points"), on the backbone's last feature map.

Three 1×1 convolutions read the F×F feature map: a heatmap per class (each object a Gaussian peak
at the cell of its centre, penalty-reduced focal loss), the box's width and height in cells (L1,
weight 0.1) and the centre's offset inside its cell (L1). Decoding keeps the heatmap's local maxima
(a 3×3 max-pool: a cell that equals the maximum of its neighbourhood is a peak, the NMS), the
highest 50 an image above 0.01. Scored by VOC's mAP@0.5 (metrics.py) against predicting nothing
(mAP 0). A sanity check of the boxes, not a competitive detector.
"""

from __future__ import annotations

import math

import numpy as np

from augpipe.training.base import Task, batches, best, image_of
from augpipe.training.boxes import box_sheet, read_boxes
from augpipe.training.data import Split, normalise, plural
from augpipe.training.metrics import mean_average_precision, ranked_detections, resampled_map

SIZE_WEIGHT, OFFSET_WEIGHT = 0.1, 1.0  # CenterNet's
TOP_K, MIN_SCORE = 50, 0.01  # what decoding keeps for scoring
SHOW_SCORE = 0.3  # predictions.png draws these and above


def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """CenterNet's radius (in cells) within which a corner shift keeps IoU ≥ min_overlap."""
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2 ** 2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def draw_gaussian(heat: np.ndarray, ix: int, iy: int, radius: int) -> None:
    """A peak of 1 at (ix, iy) falling off with σ = (2r + 1)/6, kept where the map is higher."""
    sigma = (2 * radius + 1) / 6
    ys, xs = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    g = np.exp(-(xs * xs + ys * ys) / (2 * sigma * sigma))
    h, w = heat.shape
    x0, x1, y0, y1 = max(0, ix - radius), min(w, ix + radius + 1), max(0, iy - radius), min(h, iy + radius + 1)
    patch = g[y0 - iy + radius:y1 - iy + radius, x0 - ix + radius:x1 - ix + radius]
    np.maximum(heat[y0:y1, x0:x1], patch, out=heat[y0:y1, x0:x1])


def dense_targets(boxes: list[np.ndarray], labels: list[np.ndarray], classes: int, f: int) -> dict:
    """Each image's heatmap (classes×F×F), box size and centre offset maps (2×F×F, set at the
    centre cells) and the mask of those cells; boxes [x, y, w, h] as fractions of the image."""
    import torch

    n = len(boxes)
    heat = np.zeros((n, classes, f, f), np.float32)
    size = np.zeros((n, 2, f, f), np.float32)
    offset = np.zeros((n, 2, f, f), np.float32)
    mask = np.zeros((n, f, f), np.float32)
    for i, (b, c) in enumerate(zip(boxes, labels)):
        for k in np.argsort(-(b[:, 2] * b[:, 3]), kind="stable"):  # large first: a small box keeps a shared cell
            x, y, w, h = (float(v) * f for v in b[k])
            if w <= 0 or h <= 0:
                continue
            cx, cy = x + w / 2, y + h / 2
            ix, iy = min(int(cx), f - 1), min(int(cy), f - 1)
            draw_gaussian(heat[i, int(c[k])], ix, iy, max(0, int(gaussian_radius(h, w))))
            heat[i, int(c[k]), iy, ix] = 1.0
            size[i, :, iy, ix] = (w, h)
            offset[i, :, iy, ix] = (cx - ix, cy - iy)
            mask[i, iy, ix] = 1.0
    return {"heatmap": torch.from_numpy(heat), "size": torch.from_numpy(size), "offset": torch.from_numpy(offset),
            "mask": torch.from_numpy(mask)}


def focal_loss(logits, target):
    """CenterNet's penalty-reduced focal loss (α 2, β 4), over the positives' count."""
    import torch.nn.functional as F

    pos = target.eq(1).float()
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    p = log_p.exp()
    pos_loss = (log_p * (1 - p) ** 2 * pos).sum()
    neg_loss = (log_not_p * p ** 2 * (1 - target) ** 4 * (1 - pos)).sum()
    return -(pos_loss + neg_loss) / pos.sum().clamp(min=1)


def decode(out: dict, top_k: int = TOP_K, min_score: float = MIN_SCORE) -> list[dict]:
    """Each image's detections: {"boxes" K×4 [x, y, w, h] as fractions, "scores", "labels"}."""
    import torch
    import torch.nn.functional as F

    heat = torch.sigmoid(out["heatmap"])
    n, c, h, w = heat.shape
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    scores, index = peaks.view(n, -1).topk(min(top_k, c * h * w))
    labels, cell = index // (h * w), index % (h * w)
    iy, ix = (cell // w).float(), (cell % w).float()
    size = out["size"].view(n, 2, -1).gather(2, cell.unsqueeze(1).expand(n, 2, cell.shape[1]))
    offset = out["offset"].view(n, 2, -1).gather(2, cell.unsqueeze(1).expand(n, 2, cell.shape[1]))
    cx, cy = (ix + offset[:, 0]) / w, (iy + offset[:, 1]) / h
    bw, bh = size[:, 0].clamp(min=0) / w, size[:, 1].clamp(min=0) / h
    boxes = torch.stack([cx - bw / 2, cy - bh / 2, bw, bh], dim=2)
    found = []
    for i in range(n):
        keep = scores[i] >= min_score
        found.append({"boxes": boxes[i][keep].cpu().numpy(), "scores": scores[i][keep].cpu().numpy(),
                      "labels": labels[i][keep].cpu().numpy()})
    return found


def truths_of(data: Split) -> list[dict]:
    return [{"boxes": b, "labels": c} for b, c in zip(data.y["boxes"], data.y["labels"])]


class Detection(Task):
    name = "detection"
    headline, headline_text = "val_map", "validation mAP@0.5"
    min_classes = 1
    panels = [("loss", [("train_loss", "train"), ("val_loss", "validation")]),
              ("mAP@0.5", [("val_map", "validation")])]
    pictures = ("curves.png", "predictions.png")

    def __init__(self, classes, size, rows):
        super().__init__(classes, size, rows)
        self.fsize = next(r.size for r in rows if r.layer.name == "heatmap")

    def load(self, ds, split, progress):
        found = read_boxes(ds, split, self.size, progress)
        if found is None:
            return None
        x, boxes, labels, lineage = found
        return Split(x, {"boxes": boxes, "labels": labels}, *lineage)

    def prepare(self, train, val, log):
        for data in (train, val):
            data.y.update(dense_targets(data.y["boxes"], data.y["labels"], len(self.classes), self.fsize))
        n = sum(len(b) for b in val.y["boxes"])
        log(f"detection: {n:,} validation box{'' if n == 1 else 'es'} on {plural(len(val), 'image')}, heatmaps of "
            f"{self.fsize}×{self.fsize} cells ({self.size / self.fsize:g} pixels a cell)")

    def loss(self, out, y):
        import torch.nn.functional as F

        mask = y["mask"].unsqueeze(1)
        n = y["mask"].sum().clamp(min=1)
        heat = focal_loss(out["heatmap"], y["heatmap"])
        size = F.l1_loss(out["size"] * mask, y["size"] * mask, reduction="sum") / n
        offset = F.l1_loss(out["offset"] * mask, y["offset"] * mask, reduction="sum") / n
        return heat + SIZE_WEIGHT * size + OFFSET_WEIGHT * offset, {}

    def evaluate(self, model, data, device, batch_size):
        import torch

        model.eval()
        total, found = 0.0, []
        dense = ("heatmap", "size", "offset", "mask")
        with torch.no_grad():
            for part in batches(len(data), batch_size):
                out = model(normalise(data.x[part].to(device)))
                y = {k: data.y[k][part].to(device) for k in dense}
                total += self.loss(out, y)[0].item() * (part.stop - part.start)
                found += decode(out)
        m, aps = mean_average_precision(found, truths_of(data), len(self.classes))
        return {"val_loss": total / len(data), "val_map": m}, {"detections": found, "ap": aps}

    def scorer(self, pred, val):
        ranked = ranked_detections(pred["detections"], truths_of(val), len(self.classes))
        return lambda weights: resampled_map(ranked, weights)[0]

    def epoch_line(self, label, row):
        return (f"{label:>9} epoch {row['epoch']:>3}  train loss {row['train_loss']:.3f}  val loss "
                f"{row['val_loss']:.3f} mAP@0.5 {row['val_map']:.3f}  {row['images_per_second']:,.0f} img/s")

    def report(self, pred, val, train, history):
        top = best(history, "val_map")
        return {"best_epoch": top["epoch"], "best_val_map": top["val_map"], "final_val_map": history[-1]["val_map"],
                "per_class_ap": {c: (None if np.isnan(a) else float(a)) for c, a in zip(self.classes, pred["ap"])},
                "baseline_map": 0.0, "feature_map": self.fsize,
                "validation_boxes": int(sum(len(b) for b in val.y["boxes"]))}

    def draw(self, out, result, val, pred):
        n = min(len(val), 24)
        shown = []
        for d in pred["detections"][:n]:
            keep = d["scores"] >= SHOW_SCORE
            shown.append((d["boxes"][keep], d["labels"][keep], d["scores"][keep]))
        box_sheet([image_of(val.x[i]) for i in range(n)],
                  [(val.y["boxes"][i], val.y["labels"][i]) for i in range(n)], shown, self.classes,
                  [f"{len(val.y['boxes'][i])} true, {len(shown[i][0])} found" for i in range(n)],
                  out / "predictions.png")


def summary_lines(result: dict) -> list[str]:
    aps = result["per_class_ap"]
    return [f"best epoch {result['best_epoch']}: validation mAP@0.5 {result['best_val_map']:.3f} "
            f"(final {result['final_val_map']:.3f}); predicting nothing scores {result['baseline_map']:.3f}",
            "AP@0.5 per class: " + ", ".join(f"{c} {a:.2f}" if a is not None else f"{c} -" for c, a in aps.items())]
